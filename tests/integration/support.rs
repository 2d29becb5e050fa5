//! Test harness: a temporary project folder, the real binary run in it, a real `serve`
//! on a free loopback port, and waiting on conditions with generous bounds.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

/// Bound for conditions that normally hold in milliseconds.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A project folder with its own DAGs and state database.
pub struct Env {
    pub dir: TempDir,
    /// Address of the running server, if any; CLI commands wake it.
    pub bind: String,
    /// Extra environment variables for every command run in it.
    pub vars: Vec<(String, String)>,
}

impl Env {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("dags")).expect("dags dir");
        // Port 1 refuses connections: commands see "no server" unless one is started.
        Self {
            dir,
            bind: "127.0.0.1:1".into(),
            vars: Vec::new(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes `dags/<name>.yaml`.
    pub fn dag(&self, name: &str, yaml: &str) {
        write_atomically(&self.path(&format!("dags/{name}.yaml")), yaml);
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_orchestrator"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("ORCHESTRATOR_BIND", &self.bind)
            // A crashed server's runs are adopted once its lease lapses: keep that short.
            .env("ORCHESTRATOR_HEARTBEAT", "250ms")
            .env("ORCHESTRATOR_LEASE", "3s")
            .env_remove("ORCHESTRATOR_CONFIG")
            .env_remove("RUST_LOG")
            .envs(self.vars.iter().map(|(k, v)| (k, v)));
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run orchestrator")
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all)).expect("JSON output")
    }

    /// The runs of a DAG, newest first.
    pub fn runs(&self, dag: &str) -> Vec<Value> {
        let v = self.json(&["runs", "list", "--dag", dag, "--limit", "10000"]);
        v.as_array().cloned().unwrap_or_default()
    }

    pub fn run_detail(&self, run_id: &str) -> Value {
        self.json(&["runs", "show", run_id])
    }

    /// Starts `serve` on a free port and waits until it listens.
    pub fn serve(&mut self) -> Server {
        self.serve_with(&[])
    }

    /// Starts `serve` with extra environment variables.
    pub fn serve_with(&mut self, vars: &[(&str, &str)]) -> Server {
        self.serve_on("127.0.0.1:0", vars)
    }

    /// Starts `serve` on all interfaces (beyond loopback); it is reached on loopback.
    pub fn serve_beyond_loopback(&mut self) -> Server {
        let mut server = self.serve_on("0.0.0.0:0", &[]);
        server.addr = server.addr.replace("0.0.0.0:", "127.0.0.1:");
        self.bind = server.addr.clone();
        server
    }

    fn serve_on(&mut self, bind: &str, vars: &[(&str, &str)]) -> Server {
        let mut child = self
            .command(&["serve", "--bind", bind])
            .env("RUST_LOG", "info")
            .envs(vars.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start serve");
        let stderr = child.stderr.take().expect("stderr");
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("serving on http://").nth(1) {
                    let _ = tx.send(
                        addr.split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_string(),
                    );
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("serve did not start: {:?}", lines.lock().unwrap()));
        self.bind = addr.clone();
        Server { child, addr, lines }
    }
}

/// A running `orchestrator serve`, killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub fn get(&self, path: &str) -> (u16, Value) {
        http(&self.addr, "GET", path)
    }

    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }

    pub fn sigterm(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        wait_exit(&mut self.child, PATIENCE)
    }

    pub fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(
            start.elapsed() < limit,
            "process did not exit within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A minimal HTTP/1.1 request; returns status and JSON body (Null when not JSON).
pub fn http(addr: &str, method: &str, path: &str) -> (u16, Value) {
    let (status, body) = http_text(addr, method, path);
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// A minimal HTTP/1.1 request; returns status and body text.
pub fn http_text(addr: &str, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

/// Polls `cond` until it holds; fails the test with `what` after `PATIENCE`.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Writes through a temporary file so a watching server never reads half a file.
pub fn write_atomically(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, content).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// The state of each task instance of a run, by task id.
pub fn task_states(detail: &Value) -> Vec<(String, String)> {
    detail["task_instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["task_id"].as_str().unwrap().to_string(),
                t["state"].as_str().unwrap_or("none").to_string(),
            )
        })
        .collect()
}

pub fn task<'a>(detail: &'a Value, id: &str) -> &'a Value {
    detail["task_instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task_id"] == id)
        .expect("task instance")
}

/// A schema of its own in the PostgreSQL test database (`ORCHESTRATOR_TEST_POSTGRES`), for
/// instances that share a PostgreSQL store; dropped with the guard.
pub struct PgSchema {
    base: String,
    name: String,
    /// The store URL the instances use (`database_url`).
    pub url: String,
}

impl PgSchema {
    pub fn new() -> Self {
        use orchestrator::store::testing;
        let base = testing::postgres_base();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        sqlx::any::install_default_drivers();
        let name = runtime.block_on(testing::create_schema(&base));
        let url = testing::with_schema(&base, &name);
        Self { base, name, url }
    }
}

impl PgSchema {
    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs SQL in the schema; returns the first column of each row, as text.
    pub fn column(&self, sql: &str) -> Vec<String> {
        use sqlx::{Connection, Row};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let mut conn = sqlx::PgConnection::connect(&self.url)
                .await
                .expect("connect");
            let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
                .fetch_all(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            rows.iter()
                .map(|r| {
                    let value = r.try_get_raw(0).expect("a column");
                    value.as_str().expect("text").to_string()
                })
                .collect()
        })
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        orchestrator::store::testing::drop_schema(&self.base, &self.name);
    }
}

/// A journal index without the graph's modification time it records (the one part that
/// differs between two builds of the same graph).
pub fn index_without_time(bytes: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(bytes);
    let key = ",\"graph_modified_ns\":";
    match text.find(key) {
        Some(at) => {
            let rest = &text[at + key.len()..];
            let digits = rest.chars().take_while(char::is_ascii_digit).count();
            format!("{}{}", &text[..at], &rest[digits..]).into_bytes()
        }
        None => bytes.to_vec(),
    }
}
