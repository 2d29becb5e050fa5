//! `/api/v2/dags`: list, get, pause/unpause, tasks, details, source.

use axum::extract::State;
use axum::response::Json;

use super::error::{ApiError, ApiResult, Body, Params, PathParams};
use super::models::{
    DagCollectionResponse, DagDetailsResponse, DagPatchBody, DagResponse, DagSourceResponse,
    TaskCollectionResponse, TaskResponse,
};
use super::page_limit;
use crate::service::DagQuery;
use crate::web::AppState;

/// Parameters of Airflow's DAG listing not implemented here (400 when given).
const UNSUPPORTED_DAG_FILTERS: [&str; 18] = [
    "owners",
    "dag_display_name_pattern",
    "has_import_errors",
    "last_dag_run_state",
    "bundle_name",
    "bundle_version",
    "has_asset_schedule",
    "asset_dependency",
    "dag_run_start_date_gte",
    "dag_run_start_date_gt",
    "dag_run_start_date_lte",
    "dag_run_start_date_lt",
    "dag_run_end_date_gte",
    "dag_run_end_date_gt",
    "dag_run_end_date_lte",
    "dag_run_end_date_lt",
    "dag_run_state",
    "is_favorite",
];

/// Airflow's `dag_id_pattern`: a SQL LIKE expression (`%` any text, `_` one character),
/// matched case-insensitively anywhere in the id (Airflow wraps it in `%…%`). Dynamic
/// programming over pattern × text, so a pattern full of `%` cannot blow up.
fn like(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = format!("%{}%", pattern.to_lowercase()).chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    // row[j]: the pattern so far matches the first j characters of the text.
    let mut row = vec![false; t.len() + 1];
    row[0] = true;
    for c in &p {
        let mut next = vec![false; t.len() + 1];
        for j in 0..=t.len() {
            next[j] = match c {
                '%' => row[j] || (j > 0 && next[j - 1]),
                '_' => j > 0 && row[j - 1],
                c => j > 0 && row[j - 1] && t[j - 1] == *c,
            };
        }
        row = next;
    }
    row[t.len()]
}

/// Lists DAGs.
#[utoipa::path(get, path = "/api/v2/dags", tag = "DAG",
    params(
        ("limit" = Option<u64>, Query, description = "At most this many (default 50, at most 100)"),
        ("offset" = Option<u64>, Query, description = "Skip this many"),
        ("tags" = Option<Vec<String>>, Query, description = "DAGs with any of these tags"),
        ("tags_match_mode" = Option<String>, Query, description = "`any` (default) or `all` of the tags"),
        ("paused" = Option<bool>, Query, description = "Only paused or only active DAGs"),
        ("dag_id_pattern" = Option<String>, Query, description = "SQL LIKE pattern on the id"),
        ("order_by" = Option<String>, Query, description = "`dag_id` or `dag_display_name`, `-` for descending"),
    ),
    responses(
        (status = 200, body = DagCollectionResponse),
        (status = 400, body = super::DetailBody),
        (status = 422, body = super::ValidationErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    params: Params,
) -> ApiResult<Json<DagCollectionResponse>> {
    params.refuse(&UNSUPPORTED_DAG_FILTERS)?;
    // Every DAG listed is loaded now, so none is stale: either value lists the same.
    let _ = params.boolean("exclude_stale")?;
    let limit = page_limit(&params)?;
    let offset = params.number("offset", i64::MAX as u64)?.unwrap_or(0);
    let descending = match params.one("order_by") {
        None | Some("dag_id" | "dag_display_name" | "") => false,
        Some("-dag_id" | "-dag_display_name") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "Ordering with '{other}' is disallowed or the attribute does not exist on the model"
            )));
        }
    };
    let all_tags = match params.one("tags_match_mode") {
        None | Some("any") => false,
        Some("all") => true,
        Some(_) => {
            return Err(ApiError::invalid(
                "query",
                "tags_match_mode",
                "must be any or all",
            ));
        }
    };
    let tags = params.all("tags");
    let pattern = params.one("dag_id_pattern").map(str::to_string);
    let query = DagQuery {
        tags: tags.clone(),
        paused: params.boolean("paused")?,
        ..DagQuery::default()
    };
    // Paged here: the pattern and the order are applied to the whole list first.
    let listing = state.service.list_dags(&query).await?;
    let mut dags: Vec<_> = listing
        .dags
        .iter()
        .filter(|s| {
            pattern
                .as_deref()
                .is_none_or(|p| like(p, s.dag.id.as_str()))
        })
        .filter(|s| !all_tags || tags.iter().all(|t| s.dag.tags.contains(t)))
        .collect();
    if descending {
        dags.reverse();
    }
    let total = dags.len() as u64;
    let page = dags
        .into_iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(limit)
        .map(DagResponse::of)
        .collect();
    Ok(Json(DagCollectionResponse {
        dags: page,
        total_entries: total,
    }))
}

/// One DAG.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}", tag = "DAG",
    params(("dag_id" = String, Path)),
    responses((status = 200, body = DagResponse), (status = 404, body = super::DetailBody)))]
pub async fn get(
    State(state): State<AppState>,
    PathParams(dag_id): PathParams<String>,
) -> ApiResult<Json<DagResponse>> {
    let summary = state.service.dag_summary(&dag_id, 0).await?;
    Ok(Json(DagResponse::of(&summary)))
}

/// Pauses or unpauses a DAG.
#[utoipa::path(patch, path = "/api/v2/dags/{dag_id}", tag = "DAG",
    params(("dag_id" = String, Path), ("update_mask" = Option<Vec<String>>, Query, description = "Only `is_paused`")),
    request_body = DagPatchBody,
    responses((status = 200, body = DagResponse), (status = 400, body = super::DetailBody),
        (status = 404, body = super::DetailBody), (status = 422, body = super::ValidationErrorBody)))]
pub async fn patch(
    State(state): State<AppState>,
    PathParams(dag_id): PathParams<String>,
    params: Params,
    Body(body): Body<DagPatchBody>,
) -> ApiResult<Json<DagResponse>> {
    if let Some(field) = params.all("update_mask").iter().find(|f| *f != "is_paused") {
        return Err(ApiError::BadRequest(format!(
            "Only `is_paused` field can be updated, not '{field}'"
        )));
    }
    state.service.set_paused(&dag_id, body.is_paused).await?;
    let summary = state.service.dag_summary(&dag_id, 0).await?;
    Ok(Json(DagResponse::of(&summary)))
}

/// A DAG with its details.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/details", tag = "DAG",
    params(("dag_id" = String, Path)),
    responses((status = 200, body = DagDetailsResponse), (status = 404, body = super::DetailBody)))]
pub async fn details(
    State(state): State<AppState>,
    PathParams(dag_id): PathParams<String>,
) -> ApiResult<Json<DagDetailsResponse>> {
    let summary = state.service.dag_summary(&dag_id, 0).await?;
    Ok(Json(DagDetailsResponse::of(&summary)))
}

/// A DAG's tasks.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/tasks", tag = "Task",
    params(("dag_id" = String, Path), ("order_by" = Option<String>, Query, description = "`task_id` or `-task_id`")),
    responses((status = 200, body = TaskCollectionResponse), (status = 400, body = super::DetailBody),
        (status = 404, body = super::DetailBody)))]
pub async fn tasks(
    State(state): State<AppState>,
    PathParams(dag_id): PathParams<String>,
    params: Params,
) -> ApiResult<Json<TaskCollectionResponse>> {
    let dag = state.service.dag(&dag_id)?;
    let mut tasks: Vec<TaskResponse> = (0..dag.tasks.len())
        .map(|i| TaskResponse::of(&dag, i))
        .collect();
    match params.one("order_by") {
        None | Some("") => {}
        Some("task_id") => tasks.sort_by(|a, b| a.task_id.cmp(&b.task_id)),
        Some("-task_id") => tasks.sort_by(|a, b| b.task_id.cmp(&a.task_id)),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "cannot order tasks by '{other}'"
            )));
        }
    }
    Ok(Json(TaskCollectionResponse {
        total_entries: tasks.len() as u64,
        tasks,
    }))
}

/// One task of a DAG (the same model as in the list).
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/tasks/{task_id}", tag = "Task",
    params(("dag_id" = String, Path), ("task_id" = String, Path)),
    responses((status = 200, body = TaskResponse), (status = 404, body = super::DetailBody)))]
pub async fn task(
    State(state): State<AppState>,
    PathParams((dag_id, task_id)): PathParams<(String, String)>,
) -> ApiResult<Json<TaskResponse>> {
    let dag = state.service.dag(&dag_id)?;
    let index = (0..dag.tasks.len())
        .find(|&i| dag.tasks[i].id.as_str() == task_id)
        .ok_or_else(|| ApiError::NotFound(format!("Task with id {task_id} not found")))?;
    Ok(Json(TaskResponse::of(&dag, index)))
}

/// A DAG's definition (YAML).
#[utoipa::path(get, path = "/api/v2/dagSources/{dag_id}", tag = "DagSource",
    params(("dag_id" = String, Path)),
    responses((status = 200, body = DagSourceResponse), (status = 404, body = super::DetailBody)))]
pub async fn source(
    State(state): State<AppState>,
    PathParams(dag_id): PathParams<String>,
) -> ApiResult<Json<DagSourceResponse>> {
    let view = state.service.dag_source(&dag_id, None).await?;
    Ok(Json(DagSourceResponse {
        content: Some(view.yaml),
        dag_display_name: dag_id.clone(),
        dag_id,
        version_number: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::like;

    #[test]
    fn like_patterns_follow_sql() {
        assert!(like("ex%", "example"));
        assert!(like("%AMP%", "example"));
        assert!(like("ex_mple", "example"));
        assert!(!like("ex_mple", "exmple"));
        assert!(like("amp", "example"));
        assert!(like("x%", "example"));
        assert!(!like("z", "example"));
        assert!(like("", "example"));
        let many = "%a".repeat(120);
        assert!(!like(&many, &"a".repeat(100)));
    }
}
