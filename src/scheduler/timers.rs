//! Timers: due retries, dagrun timeouts, cron intervals, the shutdown grace period and the
//! lease's expiry. No polling loop sets the pace: the loop sleeps until the next of these.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Mode;
use super::active::{ActiveRun, EndContext};
use super::core::Scheduler;
use crate::ids::RunKey;
use crate::state::TaskState;
use crate::store::{Change, StoreError};
use crate::tasks::TaskError;

impl Scheduler {
    /// Stops taking work and gives running tries the grace period.
    pub(super) fn begin_drain(&mut self) {
        let grace = chrono::Duration::from_std(self.config.shutdown_grace).unwrap_or_default();
        tracing::info!(
            running = self.running,
            "shutting down: no new tasks start; waiting for running tries"
        );
        let now = Utc::now();
        self.drain_deadline = Some(now.checked_add_signed(grace).unwrap_or(now));
    }

    /// How long the loop may sleep before a timer is due.
    pub(super) fn until_next_timer(&self) -> Duration {
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
        if (!self.runs.is_empty() || !self.remote.is_empty())
            && self.lapsed_epoch != Some(self.owner.epoch)
        {
            consider(Some(self.lease.borrow().expires_at));
        }
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

    /// Acts on every timer that is due.
    pub(super) async fn on_timers(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.check_lease(now);
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
        self.time_out_runs(now).await?;
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
            self.remote.values().for_each(|r| r.cancel.cancel());
        }
        Ok(())
    }

    /// A lease that was not renewed in time may already have let another instance adopt
    /// this process's runs (after a freeze, or while the store was unreachable): stop their
    /// tries now rather than let two instances execute the same task.
    fn check_lease(&mut self, now: DateTime<Utc>) {
        let (epoch, expires_at) = {
            let lease = self.lease.borrow();
            (lease.owner.epoch, lease.expires_at)
        };
        if epoch == self.owner.epoch && expires_at <= now && self.lapsed_epoch != Some(epoch) {
            self.lapsed_epoch = Some(epoch);
            self.detach_all("this process's lease lapsed");
        }
    }

    async fn time_out_runs(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let expired: Vec<RunKey> = self
            .runs
            .values()
            .filter(|r| r.timed_out.is_none() && r.deadline.is_some_and(|d| d <= now))
            .map(ActiveRun::key)
            .collect();
        for key in expired {
            self.handling = Some(key);
            // Offers no instance claimed yet are withdrawn first, so none can be claimed
            // while the run times out; claims made meanwhile are learnt here.
            let waiting = self
                .runs
                .get(&key)
                .is_some_and(|r| r.slots.iter().any(|s| s.offered && !s.remote));
            let claimed = if waiting {
                self.store.withdraw_offers(&self.owner, key).await?
            } else {
                Vec::new()
            };
            let Some(run) = self.runs.get_mut(&key) else {
                continue;
            };
            for (task, try_number) in claimed {
                if let Some((idx, _)) = run.dag.task(task.as_str()) {
                    let slot = &mut run.slots[idx];
                    if slot.offered && !slot.remote && slot.state == Some(TaskState::Queued) {
                        slot.remote = true;
                        slot.try_number = try_number;
                        slot.set(Some(TaskState::Running));
                        run.running += 1;
                    }
                }
            }
            let limit = run.dag.dagrun_timeout.map(humantime::format_duration);
            let note = format!(
                "dagrun_timeout of {} exceeded",
                limit.map(|l| l.to_string()).unwrap_or_default()
            );
            tracing::warn!(dag_id = %run.dag.id, run_id = %run.row.run_id, "{note}");
            run.timed_out = Some(note.clone());
            run.cancel.cancel();
            // Offered tries are withdrawn (a worker running one stops when it sees its
            // claim gone) and a running one fails here, as a cancelled local try would.
            for idx in 0..run.slots.len() {
                if !std::mem::take(&mut run.slots[idx].offered) {
                    continue;
                }
                self.changes.push(Change::DropOffer {
                    run: key,
                    task: run.dag.tasks[idx].id.clone(),
                });
                if let Some(n) = self.running_by_dag.get_mut(&run.dag.id) {
                    *n = n.saturating_sub(1);
                }
                if std::mem::take(&mut run.slots[idx].remote) {
                    let try_number = run.slots[idx].try_number;
                    let cancelled = Err(TaskError::Cancelled(note.clone()));
                    run.end_try(
                        idx,
                        try_number,
                        &cancelled,
                        EndContext::default(),
                        now,
                        &mut self.changes,
                    );
                }
            }
            run.skip_unstarted(now, &mut self.changes);
            self.check_run_done(key, now);
        }
        Ok(())
    }
}
