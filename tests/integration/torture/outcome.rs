//! The torture test's invariants on outcomes, checked once every `serve` has exited: runs
//! and task instances, parent and child runs, and the warehouse.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::Connection;

use super::checks::{StoreTry, TryKey, Violation, state_db, violation};
use super::workload::{CHILD_DAG, CSV_ROWS, WAREHOUSE_DAG};
use crate::support::{Env, task_states};

/// Each DAG has exactly the runs expected, all `success`, every task instance `success`.
pub fn runs_succeeded(env: &Env, dag: &str, expected: usize) -> Vec<Violation> {
    let runs = env.runs(dag);
    let mut out = Vec::new();
    if runs.len() != expected {
        let what = format!("{dag} has {} run(s), expected {expected}", runs.len());
        out.push(violation("", what));
    }
    for r in &runs {
        let run_id = r["run_id"].as_str().unwrap();
        let detail = env.run_detail(run_id);
        let bad: Vec<_> = task_states(&detail)
            .into_iter()
            .filter(|(_, s)| s != "success")
            .collect();
        if detail["state"] != "success" || !bad.is_empty() {
            let what = format!(
                "{dag} run is {}; tasks not success: {bad:?}",
                detail["state"]
            );
            out.push(violation(run_id, what));
        }
    }
    out
}

/// Each parent run has exactly one child run, created by a try of its `kick` task that the
/// store knows, with the parent's run id in its conf.
pub fn one_child_per_parent(env: &Env, parent_dag: &str) -> Vec<Violation> {
    let db = state_db(env);
    let mut out = Vec::new();
    let mut stmt = db
        .prepare(
            "SELECT p.run_id, (SELECT COUNT(*) FROM dag_run c WHERE c.parent_run = p.id) \
             FROM dag_run p WHERE p.dag_id = ?1",
        )
        .unwrap();
    let counts = stmt.query_map([parent_dag], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    });
    for (run_id, n) in counts.unwrap().map(Result::unwrap) {
        if n != 1 {
            out.push(violation(
                &run_id,
                format!("parent run has {n} child run(s)"),
            ));
        }
    }
    let mut stmt = db
        .prepare(
            "SELECT c.run_id, p.run_id, json_extract(c.conf, '$.parent'), c.parent_try, \
             EXISTS (SELECT 1 FROM task_try t WHERE t.run = p.id AND t.task_id = c.parent_task_id \
                     AND t.try_number = c.parent_try) \
             FROM dag_run c LEFT JOIN dag_run p ON p.id = c.parent_run WHERE c.dag_id = ?1",
        )
        .unwrap();
    let rows = stmt.query_map([CHILD_DAG], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<String>>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, Option<i64>>(3)?,
            r.get::<_, bool>(4)?,
        ))
    });
    for (child, parent, conf_parent, parent_try, try_known) in rows.unwrap().map(Result::unwrap) {
        if parent.is_none() || parent != conf_parent || !try_known {
            let what = format!(
                "child run {child}: parent {parent:?}, conf.parent {conf_parent:?}, \
                 parent try {parent_try:?} known to the store: {try_known}"
            );
            out.push(violation(&child, what));
        }
    }
    out
}

/// `max_active_runs: 1` held: no two runs of `dag` were active at once (from the store's
/// run start and end times).
pub fn one_run_at_a_time(env: &Env, dag: &str) -> Vec<Violation> {
    let db = state_db(env);
    let mut stmt = db
        .prepare(
            "SELECT a.run_id, a.start_date, a.end_date, b.run_id, b.start_date, b.end_date \
             FROM dag_run a JOIN dag_run b ON a.dag_id = b.dag_id AND a.id < b.id \
             WHERE a.dag_id = ?1 AND a.start_date < b.end_date AND b.start_date < a.end_date",
        )
        .unwrap();
    let pairs = stmt.query_map([dag], |r| {
        let text = |i| r.get::<_, String>(i);
        Ok((text(0)?, text(1)?, text(2)?, text(3)?, text(4)?, text(5)?))
    });
    pairs
        .unwrap()
        .map(Result::unwrap)
        .map(|(a, a0, a1, b, b0, b1)| {
            let what = format!(
                "max_active_runs 1 broken: {dag} runs {a} ({a0} to {a1}) and {b} ({b0} to {b1}) \
                 were active at once"
            );
            violation(&format!("{a} {b}"), what)
        })
        .collect()
}

fn warehouse(env: &Env) -> Connection {
    Connection::open(env.path("warehouse.db")).unwrap()
}

fn scalar(db: &Connection, sql: &str) -> i64 {
    db.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// The append load wrote the CSV exactly once per run, the SQL task inserted exactly one
/// row per run, and the warehouse ledger holds exactly one row per run for each, by a try
/// the store knows.
pub fn warehouse_exact(
    env: &Env,
    runs: &[String],
    store: &BTreeMap<TryKey, StoreTry>,
) -> Vec<Violation> {
    let db = warehouse(env);
    let n = i64::try_from(runs.len()).unwrap();
    let mut out = Vec::new();
    let mut check = |what: &str, got: i64, want: i64| {
        if got != want {
            out.push(violation("", format!("{what}: {got}, expected {want}")));
        }
    };
    check(
        "rows in things",
        scalar(&db, "SELECT COUNT(*) FROM things"),
        CSV_ROWS * n,
    );
    check(
        "rows in totals",
        scalar(&db, "SELECT COUNT(*) FROM totals"),
        n,
    );
    check(
        "ledger rows of wh",
        scalar(
            &db,
            "SELECT COUNT(*) FROM _orchestrator_ledger WHERE dag_id = 'wh'",
        ),
        2 * n,
    );
    for run_id in runs {
        out.extend(warehouse_run(&db, run_id, store));
    }
    out
}

fn warehouse_run(
    db: &Connection,
    run_id: &str,
    store: &BTreeMap<TryKey, StoreTry>,
) -> Vec<Violation> {
    let mut out = Vec::new();
    let totals = db
        .query_row(
            "SELECT COUNT(*) FROM totals WHERE run_id = ?1",
            [run_id],
            |r| r.get::<_, i64>(0),
        )
        .unwrap();
    if totals != 1 {
        out.push(violation(
            run_id,
            format!("{totals} totals row(s) for the run"),
        ));
    }
    let mut stmt = db
        .prepare(
            "SELECT task_id, item, operation, rows, try_number FROM _orchestrator_ledger \
             WHERE dag_id = ?1 AND run_id = ?2 ORDER BY task_id",
        )
        .unwrap();
    let rows: Vec<(String, String, String, i64, u32)> = stmt
        .query_map([WAREHOUSE_DAG, run_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let shape: BTreeSet<(&str, &str, &str)> = rows
        .iter()
        .map(|(t, i, o, _, _)| (t.as_str(), i.as_str(), o.as_str()))
        .collect();
    let want = BTreeSet::from([
        ("load", "things", "load_append"),
        ("total", "(script)", "sql_script"),
    ]);
    let load_rows_ok = rows.iter().all(|r| r.0 != "load" || r.3 == CSV_ROWS);
    if rows.len() != 2 || shape != want || !load_rows_ok {
        out.push(violation(run_id, format!("warehouse ledger rows {rows:?}")));
    }
    for (task, _, _, _, try_number) in &rows {
        let key = (
            WAREHOUSE_DAG.to_string(),
            run_id.to_string(),
            task.clone(),
            *try_number,
        );
        if !store.contains_key(&key) {
            let what =
                format!("warehouse ledger names {task} try {try_number}, unknown to the store");
            out.push(violation(run_id, what));
        }
    }
    out
}
