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
        format!("dags/b.yaml:3: DAG 'b': retry_delay: bad duration '10000000000000': {range}"),
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

/// A file of `levels` anchors, each a list of ten aliases of the one before, over a list of
/// `width` scalars: a few KB that would expand to gigabytes ("billion laughs").
fn laughs(dag_id: &str, width: usize, levels: usize) -> String {
    let mut text = format!(
        "dag_id: {dag_id}\nparams:\n  l0: &l0 [{}]\n",
        vec!["x"; width].join(", ")
    );
    for level in 1..=levels {
        let aliases = vec![format!("*l{}", level - 1); 10].join(", ");
        text.push_str(&format!("  l{level}: &l{level} [{aliases}]\n"));
    }
    text + "tasks:\n  t: {type: noop}\n"
}

/// Writes `bytes` (not necessarily UTF-8) through a temporary file.
fn write_bytes(path: &std::path::Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn an_alias_bomb_is_refused_at_once_naming_file_line_and_limit() {
    let env = Env::new();
    // 50 KB, nine levels: 10^9 copies of a 16,000-item list if it were expanded (3 GB
    // and half a minute before this limit, then an out-of-memory abort).
    let bomb = laughs("laughs", 16_000, 9);
    assert!(bomb.len() > 45_000);
    env.dag("laughs", &bomb);
    env.dag("ok", "dag_id: ok\ntasks:\n  t: {type: noop}\n");
    let started = std::time::Instant::now();
    let out = env.run(&["dags", "validate"]);
    let elapsed = started.elapsed();
    assert_eq!(out.status.code(), Some(1));
    let output = text(&out.stdout) + &text(&out.stderr);
    let expected = format!(
        "dags/laughs.yaml:2: aliases expand the document past {} bytes (the limit is 100 \
         times the file's {} bytes, and at most 8388608)",
        bomb.len() * 100,
        bomb.len()
    );
    assert!(
        output.contains(&expected),
        "missing {expected:?} in:\n{output}"
    );
    assert!(output.contains("1 DAG(s) valid, 1 error(s)"), "{output}");
    // The walk stops at the limit (a debug build walks the 5 MB in a few seconds).
    assert!(elapsed.as_secs() < 30, "took {elapsed:?}");
}

#[test]
fn empty_tasks_and_default_args_durations_have_lines() {
    let env = Env::new();
    for (name, yaml) in [
        ("list", "dag_id: list\ntasks: []\n"),
        ("nothing", "dag_id: nothing\ndescription: x\ntasks:\n"),
        ("absent", "dag_id: absent\n"),
        (
            "flow",
            "dag_id: flow\ndefault_args: {retry_delay: 1e30}\ntasks:\n  t: {type: noop}\n",
        ),
        (
            "block",
            "dag_id: block\ndefault_args:\n  retries: 1\n  # the delay\n  retry_delay: 1e30\n  \
             execution_timeout: 300000y\ntasks:\n  t: {type: noop}\n",
        ),
    ] {
        env.dag(name, yaml);
    }
    let out = env.run(&["dags", "validate"]);
    assert_eq!(out.status.code(), Some(1));
    let output = text(&out.stdout) + &text(&out.stderr);
    let range = "out of range (allowed: 0s to 100 years)";
    for expected in [
        "dags/list.yaml:2: DAG 'list': a DAG needs at least one task under `tasks:`".to_string(),
        "dags/nothing.yaml:3: DAG 'nothing': a DAG needs at least one task under `tasks:`"
            .to_string(),
        "dags/absent.yaml:1: DAG 'absent': a DAG needs at least one task under `tasks:`"
            .to_string(),
        format!(
            "dags/flow.yaml:2: DAG 'flow': retry_delay: bad duration \
             '1000000000000000000000000000000': {range}"
        ),
        format!(
            "dags/block.yaml:5: DAG 'block': retry_delay: bad duration \
             '1000000000000000000000000000000': {range}"
        ),
        format!(
            "dags/block.yaml:6: DAG 'block': execution_timeout: bad duration '300000y': {range}"
        ),
        "0 DAG(s) valid, 6 error(s)".to_string(),
    ] {
        assert!(
            output.contains(&expected),
            "missing {expected:?} in:\n{output}"
        );
    }
}

#[test]
fn a_template_with_invalid_utf8_says_so_with_file_and_byte_offset() {
    let env = Env::new();
    std::fs::create_dir_all(env.path("dags/templates")).unwrap();
    std::fs::create_dir_all(env.path("config")).unwrap();
    std::fs::write(
        env.path("config/projects.yaml"),
        "projects:\n  - name: p1\n    dags: [good, bad]\n  - name: p2\n    dags:\n      - good\n      - missing\n",
    )
    .unwrap();
    std::fs::write(
        env.path("dags/templates/good.yaml"),
        "tasks:\n  t: {type: noop, doc: '${project}'}\n",
    )
    .unwrap();
    write_bytes(
        &env.path("dags/templates/bad.yaml"),
        b"tasks:\n  t: {type: noop, doc: '\xc3\x28'}\n",
    );
    let out = env.run(&["dags", "validate"]);
    assert_eq!(out.status.code(), Some(1));
    let output = text(&out.stdout) + &text(&out.stderr);
    for expected in [
        "dags/templates/bad.yaml:2: not valid UTF-8 (at byte 31) (project 'p1')",
        "config/projects.yaml:7: DAG type 'missing' has no template \
         dags/templates/missing.yaml (project 'p2')",
        "2 DAG(s) valid, 2 error(s)",
    ] {
        assert!(
            output.contains(expected),
            "missing {expected:?} in:\n{output}"
        );
    }
}

#[test]
fn one_bad_file_of_each_kind_costs_only_itself() {
    let mut env = Env::new();
    env.dag("ok", "dag_id: ok\ntasks:\n  t: {type: noop}\n");
    env.dag("twin_a", "dag_id: twin\ntasks:\n  t: {type: noop}\n");
    let mut bad = vec![
        ("parse", "dag_id: parse\ntasks: [unclosed\n".to_string()),
        (
            "cycle",
            "dag_id: cycle\ntasks:\n  a: {type: noop, depends_on: b}\n  b: {type: noop, depends_on: a}\n"
                .into(),
        ),
        (
            "template",
            "dag_id: template\ntasks:\n  t: {type: shell, command: 'echo {{ ds'}\n".into(),
        ),
        ("nested", format!("dag_id: nested\nparams: {{p: {}}}\ntasks:\n  t: {{type: noop}}\n", "[".repeat(70) + &"]".repeat(70))),
        ("laughs", laughs("laughs", 1_000, 9)),
        ("twin_b", "# the same id again\ndag_id: twin\ntasks:\n  t: {type: noop}\n".into()),
        (
            "dangling",
            "dag_id: dangling\ntasks:\n  go: {type: trigger_dag, trigger_dag_id: nope}\n".into(),
        ),
        ("duration", "dag_id: duration\ndefault_args: {retry_delay: 1e300}\ntasks:\n  t: {type: noop}\n".into()),
        ("empty", "dag_id: empty\ntasks: []\n".into()),
        ("anonymous", "tasks:\n  t: {type: noop}\n".into()),
    ];
    let mut big = String::from("dag_id: big\ndescription: '");
    big.push_str(&"x".repeat(1024 * 1024));
    big.push_str("'\ntasks:\n  t: {type: noop}\n");
    bad.push(("big", big));
    for (name, yaml) in &bad {
        env.dag(name, yaml);
    }
    write_bytes(
        &env.path("dags/utf8.yaml"),
        b"dag_id: utf8\ntasks:\n  t: {type: noop, doc: '\xff'}\n",
    );
    let expected = [
        "dags/anonymous.yaml:1: missing field `dag_id`",
        "dags/big.yaml: the file is 1048629 bytes, more than the 1048576 allowed",
        "dags/cycle.yaml:3: DAG 'cycle': cycle: a -> b -> a",
        "dags/dangling.yaml:3: DAG 'dangling': task 'go': trigger_dag_id 'nope' is not a loaded DAG",
        "dags/duration.yaml:2: DAG 'duration': retry_delay: bad duration",
        "dags/empty.yaml:2: DAG 'empty': a DAG needs at least one task under `tasks:`",
        "dags/laughs.yaml:2: aliases expand the document past",
        "dags/nested.yaml:2: nesting deeper than 64 levels",
        "dags/parse.yaml:3: did not find expected ',' or ']'",
        "dags/template.yaml:3: DAG 'template': task 't': template 'echo {{ ds': syntax error",
        "dags/twin_b.yaml:2: DAG 'twin': duplicate dag_id, already defined in dags/twin_a.yaml",
        "dags/utf8.yaml:3: not valid UTF-8 (at byte 44)",
    ];
    let out = env.run(&["dags", "validate"]);
    assert_eq!(out.status.code(), Some(1));
    let output = text(&out.stdout) + &text(&out.stderr);
    for e in expected {
        assert!(output.contains(e), "missing {e:?} in:\n{output}");
    }
    let summary = format!("2 DAG(s) valid, {} error(s)", expected.len());
    assert!(
        output.contains(&summary),
        "missing {summary:?} in:\n{output}"
    );
    // Every error line names its file and line (the size limit is about the whole file).
    for line in output.lines().filter(|l| l.starts_with("error: ")) {
        let file_line = line
            .trim_start_matches("error: ")
            .split(": ")
            .next()
            .unwrap();
        assert!(
            file_line.contains(".yaml:") || line.contains("the file is 1048629 bytes"),
            "no line in {line:?}"
        );
    }
    let listed: Vec<String> = env
        .json(&["dags", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["dag_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, ["ok", "twin"]);
    let server = env.serve();
    let (status, health) = server.get("/health");
    assert_eq!(status, 200);
    assert_eq!(health["dags"]["loaded"], 2, "{health}");
    assert_eq!(health["dags"]["import_errors"], expected.len(), "{health}");
    // Dropped into the running server, another bad file is one more error, nothing less.
    env.dag("late", &laughs("late", 1_000, 9));
    wait_until("the late file is counted", || {
        server.get("/health").1["dags"]["import_errors"] == expected.len() + 1
    });
    assert_eq!(server.get("/health").1["dags"]["loaded"], 2);
    env.ok(&["trigger", "ok"]);
    wait_until("the valid DAG runs", || {
        env.runs("ok")
            .first()
            .is_some_and(|r| r["state"] == "success")
    });
}
