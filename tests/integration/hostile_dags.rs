//! Hostile DAG files: whatever a DAG file says, no process crashes; the bad file is reported
//! with file, line and the allowed range, and every other file loads.

use crate::support::{Env, text, wait_until};

const OUT_OF_RANGE: [(&str, &str); 4] = [
    (
        "a",
        "dag_id: a\ndagrun_timeout: 300000y\ntasks:\n  t: {type: noop}\n",
    ),
    (
        "b",
        "dag_id: b\ndefault_args:\n  retry_delay: 1e13\ntasks:\n  t: {type: shell, command: 'false', timeout: 1e30}\n",
    ),
    (
        "c",
        "dag_id: c\ntasks:\n  t: {type: noop, retry_delay: 18446744073709551615}\n",
    ),
    (
        "d",
        "dag_id: d\ndagrun_timeout: 1.9e19\ntasks:\n  t: {type: noop}\n",
    ),
];

#[test]
fn out_of_range_durations_are_load_errors_with_file_line_and_range() {
    let mut env = Env::new();
    for (name, yaml) in OUT_OF_RANGE {
        env.dag(name, yaml);
    }
    env.dag("ok", "dag_id: ok\ntasks:\n  t: {type: noop}\n");
    let out = env.run(&["dags", "validate"]);
    assert_eq!(out.status.code(), Some(1));
    let range = "out of range (allowed: 0s to 100 years)";
    let output = text(&out.stdout) + &text(&out.stderr);
    for expected in [
        format!("dags/a.yaml:2: DAG 'a': dagrun_timeout: bad duration '300000y': {range}"),
        format!("dags/b.yaml:2: DAG 'b': retry_delay: bad duration '10000000000000': {range}"),
        format!(
            "dags/b.yaml:5: DAG 'b': task 't': timeout: bad duration \
             '1000000000000000000000000000000': {range}"
        ),
        format!(
            "dags/c.yaml:3: DAG 'c': task 't': retry_delay: bad duration \
             '18446744073709551615': {range}"
        ),
        format!(
            "dags/d.yaml:2: DAG 'd': dagrun_timeout: bad duration '19000000000000000000': {range}"
        ),
    ] {
        assert!(
            output.contains(&expected),
            "missing {expected:?} in:\n{output}"
        );
    }
    // Every command still works, and `serve` starts, counts the errors and runs the rest.
    assert!(env.ok(&["dags", "list"]).contains("ok"));
    let server = env.serve();
    let (status, health) = server.get("/health");
    assert_eq!(status, 200);
    assert_eq!(health["dags"]["loaded"], 1);
    assert_eq!(health["dags"]["import_errors"], 5);
    env.ok(&["trigger", "ok"]);
    wait_until("the valid DAG runs", || {
        env.runs("ok")
            .first()
            .is_some_and(|r| r["state"] == "success")
    });
}

#[test]
fn templates_are_checked_at_load_time_and_bounded_at_run_time() {
    let env = Env::new();
    env.dag(
        "broken",
        "dag_id: broken\ntasks:\n  t: {type: shell, command: 'echo {{ ds | nope }}'}\n",
    );
    env.dag(
        "heavy",
        "dag_id: heavy
tasks:
  t:
    type: shell
    command: '{% for i in range(conf.n | default(1)) %}{% for j in range(conf.n | default(1)) %}x{% endfor %}{% endfor %}'
",
    );
    let out = env.run(&["dags", "validate"]);
    let output = text(&out.stdout) + &text(&out.stderr);
    assert!(
        output.contains("dags/broken.yaml:3: DAG 'broken': task 't': template 'echo {{ ds | nope }}': unknown filter"),
        "{output}"
    );
    // Valid at load time; a run whose conf makes it explode runs out of fuel at once.
    let out = env.run(&["run", "heavy", "--conf", "{\"n\": 100000}"]);
    assert_eq!(out.status.code(), Some(1));
    let output = text(&out.stdout);
    assert!(output.contains("engine ran out of fuel"), "{output}");
}

#[test]
fn oversized_and_deeply_nested_files_are_refused_before_parsing() {
    let env = Env::new();
    let mut big = String::from("dag_id: big\ndescription: '");
    big.push_str(&"x".repeat(1024 * 1024));
    big.push_str("'\ntasks:\n  t: {type: noop}\n");
    env.dag("big", &big);
    let deep = format!(
        "dag_id: deep\nparams:\n  p: {}{}\ntasks:\n  t: {{type: noop}}\n",
        "[".repeat(40_000),
        "]".repeat(40_000)
    );
    env.dag("deep", &deep);
    let mut indented = String::from("dag_id: indented\nparams:\n");
    for level in 1..=70 {
        indented.push_str(&format!("{}k{level}:\n", "  ".repeat(level)));
    }
    indented.push_str(&format!(
        "{}v: 1\ntasks:\n  t: {{type: noop}}\n",
        "  ".repeat(71)
    ));
    env.dag("indented", &indented);
    env.dag("ok", "dag_id: ok\ntasks:\n  t: {type: noop}\n");
    let out = env.run(&["dags", "validate"]);
    assert_eq!(out.status.code(), Some(1));
    let output = text(&out.stdout) + &text(&out.stderr);
    for expected in [
        "dags/big.yaml: the file is 1048629 bytes, more than the 1048576 allowed (max_dag_file_bytes)",
        "dags/deep.yaml:3: nesting deeper than 64 levels (lists and mappings)",
        "dags/indented.yaml:66: nesting deeper than 64 levels (lists and mappings)",
        "1 DAG(s) valid, 3 error(s)",
    ] {
        assert!(
            output.contains(expected),
            "missing {expected:?} in:\n{output}"
        );
    }
    // The limit is a setting.
    let out = env
        .command(&["dags", "validate"])
        .env("ORCHESTRATOR_MAX_DAG_FILE_BYTES", "2000000")
        .output()
        .unwrap();
    let output = text(&out.stdout) + &text(&out.stderr);
    assert!(output.contains("2 DAG(s) valid, 2 error(s)"), "{output}");
}
