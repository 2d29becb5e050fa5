//! What a running task sees: its identity, run-time values for templates, a log, a
//! cancellation token, and the engine (for `trigger_dag`).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::data::DataPaths;
use crate::ids::{DagId, RunId, RunKey, TaskId};
use crate::scheduler::EngineHandle;

use super::TaskLog;

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
    /// The engine, for tasks that start other runs.
    pub engine: EngineHandle,
    /// Staging, output and warehouse locations.
    pub data: Arc<DataPaths>,
}
