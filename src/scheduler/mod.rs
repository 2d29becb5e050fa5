//! The scheduler: one actor that owns every run this process executes.
//!
//! It is fed [`Command`]s (a finished try, "the store changed", new DAG definitions, a
//! child-run request from `trigger_dag`) and timers (retries, cron intervals, dagrun
//! timeouts). A finished task makes its ready downstream tasks start in the same loop turn,
//! so no polling interval sets the pace. Every state change is committed to the store, in
//! one transaction per turn, before tasks are started or watchers told.
//!
//! `serve` runs it in [`Mode::Serve`] (claims any queued run, schedules cron intervals,
//! adopts runs whose owner's lease lapsed); `run` in [`Mode::Foreground`] (only its own run
//! and the children it triggers). Either way the process is a registered instance that owns
//! its runs through a lease ([`lease`]) and writes nothing for a run it no longer owns.
//!
//! Files by concern: [`core`] (the loop, commits and ownership), `dispatch` (starting ready
//! tasks within the limits, ends of tries), `timers` (retries, timeouts, drain, lease
//! expiry), `launch` (a try's task), `children` (`trigger_dag` child runs and waiters),
//! [`recovery`] (claiming and adopting runs), `cron` (scheduled runs), `outage` (riding
//! out an outage of the state database).

mod active;
mod children;
mod core;
mod cron;
mod dispatch;
mod handle;
mod launch;
pub mod lease;
mod offers;
mod outage;
mod recovery;
mod timers;

use std::sync::Arc;

use chrono::Utc;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

pub use handle::{EngineError, EngineHandle};
pub use lease::{LeaseState, LeaseTiming};

use crate::dag::DagBag;
use crate::ids::{DagId, RunId, RunKey, TaskId};
use crate::state::{RunState, TaskState};
use crate::store::{Owner, Store};
use crate::tasks::{ChildRequest, ChildRun};

/// Messages the scheduler acts on.
pub enum Command {
    /// The store changed outside the scheduler (trigger, pause, clear): look again.
    Wake,
    /// Another instance stopped: look again, and adopt its runs.
    InstanceStopped,
    /// Offered tries changed: some were offered (`offered`), or some ended. Look at the
    /// offers only.
    Offers { offered: bool },
    /// A try ended.
    Finished(Box<core::Finished>),
    /// A change to commit with the next turn (log lines of a running try).
    Record(crate::store::Change),
    /// The DAG folder was reloaded.
    Dags(Arc<DagBag>),
    /// A `trigger_dag` try asks for its child run.
    TriggerChild {
        req: ChildRequest,
        reply: tokio::sync::oneshot::Sender<Result<ChildRun, EngineError>>,
    },
    /// A running try waits on something outside itself: release its slot.
    Defer {
        run: RunKey,
        task: TaskId,
        try_number: u32,
    },
    /// Tell me when this run finishes.
    WatchRun {
        run: RunKey,
        reply: tokio::sync::oneshot::Sender<RunState>,
    },
}

/// Which runs the scheduler takes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The daemon: every queued run, cron schedules, crash recovery.
    Serve,
    /// `orchestrator run`: this run and the runs its tasks trigger; stops when they are done.
    Foreground {
        /// The run the user asked for.
        root: RunKey,
    },
}

/// What a foreground run prints as it goes.
#[derive(Clone, Debug)]
pub enum Progress {
    /// A try started.
    TaskStarted {
        dag_id: DagId,
        run_id: RunId,
        task_id: TaskId,
        try_number: u32,
    },
    /// A task reached a state (success, failed, up_for_retry, skipped, upstream_failed).
    TaskState {
        dag_id: DagId,
        run_id: RunId,
        task_id: TaskId,
        state: TaskState,
        error: Option<String>,
    },
    /// A run finished.
    RunFinished {
        dag_id: DagId,
        run_id: RunId,
        state: RunState,
    },
}

/// Settings the scheduler runs with.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Global cap on running tries.
    pub parallelism: usize,
    /// Grace period on shutdown before running tries are interrupted.
    pub shutdown_grace: std::time::Duration,
    /// Where data tasks read and write.
    pub data: Arc<crate::data::DataPaths>,
    /// Heartbeat and lease of this process's ownership.
    pub lease: LeaseTiming,
    /// Size limits of each try's log (`max_log_bytes`).
    pub log_limits: crate::tasks::LogLimits,
    /// Where runs, tries, loop latency and data rows are counted (disabled outside `serve`).
    pub metrics: crate::metrics::Metrics,
}

/// A started scheduler: its handle, and the task to await for its end.
pub struct Engine {
    /// Send commands to it.
    pub handle: EngineHandle,
    /// Resolves when the scheduler has stopped and committed everything.
    pub done: tokio::task::JoinHandle<Result<(), crate::store::StoreError>>,
}

impl Engine {
    /// Starts the scheduler (and its lease keeper) on their own tasks for `owner`, an
    /// instance the caller registered. Cancelling `shutdown` stops it gracefully; it ends
    /// the instance's lease when it stops.
    pub fn start(
        store: Store,
        bag: Arc<DagBag>,
        mode: Mode,
        config: SchedulerConfig,
        owner: Owner,
        shutdown: CancellationToken,
        progress: Option<mpsc::UnboundedSender<Progress>>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(4096);
        let (lease_tx, lease_rx) =
            watch::channel(LeaseState::fresh(owner, Utc::now(), config.lease.lease));
        let keeper_stop = CancellationToken::new();
        let guard = lease::TriesGuard::default();
        let keeper = tokio::spawn(lease::keep(
            store.clone(),
            lease_tx,
            config.lease,
            keeper_stop.clone(),
            guard.clone(),
        ));
        let handle = EngineHandle::new(tx, store.clone(), lease_rx.clone());
        let scheduler = core::Scheduler::new(core::Parts {
            store,
            bag,
            mode,
            config,
            handle: handle.clone(),
            rx,
            shutdown,
            progress,
            lease: lease_rx,
            keeper: (keeper_stop, keeper),
            guard,
        });
        let done = tokio::spawn(scheduler.run());
        Self { handle, done }
    }
}
