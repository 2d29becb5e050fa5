//! `trigger_dag`: queues a run of another DAG (run type `triggered`, linked to this run and
//! task) and, by default, waits for it and takes its outcome.

use serde::{Deserialize, Serialize};

use super::{ChildRequest, TaskContext, TaskError, TaskOutcome};
use crate::ids::DagId;
use crate::state::RunState;

/// Trigger another DAG.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerDagTask {
    /// The DAG to trigger.
    pub trigger_dag_id: String,
    /// The child run's conf (templates rendered).
    #[serde(default)]
    pub conf: Option<serde_json::Value>,
    /// Succeed or fail with the child run (default true); false succeeds once it is queued.
    #[serde(default = "yes")]
    pub wait_for_completion: bool,
}

fn yes() -> bool {
    true
}

impl TriggerDagTask {
    /// Checks the arguments at load time.
    pub fn validate(&self) -> Result<(), String> {
        match &self.conf {
            None | Some(serde_json::Value::Object(_)) => Ok(()),
            Some(_) => Err("trigger_dag 'conf' must be a mapping".into()),
        }
    }

    /// Queues the child run (or takes over the one an interrupted earlier try of this
    /// attempt created) and, when asked, waits for it.
    pub async fn run(&self, ctx: &TaskContext) -> Result<TaskOutcome, TaskError> {
        let dag = DagId::new(&self.trigger_dag_id);
        let conf = self.conf.clone().unwrap_or_else(|| serde_json::json!({}));
        let child = ctx
            .engine
            .trigger_child(ChildRequest {
                dag: dag.clone(),
                conf,
                parent: ctx.run_key,
                task: ctx.task_id.clone(),
                try_number: ctx.try_number,
                first_try: ctx.first_try,
                wait: self.wait_for_completion,
            })
            .await?;
        if child.resumed {
            ctx.log.info(format!(
                "taking over {dag} run {} ({}), triggered by an interrupted earlier try",
                child.run_id, child.state
            ));
        } else {
            ctx.log
                .info(format!("triggered {dag} run {}", child.run_id));
        }
        if !self.wait_for_completion {
            return Ok(TaskOutcome::Success);
        }
        let state = if child.state.is_finished() {
            child.state
        } else {
            // Waiting holds no slot: enough waiting parents must not starve their children.
            ctx.engine
                .defer(ctx.run_key, ctx.task_id.clone(), ctx.try_number)
                .await;
            tokio::select! {
                s = ctx.engine.wait_for_run(child.key) => s?,
                () = ctx.cancel.cancelled() => return Err(TaskError::Cancelled("stopped waiting for the triggered run".into())),
            }
        };
        ctx.log
            .info(format!("{dag} run {} finished: {state}", child.run_id));
        match state {
            RunState::Success => Ok(TaskOutcome::Success),
            other => Err(TaskError::Failed(format!(
                "triggered run {} of {dag} ended {other}",
                child.run_id
            ))),
        }
    }
}
