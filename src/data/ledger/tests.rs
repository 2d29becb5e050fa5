//! The ledger's guarantees, one body per test run on SQLite and on PostgreSQL; then how
//! each engine stops a long statement of a cancelled try.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::data::DataError;
use crate::data::warehouse::testing::{TestWarehouse, batches, ids};
use crate::data::warehouse::{LoadMode, SqliteWarehouse, Warehouse};
use crate::store::Backend;

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

async fn append(w: &Warehouse, rows: &[i64], who: &LedgerTry) -> Ledgered<u64> {
    let (schema, batch) = ids(rows);
    w.load("t", &schema, batches(vec![batch]), LoadMode::Append, who)
        .await
        .unwrap()
}

async fn a_load_records_its_try_in_the_same_transaction_and_a_failed_one_records_nothing(
    backend: Backend,
) {
    let w = TestWarehouse::open(backend).await;
    let (schema, batch) = ids(&[1, 2, 3]);
    let broken = vec![Ok(batch), Err(DataError::Format("bad file".into()))];
    let err = w
        .load(
            "t",
            &schema,
            Box::new(broken.into_iter()),
            LoadMode::Append,
            &try_of(1, 1),
        )
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "bad file");
    assert!(
        w.tables().await.is_empty(),
        "the ledger rolled back with the load"
    );
    assert_eq!(w.committed(&try_of(1, 2), "t").await.unwrap(), None);

    assert_eq!(
        append(&w, &[1, 2, 3], &try_of(1, 2)).await,
        Ledgered::Written(3)
    );
    let row = w
        .query(
            &format!(
                "SELECT run_uid, task_id, item, try_number, dag_id, run_id, operation, rows, \
                 committed_at FROM {LEDGER_TABLE}"
            ),
            1,
        )
        .await
        .unwrap()
        .rows;
    assert_eq!(
        row[0][..8],
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
    // The same ISO form on both engines.
    let at = &row[0][8];
    assert!(
        at.len() == 24 && at.ends_with('Z') && at.as_bytes()[10] == b'T',
        "{at}"
    );
}

async fn a_retry_in_the_same_attempt_takes_the_committed_load_and_a_new_attempt_writes_again(
    backend: Backend,
) {
    let w = TestWarehouse::open(backend).await;
    assert_eq!(
        append(&w, &[1, 2, 3], &try_of(1, 1)).await,
        Ledgered::Written(3)
    );
    let earlier = Committed {
        try_number: 1,
        rows: 3,
    };
    // Try 2 of the same attempt, and try 1 again (resumed after a shutdown).
    for who in [try_of(1, 2), try_of(1, 1)] {
        assert_eq!(w.committed(&who, "t").await.unwrap(), Some(earlier));
        assert_eq!(
            append(&w, &[7, 8], &who).await,
            Ledgered::AlreadyCommitted(earlier)
        );
    }
    assert_eq!(
        w.scalar("SELECT COUNT(*) FROM t").await,
        "3",
        "not appended twice"
    );
    // Cleared: the attempt starts at try 3, so tries 1 and 2 no longer count.
    assert_eq!(w.committed(&try_of(3, 3), "t").await.unwrap(), None);
    assert_eq!(
        append(&w, &[7, 8], &try_of(3, 3)).await,
        Ledgered::Written(2)
    );
    assert_eq!(w.scalar("SELECT COUNT(*) FROM t").await, "5");
    // Another task, another run, another table: each is its own entry.
    let other = LedgerTry {
        task_id: "other".into(),
        ..try_of(1, 4)
    };
    assert_eq!(w.committed(&other, "t").await.unwrap(), None);
    assert_eq!(w.committed(&try_of(1, 4), "u").await.unwrap(), None);
}

async fn sql_scripts_and_result_tables_are_taken_over_within_an_attempt(backend: Backend) {
    let w = TestWarehouse::open(backend).await;
    let script = "CREATE TABLE IF NOT EXISTS x (a BIGINT); INSERT INTO x VALUES (1), (2)";
    let Ledgered::Written(_) = w.run_script(script, 0, &try_of(1, 1)).await.unwrap() else {
        panic!("the first try runs the script");
    };
    assert_eq!(
        w.run_script(script, 0, &try_of(1, 2)).await.unwrap(),
        Ledgered::AlreadyCommitted(Committed {
            try_number: 1,
            rows: 2
        })
    );
    assert_eq!(w.scalar("SELECT COUNT(*) FROM x").await, "2");
    let select = "SELECT a FROM x";
    assert_eq!(
        w.create_table_as("y", select, &try_of(1, 2)).await.unwrap(),
        Ledgered::Written(2)
    );
    w.run_script("INSERT INTO x VALUES (3)", 0, &try_of(3, 3))
        .await
        .unwrap();
    let earlier = Committed {
        try_number: 2,
        rows: 2,
    };
    assert_eq!(
        w.create_table_as("y", select, &try_of(1, 3)).await.unwrap(),
        Ledgered::AlreadyCommitted(earlier)
    );
    assert_eq!(
        w.scalar("SELECT COUNT(*) FROM y").await,
        "2",
        "the table was kept"
    );
}

async fn a_write_cancelled_after_its_last_statement_does_not_commit(backend: Backend) {
    let w = TestWarehouse::open(backend).await;
    // Cancelled all along: whatever the engine noticed first, the commit is refused.
    let cancel = CancellationToken::new();
    cancel.cancel();
    let stopped = w.cancelled_by(cancel);
    let err = stopped
        .create_table_as("y", "SELECT 1 AS a", &try_of(1, 1))
        .await
        .unwrap_err();
    assert!(matches!(err, DataError::Cancelled(_)), "{err}");
    let (schema, batch) = ids(&[1]);
    let err = stopped
        .load(
            "t",
            &schema,
            batches(vec![batch]),
            LoadMode::Replace,
            &try_of(1, 1),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, DataError::Cancelled(_)), "{err}");
    let err = stopped
        .run_script("CREATE TABLE z (a BIGINT)", 0, &try_of(1, 1))
        .await
        .unwrap_err();
    assert!(matches!(err, DataError::Cancelled(_)), "{err}");
    assert!(w.tables().await.is_empty(), "nothing was committed");
}

crate::store::testing::on_both!(
    a_load_records_its_try_in_the_same_transaction_and_a_failed_one_records_nothing,
    a_retry_in_the_same_attempt_takes_the_committed_load_and_a_new_attempt_writes_again,
    sql_scripts_and_result_tables_are_taken_over_within_an_attempt,
    a_write_cancelled_after_its_last_statement_does_not_commit,
);

#[test]
fn a_cancelled_long_statement_is_interrupted_and_rolls_back_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = SqliteWarehouse::open(&dir.path().join("w.db")).unwrap();
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
    let tables = "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('big', '_orchestrator_ledger')";
    let fresh = SqliteWarehouse::open(&dir.path().join("w.db")).unwrap();
    assert_eq!(
        fresh.query(tables, 1).unwrap().rows[0][0],
        "0",
        "nothing was committed"
    );
}

/// On PostgreSQL the cancelled try's backend is terminated: the statement stops at once
/// (this one would sleep for ten minutes), its transaction rolls back and its locks go.
#[tokio::test]
async fn a_cancelled_long_statement_is_interrupted_and_rolls_back_on_postgres() {
    let w = TestWarehouse::open(Backend::Postgres).await;
    let cancel = CancellationToken::new();
    let stopping = w.cancelled_by(cancel.clone());
    let script = "CREATE TABLE big (n BIGINT); INSERT INTO big SELECT 1 FROM pg_sleep(600)";
    let running = tokio::spawn(async move { stopping.run_script(script, 0, &try_of(1, 1)).await });
    let active = "SELECT COUNT(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(600)%' \
                  AND state = 'active' AND pid <> pg_backend_pid() \
                  AND application_name = current_setting('application_name')";
    let observer = w.reopen();
    let sleeping = |count: &'static str| {
        let observer = observer.clone();
        async move {
            while observer.query(active, 1).await.unwrap().rows[0][0] != count {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), sleeping("1"))
        .await
        .expect("the statement starts");
    cancel.cancel();
    let err = tokio::time::timeout(Duration::from_secs(60), running)
        .await
        .expect("the cancelled statement stops")
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, DataError::Cancelled(_)), "{err}");
    // Its backend is gone a moment after the connection closed: well before the sleep ends.
    tokio::time::timeout(Duration::from_secs(60), sleeping("0"))
        .await
        .expect("the statement is no longer running");
    assert!(w.tables().await.is_empty(), "nothing was committed");
}
