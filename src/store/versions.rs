//! Stored DAG versions: each distinct definition of a DAG once, by hash, so a run executes
//! the definition it started with whatever happens to the file afterwards.

use chrono::Utc;
use sqlx::{Any, Row, Transaction};

use super::rows::DagVersion;
use super::{Store, StoreResult, to_text};
use crate::ids::DagId;

impl Store {
    pub(super) async fn insert_version(
        tx: &mut Transaction<'static, Any>,
        v: &DagVersion,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO dag_version (hash, dag_id, source_path, project, definition, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(&v.hash)
        .bind(v.dag_id.as_str())
        .bind(&v.source_path)
        .bind(v.project.as_deref())
        .bind(&v.definition)
        .bind(to_text(Utc::now()))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// One stored version by hash.
    pub async fn dag_version(&self, hash: &str) -> StoreResult<Option<DagVersion>> {
        let row = sqlx::query(
            "SELECT hash, dag_id, source_path, project, definition FROM dag_version WHERE hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(DagVersion {
                hash: r.try_get("hash")?,
                dag_id: DagId::new(r.try_get::<String, _>("dag_id")?),
                source_path: r.try_get("source_path")?,
                project: r.try_get("project")?,
                definition: r.try_get("definition")?,
            })
        })
        .transpose()
    }
}
