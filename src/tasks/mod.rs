//! Built-in task types: a closed enum tagged by `type:` in YAML, one file per task.
//!
//! Each task's config struct is its documentation (field docs are the user docs). The
//! executor renders `{{ }}` templates in the config, then calls [`TaskKind::run`] with a
//! [`TaskContext`]. Failures are typed ([`TaskError`]) so retries are decided from the
//! variant, never from a message.

mod context;
mod drug_graph;
mod import;
mod load;
mod log;
mod noop;
pub mod port;
pub mod process;
mod shell;
mod sql;
pub mod supervise;
pub mod template;
mod trigger_dag;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use context::{GroupReport, TaskContext};
pub use drug_graph::DrugGraphTask;
pub use import::{Format, ImportTask};
pub use load::LoadTask;
pub use log::{
    DEFAULT_MAX_LOG_BYTES, DROP_LEVEL, LogBatch, LogDrop, LogLimits, LogLine, MIN_MAX_LOG_BYTES,
    TaskLog, cut_note,
};
pub use noop::NoopTask;
pub use port::{ChildRequest, ChildRun, RunPort};
pub use shell::ShellTask;
pub use sql::SqlTask;
pub use trigger_dag::TriggerDagTask;

/// A task's type and its own arguments, as validated at load time.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TaskKind {
    /// Does nothing; start/end markers and tests.
    Noop(NoopTask),
    /// Runs a command through `sh -c`.
    Shell(ShellTask),
    /// Triggers another DAG, optionally waiting for it.
    TriggerDag(TriggerDagTask),
    /// Imports CSV or JSON into the staging store as Parquet.
    Import(ImportTask),
    /// Loads staged tables into the warehouse.
    Load(LoadTask),
    /// Runs SQL against the warehouse.
    Sql(SqlTask),
    /// Builds the drug-mention graph.
    DrugGraph(DrugGraphTask),
}

/// How a try ended when it did not fail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskOutcome {
    /// Done.
    Success,
    /// The task decided not to run (e.g. a shell exit code 99), with why.
    Skipped(String),
}

/// Why a try failed. [`TaskError::is_retryable`] decides whether another try is made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// A failure another try may fix (non-zero exit, I/O error, child run failed).
    #[error("{0}")]
    Failed(String),
    /// A failure no retry can fix (bad arguments, template error).
    #[error("{0}")]
    Fatal(String),
    /// The execution timeout elapsed; the work was cancelled.
    #[error("timed out after {}", humantime::format_duration(*.0))]
    TimedOut(Duration),
    /// Cancelled from outside (dagrun timeout, shutdown).
    #[error("cancelled: {0}")]
    Cancelled(String),
    /// The task's code panicked.
    #[error("task panicked: {0}")]
    Panicked(String),
    /// The task's process was killed by a signal it did not send itself.
    #[error("{0}")]
    Killed(String),
}

impl TaskError {
    /// Whether the retry policy applies to this failure.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Failed(_) | Self::TimedOut(_) | Self::Panicked(_) | Self::Killed(_)
        )
    }
}

impl TaskKind {
    /// The `type:` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Noop(_) => "noop",
            Self::Shell(_) => "shell",
            Self::TriggerDag(_) => "trigger_dag",
            Self::Import(_) => "import",
            Self::Load(_) => "load",
            Self::Sql(_) => "sql",
            Self::DrugGraph(_) => "drug_graph",
        }
    }

    /// Checks type-specific arguments that serde cannot (called once at load time).
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Self::Noop(_) => Ok(()),
            Self::Shell(t) => t.validate(),
            Self::TriggerDag(t) => t.validate(),
            Self::Import(t) => t.validate(),
            Self::Load(t) => t.validate(),
            Self::Sql(t) => t.validate(),
            Self::DrugGraph(t) => t.validate(),
        }
    }

    /// The DAG this task triggers, when it is a literal id (used to check it exists).
    pub fn triggered_dag(&self) -> Option<&str> {
        match self {
            Self::TriggerDag(t) if !t.trigger_dag_id.contains("{{") => Some(&t.trigger_dag_id),
            _ => None,
        }
    }

    /// Runs one try.
    pub async fn run(&self, ctx: &TaskContext) -> Result<TaskOutcome, TaskError> {
        match self {
            Self::Noop(t) => t.run(ctx).await,
            Self::Shell(t) => t.run(ctx).await,
            Self::TriggerDag(t) => t.run(ctx).await,
            Self::Import(t) => t.run(ctx).await,
            Self::Load(t) => t.run(ctx).await,
            Self::Sql(t) => t.run(ctx).await,
            Self::DrugGraph(t) => t.run(ctx).await,
        }
    }
}
