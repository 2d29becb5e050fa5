//! Taking runs on: claiming queued runs, and adopting runs whose process died (crash,
//! `kill -9`, shutdown) — interrupted tries are retried or failed per their policy.

use std::sync::Arc;

use chrono::Utc;
use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use tokio_util::sync::CancellationToken;

use super::Mode;
use super::active::ActiveRun;
use super::core::Scheduler;
use crate::dag::Dag;
use crate::ids::{RunKey, TaskId};
use crate::state::{RunState, TaskState};
use crate::store::{Change, RunRow, StoreError, TaskInstanceRow};
use crate::tasks::process::{StaleGroup, kill_stale_group};

/// Reason recorded on a try that was running when its process died.
const INTERRUPTED: &str = "interrupted: the process running this try stopped (crash or kill)";

/// Whether a process with this pid exists on this machine.
pub fn process_alive(pid: i64) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    matches!(kill(Pid::from_raw(pid), None), Ok(()) | Err(Errno::EPERM))
}

fn task_specs(dag: &Dag) -> Vec<(TaskId, u32)> {
    dag.tasks
        .iter()
        .map(|t| (t.id.clone(), t.retry.max_tries()))
        .collect()
}

impl Scheduler {
    /// Claims queued runs this scheduler may take, within `max_active_runs`.
    pub(super) async fn claim_queued(&mut self) -> Result<(), StoreError> {
        for row in self.store.runs_in_state(RunState::Queued).await? {
            if self.runs.contains_key(&row.key) {
                continue;
            }
            let mine = row.owner_pid == Some(self.pid);
            if matches!(self.mode, Mode::Foreground { .. }) && !mine {
                continue;
            }
            if let Some(owner) = row.owner_pid.filter(|_| !mine) {
                // Reserved by a live `orchestrator run`; or its process died: release it.
                if process_alive(owner) || !self.store.release_run(row.key, owner).await? {
                    continue;
                }
            }
            let Some(dag) = self.bag.get(row.dag_id.as_str()).cloned() else {
                tracing::debug!(dag_id = %row.dag_id, run_id = %row.run_id, "queued run waits: DAG not loaded");
                continue;
            };
            let paused = self.paused.get(&dag.id).copied().unwrap_or(false);
            if (paused && !mine) || self.dag_running_runs(&dag.id) >= dag.max_active_runs {
                continue;
            }
            if self
                .store
                .claim_run(row.key, self.pid, None, &task_specs(&dag))
                .await?
            {
                self.activate(row, dag).await?;
            }
        }
        Ok(())
    }

    /// Takes over running runs whose process is gone.
    pub(super) async fn adopt_orphans(&mut self) -> Result<(), StoreError> {
        for row in self.store.runs_in_state(RunState::Running).await? {
            if self.runs.contains_key(&row.key) {
                continue;
            }
            let owner = row.owner_pid.unwrap_or_default();
            if owner != self.pid && process_alive(owner) {
                continue;
            }
            let Some(dag) = self.bag.get(row.dag_id.as_str()).cloned() else {
                let note = format!(
                    "DAG '{}' is no longer loaded; the interrupted run cannot resume",
                    row.dag_id
                );
                tracing::warn!(run_id = %row.run_id, "{note}");
                let at = Utc::now();
                self.changes.push(Change::FinishRun {
                    run: row.key,
                    state: RunState::Failed,
                    at,
                    note: Some(note),
                });
                continue;
            };
            if self
                .store
                .claim_run(row.key, self.pid, Some(owner), &task_specs(&dag))
                .await?
            {
                tracing::info!(dag_id = %row.dag_id, run_id = %row.run_id, "resuming interrupted run");
                self.activate(row, dag).await?;
            }
        }
        Ok(())
    }

    /// Loads a claimed run's task instances and starts evaluating it.
    async fn activate(&mut self, mut row: RunRow, dag: Arc<Dag>) -> Result<(), StoreError> {
        let now = Utc::now();
        row.state = RunState::Running;
        row.start_date.get_or_insert(now);
        let tis = self.store.task_instances(row.key).await?;
        let mut run = ActiveRun::new(row, dag, &tis, CancellationToken::new());
        let key = run.key();
        let known: Vec<_> = tis
            .iter()
            .filter_map(|ti| run.dag.task(ti.task_id.as_str()).map(|(i, _)| (i, ti)))
            .collect();
        for (idx, ti) in known {
            match ti.state {
                Some(TaskState::Running) => {
                    self.stop_leftovers(key, ti).await?;
                    self.interrupted(&mut run, idx, now);
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

    /// Kills the process group a dead owner's try left running, so its retry never runs
    /// beside it (the supervisor normally stopped it already, when the owner died).
    async fn stop_leftovers(&self, run: RunKey, ti: &TaskInstanceRow) -> Result<(), StoreError> {
        let Some(group) = self
            .store
            .try_process(run, &ti.task_id, ti.try_number)
            .await?
        else {
            return Ok(());
        };
        let (task_id, pgid) = (&ti.task_id, group.pgid);
        match kill_stale_group(&group).await {
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

    /// A try was running when its process died: retry or fail it per the task's policy.
    fn interrupted(&mut self, run: &mut ActiveRun, idx: usize, now: chrono::DateTime<Utc>) {
        let (try_number, max_tries) = (run.slots[idx].try_number, run.slots[idx].max_tries);
        let task = &run.dag.tasks[idx];
        let (state, next_retry_at) = if try_number < max_tries {
            let delay =
                chrono::Duration::from_std(task.retry.delay_after(try_number)).unwrap_or_default();
            self.retries.insert((now + delay, run.key(), idx));
            (TaskState::UpForRetry, Some(now + delay))
        } else {
            (TaskState::Failed, None)
        };
        let task_id = task.id.clone();
        run.slots[idx].set(Some(state));
        self.changes.push(Change::FinishTry {
            run: run.key(),
            task: task_id,
            try_number,
            state,
            at: now,
            error: Some(INTERRUPTED.into()),
            next_retry_at,
        });
    }
}
