//! The PostgreSQL warehouse (`warehouse: postgres://…`): the same operations as the SQLite
//! one, on a pool of sqlx connections opened on first use.
//!
//! `load` streams: a blocking thread encodes each decoded batch into PostgreSQL's binary
//! `COPY` format ([`super::pg_copy`]) and hands it over a bounded channel to the connection,
//! which sends it at once, so a table is never held in memory whole. `replace` copies into
//! a staging table and swaps it in ([`super::pg_swap`]); `append` copies into the table by
//! column name. Each write and its ledger row commit in one transaction.
//!
//! Cancellation: every operation runs on a connection of its own, and when the try is
//! cancelled its backend is terminated from another connection, so a running statement
//! (or a `COPY`) stops at once and its transaction rolls back, releasing its locks; a write
//! whose statements all finished is still refused just before its `COMMIT`.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use futures_util::TryStreamExt;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgDatabaseError, PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Column, Connection, Either, PgConnection, Postgres, Row, Transaction};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use super::pg_copy::RowEncoder;
use super::pg_load::{CopyIn, building_name, create_staging, prepare_append, staging_name};
use super::{LoadMode, QueryRows, pg_swap, quote};
use crate::data::DataError;
use crate::data::ledger::postgres as ledger;
use crate::data::ledger::{Committed, LedgerTry, Ledgered, Operation, SCRIPT_ITEM};

/// How long connecting may take before the warehouse counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle pooled connections are closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a terminated backend's work may take to notice before it is abandoned.
const TERMINATE_WAIT: Duration = Duration::from_secs(5);

/// Batches of a table being loaded.
pub type Batches = Box<dyn Iterator<Item = Result<RecordBatch, DataError>> + Send>;

/// A PostgreSQL warehouse; cheap to clone (clones share the pool).
#[derive(Clone)]
pub struct PgWarehouse {
    inner: Arc<Inner>,
}

struct Inner {
    options: PgConnectOptions,
    /// `host:port/database as user`, for connection errors.
    target: String,
    /// The URL with its secrets masked, for every other message.
    shown: String,
    connections: u32,
    pool: OnceCell<PgPool>,
}

impl std::fmt::Debug for PgWarehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PgWarehouse")
            .field(&self.inner.shown)
            .finish()
    }
}

/// A connection taken for one operation, with its backend's process id.
struct Session {
    conn: PoolConnection<Postgres>,
    pid: i32,
}

impl PgWarehouse {
    /// The warehouse at `url`, with at most `connections` connections (none is opened yet).
    pub fn new(url: &str, connections: u32) -> Result<Self, DataError> {
        let shown = crate::redact::text(url).into_owned();
        let options =
            PgConnectOptions::from_str(&crate::store::pg_connect_url(url)).map_err(|e| {
                DataError::Location(format!("{shown}: {}", crate::redact::text(&e.to_string())))
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                options,
                target: crate::store::pg_target(url),
                shown,
                connections: connections.max(1),
                pool: OnceCell::new(),
            }),
        })
    }

    /// The URL, its secrets masked.
    pub fn shown(&self) -> &str {
        &self.inner.shown
    }

    /// Connects (once; later calls reuse the pool), reporting an unreachable server with
    /// its host, port, database and user and the cause.
    pub async fn check(&self) -> Result<(), DataError> {
        self.pool().await.map(drop)
    }

    async fn pool(&self) -> Result<&PgPool, DataError> {
        let inner = &self.inner;
        inner
            .pool
            .get_or_try_init(|| async {
                // One connection first, so an unreachable server is reported with its cause
                // (refused, unknown host, bad password) rather than as a pool timeout.
                let probe = self.connect().await?;
                let _ = probe.close().await;
                Ok(PgPoolOptions::new()
                    .max_connections(inner.connections)
                    .min_connections(0)
                    .acquire_timeout(CONNECT_TIMEOUT)
                    .idle_timeout(IDLE_TIMEOUT)
                    // A script's `SET search_path`, `SET ROLE` or temporary tables must not
                    // follow the connection into the next task (a fresh SQLite connection
                    // per operation has none of this). A connection that cannot be reset
                    // is closed instead.
                    .after_release(|conn, _| {
                        Box::pin(async move {
                            use sqlx::Executor;
                            conn.execute(
                                "RESET ALL; RESET ROLE; SET SESSION AUTHORIZATION DEFAULT; \
                                 DISCARD TEMP",
                            )
                            .await?;
                            Ok(true)
                        })
                    })
                    .connect_lazy_with(inner.options.clone()))
            })
            .await
    }

    /// A connection outside the pool.
    async fn connect(&self) -> Result<PgConnection, DataError> {
        let unreachable = |cause: String| DataError::WarehouseConnect {
            target: self.inner.target.clone(),
            cause,
        };
        tokio::time::timeout(
            CONNECT_TIMEOUT,
            PgConnection::connect_with(&self.inner.options),
        )
        .await
        .map_err(|_| unreachable(format!("no answer within {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| unreachable(innermost(&e)))
    }

    /// Maps a query's error to a warehouse error naming the URL.
    fn err(&self) -> impl Fn(sqlx::Error) -> DataError + Sync + Copy + '_ {
        move |e| DataError::Warehouse {
            path: self.inner.shown.clone(),
            message: db_message(&e),
        }
    }

    async fn session(&self) -> Result<Session, DataError> {
        let pool = self.pool().await?;
        let mut conn = pool
            .acquire()
            .await
            .map_err(|e| DataError::WarehouseConnect {
                target: self.inner.target.clone(),
                cause: innermost(&e),
            })?;
        let pid = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut *conn)
            .await
            .map_err(self.err())?;
        Ok(Session { conn, pid })
    }

    /// Runs `work` on `session` until it ends or `cancel` fires; then the session's backend
    /// is terminated, which ends the work with an error and rolls its transaction back (a
    /// commit that came first stands: the ledger tells a retry about it). A session whose
    /// work failed is closed rather than pooled: it may hold a transaction or a protocol
    /// exchange left half-way.
    async fn guarded<T>(
        &self,
        mut session: Session,
        cancel: &CancellationToken,
        work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, DataError>,
    ) -> Result<T, DataError> {
        if cancel.is_cancelled() {
            return Err(DataError::Cancelled(
                "the warehouse work was cancelled before it started".into(),
            ));
        }
        let pid = session.pid;
        let outcome = {
            let running = work(&mut session.conn);
            tokio::pin!(running);
            tokio::select! {
                biased;
                done = &mut running => done,
                () = cancel.cancelled() => {
                    self.terminate(pid).await;
                    match tokio::time::timeout(TERMINATE_WAIT, running).await {
                        Ok(Ok(done)) => Ok(done),
                        _ => Err(DataError::Cancelled(format!(
                            "warehouse {}: the statement was stopped",
                            self.inner.shown
                        ))),
                    }
                }
            }
        };
        if outcome.is_err() {
            session.conn.close_on_drop();
        }
        outcome
    }

    /// Ends backend `pid` (its transaction rolls back), from a connection of its own so
    /// that a full pool cannot delay it.
    async fn terminate(&self, pid: i32) {
        let ended = match self.connect().await {
            Ok(mut conn) => {
                let ended = sqlx::query_scalar::<_, bool>("SELECT pg_terminate_backend($1)")
                    .bind(pid)
                    .fetch_one(&mut conn)
                    .await;
                let _ = conn.close().await;
                ended.map_err(|e| db_message(&e))
            }
            Err(e) => Err(e.to_string()),
        };
        if !matches!(ended, Ok(true)) {
            // The connection is dropped anyway; the server rolls back once it notices.
            tracing::warn!(pid, result = ?ended, "could not end a cancelled warehouse statement");
        }
    }

    /// The write of `item` that a try of `who`'s attempt committed, if any.
    pub async fn committed(
        &self,
        who: &LedgerTry,
        item: &str,
    ) -> Result<Option<Committed>, DataError> {
        let mut session = self.session().await?;
        ledger::find(&mut session.conn, who, item)
            .await
            .map_err(self.err())
    }

    /// Loads `batches` into `table` and records it in the ledger, in one transaction.
    pub async fn load(
        &self,
        table: &str,
        schema: &SchemaRef,
        batches: Batches,
        mode: LoadMode,
        who: &LedgerTry,
        cancel: &CancellationToken,
    ) -> Result<Ledgered<u64>, DataError> {
        let encoder = RowEncoder::new(schema)?;
        let staging = staging_name(table)?;
        let session = self.session().await?;
        let copy = CopyIn::start(&encoder, batches, cancel);
        let err = self.err();
        self.guarded(session, cancel, async |conn: &mut PgConnection| {
            let mut tx = conn.begin().await.map_err(err)?;
            if let Some(done) = take_over(&mut tx, who, table).await.map_err(err)? {
                tx.rollback().await.map_err(err)?;
                return Ok(Ledgered::AlreadyCommitted(done));
            }
            let into = match mode {
                LoadMode::Replace => create_staging(&mut tx, &staging, &encoder, err).await?,
                LoadMode::Append => prepare_append(&mut tx, table, &encoder, err).await?,
            };
            let rows = copy.run(&mut tx, &into, err).await?;
            let operation = match mode {
                LoadMode::Replace => {
                    pg_swap::swap_in(&mut tx, &staging, table, &err).await?;
                    Operation::LoadReplace
                }
                LoadMode::Append => Operation::LoadAppend,
            };
            ledger::record(&mut tx, who, table, operation, rows)
                .await
                .map_err(err)?;
            commit_unless(tx, cancel, err, &format!("loading {table}")).await?;
            Ok(Ledgered::Written(rows))
        })
        .await
    }

    /// Runs a script and records it in the ledger, in one transaction; returns the first
    /// `keep` rows of the last statement that returned rows.
    pub async fn run_script(
        &self,
        sql: &str,
        keep: usize,
        who: &LedgerTry,
        cancel: &CancellationToken,
    ) -> Result<Ledgered<QueryRows>, DataError> {
        let session = self.session().await?;
        let err = self.err();
        self.guarded(session, cancel, async |conn: &mut PgConnection| {
            let mut tx = conn.begin().await.map_err(err)?;
            if let Some(done) = take_over(&mut tx, who, SCRIPT_ITEM).await.map_err(err)? {
                tx.rollback().await.map_err(err)?;
                return Ok(Ledgered::AlreadyCommitted(done));
            }
            let before = transaction_id(&mut tx).await.map_err(err)?;
            let (rows, changed) = run_sql(&mut tx, sql, keep).await.map_err(err)?;
            // A COMMIT or ROLLBACK in the script would end the transaction the ledger row
            // must share: what it committed could then be written again by a retry.
            if transaction_id(&mut tx).await.map_err(err)? != before {
                return Err(DataError::Refused(
                    "the sql script ends the transaction itself (COMMIT or ROLLBACK): the \
                     task runs a script in one transaction of its own; remove them (what it \
                     committed stays: the task is not retried)"
                        .into(),
                ));
            }
            ledger::record(&mut tx, who, SCRIPT_ITEM, Operation::SqlScript, changed)
                .await
                .map_err(err)?;
            commit_unless(tx, cancel, err, "the sql script").await?;
            Ok(Ledgered::Written(rows))
        })
        .await
    }

    /// Runs SQL (one or more statements, outside any ledger); returns the first `keep`
    /// rows of the last statement that returned rows.
    pub async fn query(
        &self,
        sql: &str,
        keep: usize,
        cancel: &CancellationToken,
    ) -> Result<QueryRows, DataError> {
        let session = self.session().await?;
        let err = self.err();
        self.guarded(session, cancel, async |conn: &mut PgConnection| {
            run_sql(conn, sql, keep)
                .await
                .map(|(rows, _)| rows)
                .map_err(err)
        })
        .await
    }

    /// Replaces `table` with the result of a query and records it in the ledger,
    /// atomically; returns its row count.
    pub async fn create_table_as(
        &self,
        table: &str,
        select: &str,
        who: &LedgerTry,
        cancel: &CancellationToken,
    ) -> Result<Ledgered<u64>, DataError> {
        let staging = building_name(table)?;
        let select = select.trim().trim_end_matches(';');
        let session = self.session().await?;
        let err = self.err();
        self.guarded(session, cancel, async |conn: &mut PgConnection| {
            let mut tx = conn.begin().await.map_err(err)?;
            if let Some(done) = take_over(&mut tx, who, table).await.map_err(err)? {
                tx.rollback().await.map_err(err)?;
                return Ok(Ledgered::AlreadyCommitted(done));
            }
            let staging_q = quote(&staging)?;
            execute(&mut tx, format!("DROP TABLE IF EXISTS {staging_q}"), err).await?;
            let create = format!("CREATE TABLE {staging_q} AS {select}");
            let rows = sqlx::query(AssertSqlSafe(create))
                .execute(&mut *tx)
                .await
                .map_err(err)?
                .rows_affected();
            pg_swap::swap_in(&mut tx, &staging, table, &err).await?;
            ledger::record(&mut tx, who, table, Operation::SqlIntoTable, rows)
                .await
                .map_err(err)?;
            commit_unless(tx, cancel, err, &format!("building {table}")).await?;
            Ok(Ledgered::Written(rows))
        })
        .await
    }
}

/// The earlier commit of `item` by `who`'s attempt, looked up inside the write transaction
/// (which creates the ledger when it is missing) under the item's lock.
async fn take_over(
    conn: &mut PgConnection,
    who: &LedgerTry,
    item: &str,
) -> sqlx::Result<Option<Committed>> {
    ledger::ensure(conn).await?;
    ledger::lock_item(conn, who, item).await?;
    ledger::find(conn, who, item).await
}

/// Commits `tx` unless the work was cancelled (then dropping it rolls back): the last gate
/// for a write whose statements all ended before the cancellation came.
async fn commit_unless(
    tx: Transaction<'_, Postgres>,
    cancel: &CancellationToken,
    err: impl Fn(sqlx::Error) -> DataError,
    what: &str,
) -> Result<(), DataError> {
    if cancel.is_cancelled() {
        return Err(DataError::Cancelled(format!(
            "{what} stopped before its commit"
        )));
    }
    tx.commit().await.map_err(err)
}

pub(super) async fn execute(
    conn: &mut PgConnection,
    sql: String,
    err: impl Fn(sqlx::Error) -> DataError,
) -> Result<(), DataError> {
    sqlx::query(AssertSqlSafe(sql))
        .execute(conn)
        .await
        .map(drop)
        .map_err(err)
}

/// The current transaction's id (assigning one).
async fn transaction_id(conn: &mut PgConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT txid_current()")
        .fetch_one(conn)
        .await
}

/// Runs a script through the simple query protocol (several statements, results as text);
/// returns the first `keep` rows of the last statement that returned rows, and the rows
/// changed by the statements that returned none. (PostgreSQL tells a statement's columns
/// only with its rows, so a last query that returns no row leaves the earlier result.)
async fn run_sql(
    conn: &mut PgConnection,
    sql: &str,
    keep: usize,
) -> sqlx::Result<(QueryRows, u64)> {
    let mut out = QueryRows::default();
    let mut current: Option<QueryRows> = None;
    let mut changed = 0u64;
    let mut results = sqlx::raw_sql(AssertSqlSafe(sql.to_string())).fetch_many(conn);
    while let Some(item) = results.try_next().await? {
        match item {
            Either::Right(row) => {
                let rows = current.get_or_insert_with(|| QueryRows {
                    columns: row.columns().iter().map(|c| c.name().to_string()).collect(),
                    ..QueryRows::default()
                });
                if rows.rows.len() < keep {
                    rows.rows.push(cells(&row)?);
                }
                rows.total += 1;
            }
            Either::Left(done) => match current.take() {
                Some(rows) => out = rows,
                None => changed += done.rows_affected(),
            },
        }
    }
    Ok((out, changed))
}

/// A row's values as display text (`NULL` for null), as the server printed them.
fn cells(row: &PgRow) -> sqlx::Result<Vec<String>> {
    use sqlx::ValueRef;
    (0..row.len())
        .map(|i| {
            let value = row.try_get_raw(i)?;
            if value.is_null() {
                return Ok("NULL".to_string());
            }
            value
                .as_str()
                .map(str::to_string)
                .map_err(sqlx::Error::Decode)
        })
        .collect()
}

/// A database error's message and detail, without sqlx's wrapping.
pub(super) fn db_message(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => {
            let detail = d
                .try_downcast_ref::<PgDatabaseError>()
                .and_then(PgDatabaseError::detail);
            match detail {
                Some(detail) => format!("{} ({detail})", d.message()),
                None => d.message().to_string(),
            }
        }
        other => innermost(other),
    }
}

/// The deepest cause of an error.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
