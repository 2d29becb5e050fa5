//! Executes one try of a task: renders its templates, runs it on its own tokio task (so a
//! panic is caught and reported as [`TaskError::Panicked`]), enforces the execution
//! timeout by cancelling the work, and returns the result with the try's log.

use std::time::Duration;

use crate::tasks::template::{TemplateValues, render_kind};
use crate::tasks::{LogLine, TaskContext, TaskError, TaskKind, TaskOutcome};

/// How long a cancelled task gets to stop before the executor stops waiting for it.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The result of one try and what it logged.
pub struct TryResult {
    /// Outcome.
    pub result: Result<TaskOutcome, TaskError>,
    /// Log lines, in order.
    pub logs: Vec<LogLine>,
}

/// Runs one try of `kind` to completion, timeout, cancellation or panic.
pub async fn execute(
    kind: &TaskKind,
    values: &TemplateValues,
    ctx: TaskContext,
    timeout: Option<Duration>,
) -> TryResult {
    let log = ctx.log.clone();
    log.info(format!(
        "starting {} task {} (try {}) of {} run {}",
        kind.type_name(),
        ctx.task_id,
        ctx.try_number,
        ctx.dag_id,
        ctx.run_id
    ));
    let result = match render_kind(kind, values) {
        Ok(rendered) => run_guarded(rendered, ctx, timeout).await,
        Err(e) => Err(TaskError::Fatal(e)),
    };
    match &result {
        Ok(TaskOutcome::Success) => log.info("task succeeded"),
        Ok(TaskOutcome::Skipped(why)) => log.info(format!("task skipped: {why}")),
        Err(e) => log.write("ERROR", format!("task failed: {e}")),
    }
    TryResult {
        result,
        logs: log.drain(),
    }
}

async fn run_guarded(
    kind: TaskKind,
    ctx: TaskContext,
    timeout: Option<Duration>,
) -> Result<TaskOutcome, TaskError> {
    let cancel = ctx.cancel.clone();
    let mut handle = tokio::spawn(async move { kind.run(&ctx).await });
    tokio::select! {
        joined = &mut handle => return joined_result(joined),
        () = sleep_or_forever(timeout) => {}
    }
    // Timed out: ask the task to stop, give it a moment, then abandon it.
    cancel.cancel();
    if tokio::time::timeout(STOP_GRACE, &mut handle).await.is_err() {
        handle.abort();
    }
    Err(TaskError::TimedOut(timeout.unwrap_or_default()))
}

fn joined_result(
    joined: Result<Result<TaskOutcome, TaskError>, tokio::task::JoinError>,
) -> Result<TaskOutcome, TaskError> {
    match joined {
        Ok(result) => result,
        Err(e) if e.is_panic() => {
            let payload = e.into_panic();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(TaskError::Panicked(message))
        }
        Err(_) => Err(TaskError::Cancelled("task was aborted".into())),
    }
}

async fn sleep_or_forever(timeout: Option<Duration>) {
    match timeout {
        Some(t) => tokio::time::sleep(t).await,
        None => std::future::pending().await,
    }
}
