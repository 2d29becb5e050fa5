//! Import errors, health and version.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use chrono::Utc;

use super::error::{ApiResult, Params};
use super::models::{
    BaseInfoResponse, DagProcessorInfoResponse, DagsInfo, HealthInfoResponse,
    ImportErrorCollectionResponse, ImportErrorResponse, InstanceInfo, SchedulerInfoResponse,
    TriggererInfoResponse, VersionInfo,
};
use crate::web::AppState;

/// The DAG files that failed to load, as loaded now.
#[utoipa::path(get, path = "/api/v2/importErrors", tag = "ImportError",
    params(("limit" = Option<u64>, Query), ("offset" = Option<u64>, Query)),
    responses((status = 200, body = ImportErrorCollectionResponse), (status = 400, body = super::DetailBody), (status = 422, body = super::ValidationErrorBody)))]
pub async fn import_errors(
    State(state): State<AppState>,
    params: Params,
) -> ApiResult<Json<ImportErrorCollectionResponse>> {
    params.refuse(&["filename_pattern", "order_by"])?;
    let limit = super::page_limit(&params)?;
    let offset = params.number("offset", i64::MAX as u64)?.unwrap_or(0);
    let bag = state.service.bag();
    let now = Utc::now();
    let errors = bag
        .errors
        .iter()
        .enumerate()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(limit)
        .map(|(i, e)| ImportErrorResponse::of(i + 1, e, now))
        .collect();
    Ok(Json(ImportErrorCollectionResponse {
        import_errors: errors,
        total_entries: bag.errors.len() as u64,
    }))
}

/// Health of the state store and the scheduler (503 when either is down), with the loaded
/// DAGs and this instance's lease; also served at `/health`.
#[utoipa::path(get, path = "/api/v2/monitor/health", tag = "Monitor",
    responses((status = 200, body = HealthInfoResponse), (status = 503, body = HealthInfoResponse)))]
pub async fn health(State(state): State<AppState>) -> Response {
    let service = &state.service;
    let db = match service.ping().await {
        Ok(()) => "healthy",
        Err(e) => {
            tracing::warn!(error = %e, "health check: state database unavailable");
            "unhealthy"
        }
    };
    let engine_running = service.engine().is_some_and(|e| e.is_running());
    let heartbeat = service.engine().map(|e| e.last_heartbeat());
    let bag = service.bag();
    let status = |ok: bool| Some(if ok { "healthy" } else { "unhealthy" }.to_string());
    let body = HealthInfoResponse {
        metadatabase: BaseInfoResponse {
            status: status(db == "healthy"),
        },
        scheduler: SchedulerInfoResponse {
            status: status(engine_running),
            latest_scheduler_heartbeat: heartbeat.map(|t| t.to_rfc3339()),
        },
        dag_processor: DagProcessorInfoResponse {
            status: status(true),
            latest_dag_processor_heartbeat: Some(Utc::now().to_rfc3339()),
        },
        triggerer: TriggererInfoResponse {
            status: None,
            latest_triggerer_heartbeat: None,
        },
        dags: DagsInfo {
            loaded: bag.dags.len() as u64,
            import_errors: bag.errors.len() as u64,
        },
        instance: InstanceInfo {
            latest_lease_renewal: heartbeat,
        },
    };
    let code = if db == "healthy" && engine_running {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

/// The server's version.
#[utoipa::path(get, path = "/api/v2/version", tag = "Version",
    responses((status = 200, body = VersionInfo)))]
pub async fn version() -> Json<VersionInfo> {
    Json(VersionInfo {
        version: env!("CARGO_PKG_VERSION").into(),
        git_version: None,
    })
}
