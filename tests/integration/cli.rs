//! Commands without a server: validation, listing, errors, and the shipped project.

use crate::support::{Env, task_states, text};

const CYCLE: &str = "dag_id: loop
tasks:
  a: {type: noop, depends_on: c}
  b: {type: noop, depends_on: a}
  c: {type: noop, depends_on: b}
";

const HELLO: &str = "dag_id: hello
schedule: \"@daily\"
tags: [t1]
tasks:
  say: {type: shell, command: 'echo hello {{ params.who }}'}
params: {who: world}
";

#[test]
fn a_cycle_is_rejected_with_its_tasks_named_and_other_dags_still_load() {
    let env = Env::new();
    env.dag("loop", CYCLE);
    env.dag("hello", HELLO);
    let out = env.run(&["dags", "validate"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("dags/loop.yaml:3: DAG 'loop': cycle: a -> b -> c -> a"),
        "{stdout}"
    );
    assert!(stdout.contains("1 DAG(s) valid, 1 error(s)"), "{stdout}");
    let dags = env.json(&["dags", "list"]);
    assert_eq!(dags.as_array().unwrap().len(), 1);
    assert_eq!(dags[0]["dag_id"], "hello");
    assert_eq!(dags[0]["paused"], false);
    assert_eq!(dags[0]["schedule"], "@daily");
}

#[test]
fn bad_input_gets_a_one_line_error_and_exit_code_2() {
    let env = Env::new();
    env.dag("hello", HELLO);
    let out = env.run(&["trigger", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "error: DAG 'nope' is not loaded (see `orchestrator dags list` and `dags validate`)\n"
    );
    let out = env.run(&["trigger", "hello", "--conf", "[1]"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "error: --conf must be a JSON object, like '{\"key\": 1}'\n"
    );
    let out = env.run(&["runs", "show", "no_such_run"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stderr), "error: no run with id 'no_such_run'\n");
    let out = env.run(&["backfill", "hello", "--from", "soon", "--to", "2024-01-02"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with("error: --from: bad date 'soon'"),
        "{}",
        text(&out.stderr)
    );
    let out = env.run(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn trigger_without_a_server_queues_the_run_and_wait_runs_it_here() {
    let env = Env::new();
    env.dag("hello", HELLO);
    let out = env.ok(&["trigger", "hello", "--conf", "{\"who\": \"conf\"}"]);
    assert!(out.contains("no server answers"), "{out}");
    let runs = env.runs("hello");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["state"], "queued");
    assert_eq!(runs[0]["run_type"], "manual");
    assert!(runs[0]["run_id"].as_str().unwrap().starts_with("manual__"));
    assert!(runs[0]["logical_date"].is_string());

    let out = env.ok(&["trigger", "hello", "--wait"]);
    assert!(out.contains("succeeded"), "{out}");
    let runs = env.runs("hello");
    assert_eq!(runs[0]["state"], "success");
    let detail = env.run_detail(runs[0]["run_id"].as_str().unwrap());
    assert_eq!(detail["dag_id"], "hello");
    assert_eq!(
        task_states(&detail),
        vec![("say".to_string(), "success".to_string())]
    );
    let say = &detail["task_instances"][0];
    assert_eq!(say["try_number"], 1);
    assert!(say["start_date"].is_string() && say["end_date"].is_string());
    let log = env.ok(&["logs", runs[0]["run_id"].as_str().unwrap(), "say"]);
    assert!(log.contains("STDOUT hello world"), "{log}");
}

#[test]
fn the_shipped_project_validates_and_its_orchestrator_dag_runs_end_to_end() {
    let env = Env::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["dags", "config", "data"] {
        copy_dir(&root.join(dir), &env.path(dir));
    }
    assert!(
        env.ok(&["dags", "validate"])
            .contains("6 DAG(s) valid, 0 error(s)")
    );
    let out = env.ok(&["run", "drugs_orchestrator"]);
    assert!(out.contains("drugs_orchestrator run manual__"), "{out}");
    for dag in ["drugs_import", "drugs_load", "drugs_process"] {
        let runs = env.runs(dag);
        assert_eq!(runs.len(), 1, "{dag}");
        assert_eq!(runs[0]["state"], "success");
        assert_eq!(runs[0]["run_type"], "triggered");
    }
}

pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn adding_a_project_adds_its_dags_and_a_bad_placeholder_is_reported() {
    let env = Env::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["dags", "config"] {
        copy_dir(&root.join(dir), &env.path(dir));
    }
    std::fs::write(
        env.path("config/projects.yaml"),
        "projects:\n  - name: drugs\n    dags: [import, load, process, orchestrator]\n    vars: {input_dir: data/sample}\n  - name: vets\n    dags: [import, process]\n    vars: {input_dir: data/vets}\n",
    )
    .unwrap();
    let ids: Vec<String> = env
        .json(&["dags", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["dag_id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        ids.contains(&"vets_import".to_string()) && ids.contains(&"vets_process".to_string()),
        "{ids:?}"
    );
    let shown = env.json(&["dags", "show", "vets_import"]);
    assert_eq!(shown["project"], "vets");

    std::fs::write(
        env.path("dags/templates/load.yaml"),
        "tasks:\n  t: {type: shell, command: 'ls ${vars.missing}'}\n",
    )
    .unwrap();
    let out = env.run(&["dags", "validate"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains(
            "dags/templates/load.yaml:2: unknown placeholder '${vars.missing}' (known: ${project}, ${vars.input_dir}) (project 'drugs')"
        ),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn serve_refuses_a_non_loopback_address_without_users() {
    let env = Env::new();
    let out = env.run(&["serve", "--bind", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).lines().last().unwrap_or_default(),
        "error: refusing to listen on 0.0.0.0:0: no users exist, so anyone who can reach this \
         address could run tasks. Add one with `orchestrator users add NAME --role admin` \
         (logins are then required), bind to a loopback address (127.0.0.1, ::1), or pass \
         --insecure-no-auth to serve without authentication"
    );
}

#[test]
fn backfill_dry_run_lists_the_dates_and_a_huge_range_is_refused_at_once() {
    let env = Env::new();
    env.dag("hello", HELLO);
    let out = env.ok(&[
        "backfill",
        "hello",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-03",
        "--dry-run",
    ]);
    assert_eq!(
        out,
        "would queue 3 backfill run(s) of hello; would run 0 existing run(s) again; \
         would skip 0 date(s) that have a run\n  2024-01-01T00:00:00Z  new\n  \
         2024-01-02T00:00:00Z  new\n  2024-01-03T00:00:00Z  new\n"
    );
    assert!(env.runs("hello").is_empty());
    env.ok(&[
        "backfill",
        "hello",
        "--from",
        "2024-01-02",
        "--to",
        "2024-01-02",
    ]);
    let out = env.ok(&[
        "backfill",
        "hello",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-03",
        "--reprocess",
        "failed",
    ]);
    assert!(
        out.starts_with(
            "queued 2 backfill run(s) of hello; ran 0 existing run(s) again; skipped 1"
        ),
        "{out}"
    );
    let out = env.run(&[
        "backfill",
        "hello",
        "--from",
        "0001-01-01",
        "--to",
        "9999-12-31",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with(
            "error: backfill of 'hello' from 0001-01-01 to 9999-12-31 covers more than 1000 \
             intervals (about "
        ),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn trigger_wait_on_a_paused_dag_queues_the_run_and_says_why_it_does_not_start() {
    let env = Env::new();
    env.dag("held", "dag_id: held\ntasks:\n  t: {type: noop}\n");
    env.ok(&["pause", "held"]);
    let out = env.run(&["trigger", "held", "--wait"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("DAG held is paused: the run starts once it is unpaused"),
        "{}",
        text(&out.stdout)
    );
    let runs = env.runs("held");
    assert_eq!(runs.len(), 1);
    assert_eq!(
        runs[0]["state"], "queued",
        "a paused DAG's run never executes here"
    );
}
