//! `/api/v2/dags/{dag_id}/dagRuns`: trigger, list (`~`: every DAG), get, patch, clear.

use axum::extract::State;
use axum::response::Json;

use super::error::{ApiError, ApiResult, Body, Params, PathParams};
use super::models::{
    DagRunClearBody, DagRunCollectionResponse, DagRunPatchBody, DagRunPatchStates, DagRunResponse,
    TaskInstanceCollectionResponse, TriggerDagRunPostBody,
};
use super::page_limit;
use crate::ids::DagId;
use crate::service::{ClearRequest, RunChoice, RunField, RunOrder, RunQuery, TriggerRequest};
use crate::state::{RunState, RunType};
use crate::web::AppState;

/// Longest note accepted (Airflow's limit).
const MAX_NOTE: usize = 1000;

fn check_note(note: Option<&str>) -> ApiResult<()> {
    match note {
        Some(n) if n.chars().count() > MAX_NOTE => Err(ApiError::invalid(
            "body",
            "note",
            format!("must be at most {MAX_NOTE} characters"),
        )),
        _ => Ok(()),
    }
}

/// Triggers a run.
#[utoipa::path(post, path = "/api/v2/dags/{dag_id}/dagRuns", tag = "DagRun",
    params(("dag_id" = String, Path)),
    request_body = TriggerDagRunPostBody,
    responses((status = 200, body = DagRunResponse), (status = 400, body = super::DetailBody),
        (status = 404, body = super::DetailBody), (status = 409, body = super::DetailBody),
        (status = 422, body = super::ValidationErrorBody)))]
pub async fn trigger(
    State(state): State<AppState>,
    PathParams(dag_id): PathParams<String>,
    Body(body): Body<TriggerDagRunPostBody>,
) -> ApiResult<Json<DagRunResponse>> {
    if let Some(name) = body.unsupported() {
        return Err(ApiError::unsupported(name));
    }
    let conf = match body.conf {
        None | Some(serde_json::Value::Null) => serde_json::json!({}),
        Some(conf @ serde_json::Value::Object(_)) => conf,
        Some(_) => return Err(ApiError::invalid("body", "conf", "must be a JSON object")),
    };
    check_note(body.note.as_deref())?;
    if let Some(id) = &body.dag_run_id
        && !crate::ids::is_valid_run_id(id)
    {
        return Err(ApiError::invalid(
            "body",
            "dag_run_id",
            "must be 1 to 250 of letters, digits and _-.:+~ (not only dots)",
        ));
    }
    // Unknown DAG first: 404 rather than a complaint about the body.
    state.service.dag(&dag_id)?;
    let choice = RunChoice {
        run_id: body.dag_run_id,
        logical_date: body.logical_date,
        note: body.note,
    };
    let req = TriggerRequest { conf, owner: None };
    let run = state.service.trigger_chosen(&dag_id, req, choice).await?;
    Ok(Json(DagRunResponse::of(&run)))
}

fn run_order(text: Option<&str>) -> ApiResult<RunOrder> {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(RunOrder {
            field: RunField::Id,
            descending: false,
        });
    };
    let (name, descending) = match text.strip_prefix('-') {
        Some(rest) => (rest, true),
        None => (text, false),
    };
    let field = match name {
        "id" => RunField::Id,
        "run_id" | "dag_run_id" => RunField::RunId,
        "dag_id" => RunField::DagId,
        "state" => RunField::State,
        "logical_date" => RunField::LogicalDate,
        "run_after" => RunField::RunAfter,
        "start_date" => RunField::StartDate,
        "end_date" => RunField::EndDate,
        "queued_at" => RunField::QueuedAt,
        _ => {
            return Err(ApiError::BadRequest(format!(
                "Ordering with '{name}' is disallowed or the attribute does not exist on the model"
            )));
        }
    };
    Ok(RunOrder { field, descending })
}

fn states(params: &Params) -> ApiResult<Vec<RunState>> {
    params
        .all("state")
        .iter()
        .map(|s| {
            s.parse().map_err(|_| {
                ApiError::invalid("query", "state", format!("unknown run state '{s}'"))
            })
        })
        .collect()
}

fn run_types(params: &Params) -> ApiResult<Vec<RunType>> {
    let mut types = Vec::new();
    for t in params.all("run_type") {
        match t.as_str() {
            // Runs other runs triggered are `manual` to Airflow clients.
            "manual" => types.extend([RunType::Manual, RunType::Triggered]),
            "scheduled" => types.push(RunType::Scheduled),
            "backfill" => types.push(RunType::Backfill),
            "asset_triggered" => {}
            other => {
                return Err(ApiError::invalid(
                    "query",
                    "run_type",
                    format!("unknown run type '{other}'"),
                ));
            }
        }
    }
    if !params.all("run_type").is_empty() && types.is_empty() {
        // Only kinds of run that never exist here were asked for.
        return Ok(vec![]);
    }
    Ok(types)
}

/// The run dates a listing can be filtered on, by Airflow's parameter prefix.
const DATE_FILTERS: [(&str, RunField); 4] = [
    ("logical_date", RunField::LogicalDate),
    ("run_after", RunField::RunAfter),
    ("start_date", RunField::StartDate),
    ("end_date", RunField::EndDate),
];

/// Airflow's bound suffixes: (suffix, a lower bound, inclusive).
const BOUNDS: [(&str, bool, bool); 4] = [
    ("gte", true, true),
    ("gt", true, false),
    ("lte", false, true),
    ("lt", false, false),
];

/// Parameters of Airflow's run listing not implemented here (400 when given).
const UNSUPPORTED_RUN_FILTERS: [&str; 6] = [
    "updated_at_gte",
    "updated_at_gt",
    "updated_at_lte",
    "updated_at_lt",
    "dag_version",
    "triggering_user_name_pattern",
];

/// Lists runs of a DAG (`~`: of every DAG).
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/dagRuns", tag = "DagRun",
    params(("dag_id" = String, Path, description = "A DAG id, or `~` for all"),
        ("limit" = Option<u64>, Query), ("offset" = Option<u64>, Query),
        ("state" = Option<Vec<String>>, Query), ("run_type" = Option<Vec<String>>, Query),
        ("run_id_pattern" = Option<String>, Query, description = "SQL LIKE pattern matched anywhere in the run id"),
        ("logical_date_gte" = Option<String>, Query), ("logical_date_gt" = Option<String>, Query),
        ("logical_date_lte" = Option<String>, Query), ("logical_date_lt" = Option<String>, Query),
        ("run_after_gte" = Option<String>, Query), ("run_after_gt" = Option<String>, Query),
        ("run_after_lte" = Option<String>, Query), ("run_after_lt" = Option<String>, Query),
        ("start_date_gte" = Option<String>, Query), ("start_date_gt" = Option<String>, Query),
        ("start_date_lte" = Option<String>, Query), ("start_date_lt" = Option<String>, Query),
        ("end_date_gte" = Option<String>, Query), ("end_date_gt" = Option<String>, Query),
        ("end_date_lte" = Option<String>, Query), ("end_date_lt" = Option<String>, Query),
        ("order_by" = Option<String>, Query, description = "`id`, `run_id`, `dag_id`, `state`, `logical_date`, `run_after`, `start_date`, `end_date`, `queued_at`; `-` for descending")),
    responses((status = 200, body = DagRunCollectionResponse), (status = 400, body = super::DetailBody),
        (status = 404, body = super::DetailBody), (status = 422, body = super::ValidationErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    PathParams(dag_id): PathParams<String>,
    params: Params,
) -> ApiResult<Json<DagRunCollectionResponse>> {
    params.refuse(&UNSUPPORTED_RUN_FILTERS)?;
    let limit = page_limit(&params)?;
    let offset = params.number("offset", i64::MAX as u64)?.unwrap_or(0);
    let dags = match dag_id.as_str() {
        "~" => Vec::new(),
        id => {
            // A DAG no longer loaded still has its runs; one never seen is a 404.
            let known = state.service.dag(id).is_ok()
                || state
                    .service
                    .list_runs(&RunQuery {
                        dags: vec![DagId::new(id)],
                        limit: 0,
                        ..RunQuery::default()
                    })
                    .await?
                    .1
                    > 0;
            if !known {
                return Err(ApiError::NotFound(format!(
                    "The Dag with ID: `{id}` was not found"
                )));
            }
            vec![DagId::new(id)]
        }
    };
    let run_types = run_types(&params)?;
    if !params.all("run_type").is_empty() && run_types.is_empty() {
        return Ok(Json(DagRunCollectionResponse {
            dag_runs: Vec::new(),
            total_entries: 0,
        }));
    }
    let mut query = RunQuery {
        dags,
        states: states(&params)?,
        run_types,
        run_id_pattern: params.one("run_id_pattern").map(str::to_string),
        order: run_order(params.one("order_by"))?,
        limit: u32::try_from(limit).unwrap_or(u32::MAX),
        offset,
        ..RunQuery::default()
    };
    for (prefix, field) in DATE_FILTERS {
        for (suffix, after, inclusive) in BOUNDS {
            if let Some(at) = params.time(&format!("{prefix}_{suffix}"))? {
                query = match after {
                    true => query.after(field, at, inclusive),
                    false => query.before(field, at, inclusive),
                };
            }
        }
    }
    let (runs, total) = state.service.list_runs(&query).await?;
    Ok(Json(DagRunCollectionResponse {
        dag_runs: runs.iter().map(DagRunResponse::of).collect(),
        total_entries: total,
    }))
}

/// One run.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}", tag = "DagRun",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path)),
    responses((status = 200, body = DagRunResponse), (status = 404, body = super::DetailBody)))]
pub async fn get(
    State(state): State<AppState>,
    PathParams((dag_id, run_id)): PathParams<(String, String)>,
) -> ApiResult<Json<DagRunResponse>> {
    let run = state.service.run(&dag_id, &run_id).await?;
    Ok(Json(DagRunResponse::of(&run)))
}

/// Changes a run's note or state.
#[utoipa::path(patch, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}", tag = "DagRun",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path),
        ("update_mask" = Option<Vec<String>>, Query, description = "`state` and/or `note`")),
    request_body = DagRunPatchBody,
    responses((status = 200, body = DagRunResponse), (status = 400, body = super::DetailBody),
        (status = 404, body = super::DetailBody), (status = 409, body = super::DetailBody),
        (status = 422, body = super::ValidationErrorBody)))]
pub async fn patch(
    State(state): State<AppState>,
    PathParams((dag_id, run_id)): PathParams<(String, String)>,
    params: Params,
    Body(body): Body<DagRunPatchBody>,
) -> ApiResult<Json<DagRunResponse>> {
    check_note(body.note.as_ref().and_then(Option::as_deref))?;
    let mask = params.all("update_mask");
    if let Some(field) = mask
        .iter()
        .find(|f| !matches!(f.as_str(), "state" | "note"))
    {
        return Err(ApiError::BadRequest(format!(
            "Invalid field `{field}` in update mask"
        )));
    }
    let wants = |field: &str| mask.is_empty() || mask.iter().any(|f| f == field);
    let mut run = state.service.run(&dag_id, &run_id).await?;
    // As Airflow: a `note` in the body (even null) is written; with a mask naming `note`,
    // an absent one clears it too.
    if wants("note") && (body.note.is_some() || !mask.is_empty()) {
        let note = body.note.as_ref().and_then(Option::as_deref);
        run = state.service.set_run_note(&run, note).await?;
    }
    if wants("state")
        && let Some(target) = body.state
    {
        let target = match target {
            DagRunPatchStates::Queued => RunState::Queued,
            DagRunPatchStates::Success => RunState::Success,
            DagRunPatchStates::Failed => RunState::Failed,
        };
        run = state.service.set_run_state(run, target).await?;
    }
    Ok(Json(DagRunResponse::of(&run)))
}

/// Clears a finished run: its tasks (or the failed ones and what is downstream) run again.
/// A dry run lists the task instances it would clear.
#[utoipa::path(post, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/clear", tag = "DagRun",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path)),
    request_body = DagRunClearBody,
    responses((status = 200, description = "The run (or, for a dry run, what would be cleared)",
            body = ClearDagRunResponse),
        (status = 400, body = super::DetailBody), (status = 404, body = super::DetailBody), (status = 409, body = super::DetailBody),
        (status = 422, body = super::ValidationErrorBody)))]
pub async fn clear(
    State(state): State<AppState>,
    PathParams((dag_id, run_id)): PathParams<(String, String)>,
    Body(body): Body<DagRunClearBody>,
) -> ApiResult<Json<ClearDagRunResponse>> {
    if body.run_on_latest_version == Some(true) {
        return Err(ApiError::unsupported("run_on_latest_version"));
    }
    let run = state.service.run(&dag_id, &run_id).await?;
    let req = ClearRequest {
        tasks: None,
        only_failed: body.only_failed,
        downstream: true,
        dry_run: body.dry_run,
    };
    let cleared = state.service.clear_selected(run, &req).await?;
    if body.dry_run {
        let tis = super::task_instances::of_tasks(&state, &cleared.run, &cleared.tasks).await?;
        return Ok(Json(ClearDagRunResponse::DryRun(tis)));
    }
    Ok(Json(ClearDagRunResponse::Run(Box::new(
        DagRunResponse::of(&cleared.run),
    ))))
}

/// What clearing a run answers: the run, or (dry run) the task instances it would clear.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ClearDagRunResponse {
    /// A dry run.
    DryRun(TaskInstanceCollectionResponse),
    /// The run cleared.
    Run(Box<DagRunResponse>),
}
