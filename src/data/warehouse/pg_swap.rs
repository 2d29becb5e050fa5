//! Swapping a freshly built table in for an old one on PostgreSQL, inside the caller's
//! transaction, so that readers see the old table or the new one, never a partial one.
//!
//! PostgreSQL views hold on to a table by its OID, not its name: dropping the old table
//! would fail (or, with `CASCADE`, silently take the views along), and a view would never
//! see the new table. Users of the SQLite warehouse keep their views across loads, and
//! PostgreSQL users expect no less, so the swap keeps them working: it reads the
//! definitions of the views that depend on the table (views on those views included, in
//! dependency order), drops them with the old table, renames the new table in and creates
//! them again from `pg_get_viewdef`, all in the one transaction. The grants and comments of
//! the table and of those views are carried over too (a read-only role must not lose
//! access at every load). A view that cannot be recreated (it uses a column the new table
//! lacks) fails the load with its name, and the old table stays. A materialized view is
//! refused by name: recreating it would recompute it and lose its indexes unseen. Anything
//! else that depends on the table (a foreign key, a rule) makes PostgreSQL refuse the drop,
//! and the load fails with its message. Indexes, constraints and triggers belong to the
//! old table and go with it, as on SQLite.

use sqlx::{AssertSqlSafe, PgConnection, Row};

use super::postgres::db_message;
use super::{IN_CURRENT_SCHEMA, quote};
use crate::data::DataError;

/// Views depending on the table `$1` (quoted), directly or through other views, each once,
/// in an order they can be created in; with the statement that creates each again.
const DEPENDENT_VIEWS: &str = "
WITH RECURSIVE deps(rel, depth) AS (
    SELECT $1::regclass::oid, 0
  UNION
    SELECT r.ev_class, deps.depth + 1
    FROM deps
    JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = deps.rel
                    AND d.classid = 'pg_rewrite'::regclass
    JOIN pg_rewrite r ON r.oid = d.objid
    JOIN pg_class v ON v.oid = r.ev_class AND v.relkind IN ('v', 'm')
    WHERE r.ev_class <> deps.rel
)
SELECT c.oid::regclass::text AS name,
       c.relkind = 'm' AS materialized,
       format('CREATE VIEW %s%s AS %s', c.oid::regclass,
              CASE WHEN c.reloptions IS NULL THEN ''
                   ELSE format(' WITH (%s)', array_to_string(c.reloptions, ', ')) END,
              pg_get_viewdef(c.oid)) AS recreate,
       c.oid::bigint AS oid
FROM (SELECT rel, max(depth) AS depth FROM deps WHERE depth > 0 GROUP BY rel) x
JOIN pg_class c ON c.oid = x.rel
ORDER BY x.depth, c.oid";

/// The grants (beyond the owner's own) and comments of the relations `$1`, as statements
/// that give them to relations of the same names.
const GRANTS_AND_COMMENTS: &str = "
SELECT format('GRANT %s ON %s TO %s%s', a.privilege_type, c.oid::regclass,
              CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
              CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
WHERE c.oid = ANY($1::oid[]) AND a.grantee <> c.relowner
UNION ALL
SELECT format('COMMENT ON %s %s IS %L', CASE c.relkind WHEN 'v' THEN 'VIEW' ELSE 'TABLE' END,
              c.oid::regclass, obj_description(c.oid, 'pg_class'))
FROM pg_class c
WHERE c.oid = ANY($1::oid[]) AND obj_description(c.oid, 'pg_class') IS NOT NULL";

/// A view to create again after the swap.
struct View {
    name: String,
    recreate: String,
}

/// Replaces table `target` by table `staging` (both unquoted names), keeping the views,
/// grants and comments of the old table (see the module's doc).
pub(super) async fn swap_in(
    conn: &mut PgConnection,
    staging: &str,
    target: &str,
    err: &(dyn Fn(sqlx::Error) -> DataError + Sync),
) -> Result<(), DataError> {
    let (staging_q, target_q) = (quote(staging)?, quote(target)?);
    let exists: bool = sqlx::query_scalar(IN_CURRENT_SCHEMA)
        .bind(&target_q)
        .fetch_one(&mut *conn)
        .await
        .map_err(err)?;
    let mut views = Vec::new();
    let mut keep = Vec::new();
    if exists {
        // No view can be added between the look-up and the drop; readers wait the few
        // statements of the swap, then read the new table.
        let lock = format!("LOCK TABLE {target_q} IN ACCESS EXCLUSIVE MODE");
        execute(conn, lock).await.map_err(err)?;
        let (found, oids) = dependent_views(conn, target, &target_q, err).await?;
        views = found;
        keep = grants_and_comments(conn, oids, err).await?;
        if !views.is_empty() {
            let names: Vec<&str> = views.iter().map(|v| v.name.as_str()).collect();
            let drop_views = format!("DROP VIEW {}", names.join(", "));
            execute(conn, drop_views).await.map_err(err)?;
        }
        execute(conn, format!("DROP TABLE {target_q}"))
            .await
            .map_err(|e| refused(target, &db_message(&e)))?;
    }
    let rename = format!("ALTER TABLE {staging_q} RENAME TO {target_q}");
    execute(conn, rename).await.map_err(err)?;
    for view in &views {
        execute(conn, view.recreate.clone()).await.map_err(|e| {
            let why = format!(
                "its view {} cannot be created again: {}",
                view.name,
                db_message(&e)
            );
            refused(target, &why)
        })?;
    }
    for statement in keep {
        execute(conn, statement).await.map_err(err)?;
    }
    Ok(())
}

/// The views to recreate and the OIDs whose grants and comments to keep (the table's
/// first); refuses materialized views.
async fn dependent_views(
    conn: &mut PgConnection,
    target: &str,
    target_q: &str,
    err: &(dyn Fn(sqlx::Error) -> DataError + Sync),
) -> Result<(Vec<View>, Vec<i64>), DataError> {
    let rows = sqlx::query(DEPENDENT_VIEWS)
        .bind(target_q)
        .fetch_all(&mut *conn)
        .await
        .map_err(err)?;
    let table: i64 = sqlx::query_scalar("SELECT $1::regclass::oid::bigint")
        .bind(target_q)
        .fetch_one(&mut *conn)
        .await
        .map_err(err)?;
    // Row-level security and its policies belong to the table and would go with it:
    // readers it restricts would see every row of the new one.
    let secured: bool = sqlx::query_scalar(
        "SELECT relrowsecurity OR EXISTS (SELECT 1 FROM pg_policy WHERE polrelid = c.oid) \
         FROM pg_class c WHERE c.oid = $1",
    )
    .bind(table)
    .fetch_one(&mut *conn)
    .await
    .map_err(err)?;
    if secured {
        return Err(refused(
            target,
            &"it has row-level security or policies, which would not carry over (load with \
              mode append)",
        ));
    }
    let mut views = Vec::new();
    let mut oids = vec![table];
    for row in rows {
        let name: String = row.try_get("name").map_err(err)?;
        if row.try_get::<bool, _>("materialized").map_err(err)? {
            return Err(refused(
                target,
                &format!(
                    "materialized view {name} depends on it (drop it, or load with mode \
                     append)"
                ),
            ));
        }
        oids.push(row.try_get("oid").map_err(err)?);
        views.push(View {
            name,
            recreate: row.try_get("recreate").map_err(err)?,
        });
    }
    Ok((views, oids))
}

async fn grants_and_comments(
    conn: &mut PgConnection,
    oids: Vec<i64>,
    err: &(dyn Fn(sqlx::Error) -> DataError + Sync),
) -> Result<Vec<String>, DataError> {
    sqlx::query_scalar(GRANTS_AND_COMMENTS)
        .bind(oids)
        .fetch_all(conn)
        .await
        .map_err(err)
}

/// Runs one statement built here (names quoted by [`quote`] or by PostgreSQL itself).
async fn execute(conn: &mut PgConnection, sql: String) -> sqlx::Result<()> {
    sqlx::query(AssertSqlSafe(sql))
        .execute(conn)
        .await
        .map(drop)
}

/// The error of a replace that PostgreSQL or the swap refused.
fn refused(target: &str, why: &dyn std::fmt::Display) -> DataError {
    DataError::Format(format!("cannot replace table {target}: {why}"))
}
