//! Typed identifiers shared by every layer: DAG ids, task ids, run ids, the store's run key
//! and the identity of a try's process group.
//!
//! Newtypes keep a task id from being passed where a DAG id is expected; they serialise as
//! plain strings so the CLI's JSON and the store see ordinary text.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a string without checking it (the loader validates ids it reads).
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// The id of a DAG (`dag_id` in YAML, unique across the DAG folder).
    DagId
);
string_id!(
    /// The id of a task inside one DAG.
    TaskId
);
string_id!(
    /// Airflow-style run id (`manual__2024-01-01T00:00:00+00:00`), unique per DAG.
    RunId
);

string_id!(
    /// A process that executes runs (`serve`, `run`, `trigger --wait`): random, registered
    /// in the store with a lease.
    InstanceId
);

/// The store's primary key of a DAG run: unique across all DAGs, used internally and in URLs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunKey(pub i64);

impl fmt::Display for RunKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The process group a try's shell command runs in, as recorded on the try: the pgid alone
/// could name an unrelated group once the pid is reused, so the leader's start time and the
/// host go with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessGroup {
    /// Host name of the machine the group runs on.
    pub host: String,
    /// Process group id (the leader's pid).
    pub pgid: i32,
    /// The leader's start time in clock ticks after boot (`/proc/<pid>/stat` field 22).
    pub start_ticks: u64,
}

/// Whether `id` is acceptable as a DAG or task id: Airflow's rule (letters, digits, `_-.`),
/// except ids made only of dots (see [`is_dot_segment`]).
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 250
        && !is_dot_segment(id)
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Whether `id` is acceptable as a run id a client chooses: the id rule plus `:`, `+` and
/// `~`, which generated run ids (`manual__2024-01-01T00:00:00+00:00`) contain.
pub fn is_valid_run_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 250
        && !is_dot_segment(id)
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '+' | '~'))
}

/// Whether `id` is made only of dots: as a URL path segment, `.` and `..` are resolved away
/// by browsers, so the dashboard could not link to such a DAG or task (longer runs of dots
/// are refused too, to keep the rule simple to state).
pub fn is_dot_segment(id: &str) -> bool {
    !id.is_empty() && id.chars().all(|c| c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_airflows_character_rules() {
        assert!(is_valid_id("drugs_import"));
        assert!(is_valid_id("a.b-c"));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("has space"));
        assert!(!is_valid_id("slash/y"));
        assert!(!is_valid_id("."));
        assert!(!is_valid_id(".."));
        assert!(!is_valid_id("..."));
        assert!(is_valid_id("..a"));
    }
}
