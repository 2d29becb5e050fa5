use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::dag::build::{DagText, build_dag};
use crate::ids::InstanceId;
use crate::state::{RunState, RunType};
use crate::store::{NewRun, Owner, RunRow};

/// `Service::backfill` over `store` and the DAGs of `bag`.
async fn backfill(
    store: &Store,
    bag: &DagBag,
    dag_id: &str,
    req: BackfillRequest<'_>,
    now: DateTime<Utc>,
) -> ServiceResult<BackfillReport> {
    let bag = DagBag {
        dags: bag.dags.clone(),
        errors: Vec::new(),
    };
    Service::with_bag(store.clone(), bag)
        .backfill(dag_id, req, now)
        .await
}

const DAILY: &str = "dag_id: daily\nschedule: '0 3 * * *'\nstart_date: 2024-01-01\n\
                     end_date: 2024-12-31\ntasks:\n  t: {type: noop}\n";

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, day, hour, 0, 0).unwrap()
}

fn bag(yaml: &str) -> DagBag {
    let dag = build_dag(&DagText {
        path: Path::new("d.yaml"),
        project: None,
        default_dag_id: None,
        text: yaml.into(),
    })
    .unwrap();
    let mut bag = DagBag::default();
    bag.dags.insert(dag.id.clone(), Arc::new(dag));
    bag
}

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = Store::open(path.to_str().unwrap(), 2).await.unwrap();
    (dir, store)
}

fn req<'a>(from: &'a str, to: &'a str) -> BackfillRequest<'a> {
    BackfillRequest {
        from,
        to,
        reprocess: Reprocess::None,
        max_runs: 1000,
        dry_run: false,
    }
}

async fn scheduled(store: &Store, bag: &DagBag, day: u32) -> RunRow {
    let dag = bag.get("daily").unwrap();
    store
        .insert_run(&NewRun {
            dag_id: dag.id.clone(),
            run_type: RunType::Scheduled,
            interval_start: at(day, 3),
            interval_end: at(day + 1, 3),
            conf: serde_json::json!({}),
            parent: None,
            owner: None,
            version: Some(dag.version()),
        })
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn backfill_creates_complete_intervals_and_skips_dates_that_have_a_run() {
    let (_dir, store) = store().await;
    let bag = bag(DAILY);
    scheduled(&store, &bag, 2).await;
    // From before start_date; at 01-05 12:00 the 01-05 interval has not ended.
    let report = backfill(
        &store,
        &bag,
        "daily",
        req("2023-12-25", "2024-01-09"),
        at(5, 12),
    )
    .await
    .unwrap();
    assert_eq!(report.created, [at(1, 3), at(3, 3), at(4, 3)]);
    assert_eq!(report.skipped, [at(2, 3)]);
    assert!(report.reprocessed.is_empty());
    // Again: every date now has a run, and the scheduler would not re-create any of them.
    let again = backfill(
        &store,
        &bag,
        "daily",
        req("2024-01-01", "2024-01-05"),
        at(5, 12),
    )
    .await
    .unwrap();
    assert!(again.created.is_empty());
    assert_eq!(again.skipped.len(), 4);
    let dag = bag.get("daily").unwrap();
    let rerun = NewRun {
        dag_id: dag.id.clone(),
        run_type: RunType::Scheduled,
        interval_start: at(3, 3),
        interval_end: at(4, 3),
        conf: serde_json::json!({}),
        parent: None,
        owner: None,
        version: None,
    };
    assert!(store.insert_run(&rerun).await.unwrap().is_none());
}

#[tokio::test]
async fn reprocess_failed_clears_only_the_failed_runs_in_range() {
    let (_dir, store) = store().await;
    let bag = bag(DAILY);
    let failed = scheduled(&store, &bag, 1).await;
    let owner = Owner {
        id: InstanceId::new("test"),
        epoch: 1,
    };
    assert!(
        store
            .fail_unrunnable(failed.key, &owner, "failed for the test")
            .await
            .unwrap()
    );
    scheduled(&store, &bag, 2).await; // still queued: never reprocessed
    let mut r = req("2024-01-01", "2024-01-04");
    r.reprocess = Reprocess::Failed;
    let report = backfill(&store, &bag, "daily", r, at(5, 0)).await.unwrap();
    assert_eq!(report.reprocessed, [at(1, 3)]);
    assert_eq!(report.skipped, [at(2, 3)]);
    assert_eq!(report.created, [at(3, 3)]);
    let cleared = store.run(failed.key).await.unwrap().unwrap();
    assert_eq!(cleared.state, RunState::Queued);
}

#[tokio::test]
async fn a_huge_backfill_is_refused_with_its_size_and_dry_run_changes_nothing() {
    let (_dir, store) = store().await;
    let bag = bag(
        "dag_id: minutely\nschedule: '* * * * *'\nstart_date: 2022-01-01\n\
         tasks:\n  t: {type: noop}\n",
    );
    let err = backfill(
        &store,
        &bag,
        "minutely",
        req("2022-01-01", "2023-12-31"),
        at(1, 0),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "backfill of 'minutely' from 2022-01-01 to 2023-12-31 covers more than 1000 intervals \
         (about 1049761); narrow the range or pass --max-runs"
    );
    let mut r = req("2022-01-01", "2022-01-01T00:04:00Z");
    r.dry_run = true;
    let report = backfill(&store, &bag, "minutely", r, at(1, 0))
        .await
        .unwrap();
    assert_eq!(report.created.len(), 5);
    assert!(store.list_runs(None, None, 10).await.unwrap().is_empty());
    r.dry_run = false;
    r.max_runs = 4;
    assert!(
        backfill(&store, &bag, "minutely", r, at(1, 0))
            .await
            .is_err()
    );
    r.max_runs = 5;
    let report = backfill(&store, &bag, "minutely", r, at(1, 0))
        .await
        .unwrap();
    assert_eq!(report.created.len(), 5);
    assert_eq!(store.list_runs(None, None, 10).await.unwrap().len(), 5);
}
