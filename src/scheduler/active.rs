//! The in-memory state machine of one run being executed: which tasks are ready, how a try's
//! end changes its task, how failures and skips propagate downstream, and when the run is
//! over. Pure logic (no I/O): it records [`Change`]s for the scheduler to commit before it
//! acts, which keeps it unit-testable.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::dag::Dag;
use crate::dag::trigger_rule::{Decision, UpstreamCounts};
use crate::ids::RunKey;
use crate::state::{RunState, TaskState};
use crate::store::{Change, RunRow, TaskInstanceRow};
use crate::tasks::{TaskError, TaskOutcome};

/// One task's slot in a running run.
#[derive(Debug, Default)]
pub struct Slot {
    /// `None`: no status; `Scheduled`: in the ready queue (not persisted).
    pub state: Option<TaskState>,
    /// Tries started.
    pub try_number: u32,
    /// Tries allowed.
    pub max_tries: u32,
    /// Cancels the running try.
    pub cancel: Option<CancellationToken>,
    /// Whether `queued` has been written for the current wait.
    pub queued_written: bool,
    /// First try of the current attempt (since the last clear).
    pub first_try: u32,
    /// The running try released its slot while it waits (`trigger_dag`).
    pub deferred: bool,
    /// Its next try is on offer to every instance (shared stores), or runs on the instance
    /// that claimed it; it holds a `max_active_tasks` place, not one of this process's slots.
    pub offered: bool,
    /// The current try runs on another instance (a claimed offer).
    pub remote: bool,
}

/// A run this process is executing.
#[derive(Debug)]
pub struct ActiveRun {
    /// The run as claimed.
    pub row: RunRow,
    /// The DAG definition it runs with (a snapshot: later edits apply to later runs).
    pub dag: Arc<Dag>,
    /// Per task, indexed like `dag.tasks`.
    pub slots: Vec<Slot>,
    /// Tries executing now.
    pub running: u32,
    /// When the dagrun timeout fires.
    pub deadline: Option<DateTime<Utc>>,
    /// Set when the run timed out: it fails whatever its tasks do.
    pub timed_out: Option<String>,
    /// Parent of every try's token.
    pub cancel: CancellationToken,
}

/// What happened to a task when its try ended.
#[derive(Debug, PartialEq)]
pub enum TryEnd {
    /// Finished in this state.
    Done(TaskState),
    /// Will be tried again at this time.
    RetryAt(DateTime<Utc>),
    /// Interrupted by shutdown; runs again on the next start.
    Abandoned,
}

/// The circumstances a try ended in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndContext {
    /// The process is shutting down.
    pub draining: bool,
    /// The shutdown grace period is over and running tries were told to stop.
    pub interrupt_sent: bool,
}

/// Reason recorded on a try that was running when its owner died or lost its lease.
pub const INTERRUPTED: &str =
    "interrupted: the process running this try stopped or lost its lease (crash, kill or freeze)";

impl Slot {
    /// Moves to `next`, reporting a transition the state model does not allow (a bug).
    pub fn set(&mut self, next: Option<TaskState>) {
        if !TaskState::can_become(self.state, next) {
            tracing::error!(from = ?self.state, to = ?next, "unexpected task state transition");
            debug_assert!(false, "task state {:?} -> {:?}", self.state, next);
        }
        self.state = next;
    }
}

impl ActiveRun {
    /// Builds the run from its stored task instances (missing ones have no status).
    pub fn new(
        row: RunRow,
        dag: Arc<Dag>,
        tis: &[TaskInstanceRow],
        cancel: CancellationToken,
    ) -> Self {
        let slots = dag
            .tasks
            .iter()
            .map(|t| match tis.iter().find(|ti| ti.task_id == t.id) {
                Some(ti) => Slot {
                    state: ti.state,
                    try_number: ti.try_number,
                    max_tries: ti.max_tries.max(1),
                    first_try: ti.first_try.max(1),
                    ..Slot::default()
                },
                None => Slot {
                    max_tries: t.retry.max_tries(),
                    first_try: 1,
                    ..Slot::default()
                },
            })
            .collect();
        let deadline = dag.dagrun_timeout.and_then(|t| {
            let start = row.start_date.unwrap_or_else(Utc::now);
            chrono::Duration::from_std(t)
                .ok()
                .and_then(|d| start.checked_add_signed(d))
        });
        Self {
            row,
            dag,
            slots,
            running: 0,
            deadline,
            timed_out: None,
            cancel,
        }
    }

    /// Running tries that released their slot.
    pub fn deferred(&self) -> u32 {
        self.slots.iter().filter(|s| s.deferred).count() as u32
    }

    /// The run's key.
    pub fn key(&self) -> RunKey {
        self.row.key
    }

    /// Decides what to do with task `idx` if it has no status, propagating skips and
    /// upstream failures. Ready tasks are marked `Scheduled` and pushed to `ready`.
    pub fn evaluate(
        &mut self,
        idx: usize,
        now: DateTime<Utc>,
        ready: &mut Vec<usize>,
        changes: &mut Vec<Change>,
    ) {
        let mut stack = vec![idx];
        while let Some(i) = stack.pop() {
            if self.slots[i].state.is_some() {
                continue;
            }
            let task = &self.dag.tasks[i];
            let mut counts = UpstreamCounts::default();
            task.upstream
                .iter()
                .for_each(|&u| counts.add(self.slots[u].state));
            let new_state = match task.trigger_rule.decide(counts) {
                Decision::Wait => continue,
                Decision::Run if self.timed_out.is_some() => TaskState::Skipped,
                Decision::Run => {
                    self.slots[i].set(Some(TaskState::Scheduled));
                    ready.push(i);
                    continue;
                }
                Decision::UpstreamFailed => TaskState::UpstreamFailed,
                Decision::Skip => TaskState::Skipped,
            };
            self.slots[i].set(Some(new_state));
            changes.push(Change::SetTaskState {
                run: self.key(),
                task: task.id.clone(),
                state: new_state,
                at: now,
            });
            stack.extend(task.downstream.iter().copied());
        }
    }

    /// Evaluates every task (on start or recovery).
    pub fn evaluate_all(
        &mut self,
        now: DateTime<Utc>,
        ready: &mut Vec<usize>,
        changes: &mut Vec<Change>,
    ) {
        for i in 0..self.slots.len() {
            self.evaluate(i, now, ready, changes);
        }
    }

    /// Marks task `idx` as starting its next try; returns the try number.
    pub fn start_try(&mut self, idx: usize, now: DateTime<Utc>, changes: &mut Vec<Change>) -> u32 {
        let slot = &mut self.slots[idx];
        slot.try_number += 1;
        slot.deferred = false;
        slot.set(Some(TaskState::Running));
        slot.queued_written = false;
        self.running += 1;
        let try_number = slot.try_number;
        changes.push(Change::StartTry {
            run: self.key(),
            task: self.dag.tasks[idx].id.clone(),
            try_number,
            at: now,
        });
        try_number
    }

    /// Records the end of a try and decides the task's next state.
    ///
    /// Shutdown never costs a retry: while draining, a try that was cancelled, that ended
    /// after the interrupt was sent, or whose process was killed by a signal (a service
    /// manager signals the whole group) is abandoned — it runs again on the next start
    /// with its retries intact — whatever error it returned.
    pub fn end_try(
        &mut self,
        idx: usize,
        try_number: u32,
        result: &Result<TaskOutcome, TaskError>,
        at: EndContext,
        now: DateTime<Utc>,
        changes: &mut Vec<Change>,
    ) -> TryEnd {
        self.running = self.running.saturating_sub(1);
        self.slots[idx].cancel = None;
        let error = match result {
            Ok(outcome) => {
                let state = match outcome {
                    TaskOutcome::Success => TaskState::Success,
                    TaskOutcome::Skipped(_) => TaskState::Skipped,
                };
                self.slots[idx].set(Some(state));
                changes.push(Change::FinishTry {
                    run: self.row.key,
                    task: self.dag.tasks[idx].id.clone(),
                    try_number,
                    state,
                    at: now,
                    error: None,
                    next_retry_at: None,
                    interrupted: false,
                });
                return TryEnd::Done(state);
            }
            Err(e) => e,
        };
        let shutdown_stopped_it =
            matches!(error, TaskError::Cancelled(_) | TaskError::Killed(_)) || at.interrupt_sent;
        if at.draining && shutdown_stopped_it && self.timed_out.is_none() {
            // The interrupted try keeps its number and log; it does not use a retry.
            let slot = &mut self.slots[idx];
            slot.set(None);
            slot.max_tries += 1;
            changes.push(Change::AbandonTry {
                run: self.row.key,
                task: self.dag.tasks[idx].id.clone(),
                try_number,
                at: now,
                reason: format!("interrupted by shutdown: {error}"),
            });
            return TryEnd::Abandoned;
        }
        let retryable = error.is_retryable();
        self.fail_or_retry(
            idx,
            try_number,
            error.to_string(),
            retryable,
            false,
            now,
            changes,
        )
    }

    /// A try found running in the store whose process is gone (its owner died or lost its
    /// lease): it counts as a failed try, retried or failed per the task's policy.
    pub fn end_interrupted_try(
        &mut self,
        idx: usize,
        now: DateTime<Utc>,
        changes: &mut Vec<Change>,
    ) -> TryEnd {
        let try_number = self.slots[idx].try_number;
        self.fail_or_retry(
            idx,
            try_number,
            INTERRUPTED.into(),
            true,
            true,
            now,
            changes,
        )
    }

    /// The one retry-or-fail rule: another try at the policy's delay if the failure is
    /// retryable, tries are left and the run has not timed out; failed otherwise.
    #[allow(clippy::too_many_arguments)]
    fn fail_or_retry(
        &mut self,
        idx: usize,
        try_number: u32,
        error: String,
        retryable: bool,
        interrupted: bool,
        now: DateTime<Utc>,
        changes: &mut Vec<Change>,
    ) -> TryEnd {
        let task = &self.dag.tasks[idx];
        let slot = &mut self.slots[idx];
        let retry_at =
            (retryable && try_number < slot.max_tries && self.timed_out.is_none()).then(|| {
                let delay = chrono::Duration::from_std(task.retry.delay_after(try_number))
                    .unwrap_or(chrono::Duration::MAX);
                now.checked_add_signed(delay)
                    .unwrap_or(DateTime::<Utc>::MAX_UTC)
            });
        let state = if retry_at.is_some() {
            TaskState::UpForRetry
        } else {
            TaskState::Failed
        };
        slot.set(Some(state));
        changes.push(Change::FinishTry {
            run: self.row.key,
            task: task.id.clone(),
            try_number,
            state,
            at: now,
            error: Some(error),
            next_retry_at: retry_at,
            interrupted,
        });
        match retry_at {
            Some(at) => TryEnd::RetryAt(at),
            None => TryEnd::Done(state),
        }
    }

    /// Sets every task that has not started to skipped (dagrun timeout).
    pub fn skip_unstarted(&mut self, now: DateTime<Utc>, changes: &mut Vec<Change>) {
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if matches!(
                slot.state,
                None | Some(TaskState::Scheduled | TaskState::Queued | TaskState::UpForRetry)
            ) {
                slot.set(Some(TaskState::Skipped));
                changes.push(Change::SetTaskState {
                    run: self.row.key,
                    task: self.dag.tasks[i].id.clone(),
                    state: TaskState::Skipped,
                    at: now,
                });
            }
        }
    }

    /// The run's final state once every task is finished and nothing runs; Airflow's rule:
    /// failed if a leaf task failed (or the run timed out), success otherwise.
    pub fn outcome(&self) -> Option<RunState> {
        let all_done = self
            .slots
            .iter()
            .all(|s| s.state.is_some_and(TaskState::is_finished));
        if !all_done || self.running > 0 {
            return None;
        }
        if self.timed_out.is_some() {
            return Some(RunState::Failed);
        }
        let leaves = self
            .dag
            .tasks
            .iter()
            .zip(&self.slots)
            .filter(|(t, _)| t.downstream.is_empty())
            .map(|(_, s)| s.state);
        Some(RunState::from_leaves(leaves))
    }
}

#[cfg(test)]
mod tests;
