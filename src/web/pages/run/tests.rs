use axum::http::{StatusCode, header};

use crate::state::{RunState, TaskState};
use crate::web::pages::fixture::Fixture;
use crate::web::pages::links;

async fn task_states(
    fx: &Fixture,
    run: &crate::service::RunRow,
) -> Vec<(String, Option<TaskState>)> {
    let detail = fx.service.run_detail(run.clone()).await.unwrap();
    detail
        .task_instances
        .iter()
        .map(|t| (t.task_id.to_string(), t.state))
        .collect()
}

fn run_url(run: &crate::service::RunRow) -> String {
    links::run("etl", run.run_id.as_str())
}

async fn the_run_page_shows_its_tasks_timeline_and_actions_with_everything_escaped(
    backend: crate::store::Backend,
) {
    let fx = Fixture::new(backend).await;
    let run = fx.failed_run().await;
    let (status, _, body) = fx.get(&run_url(&run)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for text in [
        "extract",
        "transform",
        "load",
        "1 of 1",
        "upstream_failed",
        "manual",
    ] {
        assert!(body.contains(text), "{text} missing");
    }
    assert!(body.contains("badge state-failed"));
    assert!(
        body.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "{body}"
    );
    assert!(!body.contains("<script>alert"));
    assert!(body.contains("exit 1: &#60;b&#62;boom&#60;/b&#62;"));
    assert!(body.contains("class=\"gantt-bar state-failed\""));
    assert!(body.contains("/dags/etl/runs/"));
    assert!(body.contains("/tasks/transform?try=1"));
    assert!(body.contains("name=\"only_failed\" value=\"true\""));
    assert!(body.contains("/tasks/load/mark"));
    assert!(
        !body.contains("data-live=\"1\""),
        "a finished run is not followed"
    );
    let version = run.dag_version.clone().unwrap();
    assert!(body.contains(&format!("/dags/etl/source?version={version}")));
}

async fn a_running_run_is_followed_and_offers_no_actions(backend: crate::store::Backend) {
    let fx = Fixture::new(backend).await;
    let run = fx.running_run(serde_json::json!({})).await;
    fx.start(&run, "extract", 1).await;
    let (status, _, body) = fx.get(&run_url(&run)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("data-live=\"1\""));
    assert!(body.contains("data-live-region"));
    assert!(body.contains("class=\"gantt-bar state-running\""));
    assert!(!body.contains("/clear\""), "no clear while it runs");
    assert!(!body.contains("/mark\""));
}

async fn unknown_dags_runs_tasks_and_tries_are_404_pages(backend: crate::store::Backend) {
    let fx = Fixture::new(backend).await;
    let run = fx.failed_run().await;
    let base = run_url(&run);
    for uri in [
        "/dags/etl/runs/nope".to_string(),
        links::run("other", run.run_id.as_str()),
        format!("{base}/tasks/nope"),
        format!("{base}/tasks/extract?try=2"),
        format!("{base}/tasks/extract/logs/stream?try=9"),
    ] {
        let (status, headers, body) = fx.get(&uri).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(body.contains("404"), "{uri}: {body}");
    }
    let (status, _, _) = fx.get(&format!("{base}/tasks/extract?try=x")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn clearing_the_failed_tasks_queues_the_run_again_and_says_so(
    backend: crate::store::Backend,
) {
    let fx = Fixture::new(backend).await;
    let run = fx.failed_run().await;
    let (status, headers, _) = fx
        .post(&format!("{}/clear", run_url(&run)), "only_failed=true")
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], run_url(&run).as_str());
    let cookie = headers[header::SET_COOKIE].to_str().unwrap();
    assert_eq!(
        fx.service.refresh(&run).await.unwrap().state,
        RunState::Queued
    );
    assert_eq!(
        task_states(&fx, &run).await,
        [
            ("extract".to_string(), Some(TaskState::Success)),
            ("transform".to_string(), None),
            ("load".to_string(), None),
        ]
    );
    // The page shows the message once and clears it.
    let pair = cookie.split(';').next().unwrap();
    let request = axum::http::Request::get(run_url(&run))
        .header(header::COOKIE, pair)
        .body(axum::body::Body::empty())
        .unwrap();
    let (status, headers, body) = fx.send(request).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Cleared 2 task(s): transform, load. The run is queued again."));
    assert!(
        headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
}

async fn a_task_is_cleared_alone_or_with_its_downstream(backend: crate::store::Backend) {
    let fx = Fixture::new(backend).await;
    let alone = fx.failed_run().await;
    let uri = format!("{}/tasks/transform/clear", run_url(&alone));
    let (status, _, _) = fx.post(&uri, "downstream=false").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let states = task_states(&fx, &alone).await;
    assert_eq!(states[1], ("transform".to_string(), None));
    assert_eq!(
        states[2],
        ("load".to_string(), Some(TaskState::UpstreamFailed))
    );

    let with = fx.failed_run().await;
    let uri = format!("{}/tasks/extract/clear", run_url(&with));
    let (status, _, _) = fx.post(&uri, "downstream=true").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let states = task_states(&fx, &with).await;
    assert!(states.iter().all(|(_, s)| s.is_none()), "{states:?}");
    assert_eq!(
        fx.service.refresh(&with).await.unwrap().state,
        RunState::Queued
    );
}

async fn marking_tasks_success_changes_them_and_the_run_follows(backend: crate::store::Backend) {
    let fx = Fixture::new(backend).await;
    let run = fx.failed_run().await;
    let base = run_url(&run);
    let (status, _, _) = fx
        .post(&format!("{base}/tasks/transform/mark"), "state=success")
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(task_states(&fx, &run).await[1].1, Some(TaskState::Success));
    assert_eq!(
        fx.service.refresh(&run).await.unwrap().state,
        RunState::Failed
    );
    let (status, _, _) = fx
        .post(&format!("{base}/tasks/load/mark"), "state=success")
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        fx.service.refresh(&run).await.unwrap().state,
        RunState::Success
    );
    let (status, _, _) = fx
        .post(&format!("{base}/tasks/extract/mark"), "state=failed")
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(task_states(&fx, &run).await[0].1, Some(TaskState::Failed));
}

async fn actions_on_a_running_run_are_refused_with_409_and_leave_it_alone(
    backend: crate::store::Backend,
) {
    let fx = Fixture::new(backend).await;
    let run = fx.running_run(serde_json::json!({})).await;
    fx.start(&run, "extract", 1).await;
    let base = run_url(&run);
    for (uri, form) in [
        (format!("{base}/clear"), "only_failed=false"),
        (format!("{base}/tasks/extract/clear"), "downstream=true"),
        (format!("{base}/tasks/extract/mark"), "state=success"),
    ] {
        let (status, _, body) = fx.post(&uri, form).await;
        assert_eq!(status, StatusCode::CONFLICT, "{uri}");
        assert!(body.contains("409"), "{body}");
    }
    assert_eq!(
        fx.service.refresh(&run).await.unwrap().state,
        RunState::Running
    );
    assert_eq!(task_states(&fx, &run).await[0].1, Some(TaskState::Running));
}

async fn actions_are_post_only_and_refuse_bad_fields(backend: crate::store::Backend) {
    let fx = Fixture::new(backend).await;
    let run = fx.failed_run().await;
    let base = run_url(&run);
    for uri in [
        format!("{base}/clear"),
        format!("{base}/tasks/load/clear"),
        format!("{base}/tasks/load/mark"),
    ] {
        assert_eq!(
            fx.get(&uri).await.0,
            StatusCode::METHOD_NOT_ALLOWED,
            "{uri}"
        );
    }
    let bad = [
        (format!("{base}/clear"), "only_failed=maybe"),
        (format!("{base}/clear"), ""),
        (format!("{base}/tasks/load/clear"), "downstream=1"),
        (format!("{base}/tasks/load/mark"), "state=running"),
    ];
    for (uri, form) in bad {
        assert_eq!(
            fx.post(&uri, form).await.0,
            StatusCode::BAD_REQUEST,
            "{uri} {form}"
        );
    }
    let (status, _, _) = fx
        .post(&format!("{base}/tasks/nope/mark"), "state=failed")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        fx.service.refresh(&run).await.unwrap().state,
        RunState::Failed
    );
}

crate::store::testing::on_both!(
    the_run_page_shows_its_tasks_timeline_and_actions_with_everything_escaped,
    a_running_run_is_followed_and_offers_no_actions,
    unknown_dags_runs_tasks_and_tries_are_404_pages,
    clearing_the_failed_tasks_queues_the_run_again_and_says_so,
    a_task_is_cleared_alone_or_with_its_downstream,
    marking_tasks_success_changes_them_and_the_run_follows,
    actions_on_a_running_run_are_refused_with_409_and_leave_it_alone,
    actions_are_post_only_and_refuse_bad_fields,
);
