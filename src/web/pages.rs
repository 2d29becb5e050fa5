//! HTML pages (askama templates in `templates/`): for now the DAG list, which refreshes
//! itself while runs are active. Values are HTML-escaped by askama.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::http::StatusCode;

use super::AppState;
use crate::service;

/// One row of the DAG list.
pub struct DagRow {
    dag_id: String,
    tags: String,
    schedule: String,
    paused: bool,
    recent: Vec<&'static str>,
}

/// The DAG list page.
#[derive(Template, WebTemplate)]
#[template(path = "dags.html")]
pub struct DagsPage {
    dags: Vec<DagRow>,
    errors: Vec<String>,
    refresh: bool,
}

/// `GET /`.
pub async fn dags(State(state): State<AppState>) -> Result<DagsPage, StatusCode> {
    let bag = state.dags.borrow().clone();
    let paused = state.store.paused_flags().await.map_err(internal)?;
    let mut rows = Vec::with_capacity(bag.dags.len());
    for dag in bag.dags.values() {
        let recent = service::latest_states(&state.store, &dag.id, 10)
            .await
            .map_err(internal)?;
        rows.push(DagRow {
            dag_id: dag.id.to_string(),
            tags: dag.tags.join(", "),
            schedule: dag.schedule_text.clone().unwrap_or_else(|| "-".into()),
            paused: paused.get(&dag.id).copied().unwrap_or(false),
            recent: recent.iter().map(|s| s.as_str()).collect(),
        });
    }
    let refresh = rows
        .iter()
        .any(|r| r.recent.iter().any(|s| *s == "running" || *s == "queued"));
    let errors = bag
        .errors
        .iter()
        .map(|e| crate::redact::text(&e.to_string()).into_owned())
        .collect();
    Ok(DagsPage {
        dags: rows,
        errors,
        refresh,
    })
}

fn internal(e: impl std::fmt::Display) -> StatusCode {
    tracing::error!(error = %e, "dashboard query failed");
    StatusCode::INTERNAL_SERVER_ERROR
}
