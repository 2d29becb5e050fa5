//! `GET /metrics` of a real `serve`: after a run of an import → load DAG, the Prometheus
//! text exposition counts the run, its tries and their durations, the rows imported,
//! rejected and loaded, a retried try and a failed run, the queued runs of a paused DAG and the DAG folder's load errors.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;

use crate::support::{Env, PATIENCE, wait_until};

const ETL: &str = "dag_id: etl\ntasks:\n  \
    import: {type: import, source: in.csv, table: things, schema: {score: float}}\n  \
    load: {type: load, tables: [things], depends_on: import}\n";

/// Three readable rows and one whose score is not a number.
const CSV: &str = "id,name,score\n1,a,1.5\n2,b,2\n3,c,not-a-number\n4,d,3\n";

/// The response head and body of `GET /metrics`.
fn scrape(addr: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

/// Samples by `name{labels}` as exposed (labels in the order the families declare them).
fn samples(body: &str) -> HashMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').unwrap();
            (key.to_string(), value.parse().unwrap())
        })
        .collect()
}

fn value(s: &HashMap<String, f64>, key: &str) -> f64 {
    *s.get(key)
        .unwrap_or_else(|| panic!("no sample {key} in {:#?}", sorted(s)))
}

fn sorted(s: &HashMap<String, f64>) -> Vec<(&String, &f64)> {
    let mut all: Vec<_> = s.iter().collect();
    all.sort_by(|a, b| a.0.cmp(b.0));
    all
}

#[test]
fn metrics_count_a_finished_run_its_tries_rows_queued_runs_and_load_errors() {
    let mut env = Env::new();
    std::fs::write(env.path("in.csv"), CSV).unwrap();
    env.dag("etl", ETL);
    env.dag("held", "dag_id: held\ntasks:\n  t: {type: noop}\n");
    env.dag("broken", "dag_id: broken\ntasks:\n  t: {type: nope}\n");
    env.dag(
        "flaky",
        "dag_id: flaky\ntasks:\n  t: {type: shell, command: 'exit 3', retries: 1, retry_delay: 0}\n",
    );
    let server = env.serve();
    env.ok(&["pause", "held"]);
    env.ok(&["trigger", "held"]);
    env.ok(&["trigger", "etl"]);
    env.ok(&["trigger", "flaky"]);
    for (dag, state) in [("etl", "success"), ("flaky", "failed")] {
        wait_until(&format!("the {dag} run ends {state}"), || {
            env.runs(dag).first().is_some_and(|r| r["state"] == state)
        });
    }
    // The counters (and then the slot gauges) are recorded right after the commit the CLI
    // saw: wait for them.
    let ended = |dag: &str, state: &str| {
        format!(r#"orchestrator_dag_runs_ended_total{{dag_id="{dag}",state="{state}"}}"#)
    };
    wait_until(
        "the runs' ends are counted and their slots given back",
        || {
            let s = samples(&scrape(&server.addr).1);
            s.get(&ended("etl", "success")) == Some(&1.0)
                && s.get(&ended("flaky", "failed")) == Some(&1.0)
                && s.get("orchestrator_task_tries_running") == Some(&0.0)
        },
    );
    let (head, body) = scrape(&server.addr);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    assert!(body.contains("# TYPE orchestrator_dag_run_duration_seconds histogram"));
    let s = samples(&body);
    let v = |key: &str| value(&s, key);

    assert_eq!(
        v(r#"orchestrator_dag_runs_started_total{dag_id="etl"}"#),
        1.0
    );
    assert!(!s.contains_key(r#"orchestrator_dag_runs_started_total{dag_id="held"}"#));
    for task in ["import", "load"] {
        let labels = format!(r#"dag_id="etl",task_id="{task}""#);
        assert_eq!(
            v(&format!(
                "orchestrator_task_tries_started_total{{{labels}}}"
            )),
            1.0
        );
        assert_eq!(
            v(&format!(
                r#"orchestrator_task_tries_ended_total{{{labels},state="success"}}"#
            )),
            1.0
        );
    }
    let run = r#"orchestrator_dag_run_duration_seconds"#;
    assert_eq!(
        v(&format!(r#"{run}_count{{dag_id="etl",state="success"}}"#)),
        1.0
    );
    assert_eq!(
        v(&format!(
            r#"{run}_bucket{{dag_id="etl",state="success",le="+Inf"}}"#
        )),
        1.0
    );
    let tries = r#"orchestrator_task_try_duration_seconds_count{dag_id="etl",state="success"}"#;
    assert_eq!(v(tries), 2.0);
    // A try that failed with a retry left, then one that failed for good.
    let flaky = r#"dag_id="flaky",task_id="t""#;
    assert_eq!(
        v(&format!("orchestrator_task_tries_started_total{{{flaky}}}")),
        2.0
    );
    for state in ["up_for_retry", "failed"] {
        let key = format!(r#"orchestrator_task_tries_ended_total{{{flaky},state="{state}"}}"#);
        assert_eq!(v(&key), 1.0, "{key}");
    }
    let failed = r#"orchestrator_dag_run_duration_seconds_count{dag_id="flaky",state="failed"}"#;
    assert_eq!(v(failed), 1.0);
    assert!(v("orchestrator_scheduler_loop_latency_seconds_count") >= 1.0);

    let import = r#"{dag_id="etl",task_id="import"}"#;
    assert_eq!(
        v(&format!("orchestrator_data_rows_imported_total{import}")),
        3.0
    );
    assert_eq!(
        v(&format!("orchestrator_data_rows_rejected_total{import}")),
        1.0
    );
    let load = r#"{dag_id="etl",task_id="load"}"#;
    assert_eq!(
        v(&format!("orchestrator_data_rows_loaded_total{load}")),
        3.0
    );

    assert_eq!(
        v(r#"orchestrator_dag_runs{dag_id="held",state="queued"}"#),
        1.0
    );
    assert_eq!(
        v(r#"orchestrator_dag_runs{dag_id="etl",state="queued"}"#),
        0.0
    );
    assert_eq!(
        v(r#"orchestrator_dag_runs{dag_id="etl",state="running"}"#),
        0.0
    );
    assert_eq!(v("orchestrator_task_tries_running"), 0.0);
    assert_eq!(v("orchestrator_task_tries_waiting"), 0.0);
    assert_eq!(v("orchestrator_dags_loaded"), 3.0);
    assert_eq!(v("orchestrator_dag_load_errors"), 1.0);
    assert!(v("orchestrator_dag_file_load_failures_total") >= 1.0);
    drop(server);
}
