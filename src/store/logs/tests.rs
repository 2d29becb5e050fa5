use chrono::Utc;

use super::*;
use crate::ids::DagId;
use crate::state::RunType;
use crate::store::NewRun;
use crate::tasks::{LogLimits, TaskLog};

async fn store_with_run(
    backend: crate::store::Backend,
) -> (
    crate::store::testing::TestDb,
    Store,
    RunKey,
    crate::store::Owner,
) {
    let dir = crate::store::testing::TestDb::open(backend).await;
    let store = dir.store();
    let new = NewRun {
        dag_id: DagId::new("d"),
        run_type: RunType::Manual,
        interval_start: Utc::now(),
        interval_end: Utc::now(),
        conf: serde_json::json!({}),
        parent: None,
        owner: None,
        version: None,
    };
    let key = store.insert_run(&new).await.unwrap().unwrap().key;
    // Scheduler writes are fenced: the run must be owned by a live instance.
    let owner = store
        .register_instance(
            crate::store::InstanceKind::Foreground,
            std::time::Duration::from_secs(600),
        )
        .await
        .unwrap();
    assert!(
        store
            .claim_run(key, &owner, &[(TaskId::new("t"), 1)])
            .await
            .unwrap()
    );
    (dir, store, key, owner)
}

fn logs_change(run: RunKey, log: &TaskLog) -> Change {
    let batch = log.drain();
    Change::Logs {
        run,
        task: TaskId::new("t"),
        try_number: 1,
        lines: batch.lines,
        dropped: batch.dropped,
    }
}

async fn stored_logs_keep_their_seqs_and_a_drop_leaves_head_marker_and_tail(
    backend: crate::store::Backend,
) {
    let (_dir, store, run, owner) = store_with_run(backend).await;
    let task = TaskId::new("t");
    let log = TaskLog::new(LogLimits::new(4200));
    for i in 1..=30 {
        log.write("STDOUT", format!("line {i:05}"));
    }
    store
        .commit(&owner, &[logs_change(run, &log)])
        .await
        .unwrap();
    let first: Vec<u64> = store
        .logs(run, &task, 1)
        .await
        .unwrap()
        .iter()
        .map(|l| l.seq)
        .collect();
    assert_eq!(first, (1..=30).collect::<Vec<_>>());
    // Two flushes in one commit: the second drops lines the first brought.
    for i in 31..=120 {
        log.write("STDOUT", format!("line {i:05}"));
    }
    let a = logs_change(run, &log);
    for i in 121..=200 {
        log.write("STDOUT", format!("line {i:05}"));
    }
    let b = logs_change(run, &log);
    store.commit(&owner, &[a, b]).await.unwrap();
    let lines = store.logs(run, &task, 1).await.unwrap();
    let seqs: Vec<u64> = lines.iter().map(|l| l.seq).collect();
    assert_eq!(seqs, (1..=51).chain(151..=200).collect::<Vec<_>>());
    assert_eq!(lines[50].level, "DROP");
    assert!(
        lines[50]
            .message
            .starts_with("... 100 line(s), 1000 byte(s) dropped here (seq 51 to 150)")
    );
    assert_eq!(lines[51].message, "line 00151");
    // A follower positioned inside the dropped range continues with the next kept line.
    let next = store.logs_after(run, &task, 1, 70, 2).await.unwrap();
    let next: Vec<(u64, &str)> = next.iter().map(|l| (l.seq, l.message.as_str())).collect();
    assert_eq!(next, [(151, "line 00151"), (152, "line 00152")]);
    assert!(
        store
            .logs_after(run, &task, 1, 200, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_tail_reads_the_last_lines_before_a_seq_in_order(backend: crate::store::Backend) {
    let (_dir, store, run, owner) = store_with_run(backend).await;
    let task = TaskId::new("t");
    let log = TaskLog::new(LogLimits::new(1 << 20));
    for i in 1..=30 {
        log.write("STDOUT", format!("line {i:05}"));
    }
    store
        .commit(&owner, &[logs_change(run, &log)])
        .await
        .unwrap();
    let seqs = |lines: Vec<LogLine>| lines.iter().map(|l| l.seq).collect::<Vec<_>>();
    let tail = store.logs_before(run, &task, 1, u64::MAX, 5).await.unwrap();
    assert_eq!(tail[0].message, "line 00026");
    assert_eq!(seqs(tail), [26, 27, 28, 29, 30]);
    let earlier = store.logs_before(run, &task, 1, 26, 3).await.unwrap();
    assert_eq!(seqs(earlier), [23, 24, 25]);
    let all = store
        .logs_before(run, &task, 1, u64::MAX, 100)
        .await
        .unwrap();
    assert_eq!(seqs(all), (1..=30).collect::<Vec<_>>());
    assert!(
        store
            .logs_before(run, &task, 2, u64::MAX, 5)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn migration_4_numbers_existing_lines_per_try_in_insertion_order() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}?mode=rwc", dir.path().join("old.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::raw_sql(include_str!("../../../migrations/0001_init.sql"))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::raw_sql(
        "INSERT INTO dag_run (dag_id, run_id, run_type, state, logical_date, data_interval_start, \
         data_interval_end, queued_at) VALUES ('d', 'r', 'manual', 'success', 'x', 'x', 'x', 'x'); \
         INSERT INTO task_log (run, task_id, try_number, ts, level, message) VALUES \
         (1, 'a', 1, 't', 'INFO', 'a1'), (1, 'b', 1, 't', 'INFO', 'b1'), \
         (1, 'a', 2, 't', 'INFO', 'a2-1'), (1, 'a', 1, 't', 'INFO', 'a2'), \
         (1, 'a', 2, 't', 'INFO', 'a2-2'), (1, 'a', 1, 't', 'INFO', 'a3');",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::raw_sql(include_str!("../../../migrations/0004_log_seq.sql"))
        .execute(&pool)
        .await
        .unwrap();
    let rows: Vec<(String, i64, i64)> =
        sqlx::query_as("SELECT message, try_number, seq FROM task_log ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    let expected = [
        ("a1", 1, 1),
        ("b1", 1, 1),
        ("a2-1", 2, 1),
        ("a2", 1, 2),
        ("a2-2", 2, 2),
        ("a3", 1, 3),
    ];
    let expected: Vec<(String, i64, i64)> = expected
        .iter()
        .map(|(m, t, s)| (m.to_string(), *t, *s))
        .collect();
    assert_eq!(rows, expected);
}

crate::store::testing::on_both!(
    stored_logs_keep_their_seqs_and_a_drop_leaves_head_marker_and_tail,
    a_tail_reads_the_last_lines_before_a_seq_in_order,
);
