use std::collections::HashMap;

use super::*;

/// Samples of the text exposition by `name{labels}` as written (labels in declared order).
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        .collect()
}

fn render(m: &Metrics) -> HashMap<String, f64> {
    samples(&m.render(&ScrapeValues::default()).unwrap().unwrap())
}

fn ids() -> (DagId, TaskId) {
    (DagId::new("etl"), TaskId::new("load"))
}

#[test]
fn committed_run_and_try_events_count_by_dag_task_and_state() {
    let m = Metrics::new();
    let (dag_id, task_id) = ids();
    m.run_started(&dag_id);
    m.record(&Event::TryStarted {
        dag_id: dag_id.clone(),
        task_id: task_id.clone(),
    });
    for (end, secs) in [
        (TryEnd::State(TaskState::UpForRetry), 0.2),
        (TryEnd::State(TaskState::Success), 3.0),
        (TryEnd::Abandoned, 1.0),
    ] {
        m.record(&Event::TryEnded {
            dag_id: dag_id.clone(),
            task_id: task_id.clone(),
            end,
            duration: Some(Duration::from_secs_f64(secs)),
        });
    }
    m.record(&Event::RunEnded {
        dag_id: dag_id.clone(),
        state: RunState::Success,
        duration: Some(Duration::from_secs(40)),
    });
    let s = render(&m);
    assert_eq!(
        s[r#"orchestrator_dag_runs_started_total{dag_id="etl"}"#],
        1.0
    );
    assert_eq!(
        s[r#"orchestrator_dag_runs_ended_total{dag_id="etl",state="success"}"#],
        1.0
    );
    assert_eq!(
        s[r#"orchestrator_task_tries_started_total{dag_id="etl",task_id="load"}"#],
        1.0
    );
    for state in ["up_for_retry", "success", "abandoned"] {
        let key = format!(
            r#"orchestrator_task_tries_ended_total{{dag_id="etl",task_id="load",state="{state}"}}"#
        );
        assert_eq!(s[&key], 1.0, "{key}");
    }
    let run = r#"orchestrator_dag_run_duration_seconds_bucket{dag_id="etl",state="success",le="#;
    assert_eq!(s[&format!(r#"{run}"30"}}"#)], 0.0);
    assert_eq!(s[&format!(r#"{run}"60"}}"#)], 1.0);
    assert_eq!(
        s[r#"orchestrator_dag_run_duration_seconds_sum{dag_id="etl",state="success"}"#],
        40.0
    );
    let tries = r#"orchestrator_task_try_duration_seconds_count{dag_id="etl",state="success"}"#;
    assert_eq!(s[tries], 1.0);
}

#[test]
fn a_try_interrupted_by_a_crash_counts_without_a_duration() {
    let m = Metrics::new();
    let (dag_id, task_id) = ids();
    m.record(&Event::TryEnded {
        dag_id,
        task_id,
        end: TryEnd::State(TaskState::Failed),
        duration: None,
    });
    let s = render(&m);
    assert_eq!(
        s[r#"orchestrator_task_tries_ended_total{dag_id="etl",task_id="load",state="failed"}"#],
        1.0
    );
    assert!(
        !s.keys()
            .any(|k| k.starts_with("orchestrator_task_try_duration"))
    );
}

#[test]
fn rows_slots_latency_and_load_failures_are_recorded() {
    let m = Metrics::new();
    let (dag_id, task_id) = ids();
    m.rows(&dag_id, &task_id, Rows::Imported, 5);
    m.rows(&dag_id, &task_id, Rows::Imported, 2);
    m.rows(&dag_id, &task_id, Rows::Rejected, 1);
    m.rows(&dag_id, &task_id, Rows::Loaded, 7);
    m.slots(3, 4);
    m.loop_latency(Duration::from_millis(2));
    m.dag_files_failed(2);
    let s = render(&m);
    let labels = r#"{dag_id="etl",task_id="load"}"#;
    assert_eq!(
        s[&format!("orchestrator_data_rows_imported_total{labels}")],
        7.0
    );
    assert_eq!(
        s[&format!("orchestrator_data_rows_loaded_total{labels}")],
        7.0
    );
    assert_eq!(
        s[&format!("orchestrator_data_rows_rejected_total{labels}")],
        1.0
    );
    assert_eq!(s["orchestrator_task_tries_running"], 3.0);
    assert_eq!(s["orchestrator_task_tries_waiting"], 4.0);
    assert_eq!(
        s[r#"orchestrator_scheduler_loop_latency_seconds_bucket{le="0.0025"}"#],
        1.0
    );
    assert_eq!(
        s[r#"orchestrator_scheduler_loop_latency_seconds_bucket{le="0.001"}"#],
        0.0
    );
    assert_eq!(s["orchestrator_dag_file_load_failures_total"], 2.0);
}

#[test]
fn scrape_values_replace_those_of_the_previous_scrape() {
    let m = Metrics::new();
    let first = ScrapeValues {
        runs: vec![
            (DagId::new("gone"), RunState::Queued, 2),
            (DagId::new("etl"), RunState::Running, 1),
        ],
        dags_loaded: 2,
        load_errors: 3,
    };
    m.render(&first).unwrap();
    let second = ScrapeValues {
        runs: vec![(DagId::new("etl"), RunState::Running, 0)],
        dags_loaded: 1,
        load_errors: 0,
    };
    let s = samples(&m.render(&second).unwrap().unwrap());
    assert_eq!(
        s[r#"orchestrator_dag_runs{dag_id="etl",state="running"}"#],
        0.0
    );
    assert!(!s.keys().any(|k| k.contains("gone")), "{s:?}");
    assert_eq!(s["orchestrator_dags_loaded"], 1.0);
    assert_eq!(s["orchestrator_dag_load_errors"], 0.0);
}

#[test]
fn the_exposition_is_prometheus_text_with_help_and_type_lines() {
    let m = Metrics::new();
    let values = ScrapeValues {
        runs: vec![(DagId::new("etl"), RunState::Queued, 1)],
        ..ScrapeValues::default()
    };
    let text = m.render(&values).unwrap().unwrap();
    assert!(text.contains("# TYPE orchestrator_scheduler_loop_latency_seconds histogram\n"));
    assert!(text.contains("# TYPE orchestrator_dag_file_load_failures_total counter\n"));
    assert!(text.contains("# HELP orchestrator_dag_runs Runs queued or running now"));
    assert!(CONTENT_TYPE.starts_with("text/plain; version=0.0.4"));
}

#[test]
fn a_disabled_handle_records_nothing_and_renders_nothing() {
    let m = Metrics::disabled();
    let (dag_id, task_id) = ids();
    m.run_started(&dag_id);
    m.rows(&dag_id, &task_id, Rows::Loaded, 1);
    assert!(!m.is_enabled());
    assert!(m.render(&ScrapeValues::default()).unwrap().is_none());
    // Clones share one registry.
    let shared = Metrics::new();
    shared.clone().run_started(&dag_id);
    assert_eq!(
        render(&shared)[r#"orchestrator_dag_runs_started_total{dag_id="etl"}"#],
        1.0
    );
}
