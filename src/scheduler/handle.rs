//! [`EngineHandle`]: how the rest of the program (tasks, web, file watcher) talks to the
//! scheduler actor.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::Command;
use crate::dag::DagBag;
use crate::ids::{DagId, RunId, RunKey, TaskId};
use crate::state::RunState;
use crate::store::{Store, StoreError};

/// How often a waiter re-reads the store in case the run is executed by another process.
const WAIT_POLL: Duration = Duration::from_secs(2);

/// Errors from engine requests.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The scheduler has stopped.
    #[error("the scheduler is shutting down")]
    Stopped,
    /// No such DAG is loaded.
    #[error("DAG '{0}' is not loaded")]
    UnknownDag(DagId),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The run vanished from the store.
    #[error("run {0} does not exist")]
    UnknownRun(RunKey),
}

/// A child run created by `trigger_dag`.
#[derive(Clone, Debug)]
pub struct ChildRun {
    /// Store key.
    pub key: RunKey,
    /// Run id.
    pub run_id: RunId,
}

/// Cheap, cloneable handle to the scheduler.
#[derive(Clone, Debug)]
pub struct EngineHandle {
    tx: mpsc::Sender<Command>,
    store: Store,
}

impl EngineHandle {
    pub(super) fn new(tx: mpsc::Sender<Command>, store: Store) -> Self {
        Self { tx, store }
    }

    pub(super) async fn send(&self, cmd: Command) -> Result<(), EngineError> {
        self.tx.send(cmd).await.map_err(|_| EngineError::Stopped)
    }

    /// Whether the scheduler is still taking commands.
    pub fn is_running(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Log lines of a try that is still running (stored in the scheduler's next commit).
    pub async fn append_logs(
        &self,
        run: RunKey,
        task: &TaskId,
        try_number: u32,
        batch: crate::tasks::LogBatch,
    ) -> Result<(), EngineError> {
        let change = crate::store::Change::Logs {
            run,
            task: task.clone(),
            try_number,
            lines: batch.lines,
            dropped: batch.dropped,
        };
        self.send(Command::Record(change)).await
    }

    /// The store changed (a run was queued, a DAG paused...): the scheduler looks again.
    pub async fn wake(&self) -> Result<(), EngineError> {
        self.send(Command::Wake).await
    }

    /// New DAG definitions from the loader.
    pub async fn dags_changed(&self, bag: Arc<DagBag>) -> Result<(), EngineError> {
        self.send(Command::Dags(bag)).await
    }

    /// Queues a run of `dag` triggered by task `task` of run `parent`.
    pub async fn trigger_child(
        &self,
        dag: &DagId,
        conf: serde_json::Value,
        parent: RunKey,
        task: &TaskId,
    ) -> Result<ChildRun, EngineError> {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::TriggerChild {
            dag: dag.clone(),
            conf,
            parent,
            task: task.clone(),
            reply,
        };
        self.send(cmd).await?;
        let row = rx.await.map_err(|_| EngineError::Stopped)??;
        Ok(ChildRun {
            key: row.key,
            run_id: row.run_id,
        })
    }

    /// Waits until the run finishes, wherever it is executed.
    pub async fn wait_for_run(&self, run: RunKey) -> Result<RunState, EngineError> {
        let (reply, mut rx) = oneshot::channel();
        self.send(Command::WatchRun { run, reply }).await?;
        loop {
            tokio::select! {
                state = &mut rx => return state.map_err(|_| EngineError::Stopped),
                () = tokio::time::sleep(WAIT_POLL) => {
                    let row = self.store.run(run).await?.ok_or(EngineError::UnknownRun(run))?;
                    if row.state.is_finished() {
                        return Ok(row.state);
                    }
                }
            }
        }
    }
}
