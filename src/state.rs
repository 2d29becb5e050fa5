//! Run and task-instance states (Airflow's names), run types, and the allowed transitions.
//!
//! Stored as TEXT in SQLite; every write in the store goes through [`TaskState::can_become`]
//! or [`RunState::can_become`] so an impossible transition is a bug caught at the source.

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
    /// Whether the run is over.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Success | Self::Failed)
    }

    /// The transitions the engine may make; `clear` re-queues finished runs.
    pub fn can_become(self, next: RunState) -> bool {
        use RunState::*;
        matches!(
            (self, next),
            (Queued, Running) | (Running, Success | Failed | Queued) | (Success | Failed, Queued)
        )
    }
}

impl TaskState {
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
    fn runs_move_forward_or_are_requeued_by_clear() {
        use RunState::*;
        assert!(Queued.can_become(Running));
        assert!(Failed.can_become(Queued));
        assert!(!Success.can_become(Running));
    }
}
