//! The state store: every DAG, run, task instance, try and log line, in SQLite through sqlx.
//!
//! All SQL lives in this module. The scheduler writes through [`Store::commit`], one
//! transaction per batch of [`Change`]s, *before* acting on them; the CLI and web read and
//! make single changes (trigger, pause, clear) through the service layer. The schema is in
//! `migrations/`, embedded and applied at start-up. SQLite runs in WAL mode with a busy
//! timeout, so the daemon and CLI processes share the file safely.

mod clean;
mod dags;
mod instances;
mod logs;
mod rows;
mod runs;
mod tasks;
mod users;
mod versions;
mod views;

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{SqlSafeStr, SqlitePool};

pub use clean::{CleanBatch, CleanCounts};
pub use instances::{InstanceKind, Owner, new_uid};
pub use rows::{Change, DagVersion, NewRun, ParentTask, RunRow, TaskInstanceRow, TryRow};
pub use users::UserRow;
pub use views::{RunField, RunOrder, RunQuery};

use crate::ids::RunKey;

/// Errors from the state store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened.
    #[error("cannot open the state database '{url}': {source}")]
    Open { url: String, source: sqlx::Error },
    /// The lock that serialises migrations could not be taken.
    #[error("cannot lock the state database for migrations: {0}")]
    Lock(String),
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
    /// Runs this process wrote about are owned by another instance (or by an older epoch
    /// of this one): nothing of the batch was written.
    #[error("runs {} are no longer owned by this process; nothing was written", keys(.0))]
    Fenced(Vec<RunKey>),
    /// This process's lease lapsed: it may write nothing until it takes the lease back.
    #[error("this process's lease has lapsed; nothing was written")]
    LeaseLost,
    /// The state machine does not allow the change from the state found in the store.
    #[error("refused state change of {what}: {from} -> {to}")]
    Transition {
        /// The run the change was about.
        run: RunKey,
        /// `run <dag>/<run_id>` or `task <task> of run <dag>/<run_id>`.
        what: String,
        /// The state found (with the try number for tries).
        from: String,
        /// The state asked for.
        to: String,
    },
}

fn keys(runs: &[RunKey]) -> String {
    runs.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Shorthand for store results.
pub type StoreResult<T> = Result<T, StoreError>;

/// Handle to the state database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
}

const MIGRATIONS: [(i64, &str, &str); 8] = [
    (1, "init", include_str!("../../migrations/0001_init.sql")),
    (
        2,
        "leases versions",
        include_str!("../../migrations/0002_leases_versions.sql"),
    ),
    (
        3,
        "try_process",
        include_str!("../../migrations/0003_try_process.sql"),
    ),
    (
        4,
        "log_seq",
        include_str!("../../migrations/0004_log_seq.sql"),
    ),
    (
        5,
        "one run per logical date",
        include_str!("../../migrations/0005_one_run_per_logical_date.sql"),
    ),
    (
        6,
        "dashboard_indexes",
        include_str!("../../migrations/0006_dashboard_indexes.sql"),
    ),
    (
        7,
        "run user note",
        include_str!("../../migrations/0007_run_user_note.sql"),
    ),
    (8, "users", include_str!("../../migrations/0008_users.sql")),
];

/// Holds an exclusive lock on `<database>.lock` while migrations run, so processes starting
/// together on a new database apply each migration once. `None` for in-memory databases.
async fn migration_lock(options: &SqliteConnectOptions) -> StoreResult<Option<std::fs::File>> {
    let db = options.get_filename();
    let name = db.as_os_str().to_string_lossy();
    // sqlx names a `sqlite::memory:` database `file:sqlx-in-memory-N` (and keeps the flag
    // that says so private).
    let in_memory = name.starts_with(':')
        || name.contains("mode=memory")
        || name.starts_with("file:sqlx-in-memory-");
    if name.is_empty() || in_memory {
        return Ok(None);
    }
    let mut lock_path = db.as_os_str().to_owned();
    lock_path.push(".lock");
    let path = std::path::PathBuf::from(&lock_path);
    let lock_err = |e: std::io::Error| StoreError::Lock(format!("{}: {e}", path.display()));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(lock_err)?;
    // flock blocks until the other process's migrations are done: off the async threads.
    let file = tokio::task::spawn_blocking(move || file.lock().map(|()| file))
        .await
        .map_err(|e| StoreError::Lock(e.to_string()))?
        .map_err(lock_err)?;
    Ok(Some(file))
}

impl Store {
    /// Opens (creating if needed) the database at `url` (a path or `sqlite:` URL) and
    /// applies pending migrations. `connections` bounds the pool.
    pub async fn open(url: &str, connections: u32) -> StoreResult<Self> {
        let open_err = |source| StoreError::Open {
            url: crate::redact::text(url).into_owned(),
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
        let lock = migration_lock(&options).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(connections.max(1))
            .connect_with(options)
            .await
            .map_err(open_err)?;
        let store = Self { pool };
        store.migrate().await?;
        drop(lock);
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
        // SQLite has no advisory locks: concurrent first starts are serialised by
        // `migration_lock` instead (each migration is its own transaction, so SQLite's write
        // lock alone would let two processes apply the same one).
        migrator.set_locking(false);
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// The connection pool, for tests that set up states no public path writes directly.
    #[cfg(test)]
    pub(crate) fn test_pool(&self) -> &SqlitePool {
        &self.pool
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
