//! Backfills (Airflow 3's rules) and `db clean`.

use chrono::{DateTime, Utc};

use super::{Service, ServiceError, ServiceResult};
use crate::dag::build::parse_date;
use crate::ids::TaskId;
use crate::state::{RunState, RunType};
use crate::store::{CleanBatch, CleanCounts, NewRun, RunRow};

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
impl Service {
    pub async fn backfill(
        &self,
        dag_id: &str,
        req: BackfillRequest<'_>,
        now: DateTime<Utc>,
    ) -> ServiceResult<BackfillReport> {
        let store = &self.store;
        let dag = self.dag(dag_id)?;
        let Some(timetable) = &dag.timetable else {
            return Err(ServiceError::Invalid(format!(
                "DAG '{dag_id}' has no schedule to backfill"
            )));
        };
        let parse = |flag: &str, text: &str| -> ServiceResult<DateTime<Utc>> {
            parse_date(text, dag.timezone)
                .map_err(|e| ServiceError::Invalid(format!("--{flag}: {e}")))
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
impl Service {
    pub async fn clean_db(&self, before: &str, dry_run: bool) -> ServiceResult<CleanReport> {
        let store = &self.store;
        let before = parse_date(before, chrono_tz::Tz::UTC)
            .map_err(|e| ServiceError::Invalid(format!("--before: {e}")))?;
        let rows = store.clean(before, dry_run, CleanBatch::default()).await?;
        Ok(CleanReport {
            before,
            dry_run,
            rows,
        })
    }
}
