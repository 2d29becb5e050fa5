//! `noop`: succeeds at once. For start/end markers, joins and tests.

use serde::{Deserialize, Serialize};

use super::{TaskContext, TaskError, TaskOutcome};

/// A task that does nothing (it takes no arguments).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoopTask {}

impl NoopTask {
    /// Succeeds.
    pub async fn run(&self, _ctx: &TaskContext) -> Result<TaskOutcome, TaskError> {
        Ok(TaskOutcome::Success)
    }
}
