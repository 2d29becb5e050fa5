//! `db clean`: deletes finished runs older than a date with their task instances, tries and
//! logs (and, once those tables exist, unused DAG versions and stopped instances), in short
//! transactions so a scheduler's commits and heartbeats never wait behind one long delete.
//!
//! Runs go by family: a run and the runs its `trigger_dag` tasks created (recursively)
//! are deleted together, and only when every one of them is finished (success or failed)
//! and ended before the date; otherwise the whole family stays. So no run loses its
//! parent (`dag_run.parent_run`) and a parent never loses the children it lists.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::sql::Backend;
use super::{Store, StoreResult, to_text};

/// How much one transaction of a clean takes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CleanBatch {
    /// Top-level runs (each with its triggered runs) examined per batch.
    pub runs: u32,
    /// Log rows deleted per transaction.
    pub log_rows: u32,
}

impl Default for CleanBatch {
    fn default() -> Self {
        Self {
            runs: 500,
            log_rows: 20_000,
        }
    }
}

/// Rows deleted (or, in a dry run, that would be deleted) per table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CleanCounts {
    /// Runs.
    pub dag_run: u64,
    /// Task instances of those runs.
    pub task_instance: u64,
    /// Tries of those runs.
    pub task_try: u64,
    /// Log lines of those tries.
    pub task_log: u64,
    /// DAG versions no run uses any more.
    pub dag_version: u64,
    /// Scheduler instances stopped before the date.
    pub instance: u64,
}

impl std::ops::AddAssign for CleanCounts {
    fn add_assign(&mut self, o: Self) {
        self.dag_run += o.dag_run;
        self.task_instance += o.task_instance;
        self.task_try += o.task_try;
        self.task_log += o.task_log;
        self.dag_version += o.dag_version;
        self.instance += o.instance;
    }
}

/// The ids (a JSON array) of the runs of the families rooted at `$1` (a JSON array of run
/// ids) in which every run is finished and ended (or, never started, was queued) before `$2`.
fn deletable_runs(backend: Backend) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(format!(
        "WITH RECURSIVE family (id, root) AS ( \
            SELECT id, id FROM dag_run WHERE id IN (SELECT k.value FROM {}) \
            UNION ALL \
            SELECT c.id, f.root FROM dag_run c JOIN family f ON c.parent_run = f.id \
        ) \
        SELECT {} FROM family f WHERE f.root NOT IN ( \
            SELECT k.root FROM family k JOIN dag_run r ON r.id = k.id \
            WHERE NOT (r.state IN ('success', 'failed') \
            AND COALESCE(r.end_date, r.queued_at) < $2))",
        backend.json_ints("$1", "k"),
        backend.json_int_array("f.id")
    ))
}

/// `column IN` the run keys of the JSON array bound at `$1`.
fn in_runs(backend: Backend, column: &str) -> String {
    format!(
        "{column} IN (SELECT k.value FROM {})",
        backend.json_ints("$1", "k")
    )
}

impl Store {
    /// Deletes the families of finished runs that ended before `before`, with their task
    /// instances, tries and logs; queued and running runs are never touched. With
    /// `dry_run`, counts what would go and deletes nothing.
    pub async fn clean(
        &self,
        before: DateTime<Utc>,
        dry_run: bool,
        batch: CleanBatch,
    ) -> StoreResult<CleanCounts> {
        let before = to_text(before);
        let mut counts = CleanCounts::default();
        let mut after = 0;
        // Walk top-level candidates by id; each family is checked and deleted under the
        // write lock of its own short transactions, so a run cleared meanwhile is kept.
        loop {
            let roots: Vec<i64> = sqlx::query_scalar(
                "SELECT id FROM dag_run WHERE id > $1 AND parent_run IS NULL \
                 AND state IN ('success', 'failed') AND COALESCE(end_date, queued_at) < $2 \
                 ORDER BY id LIMIT $3",
            )
            .bind(after)
            .bind(&before)
            .bind(i64::from(batch.runs.max(1)))
            .fetch_all(&self.pool)
            .await?;
            let Some(&last) = roots.last() else { break };
            after = last;
            let roots = ids_json(&roots);
            counts += if dry_run {
                self.count_families(&roots, &before).await?
            } else {
                self.delete_families(&roots, &before, batch.log_rows.max(1))
                    .await?
            };
        }
        counts.dag_version = self.clean_unused_dag_versions(&before, dry_run).await?;
        counts.instance = self.clean_stopped_instances(&before, dry_run).await?;
        Ok(counts)
    }

    async fn count_families(&self, roots: &str, before: &str) -> StoreResult<CleanCounts> {
        let runs: String = sqlx::query_scalar(deletable_runs(self.backend))
            .bind(roots)
            .bind(before)
            .fetch_one(&self.pool)
            .await?;
        Ok(CleanCounts {
            dag_run: self.count_rows("dag_run", "id", &runs).await?,
            task_instance: self.count_rows("task_instance", "run", &runs).await?,
            task_try: self.count_rows("task_try", "run", &runs).await?,
            task_log: self.count_rows("task_log", "run", &runs).await?,
            ..CleanCounts::default()
        })
    }

    /// Rows of `table` whose `column` is one of `runs` (a JSON array of run ids).
    async fn count_rows(&self, table: &str, column: &str, runs: &str) -> StoreResult<u64> {
        let sql = format!(
            "SELECT COUNT(*) FROM {table} WHERE {}",
            in_runs(self.backend, column)
        );
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(runs)
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Deletes the deletable families among `roots`: their log rows `log_rows` at a time, one
    /// transaction each, then their tries, task instances and runs in a last transaction.
    async fn delete_families(
        &self,
        roots: &str,
        before: &str,
        log_rows: u32,
    ) -> StoreResult<CleanCounts> {
        let mut counts = CleanCounts::default();
        loop {
            let mut tx = self.begin_write().await?;
            let runs: String = sqlx::query_scalar(deletable_runs(self.backend))
                .bind(roots)
                .bind(before)
                .fetch_one(&mut *tx)
                .await?;
            let sql = sqlx::AssertSqlSafe(format!(
                "DELETE FROM task_log WHERE id IN (SELECT id FROM task_log WHERE {} LIMIT $2)",
                in_runs(self.backend, "run")
            ));
            let logs = sqlx::query(sql)
                .bind(&runs)
                .bind(i64::from(log_rows))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            counts.task_log += logs;
            if logs < u64::from(log_rows) {
                let backend = self.backend;
                let mut delete = async |table: &str, column: &str| -> StoreResult<u64> {
                    let sql = format!("DELETE FROM {table} WHERE {}", in_runs(backend, column));
                    let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(&runs)
                        .execute(&mut *tx)
                        .await?;
                    Ok(done.rows_affected())
                };
                counts.task_try += delete("task_try", "run").await?;
                counts.task_instance += delete("task_instance", "run").await?;
                // One statement for a whole family: the parent_run references are checked
                // at its end, when parent and children are gone together.
                counts.dag_run += delete("dag_run", "id").await?;
                tx.commit().await?;
                return Ok(counts);
            }
            tx.commit().await?;
        }
    }

    /// Deletes DAG versions created before `before` that no run uses and that are not the
    /// newest version of their DAG (so a DAG's current definition stays visible).
    async fn clean_unused_dag_versions(&self, before: &str, dry_run: bool) -> StoreResult<u64> {
        let unused = "FROM dag_version v WHERE v.created_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM dag_run r WHERE r.dag_version = v.hash) \
             AND v.created_at < (SELECT MAX(w.created_at) FROM dag_version w WHERE w.dag_id = v.dag_id)";
        self.count_or_delete("dag_version", "hash", unused, before, dry_run)
            .await
    }

    /// Deletes instances whose lease ended (stopped or expired) before `before` and before
    /// now, and that own no run any more.
    async fn clean_stopped_instances(&self, before: &str, dry_run: bool) -> StoreResult<u64> {
        let gone = "FROM instance v WHERE COALESCE(v.stopped_at, v.lease_expires_at) < $1 \
             AND NOT EXISTS (SELECT 1 FROM dag_run r WHERE r.owner = v.id)";
        let now = to_text(self.now());
        self.count_or_delete("instance", "id", gone, before.min(now.as_str()), dry_run)
            .await
    }

    /// Counts (dry run) or deletes the rows of `table` selected by `from_where` (which
    /// names the table `v` and binds `before` as `?1`).
    async fn count_or_delete(
        &self,
        table: &str,
        key: &str,
        from_where: &str,
        before: &str,
        dry_run: bool,
    ) -> StoreResult<u64> {
        if dry_run {
            let sql = format!("SELECT COUNT(*) {from_where}");
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(before)
                .fetch_one(&self.pool)
                .await?;
            return Ok(n.max(0) as u64);
        }
        let sql = format!("DELETE FROM {table} WHERE {key} IN (SELECT v.{key} {from_where})");
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

fn ids_json(ids: &[i64]) -> String {
    let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
    format!("[{}]", ids.join(","))
}

#[cfg(test)]
mod tests;
