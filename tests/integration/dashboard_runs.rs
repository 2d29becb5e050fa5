//! The dashboard's run and log pages against the real binary: a running try's log streamed
//! over server-sent events, the run page with its Gantt, and a failed task cleared with
//! its downstream from the page's form until the run succeeds.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use crate::support::{Env, PATIENCE, http_text, task, wait_until};

/// Prints two lines, waits for the test to create `go`, prints three more.
const STREAM: &str = r#"dag_id: stream
tasks:
  talk:
    type: shell
    command: 'for i in 1 2; do echo "line $i"; sleep 0.3; done; while [ ! -f go ]; do sleep 0.1; done; for i in 3 4 5; do echo "line $i"; sleep 0.3; done'
"#;

/// `check` fails until the file `marker` exists; `publish` depends on it.
const FLAKY: &str = "dag_id: flaky
tasks:
  check: {type: shell, command: 'test -f marker'}
  publish: {type: shell, command: 'echo published', depends_on: check}
";

fn only_run_id(env: &Env, dag: &str) -> String {
    let runs = env.runs(dag);
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0]["run_id"].as_str().unwrap().to_string()
}

/// A run id as the dashboard's links write it (a path segment, percent-encoded).
fn segment(run_id: &str) -> String {
    run_id.replace(':', "%3A").replace('+', "%2B")
}

fn run_state(env: &Env, run_id: &str) -> String {
    env.run_detail(run_id)["state"]
        .as_str()
        .unwrap()
        .to_string()
}

fn task_state(env: &Env, run_id: &str, task_id: &str) -> String {
    let detail = env.run_detail(run_id);
    task(&detail, task_id)["state"]
        .as_str()
        .unwrap_or("none")
        .to_string()
}

/// A server-sent events stream read line by line (HTTP/1.0, so the body is not chunked).
struct EventStream {
    reader: BufReader<TcpStream>,
}

impl EventStream {
    fn open(addr: &str, path: &str) -> Self {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push_str(&line);
        }
        assert!(
            head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
            "{head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/event-stream"),
            "{head}"
        );
        Self { reader }
    }

    /// The next event's lines (comments skipped); `None` once the server closed.
    fn next(&mut self) -> Option<Vec<String>> {
        let mut event = Vec::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).unwrap() == 0 {
                return None;
            }
            let line = line.trim_end_matches('\n').to_string();
            if line.is_empty() {
                if !event.is_empty() {
                    return Some(event);
                }
            } else if !line.starts_with(':') {
                event.push(line);
            }
        }
    }

    fn closed(mut self) -> bool {
        let mut rest = String::new();
        self.reader.read_to_string(&mut rest).is_ok() && rest.trim().is_empty()
    }
}

/// The log lines (`msg` fields) an event carries.
fn messages(event: &[String]) -> Vec<String> {
    event
        .iter()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .flat_map(|v| v.as_array().cloned().unwrap_or_default())
        .map(|l| l["msg"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// A form POST; returns the status and the response head.
fn post_form(addr: &str, path: &str, form: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let head = resp
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string();
    (status, head)
}

#[test]
fn a_running_tries_log_streams_live_and_its_run_page_draws_a_gantt() {
    let mut env = Env::new();
    env.dag("stream", STREAM);
    let server = env.serve();
    env.ok(&["trigger", "stream"]);
    let run_id = only_run_id(&env, "stream");
    let task_path = format!("/dags/stream/runs/{}/tasks/talk", segment(&run_id));
    wait_until("the task runs", || {
        task_state(&env, &run_id, "talk") == "running"
    });

    let mut stream = EventStream::open(&server.addr, &format!("{task_path}/logs/stream"));
    let mut seen = Vec::new();
    while !seen.iter().any(|m| m == "line 2") {
        let event = stream.next().expect("an event before the end");
        assert!(!event.contains(&"event: end".to_string()), "{event:?}");
        seen.extend(messages(&event));
    }
    // The task waits for `go`: these lines came while it was running.
    assert_eq!(task_state(&env, &run_id, "talk"), "running");
    assert!(!seen.iter().any(|m| m == "line 3"), "{seen:?}");
    std::fs::write(env.path("go"), "").unwrap();
    let end = loop {
        let event = stream
            .next()
            .expect("the end event before the stream closes");
        if event.first().is_some_and(|l| l == "event: end") {
            break event;
        }
        seen.extend(messages(&event));
    };
    let printed: Vec<&String> = seen.iter().filter(|m| m.starts_with("line ")).collect();
    assert_eq!(printed, ["line 1", "line 2", "line 3", "line 4", "line 5"]);
    assert!(seen.iter().any(|m| m == "task succeeded"), "{seen:?}");
    assert!(end[1].starts_with("data: "), "{end:?}");
    assert!(stream.closed(), "the stream closes after end");

    wait_until("the run succeeds", || run_state(&env, &run_id) == "success");
    let (status, page) = http_text(
        &server.addr,
        "GET",
        &format!("/dags/stream/runs/{}", segment(&run_id)),
    );
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("class=\"gantt-bar state-success\""), "{page}");
    assert!(page.contains(&format!("{task_path}?try=1")), "{page}");
    let (status, log) = http_text(&server.addr, "GET", &task_path);
    assert_eq!(status, 200);
    assert!(
        log.contains("line 5") && !log.contains("data-stream"),
        "{log}"
    );
}

#[test]
fn a_failed_task_cleared_with_its_downstream_from_the_run_page_runs_again_and_succeeds() {
    let mut env = Env::new();
    env.dag("flaky", FLAKY);
    let server = env.serve();
    env.ok(&["trigger", "flaky"]);
    let run_id = only_run_id(&env, "flaky");
    wait_until("the run fails", || run_state(&env, &run_id) == "failed");
    assert_eq!(task_state(&env, &run_id, "publish"), "upstream_failed");
    let run_path = format!("/dags/flaky/runs/{}", segment(&run_id));
    let (status, page) = http_text(&server.addr, "GET", &run_path);
    assert_eq!(status, 200);
    assert!(
        page.contains(&format!("{run_path}/tasks/check/clear")),
        "{page}"
    );

    std::fs::write(env.path("marker"), "").unwrap();
    let (status, head) = post_form(
        &server.addr,
        &format!("{run_path}/tasks/check/clear"),
        "downstream=true",
    );
    assert_eq!(status, 303, "{head}");
    assert!(head.contains(&format!("location: {run_path}")), "{head}");
    // The flash message says what happened: both tasks reset, the run queued.
    assert!(head.contains("check%2C%20publish"), "{head}");
    assert!(head.contains("queued%20again"), "{head}");

    wait_until("the cleared run succeeds", || {
        run_state(&env, &run_id) == "success"
    });
    let detail = env.run_detail(&run_id);
    assert_eq!(task(&detail, "check")["try_number"], 2);
    assert_eq!(task(&detail, "publish")["state"], "success");
    let (status, page) = http_text(&server.addr, "GET", &run_path);
    assert_eq!(status, 200);
    assert!(page.contains("badge state-success"), "{page}");
}
