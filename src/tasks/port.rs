//! The narrow port through which tasks reach the engine: trigger a child run, wait for a
//! run, and stream log lines while a try runs. The scheduler implements it; tasks know
//! nothing else about the scheduler.

use futures_util::future::BoxFuture;

use super::{LogBatch, TaskError};
use crate::ids::{DagId, RunId, RunKey, TaskId};
use crate::state::RunState;

/// A `trigger_dag` try asking for its child run.
#[derive(Clone, Debug)]
pub struct ChildRequest {
    /// The DAG to trigger.
    pub dag: DagId,
    /// The child's conf.
    pub conf: serde_json::Value,
    /// The parent run.
    pub parent: RunKey,
    /// The `trigger_dag` task.
    pub task: TaskId,
    /// The asking try.
    pub try_number: u32,
    /// The first try of the current attempt: a child created by an interrupted try since
    /// then is taken over rather than triggered again.
    pub first_try: u32,
    /// The task waits for the child to finish: a child of a DAG already among the
    /// parent's ancestors would then wait on itself, so it is refused.
    pub wait: bool,
}

/// The child run a `trigger_dag` try waits on.
#[derive(Clone, Debug)]
pub struct ChildRun {
    /// Store key.
    pub key: RunKey,
    /// Run id.
    pub run_id: RunId,
    /// Its state when handed over.
    pub state: RunState,
    /// Created by an earlier, interrupted try and taken over by this one.
    pub resumed: bool,
}

/// What tasks may ask of the engine.
pub trait RunPort: Send + Sync {
    /// Triggers the child run of a `trigger_dag` try, or hands back the one an interrupted
    /// earlier try of the same attempt created.
    fn trigger_child(&self, req: ChildRequest) -> BoxFuture<'_, Result<ChildRun, TaskError>>;

    /// Waits until a run finishes, wherever it is executed.
    fn wait_for_run(&self, run: RunKey) -> BoxFuture<'_, Result<RunState, TaskError>>;

    /// Tells the engine this try now only waits on something outside itself, so it
    /// stops holding a `parallelism` / `max_active_tasks` slot (as Airflow defers a task).
    fn defer(&self, run: RunKey, task: TaskId, try_number: u32) -> BoxFuture<'_, ()>;

    /// Stores log lines of a running try (with the scheduler's next commit).
    fn append_logs(
        &self,
        run: RunKey,
        task: TaskId,
        try_number: u32,
        batch: LogBatch,
    ) -> BoxFuture<'_, ()>;
}
