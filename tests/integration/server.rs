//! `serve`: pick-up of CLI triggers, concurrency, hot reload, crash recovery, shutdown.

use std::process::{Child, Stdio};

use crate::support::{Env, task, wait_until};

const CHAIN: &str = "dag_id: chain
tasks:
  a: {type: noop}
  b: {type: noop, depends_on: a}
  c: {type: noop, depends_on: b}
";

fn states(env: &Env, dag: &str) -> Vec<String> {
    env.runs(dag)
        .iter()
        .map(|r| r["state"].as_str().unwrap().to_string())
        .collect()
}

fn all_succeeded(env: &Env, dag: &str, n: usize) -> bool {
    let s = states(env, dag);
    s.len() == n && s.iter().all(|x| x == "success")
}

#[test]
fn a_cli_trigger_is_picked_up_by_the_running_server() {
    let mut env = Env::new();
    env.dag("chain", CHAIN);
    let server = env.serve();
    let (status, health) = server.get("/api/v2/monitor/health");
    assert_eq!(status, 200);
    assert_eq!(health["metadatabase"]["status"], "healthy");
    let out = env.ok(&["trigger", "chain"]);
    assert!(!out.contains("no server"), "{out}");
    wait_until("the triggered run succeeds", || {
        all_succeeded(&env, "chain", 1)
    });
    let out = env.ok(&["trigger", "chain", "--wait"]);
    assert!(out.contains("succeeded"), "{out}");
}

#[test]
fn two_hundred_concurrent_triggers_are_all_recorded_and_run() {
    let mut env = Env::new();
    env.dag("chain", CHAIN);
    let _server = env.serve();
    let children: Vec<Child> = (0..200)
        .map(|_| {
            env.command(&["trigger", "chain"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(env.runs("chain").len(), 200);
    wait_until("200 runs succeed", || all_succeeded(&env, "chain", 200));
}

#[test]
fn added_changed_and_removed_dag_files_are_picked_up_without_a_restart() {
    let mut env = Env::new();
    env.dag("chain", CHAIN);
    let server = env.serve();
    let loaded =
        |s: &crate::support::Server| s.get("/health").1["dags"]["loaded"].as_u64().unwrap();
    assert_eq!(loaded(&server), 1);

    env.dag(
        "fresh",
        "dag_id: fresh\ntasks:\n  t: {type: shell, command: 'echo version one'}\n",
    );
    wait_until("the new DAG is loaded", || loaded(&server) == 2);
    env.ok(&["trigger", "fresh", "--wait"]);

    env.dag(
        "fresh",
        "dag_id: fresh\ntasks:\n  t: {type: shell, command: 'echo version two'}\n",
    );
    wait_until("the changed DAG runs its new command", || {
        env.ok(&["trigger", "fresh", "--wait"]);
        let run_id = env.runs("fresh")[0]["run_id"].as_str().unwrap().to_string();
        env.ok(&["logs", &run_id, "t"])
            .contains("STDOUT version two")
    });

    env.dag("broken", "dag_id: broken\ntasks:\n  t: {type: nope}\n");
    wait_until("the bad file is reported", || {
        server.get("/health").1["dags"]["import_errors"] == 1
    });
    assert_eq!(
        loaded(&server),
        2,
        "a bad file must not take the others down"
    );

    std::fs::remove_file(env.path("dags/fresh.yaml")).unwrap();
    wait_until("the removed DAG is unloaded", || loaded(&server) == 1);
}

const CRASHY: &str = "dag_id: crashy
tasks:
  slow:
    type: shell
    command: 'if [ -f second ]; then echo resumed; else touch started second; sleep 60; fi'
    retries: 1
    retry_delay: 0
  after: {type: noop, depends_on: slow}
";

const FRAGILE: &str = "dag_id: fragile
tasks:
  slow: {type: shell, command: 'touch fragile_started; sleep 60', retries: 0}
";

#[test]
fn after_kill_9_the_next_start_resumes_interrupted_and_queued_runs() {
    let mut env = Env::new();
    env.dag("crashy", CRASHY);
    env.dag("fragile", FRAGILE);
    env.dag("chain", CHAIN);
    let mut server = env.serve();
    env.ok(&["trigger", "crashy"]);
    env.ok(&["trigger", "fragile"]);
    wait_until("both slow tasks are running", || {
        env.path("started").exists() && env.path("fragile_started").exists()
    });
    server.kill9();
    drop(server);

    // A trigger while no server runs is kept, too.
    env.bind = "127.0.0.1:1".into();
    env.ok(&["trigger", "chain"]);
    let _server = env.serve();
    wait_until("every run finishes", || {
        ["crashy", "fragile", "chain"].iter().all(|d| {
            states(&env, d)
                .iter()
                .all(|s| s == "success" || s == "failed")
        })
    });
    let crashy = env.run_detail(env.runs("crashy")[0]["run_id"].as_str().unwrap());
    assert_eq!(crashy["state"], "success");
    assert_eq!(
        task(&crashy, "slow")["try_number"],
        2,
        "the interrupted try counts; the retry succeeds"
    );
    let fragile = env.run_detail(env.runs("fragile")[0]["run_id"].as_str().unwrap());
    assert_eq!(fragile["state"], "failed");
    assert_eq!(
        task(&fragile, "slow")["error"],
        "interrupted: the process running this try stopped or lost its lease (crash, kill or freeze)"
    );
    assert_eq!(states(&env, "chain"), vec!["success"]);
}

#[test]
fn sigterm_lets_running_tries_finish_and_the_next_start_completes_the_run() {
    let mut env = Env::new();
    env.dag(
        "graceful",
        "dag_id: graceful\ntasks:\n  t: {type: shell, command: 'touch started; sleep 1'}\n  after: {type: noop, depends_on: t}\n",
    );
    let mut server = env.serve();
    env.ok(&["trigger", "graceful"]);
    wait_until("the task runs", || env.path("started").exists());
    let status = server.sigterm();
    assert!(
        status.success(),
        "serve exited with {status}: {}",
        server.log()
    );
    let run = env.run_detail(env.runs("graceful")[0]["run_id"].as_str().unwrap());
    assert_eq!(
        task(&run, "t")["state"],
        "success",
        "the running try was allowed to finish"
    );
    drop(server);
    let _server = env.serve();
    wait_until("the run completes after restart", || {
        states(&env, "graceful") == ["success"]
    });
}

#[test]
fn a_paused_dag_keeps_its_runs_queued_until_unpaused() {
    let mut env = Env::new();
    env.dag("chain", CHAIN);
    env.dag("other", "dag_id: other\ntasks:\n  t: {type: noop}\n");
    env.ok(&["pause", "chain"]);
    assert_eq!(env.json(&["dags", "list"])[0]["paused"], true);
    let _server = env.serve();
    env.ok(&["trigger", "chain"]);
    // Runs are claimed in queue order: once the later one ran, the paused one was passed over.
    env.ok(&["trigger", "other", "--wait"]);
    assert_eq!(states(&env, "chain"), vec!["queued"]);
    env.ok(&["unpause", "chain"]);
    wait_until("the unpaused DAG's run succeeds", || {
        all_succeeded(&env, "chain", 1)
    });
}

#[test]
fn a_pause_is_honoured_when_the_server_misses_the_cli_wake_up() {
    let mut env = Env::new();
    env.dag("held", "dag_id: held\ntasks:\n  t: {type: noop}\n");
    env.dag("other", "dag_id: other\ntasks:\n  t: {type: noop}\n");
    let _server = env.serve();
    // The server listens on another port than the CLI's config names: every wake-up the
    // CLI sends goes nowhere, and only the server's own poll of the store sees the changes.
    env.bind = "127.0.0.1:1".into();
    env.ok(&["pause", "held"]);
    env.ok(&["trigger", "held"]);
    env.ok(&["trigger", "other"]);
    wait_until("the other DAG's run succeeds", || {
        all_succeeded(&env, "other", 1)
    });
    assert_eq!(states(&env, "held"), vec!["queued"]);
    env.ok(&["unpause", "held"]);
    wait_until("the unpaused DAG's run succeeds", || {
        all_succeeded(&env, "held", 1)
    });
}

#[test]
fn backfill_queues_one_run_per_interval_and_clear_reruns_failed_tasks() {
    let mut env = Env::new();
    env.dag(
        "daily",
        "dag_id: daily\nschedule: '@daily'\nstart_date: 2024-01-01\ncatchup: false\n\
         tasks:\n  t: {type: shell, command: 'test -f fixed || test {{ ds }} != 2024-01-02'}\n",
    );
    env.ok(&["pause", "daily"]);
    let out = env.ok(&[
        "backfill",
        "daily",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-03",
    ]);
    assert!(out.contains("queued 3 backfill run(s) of daily"), "{out}");
    env.ok(&["unpause", "daily"]);
    let _server = env.serve();
    wait_until("the backfill and the latest scheduled run finish", || {
        let runs = env.runs("daily");
        runs.len() == 4
            && runs
                .iter()
                .all(|r| r["state"] == "success" || r["state"] == "failed")
    });
    let runs = env.runs("daily");
    let backfill: Vec<_> = runs
        .iter()
        .filter(|r| r["run_type"] == "backfill")
        .collect();
    assert_eq!(backfill.len(), 3);
    let failed: Vec<_> = backfill.iter().filter(|r| r["state"] == "failed").collect();
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0]["logical_date"]
            .as_str()
            .unwrap()
            .starts_with("2024-01-02")
    );
    assert_eq!(
        runs.iter().filter(|r| r["run_type"] == "scheduled").count(),
        1
    );

    std::fs::write(env.path("fixed"), "").unwrap();
    let run_id = failed[0]["run_id"].as_str().unwrap().to_string();
    let out = env.ok(&["clear", &run_id, "--failed"]);
    assert!(out.contains("cleared 1 task(s)"), "{out}");
    wait_until("the cleared run succeeds", || {
        env.run_detail(&run_id)["state"] == "success"
    });
    assert_eq!(task(&env.run_detail(&run_id), "t")["try_number"], 2);
}

#[test]
fn a_running_task_s_log_can_be_read_before_it_ends() {
    let mut env = Env::new();
    env.dag(
        "chatty",
        "dag_id: chatty\ntasks:\n  t: {type: shell, command: 'echo first line; while [ ! -f go ]; do sleep 0.05; done; echo done'}\n",
    );
    let _server = env.serve();
    env.ok(&["trigger", "chatty"]);
    wait_until("the first line is in the log while the task runs", || {
        let Some(run) = env.runs("chatty").first().cloned() else {
            return false;
        };
        let out = env.run(&["logs", run["run_id"].as_str().unwrap(), "t"]);
        String::from_utf8_lossy(&out.stdout).contains("STDOUT first line")
    });
    assert_eq!(states(&env, "chatty"), vec!["running"]);
    std::fs::write(env.path("go"), "").unwrap();
    wait_until("the run succeeds", || states(&env, "chatty") == ["success"]);
}

#[test]
fn the_dag_list_page_shows_dags_runs_and_escaped_load_errors() {
    let mut env = Env::new();
    env.dag("chain", CHAIN);
    env.dag(
        "evil",
        "dag_id: evil\ntasks:\n  t: {type: '<script>x</script>'}\n",
    );
    let server = env.serve();
    env.ok(&["trigger", "chain", "--wait"]);
    let (status, html) = crate::support::http_text(&server.addr, "GET", "/");
    assert_eq!(status, 200);
    assert!(
        html.contains(r#"<a class="dag-id" href="/dags/chain">chain</a>"#),
        "{html}"
    );
    assert!(
        html.contains(r#"<a class="mark state-success" href="/dags/chain/runs/"#),
        "{html}"
    );
    assert!(html.contains("&#60;script&#62;x"), "{html}");
    assert!(!html.contains("<script>"), "{html}");
}
