//! The dashboard's URLs, built in one place so every page links the same way. Ids go into
//! path segments percent-encoded (run ids hold `:` and `+`), query values form-encoded.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Bytes escaped in a path segment: all but RFC 3986's unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn segment(text: &str) -> impl std::fmt::Display + '_ {
    utf8_percent_encode(text, SEGMENT)
}

/// `/dags/{dag_id}`.
pub fn dag(dag_id: &str) -> String {
    format!("/dags/{}", segment(dag_id))
}

/// `/dags/{dag_id}/{action}` (`trigger`, `pause`, `unpause`, `source`).
pub fn dag_action(dag_id: &str, action: &str) -> String {
    format!("{}/{action}", dag(dag_id))
}

/// `/dags/{dag_id}/source?version={hash}`.
pub fn source_version(dag_id: &str, version: &str) -> String {
    format!("{}/source?{}", dag(dag_id), query(&[("version", version)]))
}

/// `/dags/{dag_id}/runs/{run_id}`.
pub fn run(dag_id: &str, run_id: &str) -> String {
    format!("{}/runs/{}", dag(dag_id), segment(run_id))
}

/// `/dags/{dag_id}/runs/{run_id}/tasks/{task_id}`.
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

/// A form-encoded query string (without the `?`).
pub fn query<'a>(pairs: impl IntoIterator<Item = &'a (&'a str, &'a str)>) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in pairs {
        out.append_pair(key, value);
    }
    out.finish()
}

/// `path` with `query` appended when there is one.
pub fn with_query(path: &str, query: &str) -> String {
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    }
}

/// Whether `next` is safe to redirect to: a path on this server (`/…`), never another host
/// (`//host`, and `/\host`, which browsers read the same way), nor a header-breaking byte.
pub fn is_local_path(next: &str) -> bool {
    next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.bytes().any(|b| b.is_ascii_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_encoded_as_path_segments() {
        assert_eq!(
            run("d", "manual__2024-01-01T00:00:00+00:00"),
            "/dags/d/runs/manual__2024-01-01T00%3A00%3A00%2B00%3A00"
        );
        assert_eq!(task("a.b", "r/1", "t"), "/dags/a.b/runs/r%2F1/tasks/t");
        assert_eq!(source_version("d", "ab c"), "/dags/d/source?version=ab+c");
    }

    #[test]
    fn only_local_paths_are_redirect_targets() {
        for ok in ["/", "/dags/x?offset=25", "/?tag=a&tag=b"] {
            assert!(is_local_path(ok), "{ok}");
        }
        for bad in [
            "",
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "evil",
            "/x\r\nSet-Cookie: a=b",
        ] {
            assert!(!is_local_path(bad), "{bad:?}");
        }
    }
}
