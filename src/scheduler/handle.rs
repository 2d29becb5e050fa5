//! [`EngineHandle`]: how the rest of the program (tasks, web, file watcher) talks to the
//! scheduler actor. Tasks see it only through the narrow [`RunPort`].

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, oneshot, watch};

use super::Command;
use super::lease::LeaseState;
use crate::dag::DagBag;
use crate::ids::{DagId, RunKey, TaskId};
use crate::state::RunState;
use crate::store::{Change, Store, StoreError};
use crate::tasks::{ChildRequest, ChildRun, GroupReport, LogBatch, RunPort, TaskError};

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
    /// This process no longer owns the run (another instance adopted it).
    #[error("run {0} is no longer owned by this process")]
    NotOwned(RunKey),
    /// A waiting `trigger_dag` would trigger a DAG among its run's ancestors, which would
    /// wait on itself forever; the chain runs from the oldest ancestor to the target.
    #[error(
        "trigger chain loops: {0}; a waiting trigger_dag cannot trigger a DAG that is \
         already among its run's ancestors (set wait_for_completion: false to trigger \
         without waiting)"
    )]
    TriggerLoop(String),
}

impl From<EngineError> for TaskError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::UnknownDag(_) | EngineError::TriggerLoop(_) => {
                TaskError::Fatal(e.to_string())
            }
            EngineError::Stopped
            | EngineError::NotOwned(_)
            | EngineError::Store(StoreError::Fenced(_) | StoreError::LeaseLost) => {
                TaskError::Cancelled(e.to_string())
            }
            _ => TaskError::Failed(e.to_string()),
        }
    }
}

/// Cheap, cloneable handle to the scheduler.
#[derive(Clone, Debug)]
pub struct EngineHandle {
    tx: mpsc::Sender<Command>,
    store: Store,
    lease: watch::Receiver<LeaseState>,
}

impl EngineHandle {
    pub(super) fn new(
        tx: mpsc::Sender<Command>,
        store: Store,
        lease: watch::Receiver<LeaseState>,
    ) -> Self {
        Self { tx, store, lease }
    }

    pub(super) async fn send(&self, cmd: Command) -> Result<(), EngineError> {
        self.tx.send(cmd).await.map_err(|_| EngineError::Stopped)
    }

    /// Whether the scheduler is still taking commands.
    pub fn is_running(&self) -> bool {
        !self.tx.is_closed()
    }

    /// When this process last renewed its lease (its scheduler heartbeat).
    pub fn last_heartbeat(&self) -> DateTime<Utc> {
        self.lease.borrow().renewed_at
    }

    /// The port through which a try reports its process group; the report is stored on the
    /// try's row with the scheduler's next commit.
    pub fn group_report(&self, run: RunKey, task: TaskId, try_number: u32) -> GroupReport {
        let handle = self.clone();
        GroupReport::new(move |group| {
            let (handle, task) = (handle.clone(), task.clone());
            Box::pin(async move {
                let change = Change::TryProcess {
                    run,
                    task,
                    try_number,
                    group,
                };
                // Fails only when the scheduler is gone; the supervisor then stops the group.
                let _ = handle.send(Command::Record(change)).await;
            })
        })
    }

    /// The store changed (a run was queued, a DAG paused...): the scheduler looks again.
    pub async fn wake(&self) -> Result<(), EngineError> {
        self.send(Command::Wake).await
    }

    /// Another instance stopped (its runs are adoptable).
    pub async fn instance_stopped(&self) -> Result<(), EngineError> {
        self.send(Command::InstanceStopped).await
    }

    /// Tries were offered (`offered`) or offered tries ended (another instance said so).
    pub async fn offers_changed(&self, offered: bool) -> Result<(), EngineError> {
        self.send(Command::Offers { offered }).await
    }

    /// New DAG definitions from the loader.
    pub async fn dags_changed(&self, bag: Arc<DagBag>) -> Result<(), EngineError> {
        self.send(Command::Dags(bag)).await
    }

    /// Triggers (or takes over) the child run of a `trigger_dag` try.
    pub async fn trigger_child(&self, req: ChildRequest) -> Result<ChildRun, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::TriggerChild { req, reply }).await?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Waits until the run finishes, wherever it is executed.
    pub async fn wait_for_run(&self, run: RunKey) -> Result<RunState, EngineError> {
        let (reply, mut rx) = oneshot::channel();
        self.send(Command::WatchRun { run, reply }).await?;
        loop {
            tokio::select! {
                state = &mut rx => return state.map_err(|_| EngineError::Stopped),
                () = tokio::time::sleep(WAIT_POLL) => {
                    let row = match self.store.run(run).await {
                        Ok(row) => row.ok_or(EngineError::UnknownRun(run))?,
                        // The state database is away: the try waits on (its scheduler stops
                        // it if the outage outlasts the lease), and looks again.
                        Err(e) if e.is_outage() => {
                            tracing::debug!(error = %e, run = %run, "cannot look at the child run yet");
                            continue;
                        }
                        Err(e) => return Err(e.into()),
                    };
                    if row.state.is_finished() {
                        return Ok(row.state);
                    }
                }
            }
        }
    }
}

impl RunPort for EngineHandle {
    fn trigger_child(&self, req: ChildRequest) -> BoxFuture<'_, Result<ChildRun, TaskError>> {
        async move { Ok(EngineHandle::trigger_child(self, req).await?) }.boxed()
    }

    fn wait_for_run(&self, run: RunKey) -> BoxFuture<'_, Result<RunState, TaskError>> {
        async move { Ok(EngineHandle::wait_for_run(self, run).await?) }.boxed()
    }

    fn defer(&self, run: RunKey, task: TaskId, try_number: u32) -> BoxFuture<'_, ()> {
        async move {
            // Fails only when the scheduler is gone; then there is no slot to give back.
            let _ = self
                .send(Command::Defer {
                    run,
                    task,
                    try_number,
                })
                .await;
        }
        .boxed()
    }

    fn append_logs(
        &self,
        run: RunKey,
        task: TaskId,
        try_number: u32,
        batch: LogBatch,
    ) -> BoxFuture<'_, ()> {
        async move {
            let change = Change::Logs {
                run,
                task,
                try_number,
                lines: batch.lines,
                dropped: batch.dropped,
            };
            // The scheduler is gone only at exit; the lines then go with the try's result.
            let _ = self.send(Command::Record(change)).await;
        }
        .boxed()
    }
}
