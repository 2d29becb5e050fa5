//! The DAG model: validated DAGs and their tasks, and the [`DagBag`] that holds everything
//! loaded from the DAG folder together with the errors found.
//!
//! Flow: [`loader`] finds files (plain DAGs and project templates) → [`raw`] mirrors the YAML
//! → [`build`] validates into [`Dag`]. Nothing outside this module sees raw structs.

pub mod aliases;
pub mod build;
pub mod describe;
pub mod duration;
mod error;
pub mod layout;
pub mod loader;
mod raw;
pub mod timetable;
pub mod trigger_rule;
pub mod watch;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;
use serde_json::{Map, Value};

pub use error::LoadError;
pub use loader::load_dag_bag;
pub use timetable::{DataInterval, Timetable};
pub use trigger_rule::TriggerRule;

use crate::ids::{DagId, TaskId};
use crate::store::DagVersion;
use crate::tasks::TaskKind;

/// A validated DAG.
#[derive(Debug)]
pub struct Dag {
    /// Its id.
    pub id: DagId,
    /// Free text.
    pub description: Option<String>,
    /// Labels for filtering.
    pub tags: Vec<String>,
    /// The schedule as written (`None`: manual runs only).
    pub schedule_text: Option<String>,
    /// The parsed schedule with its dates and catchup; `None` for manual-only DAGs.
    pub timetable: Option<Timetable>,
    /// Zone for the schedule.
    pub timezone: Tz,
    /// Runs of this DAG executing at once.
    pub max_active_runs: u32,
    /// Task instances of one run executing at once.
    pub max_active_tasks: u32,
    /// A run still going after this long is failed and its tasks stopped.
    pub dagrun_timeout: Option<Duration>,
    /// Default `params` for templates.
    pub params: Map<String, Value>,
    /// Tasks in file order; `upstream`/`downstream` index into this.
    pub tasks: Vec<Task>,
    /// Task index by id.
    pub index: HashMap<TaskId, usize>,
    /// Where it came from.
    pub source: DagSource,
}

/// The file a DAG was loaded from.
#[derive(Debug, Clone)]
pub struct DagSource {
    /// The file (the template file for generated DAGs).
    pub path: PathBuf,
    /// The project that generated it, for template DAGs.
    pub project: Option<String>,
    /// The YAML text (after placeholder substitution), shown on the dashboard.
    pub text: String,
    /// SHA-256 (hex) of the DAG id and `text`: the identity of this definition.
    pub hash: String,
}

/// The identity of a DAG definition: SHA-256 (hex) of its id and YAML text.
pub fn definition_hash(dag_id: &str, text: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(dag_id.as_bytes());
    hasher.update([0u8]);
    hasher.update(text.as_bytes());
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A validated task.
#[derive(Debug)]
pub struct Task {
    /// Its id.
    pub id: TaskId,
    /// Type and arguments.
    pub kind: TaskKind,
    /// Indices of the tasks it depends on.
    pub upstream: Vec<usize>,
    /// Indices of the tasks that depend on it.
    pub downstream: Vec<usize>,
    /// When it may run given its upstream states.
    pub trigger_rule: TriggerRule,
    /// Retry behaviour.
    pub retry: RetryPolicy,
    /// A try running longer is cancelled.
    pub execution_timeout: Option<Duration>,
    /// Free text describing the task (`doc:`).
    pub doc: Option<String>,
}

/// How often and when a failed task is tried again.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Extra tries after the first.
    pub retries: u32,
    /// Wait before the first retry.
    pub delay: Duration,
    /// Double the wait at each retry.
    pub exponential_backoff: bool,
    /// Cap on the wait when backing off.
    pub max_delay: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            retries: 0,
            delay: Duration::from_secs(300),
            exponential_backoff: false,
            max_delay: None,
        }
    }
}

impl RetryPolicy {
    /// Total tries allowed.
    pub fn max_tries(&self) -> u32 {
        self.retries.saturating_add(1)
    }

    /// Wait before the try after `failed_try` (1-based).
    pub fn delay_after(&self, failed_try: u32) -> Duration {
        if !self.exponential_backoff {
            return self.delay;
        }
        let factor = 2u32.saturating_pow(failed_try.saturating_sub(1).min(30));
        let delay = self.delay.saturating_mul(factor);
        self.max_delay.map_or(delay, |max| delay.min(max))
    }
}

impl Dag {
    /// Looks a task up by id.
    pub fn task(&self, id: &str) -> Option<(usize, &Task)> {
        self.index.get(id).map(|&i| (i, &self.tasks[i]))
    }

    /// This definition, as the store keeps it.
    pub fn version(&self) -> DagVersion {
        DagVersion {
            hash: self.source.hash.clone(),
            dag_id: self.id.clone(),
            source_path: self.source.path.display().to_string(),
            project: self.source.project.clone(),
            definition: self.source.text.clone(),
        }
    }

    /// Rebuilds a DAG from a stored version (runs execute the definition they started with).
    pub fn from_version(v: &DagVersion) -> Result<Dag, Vec<LoadError>> {
        let path = PathBuf::from(&v.source_path);
        build::build_dag(&build::DagText {
            path: &path,
            project: v.project.as_deref(),
            default_dag_id: Some(v.dag_id.to_string()),
            text: v.definition.clone(),
        })
    }
}

/// Everything loaded from the DAG folder: valid DAGs and the errors of the rest.
#[derive(Debug, Default)]
pub struct DagBag {
    /// Valid DAGs by id.
    pub dags: BTreeMap<DagId, Arc<Dag>>,
    /// Problems found; a file with errors contributes no DAG.
    pub errors: Vec<LoadError>,
}

impl DagBag {
    /// Looks a DAG up by id.
    pub fn get(&self, id: &str) -> Option<&Arc<Dag>> {
        self.dags.get(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_backoff_doubles_and_is_capped() {
        let p = RetryPolicy {
            retries: 5,
            delay: Duration::from_secs(10),
            exponential_backoff: true,
            max_delay: Some(Duration::from_secs(30)),
        };
        assert_eq!(p.delay_after(1), Duration::from_secs(10));
        assert_eq!(p.delay_after(2), Duration::from_secs(20));
        assert_eq!(p.delay_after(3), Duration::from_secs(30));
        assert_eq!(p.max_tries(), 6);
    }
}
