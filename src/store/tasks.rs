//! Task instances and tries, and the batched commit the scheduler writes through (log
//! lines are stored by `logs.rs`).

use chrono::Utc;
use sqlx::{Any, Row, Transaction};

use super::rows::{Change, TaskInstanceRow, TryRow};
use super::sql::{storable, storable_opt};
use super::{Owner, Store, StoreError, StoreResult, to_text};
use crate::ids::{ProcessGroup, RunKey, TaskId};
use crate::state::{RunState, TaskState};

/// Condition every scheduler write carries: the run is owned by the writer at its epoch.
const FENCE: &str = "EXISTS (SELECT 1 FROM dag_run f WHERE f.id = $run AND f.owner = $owner \
    AND f.owner_epoch = $epoch)";

/// `FENCE` with its placeholders numbered for a statement whose run, owner and epoch are
/// bound at positions `run`, `run + 1` and `run + 2`.
fn fence(run: usize) -> String {
    FENCE
        .replace("$run", &format!("${run}"))
        .replace("$owner", &format!("${}", run + 1))
        .replace("$epoch", &format!("${}", run + 2))
}

impl Store {
    /// The latest state of every task instance of a run.
    pub async fn task_instances(&self, run: RunKey) -> StoreResult<Vec<TaskInstanceRow>> {
        let rows = sqlx::query(
            "SELECT task_id, state, try_number, max_tries, start_date, end_date, next_retry_at, \
             error, first_try FROM task_instance WHERE run = $1 ORDER BY rowid",
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
             WHERE run = $1 ORDER BY start_date, task_id",
        )
        .bind(run.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(TryRow::from_row).collect()
    }

    /// One try of a task of a run, if it has started.
    pub async fn try_row(
        &self,
        run: RunKey,
        task: &TaskId,
        try_number: u32,
    ) -> StoreResult<Option<TryRow>> {
        let row = sqlx::query(
            "SELECT task_id, try_number, state, start_date, end_date, error FROM task_try \
             WHERE run = $1 AND task_id = $2 AND try_number = $3",
        )
        .bind(run.0)
        .bind(task.as_str())
        .bind(i64::from(try_number))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(TryRow::from_row).transpose()
    }

    /// The process group recorded for a try that did not end on its own (it was running
    /// when its owner went, or was interrupted), if its command reported one.
    pub async fn try_process(
        &self,
        run: RunKey,
        task: &TaskId,
        try_number: u32,
    ) -> StoreResult<Option<ProcessGroup>> {
        let row = sqlx::query(
            "SELECT host, pgid, pgid_start FROM task_try WHERE run = $1 AND task_id = $2 \
             AND try_number = $3 AND pgid IS NOT NULL AND (end_date IS NULL OR interrupted = 1)",
        )
        .bind(run.0)
        .bind(task.as_str())
        .bind(i64::from(try_number))
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
    /// Applies a batch of the scheduler's changes in one transaction, fenced by `owner`:
    /// nothing is written unless `owner`'s lease is live and every run the batch touches is
    /// owned by it at its epoch ([`StoreError::LeaseLost`], [`StoreError::Fenced`]); each
    /// state write is also conditioned on the states it may come from, and a refused one
    /// fails the batch with [`StoreError::Transition`].
    pub async fn commit(&self, owner: &Owner, changes: &[Change]) -> StoreResult<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        let now = to_text(self.now());
        // A worker's changes are fenced by its claims (`offers::apply_worker`), not by
        // owning their runs.
        let mut runs: Vec<RunKey> = changes
            .iter()
            .filter(|c| !c.is_worker_change())
            .map(Change::run)
            .collect();
        runs.sort_unstable();
        runs.dedup();
        let mut fenced = Vec::new();
        let mut chunks = runs.chunks(500).peekable();
        if chunks.peek().is_none() && !Self::lease_is_live(&mut tx, owner, &now).await? {
            return Err(StoreError::LeaseLost);
        }
        for (i, chunk) in chunks.enumerate() {
            let keys = serde_json::to_string(&chunk.iter().map(|r| r.0).collect::<Vec<_>>())
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            // The first query also checks the lease (as the id -1, which no run has): one
            // round trip less on every commit, the hot path of a shared store.
            let lease = if i == 0 {
                " UNION ALL SELECT -1 WHERE NOT EXISTS (SELECT 1 FROM instance \
                 WHERE id = $2 AND epoch = $3 AND stopped_at IS NULL AND lease_expires_at > $4)"
            } else {
                ""
            };
            let sql = sqlx::AssertSqlSafe(format!(
                "SELECT id FROM dag_run WHERE id IN (SELECT k.value FROM {}) \
                 AND (owner IS DISTINCT FROM $2 OR owner_epoch IS DISTINCT FROM $3){lease}",
                self.backend.json_ints("$1", "k")
            ));
            let mut query = sqlx::query_scalar(sql)
                .bind(keys)
                .bind(owner.id.as_str())
                .bind(owner.epoch);
            if i == 0 {
                query = query.bind(&now);
            }
            let rows: Vec<i64> = query.fetch_all(&mut *tx).await?;
            if rows.contains(&-1) {
                return Err(StoreError::LeaseLost);
            }
            fenced.extend(rows.into_iter().map(RunKey));
        }
        if !fenced.is_empty() {
            return Err(StoreError::Fenced(fenced));
        }
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
            insert_tries(&mut tx, owner, chunk).await?;
        }
        for change in changes {
            apply(&mut tx, self.backend, owner, change).await?;
        }
        let offered = super::offers::apply_owner(&mut tx, changes).await?;
        let (remote_logs, ended) = super::offers::apply_worker(&mut tx, owner, changes).await?;
        super::logs::store_logs(&mut tx, changes).await?;
        super::logs::store_logs(&mut tx, &remote_logs).await?;
        // An offered try waits for a worker; a remote try's end waits for its run's owner.
        if offered {
            self.announce_tries(&mut tx, true).await?;
        } else if ended {
            self.announce_tries(&mut tx, false).await?;
        }
        // A finished run frees a slot of its DAG that another instance may be waiting for.
        if changes
            .iter()
            .any(|c| matches!(c, Change::FinishRun { .. }))
        {
            self.announce_work(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Clears a finished run in one transaction: resets `tasks` to "no status" with
    /// `extra_tries` more tries each (a new attempt: `first_try` moves past the tries so
    /// far) and queues the run again, unowned.
    pub async fn clear_run(&self, run: RunKey, tasks: &[(TaskId, u32)]) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        Self::clear_run_in(&mut tx, run, tasks).await?;
        self.announce_work(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Marks a task instance of a finished run `success` or `failed` (a user's override,
    /// as Airflow's "mark success/failed"), then sets the run's state from its task
    /// instances by the scheduler's rule ([`RunState::from_leaves`]) over `leaves`, the
    /// DAG's leaf tasks; `None` (the DAG is unknown) counts every task as a leaf. Runs
    /// still queued or running are refused: their owner decides their tasks' states.
    /// Returns the run's state after the mark.
    pub async fn mark_task(
        &self,
        run: RunKey,
        task: &TaskId,
        state: TaskState,
        leaves: Option<&[TaskId]>,
    ) -> StoreResult<RunState> {
        let mut tx = self.begin_write().await?;
        let now = to_text(Utc::now());
        let mark = sqlx::AssertSqlSafe(format!(
            "UPDATE task_instance SET state = $1, end_date = COALESCE(end_date, $2), \
             next_retry_at = NULL WHERE run = $3 AND task_id = $4 AND {} AND EXISTS \
             (SELECT 1 FROM dag_run r WHERE r.id = $3 AND r.state IN ('success', 'failed'))",
            TaskState::marked_sources()
        ));
        let done = sqlx::query(mark)
            .bind(state.as_str())
            .bind(&now)
            .bind(run.0)
            .bind(task.as_str())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            return Err(refused(&mut tx, run, task, state.as_str()).await?);
        }
        let rows = sqlx::query("SELECT task_id, state FROM task_instance WHERE run = $1")
            .bind(run.0)
            .fetch_all(&mut *tx)
            .await?;
        let mut leaf_states = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get("task_id")?;
            if leaves.is_some_and(|l| !l.iter().any(|t| t.as_str() == id)) {
                continue;
            }
            let state: Option<String> = row.try_get("state")?;
            leaf_states.push(state.as_deref().map(super::rows::parse).transpose()?);
        }
        let outcome = RunState::from_leaves(leaf_states);
        sqlx::query(
            "UPDATE dag_run SET state = $1, end_date = COALESCE(end_date, $2) \
             WHERE id = $3 AND state IN ('success', 'failed')",
        )
        .bind(outcome.as_str())
        .bind(&now)
        .bind(run.0)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// `clear_run` inside the caller's transaction.
    pub(super) async fn clear_run_in(
        tx: &mut Transaction<'static, Any>,
        run: RunKey,
        tasks: &[(TaskId, u32)],
    ) -> StoreResult<()> {
        let requeue = sqlx::AssertSqlSafe(format!(
            "UPDATE dag_run SET state = 'queued', start_date = NULL, end_date = NULL, owner = NULL, \
             owner_epoch = NULL, note = NULL WHERE id = $1 AND state IN ('success', 'failed') \
             AND {}",
            RunState::sql_sources(RunState::Queued)
        ));
        let done = sqlx::query(requeue).bind(run.0).execute(&mut **tx).await?;
        if done.rows_affected() != 1 {
            let (what, from) = run_state_text(tx, run).await?;
            return Err(StoreError::Transition {
                run,
                what,
                from,
                to: "queued".into(),
            });
        }
        let clear = format!(
            "UPDATE task_instance SET state = NULL, max_tries = try_number + $1, \
             first_try = try_number + 1, end_date = NULL, next_retry_at = NULL, error = NULL \
             WHERE run = $2 AND task_id = $3 AND {}",
            TaskState::sql_sources(None, |_| true)
        );
        for (task, extra_tries) in tasks {
            sqlx::query(sqlx::AssertSqlSafe(clear.clone()))
                .bind(i64::from(*extra_tries))
                .bind(run.0)
                .bind(task.as_str())
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }
}

/// `run <dag>/<run_id>` and its state, for refused-transition errors.
async fn run_state_text(
    tx: &mut Transaction<'static, Any>,
    run: RunKey,
) -> StoreResult<(String, String)> {
    let row = sqlx::query("SELECT dag_id, run_id, state FROM dag_run WHERE id = $1")
        .bind(run.0)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(match row {
        Some(r) => (
            format!(
                "run {}/{}",
                r.try_get::<String, _>("dag_id")?,
                r.try_get::<String, _>("run_id")?
            ),
            r.try_get("state")?,
        ),
        None => (format!("run {run}"), "missing".into()),
    })
}

/// The refused-transition error for a task write that matched no row.
async fn refused(
    tx: &mut Transaction<'static, Any>,
    run: RunKey,
    task: &TaskId,
    to: &str,
) -> StoreResult<StoreError> {
    let (what, _) = run_state_text(tx, run).await?;
    let row =
        sqlx::query("SELECT state, try_number FROM task_instance WHERE run = $1 AND task_id = $2")
            .bind(run.0)
            .bind(task.as_str())
            .fetch_optional(&mut **tx)
            .await?;
    let from = match row {
        Some(r) => format!(
            "{} (try {})",
            r.try_get::<Option<String>, _>("state")?
                .unwrap_or_else(|| "no status".into()),
            r.try_get::<i64, _>("try_number")?
        ),
        None => "missing".into(),
    };
    Ok(StoreError::Transition {
        run,
        what: format!("task {task} of {what}"),
        from,
        to: to.into(),
    })
}

async fn apply(
    tx: &mut Transaction<'static, Any>,
    backend: super::sql::Backend,
    owner: &Owner,
    change: &Change,
) -> StoreResult<()> {
    let to = |s: Option<TaskState>| s.map_or("no status", TaskState::as_str);
    let (run, task, target, done) = match change {
        Change::StartTry {
            run,
            task,
            try_number,
            at,
        } => {
            // A try starts exactly once: the instance must be at the previous try.
            let sql = sqlx::AssertSqlSafe(format!(
                "UPDATE task_instance SET state = 'running', try_number = $1, start_date = $2, \
                 end_date = NULL, next_retry_at = NULL, error = NULL \
                 WHERE run = $3 AND task_id = $6 AND try_number = $1 - 1 AND {} AND {}",
                TaskState::sql_sources(Some(TaskState::Running), |_| true),
                fence(3)
            ));
            let done = sqlx::query(sql)
                .bind(i64::from(*try_number))
                .bind(to_text(*at))
                .bind(run.0)
                .bind(owner.id.as_str())
                .bind(owner.epoch)
                .bind(task.as_str())
                .execute(&mut **tx)
                .await?;
            (*run, task, Some(TaskState::Running), done.rows_affected())
        }
        Change::FinishTry {
            run,
            task,
            try_number,
            state,
            at,
            error,
            next_retry_at,
            interrupted,
        } => {
            let update = format!(
                "UPDATE task_instance SET state = $1, end_date = $2, error = $3, next_retry_at = $4 \
                 WHERE run = $5 AND task_id = $8 AND try_number = $9 AND {} AND {}",
                TaskState::sql_sources(Some(*state), |f| f == Some(TaskState::Running)),
                fence(5)
            );
            let postgres = backend == super::sql::Backend::Postgres;
            let sql = if postgres {
                // The try's own row is updated in the same statement (one round trip: the
                // end of a try is on the path from one task to the next).
                format!(
                    "WITH ti AS ({update} RETURNING 1), tt AS (UPDATE task_try SET state = $1, \
                     end_date = $2, error = $3, interrupted = $10 WHERE run = $5 AND task_id = $8 \
                     AND try_number = $9 AND EXISTS (SELECT 1 FROM ti) RETURNING 1) \
                     SELECT COUNT(*) FROM ti"
                )
            } else {
                update
            };
            let query = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(state.as_str())
                .bind(to_text(*at))
                .bind(storable_opt(error.as_deref()))
                .bind(next_retry_at.map(to_text))
                .bind(run.0)
                .bind(owner.id.as_str())
                .bind(owner.epoch)
                .bind(task.as_str())
                .bind(i64::from(*try_number));
            let done = if postgres {
                let row = query
                    .bind(i64::from(*interrupted))
                    .fetch_one(&mut **tx)
                    .await?;
                u64::try_from(row.try_get::<i64, _>(0)?).unwrap_or(0)
            } else {
                let done = query.execute(&mut **tx).await?.rows_affected();
                if done == 1 {
                    finish_try_row(
                        tx,
                        *run,
                        task,
                        *try_number,
                        state.as_str(),
                        *at,
                        error.as_deref(),
                        *interrupted,
                    )
                    .await?;
                }
                done
            };
            (*run, task, Some(*state), done)
        }
        Change::AbandonTry {
            run,
            task,
            try_number,
            at,
            reason,
        } => {
            let sql = sqlx::AssertSqlSafe(format!(
                "UPDATE task_instance SET state = NULL, max_tries = max_tries + 1, end_date = $1, \
                 error = $2 WHERE run = $3 AND task_id = $6 AND try_number = $7 AND {} AND {}",
                TaskState::sql_sources(None, |f| f == Some(TaskState::Running)),
                fence(3)
            ));
            let done = sqlx::query(sql)
                .bind(to_text(*at))
                .bind(storable(reason).into_owned())
                .bind(run.0)
                .bind(owner.id.as_str())
                .bind(owner.epoch)
                .bind(task.as_str())
                .bind(i64::from(*try_number))
                .execute(&mut **tx)
                .await?;
            if done.rows_affected() == 1 {
                // The interrupted try keeps its row and log; an extra try makes up for it.
                finish_try_row(
                    tx,
                    *run,
                    task,
                    *try_number,
                    "failed",
                    *at,
                    Some(reason),
                    true,
                )
                .await?;
            }
            (*run, task, None, done.rows_affected())
        }
        Change::SetTaskState {
            run,
            task,
            state,
            at,
        } => {
            // Set without a try: never from a running try.
            let sql = sqlx::AssertSqlSafe(format!(
                "UPDATE task_instance SET state = $1, end_date = CASE WHEN $2 THEN $3 ELSE end_date END \
                 WHERE run = $4 AND task_id = $7 AND {} AND {}",
                TaskState::sql_sources(Some(*state), |f| f != Some(TaskState::Running)),
                fence(4)
            ));
            let done = sqlx::query(sql)
                .bind(state.as_str())
                .bind(state.is_finished())
                .bind(to_text(*at))
                .bind(run.0)
                .bind(owner.id.as_str())
                .bind(owner.epoch)
                .bind(task.as_str())
                .execute(&mut **tx)
                .await?;
            (*run, task, Some(*state), done.rows_affected())
        }
        // Inserted in bulk by `commit`; offers are written by `offers.rs`.
        Change::Logs { .. }
        | Change::OfferTry { .. }
        | Change::DropOffer { .. }
        | Change::RemoteLogs { .. }
        | Change::RemoteProcess { .. }
        | Change::EndOffer { .. } => return Ok(()),
        Change::TryProcess {
            run,
            task,
            try_number,
            group,
        } => {
            // On the try's row; the batch's runs were checked against the fence above.
            set_try_process(tx, *run, task, *try_number, group).await?;
            return Ok(());
        }
        Change::FinishRun {
            run,
            state,
            at,
            note,
        } => {
            let sql = sqlx::AssertSqlSafe(format!(
                "UPDATE dag_run SET state = $1, end_date = $2, note = $3 WHERE id = $4 AND {} AND {}",
                RunState::sql_sources(*state),
                fence(4)
            ));
            let done = sqlx::query(sql)
                .bind(state.as_str())
                .bind(to_text(*at))
                .bind(storable_opt(note.as_deref()))
                .bind(run.0)
                .bind(owner.id.as_str())
                .bind(owner.epoch)
                .execute(&mut **tx)
                .await?;
            if done.rows_affected() != 1 {
                let (what, from) = run_state_text(tx, *run).await?;
                return Err(StoreError::Transition {
                    run: *run,
                    what,
                    from,
                    to: state.as_str().into(),
                });
            }
            return Ok(());
        }
    };
    if done == 1 {
        Ok(())
    } else {
        Err(refused(tx, run, task, to(target)).await?)
    }
}

/// Records the process group a try's command runs in, on the try's row.
pub(super) async fn set_try_process(
    tx: &mut Transaction<'static, Any>,
    run: RunKey,
    task: &TaskId,
    try_number: u32,
    group: &ProcessGroup,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE task_try SET host = $1, pgid = $2, pgid_start = $3 \
         WHERE run = $4 AND task_id = $5 AND try_number = $6",
    )
    .bind(&group.host)
    .bind(group.pgid)
    .bind(i64::try_from(group.start_ticks).unwrap_or(i64::MAX))
    .bind(run.0)
    .bind(task.as_str())
    .bind(i64::from(try_number))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_tries(
    tx: &mut Transaction<'static, Any>,
    owner: &Owner,
    tries: &[(RunKey, &TaskId, u32, chrono::DateTime<Utc>)],
) -> StoreResult<()> {
    use super::sql::row;
    // A duplicate start is refused by its state-checked UPDATE in the same batch, which
    // names the states; ignoring the row here keeps the error that says why.
    let q = super::sql::insert_values(
        "INSERT INTO task_try (run, task_id, try_number, state, start_date, instance)",
        tries,
        " ON CONFLICT DO NOTHING",
        |q, (run, task, try_number, at)| {
            row(q, true, run.0)?;
            row(q, false, task.as_str().to_owned())?;
            row(q, false, i64::from(*try_number))?;
            row(q, false, "running")?;
            row(q, false, to_text(*at))?;
            row(q, false, owner.id.as_str().to_owned())
        },
    )?;
    let (sql, args) = q.finish();
    sqlx::query_with(sql, args).execute(&mut **tx).await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn finish_try_row(
    tx: &mut Transaction<'static, Any>,
    run: RunKey,
    task: &TaskId,
    try_number: u32,
    state: &str,
    at: chrono::DateTime<Utc>,
    error: Option<&str>,
    interrupted: bool,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE task_try SET state = $1, end_date = $2, error = $3, interrupted = $4 \
         WHERE run = $5 AND task_id = $6 AND try_number = $7",
    )
    .bind(state)
    .bind(to_text(at))
    .bind(storable_opt(error))
    .bind(i64::from(interrupted))
    .bind(run.0)
    .bind(task.as_str())
    .bind(i64::from(try_number))
    .execute(&mut **tx)
    .await?;
    Ok(())
}
