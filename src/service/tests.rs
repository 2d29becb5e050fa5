use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::dag::build::{DagText, build_dag};
use crate::ids::{InstanceId, TaskId};
use crate::state::{RunState, RunType};
use crate::store::{NewRun, Owner, RunRow};

async fn run_count(store: &Store) -> u64 {
    store.query_runs(&RunQuery::default()).await.unwrap().1
}

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

async fn store(backend: crate::store::Backend) -> (crate::store::testing::TestDb, Store) {
    let db = crate::store::testing::TestDb::open(backend).await;
    let store = db.store();
    (db, store)
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

async fn backfill_creates_complete_intervals_and_skips_dates_that_have_a_run(
    backend: crate::store::Backend,
) {
    let (_dir, store) = store(backend).await;
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

async fn reprocess_failed_clears_only_the_failed_runs_in_range(backend: crate::store::Backend) {
    let (_dir, store) = store(backend).await;
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

async fn a_huge_backfill_is_refused_with_its_size_and_dry_run_changes_nothing(
    backend: crate::store::Backend,
) {
    let (_dir, store) = store(backend).await;
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
    assert_eq!(run_count(&store).await, 0);
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
    assert_eq!(run_count(&store).await, 5);
}

const CHAIN: &str = concat!(
    "dag_id: chain\ntasks:\n  a: {type: noop}\n  b: {type: noop, depends_on: a}\n",
    "  c: {type: noop, depends_on: b}\n  d: {type: noop}\n",
);

/// A manual run of `chain` that finished `run_state` with its tasks in `states` (a, b, c, d).
async fn finished(service: &Service, store: &Store, run_state: &str, states: [&str; 4]) -> RunRow {
    let run = service
        .trigger("chain", TriggerRequest::default())
        .await
        .unwrap();
    let pool = store.test_pool();
    sqlx::query(
        "UPDATE dag_run SET state = $1, start_date = queued_at, end_date = queued_at WHERE id = $2",
    )
    .bind(run_state)
    .bind(run.key.0)
    .execute(pool)
    .await
    .unwrap();
    for (task, state) in ["a", "b", "c", "d"].iter().zip(states) {
        sqlx::query(
            "INSERT INTO task_instance (run, task_id, state, try_number, max_tries) \
             VALUES ($1, $2, $3, 1, 1)",
        )
        .bind(run.key.0)
        .bind(task)
        .bind(state)
        .execute(pool)
        .await
        .unwrap();
    }
    service.refresh(&run).await.unwrap()
}

fn states(detail: &RunDetail) -> Vec<(String, Option<TaskState>)> {
    detail
        .task_instances
        .iter()
        .map(|t| (t.task_id.to_string(), t.state))
        .collect()
}

use crate::state::TaskState;

async fn clearing_one_task_with_or_without_downstream_requeues_the_run(
    backend: crate::store::Backend,
) {
    let (_dir, store) = store(backend).await;
    let service = Service::with_bag(store.clone(), bag(CHAIN));
    let run = finished(
        &service,
        &store,
        "failed",
        ["success", "failed", "upstream_failed", "success"],
    )
    .await;
    let cleared = service.clear_task(run.clone(), "b", true).await.unwrap();
    let names: Vec<&str> = cleared.tasks.iter().map(TaskId::as_str).collect();
    assert_eq!(names, ["b", "c"]);
    assert_eq!(cleared.run.state, RunState::Queued);
    let detail = service.run_detail(cleared.run).await.unwrap();
    assert_eq!(states(&detail)[0].1, Some(TaskState::Success));
    assert_eq!(states(&detail)[1].1, None);
    assert_eq!(states(&detail)[2].1, None);
    assert_eq!(states(&detail)[3].1, Some(TaskState::Success));

    let other = finished(
        &service,
        &store,
        "failed",
        ["success", "failed", "upstream_failed", "success"],
    )
    .await;
    let alone = service.clear_task(other.clone(), "b", false).await.unwrap();
    assert_eq!(alone.tasks.len(), 1);
    // A queued run cannot be cleared, and an unknown task is a not-found error.
    let err = service.clear_task(alone.run, "b", false).await.unwrap_err();
    assert!(matches!(err, ServiceError::Conflict(_)), "{err}");
    let done = finished(&service, &store, "success", ["success"; 4]).await;
    let err = service.clear_task(done, "zz", true).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

async fn marking_tasks_sets_the_run_state_from_its_task_instances(backend: crate::store::Backend) {
    let (_dir, store) = store(backend).await;
    let service = Service::with_bag(store.clone(), bag(CHAIN));
    let run = finished(
        &service,
        &store,
        "failed",
        ["success", "failed", "upstream_failed", "success"],
    )
    .await;
    let marked = service
        .mark(run.clone(), "b", TaskState::Success)
        .await
        .unwrap();
    assert_eq!(
        marked.run.state,
        RunState::Failed,
        "c is still upstream_failed"
    );
    let marked = service
        .mark(run.clone(), "c", TaskState::Success)
        .await
        .unwrap();
    assert_eq!(marked.run.state, RunState::Success);
    let marked = service
        .mark(run.clone(), "d", TaskState::Failed)
        .await
        .unwrap();
    assert_eq!(marked.run.state, RunState::Failed);
    let err = service
        .mark(run.clone(), "d", TaskState::Running)
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::Invalid(_)), "{err}");
    let err = service
        .mark(run, "nope", TaskState::Success)
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let queued = service
        .trigger("chain", TriggerRequest::default())
        .await
        .unwrap();
    let err = service
        .mark(queued, "a", TaskState::Success)
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::Conflict(_)), "{err}");
}

async fn marking_uses_the_schedulers_leaf_rule(backend: crate::store::Backend) {
    let (_dir, store) = store(backend).await;
    let service = Service::with_bag(store.clone(), bag(CHAIN));
    // b failed but c (a leaf, as if its trigger rule were all_done) succeeded: the
    // scheduler finished the run success, and marking d success must keep it so.
    let run = finished(
        &service,
        &store,
        "success",
        ["success", "failed", "success", "success"],
    )
    .await;
    let marked = service
        .mark(run.clone(), "d", TaskState::Success)
        .await
        .unwrap();
    assert_eq!(marked.run.state, RunState::Success);
    // Marking the failed inner task failed again changes nothing either.
    let marked = service
        .mark(run.clone(), "b", TaskState::Failed)
        .await
        .unwrap();
    assert_eq!(marked.run.state, RunState::Success);

    // With neither the loaded DAG nor its stored version, every task counts as a leaf.
    sqlx::query("UPDATE dag_run SET dag_version = NULL WHERE id = $1")
        .bind(run.key.0)
        .execute(store.test_pool())
        .await
        .unwrap();
    let orphan = Service::with_bag(store.clone(), DagBag::default());
    let run = orphan.refresh(&run).await.unwrap();
    let marked = orphan.mark(run, "d", TaskState::Success).await.unwrap();
    assert_eq!(marked.run.state, RunState::Failed, "b is still failed");
}

async fn marking_an_unknown_task_of_an_active_run_is_not_found(backend: crate::store::Backend) {
    let (_dir, store) = store(backend).await;
    let service = Service::with_bag(store.clone(), bag(CHAIN));
    let queued = service
        .trigger("chain", TriggerRequest::default())
        .await
        .unwrap();
    let err = service
        .mark(queued.clone(), "nope", TaskState::Success)
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let err = service
        .mark(queued, "a", TaskState::Success)
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::Conflict(_)), "{err}");
}

async fn the_dag_listing_filters_pages_and_carries_recent_runs(backend: crate::store::Backend) {
    let (_dir, store) = store(backend).await;
    let mut bag = bag(CHAIN);
    for yaml in [
        "dag_id: alpha\ndescription: Loads the warehouse\ntags: [etl]\ntasks:\n  t: {type: noop}\n",
        "dag_id: beta\ntags: [etl, nightly]\nschedule: '0 3 * * *'\nstart_date: 2024-01-01\ntasks:\n  t: {type: noop}\n",
    ] {
        let one = super::tests::bag(yaml);
        bag.dags.extend(one.dags);
    }
    let service = Service::with_bag(store.clone(), bag);
    for _ in 0..3 {
        service
            .trigger("alpha", TriggerRequest::default())
            .await
            .unwrap();
    }
    service.set_paused("beta", true).await.unwrap();
    let all = service
        .list_dags(&DagQuery {
            recent_runs: 2,
            ..DagQuery::default()
        })
        .await
        .unwrap();
    let ids: Vec<&str> = all.dags.iter().map(|d| d.dag.id.as_str()).collect();
    assert_eq!(ids, ["alpha", "beta", "chain"]);
    assert_eq!(all.dags[0].recent.len(), 2);
    assert!(all.dags[1].paused && all.dags[1].next.is_some());
    assert_eq!(all.all_tags, ["etl", "nightly"]);
    let search = |text: &str| DagQuery {
        search: Some(text.into()),
        ..DagQuery::default()
    };
    let found = service.list_dags(&search("WAREHOUSE")).await.unwrap();
    assert_eq!(found.total, 1);
    let tagged = DagQuery {
        tags: vec!["nightly".into()],
        ..DagQuery::default()
    };
    assert_eq!(
        service.list_dags(&tagged).await.unwrap().dags[0]
            .dag
            .id
            .as_str(),
        "beta"
    );
    let page = DagQuery {
        limit: 1,
        offset: 1,
        paused: Some(false),
        ..DagQuery::default()
    };
    let page = service.list_dags(&page).await.unwrap();
    assert_eq!((page.total, page.dags[0].dag.id.as_str()), (2, "chain"));
}

async fn wait_follows_a_run_to_its_end_reporting_each_state(backend: crate::store::Backend) {
    let (_dir, store) = store(backend).await;
    let service = Service::with_bag(store.clone(), bag(CHAIN));
    let run = service
        .trigger("chain", TriggerRequest::default())
        .await
        .unwrap();
    let pool = store.test_pool().clone();
    let key = run.key.0;
    let finisher = tokio::spawn(async move {
        for state in ["running", "failed"] {
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
            sqlx::query("UPDATE dag_run SET state = $1 WHERE id = $2")
                .bind(state)
                .bind(key)
                .execute(&pool)
                .await
                .unwrap();
        }
    });
    let mut seen = Vec::new();
    let end = service
        .wait(&run, std::time::Duration::from_millis(5), |r| {
            seen.push(r.state)
        })
        .await
        .unwrap();
    finisher.await.unwrap();
    assert_eq!(end.state, RunState::Failed);
    assert_eq!(seen.last(), Some(&RunState::Failed));
}

async fn a_scrape_counts_active_runs_per_state_with_zeros_for_idle_loaded_dags(
    backend: crate::store::Backend,
) {
    let (_dir, store) = store(backend).await;
    let bag = bag(DAILY);
    scheduled(&store, &bag, 2).await;
    scheduled(&store, &bag, 3).await;
    let service = Service::with_bag(store.clone(), bag);
    assert_eq!(service.metrics_text().await.unwrap(), None);
    let service = service.with_metrics(crate::metrics::Metrics::new());
    let text = service.metrics_text().await.unwrap().unwrap();
    assert!(
        text.contains("orchestrator_dag_runs{dag_id=\"daily\",state=\"queued\"} 2\n"),
        "{text}"
    );
    assert!(text.contains("orchestrator_dag_runs{dag_id=\"daily\",state=\"running\"} 0\n"));
    assert!(text.contains("orchestrator_dags_loaded 1\n"));
}

async fn a_chosen_run_id_is_kept_once_with_its_note_and_logical_date(
    backend: crate::store::Backend,
) {
    let (_dir, store) = store(backend).await;
    let service = Service::with_bag(store.clone(), bag(CHAIN));
    let choice = RunChoice {
        run_id: Some("mine".into()),
        logical_date: Some(at(2, 0)),
        note: Some("hello".into()),
    };
    let run = service
        .trigger_chosen("chain", TriggerRequest::default(), choice.clone())
        .await
        .unwrap();
    assert_eq!(run.run_id.as_str(), "mine");
    assert_eq!(run.logical_date, at(2, 0));
    assert_eq!(run.user_note.as_deref(), Some("hello"));
    assert_eq!(run.run_type, RunType::Manual);
    let err = service
        .trigger_chosen("chain", TriggerRequest::default(), choice)
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::Conflict(_)), "{err}");
    let bad = RunChoice {
        run_id: Some("../x".into()),
        ..RunChoice::default()
    };
    let err = service
        .trigger_chosen("chain", TriggerRequest::default(), bad)
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::Invalid(_)), "{err}");
    let noted = service.set_run_note(&run, None).await.unwrap();
    assert_eq!(noted.user_note, None);
}

async fn clearing_a_selection_can_be_a_dry_run_and_relabelling_needs_a_finished_run(
    backend: crate::store::Backend,
) {
    let (_dir, store) = store(backend).await;
    let service = Service::with_bag(store.clone(), bag(CHAIN));
    let states4 = ["success", "failed", "upstream_failed", "success"];
    let run = finished(&service, &store, "failed", states4).await;
    let failed_only = ClearRequest {
        only_failed: true,
        downstream: true,
        dry_run: true,
        ..ClearRequest::default()
    };
    let dry = service
        .clear_selected(run.clone(), &failed_only)
        .await
        .unwrap();
    let names: Vec<&str> = dry.tasks.iter().map(TaskId::as_str).collect();
    assert_eq!(names, ["b", "c"]);
    assert_eq!(dry.run.state, RunState::Failed, "a dry run changes nothing");
    let picked = ClearRequest {
        tasks: Some(vec!["a".into()]),
        downstream: false,
        ..ClearRequest::default()
    };
    let cleared = service.clear_selected(run.clone(), &picked).await.unwrap();
    assert_eq!(cleared.tasks, [TaskId::new("a")]);
    assert_eq!(cleared.run.state, RunState::Queued);
    let err = service
        .set_run_state(cleared.run, RunState::Success)
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::Conflict(_)), "{err}");
    let other = finished(&service, &store, "failed", states4).await;
    let relabelled = service
        .set_run_state(other, RunState::Success)
        .await
        .unwrap();
    assert_eq!(relabelled.state, RunState::Success);
    let unknown = ClearRequest {
        tasks: Some(vec!["zz".into()]),
        ..ClearRequest::default()
    };
    let done = finished(&service, &store, "success", ["success"; 4]).await;
    let err = service.clear_selected(done, &unknown).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

async fn a_clear_or_mark_racing_another_change_is_a_conflict(backend: crate::store::Backend) {
    let (_dir, store) = store(backend).await;
    let service = Service::with_bag(store.clone(), bag(CHAIN));
    let stale = finished(
        &service,
        &store,
        "failed",
        ["success", "failed", "upstream_failed", "success"],
    )
    .await;
    // Two clients read the finished run; the first clears it, the second acts on its copy.
    service.clear(stale.clone(), false).await.unwrap();
    let all = ClearRequest {
        downstream: true,
        ..ClearRequest::default()
    };
    let refused = [
        service.clear(stale.clone(), false).await.unwrap_err(),
        service
            .clear_selected(stale.clone(), &all)
            .await
            .unwrap_err(),
        service
            .clear_task(stale.clone(), "b", true)
            .await
            .unwrap_err(),
        service
            .set_run_state(stale.clone(), RunState::Queued)
            .await
            .unwrap_err(),
        service
            .set_run_state(stale.clone(), RunState::Success)
            .await
            .unwrap_err(),
        service
            .mark(stale.clone(), "b", TaskState::Success)
            .await
            .unwrap_err(),
    ];
    for err in refused {
        assert!(matches!(err, ServiceError::Conflict(_)), "{err:?}");
        assert!(!err.is_not_found(), "{err}");
    }
}

crate::store::testing::on_both!(
    backfill_creates_complete_intervals_and_skips_dates_that_have_a_run,
    reprocess_failed_clears_only_the_failed_runs_in_range,
    a_huge_backfill_is_refused_with_its_size_and_dry_run_changes_nothing,
    clearing_one_task_with_or_without_downstream_requeues_the_run,
    marking_tasks_sets_the_run_state_from_its_task_instances,
    marking_uses_the_schedulers_leaf_rule,
    marking_an_unknown_task_of_an_active_run_is_not_found,
    the_dag_listing_filters_pages_and_carries_recent_runs,
    wait_follows_a_run_to_its_end_reporting_each_state,
    a_scrape_counts_active_runs_per_state_with_zeros_for_idle_loaded_dags,
    a_chosen_run_id_is_kept_once_with_its_note_and_logical_date,
    clearing_a_selection_can_be_a_dry_run_and_relabelling_needs_a_finished_run,
    a_clear_or_mark_racing_another_change_is_a_conflict,
);
