//! Task instances, tries and logs, and the batched commit the scheduler writes through.

use chrono::Utc;
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};

use super::rows::{Change, TaskInstanceRow, TryRow};
use super::{Store, StoreResult, to_text};
use crate::ids::{ProcessGroup, RunKey, TaskId};
use crate::tasks::LogLine;

impl Store {
    /// The latest state of every task instance of a run.
    pub async fn task_instances(&self, run: RunKey) -> StoreResult<Vec<TaskInstanceRow>> {
        let rows = sqlx::query(
            "SELECT task_id, state, try_number, max_tries, start_date, end_date, next_retry_at, \
             error FROM task_instance WHERE run = ? ORDER BY rowid",
        )
        .bind(run.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(TaskInstanceRow::from_row).collect()
    }

    /// Every try of every task of a run.
    pub async fn tries(&self, run: RunKey) -> StoreResult<Vec<TryRow>> {
        let rows = sqlx::query(
            "SELECT task_id, try_number, state, start_date, end_date, error FROM task_try \
             WHERE run = ? ORDER BY start_date, task_id",
        )
        .bind(run.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(TryRow::from_row).collect()
    }

    /// The log of one try.
    pub async fn logs(
        &self,
        run: RunKey,
        task: &TaskId,
        try_number: u32,
    ) -> StoreResult<Vec<LogLine>> {
        let rows = sqlx::query(
            "SELECT ts, level, message FROM task_log WHERE run = ? AND task_id = ? AND try_number = ? \
             ORDER BY id",
        )
        .bind(run.0)
        .bind(task.as_str())
        .bind(try_number)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let level: String = r.try_get("level")?;
                Ok(LogLine {
                    ts: super::from_text(&r.try_get::<String, _>("ts")?)?,
                    level: level_name(&level),
                    message: r.try_get("message")?,
                })
            })
            .collect()
    }

    /// The process group recorded for a try, if its command reported one.
    pub async fn try_process(
        &self,
        run: RunKey,
        task: &TaskId,
        try_number: u32,
    ) -> StoreResult<Option<ProcessGroup>> {
        let row = sqlx::query(
            "SELECT host, pgid, pgid_start FROM task_try WHERE run = ? AND task_id = ? \
             AND try_number = ? AND pgid IS NOT NULL",
        )
        .bind(run.0)
        .bind(task.as_str())
        .bind(try_number)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let start: i64 = r.try_get("pgid_start")?;
            Ok(ProcessGroup {
                host: r.try_get::<Option<String>, _>("host")?.unwrap_or_default(),
                pgid: r.try_get("pgid")?,
                start_ticks: u64::try_from(start)
                    .map_err(|_| super::StoreError::Corrupt(format!("pgid_start {start}")))?,
            })
        })
        .transpose()
    }

    /// Applies a batch of changes in one transaction.
    pub async fn commit(&self, changes: &[Change]) -> StoreResult<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        // Try rows and log lines go in multi-row inserts: a fan-out of a thousand tasks
        // commits in a few statements instead of thousands. Try rows first, as later
        // changes in the batch may update them.
        let starts: Vec<_> = changes
            .iter()
            .filter_map(|c| match c {
                Change::StartTry {
                    run,
                    task,
                    try_number,
                    at,
                } => Some((*run, task, *try_number, *at)),
                _ => None,
            })
            .collect();
        for chunk in starts.chunks(200) {
            insert_tries(&mut tx, chunk).await?;
        }
        for change in changes {
            apply(&mut tx, change).await?;
        }
        let lines: Vec<_> = changes
            .iter()
            .flat_map(|c| match c {
                Change::Logs {
                    run,
                    task,
                    try_number,
                    lines,
                } => lines.iter().map(|l| (*run, task, *try_number, l)).collect(),
                _ => Vec::new(),
            })
            .collect();
        for chunk in lines.chunks(150) {
            insert_logs(&mut tx, chunk).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Resets task instances to "no status" and gives them `extra_tries` more tries.
    pub async fn clear_tasks(&self, run: RunKey, tasks: &[(TaskId, u32)]) -> StoreResult<()> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for (task, extra_tries) in tasks {
            sqlx::query(
                "UPDATE task_instance SET state = NULL, max_tries = try_number + ?, end_date = NULL, \
                 next_retry_at = NULL, error = NULL WHERE run = ? AND task_id = ?",
            )
            .bind(extra_tries)
            .bind(run.0)
            .bind(task.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

fn level_name(level: &str) -> &'static str {
    ["INFO", "WARN", "ERROR", "STDOUT", "STDERR"]
        .into_iter()
        .find(|l| *l == level)
        .unwrap_or("INFO")
}

async fn apply(tx: &mut Transaction<'static, Sqlite>, change: &Change) -> StoreResult<()> {
    match change {
        Change::StartTry {
            run,
            task,
            try_number,
            at,
        } => {
            sqlx::query(
                "UPDATE task_instance SET state = 'running', try_number = ?, start_date = ?, \
                 end_date = NULL, next_retry_at = NULL, error = NULL WHERE run = ? AND task_id = ?",
            )
            .bind(try_number)
            .bind(to_text(*at))
            .bind(run.0)
            .bind(task.as_str())
            .execute(&mut **tx)
            .await?;
        }
        Change::FinishTry {
            run,
            task,
            try_number,
            state,
            at,
            error,
            next_retry_at,
        } => {
            sqlx::query(
                "UPDATE task_instance SET state = ?, end_date = ?, error = ?, next_retry_at = ? \
                 WHERE run = ? AND task_id = ?",
            )
            .bind(state.as_str())
            .bind(to_text(*at))
            .bind(error)
            .bind(next_retry_at.map(to_text))
            .bind(run.0)
            .bind(task.as_str())
            .execute(&mut **tx)
            .await?;
            finish_try_row(
                tx,
                *run,
                task,
                *try_number,
                state.as_str(),
                *at,
                error.as_deref(),
            )
            .await?;
        }
        Change::AbandonTry {
            run,
            task,
            try_number,
            at,
            reason,
        } => {
            sqlx::query(
                "UPDATE task_instance SET state = NULL, max_tries = max_tries + 1, end_date = ?, \
                 error = ? WHERE run = ? AND task_id = ?",
            )
            .bind(to_text(*at))
            .bind(reason)
            .bind(run.0)
            .bind(task.as_str())
            .execute(&mut **tx)
            .await?;
            // The interrupted try keeps its row and log; an extra try makes up for it.
            finish_try_row(tx, *run, task, *try_number, "failed", *at, Some(reason)).await?;
        }
        Change::SetTaskState {
            run,
            task,
            state,
            at,
        } => {
            let ends = state.is_finished();
            sqlx::query(
                "UPDATE task_instance SET state = ?, end_date = CASE WHEN ? THEN ? ELSE end_date END \
                 WHERE run = ? AND task_id = ?",
            )
            .bind(state.as_str())
            .bind(ends)
            .bind(to_text(*at))
            .bind(run.0)
            .bind(task.as_str())
            .execute(&mut **tx)
            .await?;
        }
        // Inserted in bulk by `commit`.
        Change::Logs { .. } => {}
        Change::TryProcess {
            run,
            task,
            try_number,
            group,
        } => {
            sqlx::query(
                "UPDATE task_try SET host = ?, pgid = ?, pgid_start = ? \
                 WHERE run = ? AND task_id = ? AND try_number = ?",
            )
            .bind(&group.host)
            .bind(group.pgid)
            .bind(i64::try_from(group.start_ticks).unwrap_or(i64::MAX))
            .bind(run.0)
            .bind(task.as_str())
            .bind(try_number)
            .execute(&mut **tx)
            .await?;
        }
        Change::FinishRun {
            run,
            state,
            at,
            note,
        } => {
            sqlx::query("UPDATE dag_run SET state = ?, end_date = ?, note = ? WHERE id = ?")
                .bind(state.as_str())
                .bind(to_text(*at))
                .bind(note)
                .bind(run.0)
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}

async fn insert_tries(
    tx: &mut Transaction<'static, Sqlite>,
    tries: &[(RunKey, &TaskId, u32, chrono::DateTime<Utc>)],
) -> StoreResult<()> {
    let mut q = QueryBuilder::<Sqlite>::new(
        "INSERT OR REPLACE INTO task_try (run, task_id, try_number, state, start_date) ",
    );
    q.push_values(tries, |mut row, (run, task, try_number, at)| {
        row.push_bind(run.0)
            .push_bind(task.as_str())
            .push_bind(*try_number)
            .push_bind("running")
            .push_bind(to_text(*at));
    });
    q.build().execute(&mut **tx).await?;
    Ok(())
}

async fn insert_logs(
    tx: &mut Transaction<'static, Sqlite>,
    lines: &[(RunKey, &TaskId, u32, &LogLine)],
) -> StoreResult<()> {
    let mut q = QueryBuilder::<Sqlite>::new(
        "INSERT INTO task_log (run, task_id, try_number, ts, level, message) ",
    );
    q.push_values(lines, |mut row, (run, task, try_number, line)| {
        row.push_bind(run.0)
            .push_bind(task.as_str())
            .push_bind(*try_number)
            .push_bind(to_text(line.ts))
            .push_bind(line.level)
            .push_bind(line.message.as_str());
    });
    q.build().execute(&mut **tx).await?;
    Ok(())
}

async fn finish_try_row(
    tx: &mut Transaction<'static, Sqlite>,
    run: RunKey,
    task: &TaskId,
    try_number: u32,
    state: &str,
    at: chrono::DateTime<Utc>,
    error: Option<&str>,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE task_try SET state = ?, end_date = ?, error = ? WHERE run = ? AND task_id = ? AND try_number = ?",
    )
    .bind(state)
    .bind(to_text(at))
    .bind(error)
    .bind(run.0)
    .bind(task.as_str())
    .bind(try_number)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
