//! Test databases on either backend, so the store's, the service's and the pages' tests run
//! the same bodies on SQLite and on PostgreSQL ([`on_both`]).
//!
//! PostgreSQL tests need `ORCHESTRATOR_TEST_POSTGRES`, the URL of a database they may create
//! schemas in (`.ci/run` provides one). Each test gets its own schema, dropped when its
//! [`TestDb`] is (also when the test fails), so tests run in parallel on one database.
//!
//! Public (hidden) so the integration tests use the same helpers; nothing else calls it, and
//! a test that cannot get its database should fail loudly, hence the panics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ops::Deref;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::Connection;

use super::{Backend, Store};

/// The variable naming the PostgreSQL database tests use.
pub const POSTGRES_VAR: &str = "ORCHESTRATOR_TEST_POSTGRES";

/// Schemas of crashed test processes are dropped once they are this old.
const STALE_SCHEMA: Duration = Duration::from_secs(6 * 3600);

/// A fresh, empty store for one test, removed when dropped.
pub struct TestDb {
    store: Store,
    _dir: Option<tempfile::TempDir>,
    schema: Option<(String, String)>,
    url: String,
}

impl Deref for TestDb {
    type Target = Store;

    fn deref(&self) -> &Store {
        &self.store
    }
}

/// The base URL of the PostgreSQL test database.
pub fn postgres_base() -> String {
    std::env::var(POSTGRES_VAR).unwrap_or_else(|_| {
        panic!(
            "{POSTGRES_VAR} is not set: PostgreSQL tests need the URL of a database they may \
             create schemas in, e.g. postgres://postgres@127.0.0.1:5432/test (`bash .ci/run` \
             sets it, starting a throwaway PostgreSQL when none answers)"
        )
    })
}

/// `base` with its connections' `search_path` set to `schema`, and named after it (so
/// [`drop_schema`] can end them).
pub fn with_schema(base: &str, schema: &str) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}&application_name={schema}")
}

/// Creates a uniquely named schema in the test database (dropping stale ones of crashed
/// runs); returns its name.
pub async fn create_schema(base: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let schema = format!("t_{now}_{}", &super::new_uid()[..12]);
    let mut conn = sqlx::AnyConnection::connect(base)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {POSTGRES_VAR} ({base}): {e}"));
    let old: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(nspname AS TEXT) FROM pg_namespace WHERE nspname LIKE 't\\_%\\_%'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    for name in old {
        let born = name
            .split('_')
            .nth(1)
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(now);
        if now.saturating_sub(born) > STALE_SCHEMA.as_secs() {
            let sql = format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE");
            let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await;
        }
    }
    let sql = format!("CREATE SCHEMA \"{schema}\"");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .unwrap();
    schema
}

/// Drops a schema made by [`create_schema`], from any context (a `Drop`, a panicking
/// test): on a thread of its own with its own runtime. The test's own connections are ended
/// first: its runtime is blocked meanwhile, so one it left in a transaction could never
/// roll back and release its locks.
pub fn drop_schema(base: &str, schema: &str) {
    let name = schema.to_string();
    let (base, schema) = (base.to_string(), schema.to_string());
    let dropped = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        runtime.block_on(async {
            let mut conn = sqlx::AnyConnection::connect(&base).await.ok()?;
            sqlx::query(
                "SELECT CAST(COUNT(pg_terminate_backend(pid)) AS BIGINT) FROM pg_stat_activity \
                 WHERE application_name = $1 AND pid <> pg_backend_pid()",
            )
            .bind(&schema)
            .execute(&mut conn)
            .await
            .ok()?;
            let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .ok()
        })
    })
    .join();
    if !matches!(dropped, Ok(Some(_))) {
        eprintln!("could not drop test schema {name}; it goes with the next stale sweep");
    }
}

impl TestDb {
    /// A new empty store on `backend`.
    pub async fn open(backend: Backend) -> Self {
        sqlx::any::install_default_drivers();
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = dir.path().join("state.db").display().to_string();
                let store = Store::open(&url, 2).await.unwrap();
                Self {
                    store,
                    _dir: Some(dir),
                    schema: None,
                    url,
                }
            }
            Backend::Postgres => {
                let base = postgres_base();
                let schema = create_schema(&base).await;
                let url = with_schema(&base, &schema);
                let store = Store::open(&url, 4).await.unwrap();
                Self {
                    store,
                    _dir: None,
                    schema: Some((base, schema)),
                    url,
                }
            }
        }
    }

    /// The store (a clone shares the database).
    pub fn store(&self) -> Store {
        self.store.clone()
    }

    /// The URL another process or pool opens the same database with.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((base, schema)) = &self.schema {
            drop_schema(base, schema);
        }
    }
}

/// A manual run of DAG `dag` with an empty conf, unreserved, for store tests.
pub fn manual_run(dag: &str) -> crate::store::NewRun {
    let now = chrono::Utc::now();
    crate::store::NewRun {
        dag_id: crate::ids::DagId::new(dag),
        run_type: crate::state::RunType::Manual,
        interval_start: now,
        interval_end: now,
        conf: serde_json::json!({}),
        parent: None,
        owner: None,
        version: None,
    }
}

/// Runs each listed `async fn name(backend: Backend)` as two tests, `name::sqlite` and
/// `name::postgres`: one test body, both backends.
#[cfg(test)]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    super::$name($crate::store::Backend::Sqlite).await
                }

                #[tokio::test]
                async fn postgres() {
                    super::$name($crate::store::Backend::Postgres).await
                }
            }
        )*
    };
}
#[cfg(test)]
pub(crate) use on_both;
