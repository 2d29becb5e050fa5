//! Executes one try of a task: renders its templates, runs it on its own tokio task (so a
//! panic is caught and reported as [`TaskError::Panicked`]), enforces the execution
//! timeout by cancelling the work, and returns the result with the try's log.

use std::time::Duration;

use crate::tasks::template::{TemplateValues, render_kind};
use crate::tasks::{LogBatch, TaskContext, TaskError, TaskKind, TaskOutcome};

/// How long a cancelled task gets to stop before the executor stops waiting for it. Work it
/// leaves running cannot commit afterwards: warehouse statements are interrupted and
/// refuse to commit once cancelled, and the other data tasks publish nothing.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How often a running try's log lines are stored.
const LOG_FLUSH: Duration = Duration::from_secs(1);

/// The result of one try and what it logged.
pub struct TryResult {
    /// Outcome.
    pub result: Result<TaskOutcome, TaskError>,
    /// Log lines not yet handed over, in seq order, and the dropped middle if it grew.
    pub logs: LogBatch,
}

/// Runs one try of `kind` to completion, timeout, cancellation or panic.
pub async fn execute(
    kind: &TaskKind,
    values: TemplateValues,
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
    let work = run_guarded(kind.clone(), values, ctx.clone(), timeout);
    let result = with_live_log(work, &ctx).await;
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

/// Drives the try while handing its log lines to the scheduler every second, so the log of
/// a long try can be read while it runs.
async fn with_live_log(
    work: impl Future<Output = Result<TaskOutcome, TaskError>>,
    ctx: &TaskContext,
) -> Result<TaskOutcome, TaskError> {
    tokio::pin!(work);
    // Not `interval()`: its immediate first tick still costs a trip through the
    // millisecond timer wheel, which would delay every short task by ~1 ms.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + LOG_FLUSH, LOG_FLUSH);
    loop {
        tokio::select! {
            result = &mut work => return result,
            _ = tick.tick() => {
                let batch = ctx.log.drain();
                if !batch.is_empty() {
                    // The scheduler is gone only at exit; the lines are then lost with it.
                    ctx.engine.append_logs(ctx.run_key, ctx.task_id.clone(), ctx.try_number, batch).await;
                }
            }
        }
    }
}

/// Renders the templates, then runs the task, both under the execution timeout and
/// cancellation (rendering is bounded by its fuel and runs off the async threads).
async fn run_guarded(
    kind: TaskKind,
    values: TemplateValues,
    ctx: TaskContext,
    timeout: Option<Duration>,
) -> Result<TaskOutcome, TaskError> {
    let cancel = ctx.cancel.clone();
    let mut handle = tokio::spawn(async move {
        let rendered = tokio::task::spawn_blocking(move || render_kind(&kind, &values))
            .await
            .map_err(|e| TaskError::Fatal(format!("rendering templates: {e}")))?
            .map_err(TaskError::Fatal)?;
        if ctx.cancel.is_cancelled() {
            return Err(TaskError::Cancelled("stopped before it started".into()));
        }
        rendered.run(&ctx).await
    });
    tokio::select! {
        joined = &mut handle => joined_result(joined),
        () = sleep_or_forever(timeout) => {
            // Timed out: ask the task to stop, give it a moment, then abandon it.
            cancel.cancel();
            if tokio::time::timeout(STOP_GRACE, &mut handle).await.is_err() {
                handle.abort();
            }
            Err(TaskError::TimedOut(timeout.unwrap_or_default()))
        }
        () = cancel.cancelled() => {
            // Cancelled from outside (dagrun timeout, shutdown): the task may finish its own
            // way; one that ignores cancellation is abandoned after the grace period.
            match tokio::time::timeout(STOP_GRACE, &mut handle).await {
                Ok(joined) => joined_result(joined),
                Err(_) => {
                    handle.abort();
                    Err(TaskError::Cancelled("the task did not stop in time".into()))
                }
            }
        }
    }
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
