//! Retries, timeouts and trigger rules, through foreground `orchestrator run`.

use crate::support::{Env, task, task_states, text};

fn last_run(env: &Env, dag: &str) -> serde_json::Value {
    let runs = env.runs(dag);
    env.run_detail(runs[0]["run_id"].as_str().unwrap())
}

#[test]
fn a_flaky_task_is_retried_until_it_succeeds() {
    let env = Env::new();
    env.dag(
        "flaky",
        "dag_id: flaky
tasks:
  flaky:
    type: shell
    command: 'n=$(cat count 2>/dev/null || echo 0); echo $((n+1)) > count; test $n -ge 2'
    retries: 2
    retry_delay: 0
",
    );
    let out = env.run(&["run", "flaky"]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    let detail = last_run(&env, "flaky");
    assert_eq!(detail["state"], "success");
    assert_eq!(task(&detail, "flaky")["try_number"], 3);
    assert!(text(&out.stdout).contains("flaky.flaky: up_for_retry: command exited with code 1"));
}

#[test]
fn retries_run_out_and_the_run_fails_with_exit_code_1() {
    let env = Env::new();
    env.dag(
        "bad",
        "dag_id: bad\ntasks:\n  t: {type: shell, command: 'exit 3', retries: 1, retry_delay: 0}\n",
    );
    let out = env.run(&["run", "bad"]);
    assert_eq!(out.status.code(), Some(1));
    let detail = last_run(&env, "bad");
    assert_eq!(detail["state"], "failed");
    let t = task(&detail, "t");
    assert_eq!(t["state"], "failed");
    assert_eq!(t["try_number"], 2);
    assert_eq!(t["error"], "command exited with code 3");
}

#[test]
fn an_execution_timeout_kills_the_command() {
    let env = Env::new();
    env.dag(
        "slow",
        "dag_id: slow\ntasks:\n  t: {type: shell, command: 'echo $$ > pid; exec sleep 60', execution_timeout: 1s}\n",
    );
    let out = env.run(&["run", "slow"]);
    assert_eq!(out.status.code(), Some(1));
    let detail = last_run(&env, "slow");
    assert_eq!(task(&detail, "t")["error"], "timed out after 1s");
    let pid = std::fs::read_to_string(env.path("pid")).unwrap();
    let alive = std::process::Command::new("kill")
        .args(["-0", pid.trim()])
        .status()
        .unwrap()
        .success();
    assert!(!alive, "the timed-out command {pid} is still running");
}

#[test]
fn a_dagrun_timeout_stops_running_tasks_and_skips_the_rest() {
    let env = Env::new();
    env.dag(
        "long",
        "dag_id: long\ndagrun_timeout: 1s\ntasks:\n  t: {type: shell, command: 'sleep 60'}\n  after: {type: noop, depends_on: t}\n",
    );
    let out = env.run(&["run", "long"]);
    assert_eq!(out.status.code(), Some(1));
    let detail = last_run(&env, "long");
    assert_eq!(detail["state"], "failed");
    assert_eq!(detail["note"], "dagrun_timeout of 1s exceeded");
    assert_eq!(task(&detail, "t")["state"], "failed");
    assert_eq!(task(&detail, "after")["state"], "skipped");
}

#[test]
fn trigger_rules_decide_what_runs_after_a_failure() {
    let env = Env::new();
    env.dag(
        "rules",
        "dag_id: rules
tasks:
  ok: {type: noop}
  boom: {type: shell, command: 'exit 1'}
  needs_all: {type: noop, depends_on: [ok, boom]}
  after_needs_all: {type: noop, depends_on: needs_all}
  cleanup: {type: noop, depends_on: [ok, boom], trigger_rule: all_done}
  alert: {type: noop, depends_on: [ok, boom], trigger_rule: one_failed}
  any_ok: {type: noop, depends_on: [ok, boom], trigger_rule: one_success}
  all_bad: {type: noop, depends_on: [ok, boom], trigger_rule: all_failed}
  clean: {type: noop, depends_on: [ok, boom], trigger_rule: none_failed}
",
    );
    let out = env.run(&["run", "rules"]);
    // Leaves needs_all's chain ended upstream_failed: the run fails, as in Airflow.
    assert_eq!(out.status.code(), Some(1));
    let detail = last_run(&env, "rules");
    let states = task_states(&detail);
    let expect = [
        ("ok", "success"),
        ("boom", "failed"),
        ("needs_all", "upstream_failed"),
        ("after_needs_all", "upstream_failed"),
        ("cleanup", "success"),
        ("alert", "success"),
        ("any_ok", "success"),
        ("all_bad", "skipped"),
        ("clean", "upstream_failed"),
    ];
    let expect: Vec<(String, String)> = expect
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(states, expect);
}

#[test]
fn templates_see_params_conf_and_dates() {
    let env = Env::new();
    env.dag(
        "tpl",
        "dag_id: tpl\nparams: {region: eu}\ntasks:\n  t: {type: shell, command: 'echo {{ dag_id }} {{ params.region }} {{ conf.x }} {{ ds }}'}\n",
    );
    env.ok(&["run", "tpl", "--conf", "{\"x\": 42}"]);
    let run = &env.runs("tpl")[0];
    let log = env.ok(&["logs", run["run_id"].as_str().unwrap(), "t"]);
    let ds = &run["logical_date"].as_str().unwrap()[..10];
    assert!(log.contains(&format!("STDOUT tpl eu 42 {ds}")), "{log}");
}

#[test]
fn a_waiting_trigger_of_an_ancestor_dag_fails_with_the_chain_instead_of_deadlocking() {
    let env = Env::new();
    env.dag(
        "ping",
        "dag_id: ping\ntasks:\n  again: {type: trigger_dag, trigger_dag_id: pong}\n",
    );
    env.dag(
        "pong",
        "dag_id: pong\ntasks:\n  back: {type: trigger_dag, trigger_dag_id: ping}\n",
    );
    let out = env.run(&["run", "ping"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let pong = env.runs("pong");
    assert_eq!(pong.len(), 1);
    let detail = env.run_detail(pong[0]["run_id"].as_str().unwrap());
    assert_eq!(detail["state"], "failed");
    let error = task(&detail, "back")["error"].as_str().unwrap().to_string();
    let ping_run = env.runs("ping")[0]["run_id"].as_str().unwrap().to_string();
    let pong_run = pong[0]["run_id"].as_str().unwrap().to_string();
    assert!(
        error.starts_with(&format!(
            "trigger chain loops: ping ({ping_run}) -> pong ({pong_run}) -> ping; "
        )),
        "{error}"
    );
    // Fatal: no retry of a loop.
    assert_eq!(task(&detail, "back")["try_number"], 1);
    assert_eq!(env.runs("ping").len(), 1);
}

#[test]
fn a_non_waiting_self_trigger_is_allowed_and_a_root_one_success_task_runs() {
    let env = Env::new();
    // The root task only succeeds once, so the chain of self-triggers stops at the child.
    env.dag(
        "selfish",
        "dag_id: selfish\ntasks:\n  first: {type: shell, command: 'test ! -f once && touch once', \
         trigger_rule: one_success}\n  again: {type: trigger_dag, trigger_dag_id: selfish, \
         wait_for_completion: false, depends_on: [first]}\n",
    );
    let out = env.run(&["run", "selfish"]);
    let runs = env.runs("selfish");
    let first = runs
        .iter()
        .find(|r| r["run_type"] == "manual")
        .unwrap_or_else(|| panic!("{}{}", text(&out.stdout), text(&out.stderr)));
    let detail = env.run_detail(first["run_id"].as_str().unwrap());
    assert_eq!(detail["state"], "success");
    assert_eq!(task(&detail, "first")["state"], "success");
    assert_eq!(task(&detail, "again")["state"], "success");
    assert_eq!(
        runs.iter().filter(|r| r["run_type"] == "triggered").count(),
        1
    );
}
