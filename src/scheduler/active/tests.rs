use std::path::Path;

use super::*;
use crate::dag::build::{DagText, build_dag};
use crate::ids::{DagId, RunId};
use crate::state::RunType;

fn dag(yaml: &str) -> Arc<Dag> {
    let text = format!("dag_id: t\n{yaml}");
    Arc::new(
        build_dag(&DagText {
            path: Path::new("t.yaml"),
            project: None,
            default_dag_id: None,
            text,
        })
        .unwrap(),
    )
}

fn run(dag: Arc<Dag>) -> ActiveRun {
    let now = Utc::now();
    let row = RunRow {
        key: RunKey(1),
        dag_id: DagId::new("t"),
        run_id: RunId::new("r"),
        run_type: RunType::Manual,
        state: RunState::Running,
        logical_date: now,
        data_interval_start: now,
        data_interval_end: now,
        conf: serde_json::json!({}),
        queued_at: now,
        start_date: Some(now),
        end_date: None,
        parent_run: None,
        parent_task_id: None,
        parent_try: None,
        owner: None,
        owner_epoch: None,
        dag_version: None,
        uid: None,
        note: None,
        user_note: None,
    };
    ActiveRun::new(row, dag, &[], CancellationToken::new())
}

/// Starts every ready task and ends it with the given result (by task id).
fn step(
    r: &mut ActiveRun,
    ready: &[usize],
    results: &[(&str, Result<TaskOutcome, TaskError>)],
) -> Vec<usize> {
    let now = Utc::now();
    let mut changes = Vec::new();
    let mut next = Vec::new();
    for &i in ready {
        let try_number = r.start_try(i, now, &mut changes);
        let id = r.dag.tasks[i].id.to_string();
        let result = results
            .iter()
            .find(|(t, _)| *t == id)
            .map(|(_, r)| r.clone())
            .unwrap_or(Ok(TaskOutcome::Success));
        if let TryEnd::Done(_) = r.end_try(
            i,
            try_number,
            &result,
            EndContext::default(),
            now,
            &mut changes,
        ) {
            for d in r.dag.tasks[i].downstream.clone() {
                r.evaluate(d, now, &mut next, &mut changes);
            }
        }
    }
    next
}

fn state(r: &ActiveRun, id: &str) -> Option<TaskState> {
    r.slots[r.dag.task(id).unwrap().0].state
}

const RULES: &str = "tasks:
  a: {type: noop}
  b: {type: noop, depends_on: a}
  cleanup: {type: noop, depends_on: b, trigger_rule: all_done}
  alert: {type: noop, depends_on: a, trigger_rule: one_failed}
";

#[test]
fn a_failure_propagates_upstream_failed_and_all_done_still_runs() {
    let mut r = run(dag(RULES));
    let (mut ready, mut changes) = (Vec::new(), Vec::new());
    r.evaluate_all(Utc::now(), &mut ready, &mut changes);
    assert_eq!(ready, vec![0]);
    let next = step(
        &mut r,
        &ready,
        &[("a", Err(TaskError::Failed("boom".into())))],
    );
    assert_eq!(state(&r, "a"), Some(TaskState::Failed));
    assert_eq!(state(&r, "b"), Some(TaskState::UpstreamFailed));
    // cleanup (all_done) and alert (one_failed) are ready.
    let names: Vec<&str> = next.iter().map(|&i| r.dag.tasks[i].id.as_str()).collect();
    assert_eq!(names, vec!["cleanup", "alert"]);
    assert_eq!(r.outcome(), None);
    step(&mut r, &next, &[]);
    // Leaves cleanup and alert succeeded: the run succeeds, as in Airflow.
    assert_eq!(r.outcome(), Some(RunState::Success));
}

#[test]
fn when_nothing_fails_one_failed_is_skipped() {
    let mut r = run(dag(RULES));
    let (mut ready, mut changes) = (Vec::new(), Vec::new());
    r.evaluate_all(Utc::now(), &mut ready, &mut changes);
    let next = step(&mut r, &ready, &[]);
    assert_eq!(state(&r, "alert"), Some(TaskState::Skipped));
    let next = step(&mut r, &next, &[]);
    step(&mut r, &next, &[]);
    assert_eq!(r.outcome(), Some(RunState::Success));
}

#[test]
fn a_retryable_failure_with_tries_left_is_up_for_retry() {
    let mut r = run(dag(
        "tasks:\n  a: {type: noop, retries: 1, retry_delay: 10s}\n",
    ));
    let now = Utc::now();
    let mut changes = Vec::new();
    let t = r.start_try(0, now, &mut changes);
    let end = r.end_try(
        0,
        t,
        &Err(TaskError::Failed("x".into())),
        EndContext::default(),
        now,
        &mut changes,
    );
    assert_eq!(end, TryEnd::RetryAt(now + chrono::Duration::seconds(10)));
    let t = r.start_try(0, now, &mut changes);
    assert_eq!(t, 2);
    let end = r.end_try(
        0,
        t,
        &Err(TaskError::Failed("x".into())),
        EndContext::default(),
        now,
        &mut changes,
    );
    assert_eq!(end, TryEnd::Done(TaskState::Failed));
    assert_eq!(r.outcome(), Some(RunState::Failed));
}

const DRAINING: EndContext = EndContext {
    draining: true,
    interrupt_sent: false,
};

#[test]
fn shutdown_never_costs_a_retry_whatever_the_error() {
    let mut r = run(dag(
        "tasks:\n  a: {type: noop}\n  b: {type: noop}\n  c: {type: noop}\n",
    ));
    let now = Utc::now();
    let mut changes = Vec::new();
    // Killed by the service manager's signal during the grace period.
    let t = r.start_try(0, now, &mut changes);
    let killed = Err(TaskError::Killed(
        "command was killed by signal SIGTERM".into(),
    ));
    assert_eq!(
        r.end_try(0, t, &killed, DRAINING, now, &mut changes),
        TryEnd::Abandoned
    );
    // Any error once the interrupt was sent (a data task reporting its stop its own way).
    let t = r.start_try(1, now, &mut changes);
    let data_error = Err(TaskError::Failed("loading t was cancelled".into()));
    let interrupted = EndContext {
        draining: true,
        interrupt_sent: true,
    };
    assert_eq!(
        r.end_try(1, t, &data_error, interrupted, now, &mut changes),
        TryEnd::Abandoned
    );
    // A genuine failure during the grace period still fails (retries: 0).
    let t = r.start_try(2, now, &mut changes);
    assert_eq!(
        r.end_try(2, t, &data_error, DRAINING, now, &mut changes),
        TryEnd::Done(TaskState::Failed)
    );
    assert_eq!(r.slots[0].max_tries, 2, "the abandoned try is given back");
}

#[test]
fn an_interrupted_try_uses_the_same_retry_rule() {
    let mut r = run(dag(
        "tasks:\n  a: {type: noop, retries: 1, retry_delay: 10s}\n",
    ));
    let now = Utc::now();
    let mut changes = Vec::new();
    r.start_try(0, now, &mut changes);
    assert_eq!(
        r.end_interrupted_try(0, now, &mut changes),
        TryEnd::RetryAt(now + chrono::Duration::seconds(10))
    );
    assert!(matches!(
        changes.last(),
        Some(Change::FinishTry {
            interrupted: true,
            state: TaskState::UpForRetry,
            ..
        })
    ));
    r.start_try(0, now, &mut changes);
    assert_eq!(
        r.end_interrupted_try(0, now, &mut changes),
        TryEnd::Done(TaskState::Failed)
    );
}

#[test]
fn fatal_errors_are_not_retried_and_shutdown_abandons_the_try() {
    let mut r = run(dag("tasks:\n  a: {type: noop, retries: 3}\n"));
    let now = Utc::now();
    let mut changes = Vec::new();
    let t = r.start_try(0, now, &mut changes);
    let end = r.end_try(
        0,
        t,
        &Err(TaskError::Cancelled("stop".into())),
        DRAINING,
        now,
        &mut changes,
    );
    assert_eq!(end, TryEnd::Abandoned);
    assert_eq!(r.slots[0].state, None);
    assert_eq!((r.slots[0].try_number, r.slots[0].max_tries), (1, 5));
    let t = r.start_try(0, now, &mut changes);
    assert_eq!(t, 2, "the next try gets a new number, so logs stay apart");
    let end = r.end_try(
        0,
        t,
        &Err(TaskError::Fatal("bad template".into())),
        EndContext::default(),
        now,
        &mut changes,
    );
    assert_eq!(end, TryEnd::Done(TaskState::Failed));
}
