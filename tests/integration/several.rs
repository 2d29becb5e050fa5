//! Several `serve` instances on one PostgreSQL store (each in its own working directory with
//! the same DAG files): work spreads over them, one truth survives a `kill -9`, and each
//! scheduled interval becomes exactly one run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::support::{Env, PgSchema, Server, wait_until};

/// One line of the ledger the shell tasks append to.
#[derive(Debug)]
struct Entry {
    run: String,
    task: String,
    try_number: u32,
    /// The instance the try ran on (its `TEST_INSTANCE`).
    instance: String,
    end: bool,
    at: u128,
}

fn ledger(path: &Path) -> Vec<Entry> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 6).then(|| Entry {
                run: f[0].into(),
                task: f[1].into(),
                try_number: f[2].parse().unwrap(),
                instance: f[3].into(),
                end: f[4] == "end",
                at: f[5].parse().unwrap(),
            })
        })
        .collect()
}

/// A shell command that records its try's start and end in the ledger, with the instance
/// that runs it, failing its first try when `flaky`.
fn recorded(ledger: &Path, flaky: bool) -> String {
    let line = |what: &str| {
        format!(
            "echo \"{{{{ run_id }}}} {{{{ task_id }}}} {{{{ try_number }}}} $TEST_INSTANCE {what} $(date +%s%N)\" >> {}",
            ledger.display()
        )
    };
    let fail = if flaky {
        "; if [ {{ try_number }} = 1 ]; then exit 1; fi"
    } else {
        ""
    };
    format!("{}; sleep 0.1; {}{fail}", line("start"), line("end"))
}

fn work_dag(dag_id: &str, ledger: &Path, fan: usize) -> String {
    let mut yaml = format!(
        "dag_id: {dag_id}\ntasks:\n  first: {{type: shell, command: '{}', retries: 2, retry_delay: 0}}\n",
        recorded(ledger, true)
    );
    let mut wide = Vec::new();
    for i in 0..fan {
        yaml.push_str(&format!(
            "  wide_{i}: {{type: shell, command: '{}', depends_on: first, retries: 3, retry_delay: 0}}\n",
            recorded(ledger, false)
        ));
        wide.push(format!("wide_{i}"));
    }
    yaml.push_str(&format!(
        "  last: {{type: shell, command: '{}', depends_on: [{}], retries: 3, retry_delay: 0}}\n",
        recorded(ledger, false),
        wide.join(", ")
    ));
    yaml
}

const KICKER: &str = "dag_id: kicker\ntasks:\n  kick: {type: trigger_dag, trigger_dag_id: work, retries: 3, retry_delay: 0}\n";

/// `n` environments (working directories) with the same DAGs, all on `pg`'s schema.
fn instances(pg: &PgSchema, n: usize, dags: &[(&str, &str)]) -> Vec<Env> {
    (0..n)
        .map(|i| {
            let mut env = Env::new();
            env.vars.push(("TEST_INSTANCE".into(), format!("i{i}")));
            env.vars
                .push(("ORCHESTRATOR_DATABASE_URL".into(), pg.url.clone()));
            env.vars
                .push(("ORCHESTRATOR_PARALLELISM".into(), "4".into()));
            for (name, yaml) in dags {
                env.dag(name, yaml);
            }
            env
        })
        .collect()
}

fn states(env: &Env, dag: &str) -> Vec<String> {
    env.runs(dag)
        .iter()
        .map(|r| r["state"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn three_instances_share_the_runs_and_a_kill_9_loses_and_repeats_nothing() {
    let pg = PgSchema::new();
    let shared = tempfile::tempdir().unwrap();
    let ledger_path = shared.path().join("ledger");
    let work = work_dag("work", &ledger_path, 8);
    // One run 200 tasks wide: its tasks spread over every instance with a free slot.
    let wide = work_dag("wide", &ledger_path, 200);
    // Three instances, and a fourth folder with no server: its CLI reaches them only
    // through the shared store (NOTIFY), never over HTTP.
    let dags = [("work", work.as_str()), ("kicker", KICKER), ("wide", &wide)];
    let mut envs = instances(&pg, 4, &dags);
    let mut servers: Vec<Server> = envs[..3].iter_mut().map(Env::serve).collect();
    let cli = &envs[3];
    for _ in 0..12 {
        let out = cli.ok(&["trigger", "work"]);
        assert!(!out.contains("no server answers"), "{out}");
    }
    for _ in 0..3 {
        cli.ok(&["trigger", "kicker"]);
    }
    cli.ok(&["trigger", "wide"]);
    // Kill one instance while it has tries under way.
    let victim = "i1";
    wait_until("the victim runs tries", || {
        ledger(&ledger_path)
            .iter()
            .any(|e| e.instance == victim && !e.end)
    });
    servers[1].kill9();
    wait_until("more runs finish without it", || {
        states(cli, "work")
            .iter()
            .filter(|s| *s == "success")
            .count()
            >= 4
    });
    // It comes back later (a new process on the same working directory).
    servers[1] = envs[1].serve();
    let cli = &envs[3];
    wait_until("every run succeeds", || {
        let work = states(cli, "work");
        let kick = states(cli, "kicker");
        let wide = states(cli, "wide");
        work.len() == 15
            && kick.len() == 3
            && wide.len() == 1
            && work
                .iter()
                .chain(&kick)
                .chain(&wide)
                .all(|s| s == "success")
    });

    let entries = ledger(&ledger_path);
    let mut tries: BTreeMap<(String, String, u32), Vec<&Entry>> = BTreeMap::new();
    for e in &entries {
        tries
            .entry((e.run.clone(), e.task.clone(), e.try_number))
            .or_default()
            .push(e);
    }
    for (key, lines) in &tries {
        let starts = lines.iter().filter(|e| !e.end).count();
        let ends = lines.iter().filter(|e| e.end).count();
        assert!(
            starts == 1 && ends <= 1,
            "try {key:?} ran {starts} times: {lines:?}"
        );
    }
    // Each task's final try (the one the store recorded as its success) ran to its end
    // exactly once, and no try ran after it.
    for run in cli.runs("work").into_iter().chain(cli.runs("wide")) {
        let run_id = run["run_id"].as_str().unwrap();
        let detail = cli.run_detail(run_id);
        for ti in detail["task_instances"].as_array().unwrap() {
            let task = ti["task_id"].as_str().unwrap();
            assert_eq!(ti["state"], "success", "{run_id} {task}");
            let last = u32::try_from(ti["try_number"].as_u64().unwrap()).unwrap();
            let key = (run_id.to_string(), task.to_string(), last);
            assert!(
                tries.get(&key).is_some_and(|l| l.iter().any(|e| e.end)),
                "the successful try {key:?} left no end in the ledger"
            );
            assert!(
                !tries
                    .keys()
                    .any(|(r, t, n)| r == run_id && t == task && *n > last),
                "a try of {run_id} {task} ran after its recorded success"
            );
        }
    }
    // Tries of one task never overlap: each try that ended did so before the next began.
    for ((run, task, n), lines) in &tries {
        let Some(end) = lines.iter().find(|e| e.end) else {
            continue;
        };
        if let Some(next) = tries.get(&(run.clone(), task.clone(), n + 1)) {
            let start = next.iter().find(|e| !e.end).unwrap();
            assert!(
                end.at <= start.at,
                "tries {n} and {} of {run} {task} overlap",
                n + 1
            );
        }
    }
    let mut per_instance: BTreeMap<&str, usize> = BTreeMap::new();
    for e in entries.iter().filter(|e| !e.end) {
        *per_instance.entry(e.instance.as_str()).or_default() += 1;
    }
    eprintln!("tries per instance: {per_instance:?}");
    let instances: BTreeSet<&str> = per_instance.keys().copied().collect();
    assert!(
        instances.len() >= 2,
        "all the work ran on one instance: {instances:?}"
    );
    // The wide run's own tasks ran on several instances, not only on its run's owner.
    let wide_run = cli.runs("wide")[0]["run_id"].as_str().unwrap().to_string();
    let mut wide_instances: BTreeMap<&str, usize> = BTreeMap::new();
    for e in entries.iter().filter(|e| e.run == wide_run && !e.end) {
        *wide_instances.entry(e.instance.as_str()).or_default() += 1;
    }
    eprintln!("tries of the wide run per instance: {wide_instances:?}");
    assert!(
        wide_instances.len() >= 2,
        "the wide run's tasks ran on one instance: {wide_instances:?}"
    );
    let killed = entries.iter().filter(|e| e.instance == victim).count();
    assert!(killed > 0, "the killed instance ran nothing");
    drop(servers);
}

#[test]
fn instances_starting_together_create_each_scheduled_interval_once() {
    let pg = PgSchema::new();
    // Two days of hourly intervals to catch up on, with every instance racing to create them.
    let start = (chrono::Utc::now() - chrono::Duration::hours(48)).format("%Y-%m-%dT%H:00:00");
    let dag = format!(
        "dag_id: hourly\nschedule: '@hourly'\nstart_date: {start}\ncatchup: true\n\
         max_active_runs: 64\ntasks:\n  t: {{type: noop}}\n"
    );
    let mut envs = instances(&pg, 3, &[("hourly", &dag)]);
    let servers: Vec<Server> = envs.iter_mut().map(Env::serve).collect();
    wait_until("48 intervals run", || {
        let s = states(&envs[0], "hourly");
        s.len() >= 48 && s.iter().all(|s| s == "success")
    });
    let runs = envs[0].runs("hourly");
    let dates: BTreeSet<&str> = runs
        .iter()
        .map(|r| r["logical_date"].as_str().unwrap())
        .collect();
    assert_eq!(dates.len(), runs.len(), "an interval ran twice");
    drop(servers);
}

#[test]
fn max_active_runs_holds_across_instances() {
    let pg = PgSchema::new();
    let shared = tempfile::tempdir().unwrap();
    let ledger_path = shared.path().join("ledger");
    // Each run notes when its task starts and ends; with one active run at a time the
    // notes alternate however the instances race for the queued runs.
    let dag = format!(
        "dag_id: single\nmax_active_runs: 1\ntasks:\n  t: {{type: shell, command: \
         'echo start >> {0}; sleep 0.2; echo end >> {0}'}}\n",
        ledger_path.display()
    );
    let mut envs = instances(&pg, 3, &[("single", &dag)]);
    for _ in 0..6 {
        envs[0].ok(&["trigger", "single"]);
    }
    let servers: Vec<Server> = envs.iter_mut().map(Env::serve).collect();
    wait_until("every run succeeds", || {
        let s = states(&envs[0], "single");
        s.len() == 6 && s.iter().all(|s| s == "success")
    });
    let notes = std::fs::read_to_string(&ledger_path).unwrap();
    assert_eq!(
        notes,
        "start\nend\n".repeat(6),
        "two runs were active at once"
    );
    drop(servers);
}

/// Runs SQL on the test database as its administrator.
fn admin(sql: &str) {
    let base = orchestrator::store::testing::postgres_base();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::AnyConnection::connect(&base).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&mut conn)
            .await
            .unwrap();
    });
}

/// An instance logging in as a role of its own, whose log-in an outage can take away.
struct Outage {
    pg: Option<PgSchema>,
    role: String,
}

impl Outage {
    fn new() -> (Self, Env) {
        let pg = PgSchema::new();
        let role = pg.name().to_string();
        admin(&format!(
            "CREATE ROLE {role} LOGIN; ALTER SCHEMA {role} OWNER TO {role}"
        ));
        let mut url = url::Url::parse(&pg.url).unwrap();
        url.set_username(&role).unwrap();
        let mut env = Env::new();
        env.vars
            .push(("ORCHESTRATOR_DATABASE_URL".into(), url.to_string()));
        (Self { pg: Some(pg), role }, env)
    }

    /// The database goes away for the instance: no new connections, existing ones ended.
    fn begin(&self) {
        let role = &self.role;
        admin(&format!(
            "ALTER ROLE {role} NOLOGIN; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"
        ));
    }

    fn end(&self) {
        admin(&format!("ALTER ROLE {} LOGIN", self.role));
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        let role = &self.role;
        admin(&format!(
            "ALTER ROLE {role} LOGIN; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'; \
             ALTER SCHEMA {role} OWNER TO CURRENT_USER"
        ));
        // The schema goes before its owner's role.
        drop(self.pg.take());
        admin(&format!("DROP ROLE IF EXISTS {role}"));
    }
}

/// Waits for the first run of `dag` to succeed and returns its task instance `task`.
fn task_of_succeeded_run(env: &Env, dag: &str, task: &str) -> serde_json::Value {
    wait_until(&format!("the {dag} run succeeds"), || {
        env.runs(dag)
            .first()
            .is_some_and(|r| r["state"] == "success")
    });
    let run_id = env.runs(dag)[0]["run_id"].as_str().unwrap().to_string();
    crate::support::task(&env.run_detail(&run_id), task).clone()
}

#[test]
fn a_try_runs_on_through_a_database_outage_shorter_than_the_lease_and_its_end_is_kept() {
    let (outage, mut env) = Outage::new();
    let marks = tempfile::tempdir().unwrap();
    let (go, ended) = (marks.path().join("go"), marks.path().join("ended"));
    // A long lease: the outage cannot outlast it however slow the machine.
    env.vars.push(("ORCHESTRATOR_LEASE".into(), "10min".into()));
    env.dag(
        "slow",
        &format!(
            "dag_id: slow\ntasks:\n  t: {{type: shell, command: 'until [ -e {} ]; do sleep 0.05; done; \
             echo {{{{ try_number }}}} >> {}', retries: 3, retry_delay: 0}}\n  \
             u: {{type: noop, depends_on: t}}\n",
            go.display(),
            ended.display()
        ),
    );
    let mut server = env.serve();
    env.ok(&["trigger", "slow"]);
    wait_until("the try runs", || {
        env.runs("slow")
            .first()
            .is_some_and(|r| r["state"] == "running")
    });
    outage.begin();
    wait_until("the instance notices", || {
        server.log().contains("lost the state database")
    });
    let (status, body) = server.get("/health");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["metadatabase"]["status"], "unhealthy", "{body}");
    // The try goes on, and ends while the database is away.
    std::fs::write(&go, "").unwrap();
    wait_until("the try ends", || ended.exists());
    assert!(server.child.try_wait().unwrap().is_none(), "serve stopped");
    outage.end();
    wait_until("it resumes", || server.log().contains("answers again"));
    // The try that ran through the outage is the one recorded: nothing ran twice.
    let t = task_of_succeeded_run(&env, "slow", "t");
    assert_eq!(t["try_number"], 1, "{t}");
    assert_eq!(std::fs::read_to_string(&ended).unwrap(), "1\n");
    let (status, body) = server.get("/health");
    assert_eq!(status, 200, "{body}");
    assert!(
        !server.log().contains("stops its tries"),
        "{}",
        server.log()
    );
    assert_eq!(server.sigterm().code(), Some(0), "{}", server.log());
}

#[test]
fn a_trigger_dag_try_waits_for_its_child_through_a_database_outage() {
    let (outage, mut env) = Outage::new();
    let marks = tempfile::tempdir().unwrap();
    let go = marks.path().join("go");
    env.vars.push(("ORCHESTRATOR_LEASE".into(), "10min".into()));
    env.dag(
        "child",
        &format!(
            "dag_id: child\ntasks:\n  t: {{type: shell, command: 'until [ -e {} ]; do sleep 0.05; done'}}\n",
            go.display()
        ),
    );
    env.dag(
        "parent",
        "dag_id: parent\ntasks:\n  trig: {type: trigger_dag, trigger_dag_id: child, wait_for_completion: true}\n",
    );
    let mut server = env.serve();
    env.ok(&["trigger", "parent"]);
    wait_until("the child runs", || {
        env.runs("child")
            .first()
            .is_some_and(|r| r["state"] == "running")
    });
    outage.begin();
    wait_until("the instance notices", || {
        server.log().contains("lost the state database")
    });
    // Longer than the waiting try's pace of looking at its child (2 s): a look fails.
    std::thread::sleep(std::time::Duration::from_secs(3));
    outage.end();
    wait_until("it resumes", || server.log().contains("answers again"));
    std::fs::write(&go, "").unwrap();
    let trig = task_of_succeeded_run(&env, "parent", "trig");
    assert_eq!(trig["try_number"], 1, "{trig}");
    assert_eq!(env.runs("child").len(), 1, "the child was triggered twice");
    assert_eq!(server.sigterm().code(), Some(0), "{}", server.log());
}

#[test]
fn an_outage_longer_than_the_lease_stops_the_tries_and_the_run_resumes_after_it() {
    let (outage, mut env) = Outage::new();
    let marks = tempfile::tempdir().unwrap();
    let ledger_path = marks.path().join("ledger");
    env.vars
        .push(("ORCHESTRATOR_HEARTBEAT".into(), "200ms".into()));
    env.vars.push(("ORCHESTRATOR_LEASE".into(), "1s".into()));
    // The first try would run for a minute; the second one is quick.
    env.dag(
        "slow",
        &format!(
            "dag_id: slow\ntasks:\n  t: {{type: shell, command: 'echo start {{{{ try_number }}}} >> {0}; \
             if [ {{{{ try_number }}}} = 1 ]; then sleep 60; fi; echo end {{{{ try_number }}}} >> {0}', \
             retries: 1, retry_delay: 0}}\n",
            ledger_path.display()
        ),
    );
    let mut server = env.serve();
    env.ok(&["trigger", "slow"]);
    wait_until("the try runs", || {
        std::fs::read_to_string(&ledger_path).is_ok_and(|l| l.contains("start 1"))
    });
    outage.begin();
    wait_until("the lease runs out and the try is stopped", || {
        server.log().contains("stops its tries")
    });
    outage.end();
    let t = task_of_succeeded_run(&env, "slow", "t");
    // The stopped try is recorded as interrupted (it failed, as a crashed one does) and
    // the retry ran after the outage.
    assert_eq!(t["try_number"], 2, "{t}");
    assert_eq!(
        std::fs::read_to_string(&ledger_path).unwrap(),
        "start 1\nstart 2\nend 2\n"
    );
    assert_eq!(server.sigterm().code(), Some(0), "{}", server.log());
}

#[test]
fn a_worker_shutting_down_hands_its_try_back_and_one_without_dag_files_runs_it() {
    let pg = PgSchema::new();
    let shared = tempfile::tempdir().unwrap();
    let ledger_path = shared.path().join("ledger");
    // The run's owner has one slot, held by `blocker`: `t` is offered to the other instance,
    // which has no DAG files (it runs the stored DAG version). Its first try outlasts the
    // worker's shutdown grace; the next one is quick.
    let line = |what: &str| {
        format!(
            "echo \"{{{{ run_id }}}} {{{{ task_id }}}} {{{{ try_number }}}} $TEST_INSTANCE {what} $(date +%s%N)\" >> {}",
            ledger_path.display()
        )
    };
    let dag = format!(
        "dag_id: handback\ntasks:\n  blocker: {{type: shell, command: 'sleep 3'}}\n  \
         t: {{type: shell, command: '{}; if [ {{{{ try_number }}}} = 1 ]; then sleep 60; fi; {}'}}\n",
        line("start"),
        line("end")
    );
    let mut envs = instances(&pg, 2, &[]);
    envs[0].dag("handback", &dag);
    envs[0]
        .vars
        .push(("ORCHESTRATOR_PARALLELISM".into(), "1".into()));
    envs[1]
        .vars
        .push(("ORCHESTRATOR_SHUTDOWN_GRACE_SECS".into(), "1".into()));
    let _owner = envs[0].serve();
    envs[0].ok(&["trigger", "handback"]);
    // The worker starts once the owner holds the run (else it could take the run itself:
    // a stored DAG version is all it needs).
    wait_until("the owner runs the blocker", || {
        states(&envs[0], "handback") == ["running"]
    });
    let mut worker = envs[1].serve();
    wait_until("the worker runs t", || {
        ledger(&ledger_path)
            .iter()
            .any(|e| e.task == "t" && e.instance == "i1" && !e.end)
    });
    assert_eq!(worker.sigterm().code(), Some(0), "{}", worker.log());
    wait_until("the run succeeds", || {
        states(&envs[0], "handback") == ["success"]
    });
    let run_id = envs[0].runs("handback")[0]["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let detail = envs[0].run_detail(&run_id);
    let t = crate::support::task(&detail, "t");
    // Handed back, not failed: the next try ran without using a retry (the task has none).
    assert_eq!(t["state"], "success", "{t}");
    assert_eq!(t["try_number"], 2, "{t}");
    assert_eq!(t["max_tries"], 2, "{t}");
    assert_eq!(crate::support::task(&detail, "blocker")["try_number"], 1);
    let entries = ledger(&ledger_path);
    let second = entries
        .iter()
        .find(|e| e.task == "t" && e.try_number == 2 && e.end);
    assert!(second.is_some(), "{entries:?}");
}

/// Forwards connections to `[::1]:<port>` to `target`, so the IPv4-only test database can
/// be reached at an IPv6 literal; `None` where this host has no IPv6 loopback.
fn ipv6_proxy(target: String) -> Option<u16> {
    use std::net::{TcpListener, TcpStream};
    let listener = TcpListener::bind("[::1]:0").ok()?;
    let port = listener.local_addr().ok()?.port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(&target) else {
                continue;
            };
            let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut c, mut s) = (client, server);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c, &mut s);
                let _ = s.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s2, &mut c2);
                let _ = c2.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    Some(port)
}

#[test]
fn a_database_at_an_ipv6_literal_is_reached() {
    let pg = PgSchema::new();
    let mut url = url::Url::parse(&pg.url).unwrap();
    let target = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
    let Some(port) = ipv6_proxy(target) else {
        eprintln!("skipped: this host has no IPv6 loopback");
        return;
    };
    url.set_host(Some("[::1]")).unwrap();
    url.set_port(Some(port)).unwrap();
    let mut env = Env::new();
    env.vars
        .push(("ORCHESTRATOR_DATABASE_URL".into(), url.to_string()));
    env.dag("t", "dag_id: t\ntasks:\n  a: {type: noop}\n");
    let out = env.ok(&["trigger", "t", "--wait"]);
    assert!(out.contains("success"), "{out}");
    assert_eq!(states(&env, "t"), ["success"]);
}
