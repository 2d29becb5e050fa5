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

/// Which logical dates that already have a run a backfill runs again (Airflow 3's
/// `reprocess_behavior`). Runs still queued or running are never touched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reprocess {
    /// Skip every date that has a run.
    #[default]
    None,
    /// Run again the dates whose run failed.
    Failed,
    /// Run again every date whose run finished (Airflow's `completed`).
    All,
}

/// What a backfill asks for.
#[derive(Clone, Copy, Debug)]
pub struct BackfillRequest<'a> {
    /// First logical date (a date or RFC 3339, in the DAG's time zone).
    pub from: &'a str,
    /// Last logical date.
    pub to: &'a str,
    /// Dates with a run to run again.
    pub reprocess: Reprocess,
    /// Refuse the backfill if its range holds more intervals than this.
    pub max_runs: usize,
    /// Only say what would be done.
    pub dry_run: bool,
}

/// What a backfill did (or with `dry_run` would do), by logical date.
#[derive(Debug, Default, serde::Serialize)]
pub struct BackfillReport {
    /// Nothing was written.
    pub dry_run: bool,
    /// Dates that got a new backfill run.
    pub created: Vec<DateTime<Utc>>,
    /// Dates whose existing run was cleared to run again (`--reprocess`).
    pub reprocessed: Vec<DateTime<Utc>>,
    /// Dates left alone because they have a run.
    pub skipped: Vec<DateTime<Utc>>,
}

/// Backfills a DAG like Airflow 3: one run per complete schedule interval whose logical
/// date is in `[from, to]` and within the DAG's start and end dates; dates that have a
/// run are skipped unless `reprocess` says otherwise; every change is made in one
/// transaction; a range of more than `max_runs` intervals is refused before anything is
/// written.
pub async fn backfill(
    store: &Store,
    bag: &DagBag,
    dag_id: &str,
    req: BackfillRequest<'_>,
    now: DateTime<Utc>,
) -> ServiceResult<BackfillReport> {
    let dag = dag(bag, dag_id)?;
    let Some(timetable) = &dag.timetable else {
        return Err(ServiceError::Invalid(format!(
            "DAG '{dag_id}' has no schedule to backfill"
        )));
    };
    let parse = |flag: &str, text: &str| -> ServiceResult<DateTime<Utc>> {
        parse_date(text, dag.timezone).map_err(|e| ServiceError::Invalid(format!("--{flag}: {e}")))
    };
    let (from, to) = (parse("from", req.from)?, parse("to", req.to)?);
    if from > to {
        return Err(ServiceError::Invalid("--from is after --to".into()));
    }
    let intervals = timetable.backfill_intervals(from, to, now, req.max_runs);
    if intervals.len() > req.max_runs {
        // Within the DAG's end date, and only intervals that have ended by now.
        let until = timetable.end_date.map_or(to, |e| to.min(e)).min(now);
        let about = estimate_count(&intervals, until)
            .map(|n| format!(" (about {n})"))
            .unwrap_or_default();
        return Err(ServiceError::Invalid(format!(
            "backfill of '{dag_id}' from {} to {} covers more than {} intervals{about}; \
             narrow the range or pass --max-runs",
            req.from, req.to, req.max_runs
        )));
    }
    let (Some(first), Some(last)) = (intervals.first(), intervals.last()) else {
        return Ok(BackfillReport {
            dry_run: req.dry_run,
            ..BackfillReport::default()
        });
    };
    let existing: std::collections::HashMap<DateTime<Utc>, RunRow> = store
        .interval_runs(&dag.id, first.start, last.start)
        .await?
        .into_iter()
        .map(|r| (r.logical_date, r))
        .collect();
    let all_tasks: Vec<(TaskId, u32)> = dag
        .tasks
        .iter()
        .map(|t| (t.id.clone(), t.retry.max_tries()))
        .collect();
    let mut report = BackfillReport {
        dry_run: req.dry_run,
        ..BackfillReport::default()
    };
    let mut new_runs = Vec::new();
    let mut reprocess = Vec::new();
    for interval in &intervals {
        match existing.get(&interval.start) {
            None => new_runs.push(NewRun {
                dag_id: dag.id.clone(),
                run_type: RunType::Backfill,
                interval_start: interval.start,
                interval_end: interval.end,
                conf: serde_json::json!({}),
                parent: None,
                owner: None,
                version: Some(dag.version()),
            }),
            Some(run) if wants_again(req.reprocess, run.state) => {
                report.reprocessed.push(interval.start);
                reprocess.push((run.key, all_tasks.clone()));
            }
            Some(_) => report.skipped.push(interval.start),
        }
    }
    if req.dry_run {
        report.created = new_runs.iter().map(|r| r.interval_start).collect();
        return Ok(report);
    }
    store.ensure_dags([&dag.id]).await?;
    let keys = store.create_backfill(&new_runs, &reprocess).await?;
    for (run, key) in new_runs.iter().zip(keys) {
        // A date the scheduler took since `existing` was read keeps the scheduler's run.
        match key {
            Some(_) => report.created.push(run.interval_start),
            None => report.skipped.push(run.interval_start),
        }
    }
    report.skipped.sort_unstable();
    Ok(report)
}

/// Whether `--reprocess` runs a date again given its run's state.
fn wants_again(reprocess: Reprocess, state: RunState) -> bool {
    match reprocess {
        Reprocess::None => false,
        Reprocess::Failed => state == RunState::Failed,
        Reprocess::All => state.is_finished(),
    }
}

/// Roughly how many intervals start between the first of `sample` and `until`, from the
/// sample's average spacing (an estimate for the refusal message; never walks the range).
fn estimate_count(sample: &[crate::dag::DataInterval], until: DateTime<Utc>) -> Option<i64> {
    let (first, last) = (sample.first()?, sample.last()?);
    let steps = i64::try_from(sample.len()).ok()?.checked_sub(1)?;
    let spacing = (last.start - first.start)
        .num_seconds()
        .checked_div(steps)?;
    let span = (until - first.start).num_seconds();
    span.checked_div(spacing)?.checked_add(1)
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

#[cfg(test)]
mod tests;
