//! Exactly once per try across restarts: `trigger_dag` re-attaches to its child, a frozen
//! server cannot commit after another adopted its runs, runs execute their stored DAG
//! version, shutdown never costs a retry, and concurrent first starts migrate once.

use std::process::Command;

use crate::support::{Env, task, wait_until, write_atomically};

fn states(env: &Env, dag: &str) -> Vec<String> {
    env.runs(dag)
        .iter()
        .map(|r| r["state"].as_str().unwrap().to_string())
        .collect()
}

fn finished(env: &Env, dag: &str, n: usize) -> bool {
    let s = states(env, dag);
    s.len() == n && s.iter().all(|x| x == "success" || x == "failed")
}

/// A short grace period, so a SIGTERM interrupts running tries at once.
fn short_grace(env: &Env) {
    std::fs::create_dir_all(env.path("config")).unwrap();
    std::fs::write(
        env.path("config/orchestrator.yaml"),
        "shutdown_grace_secs: 1\n",
    )
    .unwrap();
}

const PARENT: &str = "dag_id: parent
tasks:
  kick: {type: trigger_dag, trigger_dag_id: child, retries: 3, retry_delay: 0}
";

const CHILD: &str = "dag_id: child
tasks:
  work:
    type: shell
    command: 'echo start >> child.log; touch child_started; sleep 4; echo end >> child.log'
    retries: 3
    retry_delay: 0
";

fn one_child_per_trigger(stop: fn(&mut crate::support::Server)) {
    let mut env = Env::new();
    short_grace(&env);
    env.dag("parent", PARENT);
    env.dag("child", CHILD);
    let mut server = env.serve();
    env.ok(&["trigger", "parent"]);
    wait_until("the child's task runs", || {
        env.path("child_started").exists()
    });
    stop(&mut server);
    drop(server);
    let _server = env.serve();
    wait_until("the parent run finishes", || finished(&env, "parent", 1));
    assert_eq!(states(&env, "parent"), ["success"]);
    assert_eq!(
        states(&env, "child"),
        ["success"],
        "the resumed trigger try takes over the child it created"
    );
    let parent = env.run_detail(env.runs("parent")[0]["run_id"].as_str().unwrap());
    let kick = task(&parent, "kick");
    let log = env.ok(&[
        "logs",
        parent["run_id"].as_str().unwrap(),
        "kick",
        "--try",
        &kick["try_number"].to_string(),
    ]);
    assert!(log.contains("taking over child run"), "{log}");
    let child_log = std::fs::read_to_string(env.path("child.log")).unwrap();
    assert_eq!(
        child_log.matches("end").count(),
        1,
        "the child's work completed once: {child_log}"
    );
}

#[test]
fn sigterm_while_a_child_runs_leaves_one_child() {
    one_child_per_trigger(|s| {
        s.sigterm();
    });
}

#[test]
fn kill_9_while_a_child_runs_leaves_one_child() {
    one_child_per_trigger(crate::support::Server::kill9);
}

fn signal(pid: u32, sig: &str) {
    assert!(
        Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
}

#[test]
fn a_frozen_server_commits_nothing_after_another_adopted_its_runs() {
    let mut env = Env::new();
    env.dag(
        "long",
        "dag_id: long
tasks:
  t:
    type: shell
    command: 'touch started_{{ try_number }}; if [ {{ try_number }} = 1 ]; then sleep 60; fi'
    retries: 2
    retry_delay: 0
",
    );
    let mut a = env.serve();
    env.ok(&["trigger", "long"]);
    wait_until("try 1 runs", || env.path("started_1").exists());
    signal(a.child.id(), "-STOP");
    // B starts on the same folder; A's lease lapses and B adopts the run: it kills what A's
    // try left (its process group) and runs try 2.
    let b = env.serve();
    wait_until("the run finishes under B", || finished(&env, "long", 1));
    signal(a.child.id(), "-CONT");
    // A wakes up, finds its lease lapsed, and lets the run go without writing.
    wait_until("A notices its lease lapsed", || {
        a.log().contains("lease lapsed")
    });
    let detail = env.run_detail(env.runs("long")[0]["run_id"].as_str().unwrap());
    assert_eq!(detail["state"], "success");
    let t = task(&detail, "t");
    assert_eq!(t["try_number"], 2);
    let log = env.ok(&[
        "logs",
        detail["run_id"].as_str().unwrap(),
        "t",
        "--try",
        "1",
    ]);
    assert!(
        !log.contains("killed by signal"),
        "A's try ended after B adopted the run; its result must not be recorded: {log}"
    );
    drop(b);
    a.sigterm();
}

#[test]
fn a_run_executes_the_dag_version_it_started_with() {
    let mut env = Env::new();
    let v1 = "dag_id: versioned
tasks:
  wait: {type: shell, command: 'touch waiting; while [ ! -f go ]; do sleep 0.05; done'}
  write: {type: shell, command: 'echo v1 > out', depends_on: [wait]}
";
    env.dag("versioned", v1);
    let server = env.serve();
    let reloads = || server.log().matches("DAGs loaded").count();
    env.ok(&["trigger", "versioned"]);
    wait_until("the first task runs", || env.path("waiting").exists());
    let first = env.runs("versioned")[0].clone();
    let hash = first["dag_version"].as_str().unwrap().to_string();
    assert_eq!(hash.len(), 64, "{first}");
    // Edited while the run is in flight: the run keeps its definition.
    write_atomically(
        &env.path("dags/versioned.yaml"),
        &v1.replace("echo v1", "echo v2"),
    );
    wait_until("the server reloads the edit", || reloads() >= 2);
    std::fs::write(env.path("go"), "").unwrap();
    wait_until("the run finishes", || finished(&env, "versioned", 1));
    assert_eq!(states(&env, "versioned"), ["success"]);
    assert_eq!(std::fs::read_to_string(env.path("out")).unwrap(), "v1\n");
    // A run triggered now uses the new version.
    std::fs::remove_file(env.path("go")).unwrap();
    env.ok(&["trigger", "versioned"]);
    wait_until("the second run waits", || {
        states(&env, "versioned").len() == 2
    });
    let second = env.runs("versioned")[0].clone();
    assert_ne!(second["dag_version"], first["dag_version"]);
    // Broken and then deleted while the second run is in flight: it still finishes.
    write_atomically(
        &env.path("dags/versioned.yaml"),
        "dag_id: versioned\ntasks: [",
    );
    wait_until("the server reloads the broken file", || reloads() >= 3);
    std::fs::remove_file(env.path("dags/versioned.yaml")).unwrap();
    wait_until("the server reloads without the file", || reloads() >= 4);
    std::fs::write(env.path("go"), "").unwrap();
    wait_until("the second run finishes", || finished(&env, "versioned", 2));
    assert_eq!(states(&env, "versioned"), ["success", "success"]);
    assert_eq!(std::fs::read_to_string(env.path("out")).unwrap(), "v2\n");
}

#[test]
fn restarting_the_server_never_fails_a_run_without_retries() {
    let mut env = Env::new();
    short_grace(&env);
    env.dag(
        "once",
        "dag_id: once
tasks:
  t:
    type: shell
    command: 'if [ -f second ]; then exit 0; fi; touch second; sleep 30'
    retries: 0
",
    );
    let mut server = env.serve();
    env.ok(&["trigger", "once"]);
    wait_until("the try runs", || env.path("second").exists());
    assert!(server.sigterm().success());
    drop(server);
    let _server = env.serve();
    wait_until("the run finishes", || finished(&env, "once", 1));
    assert_eq!(states(&env, "once"), ["success"]);
}

#[test]
fn concurrent_first_starts_on_a_new_database_all_succeed() {
    for round in 0..5 {
        let env = Env::new();
        env.dag("d", "dag_id: d\ntasks:\n  t: {type: noop}\n");
        let children: Vec<_> = (0..6)
            .map(|i| {
                let args: &[&str] = if i % 2 == 0 {
                    &["dags", "list"]
                } else {
                    &["trigger", "d"]
                };
                env.command(args)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert_eq!(env.runs("d").len(), 3);
    }
}

#[test]
fn a_run_whose_handling_panics_twice_fails_and_the_daemon_lives_on() {
    let mut env = Env::new();
    env.dag(
        "boom",
        "dag_id: boom\ntasks:\n  kaboom: {type: noop, retries: 3, retry_delay: 0}\n",
    );
    env.dag("fine", "dag_id: fine\ntasks:\n  t: {type: noop}\n");
    // Debug builds only: the scheduler panics while handling the end of any try of `kaboom`.
    let mut server = env.serve_with(&[("ORCHESTRATOR_FAILPOINT", "panic_on_finish:kaboom")]);
    env.ok(&["trigger", "boom"]);
    wait_until("the run fails", || finished(&env, "boom", 1));
    let run = env.runs("boom")[0].clone();
    assert_eq!(run["state"], "failed");
    let note = run["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("panicked twice") && note.contains("failpoint panic_on_finish:kaboom"),
        "{note}"
    );
    // The daemon is still there and still runs other DAGs.
    env.ok(&["trigger", "fine"]);
    wait_until("the other run succeeds", || {
        states(&env, "fine") == ["success"]
    });
    assert_eq!(server.get("/health").0, 200);
    assert!(server.log().contains("restarting from the store"));
    assert!(server.sigterm().success());
}

#[test]
fn waiting_parents_hold_no_slot_so_their_children_run() {
    let mut env = Env::new();
    env.dag(
        "waiter",
        "dag_id: waiter\ntasks:\n  kick: {type: trigger_dag, trigger_dag_id: worker}\n",
    );
    env.dag(
        "worker",
        "dag_id: worker\ntasks:\n  w: {type: shell, command: 'sleep 0.2'}\n",
    );
    // Two slots, three waiting parents: if waiting held a slot, no child could ever start.
    let _server = env.serve_with(&[("ORCHESTRATOR_PARALLELISM", "2")]);
    for _ in 0..3 {
        env.ok(&["trigger", "waiter"]);
    }
    wait_until("every parent and child succeeds", || {
        finished(&env, "waiter", 3) && finished(&env, "worker", 3)
    });
    assert_eq!(states(&env, "waiter"), ["success"; 3]);
    assert_eq!(states(&env, "worker"), ["success"; 3]);
}

#[test]
fn a_backfill_does_not_hold_the_schedule_back() {
    let mut env = Env::new();
    env.dag(
        "minutely",
        "dag_id: minutely
schedule: '* * * * *'
start_date: 2024-01-01
max_active_runs: 1
tasks:
  t: {type: shell, command: 'sleep 30'}
",
    );
    let from = (chrono::Utc::now() - chrono::Duration::minutes(10)).to_rfc3339();
    let to = (chrono::Utc::now() - chrono::Duration::minutes(5)).to_rfc3339();
    env.ok(&["backfill", "minutely", "--from", &from, "--to", &to]);
    let _server = env.serve();
    // Backfill runs have their own max_active_runs pool, as in Airflow 3: the latest
    // scheduled interval is created and runs beside them.
    wait_until("a scheduled run starts beside the backfill", || {
        env.runs("minutely")
            .iter()
            .any(|r| r["run_type"] == "scheduled" && r["state"] == "running")
    });
    let running_backfills = env
        .runs("minutely")
        .iter()
        .filter(|r| r["run_type"] == "backfill" && r["state"] == "running")
        .count();
    assert_eq!(running_backfills, 1, "one backfill run at a time");
}
