//! What a running task sees: its identity, run-time values for templates, a log, a
//! cancellation token, a port to report its process group, and the engine (for
//! `trigger_dag`).

use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::{RunPort, TaskError};
use crate::data::DataPaths;
use crate::data::ledger::LedgerTry;
use crate::ids::{DagId, ProcessGroup, RunId, RunKey, TaskId};

use super::TaskLog;

type ReportFn = dyn Fn(ProcessGroup) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync;

/// Where a try reports the process group it started, so that a process adopting the run
/// after its owner died can kill what is left of it before the retry.
#[derive(Clone, Default)]
pub struct GroupReport(Option<Arc<ReportFn>>);

impl GroupReport {
    /// A port that hands each report to `report`.
    pub fn new(
        report: impl Fn(ProcessGroup) -> Pin<Box<dyn Future<Output = ()> + Send>>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        Self(Some(Arc::new(report)))
    }

    /// Reports the try's process group (a port made with `default()` drops it).
    pub async fn report(&self, group: ProcessGroup) {
        if let Some(report) = &self.0 {
            report(group).await;
        }
    }
}

impl std::fmt::Debug for GroupReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupReport")
    }
}

/// Everything a task needs for one try.
#[derive(Clone)]
pub struct TaskContext {
    /// DAG of the run.
    pub dag_id: DagId,
    /// Run id (Airflow style).
    pub run_id: RunId,
    /// The run's store key.
    pub run_key: RunKey,
    /// This task.
    pub task_id: TaskId,
    /// 1 for the first try.
    pub try_number: u32,
    /// The first try of the current attempt (since the task was last cleared): warehouse
    /// writes recorded by tries `first_try..try_number` of this run belong to this attempt,
    /// so a retry takes them over instead of writing again.
    pub first_try: u32,
    /// Unique id of the run across state databases (keys the warehouse ledger).
    pub run_uid: String,
    /// Logical date of the run.
    pub logical_date: DateTime<Utc>,
    /// Where the try's log goes.
    pub log: TaskLog,
    /// Cancelled on execution timeout, dagrun timeout or shutdown.
    pub cancel: CancellationToken,
    /// Where the try reports the process group it runs commands in.
    pub process: GroupReport,
    /// The engine, for tasks that start other runs.
    /// The engine, for tasks that start other runs and for live logs.
    pub engine: Arc<dyn RunPort>,
    /// Staging, output and warehouse locations.
    pub data: Arc<DataPaths>,
    /// Where data tasks count the rows they import, load and reject.
    pub metrics: crate::metrics::Metrics,
}

impl TaskContext {
    /// The error for work that stopped: [`TaskError::Cancelled`] when this try was
    /// cancelled, whatever error the stop produced (so that a shutdown never costs a retry),
    /// else [`TaskError::Failed`].
    pub fn failure(&self, error: impl std::fmt::Display) -> TaskError {
        // Errors often quote a location: mask it before the message is stored or shown.
        let message = crate::redact::text(&error.to_string()).into_owned();
        if self.cancel.is_cancelled() {
            TaskError::Cancelled(message)
        } else {
            TaskError::Failed(message)
        }
    }

    /// Adds `count` rows to this task's `which` counter.
    pub fn count_rows(&self, which: crate::metrics::Rows, count: u64) {
        self.metrics.rows(&self.dag_id, &self.task_id, which, count);
    }

    /// This try as the warehouse ledger knows it.
    pub fn ledger_try(&self) -> LedgerTry {
        LedgerTry {
            run_uid: self.run_uid.clone(),
            dag_id: self.dag_id.to_string(),
            run_id: self.run_id.to_string(),
            task_id: self.task_id.to_string(),
            first_try: self.first_try,
            try_number: self.try_number,
        }
    }
}
