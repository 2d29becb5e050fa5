use std::path::Path;

use super::*;

fn build_file(name: &str) -> Result<Dag, Vec<LoadError>> {
    let path = Path::new("tests/fixtures/invalid").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    build_dag(&DagText {
        path: &path,
        project: None,
        default_dag_id: None,
        text,
    })
}

fn error(name: &str) -> String {
    let errors: Vec<String> = build_file(name)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    errors[0]
        .strip_prefix("tests/fixtures/invalid/")
        .unwrap()
        .to_string()
}

#[test]
fn a_cycle_is_rejected_naming_its_tasks_in_order() {
    assert_eq!(
        error("cycle.yaml"),
        "cycle.yaml:5: DAG 'cycle': cycle: a -> b -> c -> a"
    );
    assert_eq!(
        error("self_loop.yaml"),
        "self_loop.yaml:3: DAG 'self_loop': cycle: a -> a"
    );
}

#[test]
fn an_unknown_dag_key_names_the_line_and_the_known_keys() {
    assert_eq!(
        error("unknown_key.yaml"),
        "unknown_key.yaml:2: DAG 'unknown_key': unknown field `schedul`, expected one of `dag_id`, \
         `description`, `tags`, `schedule`, `timezone`, `start_date`, `end_date`, `catchup`, \
         `max_active_runs`, `max_active_tasks`, `dagrun_timeout`, `params`, `default_args`, `tasks`"
    );
}

#[test]
fn an_unknown_task_type_is_rejected() {
    assert_eq!(
        error("unknown_task_type.yaml"),
        "unknown_task_type.yaml:3: DAG 'unknown_task_type': task 'a': unknown task type `bash`, \
         expected one of `noop`, `shell`, `trigger_dag`, `import`, `load`, `sql`, `drug_graph`"
    );
}

#[test]
fn an_unknown_task_argument_lists_the_type_s_arguments() {
    assert_eq!(
        error("unknown_task_argument.yaml"),
        "unknown_task_argument.yaml:3: DAG 'unknown_task_argument': task 'a': unknown field \
         `comand`, expected one of `command`, `env`, `cwd`, `timeout`, `skip_exit_code`"
    );
}

#[test]
fn a_missing_upstream_is_named() {
    assert_eq!(
        error("missing_upstream.yaml"),
        "missing_upstream.yaml:5: DAG 'missing_upstream': task 'b': depends_on 'nope', which is \
         not a task of this DAG"
    );
}

#[test]
fn bad_cron_duration_timezone_and_trigger_rule_are_explained() {
    assert_eq!(
        error("bad_cron.yaml"),
        "bad_cron.yaml:2: DAG 'bad_cron': bad schedule '61 * * * *': Component error: Number out of bounds."
    );
    assert_eq!(
        error("bad_duration.yaml"),
        "bad_duration.yaml:4: DAG 'bad_duration': task 'a': execution_timeout: bad duration 'soon': \
         expected number at 0 (use e.g. 30s, 10m, 1h, 1h30m or a number of seconds)"
    );
    assert_eq!(
        error("bad_timezone.yaml"),
        "bad_timezone.yaml:2: DAG 'bad_timezone': unknown timezone 'Mars/Olympus'"
    );
    assert!(error("bad_trigger_rule.yaml").starts_with(
        "bad_trigger_rule.yaml:5: DAG 'bad_trigger_rule': task 'b': unknown trigger_rule 'sometimes'"
    ));
}

#[test]
fn the_documented_example_builds_with_its_settings() {
    let path = Path::new("dags/example.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let dag = build_dag(&DagText {
        path,
        project: None,
        default_dag_id: None,
        text,
    })
    .unwrap();
    assert_eq!(dag.id.as_str(), "example");
    assert_eq!(dag.timezone, chrono_tz::Europe::Paris);
    assert_eq!(dag.max_active_runs, 1);
    assert_eq!(dag.dagrun_timeout, Some(Duration::from_secs(3600)));
    let (_, extract) = dag.task("extract").unwrap();
    assert_eq!(extract.retry.retries, 2);
    assert_eq!(extract.retry.delay, Duration::from_secs(30));
    assert_eq!(extract.execution_timeout, Some(Duration::from_secs(900)));
    let (_, report) = dag.task("report").unwrap();
    assert_eq!(report.retry.retries, 0);
    assert_eq!(report.trigger_rule, TriggerRule::AllDone);
    assert_eq!(report.upstream, vec![0]);
}

#[test]
fn dates_are_read_in_the_dag_time_zone() {
    let d = parse_date("2024-01-01", chrono_tz::Europe::Paris).unwrap();
    assert_eq!(d.to_rfc3339(), "2023-12-31T23:00:00+00:00");
    assert_eq!(
        parse_date("2024-01-01T06:00:00Z", Tz::UTC)
            .unwrap()
            .to_rfc3339(),
        "2024-01-01T06:00:00+00:00"
    );
    assert!(
        parse_date("yesterday", Tz::UTC)
            .unwrap_err()
            .starts_with("bad date 'yesterday'")
    );
}

#[test]
fn a_cron_that_never_fires_is_rejected() {
    assert_eq!(
        error("never_fires.yaml"),
        "never_fires.yaml:2: DAG 'never_fires': bad schedule '0 0 31 2 *': it never fires \
         (no date matches its day, month and weekday)"
    );
}

#[test]
fn an_end_date_before_the_start_date_is_rejected() {
    assert_eq!(
        error("end_before_start.yaml"),
        "end_before_start.yaml:4: DAG 'end_before_start': end_date is before start_date: \
         the DAG could never run"
    );
}

#[test]
fn catchup_without_a_start_date_is_rejected() {
    assert_eq!(
        error("catchup_without_start.yaml"),
        "catchup_without_start.yaml:3: DAG 'catchup_without_start': catchup: true needs a \
         start_date to catch up from"
    );
}

#[test]
fn keys_are_found_quoted_tagged_and_at_their_own_level() {
    let text = "\"dag_id\": x\n!!str schedule: '61 * * * *'\ndefault_args:\n  # a comment\n  'retry_delay': 1e30\ntasks:\n  type:\n    type: noop\n  \"b\": {type: noop}\n  c:\n    doc: x\nafter: 1\n  d: 2\n";
    assert_eq!(top_level_line(text, "dag_id"), Some(1));
    assert_eq!(top_level_line(text, "schedule"), Some(2));
    assert_eq!(nested_line(text, "default_args", "retry_delay"), Some(5));
    assert_eq!(nested_line(text, "default_args", "tasks"), None);
    // A task named like a task argument is found at the task level, not inside a task.
    assert_eq!(task_line(text, "type"), Some(7));
    assert_eq!(task_line(text, "b"), Some(9));
    assert_eq!(task_line(text, "doc"), None);
    // Nothing after the next top-level key belongs to the tasks.
    assert_eq!(task_line(text, "d"), None);
    assert_eq!(task_lines(text).len(), 3);
}

fn build_text(text: &str) -> Vec<String> {
    build_dag(&DagText {
        path: Path::new("d.yaml"),
        project: None,
        default_dag_id: None,
        text: text.to_string(),
    })
    .unwrap_err()
    .iter()
    .map(ToString::to_string)
    .collect()
}

#[test]
fn every_error_has_a_line_even_in_flow_style() {
    assert_eq!(
        build_text("{dag_id: d, schedule: '61 * * * *', tasks: {a: {type: noop}}}\n"),
        ["d.yaml:1: DAG 'd': bad schedule '61 * * * *': Component error: Number out of bounds."]
    );
    assert_eq!(
        build_text("dag_id: d\ntasks: {a: {type: noop, retry_delay: 1e30}}\n"),
        ["d.yaml:2: DAG 'd': task 'a': retry_delay: bad duration \
          '1000000000000000000000000000000': out of range (allowed: 0s to 100 years)"]
    );
    assert_eq!(
        build_text("dag_id: d\ntasks: 7\n"),
        [
            "d.yaml:2: DAG 'd': `tasks` must map each task id to its task (`extract: {type: \
          shell, command: ...}`), not be a single value"
        ]
    );
}

#[test]
fn ids_made_only_of_dots_are_refused_with_their_line() {
    let why = "an id cannot be made only of dots (browsers resolve '.' and '..' in links as \
               the current and parent path)";
    assert_eq!(
        build_text("dag_id: '..'\ntasks:\n  a: {type: noop}\n"),
        [format!("d.yaml:1: DAG '..': bad dag_id '..': {why}")]
    );
    assert_eq!(
        build_text("dag_id: d\ntasks:\n  a: {type: noop}\n  '.': {type: noop}\n"),
        [format!("d.yaml:4: DAG 'd': task '.': bad task id: {why}")]
    );
    assert_eq!(
        build_text("dag_id: d\ntasks:\n  ..: {type: noop, depends_on: ...}\n  ...: {type: noop}\n")
            .len(),
        2
    );
}
