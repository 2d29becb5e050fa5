//! The dashboard's DAG pages and actions over real HTTP, against `serve` on the shipped
//! project: the list, a trigger through the form, pause and unpause, the grid and graph,
//! a 404 page, and a cross-site form refused.

use std::io::{Read, Write};
use std::net::TcpStream;

use crate::support::{Env, PATIENCE, wait_until};

/// A project with the shipped DAGs, config and sample data.
fn shipped() -> Env {
    let env = Env::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["dags", "config", "data"] {
        crate::cli::copy_dir(&root.join(dir), &env.path(dir));
    }
    env
}

/// A form POST as a browser sends it from a page (`headers` add or override); returns the
/// status, the `Location` header and the body.
fn post_form(
    addr: &str,
    path: &str,
    form: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n{extra}\r\n{form}",
        form.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let location = head
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .unwrap_or_default()
        .to_string();
    (status, location, body.to_string())
}

fn same_origin(addr: &str) -> [(&'static str, String); 2] {
    [
        ("Origin", format!("http://{addr}")),
        ("Sec-Fetch-Site", "same-origin".to_string()),
    ]
}

fn paused(env: &Env, dag: &str) -> bool {
    let dags = env.json(&["dags", "list"]);
    let row = dags.as_array().unwrap().iter().find(|d| d["dag_id"] == dag);
    row.expect("DAG listed")["paused"].as_bool().unwrap()
}

#[test]
fn the_dag_pages_list_trigger_pause_and_show_the_grid_and_graph_over_http() {
    let mut env = shipped();
    let server = env.serve();
    let addr = server.addr.clone();
    let get = |path: &str| crate::support::http_text(&addr, "GET", path);
    let (status, list) = get("/");
    assert_eq!(status, 200);
    for dag in [
        "drugs_import",
        "drugs_load",
        "drugs_process",
        "drugs_orchestrator",
        "example",
        "warehouse_report",
    ] {
        assert!(
            list.contains(&format!("href=\"/dags/{dag}\"")),
            "{dag}: {list}"
        );
    }

    let headers = same_origin(&addr);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let form = "conf=%7B%22region%22%3A+%22us%22%7D&next=%2Fdags%2Fexample";
    let (status, location, _) = post_form(&addr, "/dags/example/trigger", form, &headers);
    assert_eq!(status, 303);
    assert_eq!(location, "/dags/example");
    wait_until("the triggered run succeeds", || {
        env.runs("example").iter().any(|r| {
            r["run_type"] == "manual" && r["conf"]["region"] == "us" && r["state"] == "success"
        })
    });
    let run_id = env
        .runs("example")
        .into_iter()
        .find(|r| r["run_type"] == "manual")
        .unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, page) = get("/dags/example");
    assert_eq!(status, 200);
    let encoded: String = run_id.replace(':', "%3A").replace('+', "%2B");
    assert!(
        page.contains(&format!("/dags/example/runs/{encoded}")),
        "{page}"
    );

    let (status, location, _) = post_form(
        &addr,
        "/dags/example/pause",
        "next=%2F%3Ftag%3Ddemo",
        &headers,
    );
    assert_eq!((status, location.as_str()), (303, "/?tag=demo"));
    assert!(paused(&env, "example"));
    let evil = [("Origin", "http://evil.example")];
    let (status, _, body) = post_form(&addr, "/dags/example/unpause", "next=%2F", &evil);
    assert_eq!(status, 403);
    assert!(body.contains("came from another site"), "{body}");
    assert!(paused(&env, "example"));
    let (status, _, _) = post_form(&addr, "/dags/example/unpause", "next=%2F", &headers);
    assert_eq!(status, 303);
    assert!(!paused(&env, "example"));

    let (status, page) = get("/dags/drugs_orchestrator");
    assert_eq!(status, 200);
    assert!(page.contains("<table class=\"grid\">"), "{page}");
    assert!(page.contains("<svg"), "{page}");
    assert!(page.contains("No runs yet"), "{page}");
    let (status, page) = get("/dags/nope");
    assert_eq!(status, 404);
    assert!(page.contains("404 Not Found"), "{page}");
    let (status, _) = get("/dags/example/trigger");
    assert_eq!(status, 405);
}
