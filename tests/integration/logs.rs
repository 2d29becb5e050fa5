//! Log numbering and the cap through the real binary, and `db clean`.

use serde_json::Value;

use crate::support::{Env, text};

/// One task printing 3000 short lines (about 120 kB in the log's accounting).
const CHATTY: &str = "dag_id: chatty
tasks:
  talk:
    type: shell
    command: 'i=1; while [ $i -le 3000 ]; do echo \"line $i\"; i=$((i+1)); done'
";

const HELLO: &str = "dag_id: hello
tasks:
  say: {type: shell, command: 'echo hello'}
";

fn only_run_id(env: &Env, dag: &str) -> String {
    let runs = env.runs(dag);
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0]["run_id"].as_str().unwrap().to_string()
}

#[test]
fn a_try_whose_output_passes_the_cap_shows_its_head_a_marker_and_its_tail() {
    let env = Env::new();
    env.dag("chatty", CHATTY);
    let out = env
        .command(&["run", "chatty"])
        .env("ORCHESTRATOR_MAX_LOG_BYTES", "20000")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let run_id = only_run_id(&env, "chatty");

    let printed = env.ok(&["logs", &run_id, "talk"]);
    let lines: Vec<&str> = printed.lines().collect();
    assert!(
        lines[0].contains("INFO   starting shell task talk (try 1)"),
        "{printed}"
    );
    assert!(lines[1].contains("INFO   $ i=1; while"), "{printed}");
    assert!(lines[2].ends_with("STDOUT line 1"), "{printed}");
    let marker: Vec<&&str> = lines.iter().filter(|l| l.contains(" DROP ")).collect();
    assert_eq!(marker.len(), 1, "{printed}");
    assert!(marker[0].contains("dropped here"), "{}", marker[0]);
    assert!(marker[0].contains("capped at 20000 bytes"), "{}", marker[0]);
    assert!(
        lines[lines.len() - 2].ends_with("STDOUT line 3000"),
        "{printed}"
    );
    assert!(
        lines[lines.len() - 1].ends_with("INFO   task succeeded"),
        "{printed}"
    );
    assert!(!printed.contains("line 1500\n"), "the middle was kept");

    // The JSON view carries the seqs: head 1.., the marker right after it, then the tail up
    // to the last line, 3003 (the start and command lines, 3000 lines of output, the result).
    let json = env.json(&["logs", &run_id, "talk"]);
    let all = json.as_array().unwrap();
    let seqs: Vec<u64> = all.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    let at = all.iter().position(|l| l["level"] == "DROP").unwrap();
    assert_eq!(seqs[..=at], (1..=at as u64 + 1).collect::<Vec<_>>()[..]);
    let tail = &seqs[at + 1..];
    assert_eq!(*tail.last().unwrap(), 3003);
    assert!(tail.windows(2).all(|w| w[1] == w[0] + 1), "{tail:?}");
    for line in all.iter().filter(|l| l["level"] == "STDOUT") {
        // Every kept output line still has the seq it was written with.
        let n: u64 = line["message"].as_str().unwrap()[5..].parse().unwrap();
        assert_eq!(line["seq"].as_u64().unwrap(), n + 2);
    }
    let kept: usize = all
        .iter()
        .filter(|l| l["level"] != "DROP")
        .map(|l| l["message"].as_str().unwrap().len() + 32)
        .sum();
    assert!(kept <= 20000, "{kept} bytes kept");
}

fn rows(report: &Value) -> (u64, u64, u64) {
    let r = &report["rows"];
    let n = |k: &str| r[k].as_u64().unwrap();
    (n("dag_run"), n("task_try"), n("task_log"))
}

#[test]
fn db_clean_dry_run_counts_and_db_clean_deletes_old_finished_runs_only() {
    let env = Env::new();
    env.dag("hello", HELLO);
    env.ok(&["run", "hello"]);
    env.ok(&["run", "hello"]);
    env.ok(&["trigger", "hello"]);
    assert_eq!(env.runs("hello").len(), 3);

    let dry = env.json(&["db", "clean", "--before", "2999-01-01", "--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["before"], "2999-01-01T00:00:00Z");
    // Each run: one try logging its start, its command, "hello" and its result.
    assert_eq!(rows(&dry), (2, 2, 8));
    assert_eq!(dry["rows"]["task_instance"], 2);
    let table = env.ok(&["db", "clean", "--before", "2999-01-01", "--dry-run"]);
    assert!(table.contains("would delete finished runs"), "{table}");
    assert!(table.contains("dry run: nothing was deleted"), "{table}");
    assert_eq!(env.runs("hello").len(), 3);

    let none = env.json(&["db", "clean", "--before", "2000-01-01"]);
    assert_eq!(rows(&none), (0, 0, 0));

    let done = env.json(&["db", "clean", "--before", "2999-01-01"]);
    assert_eq!(done["dry_run"], false);
    assert_eq!(rows(&done), (2, 2, 8));
    let left = env.runs("hello");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["state"], "queued");
    let again = env.json(&["db", "clean", "--before", "2999-01-01"]);
    assert_eq!(rows(&again), (0, 0, 0));

    let out = env.run(&["db", "clean", "--before", "last week"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with("error: --before: bad date 'last week'"),
        "{}",
        text(&out.stderr)
    );
}
