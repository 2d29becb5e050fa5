//! Task instances of a run (list, get, mark), clearing them, and their logs (JSON lines
//! with a continuation token, or `text/plain`).

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Json, Response};

use super::error::{ApiError, ApiResult, Body, Params, PathParams};
use super::models::{
    ClearTaskInstancesBody, PatchTaskInstanceBody, StructuredLogMessage,
    TaskInstanceCollectionResponse, TaskInstanceResponse, TaskInstancesLogResponse,
};
use crate::ids::TaskId;
use crate::service::{ClearRequest, RunRow, TaskInstanceRow};
use crate::state::TaskState;
use crate::web::AppState;

/// Most log lines one response carries; the continuation token fetches the rest.
const LOG_PAGE: u32 = 5000;

/// The task instances `tasks` of `run` (the unstarted ones without status).
pub async fn of_tasks(
    state: &AppState,
    run: &RunRow,
    tasks: &[TaskId],
) -> ApiResult<TaskInstanceCollectionResponse> {
    let detail = state.service.run_detail(run.clone()).await?;
    let dag = state.service.bag().get(run.dag_id.as_str()).cloned();
    let items: Vec<TaskInstanceResponse> = tasks
        .iter()
        .map(|t| {
            let row = detail
                .task_instances
                .iter()
                .find(|ti| &ti.task_id == t)
                .cloned()
                .unwrap_or_else(|| TaskInstanceRow::unstarted(t));
            TaskInstanceResponse::of(run, &row, dag.as_deref())
        })
        .collect();
    Ok(TaskInstanceCollectionResponse {
        total_entries: items.len() as u64,
        task_instances: items,
    })
}

/// Every task instance of a run: those created, then the DAG's other tasks without status.
async fn all_of(state: &AppState, run: &RunRow) -> ApiResult<Vec<TaskInstanceResponse>> {
    let detail = state.service.run_detail(run.clone()).await?;
    let dag = state.service.bag().get(run.dag_id.as_str()).cloned();
    let mut rows = detail.task_instances;
    if let Some(dag) = &dag {
        for task in &dag.tasks {
            if !rows.iter().any(|r| r.task_id == task.id) {
                rows.push(TaskInstanceRow::unstarted(&task.id));
            }
        }
    }
    Ok(rows
        .iter()
        .map(|r| TaskInstanceResponse::of(run, r, dag.as_deref()))
        .collect())
}

/// Parameters of Airflow's task instance listing not implemented here (400 when given).
const UNSUPPORTED_TI_FILTERS: [&str; 33] = [
    "task_id",
    "run_after_gte",
    "run_after_gt",
    "run_after_lte",
    "run_after_lt",
    "logical_date_gte",
    "logical_date_gt",
    "logical_date_lte",
    "logical_date_lt",
    "start_date_gte",
    "start_date_gt",
    "start_date_lte",
    "start_date_lt",
    "end_date_gte",
    "end_date_gt",
    "end_date_lte",
    "end_date_lt",
    "updated_at_gte",
    "updated_at_gt",
    "updated_at_lte",
    "updated_at_lt",
    "duration_gte",
    "duration_gt",
    "duration_lte",
    "duration_lt",
    "task_display_name_pattern",
    "task_group_id",
    "pool",
    "queue",
    "executor",
    "version_number",
    "try_number",
    "operator",
];

/// Lists the task instances of a run.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances", tag = "TaskInstance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path),
        ("state" = Option<Vec<String>>, Query), ("limit" = Option<u64>, Query), ("offset" = Option<u64>, Query)),
    responses((status = 200, body = TaskInstanceCollectionResponse), (status = 400, body = super::DetailBody),
        (status = 404, body = super::DetailBody), (status = 422, body = super::ValidationErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    PathParams((dag_id, run_id)): PathParams<(String, String)>,
    params: Params,
) -> ApiResult<Json<TaskInstanceCollectionResponse>> {
    params.refuse(&UNSUPPORTED_TI_FILTERS)?;
    if params.one("map_index").is_some_and(|m| m.trim() != "-1") {
        return Err(ApiError::unsupported("map_index other than -1"));
    }
    if params.one("order_by").is_some_and(|o| !o.is_empty()) {
        return Err(ApiError::unsupported("order_by"));
    }
    let limit = super::page_limit(&params)?;
    let offset = params.number("offset", i64::MAX as u64)?.unwrap_or(0);
    let mut wanted = Vec::new();
    for s in params.all("state") {
        let state = match s.as_str() {
            "none" | "no_status" => None,
            other => Some(other.parse::<TaskState>().map_err(|_| {
                ApiError::invalid("query", "state", format!("unknown task state '{other}'"))
            })?),
        };
        wanted.push(state);
    }
    let run = state.service.run(&dag_id, &run_id).await?;
    let mut items = all_of(&state, &run).await?;
    if !wanted.is_empty() {
        items.retain(|t| wanted.contains(&t.state));
    }
    let total = items.len() as u64;
    let page = items
        .into_iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(limit)
        .collect();
    Ok(Json(TaskInstanceCollectionResponse {
        task_instances: page,
        total_entries: total,
    }))
}

/// One task instance.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}", tag = "TaskInstance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path)),
    responses((status = 200, body = TaskInstanceResponse), (status = 404, body = super::DetailBody)))]
pub async fn get(
    State(state): State<AppState>,
    PathParams((dag_id, run_id, task_id)): PathParams<(String, String, String)>,
) -> ApiResult<Json<TaskInstanceResponse>> {
    let run = state.service.run(&dag_id, &run_id).await?;
    let logs = state.service.task_logs(&run, &task_id, None).await?;
    let dag = state.service.bag().get(run.dag_id.as_str()).cloned();
    Ok(Json(TaskInstanceResponse::of(
        &run,
        &logs.instance,
        dag.as_deref(),
    )))
}

/// Marks a task instance of a finished run `success` or `failed`.
#[utoipa::path(patch, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}", tag = "TaskInstance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path)),
    request_body = PatchTaskInstanceBody,
    responses((status = 200, body = TaskInstanceCollectionResponse), (status = 400, body = super::DetailBody),
        (status = 404, body = super::DetailBody), (status = 409, body = super::DetailBody),
        (status = 422, body = super::ValidationErrorBody)))]
pub async fn patch(
    State(state): State<AppState>,
    PathParams((dag_id, run_id, task_id)): PathParams<(String, String, String)>,
    params: Params,
    Body(body): Body<PatchTaskInstanceBody>,
) -> ApiResult<Json<TaskInstanceCollectionResponse>> {
    if let Some(name) = body.unsupported() {
        return Err(ApiError::unsupported(name));
    }
    if params.one("map_index").is_some_and(|m| m.trim() != "-1") {
        return Err(ApiError::unsupported("map_index other than -1"));
    }
    // Only the state can change here: a mask naming anything else would be ignored.
    if let Some(field) = params
        .all("update_mask")
        .into_iter()
        .find(|f| f != "new_state")
    {
        return Err(ApiError::unsupported(&format!("update_mask {field}")));
    }
    if body.note.is_some() {
        return Err(ApiError::BadRequest(
            "task instance notes are not stored here".into(),
        ));
    }
    let Some(new_state) = body.new_state else {
        return Err(ApiError::BadRequest(
            "nothing to change: give new_state".into(),
        ));
    };
    let target = match new_state.as_str() {
        "success" => TaskState::Success,
        "failed" => TaskState::Failed,
        other => {
            return Err(ApiError::invalid(
                "body",
                "new_state",
                format!("a task instance can be set to success or failed, not '{other}'"),
            ));
        }
    };
    let run = state.service.run(&dag_id, &run_id).await?;
    let marked = state.service.mark(run, &task_id, target).await?;
    Ok(Json(
        of_tasks(&state, &marked.run, &[marked.task_id]).await?,
    ))
}

/// Clears task instances of a finished run (`dag_run_id` is required here).
#[utoipa::path(post, path = "/api/v2/dags/{dag_id}/clearTaskInstances", tag = "TaskInstance",
    params(("dag_id" = String, Path)),
    request_body = ClearTaskInstancesBody,
    responses((status = 200, body = TaskInstanceCollectionResponse), (status = 400, body = super::DetailBody),
        (status = 404, body = super::DetailBody), (status = 409, body = super::DetailBody),
        (status = 422, body = super::ValidationErrorBody)))]
pub async fn clear(
    State(state): State<AppState>,
    PathParams(dag_id): PathParams<String>,
    Body(body): Body<ClearTaskInstancesBody>,
) -> ApiResult<Json<TaskInstanceCollectionResponse>> {
    if let Some(name) = body.unsupported() {
        return Err(ApiError::unsupported(name));
    }
    state.service.dag(&dag_id)?;
    let Some(run_id) = body.dag_run_id else {
        return Err(ApiError::BadRequest(
            "dag_run_id is required: task instances are cleared one run at a time here".into(),
        ));
    };
    let run = state.service.run(&dag_id, &run_id).await?;
    let req = ClearRequest {
        tasks: body.task_ids,
        only_failed: body.only_failed,
        downstream: body.include_downstream,
        dry_run: body.dry_run,
    };
    let cleared = state.service.clear_selected(run, &req).await?;
    Ok(Json(of_tasks(&state, &cleared.run, &cleared.tasks).await?))
}

/// The continuation token: the sequence number of the last line returned.
fn parse_token(token: Option<&str>) -> ApiResult<u64> {
    match token {
        None | Some("") => Ok(0),
        Some(t) => t.parse().map_err(|_| {
            ApiError::BadRequest("the continuation token is not one this server gave".into())
        }),
    }
}

/// A try's log: JSON lines after the continuation token (`token`), or the whole log as
/// `text/plain` when the client accepts it and not JSON.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/logs/{try_number}", tag = "TaskInstance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path),
        ("try_number" = u32, Path), ("full_content" = Option<bool>, Query),
        ("map_index" = Option<i64>, Query, description = "Only -1"),
        ("token" = Option<String>, Query, description = "A continuation token from an earlier answer")),
    responses((status = 200, description = "The lines (JSON) or the log (`text/plain`)",
            content((TaskInstancesLogResponse = "application/json"), (String = "text/plain"))),
        (status = 400, body = super::DetailBody), (status = 404, body = super::DetailBody),
        (status = 422, body = super::ValidationErrorBody)))]
pub async fn logs(
    State(state): State<AppState>,
    PathParams((dag_id, run_id, task_id, try_number)): PathParams<(String, String, String, u32)>,
    params: Params,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let _ = params.boolean("full_content")?;
    if let Some(m) = params.one("map_index")
        && m.trim() != "-1"
    {
        return Err(ApiError::NotFound(format!(
            "no mapped task instance with map_index {m}"
        )));
    }
    let after = parse_token(params.one("token"))?;
    let run = state.service.run(&dag_id, &run_id).await?;
    let logs = state
        .service
        .task_logs(&run, &task_id, Some(try_number))
        .await?;
    let task = logs.instance.task_id.clone();
    let plain = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("text/plain") && !a.contains("application/json"));
    if plain {
        let running = logs
            .tries
            .iter()
            .find(|t| t.try_number == logs.try_number)
            .is_none_or(|t| t.end_date.is_none());
        let lines = state.service.log(&run, &task, logs.try_number).await?;
        let text: String = lines
            .iter()
            .filter(|l| l.seq > after)
            .map(|l| format!("[{}] {} - {}\n", l.ts.to_rfc3339(), l.level, l.message))
            .collect();
        let mut response =
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response();
        // As Airflow's streamed (NDJSON) answer: the token in a header, only while the
        // try may still write.
        if running {
            let last = lines.last().map_or(after, |l| l.seq.max(after));
            if let Ok(value) = header::HeaderValue::from_str(&last.to_string()) {
                response
                    .headers_mut()
                    .insert("airflow-continuation-token", value);
            }
        }
        return Ok(response);
    }
    let chunk = state
        .service
        .log_chunk(&run, &task, logs.try_number, after, LOG_PAGE)
        .await?;
    let body = TaskInstancesLogResponse {
        content: chunk
            .lines
            .into_iter()
            .map(|l| StructuredLogMessage {
                event: l.message,
                timestamp: Some(l.ts),
                level: l.level.to_string(),
                seq: l.seq,
            })
            .collect(),
        // Null ends a client's follow loop (Airflow 3): only once nothing can follow.
        continuation_token: (!chunk.complete).then(|| chunk.last_seq.to_string()),
    };
    Ok(Json(body).into_response())
}
