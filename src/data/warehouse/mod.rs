//! The warehouse the staged tables are loaded into so they can be queried with SQL: a
//! SQLite file (the default, [`sqlite`]) or a PostgreSQL database (`warehouse:
//! postgres://…`, [`postgres`]). [`Warehouse`] is the one type the `load` and `sql` tasks
//! see; it runs the SQLite code on a blocking thread and the PostgreSQL code on the
//! runtime, with the same guarantees: loads and scripts are atomic, every write commits
//! with its row in the [`super::ledger`], and a cancelled try commits nothing.

mod pg_copy;
mod pg_load;
mod pg_swap;
pub mod postgres;
pub mod sqlite;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use arrow_schema::SchemaRef;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub use postgres::{Batches, PgWarehouse};
pub use sqlite::SqliteWarehouse;

use super::DataError;
use super::ledger::{Committed, LedgerTry, Ledgered};

/// Columns a warehouse table can have (SQLite's `SQLITE_MAX_COLUMN`, 2000 in the bundled
/// build); the import refuses wider tables so that `load` never meets one.
pub const MAX_COLUMNS: usize = 2000;

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

/// The first rows of a query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryRows {
    /// Column names.
    pub columns: Vec<String>,
    /// Up to the requested number of rows, as display text.
    pub rows: Vec<Vec<String>>,
    /// All rows returned.
    pub total: u64,
}

/// Where the warehouse is, from the configuration's `warehouse`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WarehouseLocation {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL database URL (`postgres://` or `postgresql://`).
    Postgres(String),
}

impl WarehouseLocation {
    /// A `postgres://` or `postgresql://` URL (checked here, so that a malformed one is a
    /// configuration error), else a SQLite file path.
    pub fn parse(text: &str) -> Result<Self, String> {
        if !["postgres://", "postgresql://"]
            .iter()
            .any(|scheme| text.starts_with(scheme))
        {
            return Ok(Self::Sqlite(PathBuf::from(text)));
        }
        PgWarehouse::new(text, 1).map_err(|e| e.to_string())?;
        Ok(Self::Postgres(text.to_string()))
    }
}

impl Default for WarehouseLocation {
    fn default() -> Self {
        Self::Sqlite(PathBuf::from("warehouse.db"))
    }
}

/// The warehouse, as tasks use it; cheap to clone (a PostgreSQL warehouse's clones share
/// one connection pool).
#[derive(Clone, Debug)]
pub struct Warehouse {
    backend: Backend,
    cancel: CancellationToken,
}

#[derive(Clone, Debug)]
enum Backend {
    Sqlite(PathBuf),
    Postgres(PgWarehouse),
}

impl Warehouse {
    /// The warehouse at `location`; a PostgreSQL one keeps at most `connections`
    /// connections, opened when first needed.
    pub fn open(location: &WarehouseLocation, connections: u32) -> Result<Self, DataError> {
        let backend = match location {
            WarehouseLocation::Sqlite(path) => Backend::Sqlite(path.clone()),
            WarehouseLocation::Postgres(url) => {
                Backend::Postgres(PgWarehouse::new(url, connections)?)
            }
        };
        Ok(Self {
            backend,
            cancel: CancellationToken::new(),
        })
    }

    /// This warehouse, its work stopped (and rolled back) once `cancel` fires.
    pub fn cancelled_by(&self, cancel: CancellationToken) -> Self {
        Self {
            backend: self.backend.clone(),
            cancel,
        }
    }

    /// Where it is, for messages: the file, or the URL with its password masked.
    pub fn shown(&self) -> String {
        match &self.backend {
            Backend::Sqlite(path) => crate::redact::text(&path.display().to_string()).into_owned(),
            Backend::Postgres(pg) => pg.shown().to_string(),
        }
    }

    /// Checks that the warehouse can be reached (a PostgreSQL server answers and lets us
    /// in); a SQLite file is created when first written.
    pub async fn check(&self) -> Result<(), DataError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(()),
            Backend::Postgres(pg) => pg.check().await,
        }
    }

    /// The write of `item` that a try of `who`'s attempt committed, if any (`item` is the
    /// table name, or [`super::ledger::SCRIPT_ITEM`] for a script).
    pub async fn committed(
        &self,
        who: &LedgerTry,
        item: &str,
    ) -> Result<Option<Committed>, DataError> {
        match &self.backend {
            Backend::Sqlite(path) => {
                let (who, item) = (who.clone(), item.to_string());
                self.on_sqlite(path, move |w| w.committed(&who, &item))
                    .await
            }
            Backend::Postgres(pg) => pg.committed(who, item).await,
        }
    }

    /// Loads batches into `table` and records it in the ledger, in one transaction;
    /// returns the number of rows loaded, or the earlier try's load without reading
    /// `batches`. The batches are consumed as they come, never held together.
    pub async fn load(
        &self,
        table: &str,
        schema: &SchemaRef,
        batches: Batches,
        mode: LoadMode,
        who: &LedgerTry,
    ) -> Result<Ledgered<u64>, DataError> {
        match &self.backend {
            Backend::Sqlite(path) => {
                let (table, schema, who) = (table.to_string(), schema.clone(), who.clone());
                self.on_sqlite(path, move |w| w.load(&table, &schema, batches, mode, &who))
                    .await
            }
            Backend::Postgres(pg) => {
                pg.load(table, schema, batches, mode, who, &self.cancel)
                    .await
            }
        }
    }

    /// Runs a script and records it in the ledger, in one transaction (all or nothing, so
    /// a retry never replays half of it); returns the first `keep` rows of its last result,
    /// or the earlier try's run without running it again.
    pub async fn run_script(
        &self,
        sql: &str,
        keep: usize,
        who: &LedgerTry,
    ) -> Result<Ledgered<QueryRows>, DataError> {
        match &self.backend {
            Backend::Sqlite(path) => {
                let (sql, who) = (sql.to_string(), who.clone());
                self.on_sqlite(path, move |w| w.run_script(&sql, keep, &who))
                    .await
            }
            Backend::Postgres(pg) => pg.run_script(sql, keep, who, &self.cancel).await,
        }
    }

    /// Runs SQL (one or more statements) outside the ledger; returns the first `keep`
    /// rows of the last statement that returns rows.
    pub async fn query(&self, sql: &str, keep: usize) -> Result<QueryRows, DataError> {
        match &self.backend {
            Backend::Sqlite(path) => {
                let sql = sql.to_string();
                self.on_sqlite(path, move |w| w.query(&sql, keep)).await
            }
            Backend::Postgres(pg) => pg.query(sql, keep, &self.cancel).await,
        }
    }

    /// Replaces `table` with the result of a query and records it in the ledger,
    /// atomically; returns its row count, or the earlier try's without running the query.
    pub async fn create_table_as(
        &self,
        table: &str,
        select: &str,
        who: &LedgerTry,
    ) -> Result<Ledgered<u64>, DataError> {
        match &self.backend {
            Backend::Sqlite(path) => {
                let (table, select, who) = (table.to_string(), select.to_string(), who.clone());
                self.on_sqlite(path, move |w| w.create_table_as(&table, &select, &who))
                    .await
            }
            Backend::Postgres(pg) => pg.create_table_as(table, select, who, &self.cancel).await,
        }
    }

    /// Runs `work` on the SQLite warehouse at `path` on a blocking thread, its statements
    /// interrupted once this warehouse's work is cancelled.
    async fn on_sqlite<T: Send + 'static>(
        &self,
        path: &Path,
        work: impl FnOnce(&mut SqliteWarehouse) -> Result<T, DataError> + Send + 'static,
    ) -> Result<T, DataError> {
        let (file, cancel) = (path.to_path_buf(), self.cancel.clone());
        tokio::task::spawn_blocking(move || {
            let mut warehouse = SqliteWarehouse::open(&file)?;
            warehouse.cancel_when(move || cancel.is_cancelled())?;
            work(&mut warehouse)
        })
        .await
        .map_err(|e| DataError::Warehouse {
            path: path.display().to_string(),
            message: format!("the warehouse thread stopped: {e}"),
        })?
    }
}

/// Whether the relation named by `$1` (a quoted name) exists in the connection's current
/// schema (the first of its search path, where tables are created): a table of the same
/// name in a later schema of the path is never replaced or appended to.
pub(crate) const IN_CURRENT_SCHEMA: &str =
    "SELECT to_regclass(quote_ident(current_schema()) || '.' || $1) IS NOT NULL";

/// Quotes an identifier, refusing ones that could escape the quotes.
pub fn quote(name: &str) -> Result<String, DataError> {
    if name.is_empty() || name.contains('"') || name.contains('\0') {
        return Err(DataError::Format(format!(
            "bad table or column name '{name}'"
        )));
    }
    Ok(format!("\"{name}\""))
}
