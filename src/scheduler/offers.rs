//! Work at the task level across instances sharing a PostgreSQL store (see
//! `store/offers.rs` for the protocol): a run's owner offers the ready tries its own slots
//! cannot take; every instance with free slots claims offers, its own included, and runs
//! them; the owner records the ends its workers report, and counts a try whose worker lost
//! its lease as interrupted.

use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::Mode;
use super::active::EndContext;
use super::core::{Finished, Origin, Scheduler};
use crate::executor::TryResult;
use crate::ids::{RunKey, TaskId};
use crate::metrics::Event;
use crate::state::TaskState;
use crate::store::{Change, ClaimedTry, OfferState, RemoteEnd, StoreError};
use crate::tasks::{LogBatch, TaskError, TaskKind, TaskOutcome};

/// A try this process runs for another instance's run.
pub(super) struct RemoteTry {
    pub try_number: u32,
    pub cancel: CancellationToken,
    /// Its claim is gone (withdrawn, or this process's lease lapsed): its end is not
    /// reported; it only gives its slot back.
    pub abandoned: bool,
}

impl Scheduler {
    /// Whether this process offers and claims tries (a `serve` on a shared store).
    pub(super) fn shares_tries(&self) -> bool {
        self.mode == Mode::Serve && self.shared_store()
    }

    /// Whether task `idx` of `run` may run on another instance: a `trigger_dag` try talks
    /// to its own run's scheduler, so it stays with the owner.
    pub(super) fn may_offer(kind: &TaskKind) -> bool {
        !matches!(kind, TaskKind::TriggerDag(_))
    }

    /// Claims offered tries for this process's free slots and starts them.
    pub(super) async fn claim_offers(&mut self) -> Result<(), StoreError> {
        if !self.shares_tries() || self.drain_deadline.is_some() {
            self.look_for_offers = false;
            return Ok(());
        }
        let free = self
            .config
            .parallelism
            .saturating_sub(self.running + self.ready.len());
        // Without a free slot (or while restarting) the flag stays up: a slot freeing up
        // looks again, and only then does this cost a query.
        if free == 0 || !self.may_take_runs() {
            return Ok(());
        }
        let announced = std::mem::take(&mut self.offers_announced);
        let claimed = match self
            .store
            .claim_offers(&self.owner, &self.host, free, announced)
            .await
        {
            Ok(claimed) => claimed,
            // The lease lapsed before the keeper's new epoch reached this loop: as in
            // `flush`, everything held under the old epoch is let go of.
            Err(StoreError::LeaseLost) => {
                self.detach_all("this process's lease lapsed");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        // Fewer than asked for: nothing else is on offer until someone announces more.
        self.look_for_offers = claimed.len() >= free;
        for c in claimed {
            if c.mine {
                self.start_own_claim(&c);
            } else if let Err(e) = self.start_remote(c).await {
                // The claims not started yet are handed back once what runs has ended.
                self.claims_abandoned = true;
                return Err(e);
            }
        }
        if !self.changes.is_empty() {
            self.flush().await?;
        }
        Ok(())
    }

    /// A claimed offer of this process's own run: an ordinary local try (already
    /// committed as running by the claim).
    fn start_own_claim(&mut self, c: &ClaimedTry) {
        let Some(run) = self.runs.get_mut(&c.run) else {
            // Let go of meanwhile: whoever takes the run on counts the try as interrupted.
            tracing::warn!(run = %c.run, task_id = %c.task, "claimed a try of a run this process let go of");
            return;
        };
        let Some((idx, _)) = run.dag.task(c.task.as_str()) else {
            return;
        };
        let slot = &mut run.slots[idx];
        slot.offered = false;
        slot.try_number = c.try_number;
        slot.deferred = false;
        slot.queued_written = false;
        slot.set(Some(TaskState::Running));
        run.running += 1;
        // Its `max_active_tasks` place was taken when it was offered.
        self.running += 1;
        let dag_id = run.dag.id.clone();
        self.config.metrics.record(&Event::TryStarted {
            dag_id,
            task_id: c.task.clone(),
        });
        self.spawn(c.run, idx, c.try_number);
    }

    /// A claimed offer of another instance's run: runs here, its end goes to the offer.
    async fn start_remote(&mut self, c: ClaimedTry) -> Result<(), StoreError> {
        let row = self.store.run(c.run).await?;
        let dag = match &row {
            Some(row) => self.dag_for(row).await?.ok(),
            None => None,
        };
        let (Some(row), Some(dag)) = (row, dag) else {
            // Claimed but not runnable here (its DAG version does not build on this
            // version of orchestrator): reported as a failure no retry fixes.
            self.changes.push(Change::EndOffer {
                run: c.run,
                task: c.task.clone(),
                try_number: c.try_number,
                end: RemoteEnd::Failed {
                    error: "the instance that claimed this try cannot build its DAG version".into(),
                    retryable: false,
                },
                at: Utc::now(),
                duration_ms: 0,
            });
            return Ok(());
        };
        let Some((idx, _)) = dag.task(c.task.as_str()) else {
            self.changes.push(Change::EndOffer {
                run: c.run,
                task: c.task.clone(),
                try_number: c.try_number,
                end: RemoteEnd::Failed {
                    error: format!("task {} is not in the run's DAG version", c.task),
                    retryable: false,
                },
                at: Utc::now(),
                duration_ms: 0,
            });
            return Ok(());
        };
        let cancel = self.guard.child();
        self.running += 1;
        self.remote.insert(
            (c.run, c.task.clone()),
            RemoteTry {
                try_number: c.try_number,
                cancel: cancel.clone(),
                abandoned: false,
            },
        );
        tracing::debug!(dag_id = %dag.id, run_id = %row.run_id, task_id = %c.task, try_number = c.try_number, "running a try claimed from another instance");
        self.launch(&row, dag, idx, c.try_number, c.first_try, cancel);
        Ok(())
    }

    /// A try run for another instance ended: report it to the offer (unless abandoned).
    /// False if `f` is not such a try.
    pub(super) fn remote_finished(&mut self, f: &mut Finished) -> bool {
        let key = (f.run, f.task_id.clone());
        match self.remote.get(&key) {
            Some(r) if r.try_number == f.try_number => {}
            _ => return false,
        }
        let Some(remote) = self.remote.remove(&key) else {
            return false;
        };
        self.running = self.running.saturating_sub(1);
        if std::mem::take(&mut self.claims_waiting) {
            self.look_for_queued = true;
        }
        if remote.abandoned {
            return true;
        }
        let logs = std::mem::take(&mut f.result.logs);
        self.changes.push(Change::RemoteLogs {
            run: f.run,
            task: f.task_id.clone(),
            try_number: f.try_number,
            lines: logs.lines,
            dropped: logs.dropped,
        });
        let end = match &f.result.result {
            Ok(TaskOutcome::Success) => RemoteEnd::Success,
            Ok(TaskOutcome::Skipped(why)) => RemoteEnd::Skipped(why.clone()),
            Err(e) => {
                let stopped = matches!(e, TaskError::Cancelled(_) | TaskError::Killed(_));
                if self.drain_deadline.is_some() && (stopped || self.interrupted) {
                    RemoteEnd::Abandoned(e.to_string())
                } else {
                    RemoteEnd::Failed {
                        error: e.to_string(),
                        retryable: e.is_retryable(),
                    }
                }
            }
        };
        self.changes.push(Change::EndOffer {
            run: f.run,
            task: f.task_id.clone(),
            try_number: f.try_number,
            end,
            at: f.at,
            duration_ms: u64::try_from(f.duration.as_millis()).unwrap_or(u64::MAX),
        });
        true
    }

    /// Stops the tries run for other instances (this process's lease lapsed, or it starts
    /// over): nothing about them can be reported any more.
    pub(super) fn abandon_remote(&mut self) {
        for r in self.remote.values_mut() {
            r.cancel.cancel();
            r.abandoned = true;
        }
    }

    /// Looks at the offers this process is involved in: ends its workers reported (and
    /// workers lost) for its own runs, and claims of its own withdrawn by their runs' owners.
    pub(super) async fn check_offers(&mut self) -> Result<(), StoreError> {
        self.offers_changed = false;
        if !self.shared_store() {
            return Ok(());
        }
        if self.remote.values().any(|r| !r.abandoned) {
            let live = self.store.live_claims(&self.owner).await?;
            for ((run, task), r) in &mut self.remote {
                if !r.abandoned && !live.contains(&(*run, task.clone(), r.try_number)) {
                    tracing::warn!(run = %run, task_id = %task, "the run's owner withdrew this try: stopping it");
                    r.cancel.cancel();
                    r.abandoned = true;
                }
            }
        }
        let waiting = self
            .runs
            .values()
            .any(|r| r.slots.iter().any(|s| s.offered));
        if !waiting {
            return Ok(());
        }
        let claims = self.store.claimed_offers(&self.owner, None).await?;
        for c in claims {
            self.on_claimed(c.run, &c.task, c.try_number, c.state)
                .await?;
        }
        Ok(())
    }

    /// Records what a worker did with an offered try of one of this process's runs.
    pub(super) async fn on_claimed(
        &mut self,
        key: RunKey,
        task: &TaskId,
        try_number: u32,
        state: OfferState,
    ) -> Result<(), StoreError> {
        let Some(run) = self.runs.get_mut(&key) else {
            return Ok(());
        };
        let Some((idx, _)) = run.dag.task(task.as_str()) else {
            return Ok(());
        };
        let slot = &mut run.slots[idx];
        if !slot.offered {
            return Ok(());
        }
        if !slot.remote {
            // Claimed since it was offered: the try is running there.
            if slot.state != Some(TaskState::Queued) {
                return Ok(());
            }
            slot.remote = true;
            slot.try_number = try_number;
            slot.queued_written = false;
            slot.set(Some(TaskState::Running));
            run.running += 1;
        } else if slot.try_number != try_number {
            return Ok(());
        }
        let (end, at, duration) = match state {
            OfferState::Running => return Ok(()),
            OfferState::Ended {
                end,
                at,
                duration_ms,
            } => (end, at, Duration::from_millis(duration_ms)),
            OfferState::WorkerLost => {
                // What it left on this host is stopped before it is retried.
                let uid = run.row.uid_or_legacy();
                self.stop_leftovers(key, &uid, task, try_number).await?;
                self.worker_lost(key, idx);
                return Ok(());
            }
        };
        let (result, shutdown) = match end {
            RemoteEnd::Success => (Ok(TaskOutcome::Success), false),
            RemoteEnd::Skipped(why) => (Ok(TaskOutcome::Skipped(why)), false),
            RemoteEnd::Failed {
                error,
                retryable: true,
            } => (Err(TaskError::Failed(error)), false),
            RemoteEnd::Failed {
                error,
                retryable: false,
            } => (Err(TaskError::Fatal(error)), false),
            // Judged as stopped by a shutdown (see `end_context`), which names it.
            RemoteEnd::Abandoned(why) => (Err(TaskError::Failed(why)), true),
        };
        self.changes.push(Change::DropOffer {
            run: key,
            task: task.clone(),
        });
        self.on_finished(Finished {
            run: key,
            task: idx,
            task_id: task.clone(),
            try_number,
            result: TryResult {
                result,
                logs: LogBatch::default(),
            },
            at,
            duration,
            origin: Origin::Remote { shutdown },
        });
        Ok(())
    }

    /// The instance running an offered try lost its lease: the try counts as interrupted
    /// (retried per policy), and its offer goes.
    fn worker_lost(&mut self, key: RunKey, idx: usize) {
        let now = Utc::now();
        // Out of `runs` while its try is ended, back before its downstream is looked at.
        let Some(mut run) = self.runs.remove(&key) else {
            return;
        };
        let task = run.dag.tasks[idx].id.clone();
        tracing::warn!(dag_id = %run.dag.id, run_id = %run.row.run_id, task_id = %task, "the instance running this try lost its lease");
        let slot = &mut run.slots[idx];
        slot.offered = false;
        slot.remote = false;
        if let Some(n) = self.running_by_dag.get_mut(&run.dag.id) {
            *n = n.saturating_sub(1);
        }
        self.changes.push(Change::DropOffer { run: key, task });
        run.running = run.running.saturating_sub(1);
        let state = self.end_interrupted(&mut run, idx, now);
        self.runs.insert(key, run);
        if state.is_some_and(TaskState::is_finished) {
            self.downstream_of(key, idx, now);
        }
    }

    /// How a remote try's end is judged: by its worker's shutdown, not this process's.
    pub(super) fn end_context(&self, origin: Origin) -> EndContext {
        match origin {
            Origin::Local => EndContext {
                draining: self.drain_deadline.is_some(),
                interrupt_sent: self.interrupted,
            },
            Origin::Remote { shutdown } => EndContext {
                draining: shutdown,
                interrupt_sent: shutdown,
            },
        }
    }
}
