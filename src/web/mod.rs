//! The HTTP front-end of `serve`: the DAG list page, health and version endpoints (Airflow's
//! paths), and the wake-up the CLI sends after it changes the store. Handlers stay thin:
//! extract → call the service, engine or store → respond. The full dashboard and the
//! Airflow-compatible REST API build on this router.

mod pages;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde_json::json;
use tokio::sync::watch;

use crate::dag::DagBag;
use crate::scheduler::EngineHandle;
use crate::store::Store;

/// Request bodies larger than this are refused.
const BODY_LIMIT: usize = 1024 * 1024;

/// Path the CLI posts to after queueing a run, pausing a DAG, etc.
pub const WAKE_PATH: &str = "/internal/wake";

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The state store.
    pub store: Store,
    /// The scheduler.
    pub engine: EngineHandle,
    /// The current DAG bag (replaced on reload).
    pub dags: watch::Receiver<Arc<DagBag>>,
}

/// Builds the router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(pages::dags))
        .route("/health", get(health))
        .route("/api/v2/monitor/health", get(health))
        .route("/api/v2/version", get(version))
        .route(WAKE_PATH, post(wake))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

async fn health(State(state): State<AppState>) -> Response {
    let db = match state.store.ping().await {
        Ok(()) => "healthy",
        Err(e) => {
            tracing::warn!(error = %e, "health check: state database unavailable");
            "unhealthy"
        }
    };
    let body = json!({
        "metadatabase": {"status": db},
        "scheduler": {
            "status": if state.engine.is_running() { "healthy" } else { "unhealthy" },
            "latest_scheduler_heartbeat": state.engine.last_heartbeat(),
        },
        "dag_processor": {"status": "healthy", "latest_dag_processor_heartbeat": Utc::now()},
        "dags": {"loaded": state.dags.borrow().dags.len(), "import_errors": state.dags.borrow().errors.len()},
    });
    let status = if db == "healthy" && state.engine.is_running() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn version() -> Json<serde_json::Value> {
    Json(json!({"version": env!("CARGO_PKG_VERSION"), "git_version": null}))
}

async fn wake(State(state): State<AppState>) -> StatusCode {
    match state.engine.wake().await {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}
