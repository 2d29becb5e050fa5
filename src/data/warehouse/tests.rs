//! The warehouse's behaviour, one body per test run on SQLite and on PostgreSQL, then what
//! only PostgreSQL has (views held by OID, grants, backends to terminate).

use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::SchemaRef;

use super::testing::{TestWarehouse, batches, fresh, ids};
use super::*;
use crate::data::ledger::Ledgered;
use crate::store::Backend;

async fn load(w: &Warehouse, b: RecordBatch, mode: LoadMode) -> Result<Ledgered<u64>, DataError> {
    let schema = b.schema();
    w.load("t", &schema, batches(vec![b]), mode, &fresh()).await
}

async fn count(w: &TestWarehouse) -> String {
    w.scalar("SELECT COUNT(*) FROM t").await
}

async fn views_over_a_loaded_table_survive_a_replace(backend: Backend) {
    let w = TestWarehouse::open(backend).await;
    load(&w, ids(&[1, 2, 3]).1, LoadMode::Replace)
        .await
        .unwrap();
    w.run_script(
        "CREATE VIEW big AS SELECT id FROM t WHERE id > 1",
        0,
        &fresh(),
    )
    .await
    .unwrap();
    load(&w, ids(&[5, 6, 7, 8]).1, LoadMode::Replace)
        .await
        .unwrap();
    assert_eq!(w.scalar("SELECT COUNT(*) FROM big").await, "4");
    // Renames in users' scripts still update views.
    w.run_script("ALTER TABLE t RENAME TO t2", 0, &fresh())
        .await
        .unwrap();
    assert_eq!(w.scalar("SELECT COUNT(*) FROM big").await, "4");
}

async fn replace_swaps_append_adds_and_a_failed_load_keeps_the_old_table(backend: Backend) {
    let w = TestWarehouse::open(backend).await;
    let (schema, b) = ids(&(0..300).collect::<Vec<_>>());
    let loaded = load(&w, b.clone(), LoadMode::Replace).await.unwrap();
    assert_eq!(loaded, Ledgered::Written(300));
    load(&w, b.clone(), LoadMode::Append).await.unwrap();
    assert_eq!(count(&w).await, "600");
    load(&w, ids(&[1, 2]).1, LoadMode::Replace).await.unwrap();
    assert_eq!(count(&w).await, "2");
    let broken: Batches =
        Box::new(vec![Ok(b), Err(DataError::Format("disk on fire".into()))].into_iter());
    let err = w
        .load("t", &schema, broken, LoadMode::Replace, &fresh())
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "disk on fire");
    assert_eq!(count(&w).await, "2", "the previous table is intact");
    assert_eq!(
        w.tables().await,
        ["_orchestrator_ledger", "t"],
        "no staging left"
    );
}

async fn queries_return_the_last_result_set_and_quote_refuses_escapes(backend: Backend) {
    let w = TestWarehouse::open(backend).await;
    let rows = w
        .query(
            "CREATE TABLE x (a BIGINT); INSERT INTO x VALUES (1), (NULL); SELECT a FROM x",
            10,
        )
        .await
        .unwrap();
    assert_eq!(rows.columns, vec!["a"]);
    assert_eq!(
        rows.rows,
        vec![vec!["1".to_string()], vec!["NULL".to_string()]]
    );
    assert_eq!(rows.total, 2);
    assert!(quote("a\"b").is_err());
}

/// Every type `import` writes, with nulls, over several batches.
fn typed_batches() -> (SchemaRef, Vec<RecordBatch>) {
    let batch =
        |i: Vec<Option<i64>>, x: Vec<Option<f64>>, b: Vec<Option<bool>>, s: Vec<Option<&str>>| {
            RecordBatch::try_from_iter([
                ("i", Arc::new(Int64Array::from(i)) as ArrayRef),
                ("x", Arc::new(Float64Array::from(x)) as ArrayRef),
                ("b", Arc::new(BooleanArray::from(b)) as ArrayRef),
                ("s", Arc::new(StringArray::from(s)) as ArrayRef),
            ])
            .unwrap()
        };
    let list = vec![
        batch(
            vec![Some(1), Some(i64::MIN)],
            vec![Some(1.5), None],
            vec![Some(true), None],
            vec![Some("ñ \"q\""), Some("")],
        ),
        batch(vec![None], vec![Some(-2.25)], vec![Some(false)], vec![None]),
        batch(
            vec![Some(i64::MAX)],
            vec![Some(0.1)],
            vec![Some(true)],
            vec![Some("a,b\tc\nd")],
        ),
    ];
    (list[0].schema(), list)
}

async fn every_loadable_type_and_null_round_trips(backend: Backend) {
    let w = TestWarehouse::open(backend).await;
    let (schema, list) = typed_batches();
    let loaded = w
        .load("t", &schema, batches(list), LoadMode::Replace, &fresh())
        .await
        .unwrap();
    assert_eq!(loaded, Ledgered::Written(4));
    let rows = w
        .query(
            "SELECT i, CAST(x AS TEXT), CASE WHEN b THEN 'yes' WHEN NOT b THEN 'no' END, s \
             FROM t ORDER BY i NULLS FIRST",
            10,
        )
        .await
        .unwrap()
        .rows;
    let expected = [
        ["NULL", "-2.25", "no", "NULL"],
        ["-9223372036854775808", "NULL", "NULL", ""],
        ["1", "1.5", "yes", "ñ \"q\""],
        ["9223372036854775807", "0.1", "yes", "a,b\tc\nd"],
    ];
    assert_eq!(rows, expected.map(|r| r.map(String::from).to_vec()));
}

async fn append_matches_columns_by_name_and_names_a_missing_one(backend: Backend) {
    let w = TestWarehouse::open(backend).await;
    let two = |a: &str, b: &str| {
        RecordBatch::try_from_iter([
            (a, Arc::new(Int64Array::from(vec![1])) as ArrayRef),
            (b, Arc::new(StringArray::from(vec!["x"])) as ArrayRef),
        ])
        .unwrap()
    };
    load(&w, two("id", "name"), LoadMode::Append).await.unwrap();
    // The same columns in another order land in their own columns.
    let swapped = RecordBatch::try_from_iter([
        ("name", Arc::new(StringArray::from(vec!["y"])) as ArrayRef),
        ("id", Arc::new(Int64Array::from(vec![2])) as ArrayRef),
    ])
    .unwrap();
    load(&w, swapped, LoadMode::Append).await.unwrap();
    let sql = "SELECT COUNT(*) FROM t WHERE (id = 1 AND name = 'x') OR (id = 2 AND name = 'y')";
    assert_eq!(w.scalar(sql).await, "2");
    let err = load(&w, two("id", "extra"), LoadMode::Append)
        .await
        .unwrap_err()
        .to_string();
    match backend {
        Backend::Sqlite => assert!(err.ends_with("table t has no column named extra"), "{err}"),
        Backend::Postgres => assert_eq!(
            err,
            "cannot append to table t: it has no column 'extra' (add it, or load with mode \
             replace)"
        ),
    }
    assert_eq!(count(&w).await, "2");
}

/// Batches whose second one cancels the load before it is handed over.
fn cancelling(cancel: tokio_util::sync::CancellationToken) -> Batches {
    let mut n = 0;
    Box::new(std::iter::from_fn(move || {
        n += 1;
        if n == 2 {
            cancel.cancel();
        }
        (n <= 5).then(|| Ok(ids(&[n]).1))
    }))
}

async fn a_cancelled_load_commits_nothing(backend: Backend) {
    let w = TestWarehouse::open(backend).await;
    for mode in [LoadMode::Replace, LoadMode::Append] {
        let cancel = tokio_util::sync::CancellationToken::new();
        let stopping = w.cancelled_by(cancel.clone());
        let err = stopping
            .load("t", &ids(&[]).0, cancelling(cancel), mode, &fresh())
            .await
            .unwrap_err();
        assert!(matches!(err, DataError::Cancelled(_)), "{err}");
        assert!(w.tables().await.is_empty(), "{mode:?} left tables");
    }
    load(&w, ids(&[7, 8]).1, LoadMode::Replace).await.unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let err = w
        .cancelled_by(cancel.clone())
        .load(
            "t",
            &ids(&[]).0,
            cancelling(cancel),
            LoadMode::Replace,
            &fresh(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, DataError::Cancelled(_)), "{err}");
    assert_eq!(count(&w).await, "2", "the previous table is intact");
    assert_eq!(
        w.scalar("SELECT COUNT(*) FROM _orchestrator_ledger").await,
        "1"
    );
}

crate::store::testing::on_both!(
    views_over_a_loaded_table_survive_a_replace,
    replace_swaps_append_adds_and_a_failed_load_keeps_the_old_table,
    queries_return_the_last_result_set_and_quote_refuses_escapes,
    every_loadable_type_and_null_round_trips,
    append_matches_columns_by_name_and_names_a_missing_one,
    a_cancelled_load_commits_nothing,
);

mod postgres_only {
    use super::*;

    async fn pg() -> TestWarehouse {
        TestWarehouse::open(Backend::Postgres).await
    }

    async fn script(w: &Warehouse, sql: &str) {
        w.run_script(sql, 0, &fresh()).await.unwrap();
    }

    #[tokio::test]
    async fn a_replace_recreates_views_on_views_with_their_grants_and_comments() {
        let w = pg().await;
        load(&w, ids(&[1, 2, 3]).1, LoadMode::Replace)
            .await
            .unwrap();
        script(
            &w,
            "CREATE VIEW big WITH (security_barrier) AS SELECT id FROM t WHERE id > 1;
             CREATE VIEW bigger AS SELECT id * 10 AS tens FROM big;
             GRANT SELECT ON t TO PUBLIC; GRANT SELECT ON bigger TO pg_monitor;
             COMMENT ON TABLE t IS 'loaded nightly'; COMMENT ON VIEW big IS 'id > 1'",
        )
        .await;
        load(&w, ids(&[5, 6, 7, 8]).1, LoadMode::Replace)
            .await
            .unwrap();
        assert_eq!(w.scalar("SELECT SUM(tens) FROM bigger").await, "260");
        let kept = "SELECT has_table_privilege('public', 't', 'SELECT') \
                    AND has_table_privilege('pg_monitor', 'bigger', 'SELECT') \
                    AND obj_description('t'::regclass, 'pg_class') = 'loaded nightly' \
                    AND obj_description('big'::regclass, 'pg_class') = 'id > 1' \
                    AND (SELECT reloptions::text FROM pg_class WHERE oid = 'big'::regclass) \
                        = '{security_barrier=true}'";
        assert_eq!(w.scalar(kept).await, "t");
        assert_eq!(w.tables().await, ["_orchestrator_ledger", "t"]);
    }

    #[tokio::test]
    async fn a_replace_that_would_break_a_view_or_a_materialized_view_keeps_the_old_table() {
        let w = pg().await;
        load(&w, ids(&[1, 2, 3]).1, LoadMode::Replace)
            .await
            .unwrap();
        script(&w, "CREATE VIEW ids AS SELECT id FROM t").await;
        let other = RecordBatch::try_from_iter([(
            "name",
            Arc::new(StringArray::from(vec!["a"])) as ArrayRef,
        )])
        .unwrap();
        let err = load(&w, other, LoadMode::Replace).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot replace table t: its view ids cannot be created again: column t.id does not \
             exist"
        );
        script(
            &w,
            "DROP VIEW ids; CREATE MATERIALIZED VIEW m AS SELECT id FROM t",
        )
        .await;
        let err = load(&w, ids(&[4]).1, LoadMode::Replace).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot replace table t: materialized view m depends on it (drop it, or load with \
             mode append)"
        );
        assert_eq!(count(&w).await, "3");
        assert_eq!(w.tables().await, ["_orchestrator_ledger", "t"]);
    }

    #[tokio::test]
    async fn a_replace_of_a_table_with_row_level_security_is_refused() {
        let w = pg().await;
        load(&w, ids(&[1, 2, 3]).1, LoadMode::Replace)
            .await
            .unwrap();
        script(&w, "ALTER TABLE t ENABLE ROW LEVEL SECURITY").await;
        let err = load(&w, ids(&[4]).1, LoadMode::Replace).await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot replace table t: it has row-level security"),
            "{err}"
        );
        assert_eq!(count(&w).await, "3");
    }

    #[tokio::test]
    async fn only_the_first_schema_of_the_search_path_is_written() {
        let w = pg().await;
        let first = w.scalar("SELECT current_schema()").await;
        let later = format!("{first}_later");
        script(
            &w,
            &format!(
                "CREATE SCHEMA {later}; CREATE TABLE {later}.t (id BIGINT); \
                 INSERT INTO {later}.t VALUES (41), (42)"
            ),
        )
        .await;
        let base = crate::store::testing::postgres_base();
        let url = crate::store::testing::with_schema(&base, &format!("{first}%2C{later}"));
        let both = Warehouse::open(&WarehouseLocation::Postgres(url), 2).unwrap();
        for mode in [LoadMode::Replace, LoadMode::Append] {
            both.load(
                "t",
                &ids(&[1]).0,
                batches(vec![ids(&[1]).1]),
                mode,
                &fresh(),
            )
            .await
            .unwrap();
        }
        let untouched = w
            .scalar(&format!("SELECT CAST(SUM(id) AS TEXT) FROM {later}.t"))
            .await;
        script(&w, &format!("DROP SCHEMA {later} CASCADE")).await;
        assert_eq!(untouched, "83");
        assert_eq!(w.scalar("SELECT CAST(SUM(id) AS TEXT) FROM t").await, "2");
    }

    #[tokio::test]
    async fn a_scripts_session_settings_do_not_follow_its_connection() {
        let w = pg().await;
        // One connection, so the load gets the one the script used.
        let first = w.scalar("SELECT current_schema()").await;
        let one = w.reopen_with(1);
        one.run_script(
            &format!("SET search_path TO pg_catalog, {first}; CREATE TEMP TABLE t (x TEXT)"),
            0,
            &fresh(),
        )
        .await
        .unwrap();
        one.load(
            "t",
            &ids(&[7]).0,
            batches(vec![ids(&[7]).1]),
            LoadMode::Replace,
            &fresh(),
        )
        .await
        .unwrap();
        assert_eq!(w.tables().await, ["_orchestrator_ledger", "t"]);
        assert_eq!(w.scalar("SELECT CAST(SUM(id) AS TEXT) FROM t").await, "7");
    }

    #[tokio::test]
    async fn appending_a_column_of_another_type_is_refused_by_name() {
        let w = pg().await;
        script(&w, "CREATE TABLE t (id integer)").await;
        let err = load(&w, ids(&[1]).1, LoadMode::Append).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot append to table t: column 'id' is integer in the table but bigint in the \
             staged table"
        );
    }

    #[tokio::test]
    async fn a_script_that_commits_by_itself_is_refused() {
        let w = pg().await;
        let err = w
            .run_script(
                "CREATE TABLE y (a BIGINT); COMMIT; INSERT INTO y VALUES (1)",
                0,
                &fresh(),
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the sql script ends the transaction itself (COMMIT or ROLLBACK): the task runs a \
             script in one transaction of its own; remove them (what it committed stays: the \
             task is not retried)"
        );
    }

    #[tokio::test]
    async fn an_unreachable_server_is_named_without_its_password() {
        let w = Warehouse::open(
            &WarehouseLocation::Postgres("postgres://etl:s3cret-pw@127.0.0.1:1/wh".into()),
            1,
        )
        .unwrap();
        assert_eq!(w.shown(), "postgres://etl:***@127.0.0.1:1/wh");
        let err = w.check().await.unwrap_err();
        assert!(matches!(err, DataError::WarehouseConnect { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "cannot connect to the PostgreSQL warehouse at 127.0.0.1:1/wh as user etl: \
             Connection refused (os error 111)"
        );
    }

    #[test]
    fn side_tables_of_long_names_stay_within_postgresql_limits() {
        assert_eq!(pg_load::staging_name("t").unwrap(), "t__loading");
        let long = "x".repeat(60);
        let staging = pg_load::staging_name(&long).unwrap();
        assert!(staging.starts_with("_orchestrator_") && staging.ends_with("__loading"));
        assert!(staging.len() <= 63, "{staging}");
        let err = pg_load::staging_name(&"x".repeat(64)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "name '{}' is longer than the 63 bytes PostgreSQL keeps",
                "x".repeat(64)
            )
        );
    }
}
