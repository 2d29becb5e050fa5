//! The warehouse on PostgreSQL (`warehouse: postgres://…`, issue 12): the shipped pipeline
//! loads the sample into a schema of its own, the shipped `warehouse_report` runs there, a
//! second load replaces the tables (one copy, a user's view kept working), and an
//! unreachable warehouse is a set-up error that names it without its password.

use crate::support::{Env, PgSchema, task, text, wait_until};

const TABLES: [&str; 4] = ["drugs", "pubmed_csv", "pubmed_json", "clinical_trials"];

fn project(pg: &PgSchema) -> Env {
    let mut env = Env::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["dags", "config", "data"] {
        crate::cli::copy_dir(&root.join(dir), &env.path(dir));
    }
    env.vars
        .push(("ORCHESTRATOR_WAREHOUSE".into(), pg.url.clone()));
    env
}

fn counts(pg: &PgSchema) -> Vec<String> {
    TABLES
        .iter()
        .map(|t| pg.column(&format!("SELECT COUNT(*) FROM {t}"))[0].clone())
        .collect()
}

fn log_of(env: &Env, dag: &str, task_id: &str) -> String {
    let run_id = env.runs(dag)[0]["run_id"].as_str().unwrap().to_string();
    env.ok(&["logs", &run_id, task_id])
}

#[test]
fn the_sample_pipeline_loads_into_postgresql_and_the_shipped_report_runs_there() {
    let pg = PgSchema::new();
    let env = project(&pg);
    env.ok(&["run", "drugs_orchestrator"]);
    assert_eq!(counts(&pg), ["7", "8", "5", "8"]);
    let log = log_of(&env, "drugs_load", "load_tables");
    assert!(
        log.contains(&format!("loaded 8 row(s) into {}.pubmed_csv", pg.url)),
        "{log}"
    );
    let types = pg.column(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
         WHERE attrelid = 'pubmed_csv'::regclass AND attnum > 0 ORDER BY attnum",
    );
    assert_eq!(types, ["bigint", "text", "text", "text"]);

    env.ok(&["run", "warehouse_report"]);
    let log = log_of(&env, "warehouse_report", "publications_per_journal");
    assert!(
        log.contains("table publications_per_journal now has 12 row(s)"),
        "{log}"
    );
    assert!(log.contains("Journal of emergency nursing | 7"), "{log}");

    // A view of the user's over a loaded table; the next load replaces the table under it.
    pg.column("CREATE VIEW nursing AS SELECT id FROM pubmed_csv WHERE journal LIKE '%nursing%'");
    let nursing = "SELECT COUNT(*) FROM nursing";
    let before = pg.column(nursing);
    env.ok(&["run", "drugs_load"]);
    assert_eq!(
        counts(&pg),
        ["7", "8", "5", "8"],
        "one copy after a replace"
    );
    assert_eq!(pg.column(nursing), before, "the view reads the new table");
    let tables =
        pg.column("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1");
    assert_eq!(
        tables,
        [
            "_orchestrator_ledger",
            "clinical_trials",
            "drugs",
            "publications_per_journal",
            "pubmed_csv",
            "pubmed_json"
        ],
        "no staging table left"
    );
    let ledger = pg.column(
        "SELECT operation || ':' || COUNT(*) FROM _orchestrator_ledger \
         GROUP BY operation ORDER BY operation",
    );
    assert_eq!(ledger, ["load_replace:8", "sql_into_table:1"]);
}

#[test]
fn an_unreachable_postgresql_warehouse_is_a_set_up_error_that_leaves_no_run() {
    let env = Env::new();
    env.dag("quick", "dag_id: quick\ntasks:\n  t: {type: noop}\n");
    for args in [["run", "quick"].as_slice(), &["trigger", "quick", "--wait"]] {
        let out = env
            .command(args)
            .env(
                "ORCHESTRATOR_WAREHOUSE",
                "postgres://etl:wh-pw-5521@127.0.0.1:1/wh",
            )
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(
            stderr.trim(),
            "error: cannot connect to the PostgreSQL warehouse at 127.0.0.1:1/wh as user etl: \
             Connection refused (os error 111)"
        );
    }
    assert!(env.runs("quick").is_empty(), "no run was queued");
    let out = env
        .command(&["serve", "--bind", "127.0.0.1:0"])
        .env(
            "ORCHESTRATOR_WAREHOUSE",
            "postgres://etl:wh-pw-5521@127.0.0.1:1/wh",
        )
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot connect to the PostgreSQL warehouse at 127.0.0.1:1/wh"),
        "{stderr}"
    );
    assert!(!stderr.contains("wh-pw-5521"), "{stderr}");
}

#[test]
fn a_timed_out_sql_task_on_postgresql_stops_its_statement_and_commits_nothing() {
    let pg = PgSchema::new();
    let env = project(&pg);
    env.dag(
        "slow",
        "dag_id: slow\ntasks:\n  fill:\n    type: sql\n    retries: 0\n    execution_timeout: 1s\n    \
         sql: 'CREATE TABLE big (n BIGINT); INSERT INTO big SELECT 1 FROM pg_sleep(600)'\n",
    );
    let out = env.run(&["run", "slow"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let run_id = env.runs("slow")[0]["run_id"].as_str().unwrap().to_string();
    let detail = env.run_detail(&run_id);
    assert_eq!(task(&detail, "fill")["error"], "timed out after 1s");
    // The process has exited, but a statement it merely abandoned would sleep on for ten
    // minutes in its backend: it was ended.
    let sleeping = format!(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = '{}' \
         AND query LIKE '%pg_sleep(600)%' AND pid <> pg_backend_pid()",
        pg.name()
    );
    wait_until("the statement's backend is gone", || {
        pg.column(&sleeping) == ["0"]
    });
    let tables = pg.column(
        "SELECT COUNT(*) FROM pg_tables WHERE schemaname = current_schema() \
         AND tablename IN ('big', '_orchestrator_ledger')",
    );
    assert_eq!(tables, ["0"], "the script rolled back");
}
