//! Secrets stay secret (issue 9, item 7): a configured URL with a password and the value of
//! a secret-named environment variable never reach `serve`'s log, a task log, an error or
//! `-o json` output, and never land in the state database.

use crate::support::{Env, PgSchema, text, wait_until};

/// The password given to the PostgreSQL warehouse (the test server's trust authentication
/// lets it in whatever it is).
const WAREHOUSE_PASSWORD: &str = "wh-pass-8412";
const TOKEN: &str = "tok-5521-very-secret";
const DAG: &str = "dag_id: leak
tasks:
  echo:
    type: shell
    command: 'echo token=$TEST_API_TOKEN; echo warehouse=$ORCHESTRATOR_WAREHOUSE; echo db=$DB_PASSWORD'
    env: {DB_PASSWORD: dag-pass-3141}
  query: {type: sql, sql: 'SELECT 1', depends_on: echo}
";

/// The test schema's URL with a password, and the password (the URL's own, if it has one).
fn warehouse_url(pg: &PgSchema) -> (String, String) {
    let mut url = url::Url::parse(&pg.url).unwrap();
    if let Some(own) = url.password() {
        return (pg.url.clone(), own.to_string());
    }
    url.set_password(Some(WAREHOUSE_PASSWORD)).unwrap();
    (url.to_string(), WAREHOUSE_PASSWORD.to_string())
}

fn assert_no_secret(what: &str, shown: &str, password: &str) {
    for secret in [password, TOKEN] {
        assert!(!shown.contains(secret), "{what} shows {secret}:\n{shown}");
    }
}

#[test]
fn a_password_in_a_configured_url_and_secret_variables_never_appear_in_logs_or_output() {
    let pg = PgSchema::new();
    let (warehouse, password) = warehouse_url(&pg);
    let masked = warehouse.replace(&format!(":{password}@"), ":***@");
    let assert_no_secret = |what: &str, shown: &str| assert_no_secret(what, shown, &password);
    let mut env = Env::new();
    env.vars = vec![
        ("ORCHESTRATOR_WAREHOUSE".into(), warehouse.clone()),
        ("TEST_API_TOKEN".into(), TOKEN.into()),
    ];
    env.dag("leak", DAG);
    let server = env.serve();
    let out = env.run(&["trigger", "leak", "--wait"]);
    assert_no_secret("trigger --wait", &(text(&out.stdout) + &text(&out.stderr)));
    let runs = env.runs("leak");
    let run_id = runs[0]["run_id"].as_str().unwrap().to_string();
    wait_until("the run ends", || env.runs("leak")[0]["state"] == "success");

    let echo = env.ok(&["logs", &run_id, "echo"]);
    assert!(echo.contains("token=***"), "{echo}");
    // A secret-named variable the DAG gives its command is masked in that task's log.
    assert!(echo.contains("db=***"), "{echo}");
    assert!(echo.contains(&format!("warehouse={masked}")), "{echo}");
    let query = env.ok(&["logs", &run_id, "query"]);
    assert!(query.contains(&format!("running on {masked}")), "{query}");
    for args in [
        vec!["logs", run_id.as_str(), "query", "-o", "json"],
        vec!["runs", "show", run_id.as_str(), "-o", "json"],
    ] {
        assert_no_secret(&format!("{args:?}"), &env.ok(&args));
    }
    assert_no_secret("serve's log", &server.log());

    // What is stored is masked too: a reader without this process's environment (another
    // host's CLI, a copy of the database) sees no secret either.
    drop(server);
    for entry in std::fs::read_dir(env.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert_no_secret(
                &path.display().to_string(),
                &String::from_utf8_lossy(&bytes),
            );
        }
    }
}

#[test]
fn an_unusable_state_database_url_is_reported_without_its_password() {
    let env = Env::new();
    let out = env
        .command(&["runs", "list"])
        .env(
            "ORCHESTRATOR_DATABASE_URL",
            "postgres://admin:db-pass-77@nowhere/x",
        )
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    // One clear error naming where it tried (never the password), and a set-up error's exit.
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "cannot connect to the PostgreSQL state database at nowhere:5432/x as user admin"
        ),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!stderr.contains("db-pass-77"), "{stderr}");
}
