//! DAG runs: creation (with Airflow-style run ids), claiming by a scheduler, lookups, clear.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use sqlx::Row;

use super::rows::{NewRun, RunRow};
use super::{Store, StoreError, StoreResult, to_text};
use crate::ids::{DagId, RunKey, TaskId};
use crate::state::{RunState, RunType};

const RUN_COLUMNS: &str = "SELECT id, dag_id, run_id, run_type, state, logical_date, \
    data_interval_start, data_interval_end, conf, queued_at, start_date, end_date, parent_run, \
    parent_task_id, owner_pid, note FROM dag_run";

fn run_id_for(run_type: RunType, logical: DateTime<Utc>) -> String {
    let precision = match run_type {
        RunType::Scheduled | RunType::Backfill => SecondsFormat::Secs,
        RunType::Manual | RunType::Triggered => SecondsFormat::Micros,
    };
    format!("{run_type}__{}", logical.to_rfc3339_opts(precision, false))
}

impl Store {
    /// Creates a queued run. Manual and triggered runs get a fresh logical date if the
    /// requested one is taken; scheduled and backfill runs are created at most once per
    /// interval (returns `None` if it already exists).
    pub async fn insert_run(&self, new: &NewRun) -> StoreResult<Option<RunRow>> {
        let unique_per_interval = matches!(new.run_type, RunType::Scheduled | RunType::Backfill);
        let mut start = new.interval_start;
        let mut end = new.interval_end;
        for _ in 0..1000 {
            let run_id = run_id_for(new.run_type, start);
            let inserted: Option<i64> = sqlx::query_scalar(
                "INSERT INTO dag_run (dag_id, run_id, run_type, state, logical_date, \
                 data_interval_start, data_interval_end, conf, queued_at, parent_run, \
                 parent_task_id, owner_pid) VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (dag_id, run_id) DO NOTHING RETURNING id",
            )
            .bind(new.dag_id.as_str())
            .bind(&run_id)
            .bind(new.run_type.as_str())
            .bind(to_text(start))
            .bind(to_text(start))
            .bind(to_text(end))
            .bind(new.conf.to_string())
            .bind(to_text(Utc::now()))
            .bind(new.parent.as_ref().map(|(k, _)| k.0))
            .bind(new.parent.as_ref().map(|(_, t)| t.as_str()))
            .bind(new.owner_pid)
            .fetch_optional(&self.pool)
            .await?;
            match inserted {
                Some(id) => return self.run(RunKey(id)).await,
                None if unique_per_interval => return Ok(None),
                // Two manual runs in the same microsecond: take the next one.
                None => {
                    start += Duration::microseconds(1);
                    end += Duration::microseconds(1);
                }
            }
        }
        Err(StoreError::Conflict(format!(
            "cannot find a free run id for {}",
            new.dag_id
        )))
    }

    /// One run by key.
    pub async fn run(&self, key: RunKey) -> StoreResult<Option<RunRow>> {
        let sql = sqlx::AssertSqlSafe(format!("{RUN_COLUMNS} WHERE id = ?"));
        let row = sqlx::query(sql)
            .bind(key.0)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(RunRow::from_row).transpose()
    }

    /// Runs with this run id (optionally of one DAG).
    pub async fn runs_by_run_id(
        &self,
        run_id: &str,
        dag: Option<&DagId>,
    ) -> StoreResult<Vec<RunRow>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "{RUN_COLUMNS} WHERE run_id = ?1 AND (?2 IS NULL OR dag_id = ?2) ORDER BY id"
        ));
        let rows = sqlx::query(sql)
            .bind(run_id)
            .bind(dag.map(DagId::as_str))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(RunRow::from_row).collect()
    }

    /// The newest runs (optionally of one DAG and/or in one state), newest first.
    pub async fn list_runs(
        &self,
        dag: Option<&DagId>,
        state: Option<RunState>,
        limit: u32,
    ) -> StoreResult<Vec<RunRow>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "{RUN_COLUMNS} WHERE (?1 IS NULL OR dag_id = ?1) AND (?2 IS NULL OR state = ?2) \
             ORDER BY id DESC LIMIT ?3"
        ));
        let rows = sqlx::query(sql)
            .bind(dag.map(DagId::as_str))
            .bind(state.map(RunState::as_str))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(RunRow::from_row).collect()
    }

    /// Runs in a state, oldest first.
    pub async fn runs_in_state(&self, state: RunState) -> StoreResult<Vec<RunRow>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "{RUN_COLUMNS} WHERE state = ? ORDER BY queued_at, id"
        ));
        let rows = sqlx::query(sql)
            .bind(state.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(RunRow::from_row).collect()
    }

    /// Child runs created by `trigger_dag` tasks of `parent`.
    pub async fn child_runs(&self, parent: RunKey) -> StoreResult<Vec<RunRow>> {
        let sql = sqlx::AssertSqlSafe(format!("{RUN_COLUMNS} WHERE parent_run = ? ORDER BY id"));
        let rows = sqlx::query(sql)
            .bind(parent.0)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(RunRow::from_row).collect()
    }

    /// Claims a queued run for process `pid` (or takes over a running run from a dead
    /// `previous_owner`), creating its missing task instances. False if someone else won.
    pub async fn claim_run(
        &self,
        key: RunKey,
        pid: i64,
        previous_owner: Option<i64>,
        tasks: &[(TaskId, u32)],
    ) -> StoreResult<bool> {
        let now = to_text(Utc::now());
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let claimed = match previous_owner {
            None => sqlx::query(
                "UPDATE dag_run SET state = 'running', owner_pid = ?1, \
                 start_date = COALESCE(start_date, ?2) \
                 WHERE id = ?3 AND state = 'queued' AND (owner_pid IS NULL OR owner_pid = ?1)",
            )
            .bind(pid)
            .bind(&now)
            .bind(key.0),
            Some(old) => sqlx::query(
                "UPDATE dag_run SET owner_pid = ?1 WHERE id = ?3 AND state IN ('running', 'queued') \
                 AND owner_pid = ?2",
            )
            .bind(pid)
            .bind(old)
            .bind(key.0),
        }
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if claimed {
            for chunk in tasks.chunks(300) {
                let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                    "INSERT OR IGNORE INTO task_instance (run, task_id, max_tries) ",
                );
                q.push_values(chunk, |mut row, (task, max_tries)| {
                    row.push_bind(key.0)
                        .push_bind(task.as_str())
                        .push_bind(*max_tries);
                });
                q.build().execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// Releases a queued run reserved by a process that is gone, so any scheduler may take it.
    pub async fn release_run(&self, key: RunKey, owner: i64) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE dag_run SET owner_pid = NULL WHERE id = ? AND state = 'queued' AND owner_pid = ?")
            .bind(key.0)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Queues a finished run again after [`Store::clear_tasks`] reset some of its tasks.
    pub async fn requeue_run(&self, key: RunKey) -> StoreResult<()> {
        sqlx::query(
            "UPDATE dag_run SET state = 'queued', start_date = NULL, end_date = NULL, owner_pid = NULL, note = NULL \
             WHERE id = ?",
        )
        .bind(key.0)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// End of the latest scheduled interval of a DAG (where its timetable resumes).
    pub async fn last_scheduled_end(&self, dag: &DagId) -> StoreResult<Option<DateTime<Utc>>> {
        let end: Option<String> = sqlx::query_scalar(
            "SELECT MAX(data_interval_end) FROM dag_run WHERE dag_id = ? AND run_type = 'scheduled'",
        )
        .bind(dag.as_str())
        .fetch_one(&self.pool)
        .await?;
        end.as_deref().map(super::from_text).transpose()
    }

    /// Number of queued or running runs per DAG.
    pub async fn active_run_counts(&self) -> StoreResult<std::collections::HashMap<DagId, u32>> {
        let rows = sqlx::query(
            "SELECT dag_id, COUNT(*) AS n FROM dag_run WHERE state IN ('queued', 'running') GROUP BY dag_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    DagId::new(r.try_get::<String, _>("dag_id")?),
                    r.try_get::<u32, _>("n")?,
                ))
            })
            .collect()
    }
}
