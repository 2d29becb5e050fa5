//! Task instances' tries and their logs as front-ends show them: a try's header, its log
//! whole, from a sequence number (to follow it while it runs), or its tail.

use super::{Service, ServiceError, ServiceResult};
use crate::ids::TaskId;
use crate::store::{RunRow, TaskInstanceRow, TryRow};
use crate::tasks::LogLine;

/// A task instance of a run with its tries (the log page's header).
#[derive(Debug)]
pub struct TaskLogs {
    /// The task instance.
    pub instance: TaskInstanceRow,
    /// Its tries, first first.
    pub tries: Vec<TryRow>,
    /// The try asked for (the latest by default; 0 when none started).
    pub try_number: u32,
}

/// Log lines of one try after a sequence number.
#[derive(Debug, serde::Serialize)]
pub struct LogChunk {
    /// The lines, in order.
    pub lines: Vec<LogLine>,
    /// Seq of the last line returned (or the one passed in when none): where to go on.
    pub last_seq: u64,
    /// Whether the try may still write (it is running, or has not ended yet).
    pub running: bool,
    /// Whether the lines reach the end of the log of a try that had ended before they
    /// were read: nothing will follow them.
    pub complete: bool,
}

/// The last lines of one try's log.
#[derive(Debug, serde::Serialize)]
pub struct LogTail {
    /// The lines, in order.
    pub lines: Vec<LogLine>,
    /// Whether the log has lines before these.
    pub earlier: bool,
    /// Seq of the last line (0 when none): where a follower goes on.
    pub last_seq: u64,
    /// Whether the try may still write (it is running, or has not ended yet).
    pub running: bool,
}

impl Service {
    /// A task instance of a run and its tries; `try_number` (default: the latest) must
    /// be one that exists.
    pub async fn task_logs(
        &self,
        run: &RunRow,
        task_id: &str,
        try_number: Option<u32>,
    ) -> ServiceResult<TaskLogs> {
        let task = TaskId::new(task_id);
        let instance = self
            .store
            .task_instances(run.key)
            .await?
            .into_iter()
            .find(|t| t.task_id == task);
        let instance = match instance {
            Some(instance) => instance,
            // A queued run has no task instances yet; its DAG still names its tasks.
            None if self.run_has_task(run, &task) => TaskInstanceRow::unstarted(&task),
            None => {
                return Err(ServiceError::UnknownTask(format!(
                    "run '{}' has no task '{task_id}'",
                    run.run_id
                )));
            }
        };
        let latest = instance.try_number;
        let try_number = try_number.unwrap_or(latest);
        if try_number > latest || (try_number == 0 && latest > 0) {
            return Err(ServiceError::UnknownTask(format!(
                "task '{task_id}' of run '{}' has no try {try_number} (it has {latest})",
                run.run_id
            )));
        }
        let tries = self
            .store
            .tries(run.key)
            .await?
            .into_iter()
            .filter(|t| t.task_id == task)
            .collect();
        Ok(TaskLogs {
            instance,
            tries,
            try_number,
        })
    }

    fn run_has_task(&self, run: &RunRow, task: &TaskId) -> bool {
        self.bag()
            .get(run.dag_id.as_str())
            .is_some_and(|d| d.index.contains_key(task))
    }

    /// Up to `limit` log lines of a try after `after_seq` (0: from the start).
    pub async fn log_chunk(
        &self,
        run: &RunRow,
        task: &TaskId,
        try_number: u32,
        after_seq: u64,
        limit: u32,
    ) -> ServiceResult<LogChunk> {
        // Read before the lines: a try that ends meanwhile may write more, and must not
        // be taken as complete.
        let running = self.try_running(run, task, try_number).await?;
        let lines = self
            .store
            .logs_after(run.key, task, try_number, after_seq, limit)
            .await?;
        let last_seq = lines.last().map_or(after_seq, |l| l.seq);
        Ok(LogChunk {
            complete: !running && lines.len() < limit as usize,
            lines,
            last_seq,
            running,
        })
    }

    /// The whole stored log of a try.
    pub async fn log(
        &self,
        run: &RunRow,
        task: &TaskId,
        try_number: u32,
    ) -> ServiceResult<Vec<LogLine>> {
        Ok(self.store.logs(run.key, task, try_number).await?)
    }

    /// The last `limit` lines of a try's log.
    pub async fn log_tail(
        &self,
        run: &RunRow,
        task: &TaskId,
        try_number: u32,
        limit: u32,
    ) -> ServiceResult<LogTail> {
        // One line more than asked says whether anything comes before the tail.
        let mut lines = self
            .store
            .logs_before(run.key, task, try_number, u64::MAX, limit.saturating_add(1))
            .await?;
        let earlier = lines.len() > limit as usize;
        if earlier {
            lines.remove(0);
        }
        Ok(LogTail {
            last_seq: lines.last().map_or(0, |l| l.seq),
            running: self.try_running(run, task, try_number).await?,
            lines,
            earlier,
        })
    }

    /// Whether a try may still write: it runs, or has not started yet.
    async fn try_running(
        &self,
        run: &RunRow,
        task: &TaskId,
        try_number: u32,
    ) -> ServiceResult<bool> {
        let row = self.store.try_row(run.key, task, try_number).await?;
        Ok(row.is_none_or(|t| t.end_date.is_none()))
    }
}
