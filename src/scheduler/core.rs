//! The scheduler actor's loop and its ownership rules: handle commands and timers, commit
//! each turn's changes (fenced by this instance's lease) before acting on them, and let go
//! of runs it no longer owns.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::active::ActiveRun;
use super::lease::LeaseState;
use super::{Command, EngineHandle, Mode, Progress, SchedulerConfig};
use crate::dag::{Dag, DagBag, DataInterval};
use crate::executor::TryResult;
use crate::ids::{DagId, RunKey, TaskId};
use crate::metrics::Event;
use crate::state::RunState;
use crate::store::{Change, Owner, Store, StoreError};

/// How often `serve` re-reads queued runs, paused flags and runs to adopt, in case a
/// wake-up from another process was missed. Normal pick-up is immediate.
const FALLBACK_POLL: Duration = Duration::from_secs(2);
/// Attempts at committing a turn (on database errors) before the scheduler gives up.
const COMMIT_ATTEMPTS: u32 = 5;
/// How long a failing scheduler waits for its tries to stop before it returns.
const ABORT_WAIT: Duration = Duration::from_secs(15);
/// Panics blamed on no run after which the scheduler gives up rather than loop.
const MAX_UNATTRIBUTED_PANICS: u32 = 10;

/// The text of a panic payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// What woke the scheduler's loop.
enum Wake {
    /// Shutdown was asked for.
    Shutdown,
    /// A command arrived (more may be waiting behind it).
    Command(Command),
    /// The lease keeper published a new state (`false`: the keeper is gone).
    Lease(bool),
    /// A timer is due.
    Timers,
    /// The fallback poll of the store.
    Poll,
}

/// A try that ended, reported by its task.
pub struct Finished {
    pub(super) run: RunKey,
    pub(super) task: usize,
    pub(super) task_id: crate::ids::TaskId,
    pub(super) try_number: u32,
    pub(super) result: TryResult,
    pub(super) at: DateTime<Utc>,
    /// How long the try ran (monotonic clock).
    pub(super) duration: Duration,
    /// Where it ran.
    pub(super) origin: Origin,
}

/// Where a try ran, for the rules its end is judged by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// In this process.
    Local,
    /// On the instance that claimed its offer; `shutdown`: that instance's shutdown
    /// stopped it (it runs again without using a retry).
    Remote { shutdown: bool },
}

/// Done after the turn's changes are committed.
pub(super) enum Action {
    Spawn {
        run: RunKey,
        task: usize,
        try_number: u32,
    },
    RunDone {
        run: RunKey,
        state: RunState,
    },
    Progress(RunKey, Progress),
    /// Counted in the metrics once committed.
    Observe(RunKey, Event),
}

/// A run this process let go of (adopted by another instance, lease lost, or reloaded
/// after a refused write) whose tries are still stopping.
pub(super) struct Detached {
    dag: DagId,
    /// Tries still executing.
    running: u32,
    /// Of those, the ones holding a slot (not deferred).
    holding: u32,
}

/// What [`super::Engine::start`] hands the scheduler.
pub(super) struct Parts {
    pub store: Store,
    pub bag: Arc<DagBag>,
    pub mode: Mode,
    pub config: SchedulerConfig,
    pub handle: EngineHandle,
    pub rx: mpsc::Receiver<Command>,
    pub shutdown: CancellationToken,
    pub progress: Option<mpsc::UnboundedSender<Progress>>,
    pub lease: watch::Receiver<LeaseState>,
    pub keeper: (CancellationToken, tokio::task::JoinHandle<()>),
    pub guard: super::lease::TriesGuard,
}

pub(super) struct Scheduler {
    pub(super) store: Store,
    pub(super) bag: Arc<DagBag>,
    pub(super) mode: Mode,
    pub(super) config: SchedulerConfig,
    pub(super) handle: EngineHandle,
    pub(super) rx: mpsc::Receiver<Command>,
    pub(super) shutdown: CancellationToken,
    pub(super) tracker: TaskTracker,
    progress: Option<mpsc::UnboundedSender<Progress>>,
    /// This instance at its current epoch: every write is fenced by it.
    pub(super) owner: Owner,
    pub(super) lease: watch::Receiver<LeaseState>,
    keeper: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
    /// Every try's cancellation descends from it: the lease keeper stops them all when the
    /// lease is about to lapse unrenewed.
    pub(super) guard: super::lease::TriesGuard,
    pub(super) runs: HashMap<RunKey, ActiveRun>,
    pub(super) detached: HashMap<RunKey, Detached>,
    /// Runs a foreground process let go of (its lease lapsed, e.g. while suspended) and
    /// takes back, or waits for, before it may exit.
    pub(super) readopt: HashSet<RunKey>,
    /// DAGs rebuilt from stored versions, by hash.
    pub(super) versions: HashMap<String, Arc<Dag>>,
    pub(super) ready: VecDeque<(RunKey, usize)>,
    pub(super) retries: BTreeSet<(DateTime<Utc>, RunKey, usize)>,
    pub(super) running: usize,
    pub(super) running_by_dag: HashMap<DagId, u32>,
    pub(super) paused: HashMap<DagId, bool>,
    pub(super) cron: HashMap<DagId, Option<DataInterval>>,
    pub(super) cron_dirty: bool,
    pub(super) watchers: HashMap<RunKey, Vec<oneshot::Sender<RunState>>>,
    pub(super) reserved: HashSet<RunKey>,
    pub(super) changes: Vec<Change>,
    pub(super) actions: Vec<Action>,
    pub(super) look_for_queued: bool,
    /// Queued runs were left for other instances for want of a free slot (shared stores
    /// only): look again when one frees up.
    pub(super) claims_waiting: bool,
    pub(super) drain_deadline: Option<DateTime<Utc>>,
    /// Tries this process runs for other instances' runs (claimed offers).
    pub(super) remote: HashMap<(RunKey, TaskId), super::offers::RemoteTry>,
    /// Offered tries may be waiting for a free slot here (shared stores).
    pub(super) look_for_offers: bool,
    /// Offers this process is involved in may have changed: ends to record, claims gone.
    pub(super) offers_changed: bool,
    /// Another instance just said it offered tries (or one ended).
    pub(super) offers_announced: bool,
    /// Runs of a stopped instance may be waiting to be adopted.
    pub(super) look_for_orphans: bool,
    /// This machine, recorded on the tries it runs for other instances.
    pub(super) host: String,
    /// Tries run for other instances were stopped by a restart of this scheduler: once
    /// they have all ended, their claims are reported as abandoned so their owners run
    /// them again.
    pub(super) claims_abandoned: bool,
    /// Whether running tries were told to stop at the end of the shutdown grace period.
    pub(super) interrupted: bool,
    /// The epoch whose lease was seen to lapse (its runs are already let go of).
    pub(super) lapsed_epoch: Option<i64>,
    /// The run being handled, so a panic can be blamed on it.
    pub(super) handling: Option<RunKey>,
    /// Panics blamed on each run; a run with two is failed and never taken on again.
    panics: HashMap<RunKey, u32>,
    /// Panics blamed on no run, to stop a restart loop.
    unattributed_panics: u32,
    /// Runs failed after panicking twice.
    pub(super) poisoned: HashSet<RunKey>,
    /// After a panic: no run is taken on until every try started before it has ended.
    restarting: bool,
    root_started: bool,
}

impl Scheduler {
    pub(super) fn new(parts: Parts) -> Self {
        let owner = parts.lease.borrow().owner.clone();
        Self {
            store: parts.store,
            bag: parts.bag,
            mode: parts.mode,
            config: parts.config,
            handle: parts.handle,
            rx: parts.rx,
            shutdown: parts.shutdown,
            tracker: TaskTracker::new(),
            progress: parts.progress,
            owner,
            lease: parts.lease,
            keeper: Some(parts.keeper),
            guard: parts.guard,
            runs: HashMap::new(),
            detached: HashMap::new(),
            readopt: HashSet::new(),
            versions: HashMap::new(),
            ready: VecDeque::new(),
            retries: BTreeSet::new(),
            running: 0,
            running_by_dag: HashMap::new(),
            paused: HashMap::new(),
            cron: HashMap::new(),
            cron_dirty: true,
            watchers: HashMap::new(),
            reserved: HashSet::new(),
            changes: Vec::new(),
            actions: Vec::new(),
            look_for_queued: true,
            claims_waiting: false,
            drain_deadline: None,
            remote: HashMap::new(),
            look_for_offers: true,
            offers_changed: false,
            offers_announced: false,
            look_for_orphans: false,
            host: crate::tasks::process::this_host(),
            claims_abandoned: false,
            interrupted: false,
            lapsed_epoch: None,
            handling: None,
            panics: HashMap::new(),
            unattributed_panics: 0,
            poisoned: HashSet::new(),
            restarting: false,
            root_started: false,
        }
    }

    /// The loop; returns when shut down (serve) or when its runs are done (foreground).
    /// Ends the instance's lease on the way out, so its leftovers are adoptable at once.
    pub(super) async fn run(mut self) -> Result<(), StoreError> {
        let result = loop {
            // A panic in one run's handling must not take the daemon down: the loop
            // restarts from the store, and a run that panics twice is failed.
            match AssertUnwindSafe(self.main_loop()).catch_unwind().await {
                // A daemon rides out an outage of the state database (`outage`): it takes
                // no work until the database answers again, keeping its tries while its
                // lease lasts.
                Ok(Err(e)) if self.mode == Mode::Serve && e.is_outage() => {
                    match self.ride_out_outage(&e).await {
                        Ok(true) => {}
                        Ok(false) => break Ok(()),
                        // Lost again while resuming: the loop meets it and rides it out.
                        Err(e) if e.is_outage() => {}
                        Err(e) => break Err(e),
                    }
                }
                Ok(result) => break result,
                Err(panic) => {
                    if let Err(e) = self.recover_from_panic(&panic_message(&*panic)).await {
                        break Err(e);
                    }
                }
            }
        };
        if result.is_err() {
            // Nothing more will be committed for them: stop the tries rather than let them
            // finish unrecorded.
            self.runs.values().for_each(|r| r.cancel.cancel());
        }
        self.tracker.close();
        if tokio::time::timeout(ABORT_WAIT, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some tries did not stop in time; leaving them to process exit");
        }
        if let Some((stop, keeper)) = self.keeper.take() {
            stop.cancel();
            let _ = keeper.await;
        }
        let owner = self.lease.borrow().owner.clone();
        if let Err(e) = self.store.stop_instance(&owner).await {
            tracing::warn!(error = %e, "cannot end this process's lease; it lapses by itself");
        }
        result
    }

    /// Starts over from the store after a panic: every run is let go of (its tries stop)
    /// and taken on again from its stored state; the run being handled is blamed.
    async fn recover_from_panic(&mut self, message: &str) -> Result<(), StoreError> {
        let culprit = self.handling.take();
        tracing::error!(run = ?culprit, "the scheduler panicked: {message}; restarting from the store");
        self.start_over();
        let Some(key) = culprit else {
            self.unattributed_panics += 1;
            if self.unattributed_panics >= MAX_UNATTRIBUTED_PANICS {
                return Err(StoreError::Conflict(format!(
                    "the scheduler panicked {} times outside any run's handling; last: {message}",
                    self.unattributed_panics
                )));
            }
            return Ok(());
        };
        let count = self.panics.entry(key).or_default();
        *count += 1;
        if *count >= 2 {
            self.poisoned.insert(key);
            let note =
                format!("failed: the scheduler panicked twice while handling this run: {message}");
            if self.store.fail_unrunnable(key, &self.owner, &note).await? {
                tracing::error!(run = %key, "{note}");
            }
        }
        Ok(())
    }

    /// Forgets every run (the in-memory state, slot counters included, cannot be trusted
    /// any more): their tries stop, and runs are taken on again from the store once the
    /// stopped tries have all ended.
    pub(super) fn start_over(&mut self) {
        self.runs.values().for_each(|r| r.cancel.cancel());
        // Every try is told to stop here: tries started from now on are not (the lease
        // keeper may have stopped them all already).
        self.guard.take_fired();
        self.claims_abandoned |= !self.remote.is_empty();
        self.abandon_remote();
        self.remote.clear();
        if matches!(self.mode, Mode::Foreground { .. }) {
            self.readopt.extend(self.runs.keys().copied());
            self.readopt.extend(self.detached.keys().copied());
        }
        self.runs.clear();
        self.detached.clear();
        self.running = 0;
        self.running_by_dag.clear();
        self.changes.clear();
        self.actions.clear();
        self.ready.clear();
        self.retries.clear();
        self.cron.clear();
        self.cron_dirty = true;
        self.look_for_queued = true;
        self.restarting = true;
    }

    async fn main_loop(&mut self) -> Result<(), StoreError> {
        self.paused = self.store.paused_flags().await?;
        if self.mode == Mode::Serve {
            self.adopt_orphans().await?;
        }
        let mut poll = tokio::time::interval(FALLBACK_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut woke: Option<Instant> = None;
        loop {
            self.turn().await?;
            self.observe_turn(woke.take());
            if let Mode::Foreground { root } = self.mode
                && !self.root_started
            {
                return Err(StoreError::Conflict(format!(
                    "run {root} could not be started"
                )));
            }
            if self.is_done() {
                return Ok(());
            }
            let sleep = tokio::time::sleep(self.until_next_timer());
            let polling = (self.mode == Mode::Serve || !self.readopt.is_empty())
                && self.drain_deadline.is_none();
            let wake = tokio::select! {
                () = self.shutdown.cancelled(), if self.drain_deadline.is_none() => Wake::Shutdown,
                cmd = self.rx.recv() => match cmd {
                    Some(cmd) => Wake::Command(cmd),
                    None => return Ok(()),
                },
                changed = self.lease.changed() => Wake::Lease(changed.is_ok()),
                () = sleep => Wake::Timers,
                _ = poll.tick(), if polling => Wake::Poll,
            };
            woke = Some(Instant::now());
            self.on_wake(wake).await?;
        }
    }

    /// Acts on what woke the loop; the turn that follows commits the decisions.
    async fn on_wake(&mut self, wake: Wake) -> Result<(), StoreError> {
        match wake {
            Wake::Shutdown => self.begin_drain(),
            Wake::Command(cmd) => {
                self.handle(cmd).await?;
                while let Ok(cmd) = self.rx.try_recv() {
                    self.handle(cmd).await?;
                }
            }
            Wake::Lease(true) => self.on_lease_change(),
            Wake::Lease(false) => {}
            Wake::Timers => self.on_timers(Utc::now()).await?,
            Wake::Poll => {
                if self.mode == Mode::Serve {
                    self.reread_store().await?;
                    self.adopt_orphans().await?;
                }
                // The net under the wake-ups about offers too (and how a lost worker or a
                // withdrawn claim is noticed).
                self.look_for_offers = true;
                self.offers_changed = true;
                self.readopt_own().await?;
            }
        }
        Ok(())
    }

    /// Counts `event` in the metrics once this turn is committed (built only when they
    /// are kept, so a foreground `run` pays nothing).
    pub(super) fn observe(&mut self, run: RunKey, event: impl FnOnce() -> Event) {
        if self.config.metrics.is_enabled() {
            self.actions.push(Action::Observe(run, event()));
        }
    }

    /// Records how long the turn took from the event that woke the loop (none before the
    /// first turn) and the slots it left in use and awaited.
    fn observe_turn(&self, woke: Option<Instant>) {
        let metrics = &self.config.metrics;
        if let Some(at) = woke {
            metrics.loop_latency(at.elapsed());
        }
        metrics.slots(self.running, self.ready.len());
    }

    fn is_done(&self) -> bool {
        match self.mode {
            // Deferred tries (a `trigger_dag` waiting for its child) hold no slot but still
            // run: their end must be recorded too (abandoned if the grace period ends first).
            _ if self.drain_deadline.is_some() => {
                self.running == 0 && self.runs.values().all(|r| r.deferred() == 0)
            }
            Mode::Serve => false,
            Mode::Foreground { .. } => {
                self.root_started
                    && self.runs.is_empty()
                    && self.reserved.is_empty()
                    && self.readopt.is_empty()
                    && self.detached.is_empty()
            }
        }
    }

    /// One turn: claim queued runs and cron intervals, start ready tasks, commit, act.
    async fn turn(&mut self) -> Result<(), StoreError> {
        self.handling = None;
        // The lease keeper stopped every try while this loop waited on the database: the
        // runs are taken on again from the store.
        if self.guard.take_fired() {
            tracing::warn!(
                "this process's tries were stopped as its lease was about to lapse; taking its runs on again from the store"
            );
            self.start_over();
        }
        if self.drain_deadline.is_none() {
            if self.cron_dirty && self.mode == Mode::Serve {
                self.cron_dirty = false;
                self.schedule_due(Utc::now()).await?;
            }
            if self.look_for_queued {
                self.look_for_queued = false;
                self.claim_queued().await?;
                self.readopt_own().await?;
            }
            if self.offers_changed {
                self.check_offers().await?;
            }
            self.dispatch(Utc::now());
        }
        self.flush().await?;
        // After the turn's commit: a run this turn finished is no longer `running` in the
        // store, so it cannot look like one to adopt.
        if std::mem::take(&mut self.look_for_orphans) && self.drain_deadline.is_none() {
            self.adopt_orphans().await?;
            self.dispatch(Utc::now());
            self.flush().await?;
        }
        // After the turn's commit, so the ends of tries that did report are in first.
        if self.claims_abandoned && self.tracker.is_empty() {
            let why = "interrupted: the instance running this try restarted its scheduler";
            self.store.abandon_claims(&self.owner, why).await?;
            self.claims_abandoned = false;
        }
        // After this turn's own starts, so they never wait on it.
        if self.look_for_offers {
            self.claim_offers().await?;
        }
        Ok(())
    }

    /// Another process may have paused, unpaused, triggered or cleared: look again.
    async fn reread_store(&mut self) -> Result<(), StoreError> {
        let paused = self.store.paused_flags().await?;
        if paused != self.paused {
            self.paused = paused;
            self.cron.clear();
        }
        self.cron_dirty = true;
        self.look_for_queued = true;
        Ok(())
    }

    pub(super) async fn handle(&mut self, cmd: Command) -> Result<(), StoreError> {
        self.handling = None;
        let Some(cmd) = self.handle_in_memory(cmd) else {
            return Ok(());
        };
        match cmd {
            Command::Wake => self.reread_store().await?,
            Command::InstanceStopped => {
                self.reread_store().await?;
                // Its runs are adoptable at once.
                self.look_for_orphans = self.mode == Mode::Serve;
            }
            Command::TriggerChild { req, reply } => {
                let result = self.create_child(req).await;
                let _ = reply.send(result);
            }
            Command::WatchRun { run, reply } => self.watch(run, reply).await?,
            // Handled in memory above.
            Command::Offers { .. }
            | Command::Finished(_)
            | Command::Record(_)
            | Command::Dags(_)
            | Command::Defer { .. } => {}
        }
        Ok(())
    }

    /// Handles a command that needs no database (a try's end, log lines, new DAGs, what
    /// changed in the offers); returns the others.
    pub(super) fn handle_in_memory(&mut self, cmd: Command) -> Option<Command> {
        match cmd {
            Command::Offers { offered } => {
                self.offers_changed = true;
                if offered {
                    self.look_for_offers = true;
                    self.offers_announced = true;
                }
            }
            Command::Finished(f) => self.on_finished(*f),
            Command::Record(change) => self.record(change),
            Command::Dags(bag) => {
                self.bag = bag;
                self.cron.clear();
                self.cron_dirty = true;
                self.look_for_queued = true;
            }
            Command::Defer {
                run,
                task,
                try_number,
            } => self.defer(run, &task, try_number),
            cmd @ (Command::Wake
            | Command::InstanceStopped
            | Command::TriggerChild { .. }
            | Command::WatchRun { .. }) => return Some(cmd),
        }
        None
    }

    /// Keeps a running try's change for the next commit: log lines and the process group
    /// of a try run for another instance are fenced by its claim; those of a try whose run
    /// this process let go of are not its to write.
    pub(super) fn record(&mut self, change: Change) {
        let remote = match &change {
            Change::Logs {
                run,
                task,
                try_number,
                ..
            }
            | Change::TryProcess {
                run,
                task,
                try_number,
                ..
            } => self
                .remote
                .get(&(*run, task.clone()))
                .map(|r| r.try_number == *try_number && !r.abandoned),
            _ => None,
        };
        match remote {
            Some(true) => self.changes.push(change.into_remote()),
            Some(false) => {}
            None if self.runs.contains_key(&change.run()) => self.changes.push(change),
            None => {}
        }
    }

    /// The lease keeper took a new epoch: everything held under the old one is gone.
    pub(super) fn on_lease_change(&mut self) {
        let owner = self.lease.borrow().owner.clone();
        if owner != self.owner {
            self.detach_all("this process's lease lapsed");
            tracing::info!(instance = %owner.id, epoch = owner.epoch, "took a new lease");
            self.owner = owner;
            self.lapsed_epoch = None;
            self.look_for_queued = true;
        }
    }

    /// Lets go of a run: its tries are told to stop and nothing more is written for it.
    pub(super) fn detach(&mut self, key: RunKey, why: &str) {
        let Some(run) = self.runs.remove(&key) else {
            return;
        };
        run.cancel.cancel();
        tracing::warn!(dag_id = %run.dag.id, run_id = %run.row.run_id, "{why}: letting the run go; its tries stop");
        // Offered tries hold a `max_active_tasks` place and no slot; those running on
        // other instances end there.
        let offered = run.slots.iter().filter(|s| s.offered).count() as u32;
        let remote = run.slots.iter().filter(|s| s.remote).count() as u32;
        if let Some(n) = self.running_by_dag.get_mut(&run.dag.id) {
            *n = n.saturating_sub(offered);
        }
        let running = run.running.saturating_sub(remote);
        if running > 0 {
            self.detached.insert(
                key,
                Detached {
                    dag: run.dag.id.clone(),
                    running,
                    holding: running.saturating_sub(run.deferred()),
                },
            );
        }
        self.ready.retain(|(k, _)| *k != key);
        self.retries.retain(|(_, k, _)| *k != key);
        self.reserved.remove(&key);
        if matches!(self.mode, Mode::Foreground { .. }) {
            self.readopt.insert(key);
        }
    }

    /// Lets go of every run (the lease lapsed).
    pub(super) fn detach_all(&mut self, why: &str) {
        self.abandon_remote();
        let keys: Vec<RunKey> = self.runs.keys().copied().collect();
        for key in keys {
            self.detach(key, why);
        }
        self.changes.clear();
        // Planned tries that will now never start still hold their slots: give them back.
        for action in std::mem::take(&mut self.actions) {
            match action {
                Action::Spawn { run, .. } => self.try_gone(run),
                Action::Progress(..) | Action::Observe(..) => {}
                done @ Action::RunDone { .. } => self.actions.push(done),
            }
        }
    }

    /// A try of a run this process let go of has stopped (or never started).
    pub(super) fn try_gone(&mut self, key: RunKey) {
        // Not detached: the counters were reset after a panic, there is nothing to give back.
        let Some(d) = self.detached.get_mut(&key) else {
            return;
        };
        // Which try ended is not known here: slots are given back while any is held.
        if d.holding > 0 {
            d.holding -= 1;
            self.running = self.running.saturating_sub(1);
            if let Some(n) = self.running_by_dag.get_mut(&d.dag) {
                *n = n.saturating_sub(1);
            }
        }
        d.running = d.running.saturating_sub(1);
        if d.running == 0 {
            self.detached.remove(&key);
            self.look_for_queued = true;
        }
    }

    /// A try waits on something outside itself (a `trigger_dag` waiting for its child): it
    /// stops holding a `parallelism` and `max_active_tasks` slot while it waits, like a
    /// deferred task in Airflow, so waiting parents can never starve their children.
    pub(super) fn defer(&mut self, key: RunKey, task: &crate::ids::TaskId, try_number: u32) {
        let Some(run) = self.runs.get_mut(&key) else {
            return;
        };
        let Some((idx, _)) = run.dag.task(task.as_str()) else {
            return;
        };
        let slot = &mut run.slots[idx];
        if slot.state != Some(crate::state::TaskState::Running)
            || slot.try_number != try_number
            || slot.deferred
        {
            return;
        }
        slot.deferred = true;
        self.running = self.running.saturating_sub(1);
        if let Some(n) = self.running_by_dag.get_mut(&run.dag.id) {
            *n = n.saturating_sub(1);
        }
    }

    /// Commits the turn's changes, then acts on them. Changes about runs this process no
    /// longer owns are dropped with those runs; the rest are committed.
    pub(super) async fn flush(&mut self) -> Result<(), StoreError> {
        let mut changes = std::mem::take(&mut self.changes);
        let mut dropped: HashSet<RunKey> = HashSet::new();
        let mut failures = 0;
        let mut rounds = 0;
        loop {
            rounds += 1;
            match self.store.commit(&self.owner, &changes).await {
                Ok(()) => break,
                Err(StoreError::Fenced(runs)) => {
                    for key in runs {
                        self.detach(key, "run adopted by another instance");
                        dropped.insert(key);
                    }
                }
                Err(StoreError::Transition {
                    run,
                    what,
                    from,
                    to,
                }) => {
                    tracing::error!(
                        "refused state change of {what}: {from} -> {to}; the run is reloaded \
                         from the store"
                    );
                    self.detach(run, "refused state change");
                    dropped.insert(run);
                }
                Err(StoreError::LeaseLost) => {
                    dropped.extend(changes.iter().map(Change::run));
                    dropped.extend(self.runs.keys().copied());
                    self.detach_all("this process's lease lapsed");
                    changes.clear();
                }
                // A daemon rides out an outage (see `run`) instead of stopping; the changes
                // are kept for when the database answers again.
                Err(e) if self.mode == Mode::Serve && e.is_outage() => {
                    changes.retain(|c| !dropped.contains(&c.run()));
                    changes.append(&mut self.changes);
                    self.changes = changes;
                    return Err(e);
                }
                Err(e) => {
                    failures += 1;
                    if failures >= COMMIT_ATTEMPTS || rounds > changes.len() + 10 {
                        tracing::error!(error = %e, "cannot commit scheduler state; stopping");
                        self.shutdown.cancel();
                        return Err(e);
                    }
                    tracing::warn!(error = %e, attempt = failures, "commit failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(failures))).await;
                }
            }
            changes.retain(|c| !dropped.contains(&c.run()));
        }
        if matches!(self.mode, Mode::Foreground { .. }) {
            // Runs whose end was not committed (they left `runs` when they finished) are
            // taken back too, so `run` never exits before its runs really ended.
            self.readopt.extend(dropped.iter().copied());
        }
        for action in std::mem::take(&mut self.actions) {
            match action {
                Action::Spawn { run, .. } if dropped.contains(&run) => self.try_gone(run),
                Action::Spawn {
                    run,
                    task,
                    try_number,
                } => self.spawn(run, task, try_number),
                Action::RunDone { run, .. }
                | Action::Progress(run, _)
                | Action::Observe(run, _)
                    if dropped.contains(&run) => {}
                Action::RunDone { run, state } => {
                    for w in self.watchers.remove(&run).unwrap_or_default() {
                        let _ = w.send(state);
                    }
                }
                Action::Progress(_, p) => {
                    if let Some(tx) = &self.progress {
                        let _ = tx.send(p);
                    }
                }
                Action::Observe(_, event) => self.config.metrics.record(&event),
            }
        }
        Ok(())
    }

    /// Whether runs may be taken on: not while tries started before a panic still run.
    pub(super) fn may_take_runs(&mut self) -> bool {
        if self.restarting && self.tracker.is_empty() {
            self.restarting = false;
        }
        !self.restarting
    }

    /// Whether other instances may share the store (PostgreSQL): then work is claimed
    /// only with free slots, so it spreads over them.
    pub(super) fn shared_store(&self) -> bool {
        self.store.backend() == crate::store::Backend::Postgres
    }

    /// Marks a run as started by this scheduler.
    pub(super) fn activated(&mut self, key: RunKey) {
        self.reserved.remove(&key);
        self.readopt.remove(&key);
        if self.mode == (Mode::Foreground { root: key }) {
            self.root_started = true;
        }
    }
}
