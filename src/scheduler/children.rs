//! Child runs of `trigger_dag` tries (created once per try, taken over by the next try
//! when the creating one was interrupted) and waiters on runs.

use chrono::Utc;
use tokio::sync::oneshot;

use super::core::Scheduler;
use super::{EngineError, Mode};
use crate::ids::{DagId, RunKey};
use crate::state::{RunState, RunType};
use crate::store::{NewRun, ParentTask, RunRow, StoreError};
use crate::tasks::{ChildRequest, ChildRun};

fn child(row: RunRow, resumed: bool) -> ChildRun {
    ChildRun {
        key: row.key,
        run_id: row.run_id,
        state: row.state,
        resumed,
    }
}

/// The chain `dag (run) -> ... -> target` when `target` is among `ancestry` (the parent
/// run and its ancestors, oldest first), else `None`.
fn trigger_loop(ancestry: &[(DagId, String)], target: &DagId) -> Option<String> {
    if !ancestry.iter().any(|(dag, _)| dag == target) {
        return None;
    }
    let mut chain: Vec<String> = ancestry
        .iter()
        .map(|(dag, run_id)| format!("{dag} ({run_id})"))
        .collect();
    chain.push(target.to_string());
    Some(chain.join(" -> "))
}

impl Scheduler {
    /// The child run of a `trigger_dag` try: the one this try already created, or the one
    /// an interrupted earlier try of the same attempt created, or a new one.
    pub(super) async fn create_child(
        &mut self,
        req: ChildRequest,
    ) -> Result<ChildRun, EngineError> {
        self.handling = Some(req.parent);
        // A request queued before this process let the parent go is not its to answer.
        if !self.runs.contains_key(&req.parent) {
            return Err(EngineError::NotOwned(req.parent));
        }
        if let Some(row) = self
            .store
            .child_of_try(req.parent, &req.task, req.try_number)
            .await?
        {
            return Ok(child(row, false));
        }
        if let Some(row) = self
            .store
            .child_to_resume(req.parent, &req.task, req.first_try, req.try_number)
            .await?
        {
            self.look_for_queued = true;
            return Ok(child(row, true));
        }
        let Some(dag) = self.bag.get(req.dag.as_str()).cloned() else {
            return Err(EngineError::UnknownDag(req.dag));
        };
        if req.wait {
            let ancestry = self.store.ancestry(req.parent).await?;
            if let Some(chain) = trigger_loop(&ancestry, &req.dag) {
                return Err(EngineError::TriggerLoop(chain));
            }
        }
        let now = Utc::now();
        let foreground = matches!(self.mode, Mode::Foreground { .. });
        let new = NewRun {
            dag_id: req.dag,
            run_type: RunType::Triggered,
            interval_start: now,
            interval_end: now,
            conf: req.conf,
            parent: Some(ParentTask {
                run: req.parent,
                task: req.task,
                try_number: req.try_number,
            }),
            owner: foreground.then(|| self.owner.clone()),
            version: Some(dag.version()),
        };
        let row = self
            .store
            .insert_child_run(&new, &self.owner)
            .await?
            .ok_or(StoreError::Conflict("child run exists".into()))?;
        if foreground {
            self.reserved.insert(row.key);
        }
        self.look_for_queued = true;
        Ok(child(row, false))
    }

    /// Tells `reply` when `run` finishes (at once if it already has).
    pub(super) async fn watch(
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ancestry(dags: &[&str]) -> Vec<(DagId, String)> {
        dags.iter()
            .enumerate()
            .map(|(i, d)| (DagId::new(*d), format!("r{i}")))
            .collect()
    }

    #[test]
    fn a_target_among_the_ancestors_is_a_loop_named_from_the_oldest_run() {
        assert_eq!(
            trigger_loop(&ancestry(&["a", "b"]), &DagId::new("a")).as_deref(),
            Some("a (r0) -> b (r1) -> a")
        );
        assert_eq!(
            trigger_loop(&ancestry(&["a"]), &DagId::new("a")).as_deref(),
            Some("a (r0) -> a")
        );
        assert_eq!(trigger_loop(&ancestry(&["a", "b"]), &DagId::new("c")), None);
    }
}
