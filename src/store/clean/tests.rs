use chrono::{Duration, TimeZone};

use super::*;
use crate::ids::{DagId, RunKey, TaskId};
use crate::state::RunType;
use crate::store::NewRun;

fn day(d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, d, 0, 0, 0).unwrap()
}

async fn store(backend: crate::store::Backend) -> (crate::store::testing::TestDb, Store) {
    let dir = crate::store::testing::TestDb::open(backend).await;
    let store = dir.store();
    (dir, store)
}

/// A run in `state` that ended on `ended` (None: not ended), with one task instance, one try
/// and `lines` log lines; `parent` makes it a triggered run.
async fn run(
    store: &Store,
    state: &str,
    ended: Option<DateTime<Utc>>,
    lines: u32,
    parent: Option<RunKey>,
) -> RunKey {
    let new = NewRun {
        dag_id: DagId::new("d"),
        run_type: RunType::Manual,
        interval_start: day(1),
        interval_end: day(1),
        conf: serde_json::json!({}),
        parent: parent.map(|p| crate::store::ParentTask {
            run: p,
            task: TaskId::new("trigger"),
            try_number: 1,
        }),
        owner: None,
        version: None,
    };
    let key = store.insert_run(&new).await.unwrap().unwrap().key;
    sqlx::query("UPDATE dag_run SET state = $1, queued_at = $2, end_date = $3 WHERE id = $4")
        .bind(state)
        .bind(to_text(day(1)))
        .bind(ended.map(to_text))
        .bind(key.0)
        .execute(&store.pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO task_instance (run, task_id, state, try_number) VALUES ($1, 't', 'success', 1)",
    )
    .bind(key.0)
    .execute(&store.pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO task_try (run, task_id, try_number, state, start_date) VALUES ($1, 't', 1, 'success', $2)")
        .bind(key.0)
        .bind(to_text(day(1)))
        .execute(&store.pool)
        .await
        .unwrap();
    for seq in 1..=lines {
        sqlx::query("INSERT INTO task_log (run, task_id, try_number, seq, ts, level, message) VALUES ($1, 't', 1, $2, $3, 'INFO', 'x')")
            .bind(key.0)
            .bind(i64::from(seq))
            .bind(to_text(day(1)))
            .execute(&store.pool)
            .await
            .unwrap();
    }
    key
}

async fn exists(store: &Store, key: RunKey) -> bool {
    store.run(key).await.unwrap().is_some()
}

async fn total(store: &Store, table: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM {table}");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(&store.pool)
        .await
        .unwrap()
}

const SMALL: CleanBatch = CleanBatch {
    runs: 3,
    log_rows: 10,
};

async fn clean_deletes_old_finished_runs_with_their_rows_in_batches_and_keeps_the_rest(
    backend: crate::store::Backend,
) {
    let (_dir, store) = store(backend).await;
    let mut old = Vec::new();
    for i in 0..7 {
        let state = if i % 2 == 0 { "success" } else { "failed" };
        old.push(run(&store, state, Some(day(2)), 25, None).await);
    }
    let recent = run(&store, "success", Some(day(20)), 5, None).await;
    let running = run(&store, "running", None, 5, None).await;
    let queued = run(&store, "queued", None, 0, None).await;

    let counts = store.clean(day(10), false, SMALL).await.unwrap();
    let expected = CleanCounts {
        dag_run: 7,
        task_instance: 7,
        task_try: 7,
        task_log: 7 * 25,
        ..CleanCounts::default()
    };
    assert_eq!(counts, expected);
    for key in old {
        assert!(!exists(&store, key).await);
    }
    for key in [recent, running, queued] {
        assert!(exists(&store, key).await);
    }
    assert_eq!(total(&store, "task_log").await, 10);
    assert_eq!(total(&store, "task_try").await, 3);
    // A second pass finds nothing more.
    let again = store.clean(day(10), false, SMALL).await.unwrap();
    assert_eq!(again, CleanCounts::default());
}

async fn a_dry_run_counts_what_clean_would_delete_and_changes_nothing(
    backend: crate::store::Backend,
) {
    let (_dir, store) = store(backend).await;
    for _ in 0..4 {
        run(&store, "success", Some(day(2)), 12, None).await;
    }
    run(&store, "running", None, 3, None).await;
    let dry = store.clean(day(10), true, SMALL).await.unwrap();
    assert_eq!(total(&store, "dag_run").await, 5);
    assert_eq!(total(&store, "task_log").await, 51);
    let real = store.clean(day(10), false, SMALL).await.unwrap();
    assert_eq!(dry, real);
    assert_eq!(dry.dag_run, 4);
    assert_eq!(dry.task_log, 48);
}

async fn a_family_goes_whole_or_stays_whole(backend: crate::store::Backend) {
    let (_dir, store) = store(backend).await;
    // Parent and children all old and finished: deleted together, even one root per batch.
    let parent = run(&store, "success", Some(day(3)), 2, None).await;
    let child = run(&store, "success", Some(day(2)), 2, Some(parent)).await;
    let grandchild = run(&store, "failed", Some(day(2)), 2, Some(child)).await;
    // An old finished parent whose child still runs: both stay.
    let busy_parent = run(&store, "failed", Some(day(3)), 2, None).await;
    let busy_child = run(&store, "running", None, 2, Some(busy_parent)).await;
    // An old parent whose child ended after the date: both stay.
    let late_parent = run(&store, "success", Some(day(3)), 2, None).await;
    let late_child = run(
        &store,
        "success",
        Some(day(3) + Duration::days(30)),
        2,
        Some(late_parent),
    )
    .await;

    let batch = CleanBatch {
        runs: 1,
        log_rows: 1,
    };
    let counts = store.clean(day(10), false, batch).await.unwrap();
    assert_eq!((counts.dag_run, counts.task_log), (3, 6));
    for key in [parent, child, grandchild] {
        assert!(!exists(&store, key).await);
    }
    for key in [busy_parent, busy_child, late_parent, late_child] {
        assert!(exists(&store, key).await);
    }
}

async fn unused_old_dag_versions_and_ended_instances_go_the_latest_and_used_stay(
    backend: crate::store::Backend,
) {
    let (_dir, store) = store(backend).await;
    let version = |hash: &str, created: u32| {
        let (store, hash) = (store.clone(), hash.to_string());
        async move {
            sqlx::query(
                "INSERT INTO dag_version (hash, dag_id, source_path, definition, created_at) \
                 VALUES ($1, 'd', 'd.yaml', 'dag_id: d', $2)",
            )
            .bind(&hash)
            .bind(to_text(day(created)))
            .execute(&store.pool)
            .await
            .unwrap();
        }
    };
    version("old-unused", 1).await;
    version("old-used", 2).await;
    version("latest", 3).await;
    let used = run(&store, "running", None, 0, None).await;
    sqlx::query("UPDATE dag_run SET dag_version = 'old-used' WHERE id = $1")
        .bind(used.0)
        .execute(&store.pool)
        .await
        .unwrap();
    let lease = std::time::Duration::from_secs(600);
    let stopped = store
        .register_instance(crate::store::InstanceKind::Serve, lease)
        .await
        .unwrap();
    store.stop_instance(&stopped).await.unwrap();
    let live = store
        .register_instance(crate::store::InstanceKind::Serve, lease)
        .await
        .unwrap();
    let before = "2100-01-01";
    let dry = store
        .clean(parse_day(before), true, CleanBatch::default())
        .await
        .unwrap();
    assert_eq!((dry.dag_version, dry.instance), (1, 1));
    let done = store
        .clean(parse_day(before), false, CleanBatch::default())
        .await
        .unwrap();
    assert_eq!((done.dag_version, done.instance), (1, 1));
    let hashes: Vec<String> = sqlx::query_scalar("SELECT hash FROM dag_version ORDER BY hash")
        .fetch_all(&store.pool)
        .await
        .unwrap();
    assert_eq!(hashes, ["latest", "old-used"]);
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM instance")
        .fetch_all(&store.pool)
        .await
        .unwrap();
    assert_eq!(ids, [live.id.to_string()]);
}

fn parse_day(text: &str) -> DateTime<Utc> {
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
}

crate::store::testing::on_both!(
    clean_deletes_old_finished_runs_with_their_rows_in_batches_and_keeps_the_rest,
    a_dry_run_counts_what_clean_would_delete_and_changes_nothing,
    a_family_goes_whole_or_stays_whole,
    unused_old_dag_versions_and_ended_instances_go_the_latest_and_used_stay,
);
