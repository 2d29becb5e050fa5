//! DAG rows: the paused flag of every DAG ever loaded.

use std::collections::HashMap;

use chrono::Utc;
use sqlx::Row;

use super::{Store, StoreResult, to_text};
use crate::ids::DagId;

impl Store {
    /// Records DAGs seen by the loader (unpaused on creation); existing rows are kept.
    pub async fn ensure_dags(&self, ids: impl IntoIterator<Item = &DagId>) -> StoreResult<()> {
        let now = to_text(Utc::now());
        let mut tx = self.begin_write().await?;
        for id in ids {
            sqlx::query(
                "INSERT INTO dag (dag_id, is_paused, first_seen) VALUES ($1, 0, $2) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(id.as_str())
            .bind(&now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Sets the paused flag; returns the previous value.
    pub async fn set_paused(&self, id: &DagId, paused: bool) -> StoreResult<bool> {
        self.ensure_dags([id]).await?;
        let mut tx = self.begin_write().await?;
        let before: i64 = sqlx::query_scalar("SELECT is_paused FROM dag WHERE dag_id = $1")
            .bind(id.as_str())
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query("UPDATE dag SET is_paused = $1 WHERE dag_id = $2")
            .bind(i64::from(paused))
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(before != 0)
    }

    /// Whether a DAG is paused (one never seen is not).
    pub async fn is_paused(&self, id: &DagId) -> StoreResult<bool> {
        let paused: Option<i64> = sqlx::query_scalar("SELECT is_paused FROM dag WHERE dag_id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(paused.is_some_and(|p| p != 0))
    }

    /// The paused flag of every known DAG.
    pub async fn paused_flags(&self) -> StoreResult<HashMap<DagId, bool>> {
        let rows = sqlx::query("SELECT dag_id, is_paused FROM dag")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    DagId::new(r.try_get::<String, _>("dag_id")?),
                    r.try_get::<i64, _>("is_paused")? != 0,
                ))
            })
            .collect()
    }
}
