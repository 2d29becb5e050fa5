#[tokio::test]
async fn migration_5_keeps_old_duplicate_logical_dates_and_refuses_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}?mode=rwc", dir.path().join("old.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    for sql in [
        include_str!("../../../migrations/0001_init.sql"),
        include_str!("../../../migrations/0002_leases_versions.sql"),
        include_str!("../../../migrations/0003_try_process.sql"),
        include_str!("../../../migrations/0004_log_seq.sql"),
    ] {
        sqlx::raw_sql(sql).execute(&pool).await.unwrap();
    }
    // What older versions allowed: a scheduled and a backfill run on one logical date.
    let insert = |run_id: &str, run_type: &str, date: &str| {
        format!(
            "INSERT INTO dag_run (dag_id, run_id, run_type, state, logical_date, \
             data_interval_start, data_interval_end, queued_at) \
             VALUES ('d', '{run_id}', '{run_type}', 'success', '{date}', '{date}', 'x', 'x');"
        )
    };
    let old = [
        insert("scheduled__1", "scheduled", "2024-01-01"),
        insert("backfill__1", "backfill", "2024-01-01"),
        insert("manual__1", "manual", "2024-01-01"),
        insert("scheduled__2", "scheduled", "2024-01-02"),
    ]
    .concat();
    sqlx::raw_sql(sqlx::AssertSqlSafe(old))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::raw_sql(include_str!(
        "../../../migrations/0005_one_run_per_logical_date.sql"
    ))
    .execute(&pool)
    .await
    .unwrap();
    let flags: Vec<(String, i64)> =
        sqlx::query_as("SELECT run_id, legacy_duplicate FROM dag_run ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    let expected = [
        ("scheduled__1", 0),
        ("backfill__1", 1),
        ("manual__1", 0),
        ("scheduled__2", 0),
    ]
    .map(|(r, f)| (r.to_string(), f));
    assert_eq!(flags, expected);
    let taken = sqlx::raw_sql(sqlx::AssertSqlSafe(insert(
        "backfill__2",
        "backfill",
        "2024-01-02",
    )))
    .execute(&pool)
    .await
    .unwrap_err();
    assert!(
        taken.to_string().contains("UNIQUE constraint failed"),
        "{taken}"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(insert(
        "manual__2",
        "manual",
        "2024-01-02",
    )))
    .execute(&pool)
    .await
    .unwrap();
}
