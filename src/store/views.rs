//! Read queries behind the front-ends (dashboard, CLI listings, REST API): filtered and
//! paged run listings, the latest runs of many DAGs in one statement, and the task
//! instances of many runs at once. Each uses an index; none scans a DAG's whole history.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::sql::{Backend, Sql};

use super::rows::{RunRow, TaskInstanceRow};
use super::runs::RUN_COLUMNS;
use super::{Store, StoreResult, to_text};
use crate::ids::{DagId, RunKey};
use crate::state::{RunState, RunType};

/// A column runs can be ordered by (ties are broken by the store key, newest last).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RunField {
    /// Creation order.
    #[default]
    Id,
    /// Run id.
    RunId,
    /// DAG id.
    DagId,
    /// State.
    State,
    /// Logical date.
    LogicalDate,
    /// Start.
    StartDate,
    /// End.
    EndDate,
    /// Queued at.
    QueuedAt,
    /// Airflow's `run_after`: the end of the data interval.
    RunAfter,
}

impl RunField {
    fn column(self) -> &'static str {
        match self {
            Self::Id => "id",
            Self::RunId => "run_id",
            Self::DagId => "dag_id",
            Self::State => "state",
            Self::LogicalDate => "logical_date",
            Self::StartDate => "start_date",
            Self::EndDate => "end_date",
            Self::QueuedAt => "queued_at",
            Self::RunAfter => "data_interval_end",
        }
    }
}

/// An ordering of a run listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunOrder {
    /// The column.
    pub field: RunField,
    /// Largest first.
    pub descending: bool,
}

impl Default for RunOrder {
    /// Newest first.
    fn default() -> Self {
        Self {
            field: RunField::Id,
            descending: true,
        }
    }
}

/// Which runs a listing wants, in which order, and which page of them.
#[derive(Clone, Debug, Default)]
pub struct RunQuery {
    /// Runs of these DAGs (all when empty).
    pub dags: Vec<DagId>,
    /// Runs in these states (all when empty).
    pub states: Vec<RunState>,
    /// Runs of these types (all when empty).
    pub run_types: Vec<RunType>,
    /// Logical date at or after.
    pub logical_date_gte: Option<DateTime<Utc>>,
    /// Logical date at or before.
    pub logical_date_lte: Option<DateTime<Utc>>,
    /// Further bounds on the runs' dates (see [`RunQuery::after`], [`RunQuery::before`]).
    pub bounds: Vec<DateBound>,
    /// Run ids matching this SQL LIKE pattern anywhere in them (ASCII case-insensitive).
    pub run_id_pattern: Option<String>,
    /// Order.
    pub order: RunOrder,
    /// At most this many (0: count only).
    pub limit: u32,
    /// Skip this many.
    pub offset: u64,
}

/// A bound on one of a run's dates (a run without that date, e.g. not started, is out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateBound {
    field: RunField,
    at: DateTime<Utc>,
    after: bool,
    inclusive: bool,
}

impl DateBound {
    fn sql(&self) -> String {
        let op = match (self.after, self.inclusive) {
            (true, true) => ">=",
            (true, false) => ">",
            (false, true) => "<=",
            (false, false) => "<",
        };
        format!(" AND {} {op} ", self.field.column())
    }
}

impl RunQuery {
    /// Also only runs whose `field` (a date) is after `at` (or at it, when `inclusive`).
    pub fn after(mut self, field: RunField, at: DateTime<Utc>, inclusive: bool) -> Self {
        self.bounds.push(DateBound {
            field,
            at,
            after: true,
            inclusive,
        });
        self
    }

    /// Also only runs whose `field` (a date) is before `at` (or at it, when `inclusive`).
    pub fn before(mut self, field: RunField, at: DateTime<Utc>, inclusive: bool) -> Self {
        self.bounds.push(DateBound {
            field,
            at,
            after: false,
            inclusive,
        });
        self
    }
}

impl Store {
    /// One page of the runs `query` selects, and how many it selects in all.
    pub async fn query_runs(&self, query: &RunQuery) -> StoreResult<(Vec<RunRow>, u64)> {
        let mut count = Sql::new("SELECT COUNT(*) FROM dag_run");
        push_filters(&mut count, query, self.backend)?;
        let (sql, args) = count.finish();
        let total: i64 = sqlx::query_scalar_with(sql, args)
            .fetch_one(&self.pool)
            .await?;
        if query.limit == 0 {
            return Ok((Vec::new(), u64::try_from(total).unwrap_or(0)));
        }
        let mut select = Sql::new(RUN_COLUMNS);
        push_filters(&mut select, query, self.backend)?;
        let direction = if query.order.descending {
            "DESC"
        } else {
            "ASC"
        };
        // NULLs sort first ascending and last descending, as SQLite sorts them.
        let nulls = if query.order.descending {
            "NULLS LAST"
        } else {
            "NULLS FIRST"
        };
        select.push(&format!(
            " ORDER BY {} {direction} {nulls}",
            query.order.field.column()
        ));
        if query.order.field != RunField::Id {
            select.push(&format!(", id {direction}"));
        }
        select.push(" LIMIT ");
        select.bind(i64::from(query.limit))?;
        select.push(" OFFSET ");
        select.bind(i64::try_from(query.offset).unwrap_or(i64::MAX))?;
        let (sql, args) = select.finish();
        let rows = sqlx::query_with(sql, args).fetch_all(&self.pool).await?;
        let runs = rows
            .iter()
            .map(RunRow::from_row)
            .collect::<StoreResult<_>>()?;
        Ok((runs, u64::try_from(total).unwrap_or(0)))
    }

    /// The latest `per_dag` runs of each of `dags`, newest first within a DAG, in one
    /// statement (an index seek per DAG).
    pub async fn recent_runs(&self, dags: &[DagId], per_dag: u32) -> StoreResult<Vec<RunRow>> {
        if dags.is_empty() || per_dag == 0 {
            return Ok(Vec::new());
        }
        let ids = serde_json::to_string(&dags.iter().map(DagId::as_str).collect::<Vec<_>>())
            .map_err(|e| super::StoreError::Corrupt(e.to_string()))?;
        let sql = sqlx::AssertSqlSafe(format!(
            "{RUN_COLUMNS} WHERE id IN (SELECT x.id FROM {} JOIN dag_run x \
             ON x.id IN (SELECT y.id FROM dag_run y WHERE y.dag_id = d.value \
             ORDER BY y.id DESC LIMIT $2)) ORDER BY dag_id, id DESC",
            self.backend.json_texts("$1", "d")
        ));
        let rows = sqlx::query(sql)
            .bind(ids)
            .bind(i64::from(per_dag))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(RunRow::from_row).collect()
    }

    /// The end of the latest scheduled interval of each of `dags` that has one (where its
    /// timetable resumes), in one statement.
    pub async fn last_scheduled_ends(
        &self,
        dags: &[DagId],
    ) -> StoreResult<HashMap<DagId, DateTime<Utc>>> {
        if dags.is_empty() {
            return Ok(HashMap::new());
        }
        let ids = serde_json::to_string(&dags.iter().map(DagId::as_str).collect::<Vec<_>>())
            .map_err(|e| super::StoreError::Corrupt(e.to_string()))?;
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT d.value AS dag_id, (SELECT r.data_interval_end FROM dag_run r \
             WHERE r.dag_id = d.value AND r.run_type = 'scheduled' \
             ORDER BY r.logical_date DESC LIMIT 1) AS last_end FROM {}",
            self.backend.json_texts("$1", "d")
        ));
        let rows = sqlx::query(sql).bind(ids).fetch_all(&self.pool).await?;
        let mut ends = HashMap::new();
        for row in &rows {
            if let Some(end) = row.try_get::<Option<String>, _>("last_end")? {
                let dag = DagId::new(row.try_get::<String, _>("dag_id")?);
                ends.insert(dag, super::from_text(&end)?);
            }
        }
        Ok(ends)
    }

    /// The task instances of several runs, by run.
    pub async fn task_instances_of(
        &self,
        runs: &[RunKey],
    ) -> StoreResult<HashMap<RunKey, Vec<TaskInstanceRow>>> {
        if runs.is_empty() {
            return Ok(HashMap::new());
        }
        let keys = serde_json::to_string(&runs.iter().map(|r| r.0).collect::<Vec<_>>())
            .map_err(|e| super::StoreError::Corrupt(e.to_string()))?;
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT run, task_id, state, try_number, max_tries, start_date, end_date, \
             next_retry_at, error, first_try FROM task_instance \
             WHERE run IN (SELECT k.value FROM {}) ORDER BY run, rowid",
            self.backend.json_ints("$1", "k")
        ));
        let rows = sqlx::query(sql).bind(keys).fetch_all(&self.pool).await?;
        let mut by_run: HashMap<RunKey, Vec<TaskInstanceRow>> = HashMap::new();
        for row in &rows {
            let run = RunKey(row.try_get("run")?);
            by_run
                .entry(run)
                .or_default()
                .push(TaskInstanceRow::from_row(row)?);
        }
        Ok(by_run)
    }

    /// Whether any run is running, or queued and able to start: a queued run of a paused
    /// DAG waits for the DAG to be unpaused unless a foreground process reserved it (pages
    /// stop updating themselves when no run is active).
    pub async fn any_active_run(&self, dag: Option<&DagId>) -> StoreResult<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM dag_run r WHERE r.state IN ('queued', 'running') \
             AND ($1 IS NULL OR r.dag_id = $1) \
             AND (r.state = 'running' OR r.owner IS NOT NULL OR NOT EXISTS \
             (SELECT 1 FROM dag d WHERE d.dag_id = r.dag_id AND d.is_paused <> 0)) LIMIT 1",
        )
        .bind(dag.map(DagId::as_str))
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }
}

/// The `WHERE` clause of a run listing.
fn push_filters(sql: &mut Sql, query: &RunQuery, backend: Backend) -> StoreResult<()> {
    sql.push(" WHERE 1 = 1");
    let list = |sql: &mut Sql, column: &str, values: Vec<String>| -> StoreResult<()> {
        if values.is_empty() {
            return Ok(());
        }
        sql.push(&format!(" AND {column} IN ("));
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(value)?;
        }
        sql.push(")");
        Ok(())
    };
    list(
        sql,
        "dag_id",
        query.dags.iter().map(|d| d.as_str().to_owned()).collect(),
    )?;
    list(
        sql,
        "state",
        query.states.iter().map(|s| s.as_str().to_owned()).collect(),
    )?;
    list(
        sql,
        "run_type",
        query
            .run_types
            .iter()
            .map(|t| t.as_str().to_owned())
            .collect(),
    )?;
    if let Some(from) = query.logical_date_gte {
        sql.push(" AND logical_date >= ");
        sql.bind(to_text(from))?;
    }
    if let Some(to) = query.logical_date_lte {
        sql.push(" AND logical_date <= ");
        sql.bind(to_text(to))?;
    }
    // Stored times are fixed-width UTC text, so text order is time order.
    for bound in &query.bounds {
        sql.push(&bound.sql());
        sql.bind(to_text(bound.at))?;
    }
    if let Some(pattern) = &query.run_id_pattern {
        // Case-insensitive on both engines, as SQLite's LIKE is, with `\` escaping `%` and
        // `_` on both, as PostgreSQL's LIKE has it by default.
        sql.push(match backend {
            Backend::Sqlite => " AND run_id LIKE ",
            Backend::Postgres => " AND run_id ILIKE ",
        });
        sql.bind(format!("%{pattern}%"))?;
        sql.push(" ESCAPE '\\'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewRun;
    use chrono::TimeZone;

    async fn store_with_runs(
        backend: crate::store::Backend,
        dags: &[&str],
        per_dag: u32,
    ) -> (crate::store::testing::TestDb, Store) {
        let dir = crate::store::testing::TestDb::open(backend).await;
        let store = dir.store();
        for dag in dags {
            for day in 0..per_dag {
                let start = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
                    + chrono::Duration::days(i64::from(day));
                store
                    .insert_run(&NewRun {
                        dag_id: DagId::new(*dag),
                        run_type: RunType::Scheduled,
                        interval_start: start,
                        interval_end: start + chrono::Duration::days(1),
                        conf: serde_json::json!({}),
                        parent: None,
                        owner: None,
                        version: None,
                    })
                    .await
                    .unwrap();
            }
        }
        (dir, store)
    }

    async fn recent_runs_takes_the_newest_of_each_dag_in_one_statement(
        backend: crate::store::Backend,
    ) {
        let (_dir, store) = store_with_runs(backend, &["a", "b", "c"], 5).await;
        let ids = [DagId::new("a"), DagId::new("c"), DagId::new("missing")];
        let runs = store.recent_runs(&ids, 2).await.unwrap();
        let got: Vec<(String, String)> = runs
            .iter()
            .map(|r| {
                (
                    r.dag_id.to_string(),
                    r.logical_date.format("%d").to_string(),
                )
            })
            .collect();
        let want = [("a", "05"), ("a", "04"), ("c", "05"), ("c", "04")];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(d, n)| (d.to_string(), n.to_string()))
            .collect();
        assert_eq!(got, want);
        let ends = store.last_scheduled_ends(&ids).await.unwrap();
        assert_eq!(ends.len(), 2);
        assert_eq!(
            ends[&DagId::new("a")],
            Utc.with_ymd_and_hms(2024, 1, 6, 0, 0, 0).unwrap()
        );
    }

    async fn query_runs_filters_orders_pages_and_counts(backend: crate::store::Backend) {
        let (_dir, store) = store_with_runs(backend, &["a", "b"], 7).await;
        let query = RunQuery {
            dags: vec![DagId::new("b")],
            order: RunOrder {
                field: RunField::LogicalDate,
                descending: false,
            },
            limit: 3,
            offset: 2,
            ..RunQuery::default()
        };
        let (runs, total) = store.query_runs(&query).await.unwrap();
        assert_eq!(total, 7);
        let days: Vec<String> = runs
            .iter()
            .map(|r| r.logical_date.format("%d").to_string())
            .collect();
        assert_eq!(days, ["03", "04", "05"]);
        assert!(runs.iter().all(|r| r.dag_id.as_str() == "b"));
        let failed = RunQuery {
            states: vec![RunState::Failed],
            limit: 10,
            ..RunQuery::default()
        };
        assert_eq!(store.query_runs(&failed).await.unwrap().1, 0);
        let from = RunQuery {
            logical_date_gte: Some(Utc.with_ymd_and_hms(2024, 1, 6, 0, 0, 0).unwrap()),
            limit: 10,
            ..RunQuery::default()
        };
        assert_eq!(store.query_runs(&from).await.unwrap().1, 4);
        assert!(store.any_active_run(None).await.unwrap());
        assert!(!store.any_active_run(Some(&DagId::new("x"))).await.unwrap());
    }

    async fn query_runs_bounds_dates_and_matches_run_ids(backend: crate::store::Backend) {
        let (_dir, store) = store_with_runs(backend, &["a"], 7).await;
        let day = |d| Utc.with_ymd_and_hms(2024, 1, d, 0, 0, 0).unwrap();
        let days = |query: RunQuery| {
            let store = store.clone();
            async move {
                let (runs, total) = store.query_runs(&query).await.unwrap();
                assert_eq!(total, runs.len() as u64);
                runs.iter()
                    .map(|r| r.logical_date.format("%d").to_string())
                    .collect::<Vec<_>>()
            }
        };
        let all = RunQuery {
            order: RunOrder {
                field: RunField::Id,
                descending: false,
            },
            limit: 100,
            ..RunQuery::default()
        };
        let between = all
            .clone()
            .after(RunField::LogicalDate, day(3), false)
            .before(RunField::LogicalDate, day(6), false);
        assert_eq!(days(between).await, ["04", "05"]);
        let inclusive = all
            .clone()
            .after(RunField::LogicalDate, day(3), true)
            .before(RunField::LogicalDate, day(6), true);
        assert_eq!(days(inclusive).await, ["03", "04", "05", "06"]);
        let run_after = all.clone().after(RunField::RunAfter, day(8), true);
        assert_eq!(days(run_after).await, ["07"]);
        // No run has started: a bound on the start leaves none.
        let started = all.clone().after(RunField::StartDate, day(1), true);
        assert!(days(started).await.is_empty());
        let mut pattern = all.clone();
        pattern.run_id_pattern = Some("01-02T".into());
        assert_eq!(days(pattern.clone()).await, ["02"]);
        pattern.run_id_pattern = Some("SCHEDULED%01-0_T".into());
        assert_eq!(days(pattern).await.len(), 7);
    }

    crate::store::testing::on_both!(
        recent_runs_takes_the_newest_of_each_dag_in_one_statement,
        query_runs_filters_orders_pages_and_counts,
        query_runs_bounds_dates_and_matches_run_ids,
    );
}
