//! The state store: every DAG, run, task instance, try and log line, in SQLite through sqlx.
//!
//! All SQL lives in this module. The scheduler writes through [`Store::commit`], one
//! transaction per batch of [`Change`]s, *before* acting on them; the CLI and web read and
//! make single changes (trigger, pause, clear) through the service layer. The schema is in
//! `migrations/`, embedded and applied at start-up. SQLite runs in WAL mode with a busy
//! timeout, so the daemon and CLI processes share the file safely.

mod clean;
mod dags;
mod logs;
mod rows;
mod runs;
mod tasks;

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{SqlSafeStr, SqlitePool};

pub use clean::{CleanBatch, CleanCounts};
pub use rows::{Change, NewRun, RunRow, TaskInstanceRow, TryRow};

/// Errors from the state store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened.
    #[error("cannot open the state database '{url}': {source}")]
    Open { url: String, source: sqlx::Error },
    /// Applying the schema failed.
    #[error("cannot migrate the state database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("state database: {0}")]
    Db(#[from] sqlx::Error),
    /// A row holds a value this version does not understand.
    #[error("state database holds an unreadable value: {0}")]
    Corrupt(String),
    /// A change is not allowed from the current state.
    #[error("{0}")]
    Conflict(String),
}

/// Shorthand for store results.
pub type StoreResult<T> = Result<T, StoreError>;

/// Handle to the state database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
}

const MIGRATIONS: [(i64, &str, &str); 2] = [
    (1, "init", include_str!("../../migrations/0001_init.sql")),
    (
        4,
        "log_seq",
        include_str!("../../migrations/0004_log_seq.sql"),
    ),
];

impl Store {
    /// Opens (creating if needed) the database at `url` (a path or `sqlite:` URL) and
    /// applies pending migrations. `connections` bounds the pool.
    pub async fn open(url: &str, connections: u32) -> StoreResult<Self> {
        let open_err = |source| StoreError::Open {
            url: url.to_string(),
            source,
        };
        let options = if url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(url).map_err(open_err)?
        } else {
            SqliteConnectOptions::new().filename(url)
        };
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(connections.max(1))
            .connect_with(options)
            .await
            .map_err(open_err)?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> StoreResult<()> {
        let migrations = MIGRATIONS
            .iter()
            .map(|(version, name, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*name),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect();
        let mut migrator = Migrator::with_migrations(migrations);
        // SQLite has no advisory locks; concurrent first starts are serialised by its write lock.
        migrator.set_locking(false);
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool, checkpointing the WAL.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A trivial query, for health checks.
    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// Formats a time the way the store keeps it (sortable text).
pub fn to_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parses a stored time.
pub fn from_text(s: &str) -> StoreResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("time '{s}': {e}")))
}
