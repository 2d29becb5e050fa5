//! DAG runs: creation (with Airflow-style run ids and their DAG version), claiming and
//! adoption under a lease, lookups, and the child runs of `trigger_dag` tries.

use std::collections::HashMap;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use sqlx::{Any, Row, Transaction};

use super::instances::unowned;
use super::rows::{NewRun, RunRow};
use super::sql::{storable, storable_opt};
use super::{Owner, Store, StoreError, StoreResult, to_text};
use crate::ids::{DagId, RunKey, TaskId};
use crate::state::{RunState, RunType};

pub(super) const RUN_COLUMNS: &str = "SELECT id, dag_id, run_id, run_type, state, logical_date, \
    data_interval_start, data_interval_end, conf, queued_at, start_date, end_date, parent_run, \
    parent_task_id, parent_try, owner, owner_epoch, dag_version, uid, note, user_note FROM dag_run";

/// A run id and note chosen by a client (the REST API).
struct Named<'a> {
    run_id: &'a str,
    user_note: Option<&'a str>,
}

fn run_id_for(run_type: RunType, logical: DateTime<Utc>) -> String {
    let precision = match run_type {
        RunType::Scheduled | RunType::Backfill => SecondsFormat::Secs,
        RunType::Manual | RunType::Triggered => SecondsFormat::Micros,
    };
    format!("{run_type}__{}", logical.to_rfc3339_opts(precision, false))
}

impl Store {
    /// Creates a queued run (and stores its DAG version if new). Manual and triggered runs
    /// get a fresh logical date if the requested one is taken; scheduled and backfill runs
    /// are created at most once per logical date, whichever of the two types created it
    /// (returns `None` if one exists; the store's unique index enforces it).
    pub async fn insert_run(&self, new: &NewRun) -> StoreResult<Option<RunRow>> {
        self.insert_run_fenced(new, None).await
    }

    /// Creates a queued manual run with the run id a client chose and its note; `None` if
    /// the DAG already has a run with that id.
    pub async fn insert_named_run(
        &self,
        new: &NewRun,
        run_id: &str,
        note: Option<&str>,
    ) -> StoreResult<Option<RunRow>> {
        let mut tx = self.begin_write().await?;
        if let Some(v) = &new.version {
            Self::insert_version(&mut tx, v).await?;
        }
        let uid = super::new_uid();
        let named = Named {
            run_id,
            user_note: note,
        };
        let inserted = Self::insert_run_row_named(
            &mut tx,
            new,
            new.interval_start,
            new.interval_end,
            &uid,
            Some(named),
        )
        .await?;
        let Some(id) = inserted else {
            return Ok(None);
        };
        self.announce_work(&mut tx).await?;
        tx.commit().await?;
        self.run(RunKey(id)).await
    }

    /// Sets (or, with `None`, removes) the note a user wrote on a run.
    pub async fn set_run_note(&self, run: RunKey, note: Option<&str>) -> StoreResult<()> {
        sqlx::query("UPDATE dag_run SET user_note = $1 WHERE id = $2")
            .bind(storable_opt(note))
            .bind(run.0)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Sets a finished run's state to `success` or `failed` (its task instances keep
    /// theirs); `false` when the run is not finished (any more).
    pub async fn set_finished_run_state(&self, run: RunKey, state: RunState) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE dag_run SET state = $1 WHERE id = $2 AND state IN ('success', 'failed')",
        )
        .bind(state.as_str())
        .bind(run.0)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Creates the child run of a `trigger_dag` try, fenced like the scheduler's other
    /// writes: only while `owner` holds a live lease and owns the parent run.
    pub async fn insert_child_run(
        &self,
        new: &NewRun,
        owner: &Owner,
    ) -> StoreResult<Option<RunRow>> {
        self.insert_run_fenced(new, Some(owner)).await
    }

    async fn insert_run_fenced(
        &self,
        new: &NewRun,
        fence: Option<&Owner>,
    ) -> StoreResult<Option<RunRow>> {
        let unique_per_interval = matches!(new.run_type, RunType::Scheduled | RunType::Backfill);
        let mut start = new.interval_start;
        let mut end = new.interval_end;
        let mut tx = self.begin_write().await?;
        if let (Some(owner), Some(parent)) = (fence, &new.parent) {
            if !Self::lease_is_live(&mut tx, owner, &to_text(self.now())).await? {
                return Err(StoreError::LeaseLost);
            }
            let owned: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM dag_run WHERE id = $1 AND owner = $2 AND owner_epoch = $3",
            )
            .bind(parent.run.0)
            .bind(owner.id.as_str())
            .bind(owner.epoch)
            .fetch_optional(&mut *tx)
            .await?;
            if owned.is_none() {
                return Err(StoreError::Fenced(vec![parent.run]));
            }
        }
        if let Some(v) = &new.version {
            Self::insert_version(&mut tx, v).await?;
        }
        let uid = super::new_uid();
        for _ in 0..1000 {
            let inserted = Self::insert_run_row(&mut tx, new, start, end, &uid).await?;
            match inserted {
                Some(id) => {
                    self.announce_work(&mut tx).await?;
                    tx.commit().await?;
                    return self.run(RunKey(id)).await;
                }
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

    /// One `dag_run` row at `start`/`end`; `None` if its run id or (for scheduled and
    /// backfill runs) its logical date is taken.
    async fn insert_run_row(
        tx: &mut Transaction<'static, Any>,
        new: &NewRun,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        uid: &str,
    ) -> StoreResult<Option<i64>> {
        Self::insert_run_row_named(tx, new, start, end, uid, None).await
    }

    /// [`Self::insert_run_row`] with the run id and note a client chose.
    async fn insert_run_row_named(
        tx: &mut Transaction<'static, Any>,
        new: &NewRun,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        uid: &str,
        named: Option<Named<'_>>,
    ) -> StoreResult<Option<i64>> {
        let run_id = match &named {
            Some(n) => n.run_id.to_string(),
            None => run_id_for(new.run_type, start),
        };
        // No conflict target: a taken run id and a taken logical date (the partial unique
        // index of migration 5) both mean "exists".
        let inserted = sqlx::query_scalar(
            "INSERT INTO dag_run (dag_id, run_id, run_type, state, logical_date, \
             data_interval_start, data_interval_end, conf, queued_at, parent_run, \
             parent_task_id, parent_try, owner, owner_epoch, dag_version, uid, user_note) \
             VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
             ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(new.dag_id.as_str())
        .bind(&run_id)
        .bind(new.run_type.as_str())
        .bind(to_text(start))
        .bind(to_text(start))
        .bind(to_text(end))
        .bind(new.conf.to_string())
        .bind(to_text(Utc::now()))
        .bind(new.parent.as_ref().map(|p| p.run.0))
        .bind(new.parent.as_ref().map(|p| p.task.as_str()))
        .bind(new.parent.as_ref().map(|p| i64::from(p.try_number)))
        .bind(new.owner.as_ref().map(|o| o.id.as_str()))
        .bind(new.owner.as_ref().map(|o| o.epoch))
        .bind(new.version.as_ref().map(|v| v.hash.as_str()))
        .bind(uid)
        .bind(storable_opt(named.and_then(|n| n.user_note)))
        .fetch_optional(&mut **tx)
        .await?;
        Ok(inserted)
    }

    /// Creates a backfill in one transaction: queues `runs` (backfill runs; one whose
    /// logical date was taken since the caller looked is left out) and clears `reprocess`
    /// (finished runs, with each task's extra tries) so they run again. Returns, per entry
    /// of `runs`, the key of the run created.
    pub async fn create_backfill(
        &self,
        runs: &[NewRun],
        reprocess: &[(RunKey, Vec<(TaskId, u32)>)],
    ) -> StoreResult<Vec<Option<RunKey>>> {
        let mut tx = self.begin_write().await?;
        let mut created = Vec::with_capacity(runs.len());
        for (i, new) in runs.iter().enumerate() {
            if i == 0
                && let Some(v) = &new.version
            {
                Self::insert_version(&mut tx, v).await?;
            }
            let uid = super::new_uid();
            let id = Self::insert_run_row(&mut tx, new, new.interval_start, new.interval_end, &uid)
                .await?;
            created.push(id.map(RunKey));
        }
        for (run, tasks) in reprocess {
            Self::clear_run_in(&mut tx, *run, tasks).await?;
        }
        self.announce_work(&mut tx).await?;
        tx.commit().await?;
        Ok(created)
    }

    /// The scheduled and backfill runs of a DAG with a logical date in `[from, to]`, the
    /// runs a backfill of that range finds in place.
    pub async fn interval_runs(
        &self,
        dag: &DagId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<RunRow>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "{RUN_COLUMNS} WHERE dag_id = $1 AND run_type IN ('scheduled', 'backfill') \
             AND legacy_duplicate = 0 AND logical_date >= $2 AND logical_date <= $3 \
             ORDER BY logical_date"
        ));
        let rows = sqlx::query(sql)
            .bind(dag.as_str())
            .bind(to_text(from))
            .bind(to_text(to))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(RunRow::from_row).collect()
    }

    /// The DAGs of a run and of its ancestors through `trigger_dag` (`parent_run`), oldest
    /// ancestor first, each with its run id.
    pub async fn ancestry(&self, run: RunKey) -> StoreResult<Vec<(DagId, String)>> {
        // The depth bound guards the recursion against a corrupt parent link loop.
        let rows: Vec<(String, String)> = sqlx::query_as(
            "WITH RECURSIVE chain (id, dag_id, run_id, parent_run, depth) AS ( \
                 SELECT id, dag_id, run_id, parent_run, 0 FROM dag_run WHERE id = $1 \
                 UNION ALL \
                 SELECT r.id, r.dag_id, r.run_id, r.parent_run, chain.depth + 1 \
                 FROM dag_run r JOIN chain ON r.id = chain.parent_run WHERE chain.depth < 10000) \
             SELECT dag_id, run_id FROM chain ORDER BY depth DESC",
        )
        .bind(run.0)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(dag, run_id)| (DagId::new(dag), run_id))
            .collect())
    }

    /// The child run a `trigger_dag` task created in an interrupted earlier try of the
    /// current attempt, which a later try takes over instead of triggering again: the child
    /// of the newest try in `first_try..try_number` such that every try from it up to this
    /// one was interrupted (none of them took the child's result).
    pub async fn child_to_resume(
        &self,
        parent: RunKey,
        task: &TaskId,
        first_try: u32,
        try_number: u32,
    ) -> StoreResult<Option<RunRow>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "{RUN_COLUMNS} WHERE parent_run = $1 AND parent_task_id = $2 \
             AND parent_try >= $3 AND parent_try < $4 \
             AND NOT EXISTS (SELECT 1 FROM task_try t WHERE t.run = $1 AND t.task_id = $2 \
                 AND t.try_number >= dag_run.parent_try AND t.try_number < $4 \
                 AND t.interrupted = 0) \
             ORDER BY parent_try DESC LIMIT 1"
        ));
        let row = sqlx::query(sql)
            .bind(parent.0)
            .bind(task.as_str())
            .bind(i64::from(first_try))
            .bind(i64::from(try_number))
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(RunRow::from_row).transpose()
    }

    /// The child run created by one try of a `trigger_dag` task, if any.
    pub async fn child_of_try(
        &self,
        parent: RunKey,
        task: &TaskId,
        try_number: u32,
    ) -> StoreResult<Option<RunRow>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "{RUN_COLUMNS} WHERE parent_run = $1 AND parent_task_id = $2 AND parent_try = $3"
        ));
        let row = sqlx::query(sql)
            .bind(parent.0)
            .bind(task.as_str())
            .bind(i64::from(try_number))
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(RunRow::from_row).transpose()
    }

    /// One run by key.
    pub async fn run(&self, key: RunKey) -> StoreResult<Option<RunRow>> {
        let sql = sqlx::AssertSqlSafe(format!("{RUN_COLUMNS} WHERE id = $1"));
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
        // Two statements rather than `(?2 IS NULL OR dag_id = ?2)`, which SQLite cannot
        // plan on an index: each uses one (the unique (dag_id, run_id) or run_id's own).
        let rows = match dag {
            Some(dag) => {
                let sql =
                    sqlx::AssertSqlSafe(format!("{RUN_COLUMNS} WHERE dag_id = $1 AND run_id = $2"));
                sqlx::query(sql)
                    .bind(dag.as_str())
                    .bind(run_id)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                let sql =
                    sqlx::AssertSqlSafe(format!("{RUN_COLUMNS} WHERE run_id = $1 ORDER BY id"));
                sqlx::query(sql).bind(run_id).fetch_all(&self.pool).await?
            }
        };
        rows.iter().map(RunRow::from_row).collect()
    }

    /// Child runs created by `trigger_dag` tasks of `parent`.
    pub async fn child_runs(&self, parent: RunKey) -> StoreResult<Vec<RunRow>> {
        let sql = sqlx::AssertSqlSafe(format!("{RUN_COLUMNS} WHERE parent_run = $1 ORDER BY id"));
        let rows = sqlx::query(sql)
            .bind(parent.0)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(RunRow::from_row).collect()
    }

    /// Queued runs `owner` may claim: unreserved, reserved by it, or reserved by an
    /// instance whose lease lapsed. Oldest first.
    pub async fn claimable_queued(&self, owner: &Owner) -> StoreResult<Vec<RunRow>> {
        self.takeable(RunState::Queued, owner).await
    }

    /// Running runs whose owner holds no live lease (crashed, stopped, frozen past its
    /// lease), plus those `owner` holds itself (it re-adopts runs it had to let go of).
    pub async fn adoptable_running(&self, owner: &Owner) -> StoreResult<Vec<RunRow>> {
        self.takeable(RunState::Running, owner).await
    }

    /// Runs in `state` held by `owner` at its epoch or by no live lease, oldest first.
    async fn takeable(&self, state: RunState, owner: &Owner) -> StoreResult<Vec<RunRow>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "{RUN_COLUMNS} WHERE state = $4 AND ((owner = $1 AND owner_epoch = $2) OR {}) \
             ORDER BY queued_at, id",
            unowned("$3")
        ));
        let rows = sqlx::query(sql)
            .bind(owner.id.as_str())
            .bind(owner.epoch)
            .bind(to_text(self.now()))
            .bind(state.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(RunRow::from_row).collect()
    }

    /// Takes a run for `owner`: a queued run becomes running, a running run changes owner
    /// (adoption) — only if it is unowned, reserved by `owner`, or its owner's lease has
    /// lapsed. Creates the run's missing task instances. False if someone else holds it.
    pub async fn claim_run(
        &self,
        key: RunKey,
        owner: &Owner,
        tasks: &[(TaskId, u32)],
    ) -> StoreResult<bool> {
        self.claim_run_within(key, owner, tasks, None).await
    }

    /// [`Store::claim_run`], and a queued run starts only while fewer than `limit` runs
    /// of its DAG (in its pool) are running: counted in the claiming transaction, which
    /// holds the write lock, so instances claiming at once cannot together exceed it.
    pub async fn claim_run_within(
        &self,
        key: RunKey,
        owner: &Owner,
        tasks: &[(TaskId, u32)],
        limit: Option<u32>,
    ) -> StoreResult<bool> {
        let now = to_text(self.now());
        let mut tx = self.begin_write().await?;
        // Backfill runs have a pool of their own (as in `running_run_counts`).
        let within = if limit.is_some() {
            "AND (state = 'running' OR (SELECT COUNT(*) FROM dag_run c \
             WHERE c.dag_id = dag_run.dag_id AND c.state = 'running' \
             AND (c.run_type = 'backfill') = (dag_run.run_type = 'backfill')) < $5)"
        } else {
            ""
        };
        let sql = sqlx::AssertSqlSafe(format!(
            "UPDATE dag_run SET state = 'running', owner = $1, owner_epoch = $2, \
             start_date = COALESCE(start_date, $3) \
             WHERE id = $4 AND ({} OR state = 'running') \
             AND ((owner = $1 AND owner_epoch = $2) OR {}) {within} \
             AND EXISTS (SELECT 1 FROM instance WHERE id = $1 AND epoch = $2 \
             AND stopped_at IS NULL AND lease_expires_at > $3)",
            // A process whose lease lapsed takes nothing on until it holds a new one
            // (checked in the same statement: one round trip less per claim).
            // Claiming starts a queued run; adopting a running one only changes its owner.
            RunState::sql_sources(RunState::Running),
            unowned("$3")
        ));
        let mut query = sqlx::query(sql)
            .bind(owner.id.as_str())
            .bind(owner.epoch)
            .bind(&now)
            .bind(key.0);
        if let Some(max) = limit {
            query = query.bind(i64::from(max));
        }
        let claimed = query.execute(&mut *tx).await?.rows_affected() == 1;
        if claimed {
            for chunk in tasks.chunks(300) {
                let q = super::sql::insert_values(
                    "INSERT INTO task_instance (run, task_id, max_tries)",
                    chunk,
                    " ON CONFLICT DO NOTHING",
                    |q, (task, max_tries)| {
                        super::sql::row(q, true, key.0)?;
                        super::sql::row(q, false, task.as_str().to_owned())?;
                        super::sql::row(q, false, i64::from(*max_tries))
                    },
                )?;
                let (sql, args) = q.finish();
                sqlx::query_with(sql, args).execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// Fails a run this instance may take (adoptable or its own) that cannot execute, e.g.
    /// because its DAG version cannot be built. False if another instance holds it.
    pub async fn fail_unrunnable(
        &self,
        key: RunKey,
        owner: &Owner,
        note: &str,
    ) -> StoreResult<bool> {
        let now = to_text(self.now());
        let sql = sqlx::AssertSqlSafe(format!(
            "UPDATE dag_run SET state = 'failed', end_date = $3, note = $4, owner = $1, owner_epoch = $2 \
             WHERE id = $5 AND {} AND ((owner = $1 AND owner_epoch = $2) OR {})",
            RunState::sql_sources(RunState::Failed),
            unowned("$3")
        ));
        let done = sqlx::query(sql)
            .bind(owner.id.as_str())
            .bind(owner.epoch)
            .bind(&now)
            .bind(storable(note).into_owned())
            .bind(key.0)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// End of the latest scheduled interval of a DAG (where its timetable resumes).
    pub async fn last_scheduled_end(&self, dag: &DagId) -> StoreResult<Option<DateTime<Utc>>> {
        let end: Option<String> = sqlx::query_scalar(
            "SELECT MAX(data_interval_end) FROM dag_run WHERE dag_id = $1 AND run_type = 'scheduled'",
        )
        .bind(dag.as_str())
        .fetch_one(&self.pool)
        .await?;
        end.as_deref().map(super::from_text).transpose()
    }

    /// Number of running runs per DAG and pool, whoever executes them (a run whose owner
    /// crashed still counts until it is adopted and finishes). The pool is `true` for
    /// backfill runs: as in Airflow 3, their concurrency is separate from the schedule's.
    pub async fn running_run_counts(&self) -> StoreResult<HashMap<(DagId, bool), u32>> {
        self.run_counts("state = 'running'").await
    }

    /// Number of queued or running runs per DAG and pool (see [`Store::running_run_counts`]).
    pub async fn active_run_counts(&self) -> StoreResult<HashMap<(DagId, bool), u32>> {
        self.run_counts("state IN ('queued', 'running')").await
    }

    /// Number of queued and of running runs per DAG (read through the state index, so it
    /// costs the active runs, not the history).
    pub async fn active_run_states(&self) -> StoreResult<Vec<(DagId, RunState, u64)>> {
        let rows = sqlx::query(
            "SELECT dag_id, state, COUNT(*) AS n FROM dag_run \
             WHERE state IN ('queued', 'running') GROUP BY dag_id, state",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    DagId::new(r.try_get::<String, _>("dag_id")?),
                    super::rows::parse(&r.try_get::<String, _>("state")?)?,
                    r.try_get::<i64, _>("n")?.unsigned_abs(),
                ))
            })
            .collect()
    }

    async fn run_counts(
        &self,
        condition: &'static str,
    ) -> StoreResult<HashMap<(DagId, bool), u32>> {
        let sql = format!(
            "SELECT dag_id, CASE WHEN run_type = 'backfill' THEN 1 ELSE 0 END AS backfill, \
             COUNT(*) AS n FROM dag_run WHERE {condition} GROUP BY dag_id, backfill"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    (
                        DagId::new(r.try_get::<String, _>("dag_id")?),
                        r.try_get::<i64, _>("backfill")? != 0,
                    ),
                    u32::try_from(r.try_get::<i64, _>("n")?).unwrap_or(u32::MAX),
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
