//! Operations shared by the CLI and the web API: trigger, pause, clear, backfill, and the
//! lookups behind list/show. Front-ends call these; these call the store.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use crate::dag::build::parse_date;
use crate::dag::{Dag, DagBag};
use crate::ids::{DagId, RunKey, TaskId};
use crate::state::{RunState, RunType, TaskState};
use crate::store::{
    CleanBatch, CleanCounts, NewRun, Owner, RunRow, Store, StoreError, TaskInstanceRow,
};

/// Errors a user can act on (mapped to exit codes by the CLI and to 4xx by the web).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No valid DAG with that id.
    #[error("DAG '{0}' is not loaded (see `orchestrator dags list` and `dags validate`)")]
    UnknownDag(String),
    /// No run with that id.
    #[error("no run with id '{0}'")]
    UnknownRun(String),
    /// The run id exists for several DAGs.
    #[error("run id '{0}' exists in several DAGs ({1}); pass --dag")]
    AmbiguousRun(String, String),
    /// Bad user input.
    #[error("{0}")]
    Invalid(String),
    /// Not possible in the current state.
    #[error("{0}")]
    Conflict(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Result alias.
pub type ServiceResult<T> = Result<T, ServiceError>;

/// A run with its task instances.
#[derive(Debug, serde::Serialize)]
pub struct RunDetail {
    /// The run.
    #[serde(flatten)]
    pub run: RunRow,
    /// Its task instances.
    pub task_instances: Vec<TaskInstanceRow>,
}

/// Looks a DAG up in the bag.
pub fn dag<'a>(bag: &'a DagBag, id: &str) -> ServiceResult<&'a std::sync::Arc<Dag>> {
    bag.get(id)
        .ok_or_else(|| ServiceError::UnknownDag(id.to_string()))
}

/// Parses a run's conf: a JSON object.
pub fn parse_conf(text: Option<&str>) -> ServiceResult<serde_json::Value> {
    let Some(text) = text else {
        return Ok(serde_json::json!({}));
    };
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v @ serde_json::Value::Object(_)) => Ok(v),
        Ok(_) => Err(ServiceError::Invalid(
            "--conf must be a JSON object, like '{\"key\": 1}'".into(),
        )),
        Err(e) => Err(ServiceError::Invalid(format!(
            "--conf is not valid JSON: {e}"
        ))),
    }
}

/// Queues a manual run. `owner` reserves it for a foreground `run`.
pub async fn trigger(
    store: &Store,
    bag: &DagBag,
    dag_id: &str,
    conf: serde_json::Value,
    owner: Option<Owner>,
) -> ServiceResult<RunRow> {
    let dag = dag(bag, dag_id)?;
    store.ensure_dags([&dag.id]).await?;
    let now = Utc::now();
    let new = NewRun {
        dag_id: dag.id.clone(),
        run_type: RunType::Manual,
        interval_start: now,
        interval_end: now,
        conf,
        parent: None,
        owner,
        version: Some(dag.version()),
    };
    store
        .insert_run(&new)
        .await?
        .ok_or_else(|| ServiceError::Conflict("run id already taken".into()))
}

/// Pauses or unpauses a DAG; returns the previous value.
pub async fn set_paused(
    store: &Store,
    bag: &DagBag,
    dag_id: &str,
    paused: bool,
) -> ServiceResult<bool> {
    let dag = dag(bag, dag_id)?;
    Ok(store.set_paused(&dag.id, paused).await?)
}

/// Finds one run by run id (and DAG when given).
pub async fn find_run(store: &Store, run_id: &str, dag: Option<&str>) -> ServiceResult<RunRow> {
    let dag = dag.map(DagId::new);
    let mut rows = store.runs_by_run_id(run_id, dag.as_ref()).await?;
    match rows.len() {
        0 => Err(ServiceError::UnknownRun(run_id.to_string())),
        1 => Ok(rows.remove(0)),
        _ => {
            let dags: Vec<String> = rows.iter().map(|r| r.dag_id.to_string()).collect();
            Err(ServiceError::AmbiguousRun(
                run_id.to_string(),
                dags.join(", "),
            ))
        }
    }
}

/// A run and its task instances.
pub async fn run_detail(store: &Store, run: RunRow) -> ServiceResult<RunDetail> {
    let task_instances = store.task_instances(run.key).await?;
    Ok(RunDetail {
        run,
        task_instances,
    })
}

/// What `clear` did.
#[derive(Debug, serde::Serialize)]
pub struct Cleared {
    /// The run, queued again.
    pub run: RunRow,
    /// Task ids reset.
    pub tasks: Vec<TaskId>,
}

/// Resets a finished run's tasks (all, or the failed ones and everything downstream of
/// them) and queues the run again. Cleared tasks get their full retries back.
pub async fn clear(
    store: &Store,
    bag: &DagBag,
    run: RunRow,
    only_failed: bool,
) -> ServiceResult<Cleared> {
    if !run.state.is_finished() {
        return Err(ServiceError::Conflict(format!(
            "run '{}' is {}; only finished runs can be cleared",
            run.run_id, run.state
        )));
    }
    let dag = dag(bag, run.dag_id.as_str())?;
    let tis = store.task_instances(run.key).await?;
    let state_of = |id: &TaskId| tis.iter().find(|t| &t.task_id == id).and_then(|t| t.state);
    let mut chosen: HashSet<usize> = HashSet::new();
    let mut stack: Vec<usize> = (0..dag.tasks.len())
        .filter(|&i| !only_failed || state_of(&dag.tasks[i].id).is_some_and(TaskState::is_failure))
        .collect();
    while let Some(i) = stack.pop() {
        if chosen.insert(i) {
            stack.extend(dag.tasks[i].downstream.iter().copied());
        }
    }
    let mut indices: Vec<usize> = chosen.into_iter().collect();
    indices.sort_unstable();
    let tasks: Vec<(TaskId, u32)> = indices
        .iter()
        .map(|&i| (dag.tasks[i].id.clone(), dag.tasks[i].retry.max_tries()))
        .collect();
    if tasks.is_empty() {
        return Err(ServiceError::Conflict(format!(
            "run '{}' has no failed tasks to clear",
            run.run_id
        )));
    }
    store.clear_run(run.key, &tasks).await?;
    let run = store
        .run(run.key)
        .await?
        .ok_or_else(|| ServiceError::UnknownRun(run.run_id.to_string()))?;
    Ok(Cleared {
        run,
        tasks: tasks.into_iter().map(|(t, _)| t).collect(),
    })
}

/// Queues one backfill run per schedule interval whose logical date is in `[from, to]`.
pub async fn backfill(
    store: &Store,
    bag: &DagBag,
    dag_id: &str,
    from: &str,
    to: &str,
) -> ServiceResult<Vec<RunRow>> {
    let dag = dag(bag, dag_id)?;
    let Some(timetable) = &dag.timetable else {
        return Err(ServiceError::Invalid(format!(
            "DAG '{dag_id}' has no schedule to backfill"
        )));
    };
    let parse = |flag: &str, text: &str| -> ServiceResult<DateTime<Utc>> {
        parse_date(text, dag.timezone).map_err(|e| ServiceError::Invalid(format!("--{flag}: {e}")))
    };
    let (from, to) = (parse("from", from)?, parse("to", to)?);
    if from > to {
        return Err(ServiceError::Invalid("--from is after --to".into()));
    }
    store.ensure_dags([&dag.id]).await?;
    let mut created = Vec::new();
    for interval in timetable.intervals_between(from, to) {
        let new = NewRun {
            dag_id: dag.id.clone(),
            run_type: RunType::Backfill,
            interval_start: interval.start,
            interval_end: interval.end,
            conf: serde_json::json!({}),
            parent: None,
            owner: None,
            version: Some(dag.version()),
        };
        created.extend(store.insert_run(&new).await?);
    }
    Ok(created)
}

/// What `db clean` deleted, or with `dry_run` would delete.
#[derive(Debug, serde::Serialize)]
pub struct CleanReport {
    /// Runs that ended before this time went (with their triggered runs).
    pub before: DateTime<Utc>,
    /// Nothing was deleted; `rows` says what would have been.
    pub dry_run: bool,
    /// Rows per table.
    pub rows: CleanCounts,
}

/// Deletes finished runs that ended before `before` (`2024-01-01`, in UTC, or RFC 3339)
/// with their task instances, tries and logs, in short batches; `dry_run` only counts.
pub async fn clean_db(store: &Store, before: &str, dry_run: bool) -> ServiceResult<CleanReport> {
    let before = parse_date(before, chrono_tz::Tz::UTC)
        .map_err(|e| ServiceError::Invalid(format!("--before: {e}")))?;
    let rows = store.clean(before, dry_run, CleanBatch::default()).await?;
    Ok(CleanReport {
        before,
        dry_run,
        rows,
    })
}

/// Child runs of a run (for `runs show`).
pub async fn children(store: &Store, key: RunKey) -> ServiceResult<Vec<RunRow>> {
    Ok(store.child_runs(key).await?)
}

/// The latest run state per DAG (for `dags list`).
pub async fn latest_states(store: &Store, dag: &DagId, n: u32) -> ServiceResult<Vec<RunState>> {
    Ok(store
        .list_runs(Some(dag), None, n)
        .await?
        .into_iter()
        .map(|r| r.state)
        .collect())
}
