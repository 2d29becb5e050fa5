//! Run and task-instance states (Airflow's names), run types, and the allowed transitions.
//!
//! Stored as TEXT in SQLite. The transition tables ([`TaskState::can_become`],
//! [`RunState::can_become`]) are the one source of truth: the in-memory state machine checks
//! them, and every state write in the store names the states it may come from, derived from
//! them ([`TaskState::sql_sources`]), so the database refuses an impossible transition too.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Error for a state or run type read from text that is not one we know.
#[derive(Debug, thiserror::Error)]
#[error("unknown {kind} '{value}'")]
pub struct UnknownState {
    kind: &'static str,
    value: String,
}

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident, $kind:literal { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// The state's text, as stored and shown.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownState;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(UnknownState { kind: $kind, value: s.to_string() }),
                }
            }
        }
    };
}

text_enum!(
    /// State of a DAG run.
    RunState, "run state" {
        /// Waiting for a scheduler to claim it.
        Queued => "queued",
        /// Claimed; its tasks are being executed.
        Running => "running",
        /// Finished with every leaf task successful or skipped.
        Success => "success",
        /// Finished with a failed leaf task, or timed out.
        Failed => "failed",
    }
);

text_enum!(
    /// State of one task instance (the latest try). "No status" is `Option::None`.
    TaskState, "task state" {
        /// Its dependencies are met; about to be queued (kept for Airflow compatibility).
        Scheduled => "scheduled",
        /// Ready, waiting for a free slot (parallelism or max_active_tasks).
        Queued => "queued",
        /// A try is executing.
        Running => "running",
        /// The latest try succeeded.
        Success => "success",
        /// Failed with no retries left.
        Failed => "failed",
        /// Failed, another try is due at `next_retry_at`.
        UpForRetry => "up_for_retry",
        /// Cannot run because an upstream failed.
        UpstreamFailed => "upstream_failed",
        /// Not run: its trigger rule said so, or the run timed out first.
        Skipped => "skipped",
    }
);

text_enum!(
    /// Why a run exists.
    RunType, "run type" {
        /// `trigger`, `run` or the API.
        Manual => "manual",
        /// Created by the cron timetable.
        Scheduled => "scheduled",
        /// Created by `backfill`.
        Backfill => "backfill",
        /// Created by another run's `trigger_dag` task.
        Triggered => "triggered",
    }
);

impl RunState {
    /// Every state.
    pub const ALL: [RunState; 4] = [Self::Queued, Self::Running, Self::Success, Self::Failed];

    /// A SQL condition on column `state`: the states from which `next` may be reached.
    pub fn sql_sources(next: RunState) -> String {
        let names: Vec<String> = Self::ALL
            .into_iter()
            .filter(|f| f.can_become(next))
            .map(|f| format!("'{}'", f.as_str()))
            .collect();
        format!("state IN ({})", names.join(", "))
    }

    /// Whether the run is over.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Success | Self::Failed)
    }

    /// A finished run's state from the states of its leaf tasks (those with nothing
    /// downstream), Airflow's rule: failed if a leaf failed or is upstream_failed, success
    /// otherwise. The scheduler finishes runs by it and `mark` recomputes runs by it.
    pub fn from_leaves(leaves: impl IntoIterator<Item = Option<TaskState>>) -> RunState {
        if leaves
            .into_iter()
            .any(|s| s.is_some_and(TaskState::is_failure))
        {
            Self::Failed
        } else {
            Self::Success
        }
    }

    /// The transitions the engine may make; `clear` re-queues finished runs.
    pub fn can_become(self, next: RunState) -> bool {
        use RunState::*;
        matches!(
            (self, next),
            // queued -> failed: a run that cannot start (its stored DAG version is gone).
            (Queued, Running | Failed)
                | (Running, Success | Failed | Queued)
                | (Success | Failed, Queued)
        )
    }
}

impl TaskState {
    /// Every state.
    pub const ALL: [TaskState; 8] = [
        Self::Scheduled,
        Self::Queued,
        Self::Running,
        Self::Success,
        Self::Failed,
        Self::UpForRetry,
        Self::UpstreamFailed,
        Self::Skipped,
    ];

    /// A SQL condition on column `state` that holds when the stored state is one of those
    /// (`None` = no status) from which `next` may be reached and that `keep` accepts.
    pub fn sql_sources(
        next: Option<TaskState>,
        keep: impl Fn(Option<TaskState>) -> bool,
    ) -> String {
        let mut names = Vec::new();
        let mut null = false;
        let all = std::iter::once(None).chain(Self::ALL.into_iter().map(Some));
        for from in all.filter(|&f| Self::can_become(f, next) && keep(f)) {
            match from {
                None => null = true,
                Some(s) => names.push(format!("'{}'", s.as_str())),
            }
        }
        match (names.is_empty(), null) {
            (true, true) => "state IS NULL".into(),
            (true, false) => "0".into(),
            (false, false) => format!("state IN ({})", names.join(", ")),
            (false, true) => format!("(state IS NULL OR state IN ({}))", names.join(", ")),
        }
    }

    /// The states a user may mark `success` or `failed` from (in a finished run): any
    /// settled state, or no status; never a try that is under way.
    pub fn marked_sources() -> &'static str {
        "(state IS NULL OR state IN ('scheduled', 'success', 'failed', 'up_for_retry', \
         'upstream_failed', 'skipped'))"
    }

    /// Whether no further try will happen without a `clear`.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            Self::Success | Self::Failed | Self::UpstreamFailed | Self::Skipped
        )
    }

    /// Counts as "failed" for trigger rules.
    pub fn is_failure(self) -> bool {
        matches!(self, Self::Failed | Self::UpstreamFailed)
    }

    /// Whether a task instance in `from` (None = no status) may move to `next`.
    pub fn can_become(from: Option<TaskState>, next: Option<TaskState>) -> bool {
        use TaskState::*;
        match (from, next) {
            // `clear` resets anything; a running try only goes back when shutdown interrupts it.
            (Some(_), None) => true,
            (None, None) => true,
            (None | Some(Scheduled | Queued | UpForRetry), Some(Running | Queued | Scheduled)) => {
                true
            }
            (None | Some(Scheduled | Queued), Some(UpstreamFailed | Skipped)) => true,
            (Some(UpForRetry), Some(Skipped | Failed)) => true,
            (Some(Running), Some(Success | Failed | UpForRetry | Skipped)) => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_text() {
        for s in ["queued", "running", "success", "failed"] {
            assert_eq!(s.parse::<RunState>().unwrap().as_str(), s);
        }
        assert_eq!(
            "up_for_retry".parse::<TaskState>().unwrap(),
            TaskState::UpForRetry
        );
        assert!("bogus".parse::<TaskState>().is_err());
    }

    #[test]
    fn a_finished_task_cannot_start_again_without_a_clear() {
        use TaskState::*;
        assert!(!TaskState::can_become(Some(Success), Some(Running)));
        assert!(TaskState::can_become(Some(Success), None));
        assert!(TaskState::can_become(None, Some(Running)));
        assert!(TaskState::can_become(Some(UpForRetry), Some(Running)));
        assert!(!TaskState::can_become(Some(Failed), Some(Success)));
    }

    #[test]
    fn sql_conditions_follow_the_transition_tables() {
        use TaskState::*;
        assert_eq!(
            TaskState::sql_sources(Some(Success), |_| true),
            "state IN ('running')"
        );
        assert_eq!(
            TaskState::sql_sources(Some(Running), |_| true),
            "(state IS NULL OR state IN ('scheduled', 'queued', 'up_for_retry'))"
        );
        assert_eq!(
            TaskState::sql_sources(Some(Skipped), |f| f != Some(Running)),
            "(state IS NULL OR state IN ('scheduled', 'queued', 'up_for_retry'))"
        );
        assert_eq!(
            RunState::sql_sources(RunState::Queued),
            "state IN ('running', 'success', 'failed')"
        );
        assert_eq!(
            RunState::sql_sources(RunState::Failed),
            "state IN ('queued', 'running')"
        );
        assert_eq!(TaskState::sql_sources(Some(Running), |_| false), "0");
    }

    #[test]
    fn runs_move_forward_or_are_requeued_by_clear() {
        use RunState::*;
        assert!(Queued.can_become(Running));
        assert!(Failed.can_become(Queued));
        assert!(!Success.can_become(Running));
    }
}
