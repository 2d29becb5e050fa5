use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;

use crate::state::TaskState;
use crate::web::pages::fixture::Fixture;
use crate::web::pages::links;

fn task_url(run: &crate::service::RunRow, task: &str) -> String {
    links::task("etl", run.run_id.as_str(), task)
}

async fn the_log_page_shows_times_levels_and_escaped_messages(backend: crate::store::Backend) {
    let fx = Fixture::new(backend).await;
    let run = fx.failed_run().await;
    let (status, _, body) = fx.get(&task_url(&run, "transform")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("&#60;script&#62;alert(2)&#60;/script&#62;"));
    assert!(!body.contains("<script>alert"));
    assert!(body.contains("<span class=\"lvl-warn\">err  </span>"));
    assert!(body.contains("class=\"log-ts\""));
    assert!(body.contains("exit 1: &#60;b&#62;boom&#60;/b&#62;"));
    assert!(
        body.contains("transform?try=1"),
        "the try picker links each try"
    );
    assert!(
        !body.contains("data-stream"),
        "a finished try is not streamed"
    );
    let (status, _, body) = fx
        .get(&format!("{}?try=1", task_url(&run, "extract")))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("<span class=\"lvl-info\">INFO </span> extracting"));
    assert!(body.contains("42 rows"));
}

async fn a_long_log_shows_its_tail_and_loads_all_on_demand(backend: crate::store::Backend) {
    let fx = Fixture::new(backend).await;
    let run = fx.running_run(serde_json::json!({})).await;
    fx.start(&run, "extract", 1).await;
    let texts: Vec<String> = (1..=1200).map(|i| format!("line {i:05}")).collect();
    let lines: Vec<(&'static str, &str)> = texts.iter().map(|t| ("STDOUT", t.as_str())).collect();
    fx.log(&run, "extract", 1, 1, &lines).await;
    fx.finish(&run, "extract", 1, TaskState::Success, None)
        .await;
    let (_, _, tail) = fx.get(&task_url(&run, "extract")).await;
    assert!(tail.contains("line 00201") && tail.contains("line 01200"));
    assert!(!tail.contains("line 00200"));
    assert!(tail.contains("Showing the last 1000 lines"));
    assert!(tail.contains("extract?try=1&#38;all=1"));
    let (_, _, all) = fx
        .get(&format!("{}?try=1&all=1", task_url(&run, "extract")))
        .await;
    assert!(all.contains("line 00001") && all.contains("line 01200"));
    assert!(!all.contains("Load all"));
}

async fn a_task_not_started_yet_says_so_and_its_page_follows_the_run(
    backend: crate::store::Backend,
) {
    let fx = Fixture::new(backend).await;
    let run = fx.running_run(serde_json::json!({})).await;
    let (status, _, body) = fx.get(&task_url(&run, "load")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("has not started yet"));
    assert!(body.contains("data-live=\"1\""));
    let stream = format!("{}/logs/stream", task_url(&run, "load"));
    assert_eq!(fx.get(&stream).await.0, StatusCode::NOT_FOUND);
}

async fn an_upstream_failed_task_says_it_will_not_run_and_why(backend: crate::store::Backend) {
    let fx = Fixture::new(backend).await;
    let run = fx.failed_run().await;
    let (status, _, body) = fx.get(&task_url(&run, "load")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!body.contains("has not started yet"), "{body}");
    assert!(body.contains("This task will not run (an upstream task failed), so it has no log."));
    assert!(!body.contains("data-live=\"1\""));
    assert_eq!(
        super::not_run(Some(TaskState::Skipped), false),
        Some("it was skipped")
    );
    assert_eq!(super::not_run(None, false), None);
    assert_eq!(super::not_run(Some(TaskState::Queued), false), None);
}

async fn a_running_try_is_streamed_from_the_page_position(backend: crate::store::Backend) {
    let fx = Fixture::new(backend).await;
    let run = fx.running_run(serde_json::json!({})).await;
    fx.start(&run, "extract", 1).await;
    fx.log(&run, "extract", 1, 1, &[("INFO", "one"), ("INFO", "two")])
        .await;
    let (_, _, body) = fx.get(&task_url(&run, "extract")).await;
    let stream = format!(
        "{}/logs/stream?try=1&#38;after=2",
        task_url(&run, "extract")
    );
    assert!(
        body.contains(&format!("data-stream=\"{stream}\"")),
        "{body}"
    );
}

async fn the_stream_of_a_finished_try_sends_the_lines_after_a_seq_then_end(
    backend: crate::store::Backend,
) {
    let fx = Fixture::new(backend).await;
    let run = fx.failed_run().await;
    let uri = format!("{}/logs/stream?try=1&after=1", task_url(&run, "extract"));
    let (status, headers, body) = fx.get(&uri).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/event-stream");
    assert!(!body.contains("extracting"), "{body}");
    assert!(body.contains("\"msg\":\"42 rows\""), "{body}");
    assert!(body.contains("id: 2\n"), "{body}");
    assert!(body.ends_with("event: end\ndata: 2\n\n"), "{body}");
    // A reconnecting browser's Last-Event-ID wins over the page's position.
    let request = Request::get(format!(
        "{}/logs/stream?try=1&after=0",
        task_url(&run, "extract")
    ))
    .header("last-event-id", "2")
    .body(Body::empty())
    .unwrap();
    let (_, _, body) = fx.send(request).await;
    assert_eq!(body, "event: end\ndata: 2\n\n");
}

/// The next event of an SSE body (keep-alive comments skipped).
async fn next_event(body: &mut Body) -> String {
    let mut text = String::new();
    loop {
        let frame = body.frame().await.expect("stream ended").unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(std::str::from_utf8(&data).unwrap());
        }
        if text.ends_with("\n\n") && !text.starts_with(':') {
            return text;
        }
        if text.starts_with(':') && text.ends_with("\n\n") {
            text.clear();
        }
    }
}

async fn the_stream_follows_a_running_try_until_it_ends(backend: crate::store::Backend) {
    let fx = Fixture::new(backend).await;
    let run = fx.running_run(serde_json::json!({})).await;
    fx.start(&run, "extract", 1).await;
    fx.log(&run, "extract", 1, 1, &[("INFO", "one")]).await;
    let request = Request::get(format!("{}/logs/stream", task_url(&run, "extract")))
        .body(Body::empty())
        .unwrap();
    let response = tower::ServiceExt::oneshot(fx.app(), request).await.unwrap();
    let mut body = response.into_body();
    let first = next_event(&mut body).await;
    assert!(
        first.contains("\"msg\":\"one\"") && first.contains("id: 1\n"),
        "{first}"
    );
    fx.log(&run, "extract", 1, 2, &[("WARN", "two <b>")]).await;
    let second = next_event(&mut body).await;
    assert!(
        second.contains("\"msg\":\"two <b>\"") && second.contains("id: 2\n"),
        "{second}"
    );
    fx.log(&run, "extract", 1, 3, &[("ERROR", "three")]).await;
    fx.finish(&run, "extract", 1, TaskState::Failed, None).await;
    let third = next_event(&mut body).await;
    assert!(third.contains("\"line\":\"lvl-error\""), "{third}");
    assert_eq!(next_event(&mut body).await, "event: end\ndata: 3\n\n");
    assert!(body.frame().await.is_none(), "the stream closes after end");
}

crate::store::testing::on_both!(
    the_log_page_shows_times_levels_and_escaped_messages,
    a_long_log_shows_its_tail_and_loads_all_on_demand,
    a_task_not_started_yet_says_so_and_its_page_follows_the_run,
    an_upstream_failed_task_says_it_will_not_run_and_why,
    a_running_try_is_streamed_from_the_page_position,
    the_stream_of_a_finished_try_sends_the_lines_after_a_seq_then_end,
    the_stream_follows_a_running_try_until_it_ends,
);
