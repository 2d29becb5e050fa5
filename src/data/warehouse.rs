//! The warehouse: a SQLite database the staged tables are loaded into so they can be
//! queried with SQL. Loads are atomic per table (the new table is built under a temporary
//! name and swapped in, in one transaction); queries return their first rows for the log.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use arrow_array::{Array, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, SchemaRef};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow};
use sqlx::{AssertSqlSafe, Column, QueryBuilder, Row, Sqlite, SqlitePool};
use tokio::sync::mpsc;

use super::DataError;

/// SQLite's limit on bound parameters in one statement (conservative).
const MAX_PARAMS: usize = 30_000;

/// How `load` treats an existing table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadMode {
    /// Replace the table's contents (atomically).
    #[default]
    Replace,
    /// Add rows to the table, creating it if needed.
    Append,
}

/// An open warehouse.
pub struct Warehouse {
    pool: SqlitePool,
    path: String,
}

/// The first rows of a query.
pub struct QueryRows {
    /// Column names.
    pub columns: Vec<String>,
    /// Up to the requested number of rows, as display text.
    pub rows: Vec<Vec<String>>,
    /// All rows returned.
    pub total: u64,
}

impl Warehouse {
    /// Opens (creating) the warehouse database.
    pub async fn open(path: &Path) -> Result<Self, DataError> {
        let shown = path.display().to_string();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| DataError::io(&shown, e))?;
        }
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(|e| DataError::Warehouse {
                path: shown.clone(),
                message: e.to_string(),
            })?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|e| DataError::Warehouse {
                path: shown.clone(),
                message: e.to_string(),
            })?;
        Ok(Self { pool, path: shown })
    }

    fn err(&self, e: impl std::fmt::Display) -> DataError {
        DataError::Warehouse {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// Loads batches into `table`; returns the number of rows loaded.
    pub async fn load(
        &self,
        table: &str,
        schema: SchemaRef,
        mut batches: mpsc::Receiver<Result<RecordBatch, DataError>>,
        mode: LoadMode,
    ) -> Result<u64, DataError> {
        let target = quote(table)?;
        let staging = quote(&format!("{table}__loading"))?;
        let into = if mode == LoadMode::Replace {
            &staging
        } else {
            &target
        };
        let columns = column_defs(&schema)?;
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| self.err(e))?;
        if mode == LoadMode::Replace {
            let drop = format!("DROP TABLE IF EXISTS {staging}");
            sqlx::query(AssertSqlSafe(drop))
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
        }
        let create = format!("CREATE TABLE IF NOT EXISTS {into} ({columns})");
        sqlx::query(AssertSqlSafe(create))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        let mut rows = 0u64;
        while let Some(batch) = batches.recv().await {
            let batch = batch?;
            rows += insert_batch(&mut tx, into, &batch)
                .await
                .map_err(|e| self.err(e))?;
        }
        if mode == LoadMode::Replace {
            run_statements(&mut tx, &swap_in(&staging, &target))
                .await
                .map_err(|e| self.err(e))?;
        }
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(rows)
    }

    /// Runs SQL (one or more statements); returns the first `keep` rows it produced.
    pub async fn query(&self, sql: &str, keep: usize) -> Result<QueryRows, DataError> {
        use futures_util::TryStreamExt;
        let mut stream = sqlx::raw_sql(AssertSqlSafe(sql.to_string())).fetch_many(&self.pool);
        let mut out = QueryRows {
            columns: Vec::new(),
            rows: Vec::new(),
            total: 0,
        };
        while let Some(item) = stream.try_next().await.map_err(|e| self.err(e))? {
            if let sqlx::Either::Right(row) = item {
                if out.columns.is_empty() {
                    out.columns = row.columns().iter().map(|c| c.name().to_string()).collect();
                }
                if out.rows.len() < keep {
                    out.rows
                        .push((0..row.len()).map(|i| cell_text(&row, i)).collect());
                }
                out.total += 1;
            }
        }
        Ok(out)
    }

    /// Replaces `table` with the result of a query, atomically.
    pub async fn create_table_as(&self, table: &str, select: &str) -> Result<u64, DataError> {
        let target = quote(table)?;
        let staging = quote(&format!("{table}__building"))?;
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| self.err(e))?;
        let select = select.trim().trim_end_matches(';');
        let build = [
            format!("DROP TABLE IF EXISTS {staging}"),
            format!("CREATE TABLE {staging} AS {select}"),
        ];
        run_statements(&mut tx, &build)
            .await
            .map_err(|e| self.err(e))?;
        run_statements(&mut tx, &swap_in(&staging, &target))
            .await
            .map_err(|e| self.err(e))?;
        let count: i64 =
            sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM {target}")))
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(count as u64)
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Statements replacing `target` by `staging` (run inside the caller's transaction).
fn swap_in(staging: &str, target: &str) -> [String; 2] {
    [
        format!("DROP TABLE IF EXISTS {target}"),
        format!("ALTER TABLE {staging} RENAME TO {target}"),
    ]
}

async fn run_statements(
    tx: &mut sqlx::Transaction<'static, Sqlite>,
    statements: &[String],
) -> Result<(), sqlx::Error> {
    for sql in statements {
        sqlx::query(AssertSqlSafe(sql.clone()))
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Quotes an identifier, refusing ones that could escape the quotes.
pub fn quote(name: &str) -> Result<String, DataError> {
    if name.is_empty() || name.contains('"') || name.contains('\0') {
        return Err(DataError::Format(format!(
            "bad table or column name '{name}'"
        )));
    }
    Ok(format!("\"{name}\""))
}

fn column_defs(schema: &SchemaRef) -> Result<String, DataError> {
    let mut defs = Vec::new();
    for f in schema.fields() {
        let ty = match f.data_type() {
            DataType::Int64 | DataType::Boolean => "INTEGER",
            DataType::Float64 => "REAL",
            DataType::Utf8 => "TEXT",
            other => {
                return Err(DataError::Format(format!(
                    "column '{}': type {other} cannot be loaded",
                    f.name()
                )));
            }
        };
        defs.push(format!("{} {ty}", quote(f.name())?));
    }
    if defs.is_empty() {
        return Err(DataError::Format(
            "a table needs at least one column".into(),
        ));
    }
    Ok(defs.join(", "))
}

async fn insert_batch(
    tx: &mut sqlx::Transaction<'static, Sqlite>,
    table: &str,
    batch: &RecordBatch,
) -> Result<u64, sqlx::Error> {
    let ncols = batch.num_columns().max(1);
    let per_stmt = (MAX_PARAMS / ncols).max(1);
    let mut start = 0;
    while start < batch.num_rows() {
        let end = (start + per_stmt).min(batch.num_rows());
        let mut q = QueryBuilder::<Sqlite>::new(format!("INSERT INTO {table} "));
        q.push_values(start..end, |mut row, i| {
            for col in batch.columns() {
                push_cell(&mut row, col.as_ref(), i);
            }
        });
        q.build().execute(&mut **tx).await?;
        start = end;
    }
    Ok(batch.num_rows() as u64)
}

fn push_cell(
    row: &mut sqlx::query_builder::Separated<'_, Sqlite, &'static str>,
    col: &dyn Array,
    i: usize,
) {
    if col.is_null(i) {
        row.push_bind(None::<i64>);
    } else if let Some(a) = col.as_any().downcast_ref::<Int64Array>() {
        row.push_bind(a.value(i));
    } else if let Some(a) = col.as_any().downcast_ref::<Float64Array>() {
        row.push_bind(a.value(i));
    } else if let Some(a) = col.as_any().downcast_ref::<BooleanArray>() {
        row.push_bind(a.value(i));
    } else if let Some(a) = col.as_any().downcast_ref::<StringArray>() {
        row.push_bind(a.value(i));
    } else {
        row.push_bind(None::<i64>);
    }
}

fn cell_text(row: &SqliteRow, i: usize) -> String {
    if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
        return v.map_or_else(|| "NULL".into(), |v| v.to_string());
    }
    if let Ok(v) = row.try_get::<Option<f64>, _>(i) {
        return v.map_or_else(|| "NULL".into(), |v| v.to_string());
    }
    if let Ok(v) = row.try_get::<Option<String>, _>(i) {
        return v.unwrap_or_else(|| "NULL".into());
    }
    "<blob>".into()
}
