//! The REST API (`/api/v2`): the official Python client (`apache-airflow-client`, pinned in
//! `.ci/run`) drives a real `serve`; schemathesis fuzzes the OpenAPI document; plain HTTP
//! checks the error shapes and the log continuation token. The Python parts need
//! `ORCHESTRATOR_TEST_API_PYTHON` (the venv's python) and are skipped with a note without it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;

use serde_json::{Value, json};

use crate::auth::{add_user, token};
use crate::support::{Env, PATIENCE, Server, http, text, wait_until};

const DEMO: &str = "dag_id: api_demo\ntags: [api]\ntasks:\n  hello: {type: shell, command: 'echo hello from conf {{ conf.who }}'}\n  after: {type: noop, depends_on: [hello]}\n";
const PARENT: &str =
    "dag_id: api_parent\ntasks:\n  kick: {type: trigger_dag, trigger_dag_id: api_child}\n";
const CHILD: &str = "dag_id: api_child\ntasks:\n  work: {type: noop}\n";

fn python() -> Option<String> {
    match std::env::var("ORCHESTRATOR_TEST_API_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            eprintln!("ORCHESTRATOR_TEST_API_PYTHON is unset: skipping (.ci/run sets it)");
            None
        }
    }
}

fn server() -> (Env, Server) {
    let mut env = Env::new();
    env.dag("api_demo", DEMO);
    env.dag("api_parent", PARENT);
    env.dag("api_child", CHILD);
    let server = env.serve();
    (env, server)
}

/// A request with a JSON body; returns status and JSON body.
fn send(addr: &str, method: &str, path: &str, body: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let text = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(text).unwrap_or(Value::Null))
}

/// The raw answer (head and body) to a GET that accepts only `text/plain`.
fn get_plain(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp
}

fn run_state(server: &Server, dag: &str, run: &str) -> String {
    let (_, v) = server.get(&format!("/api/v2/dags/{dag}/dagRuns/{run}"));
    v["state"].as_str().unwrap_or_default().to_string()
}

/// Runs the client script against `server` with extra environment variables; returns its
/// output, failing the test (with the server's log) when the script fails.
fn run_client(python: &str, server: &Server, vars: &[(&str, &str)]) -> String {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/integration/api_client.py"
    );
    let out = Command::new(python)
        .args([script, &format!("http://{}", server.addr)])
        .envs(vars.iter().copied())
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "client script failed:\n{stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    assert!(stdout.contains("all ok"), "{stdout}");
    stdout
}

#[test]
fn the_official_client_lists_pauses_triggers_and_reads_logs() {
    let Some(python) = python() else { return };
    let (_env, server) = server();
    run_client(&python, &server, &[]);
}

#[test]
fn with_users_the_official_client_works_with_a_token_and_a_viewer_is_refused_a_trigger() {
    let Some(python) = python() else { return };
    let mut env = Env::new();
    env.dag("api_demo", DEMO);
    env.dag("api_parent", PARENT);
    env.dag("api_child", CHILD);
    for (name, role) in [("ops", "op"), ("val", "viewer")] {
        let out = add_user(&env, name, role, "s3cret pass");
        assert!(out.status.success(), "{out:?}");
    }
    let server = env.serve();
    let reply = token(&server.addr, "ops", "s3cret pass");
    assert_eq!(reply.status, 201);
    let op_token = reply.json()["access_token"]
        .as_str()
        .expect("a token")
        .to_string();
    run_client(&python, &server, &[("AIRFLOW_TOKEN", op_token.as_str())]);
    let reply = token(&server.addr, "val", "s3cret pass");
    let viewer_token = reply.json()["access_token"]
        .as_str()
        .expect("a token")
        .to_string();
    let viewer = [
        ("AIRFLOW_TOKEN", viewer_token.as_str()),
        ("AIRFLOW_EXPECT", "viewer"),
    ];
    let out = run_client(&python, &server, &viewer);
    assert!(out.contains("viewer trigger refused: 403"), "{out}");
    assert!(out.contains("no credentials refused: 401"), "{out}");
    assert!(
        !server.log().contains(&op_token) && !server.log().contains("s3cret"),
        "credentials reached the server log"
    );
}

#[test]
fn errors_have_airflows_shape() {
    let (_env, server) = server();
    let addr = server.addr.as_str();
    let (status, body) = server.get("/api/v2/dags/nope");
    assert_eq!(status, 404);
    assert!(body["detail"].is_string(), "{body}");
    let (status, body) = server.get("/api/v2/no/such/endpoint");
    assert_eq!(status, 404);
    assert!(body["detail"].is_string(), "{body}");
    let (status, body) = http(addr, "DELETE", "/api/v2/dags");
    assert_eq!(status, 405);
    assert!(body["detail"].is_string(), "{body}");
    let (status, body) = server.get("/api/v2/dags?limit=-1");
    assert_eq!(status, 422);
    assert_eq!(
        body["detail"][0]["loc"],
        json!(["query", "limit"]),
        "{body}"
    );
    let trigger = "/api/v2/dags/api_demo/dagRuns";
    let (status, body) = send(addr, "POST", trigger, r#"{"conf": [1, 2]}"#);
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["detail"][0]["loc"], json!(["body", "conf"]));
    let (status, body) = send(addr, "POST", trigger, "{not json");
    assert_eq!(status, 422, "{body}");
    let (status, _) = send(addr, "POST", trigger, r#"{"dag_run_id": "../x"}"#);
    assert_eq!(status, 422);
    let (status, body) = send(
        addr,
        "POST",
        trigger,
        r#"{"dag_run_id": "twice", "logical_date": null}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["dag_run_id"], "twice");
    let (status, body) = send(addr, "POST", trigger, r#"{"dag_run_id": "twice"}"#);
    assert_eq!(status, 409, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("twice"), "{body}");
    let (status, body) = send(addr, "POST", "/api/v2/dags/nope/dagRuns", "{}");
    assert_eq!(status, 404, "{body}");
}

#[test]
fn the_log_continuation_token_follows_a_try() {
    let (env, server) = server();
    let addr = server.addr.as_str();
    let (status, run) = send(
        addr,
        "POST",
        "/api/v2/dags/api_demo/dagRuns",
        r#"{"conf": {"who": "token"}}"#,
    );
    assert_eq!(status, 200, "{run}");
    let run_id = run["dag_run_id"].as_str().unwrap().to_string();
    wait_until("the run succeeds", || {
        run_state(&server, "api_demo", &run_id) == "success"
    });
    let logs = format!("/api/v2/dags/api_demo/dagRuns/{run_id}/taskInstances/hello/logs/1");
    let (status, first) = server.get(&logs);
    assert_eq!(status, 200, "{first}");
    let lines = first["content"].as_array().unwrap();
    assert!(
        lines.iter().any(|l| l["event"]
            .as_str()
            .unwrap()
            .contains("hello from conf token")),
        "{first}"
    );
    // The try has ended and the answer reaches the end of its log: a null token ends a
    // client's follow loop.
    assert_eq!(first["continuation_token"], Value::Null, "{first}");
    let token = lines.last().unwrap()["seq"].to_string();
    let (_, rest) = server.get(&format!("{logs}?token={token}"));
    assert_eq!(rest["content"], json!([]), "{rest}");
    assert_eq!(rest["continuation_token"], Value::Null);
    let plain = get_plain(addr, &logs).to_ascii_lowercase();
    assert!(plain.contains("hello from conf token"), "{plain}");
    assert!(!plain.contains("airflow-continuation-token"), "{plain}");
    // The token of an earlier line returns the lines after it.
    let (_, tail) = server.get(&format!("{logs}?token=1"));
    assert_eq!(tail["content"].as_array().unwrap().len(), lines.len() - 1);
    let (status, _) = server.get(&format!("{logs}?token=garbage"));
    assert_eq!(status, 400);
    let (status, _) = server.get(&logs.replace("/logs/1", "/logs/7"));
    assert_eq!(status, 404);
    drop(env);
}

#[test]
fn every_served_api_route_is_in_the_openapi_document() {
    let (_env, server) = server();
    let (status, doc) = server.get("/api/v2/openapi.json");
    assert_eq!(status, 200);
    let paths = doc["paths"].as_object().unwrap();
    let documented: Vec<&String> = paths.keys().collect();
    // Every documented path answers (never the API's "no endpoint" 404 nor 405).
    for (path, item) in paths {
        let concrete = path
            .replace("{dag_id}", "api_demo")
            .replace("{dag_run_id}", "none")
            .replace("{task_id}", "hello")
            .replace("{try_number}", "1");
        for method in item.as_object().unwrap().keys() {
            let (status, body) = send(&server.addr, &method.to_uppercase(), &concrete, "{}");
            assert_ne!(status, 405, "{method} {path}: {body}");
            let unrouted = body["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("no API endpoint"));
            assert!(!unrouted, "{method} {path} is documented but not served");
        }
    }
    // Every served route is documented: the route list mirrors src/web/api/mod.rs.
    let served = [
        "/api/v2/dags",
        "/api/v2/dags/{dag_id}",
        "/api/v2/dags/{dag_id}/details",
        "/api/v2/dags/{dag_id}/tasks",
        "/api/v2/dags/{dag_id}/tasks/{task_id}",
        "/api/v2/dagSources/{dag_id}",
        "/api/v2/dags/{dag_id}/dagRuns",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/clear",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}",
        "/api/v2/dags/{dag_id}/clearTaskInstances",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/logs/{try_number}",
        "/api/v2/importErrors",
        "/api/v2/monitor/health",
        "/api/v2/version",
        "/api/v2/openapi.json",
        "/auth/token",
        "/api/v2/users",
        "/api/v2/users/{username}",
    ];
    for path in served {
        assert!(
            documented.iter().any(|d| d.as_str() == path),
            "{path} is served but not documented"
        );
    }
    assert_eq!(documented.len(), served.len(), "{documented:?}");
    assert!(doc["components"]["securitySchemes"]["HTTPBearer"].is_object());
    assert!(doc["components"]["securitySchemes"]["HTTPBasic"].is_object());
}

#[test]
fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let Some(python) = python() else { return };
    let mut env = Env::new();
    env.dag("api_demo", DEMO);
    env.dag("api_parent", PARENT);
    env.dag("api_child", CHILD);
    // As an admin: with auth off, the first user the fuzzer adds would turn auth on and
    // leave every later request a 401. The name is one it will not guess.
    let out = add_user(&env, "fuzz-admin-4f1c", "admin", "fuzz-password");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let server = env.serve();
    let issued = token(&server.addr, "fuzz-admin-4f1c", "fuzz-password");
    assert_eq!(issued.status, 201);
    let bearer = format!(
        "Authorization: Bearer {}",
        issued.json()["access_token"].as_str().unwrap_or_default()
    );
    let st = std::path::Path::new(&python).with_file_name("schemathesis");
    let out = Command::new(st)
        // Its cache (`.schemathesis/`) goes to the temporary project, not the repository.
        .current_dir(env.dir.path())
        .args([
            "run",
            &format!("http://{}/api/v2/openapi.json", server.addr),
            "--checks",
            "not_a_server_error,response_schema_conformance",
            "--max-examples",
            "15",
            "--seed",
            "1",
            // A fixed header: generated ones may hold bytes hyper refuses before any
            // handler runs.
            "-H",
            &bearer,
            "--no-color",
        ])
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .expect("run schemathesis");
    assert!(
        out.status.success(),
        "schemathesis failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn runs_are_noted_cleared_and_marked_through_the_api() {
    let (_env, server) = server();
    let addr = server.addr.as_str();
    let body = r#"{"dag_run_id": "r1", "conf": {"who": "x"}, "note": "first"}"#;
    let (status, run) = send(addr, "POST", "/api/v2/dags/api_demo/dagRuns", body);
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["note"], "first");
    assert_eq!(run["run_type"], "manual");
    let path = "/api/v2/dags/api_demo/dagRuns/r1";
    // A run under way belongs to the engine.
    wait_until("the run succeeds", || {
        run_state(&server, "api_demo", "r1") == "success"
    });
    let (status, run) = send(addr, "PATCH", path, r#"{"note": "checked"}"#);
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["note"], "checked");
    // The note survives a clear (the engine's own note does not).
    let (status, dry) = send(addr, "POST", &format!("{path}/clear"), "{}");
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["total_entries"], 2, "a dry run by default: {dry}");
    assert_eq!(run_state(&server, "api_demo", "r1"), "success");
    let (status, dry) = send(
        addr,
        "POST",
        &format!("{path}/clear"),
        r#"{"only_failed": true}"#,
    );
    assert_eq!(
        (status, dry["total_entries"].clone()),
        (200, json!(0)),
        "{dry}"
    );
    let (status, cleared) = send(
        addr,
        "POST",
        &format!("{path}/clear"),
        r#"{"dry_run": false}"#,
    );
    assert_eq!(status, 200, "{cleared}");
    assert_eq!(cleared["dag_run_id"], "r1");
    wait_until("the cleared run succeeds again", || {
        run_state(&server, "api_demo", "r1") == "success"
    });
    assert_eq!(server.get(path).1["note"], "checked");
    // Marking the leaf failed fails the run; relabelling the run is allowed once finished.
    let ti = format!("{path}/taskInstances/after");
    let (status, marked) = send(addr, "PATCH", &ti, r#"{"new_state": "failed"}"#);
    assert_eq!(status, 200, "{marked}");
    assert_eq!(marked["task_instances"][0]["state"], "failed");
    assert_eq!(run_state(&server, "api_demo", "r1"), "failed");
    let (status, _) = send(addr, "PATCH", &ti, r#"{"new_state": "running"}"#);
    assert_eq!(status, 422);
    let (status, tis) = send(
        addr,
        "POST",
        "/api/v2/dags/api_demo/clearTaskInstances",
        r#"{"dag_run_id": "r1", "task_ids": ["hello"], "dry_run": true, "only_failed": false, "include_downstream": true}"#,
    );
    assert_eq!(status, 200, "{tis}");
    assert_eq!(tis["total_entries"], 2, "{tis}");
    let (status, run) = send(addr, "PATCH", path, r#"{"state": "success"}"#);
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["state"], "success");
    let (status, _) = send(addr, "PATCH", path, r#"{"state": "running"}"#);
    assert_eq!(status, 422);
    let (status, _) = send(
        addr,
        "PATCH",
        path,
        &format!(r#"{{"note": "{}"}}"#, "n".repeat(1001)),
    );
    assert_eq!(status, 422);
    let (_, one) = server.get(&format!("{path}/taskInstances/hello"));
    assert_eq!(one["state"], "success", "{one}");
    assert_eq!(one["try_number"], 2, "{one}");
    let (_, listed) = server.get("/api/v2/dags/~/dagRuns?state=success&order_by=-id");
    assert!(
        listed["dag_runs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["dag_run_id"] == "r1"),
        "{listed}"
    );
    let (status, _) = server.get("/api/v2/dags/~/dagRuns?order_by=bogus");
    assert_eq!(status, 400);
    // A body without `note` keeps it; `"note": null` clears it (as Airflow).
    let (_, run) = send(addr, "PATCH", path, r#"{"note": "kept"}"#);
    assert_eq!(run["note"], "kept");
    let (status, run) = send(addr, "PATCH", path, r#"{"state": "failed"}"#);
    assert_eq!((status, run["note"].clone()), (200, json!("kept")), "{run}");
    let (status, run) = send(addr, "PATCH", path, r#"{"note": null}"#);
    assert_eq!((status, run["note"].clone()), (200, Value::Null), "{run}");
}

#[test]
fn dags_are_filtered_ordered_and_paged() {
    let mut env = Env::new();
    env.dag("api_demo", DEMO);
    env.dag("api_parent", PARENT);
    env.dag("api_child", CHILD);
    env.dag(
        "api_tagged",
        "dag_id: api_tagged\ntags: [api, extra]\ntasks:\n  t: {type: noop}\n",
    );
    let server = env.serve();
    let ids = |path: &str| -> Vec<String> {
        let (status, body) = server.get(path);
        assert_eq!(status, 200, "{path}: {body}");
        body["dags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["dag_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids("/api/v2/dags?tags=api"), ["api_demo", "api_tagged"]);
    assert_eq!(
        ids("/api/v2/dags?tags=api&tags=extra&tags_match_mode=all"),
        ["api_tagged"]
    );
    assert_eq!(ids("/api/v2/dags?dag_id_pattern=API_D%25MO"), ["api_demo"]);
    assert_eq!(
        ids("/api/v2/dags?order_by=-dag_id&limit=2"),
        ["api_tagged", "api_parent"]
    );
    assert_eq!(ids("/api/v2/dags?offset=3"), ["api_tagged"]);
    let (_, body) = server.get("/api/v2/dags?limit=1");
    assert_eq!(body["total_entries"], 4);
    let (status, _) = server.get("/api/v2/dags?order_by=owners");
    assert_eq!(status, 400);
    let (_, paused) = send(
        &server.addr,
        "PATCH",
        "/api/v2/dags/api_child",
        r#"{"is_paused": true}"#,
    );
    assert_eq!(paused["is_paused"], true);
    assert_eq!(ids("/api/v2/dags?paused=true"), ["api_child"]);
    let (status, _) = send(
        &server.addr,
        "PATCH",
        "/api/v2/dags/api_child?update_mask=description",
        r#"{"is_paused": false}"#,
    );
    assert_eq!(status, 400);
    let (_, details) = server.get("/api/v2/dags/api_demo/details");
    assert_eq!(details["timezone"], "UTC", "{details}");
    let (_, tasks) = server.get("/api/v2/dags/api_demo/tasks");
    assert_eq!(
        tasks["tasks"][0]["downstream_task_ids"],
        json!(["after"]),
        "{tasks}"
    );
    let (status, one) = server.get("/api/v2/dags/api_demo/tasks/hello");
    assert_eq!(status, 200, "{one}");
    assert_eq!(one, tasks["tasks"][0]);
    let (status, _) = server.get("/api/v2/dags/api_demo/tasks/nope");
    assert_eq!(status, 404);
    let (status, _) = server.get("/api/v2/dags/nope/tasks/hello");
    assert_eq!(status, 404);
    let (_, source) = server.get("/api/v2/dagSources/api_demo");
    assert!(
        source["content"]
            .as_str()
            .unwrap()
            .contains("hello from conf")
    );
}

#[test]
fn a_client_follows_a_running_log_with_the_continuation_token() {
    let mut env = Env::new();
    let gate = env.path("go");
    let command = format!(
        "echo first; while [ ! -f {} ]; do sleep 0.05; done; echo second",
        gate.display()
    );
    let dag = format!("dag_id: slow\ntasks:\n  wait: {{type: shell, command: '{command}'}}\n");
    env.dag("slow", &dag);
    let server = env.serve();
    let (status, run) = send(&server.addr, "POST", "/api/v2/dags/slow/dagRuns", "{}");
    assert_eq!(status, 200, "{run}");
    let run_id = run["dag_run_id"].as_str().unwrap().to_string();
    let logs = format!("/api/v2/dags/slow/dagRuns/{run_id}/taskInstances/wait/logs/1");
    let events = |body: &Value| -> Vec<String> {
        body["content"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|l| l["event"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    // Read while the try runs, from the start, until "first" is there.
    let mut token = String::new();
    let mut seen = Vec::new();
    wait_until("the running try logs 'first'", || {
        let (status, body) = server.get(&format!("{logs}?token={token}"));
        if status != 200 {
            return false;
        }
        seen.extend(events(&body));
        token = body["continuation_token"].as_str().unwrap().to_string();
        seen.iter().any(|e| e == "first")
    });
    assert_eq!(
        server.get(&format!("/api/v2/dags/slow/dagRuns/{run_id}")).1["state"],
        "running"
    );
    // While the try runs, a text/plain answer carries the token in a header.
    let plain = get_plain(&server.addr, &logs).to_ascii_lowercase();
    assert!(plain.contains("airflow-continuation-token: "), "{plain}");
    std::fs::write(&gate, "").unwrap();
    // Go on from the token, as a client's follow loop does, until the token is null: only
    // newer lines come, each once.
    wait_until("the follow loop ends with a null token", || {
        let (_, body) = server.get(&format!("{logs}?token={token}"));
        seen.extend(events(&body));
        match body["continuation_token"].as_str() {
            Some(next) => {
                token = next.to_string();
                false
            }
            None => true,
        }
    });
    wait_until("the run succeeds", || {
        run_state(&server, "slow", &run_id) == "success"
    });
    assert_eq!(seen.iter().filter(|e| *e == "first").count(), 1, "{seen:?}");
    assert_eq!(
        seen.iter().filter(|e| *e == "second").count(),
        1,
        "{seen:?}"
    );
    let (_, whole) = server.get(&logs);
    assert_eq!(events(&whole), seen);
}

#[test]
fn airflow_parameters_not_implemented_are_refused_not_ignored() {
    let (_env, server) = server();
    let addr = server.addr.as_str();
    let refused = |method: &str, path: &str, body: &str, name: &str| {
        let (status, answer) = send(addr, method, path, body);
        assert_eq!(status, 400, "{method} {path} {body}: {answer}");
        let detail = answer["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(name) && detail.ends_with("is not supported"),
            "{answer}"
        );
    };
    let runs = "/api/v2/dags/api_demo/dagRuns";
    // Defaults (absent, null, false) are accepted; anything else is refused, and an
    // unknown field is a validation error (Airflow's models forbid extras).
    let (status, run) = send(
        addr,
        "POST",
        runs,
        r#"{"dag_run_id": "pat_1", "conf": {"who": "x"}, "run_after": null, "data_interval_start": null}"#,
    );
    assert_eq!(status, 200, "{run}");
    refused(
        "POST",
        runs,
        r#"{"run_after": "2024-01-01T00:00:00Z"}"#,
        "run_after",
    );
    refused(
        "POST",
        runs,
        r#"{"data_interval_end": "2024-01-01T00:00:00Z"}"#,
        "data_interval_end",
    );
    assert_eq!(send(addr, "POST", runs, r#"{"bogus": 1}"#).0, 422);
    wait_until("the run succeeds", || {
        run_state(&server, "api_demo", "pat_1") == "success"
    });
    // The run listing's date bounds and run id pattern are implemented.
    let count = |query: &str| -> Value {
        let (status, body) = server.get(&format!("{runs}?{query}"));
        assert_eq!(status, 200, "{query}: {body}");
        body["total_entries"].clone()
    };
    assert_eq!(count("run_id_pattern=PAT%5F"), json!(1));
    assert_eq!(count("run_id_pattern=nothing"), json!(0));
    assert_eq!(
        count("run_id_pattern=pat&start_date_gte=2000-01-01"),
        json!(1)
    );
    assert_eq!(
        count("end_date_lt=2000-01-01T00:00:00.000000%2B0000"),
        json!(0)
    );
    assert_eq!(count("logical_date_gt=2999-01-01"), json!(0));
    assert_eq!(
        count("run_after_lte=2999-01-01&end_date_gt=2000-01-01"),
        json!(1)
    );
    refused(
        "GET",
        &format!("{runs}?updated_at_gte=2000-01-01"),
        "",
        "updated_at_gte",
    );
    refused(
        "GET",
        "/api/v2/dags?dag_display_name_pattern=x",
        "",
        "dag_display_name_pattern",
    );
    refused(
        "GET",
        "/api/v2/dags?last_dag_run_state=failed",
        "",
        "last_dag_run_state",
    );
    assert_eq!(server.get("/api/v2/dags?exclude_stale=true").0, 200);
    refused(
        "GET",
        "/api/v2/importErrors?filename_pattern=x",
        "",
        "filename_pattern",
    );
    let run = format!("{runs}/pat_1");
    refused(
        "POST",
        &format!("{run}/clear"),
        r#"{"run_on_latest_version": true}"#,
        "run_on_latest_version",
    );
    assert_eq!(
        send(addr, "POST", &format!("{run}/clear"), r#"{"bogus": 1}"#).0,
        422
    );
    let clear_tis = "/api/v2/dags/api_demo/clearTaskInstances";
    for (field, value) in [
        ("only_running", "true"),
        ("include_upstream", "true"),
        ("include_past", "true"),
        ("reset_dag_runs", "false"),
        ("start_date", r#""2024-01-01T00:00:00Z""#),
    ] {
        let body = format!(r#"{{"dag_run_id": "pat_1", "{field}": {value}}}"#);
        refused("POST", clear_tis, &body, field);
    }
    let (status, dry) = send(
        addr,
        "POST",
        clear_tis,
        r#"{"dag_run_id": "pat_1", "reset_dag_runs": true, "include_future": false, "end_date": null, "only_failed": false}"#,
    );
    assert_eq!(
        (status, dry["total_entries"].clone()),
        (200, json!(2)),
        "{dry}"
    );
    let ti = format!("{run}/taskInstances/hello");
    refused(
        "PATCH",
        &ti,
        r#"{"new_state": "failed", "include_downstream": true}"#,
        "include_downstream",
    );
    refused(
        "PATCH",
        &format!("{ti}?map_index=2"),
        r#"{"new_state": "failed"}"#,
        "map_index",
    );
    assert_eq!(send(addr, "PATCH", &ti, r#"{"bogus": 1}"#).0, 422);
    refused(
        "GET",
        &format!("{run}/taskInstances?try_number=1"),
        "",
        "try_number",
    );
    // Nothing refused changed anything.
    assert_eq!(run_state(&server, "api_demo", "pat_1"), "success");
}
