//! Serde shapes that mirror the YAML exactly (`deny_unknown_fields`); only [`super::build`]
//! looks at them, turning them into the validated model.

use serde::Deserialize;

use super::duration::DurationValue;

/// A DAG file (plain, or a template after placeholder substitution).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DagFile {
    pub dag_id: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    pub start_date: Option<String>,
    pub end_date: Option<String>,
    pub catchup: Option<bool>,
    pub max_active_runs: Option<u32>,
    pub max_active_tasks: Option<u32>,
    pub dagrun_timeout: Option<DurationValue>,
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub default_args: TaskDefaults,
    /// A mapping of task id to task; anything else is reported by validation.
    #[serde(default)]
    pub tasks: serde_norway::Value,
}

/// The arguments that apply to every task (and that each task may override).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskDefaults {
    pub retries: Option<u32>,
    pub retry_delay: Option<DurationValue>,
    pub retry_exponential_backoff: Option<bool>,
    pub max_retry_delay: Option<DurationValue>,
    pub execution_timeout: Option<DurationValue>,
}

/// Keys of [`TaskCommon`]: accepted by every task whatever its type.
pub const COMMON_TASK_KEYS: [&str; 3] = ["depends_on", "trigger_rule", "doc"];

/// Keys of [`TaskDefaults`]: a task may override the DAG's `default_args`.
pub const OVERRIDE_TASK_KEYS: [&str; 5] = [
    "retries",
    "retry_delay",
    "retry_exponential_backoff",
    "max_retry_delay",
    "execution_timeout",
];

/// The type-independent part of a task.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskCommon {
    #[serde(default)]
    pub depends_on: Upstreams,
    pub trigger_rule: Option<String>,
    pub doc: Option<String>,
}

/// `depends_on: a` or `depends_on: [a, b]`.
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
pub enum Upstreams {
    /// None given.
    #[default]
    None,
    /// One upstream.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl Upstreams {
    /// The ids listed.
    pub fn ids(&self) -> Vec<&str> {
        match self {
            Self::None => Vec::new(),
            Self::One(s) => vec![s.as_str()],
            Self::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}
