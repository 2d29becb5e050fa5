//! The DAG actions, as form POSTs (`application/x-www-form-urlencoded`) that redirect back
//! (303) with a flash message: `/dags/{dag_id}/trigger` (field `conf`, a JSON object, empty
//! for `{}`), `/dags/{dag_id}/pause` and `/dags/{dag_id}/unpause`. Each form carries a
//! hidden `next`, the page to return to; anything but a local path sends the user to `/`.
//! Cross-site posts never get here (see `web::csrf`).

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};

use super::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::{PageError, flash, links};
use crate::service::TriggerRequest;
use crate::web::AppState;

/// The trigger form.
#[derive(Debug, Deserialize)]
pub struct TriggerForm {
    #[serde(default)]
    conf: String,
    #[serde(default)]
    next: String,
}

/// The pause and unpause forms.
#[derive(Debug, Deserialize)]
pub struct BackForm {
    #[serde(default)]
    next: String,
}

/// `POST /dags/{dag_id}/trigger`.
pub async fn trigger(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    form: Result<Form<TriggerForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(bad_form)?;
    let service = &state.service;
    let dag = service.dag(&dag_id)?;
    let conf = parse_conf(&form.conf)?;
    let run = service
        .trigger(&dag_id, TriggerRequest { conf, owner: None })
        .await?;
    let mut message = format!("Queued run {}.", run.run_id);
    if service.paused(&dag.id).await? {
        message.push_str(" The DAG is paused: the run starts once it is unpaused.");
    }
    Ok(flash::redirect(back(&form.next), &message))
}

/// `POST /dags/{dag_id}/pause`.
pub async fn pause(
    state: State<AppState>,
    dag_id: Path<String>,
    form: Result<Form<BackForm>, FormRejection>,
) -> Result<Response, PageError> {
    set_paused(state, dag_id, form, true).await
}

/// `POST /dags/{dag_id}/unpause`.
pub async fn unpause(
    state: State<AppState>,
    dag_id: Path<String>,
    form: Result<Form<BackForm>, FormRejection>,
) -> Result<Response, PageError> {
    set_paused(state, dag_id, form, false).await
}

async fn set_paused(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    form: Result<Form<BackForm>, FormRejection>,
    paused: bool,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(bad_form)?;
    let before = state.service.set_paused(&dag_id, paused).await?;
    let message = match (before == paused, paused) {
        (true, true) => format!("{dag_id} was already paused."),
        (true, false) => format!("{dag_id} was already active."),
        (false, true) => format!("Paused {dag_id}: no new scheduled runs."),
        (false, false) => format!("Unpaused {dag_id}."),
    };
    Ok(flash::redirect(back(&form.next), &message))
}

/// The run's conf from the form: a JSON object, `{}` when left empty.
fn parse_conf(text: &str) -> Result<serde_json::Value, PageError> {
    if text.trim().is_empty() {
        return Ok(serde_json::json!({}));
    }
    let bad = |why: String| PageError::new(StatusCode::BAD_REQUEST, why);
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(conf @ serde_json::Value::Object(_)) => Ok(conf),
        Ok(_) => Err(bad(
            "The conf must be a JSON object, like {\"key\": 1}; nothing was triggered.".into(),
        )),
        Err(e) => Err(bad(format!(
            "The conf is not valid JSON ({e}); nothing was triggered."
        ))),
    }
}

/// Where to go back to: `next` when it is a path on this server, else the DAG list.
fn back(next: &str) -> &str {
    if links::is_local_path(next) {
        next
    } else {
        "/"
    }
}

fn bad_form(rejection: FormRejection) -> PageError {
    PageError::new(rejection.status(), rejection.body_text())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_conf_is_an_empty_object_and_anything_but_an_object_is_refused() {
        assert_eq!(parse_conf("  \n").unwrap(), serde_json::json!({}));
        assert_eq!(
            parse_conf(r#"{"a": 1}"#).unwrap(),
            serde_json::json!({"a": 1})
        );
        for (bad, why) in [
            ("[1]", "must be a JSON object"),
            ("null", "must be a JSON object"),
            (
                "{oops",
                "is not valid JSON (key must be a string at line 1 column 2)",
            ),
        ] {
            let e = parse_conf(bad).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(e.message.contains(why), "{bad}: {}", e.message);
        }
    }
}
