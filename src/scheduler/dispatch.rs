//! Starting ready tasks within the global and per-DAG limits, and what a try's end does to
//! its run: the task's next state, its ready downstream tasks, the run's end.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};

use super::Progress;
use super::active::{ActiveRun, TryEnd};
use super::core::{Action, Finished, Origin, Scheduler};
use crate::ids::RunKey;
use crate::metrics::{self, Event};
use crate::state::TaskState;
use crate::store::Change;

impl Scheduler {
    /// Starts ready tasks while global and per-DAG limits allow; the rest wait as `queued`.
    pub(super) fn dispatch(&mut self, now: DateTime<Utc>) {
        let mut waiting = VecDeque::new();
        let shares = self.shares_tries();
        while let Some((key, idx)) = self.ready.pop_front() {
            let Some(run) = self.runs.get_mut(&key) else {
                continue;
            };
            let slot = &mut run.slots[idx];
            if slot.offered || !matches!(slot.state, Some(TaskState::Scheduled | TaskState::Queued))
            {
                continue;
            }
            let dag_running = self.running_by_dag.entry(run.dag.id.clone()).or_default();
            let slots_full = self.running >= self.config.parallelism;
            if slots_full || *dag_running >= run.dag.max_active_tasks {
                // Only this process's slots are full: any instance with a free one may run
                // it (the offer keeps its `max_active_tasks` place).
                let offer = shares
                    && *dag_running < run.dag.max_active_tasks
                    && Self::may_offer(&run.dag.tasks[idx].kind);
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
                if offer {
                    slot.offered = true;
                    *dag_running += 1;
                    self.changes.push(Change::OfferTry {
                        run: key,
                        task: run.dag.tasks[idx].id.clone(),
                        try_number: slot.try_number + 1,
                        at: now,
                    });
                    continue;
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
            if self.config.metrics.is_enabled() {
                self.actions.push(Action::Observe(
                    key,
                    Event::TryStarted {
                        dag_id: run.dag.id.clone(),
                        task_id: run.dag.tasks[idx].id.clone(),
                    },
                ));
            }
            self.actions.push(Action::Progress(
                key,
                Progress::TaskStarted {
                    dag_id: run.dag.id.clone(),
                    run_id: run.row.run_id.clone(),
                    task_id: run.dag.tasks[idx].id.clone(),
                    try_number,
                },
            ));
        }
        self.ready = waiting;
    }

    /// A try ended: record it and move its run on.
    pub(super) fn on_finished(&mut self, mut f: Finished) {
        if f.origin == Origin::Local && self.remote_finished(&mut f) {
            return;
        }
        let at = self.end_context(f.origin);
        self.handling = Some(f.run);
        failpoint_on_finish(&f);
        let Some(run) = self.runs.get_mut(&f.run) else {
            // The run was let go of: its result is not this process's to record.
            tracing::info!(run = %f.run, task_id = %f.task_id, try_number = f.try_number, "a try of a run this process let go of has stopped");
            self.try_gone(f.run);
            return;
        };
        // A slot frees up: a queued run left for lack of one may be taken now (an offered
        // try too: `look_for_offers` stays up while offers wait for a slot).
        if std::mem::take(&mut self.claims_waiting) {
            self.look_for_queued = true;
        }
        let slot = &mut run.slots[f.task];
        // A deferred try gave its slot back when it started waiting; a remote one never
        // held one here, only its `max_active_tasks` place.
        let remote = std::mem::take(&mut slot.remote);
        slot.offered = false;
        let deferred = std::mem::take(&mut slot.deferred);
        if !remote && !deferred {
            self.running = self.running.saturating_sub(1);
        }
        if (remote || !deferred)
            && let Some(n) = self.running_by_dag.get_mut(&run.dag.id)
        {
            *n = n.saturating_sub(1);
        }
        let task_id = run.dag.tasks[f.task].id.clone();
        let error = f.result.result.as_ref().err().map(ToString::to_string);
        if f.origin == Origin::Local {
            self.changes.push(Change::Logs {
                run: f.run,
                task: task_id.clone(),
                try_number: f.try_number,
                lines: f.result.logs.lines,
                dropped: f.result.logs.dropped,
            });
        }
        let end = run.end_try(
            f.task,
            f.try_number,
            &f.result.result,
            at,
            f.at,
            &mut self.changes,
        );
        if self.config.metrics.is_enabled() {
            self.actions.push(Action::Observe(
                f.run,
                Event::TryEnded {
                    dag_id: run.dag.id.clone(),
                    task_id: task_id.clone(),
                    end: match end {
                        TryEnd::Done(s) => metrics::TryEnd::State(s),
                        TryEnd::RetryAt(_) => metrics::TryEnd::State(TaskState::UpForRetry),
                        TryEnd::Abandoned => metrics::TryEnd::Abandoned,
                    },
                    duration: Some(f.duration),
                },
            ));
        }
        let state = match end {
            TryEnd::Done(s) => s,
            TryEnd::RetryAt(at) => {
                self.retries.insert((at, f.run, f.task));
                TaskState::UpForRetry
            }
            // A try its worker's shutdown stopped runs again here (this process goes on).
            TryEnd::Abandoned if f.origin != Origin::Local => {
                let mut ready = Vec::new();
                run.evaluate(f.task, f.at, &mut ready, &mut self.changes);
                self.ready.extend(ready.into_iter().map(|i| (f.run, i)));
                return;
            }
            TryEnd::Abandoned => return,
        };
        self.actions.push(Action::Progress(
            f.run,
            Progress::TaskState {
                dag_id: run.dag.id.clone(),
                run_id: run.row.run_id.clone(),
                task_id,
                state,
                error,
            },
        ));
        if state.is_finished() {
            self.downstream_of(f.run, f.task, f.at);
        } else {
            self.check_run_done(f.run, f.at);
        }
    }

    /// Task `idx` of run `key` finished: its downstream tasks may be ready, the run done.
    pub(super) fn downstream_of(&mut self, key: RunKey, idx: usize, now: DateTime<Utc>) {
        if let Some(run) = self.runs.get_mut(&key) {
            let mut ready = Vec::new();
            for d in run.dag.tasks[idx].downstream.clone() {
                run.evaluate(d, now, &mut ready, &mut self.changes);
            }
            self.ready.extend(ready.into_iter().map(|i| (key, i)));
        }
        self.check_run_done(key, now);
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
        self.observe(key, || Event::RunEnded {
            dag_id: run.dag.id.clone(),
            state,
            duration: run.row.start_date.and_then(|s| (now - s).to_std().ok()),
        });
        self.actions.push(Action::Progress(
            key,
            Progress::RunFinished {
                dag_id: run.dag.id.clone(),
                run_id: run.row.run_id.clone(),
                state,
            },
        ));
        self.look_for_queued = true;
        self.cron_dirty = true;
    }
}

/// Test-only fault injection (debug builds): `ORCHESTRATOR_FAILPOINT=panic_on_finish:<task>`
/// makes the scheduler panic while handling the end of any try of that task, so the
/// integration tests can prove a panic never takes the daemon down.
#[cfg(debug_assertions)]
fn failpoint_on_finish(f: &Finished) {
    if let Ok(point) = std::env::var("ORCHESTRATOR_FAILPOINT")
        && let Some(task) = point.strip_prefix("panic_on_finish:")
        && f.task_id.as_str() == task
    {
        panic!("failpoint panic_on_finish:{task}");
    }
}

#[cfg(not(debug_assertions))]
fn failpoint_on_finish(_: &Finished) {}
