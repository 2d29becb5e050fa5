//! Taking runs on: claiming queued runs, and adopting running runs whose owner's lease
//! lapsed (crash, `kill -9`, freeze, shutdown) — interrupted tries are retried or failed per
//! their policy. A run executes the DAG version it was created with, rebuilt from the store
//! when the loaded files say something else (or nothing).

use std::sync::Arc;

use chrono::Utc;

use super::Mode;
use super::active::{ActiveRun, TryEnd};
use super::core::Scheduler;
use crate::dag::Dag;
use crate::ids::{RunKey, TaskId};
use crate::metrics::{self, Event};
use crate::state::{RunState, TaskState};
use crate::store::{Change, OfferState, RunRow, StoreError};
use crate::tasks::process::{StaleGroup, kill_stale_group, try_marker};

fn task_specs(dag: &Dag) -> Vec<(TaskId, u32)> {
    dag.tasks
        .iter()
        .map(|t| (t.id.clone(), t.retry.max_tries()))
        .collect()
}

/// Why a run's DAG cannot be had.
pub(super) enum Unavailable {
    /// A run from before stored versions whose DAG is not loaded.
    NotLoaded,
    /// The stored version is missing or no longer builds.
    Broken(String),
}

impl Scheduler {
    /// Claims queued runs this scheduler may take, within `max_active_runs`.
    pub(super) async fn claim_queued(&mut self) -> Result<(), StoreError> {
        if !self.may_take_runs() {
            return Ok(());
        }
        // `max_active_runs` counts every running run in the store, not only this process's:
        // a run whose owner crashed is still running until it is adopted and finishes.
        // Backfill runs have their own pool (Airflow 3): a backfill never starves the schedule.
        let mut running = self.store.running_run_counts().await?;
        for row in self.store.claimable_queued(&self.owner).await? {
            if self.runs.contains_key(&row.key)
                || self.detached.contains_key(&row.key)
                || self.poisoned.contains(&row.key)
            {
                continue;
            }
            let mine = row.owner.as_ref() == Some(&self.owner.id);
            if matches!(self.mode, Mode::Foreground { .. }) && !mine {
                continue;
            }
            // On a store shared by several instances, a run goes to an instance with a free
            // slot: one that would only queue its tasks behind its own leaves it to the
            // others, and looks again when a slot frees up.
            if !mine
                && self.shared_store()
                && self.running + self.ready.len() >= self.config.parallelism
            {
                self.claims_waiting = true;
                break;
            }
            let dag = match self.dag_for(&row).await? {
                Ok(dag) => dag,
                Err(Unavailable::NotLoaded) => {
                    tracing::debug!(dag_id = %row.dag_id, run_id = %row.run_id, "queued run waits: DAG not loaded");
                    continue;
                }
                Err(Unavailable::Broken(note)) => {
                    self.fail_unrunnable(&row, &note).await?;
                    continue;
                }
            };
            let paused = self.paused.get(&dag.id).copied().unwrap_or(false);
            let pool = row.run_type == crate::state::RunType::Backfill;
            let active = running.entry((dag.id.clone(), pool)).or_default();
            // A foreground `run` executes its own runs whatever the pause flag and limits say
            // (like `airflow dags test`).
            if !mine && (paused || *active >= dag.max_active_runs) {
                continue;
            }
            // The count above may be stale (another instance may have started a run of
            // this DAG since): the claim counts again, in its transaction.
            let limit = (!mine).then_some(dag.max_active_runs);
            if self
                .store
                .claim_run_within(row.key, &self.owner, &task_specs(&dag), limit)
                .await?
            {
                *active += 1;
                self.config.metrics.run_started(&dag.id);
                self.activate(row, dag).await?;
            }
        }
        Ok(())
    }

    /// Takes over running runs whose owner's lease lapsed (and its own runs it let go of
    /// once their tries have stopped).
    pub(super) async fn adopt_orphans(&mut self) -> Result<(), StoreError> {
        if !self.may_take_runs() {
            return Ok(());
        }
        for row in self.store.adoptable_running(&self.owner).await? {
            if self.runs.contains_key(&row.key)
                || self.detached.contains_key(&row.key)
                || self.poisoned.contains(&row.key)
            {
                continue;
            }
            let dag = match self.dag_for(&row).await? {
                Ok(dag) => dag,
                Err(Unavailable::NotLoaded) => {
                    let note = format!(
                        "DAG '{}' is no longer loaded; the interrupted run cannot resume",
                        row.dag_id
                    );
                    self.fail_unrunnable(&row, &note).await?;
                    continue;
                }
                Err(Unavailable::Broken(note)) => {
                    self.fail_unrunnable(&row, &note).await?;
                    continue;
                }
            };
            if self
                .store
                .claim_run(row.key, &self.owner, &task_specs(&dag))
                .await?
            {
                tracing::info!(dag_id = %row.dag_id, run_id = %row.run_id, "resuming interrupted run");
                self.activate(row, dag).await?;
            }
        }
        Ok(())
    }

    /// A foreground process takes back the runs it let go of (or learns they ended, or
    /// waits while another instance that adopted them finishes them).
    pub(super) async fn readopt_own(&mut self) -> Result<(), StoreError> {
        if !self.may_take_runs() {
            return Ok(());
        }
        let keys: Vec<_> = self.readopt.iter().copied().collect();
        for key in keys {
            if self.runs.contains_key(&key) || self.detached.contains_key(&key) {
                continue;
            }
            let Some(row) = self.store.run(key).await? else {
                self.readopt.remove(&key);
                continue;
            };
            if row.state.is_finished() {
                self.readopt.remove(&key);
                continue;
            }
            // A queued one is claimed by `claim_queued` (it is still reserved for us).
            if row.state != RunState::Running {
                continue;
            }
            let Ok(dag) = self.dag_for(&row).await? else {
                continue;
            };
            if self
                .store
                .claim_run(key, &self.owner, &task_specs(&dag))
                .await?
            {
                tracing::info!(dag_id = %row.dag_id, run_id = %row.run_id, "taking back the run after a lapsed lease");
                self.activate(row, dag).await?;
            }
        }
        Ok(())
    }

    async fn fail_unrunnable(&mut self, row: &RunRow, note: &str) -> Result<(), StoreError> {
        if self
            .store
            .fail_unrunnable(row.key, &self.owner, note)
            .await?
        {
            tracing::warn!(dag_id = %row.dag_id, run_id = %row.run_id, "run failed: {note}");
            self.config.metrics.record(&Event::RunEnded {
                dag_id: row.dag_id.clone(),
                state: RunState::Failed,
                duration: None,
            });
        }
        Ok(())
    }

    /// The DAG a run executes: the version it was created with (the loaded one when it is
    /// the same definition, else rebuilt from the store), or the loaded DAG for runs from
    /// before versions were stored.
    pub(super) async fn dag_for(
        &mut self,
        row: &RunRow,
    ) -> Result<Result<Arc<Dag>, Unavailable>, StoreError> {
        let loaded = self.bag.get(row.dag_id.as_str()).cloned();
        let Some(hash) = &row.dag_version else {
            return Ok(loaded.ok_or(Unavailable::NotLoaded));
        };
        if let Some(dag) = loaded.filter(|d| &d.source.hash == hash) {
            return Ok(Ok(dag));
        }
        if let Some(dag) = self.versions.get(hash) {
            return Ok(Ok(dag.clone()));
        }
        let Some(version) = self.store.dag_version(hash).await? else {
            return Ok(Err(Unavailable::Broken(format!(
                "the DAG version {hash} this run was created with is not in the store"
            ))));
        };
        match Dag::from_version(&version) {
            Ok(dag) => {
                tracing::info!(dag_id = %row.dag_id, run_id = %row.run_id, version = %hash, "executing the stored DAG version the run was created with");
                let dag = Arc::new(dag);
                self.versions.insert(hash.clone(), dag.clone());
                Ok(Ok(dag))
            }
            Err(errors) => {
                let why: Vec<String> = errors.iter().map(ToString::to_string).collect();
                Ok(Err(Unavailable::Broken(format!(
                    "the stored DAG version {hash} no longer builds: {}",
                    why.join("; ")
                ))))
            }
        }
    }

    /// Loads a claimed run's task instances and starts evaluating it.
    async fn activate(&mut self, mut row: RunRow, dag: Arc<Dag>) -> Result<(), StoreError> {
        let now = Utc::now();
        row.state = RunState::Running;
        row.start_date.get_or_insert(now);
        self.handling = Some(row.key);
        let tis = self.store.task_instances(row.key).await?;
        let mut run = ActiveRun::new(row, dag, &tis, self.guard.child());
        let key = run.key();
        let known: Vec<_> = tis
            .iter()
            .filter_map(|ti| run.dag.task(ti.task_id.as_str()).map(|(i, _)| (i, ti)))
            .collect();
        // Tries other instances run for this run (claimed offers) go on there. Only a
        // running task instance can have one (a run taken for the first time has none).
        let claims = if self.shared_store()
            && known
                .iter()
                .any(|(_, ti)| ti.state == Some(TaskState::Running))
        {
            self.store.claimed_offers(&self.owner, Some(key)).await?
        } else {
            Vec::new()
        };
        for (idx, ti) in known {
            if ti.state == Some(TaskState::Running)
                && let Some(claim) = claims
                    .iter()
                    .find(|c| c.task == ti.task_id && c.try_number == ti.try_number)
            {
                if claim.state == OfferState::WorkerLost {
                    self.changes.push(Change::DropOffer {
                        run: key,
                        task: ti.task_id.clone(),
                    });
                } else {
                    let slot = &mut run.slots[idx];
                    slot.offered = true;
                    slot.remote = true;
                    run.running += 1;
                    *self.running_by_dag.entry(run.dag.id.clone()).or_default() += 1;
                    // An end already reported is recorded by the next look at the offers.
                    self.offers_changed |= claim.state != OfferState::Running;
                    continue;
                }
            }
            // A try interrupted by a shutdown or a crash may have left processes behind
            // (a supervisor killed along with its owner): none may run beside the next try.
            if ti.try_number > 0 && !ti.state.is_some_and(TaskState::is_finished) {
                let uid = run.row.uid_or_legacy();
                self.stop_leftovers(key, &uid, &ti.task_id, ti.try_number)
                    .await?;
            }
            match ti.state {
                Some(TaskState::Running) => {
                    self.end_interrupted(&mut run, idx, now);
                }
                Some(TaskState::Queued | TaskState::Scheduled) => run.slots[idx].set(None),
                Some(TaskState::UpForRetry) => {
                    self.retries
                        .insert((ti.next_retry_at.unwrap_or(now), key, idx));
                }
                _ => {}
            }
        }
        let mut ready = Vec::new();
        run.evaluate_all(now, &mut ready, &mut self.changes);
        self.ready.extend(ready.into_iter().map(|i| (key, i)));
        self.runs.insert(key, run);
        self.activated(key);
        self.check_run_done(key, now);
        Ok(())
    }

    /// Ends a try found running whose process is gone (its instance died or lost its
    /// lease): a failed try, retried per the task's policy, and counted in the metrics.
    /// The task's state after it; None when the try was abandoned (made up for).
    pub(super) fn end_interrupted(
        &mut self,
        run: &mut ActiveRun,
        idx: usize,
        now: chrono::DateTime<Utc>,
    ) -> Option<TaskState> {
        let state = match run.end_interrupted_try(idx, now, &mut self.changes) {
            TryEnd::RetryAt(at) => {
                self.retries.insert((at, run.key(), idx));
                TaskState::UpForRetry
            }
            TryEnd::Done(state) => state,
            TryEnd::Abandoned => return None,
        };
        let (dag_id, task_id) = (run.dag.id.clone(), run.dag.tasks[idx].id.clone());
        self.observe(run.key(), || Event::TryEnded {
            dag_id,
            task_id,
            end: metrics::TryEnd::State(state),
            duration: None,
        });
        Some(state)
    }

    /// Kills the process group a dead owner's try left running, so its retry never runs
    /// beside it (the supervisor normally stopped it already, when the owner died).
    pub(super) async fn stop_leftovers(
        &self,
        run: RunKey,
        run_uid: &str,
        task_id: &TaskId,
        try_number: u32,
    ) -> Result<(), StoreError> {
        let Some(group) = self.store.try_process(run, task_id, try_number).await? else {
            return Ok(());
        };
        let pgid = group.pgid;
        let marker = try_marker(run_uid, task_id.as_str(), try_number);
        match kill_stale_group(&group, &marker).await {
            StaleGroup::Gone => {}
            StaleGroup::Killed => {
                tracing::warn!(%task_id, pgid, "killed the interrupted try's processes")
            }
            StaleGroup::Lingering => {
                tracing::warn!(%task_id, pgid, "the interrupted try's processes were killed but linger")
            }
            StaleGroup::OtherHost => {
                tracing::warn!(%task_id, pgid, host = %group.host, "the interrupted try ran on another host; its processes cannot be checked")
            }
        }
        Ok(())
    }
}
