//! The scheduler actor's loop: handle commands and timers, start ready tasks within the
//! limits, and commit each turn's changes before acting on them.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::active::{ActiveRun, TryEnd};
use super::{Command, EngineError, EngineHandle, Mode, Progress, SchedulerConfig};
use crate::dag::{DagBag, DataInterval};
use crate::executor::{self, TryResult};
use crate::ids::{DagId, RunKey};
use crate::state::{RunState, RunType, TaskState};
use crate::store::{Change, NewRun, Store, StoreError};
use crate::tasks::template::{RunInfo, TemplateValues};
use crate::tasks::{TaskContext, TaskLog};

/// How often `serve` re-reads queued runs and looks for runs of dead processes, in case a
/// wake-up from another process was missed. Normal pick-up is immediate.
const FALLBACK_POLL: Duration = Duration::from_secs(2);
/// Attempts at committing a turn before the scheduler gives up.
const COMMIT_ATTEMPTS: u32 = 5;

/// A try that ended, reported by its task.
pub struct Finished {
    pub(super) run: RunKey,
    pub(super) task: usize,
    pub(super) try_number: u32,
    pub(super) result: TryResult,
    pub(super) at: DateTime<Utc>,
}

/// Done after the turn's changes are committed.
enum Action {
    Spawn {
        run: RunKey,
        task: usize,
        try_number: u32,
    },
    RunDone {
        run: RunKey,
        state: RunState,
    },
    Progress(Progress),
}

pub(super) struct Scheduler {
    pub(super) store: Store,
    pub(super) bag: Arc<DagBag>,
    pub(super) mode: Mode,
    config: SchedulerConfig,
    handle: EngineHandle,
    rx: mpsc::Receiver<Command>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    progress: Option<mpsc::UnboundedSender<Progress>>,
    pub(super) pid: i64,
    pub(super) runs: HashMap<RunKey, ActiveRun>,
    pub(super) ready: VecDeque<(RunKey, usize)>,
    pub(super) retries: BTreeSet<(DateTime<Utc>, RunKey, usize)>,
    running: usize,
    running_by_dag: HashMap<DagId, u32>,
    pub(super) paused: HashMap<DagId, bool>,
    pub(super) cron: HashMap<DagId, Option<DataInterval>>,
    pub(super) cron_dirty: bool,
    watchers: HashMap<RunKey, Vec<oneshot::Sender<RunState>>>,
    reserved: HashSet<RunKey>,
    pub(super) changes: Vec<Change>,
    actions: Vec<Action>,
    pub(super) look_for_queued: bool,
    drain_deadline: Option<DateTime<Utc>>,
    /// Whether running tries were told to stop at the end of the shutdown grace period.
    interrupted: bool,
    root_started: bool,
}

impl Scheduler {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        store: Store,
        bag: Arc<DagBag>,
        mode: Mode,
        config: SchedulerConfig,
        handle: EngineHandle,
        rx: mpsc::Receiver<Command>,
        shutdown: CancellationToken,
        tracker: TaskTracker,
        progress: Option<mpsc::UnboundedSender<Progress>>,
    ) -> Self {
        Self {
            store,
            bag,
            mode,
            config,
            handle,
            rx,
            shutdown,
            tracker,
            progress,
            pid: i64::from(std::process::id()),
            runs: HashMap::new(),
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
            drain_deadline: None,
            interrupted: false,
            root_started: false,
        }
    }

    /// The loop; returns when shut down (serve) or when its runs are done (foreground).
    pub(super) async fn run(mut self) -> Result<(), StoreError> {
        self.paused = self.store.paused_flags().await?;
        if self.mode == Mode::Serve {
            self.adopt_orphans().await?;
        }
        let mut poll = tokio::time::interval(FALLBACK_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.turn().await?;
            if let Mode::Foreground { root } = self.mode
                && !self.root_started
            {
                return Err(StoreError::Conflict(format!(
                    "run {root} could not be started"
                )));
            }
            if self.is_done() {
                break;
            }
            let sleep = tokio::time::sleep(self.until_next_timer());
            tokio::select! {
                () = self.shutdown.cancelled(), if self.drain_deadline.is_none() => self.begin_drain(),
                cmd = self.rx.recv() => {
                    let Some(cmd) = cmd else { break };
                    self.handle(cmd).await?;
                    while let Ok(cmd) = self.rx.try_recv() {
                        self.handle(cmd).await?;
                    }
                }
                () = sleep => self.on_timers(Utc::now()),
                _ = poll.tick(), if self.mode == Mode::Serve && self.drain_deadline.is_none() => {
                    self.look_for_queued = true;
                    self.cron_dirty = true;
                    self.adopt_orphans().await?;
                }
            }
        }
        self.tracker.close();
        self.tracker.wait().await;
        Ok(())
    }

    fn is_done(&self) -> bool {
        match self.mode {
            _ if self.drain_deadline.is_some() => self.running == 0,
            Mode::Serve => false,
            Mode::Foreground { .. } => {
                self.root_started && self.runs.is_empty() && self.reserved.is_empty()
            }
        }
    }

    fn begin_drain(&mut self) {
        let grace = chrono::Duration::from_std(self.config.shutdown_grace).unwrap_or_default();
        tracing::info!(
            running = self.running,
            "shutting down: no new tasks start; waiting for running tries"
        );
        self.drain_deadline = Some(Utc::now() + grace);
    }

    /// One turn: claim queued runs and cron intervals, start ready tasks, commit, act.
    async fn turn(&mut self) -> Result<(), StoreError> {
        if self.drain_deadline.is_none() {
            if self.cron_dirty && self.mode == Mode::Serve {
                self.cron_dirty = false;
                self.schedule_due(Utc::now()).await?;
            }
            if self.look_for_queued {
                self.look_for_queued = false;
                self.claim_queued().await?;
            }
            self.dispatch(Utc::now());
        }
        self.flush().await
    }

    async fn handle(&mut self, cmd: Command) -> Result<(), StoreError> {
        match cmd {
            Command::Wake => {
                let paused = self.store.paused_flags().await?;
                if paused != self.paused {
                    self.paused = paused;
                    self.cron.clear();
                }
                self.cron_dirty = true;
                self.look_for_queued = true;
            }
            Command::Finished(f) => self.on_finished(*f),
            Command::Record(change) => self.changes.push(change),
            Command::Dags(bag) => {
                self.bag = bag;
                self.cron.clear();
                self.cron_dirty = true;
                self.look_for_queued = true;
            }
            Command::TriggerChild {
                dag,
                conf,
                parent,
                task,
                reply,
            } => {
                let result = self.create_child(dag, conf, parent, task).await;
                let _ = reply.send(result);
            }
            Command::WatchRun { run, reply } => self.watch(run, reply).await?,
        }
        Ok(())
    }

    async fn create_child(
        &mut self,
        dag: DagId,
        conf: serde_json::Value,
        parent: RunKey,
        task: crate::ids::TaskId,
    ) -> Result<crate::store::RunRow, EngineError> {
        if self.bag.get(dag.as_str()).is_none() {
            return Err(EngineError::UnknownDag(dag));
        }
        let now = Utc::now();
        let owner_pid = matches!(self.mode, Mode::Foreground { .. }).then_some(self.pid);
        let new = NewRun {
            dag_id: dag,
            run_type: RunType::Triggered,
            interval_start: now,
            interval_end: now,
            conf,
            parent: Some((parent, task)),
            owner_pid,
        };
        let row = self
            .store
            .insert_run(&new)
            .await?
            .ok_or(StoreError::Conflict("child run exists".into()))?;
        if owner_pid.is_some() {
            self.reserved.insert(row.key);
        }
        self.look_for_queued = true;
        Ok(row)
    }

    async fn watch(
        &mut self,
        run: RunKey,
        reply: oneshot::Sender<RunState>,
    ) -> Result<(), StoreError> {
        if !self.runs.contains_key(&run)
            && let Some(row) = self.store.run(run).await?
            && row.state.is_finished()
        {
            let _ = reply.send(row.state);
            return Ok(());
        }
        // Waiters on runs another process executes get their answer from the store, so their
        // senders are never used here: drop those whose waiter has gone.
        self.watchers.retain(|_, waiting| {
            waiting.retain(|w| !w.is_closed());
            !waiting.is_empty()
        });
        self.watchers.entry(run).or_default().push(reply);
        Ok(())
    }

    fn on_finished(&mut self, f: Finished) {
        let draining = self.drain_deadline.is_some();
        let Some(run) = self.runs.get_mut(&f.run) else {
            return;
        };
        self.running = self.running.saturating_sub(1);
        if let Some(n) = self.running_by_dag.get_mut(&run.dag.id) {
            *n = n.saturating_sub(1);
        }
        let task_id = run.dag.tasks[f.task].id.clone();
        let error = f.result.result.as_ref().err().map(ToString::to_string);
        self.changes.push(Change::Logs {
            run: f.run,
            task: task_id.clone(),
            try_number: f.try_number,
            lines: f.result.logs.lines,
            dropped: f.result.logs.dropped,
        });
        let end = run.end_try(
            f.task,
            f.try_number,
            &f.result.result,
            draining,
            f.at,
            &mut self.changes,
        );
        let state = match end {
            TryEnd::Done(s) => s,
            TryEnd::RetryAt(at) => {
                self.retries.insert((at, f.run, f.task));
                TaskState::UpForRetry
            }
            TryEnd::Abandoned => return,
        };
        self.actions.push(Action::Progress(Progress::TaskState {
            dag_id: run.dag.id.clone(),
            run_id: run.row.run_id.clone(),
            task_id,
            state,
            error,
        }));
        if state.is_finished() {
            let mut ready = Vec::new();
            for d in run.dag.tasks[f.task].downstream.clone() {
                run.evaluate(d, f.at, &mut ready, &mut self.changes);
            }
            self.ready.extend(ready.into_iter().map(|i| (f.run, i)));
        }
        self.check_run_done(f.run, f.at);
    }

    /// Finishes the run if all its tasks are done.
    pub(super) fn check_run_done(&mut self, key: RunKey, now: DateTime<Utc>) {
        let Some(state) = self.runs.get(&key).and_then(ActiveRun::outcome) else {
            return;
        };
        let Some(run) = self.runs.remove(&key) else {
            return;
        };
        self.changes.push(Change::FinishRun {
            run: key,
            state,
            at: now,
            note: run.timed_out.clone(),
        });
        self.actions.push(Action::RunDone { run: key, state });
        self.actions.push(Action::Progress(Progress::RunFinished {
            dag_id: run.dag.id.clone(),
            run_id: run.row.run_id.clone(),
            state,
        }));
        self.look_for_queued = true;
        self.cron_dirty = true;
    }

    /// Starts ready tasks while global and per-DAG limits allow; the rest wait as `queued`.
    fn dispatch(&mut self, now: DateTime<Utc>) {
        let mut waiting = VecDeque::new();
        while let Some((key, idx)) = self.ready.pop_front() {
            let Some(run) = self.runs.get_mut(&key) else {
                continue;
            };
            let slot = &mut run.slots[idx];
            if !matches!(slot.state, Some(TaskState::Scheduled | TaskState::Queued)) {
                continue;
            }
            let dag_running = self.running_by_dag.entry(run.dag.id.clone()).or_default();
            if self.running >= self.config.parallelism || *dag_running >= run.dag.max_active_tasks {
                if !slot.queued_written {
                    slot.queued_written = true;
                    slot.set(Some(TaskState::Queued));
                    let task = run.dag.tasks[idx].id.clone();
                    self.changes.push(Change::SetTaskState {
                        run: key,
                        task,
                        state: TaskState::Queued,
                        at: now,
                    });
                }
                waiting.push_back((key, idx));
                continue;
            }
            *dag_running += 1;
            self.running += 1;
            let try_number = run.start_try(idx, now, &mut self.changes);
            self.actions.push(Action::Spawn {
                run: key,
                task: idx,
                try_number,
            });
            self.actions.push(Action::Progress(Progress::TaskStarted {
                dag_id: run.dag.id.clone(),
                run_id: run.row.run_id.clone(),
                task_id: run.dag.tasks[idx].id.clone(),
                try_number,
            }));
        }
        self.ready = waiting;
    }

    /// Commits the turn's changes, then acts on them.
    async fn flush(&mut self) -> Result<(), StoreError> {
        let changes = std::mem::take(&mut self.changes);
        let mut attempt = 1;
        while let Err(e) = self.store.commit(&changes).await {
            if attempt >= COMMIT_ATTEMPTS {
                tracing::error!(error = %e, "cannot commit scheduler state; stopping");
                self.shutdown.cancel();
                return Err(e);
            }
            tracing::warn!(error = %e, attempt, "commit failed; retrying");
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            attempt += 1;
        }
        for action in std::mem::take(&mut self.actions) {
            match action {
                Action::Spawn {
                    run,
                    task,
                    try_number,
                } => self.spawn(run, task, try_number),
                Action::RunDone { run, state } => {
                    for w in self.watchers.remove(&run).unwrap_or_default() {
                        let _ = w.send(state);
                    }
                }
                Action::Progress(p) => {
                    if let Some(tx) = &self.progress {
                        let _ = tx.send(p);
                    }
                }
            }
        }
        Ok(())
    }

    fn spawn(&mut self, key: RunKey, idx: usize, try_number: u32) {
        let Some(run) = self.runs.get_mut(&key) else {
            return;
        };
        let dag = run.dag.clone();
        let task = &dag.tasks[idx];
        let cancel = run.cancel.child_token();
        run.slots[idx].cancel = Some(cancel.clone());
        let info = RunInfo {
            dag_id: dag.id.as_str(),
            run_id: run.row.run_id.as_str(),
            logical_date: run.row.logical_date,
            data_interval_end: run.row.data_interval_end,
            params: &dag.params,
            conf: &run.row.conf,
        };
        let values = TemplateValues::new(&info, task.id.as_str(), try_number);
        let ctx = TaskContext {
            dag_id: dag.id.clone(),
            run_id: run.row.run_id.clone(),
            run_key: key,
            task_id: task.id.clone(),
            try_number,
            first_try: 1,
            run_uid: format!(
                "{}/{}/{}",
                dag.id,
                run.row.run_id,
                crate::store::to_text(run.row.queued_at)
            ),
            logical_date: run.row.logical_date,
            log: TaskLog::new(self.config.log_limits),
            cancel,
            engine: self.handle.clone(),
            data: self.config.data.clone(),
        };
        let span = tracing::info_span!("task", dag_id = %dag.id, run_id = %run.row.run_id, task_id = %task.id, try_number);
        let handle = self.handle.clone();
        self.tracker.spawn(
            async move {
                let task = &dag.tasks[idx];
                let result =
                    executor::execute(&task.kind, &values, ctx, task.execution_timeout).await;
                let finished = Finished {
                    run: key,
                    task: idx,
                    try_number,
                    result,
                    at: Utc::now(),
                };
                // Fails only when the scheduler is gone, and then nobody is left to tell.
                let _ = handle.send(Command::Finished(Box::new(finished))).await;
            }
            .instrument(span),
        );
    }

    fn until_next_timer(&self) -> Duration {
        let mut next: Option<DateTime<Utc>> = self.retries.first().map(|r| r.0);
        let mut consider = |t: Option<DateTime<Utc>>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        // Once the interrupt is sent, the drain deadline is no longer a timer.
        consider(self.drain_deadline.filter(|_| !self.interrupted));
        self.runs
            .values()
            .filter(|r| r.timed_out.is_none())
            .for_each(|r| consider(r.deadline));
        if self.mode == Mode::Serve && self.drain_deadline.is_none() {
            // An interval already due is waiting for a free run slot: a finished run (or the
            // fallback poll) looks again, so it is not a timer.
            let now = Utc::now();
            self.cron
                .values()
                .flatten()
                .filter(|i| i.end > now)
                .for_each(|i| consider(Some(i.end)));
        }
        match next {
            Some(t) => (t - Utc::now()).to_std().unwrap_or(Duration::ZERO),
            None => Duration::from_secs(3600),
        }
    }

    fn on_timers(&mut self, now: DateTime<Utc>) {
        while let Some(&(at, key, idx)) = self.retries.first() {
            if at > now {
                break;
            }
            self.retries.pop_first();
            if let Some(run) = self.runs.get_mut(&key)
                && run.slots[idx].state == Some(TaskState::UpForRetry)
            {
                run.slots[idx].set(Some(TaskState::Scheduled));
                self.ready.push_back((key, idx));
            }
        }
        self.time_out_runs(now);
        if self.cron.values().flatten().any(|i| i.end <= now) {
            self.cron_dirty = true;
        }
        if !self.interrupted && self.drain_deadline.is_some_and(|d| d <= now) {
            self.interrupted = true;
            tracing::warn!(
                running = self.running,
                "shutdown grace period over: interrupting running tries"
            );
            self.runs.values().for_each(|r| r.cancel.cancel());
        }
    }

    fn time_out_runs(&mut self, now: DateTime<Utc>) {
        let expired: Vec<RunKey> = self
            .runs
            .values()
            .filter(|r| r.timed_out.is_none() && r.deadline.is_some_and(|d| d <= now))
            .map(ActiveRun::key)
            .collect();
        for key in expired {
            let Some(run) = self.runs.get_mut(&key) else {
                continue;
            };
            let limit = run.dag.dagrun_timeout.map(humantime::format_duration);
            let note = format!(
                "dagrun_timeout of {} exceeded",
                limit.map(|l| l.to_string()).unwrap_or_default()
            );
            tracing::warn!(dag_id = %run.dag.id, run_id = %run.row.run_id, "{note}");
            run.timed_out = Some(note);
            run.cancel.cancel();
            run.skip_unstarted(now, &mut self.changes);
            self.check_run_done(key, now);
        }
    }

    /// Marks a run as started by this scheduler.
    pub(super) fn activated(&mut self, key: RunKey) {
        self.reserved.remove(&key);
        if self.mode == (Mode::Foreground { root: key }) {
            self.root_started = true;
        }
    }

    pub(super) fn dag_running_runs(&self, dag: &DagId) -> u32 {
        self.runs.values().filter(|r| &r.dag.id == dag).count() as u32
    }
}
