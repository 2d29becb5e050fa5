//! The dashboard's URLs, built in one place so every page links the same way. Ids go into
//! path segments percent-encoded: a run id such as `manual__2024-01-01T00:00:00+00:00`
//! keeps its `:` and `+` (legal in a path), while `/`, `?`, `#`, `%` and spaces are
//! escaped, so no id can step out of its segment.

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

/// Bytes escaped in a path segment: everything but RFC 3986's unreserved characters and
/// the sub-delimiters run ids use.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}')
    .add(b'&')
    .add(b'\'');

/// Bytes escaped in a query value (also `+`, `=` and `;`).
const QUERY_VALUE: &AsciiSet = &SEGMENT.add(b'+').add(b'=').add(b';');

/// One path segment, percent-encoded.
pub fn segment(id: &str) -> String {
    utf8_percent_encode(id, SEGMENT).to_string()
}

/// `/dags/{dag_id}`: the DAG page (grid and graph).
pub fn dag(dag_id: &str) -> String {
    format!("/dags/{}", segment(dag_id))
}

/// `/dags/{dag_id}/source`, at a stored version when given.
pub fn source(dag_id: &str, version: Option<&str>) -> String {
    match version {
        Some(v) => format!(
            "{}/source?version={}",
            dag(dag_id),
            utf8_percent_encode(v, QUERY_VALUE)
        ),
        None => format!("{}/source", dag(dag_id)),
    }
}

/// `/dags/{dag_id}/runs/{run_id}`: the run page.
pub fn run(dag_id: &str, run_id: &str) -> String {
    format!("{}/runs/{}", dag(dag_id), segment(run_id))
}

/// `/dags/{dag_id}/runs/{run_id}/tasks/{task_id}`: a task's log page (latest try).
pub fn task(dag_id: &str, run_id: &str, task_id: &str) -> String {
    format!("{}/tasks/{}", run(dag_id, run_id), segment(task_id))
}

/// A task's log page at one try.
pub fn task_try(dag_id: &str, run_id: &str, task_id: &str, try_number: u32) -> String {
    format!("{}?try={try_number}", task(dag_id, run_id, task_id))
}

/// The server-sent events stream of one try's log, from after `seq`.
pub fn log_stream(dag_id: &str, run_id: &str, task_id: &str, try_number: u32, seq: u64) -> String {
    format!(
        "{}/logs/stream?try={try_number}&after={seq}",
        task(dag_id, run_id, task_id)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_stay_inside_their_segment_and_run_ids_stay_readable() {
        assert_eq!(
            run("etl", "manual__2024-01-01T00:00:00+00:00"),
            "/dags/etl/runs/manual__2024-01-01T00:00:00+00:00"
        );
        assert_eq!(
            task("d", "../x?y#z", "a b/c"),
            "/dags/d/runs/..%2Fx%3Fy%23z/tasks/a%20b%2Fc"
        );
        assert_eq!(source("d", Some("ab+c")), "/dags/d/source?version=ab%2Bc");
        assert_eq!(
            log_stream("d", "r", "t", 2, 40),
            "/dags/d/runs/r/tasks/t/logs/stream?try=2&after=40"
        );
    }
}
