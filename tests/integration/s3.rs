//! The pipeline against a real S3-compatible server (moto, which `.ci/run` installs), not a
//! mock in the process: staging and output both on `s3://`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use crate::support::{Env, wait_until};

/// A moto server on a free loopback port, stopped on drop.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_binary() -> String {
    if let Ok(path) = std::env::var("ORCHESTRATOR_TEST_MOTO") {
        return path;
    }
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/venv/bin/moto_server");
    if venv.exists() {
        venv.display().to_string()
    } else {
        "moto_server".into()
    }
}

fn start_moto() -> Moto {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let binary = moto_binary();
    let child = Command::new(&binary)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {binary} ({e}): run the tests through .ci/run, which installs moto"
            )
        });
    let endpoint = format!("127.0.0.1:{port}");
    wait_until("moto listens", || TcpStream::connect(&endpoint).is_ok());
    Moto { child, endpoint }
}

fn s3_request(endpoint: &str, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(endpoint).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {endpoint}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn with_s3(env: &Env, moto: &Moto, args: &[&str]) -> std::process::Output {
    env.command(args).envs(s3_vars(moto)).output().unwrap()
}

#[test]
fn the_pipeline_stages_and_publishes_on_an_s3_compatible_server() {
    let moto = start_moto();
    assert_eq!(
        s3_request(&moto.endpoint, "PUT", "/orchestrator-test").0,
        200
    );
    let env = Env::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["dags", "config", "data"] {
        crate::cli::copy_dir(&root.join(dir), &env.path(dir));
    }
    let out = with_s3(&env, &moto, &["run", "drugs_orchestrator"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!env.path("imported_data").exists() && !env.path("processed_data").exists());

    let (status, listing) = s3_request(&moto.endpoint, "GET", "/orchestrator-test?list-type=2");
    assert_eq!(status, 200);
    for key in [
        "staging/drugs.parquet",
        "staging/pubmed_json.parquet",
        "output/graph.json",
        "output/top_journals.json",
        "output/graph.journals.jsonl",
    ] {
        assert!(
            listing.contains(&format!("<Key>{key}</Key>")),
            "{key} missing from {listing}"
        );
    }
    let (_, graph) = s3_request(
        &moto.endpoint,
        "GET",
        "/orchestrator-test/output/graph.json",
    );
    let graph: serde_json::Value = serde_json::from_str(&graph).unwrap();
    assert_eq!(graph, crate::pipeline::expected_graph());

    let out = with_s3(
        &env,
        &moto,
        &["graph", "related-drugs", "betamethasone", "-o", "json"],
    );
    let related: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(related["related_drugs"], serde_json::json!(["ATROPINE"]));

    // The stored journal index answered, without downloading the graph.
    let out = env
        .command(&["graph", "related-drugs", "betamethasone"])
        .envs(s3_vars(&moto))
        .env("RUST_LOG", "orchestrator::cli::graph=debug")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ATROPINE\n");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("s3://orchestrator-test/output/graph.journals.jsonl: answered from the index"),
        "{log}"
    );
}

/// Credentials, endpoint and `s3://` staging and output on the moto server.
fn s3_vars(moto: &Moto) -> Vec<(String, String)> {
    [
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ENDPOINT", format!("http://{}", moto.endpoint)),
        ("AWS_ALLOW_HTTP", "true".into()),
        (
            "ORCHESTRATOR_STAGING",
            "s3://orchestrator-test/staging".into(),
        ),
        (
            "ORCHESTRATOR_OUTPUT",
            "s3://orchestrator-test/output".into(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

#[test]
fn two_instances_run_the_pipeline_on_s3_and_a_postgresql_warehouse_with_the_same_graph() {
    let moto = start_moto();
    assert_eq!(
        s3_request(&moto.endpoint, "PUT", "/orchestrator-test").0,
        200
    );
    // State and warehouse in one schema of the test database.
    let pg = crate::support::PgSchema::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut envs: Vec<Env> = (0..2)
        .map(|_| {
            let mut env = Env::new();
            for dir in ["dags", "config", "data"] {
                crate::cli::copy_dir(&root.join(dir), &env.path(dir));
            }
            env.vars.extend(s3_vars(&moto));
            env.vars
                .push(("ORCHESTRATOR_DATABASE_URL".into(), pg.url.clone()));
            env.vars
                .push(("ORCHESTRATOR_WAREHOUSE".into(), pg.url.clone()));
            // One slot each: whatever the run's owner cannot start at once is offered, and
            // the other instance runs it.
            env.vars
                .push(("ORCHESTRATOR_PARALLELISM".into(), "1".into()));
            env
        })
        .collect();
    let mut servers: Vec<_> = envs.iter_mut().map(Env::serve).collect();
    envs[0].ok(&["trigger", "drugs_orchestrator"]);
    // Whichever instance runs the first import stops (SIGTERM: it finishes that try) while
    // the pipeline has work left, so the other takes the rest on (its runs are adopted at
    // once after a clean stop): both instances execute the pipeline's tasks.
    let ids: Vec<String> = servers
        .iter()
        .map(|s| {
            let pid = s.child.id();
            pg.column(&format!("SELECT id FROM instance WHERE pid = {pid}"))[0].clone()
        })
        .collect();
    let mut first = Vec::new();
    wait_until("an import runs", || {
        first = pg.column(
            "SELECT instance FROM task_try WHERE task_id LIKE 'import_%' AND instance IS NOT NULL",
        );
        !first.is_empty()
    });
    let stopping = ids.iter().position(|id| *id == first[0]).unwrap();
    assert_eq!(servers[stopping].sigterm().code(), Some(0));
    let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until("the pipeline succeeds", || {
            let runs = envs[1].runs("drugs_orchestrator");
            runs.len() == 1 && runs[0]["state"] == "success"
        })
    }));
    if let Err(panic) = done {
        for (i, s) in servers.iter().enumerate() {
            eprintln!("--- instance {i} ---\n{}", s.log());
        }
        eprintln!(
            "{:?}",
            pg.column(
                "SELECT r.dag_id || ' ' || r.state || ' ' || COALESCE(t.task_id, '') || ' ' || \
                 COALESCE(t.state, 'none') || ' ' || CAST(t.try_number AS TEXT) \
                 FROM dag_run r LEFT JOIN task_instance t ON t.run = r.id"
            )
        );
        eprintln!("{:?}", pg.column("SELECT CAST(run AS TEXT) || ' ' || task_id || ' ' || COALESCE(worker, '-') || ' ' || COALESCE(outcome, '-') FROM try_offer"));
        std::panic::resume_unwind(panic);
    }
    assert!(!envs.iter().any(|e| e.path("processed_data").exists()));
    let (_, graph) = s3_request(
        &moto.endpoint,
        "GET",
        "/orchestrator-test/output/graph.json",
    );
    let graph: serde_json::Value = serde_json::from_str(&graph).unwrap();
    assert_eq!(graph, crate::pipeline::expected_graph());
    assert_eq!(pg.column("SELECT CAST(COUNT(*) AS TEXT) FROM drugs"), ["7"]);
    let ran_on = pg.column("SELECT DISTINCT instance FROM task_try WHERE state = 'success'");
    assert_eq!(ran_on.len(), 2, "tries ran on {ran_on:?}");
    drop(servers);
}
