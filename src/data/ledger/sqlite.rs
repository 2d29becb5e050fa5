//! The ledger's statements on a SQLite warehouse (rusqlite, inside the write's own
//! transaction).

use rusqlite::{Connection, OptionalExtension, params};

use super::{Committed, LEDGER_TABLE, LedgerTry, Operation};

/// Creates the ledger table if it does not exist (inside the caller's write transaction).
pub(crate) fn ensure(conn: &Connection) -> rusqlite::Result<()> {
    // The key leads with what a lookup fixes and ends with the try range it scans.
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {LEDGER_TABLE} (
            run_uid      TEXT    NOT NULL,
            task_id      TEXT    NOT NULL,
            item         TEXT    NOT NULL,
            try_number   INTEGER NOT NULL,
            dag_id       TEXT    NOT NULL,
            run_id       TEXT    NOT NULL,
            operation    TEXT    NOT NULL,
            rows         INTEGER NOT NULL,
            committed_at TEXT    NOT NULL,
            PRIMARY KEY (run_uid, task_id, item, try_number)
        ) WITHOUT ROWID;"
    ))
}

/// The latest write of `item` by a try of `who`'s attempt, if one committed. A warehouse
/// without a ledger has none.
pub(crate) fn find(
    conn: &Connection,
    who: &LedgerTry,
    item: &str,
) -> rusqlite::Result<Option<Committed>> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
        [LEDGER_TABLE],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(None);
    }
    // Every try of the current attempt counts, the current one included (a try writes an
    // item once): an earlier one that crashed, timed out or was interrupted by shutdown
    // (it runs again under the next number) may have committed before it stopped.
    conn.query_row(
        &format!(
            "SELECT try_number, rows FROM {LEDGER_TABLE}
             WHERE run_uid = ?1 AND task_id = ?2 AND item = ?3
               AND try_number BETWEEN ?4 AND ?5
             ORDER BY try_number DESC LIMIT 1"
        ),
        params![
            who.run_uid,
            who.task_id,
            item,
            who.first_try,
            who.try_number
        ],
        |r| {
            Ok(Committed {
                try_number: r.get(0)?,
                rows: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
            })
        },
    )
    .optional()
}

/// Records a write of `item` by `who` (inside the write's own transaction).
pub(crate) fn record(
    conn: &Connection,
    who: &LedgerTry,
    item: &str,
    operation: Operation,
    rows: u64,
) -> rusqlite::Result<()> {
    conn.execute(
        &format!(
            "INSERT INTO {LEDGER_TABLE} (run_uid, task_id, item, try_number, dag_id, run_id,
                 operation, rows, committed_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"
        ),
        params![
            who.run_uid,
            who.task_id,
            item,
            who.try_number,
            who.dag_id,
            who.run_id,
            operation.as_str(),
            i64::try_from(rows).unwrap_or(i64::MAX),
        ],
    )
    .map(drop)
}
