//! Trigger rules: when a task may run given the states of its upstream tasks.
//!
//! Pure logic, evaluated by the scheduler each time an upstream finishes; the decision also
//! covers propagation (`upstream_failed` / `skipped`) when the task can never run.

use serde::{Deserialize, Serialize};

use crate::state::TaskState;

/// Airflow's trigger rules (the subset that makes sense without sensors).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerRule {
    /// Every upstream succeeded.
    #[default]
    AllSuccess,
    /// Every upstream finished, whatever the outcome.
    AllDone,
    /// At least one upstream succeeded (runs as soon as one does).
    OneSuccess,
    /// At least one upstream failed (runs as soon as one does).
    OneFailed,
    /// No upstream failed (success or skipped).
    NoneFailed,
    /// Every upstream failed.
    AllFailed,
    /// No upstream failed and at least one succeeded.
    NoneFailedMinOneSuccess,
    /// No upstream was skipped.
    NoneSkipped,
    /// Runs once every upstream is finished, like `all_done` (Airflow's `always` also
    /// ignores unfinished upstreams; here dependencies still order the tasks).
    Always,
}

/// Counts of upstream states that a rule is judged on.
#[derive(Clone, Copy, Debug, Default)]
pub struct UpstreamCounts {
    /// Number of upstream tasks.
    pub total: usize,
    /// Succeeded.
    pub success: usize,
    /// Failed or upstream_failed.
    pub failed: usize,
    /// Skipped.
    pub skipped: usize,
}

impl UpstreamCounts {
    /// Adds one upstream task's state.
    pub fn add(&mut self, state: Option<TaskState>) {
        self.total += 1;
        match state {
            Some(TaskState::Success) => self.success += 1,
            Some(s) if s.is_failure() => self.failed += 1,
            Some(TaskState::Skipped) => self.skipped += 1,
            _ => {}
        }
    }

    fn done(&self) -> usize {
        self.success + self.failed + self.skipped
    }

    fn all_done(&self) -> bool {
        self.done() == self.total
    }
}

/// What the scheduler should do with a task that has no status yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Not decidable yet: some upstream is still pending.
    Wait,
    /// Run it.
    Run,
    /// It can never run: mark it `upstream_failed`.
    UpstreamFailed,
    /// It can never run: mark it `skipped`.
    Skip,
}

impl TriggerRule {
    /// Decides from the upstream counts.
    pub fn decide(self, c: UpstreamCounts) -> Decision {
        use Decision::*;
        // A root task has nothing to wait for: Airflow runs it whatever its rule (a
        // `one_success` root would otherwise be skipped for want of an upstream).
        if c.total == 0 {
            return Run;
        }
        let done = c.all_done();
        match self {
            Self::AllSuccess if c.failed > 0 => UpstreamFailed,
            Self::AllSuccess if c.skipped > 0 => Skip,
            Self::AllSuccess => when(done, Run),
            Self::AllDone | Self::Always => when(done, Run),
            Self::OneSuccess if c.success > 0 => Run,
            Self::OneSuccess if !done => Wait,
            Self::OneSuccess if c.skipped == c.total => Skip,
            Self::OneSuccess => UpstreamFailed,
            Self::OneFailed if c.failed > 0 => Run,
            Self::OneFailed => when(done, Skip),
            Self::NoneFailed | Self::NoneFailedMinOneSuccess if c.failed > 0 => UpstreamFailed,
            Self::NoneFailed => when(done, Run),
            Self::NoneFailedMinOneSuccess if !done => Wait,
            Self::NoneFailedMinOneSuccess if c.success > 0 || c.total == 0 => Run,
            Self::NoneFailedMinOneSuccess => Skip,
            Self::AllFailed if c.success > 0 || c.skipped > 0 => Skip,
            Self::AllFailed => when(done, Run),
            Self::NoneSkipped if c.skipped > 0 => Skip,
            Self::NoneSkipped => when(done, Run),
        }
    }
}

fn when(done: bool, decision: Decision) -> Decision {
    if done { decision } else { Decision::Wait }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskState::*;

    fn counts(states: &[Option<TaskState>]) -> UpstreamCounts {
        let mut c = UpstreamCounts::default();
        states.iter().for_each(|s| c.add(*s));
        c
    }

    #[test]
    fn all_success_waits_then_runs_or_propagates() {
        let r = TriggerRule::AllSuccess;
        assert_eq!(r.decide(counts(&[Some(Success), None])), Decision::Wait);
        assert_eq!(
            r.decide(counts(&[Some(Success), Some(Success)])),
            Decision::Run
        );
        assert_eq!(
            r.decide(counts(&[Some(Failed), None])),
            Decision::UpstreamFailed
        );
        assert_eq!(
            r.decide(counts(&[Some(Skipped), Some(Success)])),
            Decision::Skip
        );
        assert_eq!(r.decide(counts(&[])), Decision::Run);
    }

    #[test]
    fn all_done_runs_after_failures_too() {
        let r = TriggerRule::AllDone;
        assert_eq!(
            r.decide(counts(&[Some(Failed), Some(Running)])),
            Decision::Wait
        );
        assert_eq!(
            r.decide(counts(&[Some(Failed), Some(UpstreamFailed)])),
            Decision::Run
        );
    }

    #[test]
    fn one_success_and_one_failed_fire_early() {
        assert_eq!(
            TriggerRule::OneSuccess.decide(counts(&[Some(Success), Some(Running)])),
            Decision::Run
        );
        assert_eq!(
            TriggerRule::OneSuccess.decide(counts(&[Some(Failed), Some(Failed)])),
            Decision::UpstreamFailed
        );
        assert_eq!(
            TriggerRule::OneFailed.decide(counts(&[Some(Failed), Some(Running)])),
            Decision::Run
        );
        assert_eq!(
            TriggerRule::OneFailed.decide(counts(&[Some(Success), Some(Success)])),
            Decision::Skip
        );
    }

    #[test]
    fn a_root_task_runs_whatever_its_rule() {
        for rule in [
            TriggerRule::AllSuccess,
            TriggerRule::AllDone,
            TriggerRule::OneSuccess,
            TriggerRule::OneFailed,
            TriggerRule::NoneFailed,
            TriggerRule::AllFailed,
            TriggerRule::NoneFailedMinOneSuccess,
            TriggerRule::NoneSkipped,
            TriggerRule::Always,
        ] {
            assert_eq!(rule.decide(counts(&[])), Decision::Run, "{rule:?}");
        }
    }

    #[test]
    fn none_failed_and_all_failed() {
        assert_eq!(
            TriggerRule::NoneFailed.decide(counts(&[Some(Success), Some(Skipped)])),
            Decision::Run
        );
        assert_eq!(
            TriggerRule::NoneFailed.decide(counts(&[Some(UpstreamFailed)])),
            Decision::UpstreamFailed
        );
        assert_eq!(
            TriggerRule::AllFailed.decide(counts(&[Some(Failed), Some(Failed)])),
            Decision::Run
        );
        assert_eq!(
            TriggerRule::AllFailed.decide(counts(&[Some(Failed), Some(Success)])),
            Decision::Skip
        );
    }
}
