//! The warehouse ledger: table `_orchestrator_ledger`, one row per warehouse write that a
//! try of a task committed, written in the same transaction as the write itself. A retry
//! reads it to tell whether an earlier try of the same attempt already committed the write
//! (the crash fell between the warehouse commit and the state-store commit), and then takes
//! that result instead of writing twice. Used by [`super::warehouse::Warehouse`] only.

use rusqlite::{Connection, OptionalExtension, params};

/// Name of the ledger table in the warehouse.
pub const LEDGER_TABLE: &str = "_orchestrator_ledger";

/// The ledger item of a `sql` script (tables are their own items; no table has this name).
pub const SCRIPT_ITEM: &str = "(script)";

/// The try that writes: the ledger key of its writes, less the item written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerTry {
    /// Unique id of the run across state databases.
    pub run_uid: String,
    /// DAG of the run (for people reading the ledger).
    pub dag_id: String,
    /// Run id (for people reading the ledger).
    pub run_id: String,
    /// The writing task.
    pub task_id: String,
    /// First try of the current attempt: rows of tries `first_try..=try_number` count.
    pub first_try: u32,
    /// This try.
    pub try_number: u32,
}

/// A write an earlier try (or an earlier run of this try) committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The try that committed it.
    pub try_number: u32,
    /// Rows it wrote (loaded, in the result table, or changed by the script).
    pub rows: u64,
}

/// The result of a write recorded in the ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ledgered<T> {
    /// This try wrote and committed it.
    Written(T),
    /// A try of the same attempt had committed it already; nothing was written.
    AlreadyCommitted(Committed),
}

/// What kind of write a ledger row records (column `operation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// `load`, mode replace.
    LoadReplace,
    /// `load`, mode append.
    LoadAppend,
    /// `sql` with `into_table`.
    SqlIntoTable,
    /// `sql` script.
    SqlScript,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Self::LoadReplace => "load_replace",
            Self::LoadAppend => "load_append",
            Self::SqlIntoTable => "sql_into_table",
            Self::SqlScript => "sql_script",
        }
    }
}

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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, mpsc};

    use arrow_array::{Int64Array, RecordBatch};
    use arrow_schema::{DataType, Field, Schema, SchemaRef};

    use super::*;
    use crate::data::DataError;
    use crate::data::warehouse::{LoadMode, Warehouse};

    /// Enough rows that a statement making them runs for seconds: it can only end early by
    /// being interrupted.
    const MANY_ROWS: u64 = 20_000_000;

    fn try_of(first_try: u32, try_number: u32) -> LedgerTry {
        LedgerTry {
            run_uid: "run-1".into(),
            dag_id: "d".into(),
            run_id: "manual__1".into(),
            task_id: "load".into(),
            first_try,
            try_number,
        }
    }

    fn ids(
        ids: &[i64],
    ) -> (
        SchemaRef,
        impl Iterator<Item = Result<RecordBatch, DataError>>,
    ) {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
        let array = Arc::new(Int64Array::from(ids.to_vec()));
        let batch = RecordBatch::try_new(schema.clone(), vec![array]).unwrap();
        (schema, std::iter::once(Ok(batch)))
    }

    fn open() -> (tempfile::TempDir, Warehouse) {
        let dir = tempfile::tempdir().unwrap();
        let w = Warehouse::open(&dir.path().join("w.db")).unwrap();
        (dir, w)
    }

    fn scalar(w: &Warehouse, sql: &str) -> String {
        w.query(sql, 1).unwrap().rows[0][0].clone()
    }

    fn append(w: &mut Warehouse, rows: &[i64], who: &LedgerTry) -> Ledgered<u64> {
        let (schema, batches) = ids(rows);
        w.load("t", &schema, batches, LoadMode::Append, who)
            .unwrap()
    }

    #[test]
    fn a_load_records_its_try_in_the_same_transaction_and_a_failed_one_records_nothing() {
        let (_dir, mut w) = open();
        let (schema, batches) = ids(&[1, 2, 3]);
        let broken = batches.chain(std::iter::once(Err(DataError::Format("bad file".into()))));
        let err = w
            .load("t", &schema, broken, LoadMode::Append, &try_of(1, 1))
            .unwrap_err();
        assert_eq!(err.to_string(), "bad file");
        let ledgers = format!("SELECT COUNT(*) FROM sqlite_master WHERE name = '{LEDGER_TABLE}'");
        assert_eq!(
            scalar(&w, &ledgers),
            "0",
            "the ledger rolled back with the load"
        );
        assert_eq!(w.committed(&try_of(1, 2), "t").unwrap(), None);

        assert_eq!(
            append(&mut w, &[1, 2, 3], &try_of(1, 2)),
            Ledgered::Written(3)
        );
        let row = w
            .query(
                &format!("SELECT run_uid, task_id, item, try_number, dag_id, run_id, operation, rows FROM {LEDGER_TABLE}"),
                1,
            )
            .unwrap()
            .rows;
        assert_eq!(
            row[0],
            [
                "run-1",
                "load",
                "t",
                "2",
                "d",
                "manual__1",
                "load_append",
                "3"
            ]
        );
    }

    #[test]
    fn a_retry_in_the_same_attempt_takes_the_committed_load_and_a_new_attempt_writes_again() {
        let (_dir, mut w) = open();
        assert_eq!(
            append(&mut w, &[1, 2, 3], &try_of(1, 1)),
            Ledgered::Written(3)
        );
        let earlier = Committed {
            try_number: 1,
            rows: 3,
        };
        // Try 2 of the same attempt, and try 1 again (resumed after a shutdown).
        for who in [try_of(1, 2), try_of(1, 1)] {
            assert_eq!(w.committed(&who, "t").unwrap(), Some(earlier));
            assert_eq!(
                append(&mut w, &[7, 8], &who),
                Ledgered::AlreadyCommitted(earlier)
            );
        }
        assert_eq!(
            scalar(&w, "SELECT COUNT(*) FROM t"),
            "3",
            "not appended twice"
        );
        // Cleared: the attempt starts at try 3, so tries 1 and 2 no longer count.
        assert_eq!(w.committed(&try_of(3, 3), "t").unwrap(), None);
        assert_eq!(append(&mut w, &[7, 8], &try_of(3, 3)), Ledgered::Written(2));
        assert_eq!(scalar(&w, "SELECT COUNT(*) FROM t"), "5");
        // Another task, another run, another table: each is its own entry.
        let other = LedgerTry {
            task_id: "other".into(),
            ..try_of(1, 4)
        };
        assert_eq!(w.committed(&other, "t").unwrap(), None);
        assert_eq!(w.committed(&try_of(1, 4), "u").unwrap(), None);
    }

    #[test]
    fn sql_scripts_and_result_tables_are_taken_over_within_an_attempt() {
        let (_dir, mut w) = open();
        let script = "CREATE TABLE IF NOT EXISTS x (a); INSERT INTO x VALUES (1), (2)";
        let Ledgered::Written(_) = w.run_script(script, 0, &try_of(1, 1)).unwrap() else {
            panic!("the first try runs the script");
        };
        assert_eq!(
            w.run_script(script, 0, &try_of(1, 2)).unwrap(),
            Ledgered::AlreadyCommitted(Committed {
                try_number: 1,
                rows: 2
            })
        );
        assert_eq!(scalar(&w, "SELECT COUNT(*) FROM x"), "2");
        let select = "SELECT a FROM x";
        assert_eq!(
            w.create_table_as("y", select, &try_of(1, 2)).unwrap(),
            Ledgered::Written(2)
        );
        w.run_script("INSERT INTO x VALUES (3)", 0, &try_of(3, 3))
            .unwrap();
        let earlier = Committed {
            try_number: 2,
            rows: 2,
        };
        assert_eq!(
            w.create_table_as("y", select, &try_of(1, 3)).unwrap(),
            Ledgered::AlreadyCommitted(earlier)
        );
        assert_eq!(
            scalar(&w, "SELECT COUNT(*) FROM y"),
            "2",
            "the table was kept"
        );
    }

    #[test]
    fn a_cancelled_long_statement_is_interrupted_and_rolls_back() {
        let (dir, mut w) = open();
        let cancelled = Arc::new(AtomicBool::new(false));
        let (running, started) = mpsc::channel();
        let flag = Arc::clone(&cancelled);
        // The first progress check proves the statement runs; the cancellation then comes
        // from another thread, as an execution timeout's does.
        w.cancel_when(move || {
            let _ = running.send(());
            flag.load(Ordering::SeqCst)
        })
        .unwrap();
        let canceller = std::thread::spawn(move || {
            let _ = started.recv();
            cancelled.store(true, Ordering::SeqCst);
        });
        let script = format!(
            "CREATE TABLE big (n INTEGER);
             INSERT INTO big WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c
             WHERE n < {MANY_ROWS}) SELECT n FROM c"
        );
        let err = w.run_script(&script, 0, &try_of(1, 1)).unwrap_err();
        canceller.join().unwrap();
        assert!(matches!(err, DataError::Cancelled(_)), "{err}");
        let tables =
            "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('big', '_orchestrator_ledger')";
        let fresh = Warehouse::open(&dir.path().join("w.db")).unwrap();
        assert_eq!(scalar(&fresh, tables), "0", "nothing was committed");
    }

    #[test]
    fn a_write_cancelled_after_its_last_statement_does_not_commit() {
        let (dir, mut w) = open();
        // Cancelled all along, but the statements are too short to reach a progress
        // check: the check before COMMIT is what stops them.
        w.cancel_when(|| true).unwrap();
        let err = w
            .create_table_as("y", "SELECT 1 AS a", &try_of(1, 1))
            .unwrap_err();
        assert!(matches!(err, DataError::Cancelled(_)), "{err}");
        let (schema, batches) = ids(&[1]);
        let err = w
            .load("t", &schema, batches, LoadMode::Replace, &try_of(1, 1))
            .unwrap_err();
        assert!(matches!(err, DataError::Cancelled(_)), "{err}");
        let err = w
            .run_script("CREATE TABLE z (a)", 0, &try_of(1, 1))
            .unwrap_err();
        assert!(matches!(err, DataError::Cancelled(_)), "{err}");
        let fresh = Warehouse::open(&dir.path().join("w.db")).unwrap();
        assert_eq!(scalar(&fresh, "SELECT COUNT(*) FROM sqlite_master"), "0");
    }
}
