//! Users and generated secrets: rows of `users` (name, role, argon2 hash) and of `settings`
//! (the token-signing key, the CLI's wake secret). No policy here: roles are text, hashes
//! are opaque; `service::users` decides what they mean.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, StoreResult, from_text, to_text};

/// One stored user.
#[derive(Clone, Debug)]
pub struct UserRow {
    /// Unique login name.
    pub name: String,
    /// `viewer`, `op` or `admin`.
    pub role: String,
    /// Argon2 PHC string.
    pub password_hash: String,
    /// When the user was added.
    pub created_at: DateTime<Utc>,
    /// Unix seconds of the last password change (or creation).
    pub credentials_changed_at: i64,
}

fn user_row(r: &sqlx::any::AnyRow) -> StoreResult<UserRow> {
    Ok(UserRow {
        name: r.try_get("name")?,
        role: r.try_get("role")?,
        password_hash: r.try_get("password_hash")?,
        created_at: from_text(&r.try_get::<String, _>("created_at")?)?,
        credentials_changed_at: r.try_get("credentials_changed_at")?,
    })
}

const USER_COLUMNS: &str =
    "SELECT name, role, password_hash, created_at, credentials_changed_at FROM users";

impl Store {
    /// Adds a user; returns false (and changes nothing) when the name is taken.
    pub async fn insert_user(&self, name: &str, role: &str, hash: &str) -> StoreResult<bool> {
        let now = Utc::now();
        let done = sqlx::query(
            "INSERT INTO users \
             (name, role, password_hash, created_at, credentials_changed_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(name)
        .bind(role)
        .bind(hash)
        .bind(to_text(now))
        .bind(now.timestamp())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every user, by name.
    pub async fn users(&self) -> StoreResult<Vec<UserRow>> {
        let sql = sqlx::AssertSqlSafe(format!("{USER_COLUMNS} ORDER BY name"));
        let rows = sqlx::query(sql).fetch_all(&self.pool).await?;
        rows.iter().map(user_row).collect()
    }

    /// One user by name.
    pub async fn user(&self, name: &str) -> StoreResult<Option<UserRow>> {
        let sql = sqlx::AssertSqlSafe(format!("{USER_COLUMNS} WHERE name = $1"));
        let row = sqlx::query(sql)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_row).transpose()
    }

    /// Whether any user exists (one index probe).
    pub async fn any_user(&self) -> StoreResult<bool> {
        let any: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM (SELECT 1 FROM users LIMIT 1) AS any_user")
                .fetch_one(&self.pool)
                .await?;
        Ok(any != 0)
    }

    /// Deletes a user; returns whether one was deleted.
    pub async fn delete_user(&self, name: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM users WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Replaces a user's password hash and records the change; returns whether the user
    /// exists.
    pub async fn set_password_hash(&self, name: &str, hash: &str) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE users SET password_hash = $1, credentials_changed_at = $2 WHERE name = $3",
        )
        .bind(hash)
        .bind(Utc::now().timestamp())
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Sets a user's role; returns whether the user exists.
    pub async fn set_user_role(&self, name: &str, role: &str) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE users SET role = $1 WHERE name = $2")
            .bind(role)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The value of a setting, storing `generate()`'s value first if there is none. Two
    /// processes racing here both end up with the value that won the insert.
    pub async fn setting_or_insert(
        &self,
        key: &str,
        generate: impl FnOnce() -> String,
    ) -> StoreResult<String> {
        if let Some(value) = self.setting(key).await? {
            return Ok(value);
        }
        sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(key)
            .bind(generate())
            .execute(&self.pool)
            .await?;
        self.setting(key)
            .await?
            .ok_or_else(|| super::StoreError::Corrupt(format!("setting '{key}' vanished")))
    }

    async fn setting(&self, key: &str) -> StoreResult<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}

#[cfg(test)]
mod tests {
    async fn store(backend: crate::store::Backend) -> crate::store::testing::TestDb {
        crate::store::testing::TestDb::open(backend).await
    }

    async fn users_are_added_once_listed_changed_and_removed(backend: crate::store::Backend) {
        let store = store(backend).await;
        assert!(!store.any_user().await.unwrap());
        assert!(store.insert_user("ann", "admin", "h1").await.unwrap());
        assert!(!store.insert_user("ann", "viewer", "h2").await.unwrap());
        assert!(store.any_user().await.unwrap());
        let ann = store.user("ann").await.unwrap().unwrap();
        assert_eq!(
            (ann.role.as_str(), ann.password_hash.as_str()),
            ("admin", "h1")
        );
        assert!(store.set_password_hash("ann", "h3").await.unwrap());
        assert!(!store.set_password_hash("bob", "h3").await.unwrap());
        assert_eq!(store.users().await.unwrap()[0].password_hash, "h3");
        assert!(store.delete_user("ann").await.unwrap());
        assert!(!store.delete_user("ann").await.unwrap());
        assert!(store.user("ann").await.unwrap().is_none());
    }

    async fn a_setting_is_generated_once_and_then_kept(backend: crate::store::Backend) {
        let store = store(backend).await;
        let first = store.setting_or_insert("k", || "a".into()).await.unwrap();
        let again = store.setting_or_insert("k", || "b".into()).await.unwrap();
        assert_eq!((first.as_str(), again.as_str()), ("a", "a"));
    }

    crate::store::testing::on_both!(
        users_are_added_once_listed_changed_and_removed,
        a_setting_is_generated_once_and_then_kept,
    );
}
