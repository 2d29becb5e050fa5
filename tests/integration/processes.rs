//! What a shell try starts never outlives it: `kill -9` of its owner, a timeout, and the
//! adoption of a crashed run all stop the command's whole process tree.

use crate::support::{Env, task, text, wait_until};

/// Whether `pid` is a live process (a zombie has finished: it only waits to be reaped, and
/// init in a container may never do that).
fn is_running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| Some(s.rsplit_once(')')?.1.split_whitespace().next()? != "Z"))
        .unwrap_or(false)
}

/// The parent of `pid`, from field 4 of its stat.
fn parent_of(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[1].parse().unwrap()
}

/// Reads a pid file the command wrote (through a rename, so never half-written).
fn pid_in(env: &Env, name: &str) -> i32 {
    let path = env.path(name);
    wait_until(&format!("{name} is written"), || path.exists());
    std::fs::read_to_string(&path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Whether a try of the run has its process group recorded in the state database.
fn group_recorded(env: &Env) -> bool {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let Ok(db) = rusqlite::Connection::open_with_flags(env.path("orchestrator.db"), flags) else {
        return false;
    };
    db.query_row(
        "SELECT count(*) FROM task_try WHERE pgid IS NOT NULL AND pgid_start IS NOT NULL \
         AND host IS NOT NULL",
        [],
        |r| r.get::<_, i64>(0),
    )
    .is_ok_and(|n| n > 0)
}

/// Backgrounds two sleeps (their pids in child1.pid, child2.pid) and waits for them.
const TWO_SLEEPS: &str = "echo $$ > s.tmp && mv s.tmp sh.pid; \
    sleep 100 & echo $! > c1.tmp && mv c1.tmp child1.pid; \
    sleep 100 & echo $! > c2.tmp && mv c2.tmp child2.pid; wait";

fn sleepers_dag(env: &Env, first_try_only: bool) {
    // On a retry, the command fails if the first try's sleeps still run beside it.
    let command = if first_try_only {
        format!(
            "if [ -e child1.pid ]; then for p in $(cat child1.pid child2.pid); do \
             s=$(cut -d' ' -f3 /proc/$p/stat 2>/dev/null); \
             [ -z \"$s\" ] || [ \"$s\" = Z ] || {{ touch overlap; exit 1; }}; done; exit 0; fi; {TWO_SLEEPS}"
        )
    } else {
        TWO_SLEEPS.to_string()
    };
    let yaml = format!(
        "dag_id: sleepers\ntasks:\n  t:\n    type: shell\n    command: '{}'\n    retries: 1\n    retry_delay: 0\n",
        command.replace('\'', "''")
    );
    env.dag("sleepers", &yaml);
}

#[test]
fn kill_9_of_serve_stops_every_process_the_running_command_started() {
    let mut env = Env::new();
    sleepers_dag(&env, false);
    let mut server = env.serve();
    env.ok(&["trigger", "sleepers"]);
    let pids = [
        pid_in(&env, "sh.pid"),
        pid_in(&env, "child1.pid"),
        pid_in(&env, "child2.pid"),
    ];
    assert!(pids.iter().all(|p| is_running(*p)), "the command runs");
    server.kill9();
    wait_until("the dead owner's command and its children are gone", || {
        pids.iter().all(|p| !is_running(*p))
    });
}

#[test]
fn a_group_left_by_a_dead_owner_and_supervisor_is_killed_before_the_retry() {
    let mut env = Env::new();
    sleepers_dag(&env, true);
    let mut server = env.serve();
    env.ok(&["trigger", "sleepers"]);
    let pids = [pid_in(&env, "child1.pid"), pid_in(&env, "child2.pid")];
    wait_until("the try's process group is recorded", || {
        group_recorded(&env)
    });
    // Kill the supervisor first, so nothing stops the command when `serve` dies: only the
    // group recorded on the try can. `serve` is frozen meanwhile: awake, it would see its
    // supervisor die and stop the leftovers itself before the kill -9 lands.
    let supervisor = parent_of(pid_in(&env, "sh.pid"));
    let kill = |signal: &str, pid: i64| {
        let sent = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill {signal} {pid}");
    };
    kill("-STOP", i64::from(server.child.id()));
    kill("-KILL", i64::from(supervisor));
    server.kill9();
    drop(server);
    assert!(
        pids.iter().all(|p| is_running(*p)),
        "the orphaned command runs on"
    );

    env.bind = "127.0.0.1:1".into();
    let _server = env.serve();
    wait_until("the run finishes", || {
        env.runs("sleepers")
            .first()
            .is_some_and(|r| r["state"] == "success" || r["state"] == "failed")
    });
    assert!(
        pids.iter().all(|p| !is_running(*p)),
        "the old group was killed"
    );
    assert!(
        !env.path("overlap").exists(),
        "the retry ran beside the old try"
    );
    let detail = env.run_detail(env.runs("sleepers")[0]["run_id"].as_str().unwrap());
    assert_eq!(detail["state"], "success");
    assert_eq!(task(&detail, "t")["try_number"], 2);
}

#[test]
fn a_timeout_kills_the_whole_tree_even_children_that_ignore_sigterm() {
    let env = Env::new();
    env.dag(
        "stubborn",
        r#"dag_id: stubborn
tasks:
  t:
    type: shell
    command: 'sh -c "trap \"\" TERM; sleep 100" & echo $! > c.tmp && mv c.tmp child.pid; wait'
    execution_timeout: 1s
"#,
    );
    let out = env.run(&["run", "stubborn"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let detail = env.run_detail(env.runs("stubborn")[0]["run_id"].as_str().unwrap());
    assert_eq!(task(&detail, "t")["error"], "timed out after 1s");
    let child = pid_in(&env, "child.pid");
    wait_until("the child that ignores SIGTERM is killed", || {
        !is_running(child)
    });
}

#[test]
fn a_command_killed_by_a_signal_fails_naming_the_signal() {
    let env = Env::new();
    env.dag(
        "killed",
        "dag_id: killed\ntasks:\n  t: {type: shell, command: 'kill -TERM $$; sleep 5'}\n",
    );
    let out = env.run(&["run", "killed"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let detail = env.run_detail(env.runs("killed")[0]["run_id"].as_str().unwrap());
    assert_eq!(
        task(&detail, "t")["error"],
        "command was killed by signal SIGTERM"
    );
}
