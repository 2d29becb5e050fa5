//! HTML pages (askama templates in `templates/`): for now the DAG list, which refreshes
//! itself while runs are active. Values are HTML-escaped by askama.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::http::StatusCode;

use crate::service::DagQuery;
use crate::web::AppState;

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
    let query = DagQuery {
        recent_runs: 10,
        ..DagQuery::default()
    };
    let listing = state.service.list_dags(&query).await.map_err(internal)?;
    let rows: Vec<DagRow> = listing
        .dags
        .iter()
        .map(|d| DagRow {
            dag_id: d.dag.id.to_string(),
            tags: d.dag.tags.join(", "),
            schedule: d.dag.schedule_text.clone().unwrap_or_else(|| "-".into()),
            paused: d.paused,
            recent: d.recent.iter().map(|r| r.state.as_str()).collect(),
        })
        .collect();
    let refresh = rows
        .iter()
        .any(|r| r.recent.iter().any(|s| *s == "running" || *s == "queued"));
    let errors = listing
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
