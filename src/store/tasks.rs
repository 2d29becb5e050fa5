//! Task instances and tries, and the batched commit the scheduler writes through (log
//! lines are stored by `logs.rs`).

use chrono::Utc;
use sqlx::{QueryBuilder, Sqlite, Transaction};

use super::rows::{Change, TaskInstanceRow, TryRow};
use super::{Store, StoreResult, to_text};
use crate::ids::{RunKey, TaskId};

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
        super::logs::store_logs(&mut tx, changes).await?;
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
