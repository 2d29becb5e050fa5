//! Warehouse writes and their ledger: a cancelled try commits nothing, a retry does not
//! write again what an earlier try committed, and shutdown stops a long statement without
//! costing a retry.

use rusqlite::Connection;

use crate::support::{Env, task, text, wait_until};

/// A script whose INSERT runs for minutes unless it is interrupted (debug builds of SQLite
/// are slow, which only makes it longer).
const ENDLESS_FILL: &str = "CREATE TABLE big (n INTEGER);\n      \
     INSERT INTO big WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c \
     WHERE n < 500000000) SELECT n FROM c;";

fn endless_dag(dag_id: &str, extra: &str) -> String {
    format!(
        "dag_id: {dag_id}\ntasks:\n  fill:\n    type: sql\n    retries: 0\n{extra}    sql: |\n      {ENDLESS_FILL}\n"
    )
}

/// One number from the warehouse of `env`, read directly (the process has exited).
fn scalar(env: &Env, sql: &str) -> i64 {
    let conn = Connection::open(env.path("warehouse.db")).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn tables_named(env: &Env, names: &str) -> i64 {
    scalar(
        env,
        &format!("SELECT COUNT(*) FROM sqlite_master WHERE name IN ({names})"),
    )
}

fn last_run(env: &Env, dag: &str) -> serde_json::Value {
    env.run_detail(env.runs(dag)[0]["run_id"].as_str().unwrap())
}

#[test]
fn a_timed_out_sql_task_is_interrupted_and_commits_nothing() {
    let env = Env::new();
    env.dag("big", &endless_dag("big", "    execution_timeout: 1s\n"));
    let out = env.run(&["run", "big"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let detail = last_run(&env, "big");
    assert_eq!(detail["state"], "failed");
    assert_eq!(task(&detail, "fill")["error"], "timed out after 1s");
    // The process has exited: whatever its abandoned work did is on disk by now.
    assert_eq!(
        tables_named(&env, "'big', '_orchestrator_ledger'"),
        0,
        "the interrupted script rolled back"
    );
}

#[test]
fn a_timed_out_statement_stops_while_the_server_keeps_running() {
    let mut env = Env::new();
    env.dag("big", &endless_dag("big", "    execution_timeout: 1s\n"));
    let server = env.serve();
    env.ok(&["trigger", "big"]);
    wait_until("the run fails", || {
        env.runs("big")
            .first()
            .is_some_and(|r| r["state"] == "failed")
    });
    assert_eq!(
        task(&last_run(&env, "big"), "fill")["error"],
        "timed out after 1s"
    );
    // An abandoned statement would hold the write lock for minutes; an interrupted one
    // has released it.
    wait_until("the warehouse takes a writer", || {
        let conn = Connection::open(env.path("warehouse.db")).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;").is_ok()
    });
    assert_eq!(tables_named(&env, "'big', '_orchestrator_ledger'"), 0);
    drop(server);
}

#[test]
fn shutdown_interrupts_a_long_statement_without_using_a_retry() {
    let mut env = Env::new();
    std::fs::create_dir(env.path("config")).unwrap();
    std::fs::write(
        env.path("config/orchestrator.yaml"),
        "shutdown_grace_secs: 1\n",
    )
    .unwrap();
    env.dag("big", &endless_dag("big", ""));
    let mut server = env.serve();
    env.ok(&["trigger", "big"]);
    wait_until("the statement runs", || {
        env.runs("big").first().is_some_and(|r| {
            task(&env.run_detail(r["run_id"].as_str().unwrap()), "fill")["state"] == "running"
        })
    });
    let status = server.sigterm();
    assert!(status.success(), "{}", server.log());
    let detail = last_run(&env, "big");
    let fill = task(&detail, "fill");
    assert_ne!(fill["state"], "failed", "{detail}");
    assert_ne!(fill["state"], "up_for_retry", "{detail}");
    assert_eq!(tables_named(&env, "'big', '_orchestrator_ledger'"), 0);
}

#[test]
fn a_load_retry_keeps_the_tables_its_earlier_try_committed() {
    let env = Env::new();
    std::fs::write(env.path("in.csv"), "id,name\n1,a\n2,b\n").unwrap();
    env.dag(
        "imp",
        "dag_id: imp\ntasks:\n  t: {type: import, source: in.csv, table: things}\n",
    );
    std::fs::create_dir(env.path("imported_data")).unwrap();
    env.ok(&["run", "imp"]);
    // `things` loads, `absent` was never staged: every try fails after committing `things`.
    env.dag(
        "ld",
        "dag_id: ld\ntasks:\n  t: {type: load, tables: [things, absent], mode: append, retries: 2, retry_delay: 0}\n",
    );
    let out = env.run(&["run", "ld"]);
    assert_eq!(out.status.code(), Some(1));
    let run_id = env.runs("ld")[0]["run_id"].as_str().unwrap().to_string();
    assert_eq!(task(&env.run_detail(&run_id), "t")["try_number"], 3);
    let log = env.ok(&["logs", &run_id, "t", "--try", "1"]);
    assert!(
        log.contains("loaded 2 row(s) into warehouse.db.things"),
        "{log}"
    );
    for try_number in ["2", "3"] {
        let log = env.ok(&["logs", &run_id, "t", "--try", try_number]);
        assert!(
            log.contains("try 1 already committed things (2 row(s)); not writing it again"),
            "{log}"
        );
    }
    assert_eq!(
        scalar(&env, "SELECT COUNT(*) FROM things"),
        2,
        "appended once"
    );
    let ledger = "SELECT COUNT(*) FROM _orchestrator_ledger WHERE task_id = 't' \
                  AND item = 'things' AND try_number = 1 AND rows = 2 \
                  AND operation = 'load_append'";
    assert_eq!(scalar(&env, ledger), 1);
    assert_eq!(scalar(&env, "SELECT COUNT(*) FROM _orchestrator_ledger"), 1);
}
