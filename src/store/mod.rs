//! The state store: every DAG, run, task instance, try and log line, in SQLite (the
//! embedded default) or PostgreSQL (shared by several instances), through sqlx's `Any`
//! driver so that one body of SQL serves both.
//!
//! All SQL lives in this module; what differs between the two engines is in `sql.rs`. The
//! scheduler writes through [`Store::commit`], one transaction per batch of [`Change`]s,
//! *before* acting on them; the CLI and web read and make single changes (trigger, pause,
//! clear) through the service layer. Each backend has its own schema history
//! (`migrations/` for SQLite, `migrations/postgres/`), embedded and applied at start-up
//! under a lock. SQLite runs in WAL mode with a busy timeout, so the daemon and CLI
//! processes share the file safely.

mod clean;
mod dags;
mod instances;
mod logs;
mod notify;
mod offers;
mod rows;
mod runs;
mod sql;
mod tasks;
#[doc(hidden)]
pub mod testing;
mod users;
mod versions;
mod views;

use std::borrow::Cow;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyConnection, AnyPool, Connection, Executor, SqlSafeStr};

pub use clean::{CleanBatch, CleanCounts};
pub use instances::{InstanceKind, Owner, new_uid};
pub use notify::{Heard, WorkListener};
pub use offers::{ClaimedOffer, ClaimedTry, OfferState};
pub use rows::{
    Change, DagVersion, NewRun, ParentTask, RemoteEnd, RunRow, TaskInstanceRow, TryRow,
};
pub use sql::Backend;
pub use users::UserRow;
pub use views::{RunField, RunOrder, RunQuery};

use crate::ids::RunKey;

/// Errors from the state store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened.
    #[error("cannot open the state database '{url}': {source}")]
    Open { url: String, source: sqlx::Error },
    /// The database's permissions could not be made private.
    #[error("cannot make the state database '{path}' private (mode 0600): {source}")]
    Private {
        path: String,
        source: std::io::Error,
    },
    /// The lock that serialises migrations could not be taken.
    #[error("cannot lock the state database for migrations: {0}")]
    Lock(String),
    /// The PostgreSQL server could not be reached or refused the connection.
    #[error("cannot connect to the PostgreSQL state database at {target}: {cause}")]
    Connect { target: String, cause: String },
    /// The database's schema is not one this version can use.
    #[error("{0}")]
    Schema(String),
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

impl StoreError {
    /// Whether the database is out of reach (connection refused or lost, no connection to
    /// be had, the server shutting down), as opposed to a write it refused or a bad value:
    /// waiting and trying again can cure it.
    pub fn is_outage(&self) -> bool {
        match self {
            Self::Db(e) => match e {
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::Protocol(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::WorkerCrashed => true,
                // Class 08: connection exception; 57P: operator intervention (shutdown,
                // terminated backend, cannot connect now); 53: out of resources (too many
                // connections); 28: a login refused (a role locked or a password rotated
                // while running: an operator can cure it, as they can an outage).
                sqlx::Error::Database(d) => d.code().is_some_and(|c| {
                    ["08", "57P", "53", "28"]
                        .iter()
                        .any(|class| c.starts_with(class))
                }),
                _ => false,
            },
            _ => false,
        }
    }
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
    pool: AnyPool,
    backend: Backend,
    /// The PostgreSQL URL, for the listener of `notify.rs` (a connection of its own).
    listen_url: Option<std::sync::Arc<str>>,
    /// The database's clock minus this host's, in microseconds (PostgreSQL; 0 on SQLite):
    /// lease times are the database's, so instances on hosts whose clocks differ agree
    /// on when a lease lapses.
    clock_offset: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

const MIGRATIONS: [(i64, &str, &str); 9] = [
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
    (
        9,
        "try offers",
        include_str!("../../migrations/0009_try_offers.sql"),
    ),
];

/// The file of an on-disk database; `None` for in-memory ones.
fn database_file(options: &SqliteConnectOptions) -> Option<&Path> {
    let db = options.get_filename();
    let name = db.as_os_str().to_string_lossy();
    // sqlx names a `sqlite::memory:` database `file:sqlx-in-memory-N` (and keeps the flag
    // that says so private).
    let in_memory = name.starts_with(':')
        || name.contains("mode=memory")
        || name.starts_with("file:sqlx-in-memory-");
    (!name.is_empty() && !in_memory).then_some(db)
}

/// Keeps the database private to its owner: it holds the token-signing key, the wake
/// secret and the password hashes, and anyone who reads it can forge an admin token. A new
/// file is created 0600 before SQLite opens it (SQLite gives its `-wal` and `-shm` files the
/// database's permissions); an existing one, and its `-wal`/`-shm`, are tightened to 0600
/// when we own them (`chmod` is refused otherwise, and then left to their owner).
fn make_private(db: &Path) -> StoreResult<()> {
    let private_err = |path: &Path, source| StoreError::Private {
        path: path.display().to_string(),
        source,
    };
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(db);
    match created {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(private_err(db, e)),
    }
    let mut tightened = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let mut path = db.as_os_str().to_owned();
        path.push(suffix);
        let path = PathBuf::from(path);
        let mode = match std::fs::metadata(&path) {
            Ok(m) => m.permissions().mode(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(private_err(&path, e)),
        };
        if mode & 0o077 == 0 {
            continue;
        }
        match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)) {
            Ok(()) => tightened.push(path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                tracing::debug!(path = %path.display(), "not ours to make private");
            }
            Err(e) => return Err(private_err(&path, e)),
        }
    }
    if !tightened.is_empty() {
        tracing::info!(
            files = %tightened.join(", "),
            "made the state database readable by its owner only (0600): it holds the \
             token-signing key and password hashes"
        );
    }
    Ok(())
}

/// Holds an exclusive lock on `<database>.lock` while migrations run, so processes starting
/// together on a new database apply each migration once. `None` for in-memory databases.
async fn migration_lock(options: &SqliteConnectOptions) -> StoreResult<Option<std::fs::File>> {
    let Some(db) = database_file(options) else {
        return Ok(None);
    };
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

/// The PostgreSQL schema history; independent of SQLite's (its first migration is the
/// SQLite schema as of SQLite migration 8). A later schema change adds one file to each.
const PG_MIGRATIONS: [(i64, &str, &str); 2] = [
    (
        1,
        "init",
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "try offers",
        include_str!("../../migrations/postgres/0002_try_offers.sql"),
    ),
];

/// How long opening a PostgreSQL store waits for the server before it reports it
/// unreachable.
const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a PostgreSQL URL points, for messages: `host:port/database as user`, never the
/// password.
pub(crate) fn pg_target(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("localhost");
            let port = u.port().unwrap_or(5432);
            let db = u.path().trim_start_matches('/');
            let user = if u.username().is_empty() {
                String::new()
            } else {
                format!(" as user {}", u.username())
            };
            format!("{host}:{port}/{db}{user}")
        }
        Err(_) => crate::redact::text(url).into_owned(),
    }
}

/// `url` as sqlx can connect to it: sqlx resolves the URL's host text as a name, brackets
/// included, so an IPv6 literal (`postgres://u@[::1]:5432/db`) never connects; the bare
/// address goes in libpq's `host` parameter instead, which sqlx reads too (the URL's host
/// is then only a placeholder). Other URLs are returned as they are.
pub(crate) fn pg_connect_url(url: &str) -> std::borrow::Cow<'_, str> {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return url.into();
    };
    let Some(url::Host::Ipv6(addr)) = parsed.host() else {
        return url.into();
    };
    if parsed.query_pairs().any(|(k, _)| k == "host") || parsed.set_host(Some("localhost")).is_err()
    {
        return url.into();
    }
    parsed
        .query_pairs_mut()
        .append_pair("host", &addr.to_string());
    parsed.to_string().into()
}

/// The deepest cause of an error (sqlx wraps I/O and server errors in layers that repeat
/// each other's text).
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// The `sqlite:` URL of a database given as a path or URL. A path is percent-encoded
/// whole, `/` included, so the URL has an opaque path: no part of it is read as a host and
/// no `.`/`..` segment is collapsed (the driver decodes it back to the path as given).
fn sqlite_url(url: &str) -> String {
    if url.starts_with("sqlite:") {
        return url.to_string();
    }
    const ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.');
    format!(
        "sqlite:{}",
        percent_encoding::utf8_percent_encode(url, ESCAPED)
    )
}

/// What a failed migration means to the user.
fn schema_error(e: sqlx::migrate::MigrateError, backend: Backend) -> StoreError {
    use sqlx::migrate::MigrateError as M;
    let what = match backend {
        Backend::Sqlite => "SQLite",
        Backend::Postgres => "PostgreSQL",
    };
    match e {
        M::VersionMissing(v) => StoreError::Schema(format!(
            "the {what} state database has schema version {v}, which this orchestrator does \
             not know: a newer version migrated it; run that version (or newer) here"
        )),
        M::VersionMismatch(v) | M::VersionNotPresent(v) => StoreError::Schema(format!(
            "migration {v} of the {what} state database differs from this orchestrator's: \
             the database was set up by an incompatible build"
        )),
        M::Dirty(v) => StoreError::Schema(format!(
            "migration {v} of the {what} state database was interrupted and left it \
             partly applied; restore it from a backup"
        )),
        // PostgreSQL's invalid_schema_name: the URL's search_path names no schema.
        M::Execute(sqlx::Error::Database(d)) if d.code().as_deref() == Some("3F000") => {
            StoreError::Schema(format!(
                "the PostgreSQL state database has no schema to create tables in: create the \
                 schema named by the URL's search_path first (CREATE SCHEMA ...): {}",
                d.message()
            ))
        }
        other => StoreError::Migrate(other),
    }
}

impl Store {
    /// Opens the state store at `url` and applies pending migrations: a `postgres://` URL
    /// is a PostgreSQL database; anything else is an SQLite file (a path or `sqlite:`
    /// URL), created if missing. `connections` bounds the pool.
    pub async fn open(url: &str, connections: u32) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        match Backend::of_url(url) {
            Backend::Sqlite => Self::open_sqlite(url, connections).await,
            Backend::Postgres => Self::open_postgres(url, connections).await,
        }
    }

    async fn open_sqlite(url: &str, connections: u32) -> StoreResult<Self> {
        let open_err = |source| StoreError::Open {
            url: crate::redact::text(url).into_owned(),
            source,
        };
        let url = sqlite_url(url);
        let parsed = SqliteConnectOptions::from_str(&url).map_err(open_err)?;
        if let Some(db) = database_file(&parsed) {
            make_private(db)?;
        }
        let lock = migration_lock(&parsed).await?;
        let options = AnyConnectOptions::from_str(&url).map_err(open_err)?;
        let pool = AnyPoolOptions::new()
            .max_connections(connections.max(1))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // WAL so readers never wait for the writer; the busy timeout lets the
                    // daemon and CLI processes take turns at the write lock.
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                         PRAGMA busy_timeout = 30000; PRAGMA foreign_keys = ON;",
                    )
                    .await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(open_err)?;
        let store = Self {
            pool,
            backend: Backend::Sqlite,
            listen_url: None,
            clock_offset: Default::default(),
        };
        store.migrate().await?;
        drop(lock);
        Ok(store)
    }

    async fn open_postgres(url: &str, connections: u32) -> StoreResult<Self> {
        let connect_err = |e: sqlx::Error| StoreError::Connect {
            target: pg_target(url),
            cause: innermost(&e),
        };
        let connect_url = pg_connect_url(url);
        let options = AnyConnectOptions::from_str(&connect_url).map_err(connect_err)?;
        // One connection first, so an unreachable server is reported with its cause
        // (refused, unknown host, bad password) rather than as a pool timeout.
        let probe = tokio::time::timeout(PG_CONNECT_TIMEOUT, AnyConnection::connect_with(&options))
            .await
            .map_err(|_| connect_err(sqlx::Error::PoolTimedOut))?
            .map_err(connect_err)?;
        probe.close().await.map_err(connect_err)?;
        let pool = AnyPoolOptions::new()
            .max_connections(connections.max(1))
            .acquire_timeout(PG_CONNECT_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(connect_err)?;
        let store = Self {
            pool,
            backend: Backend::Postgres,
            listen_url: Some(connect_url.as_ref().into()),
            clock_offset: Default::default(),
        };
        store.migrate().await?;
        store.sync_clock().await?;
        Ok(store)
    }

    async fn migrate(&self) -> StoreResult<()> {
        let list: &[(i64, &str, &str)] = match self.backend {
            Backend::Sqlite => &MIGRATIONS,
            Backend::Postgres => &PG_MIGRATIONS,
        };
        let migrations = list
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
        // lock alone would let two processes apply the same one). PostgreSQL instances
        // starting together queue on sqlx's advisory lock.
        migrator.set_locking(self.backend == Backend::Postgres);
        migrator
            .run(&self.pool)
            .await
            .map_err(|e| schema_error(e, self.backend))?;
        Ok(())
    }

    /// The time by the database's clock (as last measured): what lease times are written
    /// in and compared with.
    pub fn now(&self) -> DateTime<Utc> {
        let offset = self.clock_offset.load(std::sync::atomic::Ordering::Relaxed);
        let now = Utc::now();
        now.checked_add_signed(chrono::Duration::microseconds(offset))
            .unwrap_or(now)
    }

    /// Measures the database's clock against this host's (PostgreSQL only; a SQLite store
    /// is on this host). Done at open and with every lease renewal.
    pub async fn sync_clock(&self) -> StoreResult<()> {
        if self.backend != Backend::Postgres {
            return Ok(());
        }
        let before = Utc::now();
        let db: i64 = sqlx::query_scalar(
            "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)",
        )
        .fetch_one(&self.pool)
        .await?;
        let after = Utc::now();
        // The server read its clock somewhere between the two: take the middle.
        let middle = before.timestamp_micros() / 2 + after.timestamp_micros() / 2;
        self.clock_offset
            .store(db - middle, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// The connection pool, for tests that set up states no public path writes directly.
    #[cfg(test)]
    pub(crate) fn test_pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Closes the pool, checkpointing the WAL.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A trivial query, for health checks: an answer within 2 s, or an error (a health
    /// check must say "unhealthy" promptly while the database is unreachable).
    pub async fn ping(&self) -> StoreResult<()> {
        let query = sqlx::query("SELECT 1").execute(&self.pool);
        match tokio::time::timeout(Duration::from_secs(2), query).await {
            Ok(done) => {
                done?;
                Ok(())
            }
            Err(_) => Err(StoreError::Db(sqlx::Error::PoolTimedOut)),
        }
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// The permission bits, in octal.
    fn mode(path: &Path) -> String {
        format!(
            "{:o}",
            std::fs::metadata(path).unwrap().permissions().mode() & 0o777
        )
    }

    fn siblings(db: &Path) -> Vec<PathBuf> {
        ["", "-wal", "-shm"]
            .iter()
            .map(|suffix| {
                let mut path = db.as_os_str().to_owned();
                path.push(suffix);
                PathBuf::from(path)
            })
            .filter(|p| p.exists())
            .collect()
    }

    #[tokio::test]
    async fn a_new_database_and_its_wal_are_readable_by_their_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("orchestrator.db");
        let store = Store::open(db.to_str().unwrap(), 1).await.unwrap();
        let files = siblings(&db);
        assert_eq!(files.len(), 3, "{files:?}");
        for file in files {
            assert_eq!(mode(&file), "600", "{}", file.display());
        }
        store.close().await;
    }

    #[tokio::test]
    async fn an_existing_world_readable_database_is_tightened_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("orchestrator.db");
        let url = format!("sqlite:{}", db.display());
        let first = Store::open(&url, 1).await.unwrap();
        sqlx::query("CREATE TABLE keep_wal (x)")
            .execute(first.test_pool())
            .await
            .unwrap();
        // An older version left these 0644; a second process still has the WAL open.
        let loose = siblings(&db);
        assert_eq!(loose.len(), 3, "{loose:?}");
        for file in &loose {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let second = Store::open(&url, 1).await.unwrap();
        for file in &loose {
            assert_eq!(mode(file), "600", "{}", file.display());
        }
        second.close().await;
        first.close().await;
    }

    async fn a_database_a_newer_version_migrated_is_refused_with_a_clear_message(backend: Backend) {
        let db = testing::TestDb::open(backend).await;
        let checksum = match backend {
            Backend::Sqlite => "X'00'",
            Backend::Postgres => "CAST('\\x00' AS BYTEA)",
        };
        let sql = format!(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
             execution_time) VALUES (999, 'from the future', TRUE, {checksum}, 0)"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(db.test_pool())
            .await
            .unwrap();
        let err = Store::open(db.url(), 1).await.unwrap_err();
        assert!(matches!(err, StoreError::Schema(_)), "{err}");
        assert!(
            err.to_string()
                .contains("schema version 999, which this orchestrator does not know"),
            "{err}"
        );
    }

    testing::on_both!(a_database_a_newer_version_migrated_is_refused_with_a_clear_message);

    #[test]
    fn ipv6_hosts_reach_the_driver_bare() {
        use sqlx::postgres::PgConnectOptions;
        let url = "postgres://u:p%40ss@[::1]:5433/db?sslmode=disable";
        let options = PgConnectOptions::from_str(&pg_connect_url(url)).unwrap();
        assert_eq!(options.get_host(), "::1");
        assert_eq!(options.get_port(), 5433);
        assert_eq!(options.get_database(), Some("db"));
        assert_eq!(options.get_username(), "u");
        // Messages still name it as written; other hosts are left alone.
        assert_eq!(pg_target(url), "[::1]:5433/db as user u");
        for plain in [
            "postgres://u@127.0.0.1/db",
            "postgres://u@db.internal:6432/x?a=b",
        ] {
            assert_eq!(pg_connect_url(plain), plain);
        }
    }

    #[test]
    fn sqlite_paths_reach_the_driver_unchanged() {
        for path in [
            "sub dir/../orchestrator.db",
            "./../x/new.db",
            "back\\slash.db",
            "file:ff.db",
            "a?b#c%d.db",
            "/abs/./dir/../ünï.db",
        ] {
            let url = sqlite_url(path);
            // The URL the Any driver hands to SQLite is ours, unnormalised...
            let any = AnyConnectOptions::from_str(&url).unwrap();
            assert_eq!(any.database_url.as_str(), url, "{path}");
            // ...and SQLite opens exactly the path given.
            let options = SqliteConnectOptions::from_str(any.database_url.as_str()).unwrap();
            assert_eq!(options.get_filename(), Path::new(path), "{path}");
        }
    }
}
