//! The ledger's statements on a PostgreSQL warehouse (sqlx, inside the write's own
//! transaction). Same table, key and columns as on SQLite; `committed_at` is kept as the
//! same ISO text so that the two read alike.

use sqlx::{AssertSqlSafe, PgConnection, Row};

use super::{Committed, LEDGER_TABLE, LedgerTry, Operation};
use crate::data::warehouse::IN_CURRENT_SCHEMA;

/// Advisory lock taken by a transaction that creates the ledger: two first writes at once
/// would otherwise both create it, and the second would fail on the first's uncommitted
/// table instead of finding it.
const CREATE_LOCK: i64 = 0x6f72_6368_6c65_6467; // "orchledg"

/// Whether the ledger exists (in the schemas of the connection's search path).
async fn exists(conn: &mut PgConnection) -> sqlx::Result<bool> {
    sqlx::query_scalar(IN_CURRENT_SCHEMA)
        .bind(LEDGER_TABLE)
        .fetch_one(conn)
        .await
}

/// Creates the ledger table if it does not exist (inside the caller's write transaction).
pub(crate) async fn ensure(conn: &mut PgConnection) -> sqlx::Result<()> {
    if exists(conn).await? {
        return Ok(());
    }
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(CREATE_LOCK)
        .execute(&mut *conn)
        .await?;
    // The key leads with what a lookup fixes and ends with the try range it scans.
    let create = format!(
        "CREATE TABLE IF NOT EXISTS {LEDGER_TABLE} (
            run_uid      TEXT   NOT NULL,
            task_id      TEXT   NOT NULL,
            item         TEXT   NOT NULL,
            try_number   BIGINT NOT NULL,
            dag_id       TEXT   NOT NULL,
            run_id       TEXT   NOT NULL,
            operation    TEXT   NOT NULL,
            rows         BIGINT NOT NULL,
            committed_at TEXT   NOT NULL,
            PRIMARY KEY (run_uid, task_id, item, try_number)
        )"
    );
    sqlx::query(AssertSqlSafe(create)).execute(conn).await?;
    Ok(())
}

/// Serialises the writes of one item by one attempt until the caller's transaction ends:
/// a second writer (which the engine never starts, but a mistake could) waits, then finds
/// the first one's ledger row instead of writing again. SQLite gets this from its single
/// writer.
pub(crate) async fn lock_item(
    conn: &mut PgConnection,
    who: &LedgerTry,
    item: &str,
) -> sqlx::Result<()> {
    let key = format!("{}\u{1f}{}\u{1f}{item}", who.run_uid, who.task_id);
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(key)
        .execute(conn)
        .await
        .map(drop)
}

/// The latest write of `item` by a try of `who`'s attempt, if one committed. A warehouse
/// without a ledger has none.
pub(crate) async fn find(
    conn: &mut PgConnection,
    who: &LedgerTry,
    item: &str,
) -> sqlx::Result<Option<Committed>> {
    if !exists(conn).await? {
        return Ok(None);
    }
    // Every try of the current attempt counts, the current one included (see the SQLite
    // twin for why).
    let find = format!(
        "SELECT try_number, rows FROM {LEDGER_TABLE}
         WHERE run_uid = $1 AND task_id = $2 AND item = $3
           AND try_number BETWEEN $4 AND $5
         ORDER BY try_number DESC LIMIT 1"
    );
    let row = sqlx::query(AssertSqlSafe(find))
        .bind(&who.run_uid)
        .bind(&who.task_id)
        .bind(item)
        .bind(i64::from(who.first_try))
        .bind(i64::from(who.try_number))
        .fetch_optional(conn)
        .await?;
    row.map(|r| {
        Ok(Committed {
            try_number: u32::try_from(r.try_get::<i64, _>(0)?).unwrap_or(u32::MAX),
            rows: u64::try_from(r.try_get::<i64, _>(1)?).unwrap_or(0),
        })
    })
    .transpose()
}

/// Records a write of `item` by `who` (inside the write's own transaction).
pub(crate) async fn record(
    conn: &mut PgConnection,
    who: &LedgerTry,
    item: &str,
    operation: Operation,
    rows: u64,
) -> sqlx::Result<()> {
    let insert = format!(
        "INSERT INTO {LEDGER_TABLE} (run_uid, task_id, item, try_number, dag_id, run_id,
             operation, rows, committed_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8,
             to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'))"
    );
    sqlx::query(AssertSqlSafe(insert))
        .bind(&who.run_uid)
        .bind(&who.task_id)
        .bind(item)
        .bind(i64::from(who.try_number))
        .bind(&who.dag_id)
        .bind(&who.run_id)
        .bind(operation.as_str())
        .bind(i64::try_from(rows).unwrap_or(i64::MAX))
        .execute(conn)
        .await
        .map(drop)
}
