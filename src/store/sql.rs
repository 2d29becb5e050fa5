//! What differs between the two backends' SQL, kept in one place: how a write transaction
//! starts, how a JSON array of keys becomes rows, and statements assembled piece by piece.
//! Everything else is written once in the dialect both accept (`$N` placeholders, which
//! SQLite reads as positions too; `ON CONFLICT`; `IS DISTINCT FROM`; integer flags).

use sqlx::any::AnyArguments;
use sqlx::{Any, Arguments, Encode, Transaction, Type};

use super::{Store, StoreError, StoreResult};

/// Which database engine holds the state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file (the embedded default) or in-memory database.
    Sqlite,
    /// A PostgreSQL database, shared by several instances.
    Postgres,
}

impl Backend {
    /// The backend a `database_url` names: `postgres://` and `postgresql://` URLs are
    /// PostgreSQL; anything else (a path, `sqlite:`) is SQLite.
    pub fn of_url(url: &str) -> Self {
        let lower = url.get(..13).unwrap_or(url).to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            Self::Postgres
        } else {
            Self::Sqlite
        }
    }

    /// A row source named `alias` with one column `value`: the elements of the JSON array
    /// of strings bound at `param`.
    pub(super) fn json_texts(self, param: &str, alias: &str) -> String {
        match self {
            Self::Sqlite => format!("json_each({param}) AS {alias}"),
            Self::Postgres => {
                format!("jsonb_array_elements_text(CAST({param} AS jsonb)) AS {alias} (value)")
            }
        }
    }

    /// Like [`Backend::json_texts`], for a JSON array of integers (run keys).
    pub(super) fn json_ints(self, param: &str, alias: &str) -> String {
        match self {
            Self::Sqlite => format!("json_each({param}) AS {alias}"),
            Self::Postgres => format!(
                "(SELECT CAST(e AS BIGINT) AS value \
                 FROM jsonb_array_elements_text(CAST({param} AS jsonb)) AS e) AS {alias}"
            ),
        }
    }

    /// An aggregate of the integer column `expr` into a JSON array text (`[]` when empty).
    pub(super) fn json_int_array(self, expr: &str) -> String {
        match self {
            Self::Sqlite => format!("json_group_array({expr})"),
            Self::Postgres => format!("COALESCE(CAST(json_agg({expr}) AS TEXT), '[]')"),
        }
    }
}

/// The first key of the PostgreSQL advisory lock every write transaction takes (the second
/// is the store's schema, so stores in different schemas of one database do not wait for
/// each other), so writes are serialised as SQLite's `BEGIN IMMEDIATE` serialises them: the
/// store's check-then-write transactions (fenced commits, claims, lease renewals) keep their
/// meaning unchanged when several instances share one database. ("or" in ASCII.)
const WRITE_LOCK: i32 = 0x6f72;

impl Store {
    /// Which engine this store is on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a transaction that writes: it holds the database's write lock from its first
    /// statement, so what it reads stays true until it commits.
    pub(super) async fn begin_write(&self) -> StoreResult<Transaction<'static, Any>> {
        match self.backend {
            Backend::Sqlite => Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?),
            // The lock is taken by the statement that begins the transaction (one simple
            // query, one round trip: writes are the hot path of a shared store).
            Backend::Postgres => Ok(self
                .pool
                .begin_with(sqlx::AssertSqlSafe(format!(
                    "BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK}, hashtext(current_schema()))"
                )))
                .await?),
        }
    }
}

/// `text` as both backends store it: PostgreSQL refuses NUL characters in text, which a
/// task's output may hold, so they become U+FFFD (on SQLite too, so both show the same).
pub(super) fn storable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// [`storable`] for an optional text.
pub(super) fn storable_opt(text: Option<&str>) -> Option<String> {
    text.map(|t| storable(t).into_owned())
}

/// A statement assembled piece by piece, with its arguments bound in order as `$1`, `$2`…
pub(super) struct Sql {
    text: String,
    args: AnyArguments,
    bound: usize,
}

impl Sql {
    /// A statement starting with `text`.
    pub(super) fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            args: AnyArguments::default(),
            bound: 0,
        }
    }

    /// Appends SQL text.
    pub(super) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Binds `value` and appends its placeholder.
    pub(super) fn bind<'q, T>(&mut self, value: T) -> StoreResult<&mut Self>
    where
        T: Encode<'q, Any> + Type<Any> + 'q,
    {
        self.args
            .add(value)
            .map_err(|e| StoreError::Corrupt(format!("cannot bind a value: {e}")))?;
        self.bound += 1;
        self.text.push('$');
        self.text.push_str(&self.bound.to_string());
        Ok(self)
    }

    /// The finished statement and its arguments, for `sqlx::query_with` and friends.
    pub(super) fn finish(self) -> (sqlx::AssertSqlSafe<String>, AnyArguments) {
        (sqlx::AssertSqlSafe(self.text), self.args)
    }
}

/// Binds `rows` as a multi-row `VALUES (...), (...)` list after `head` (an `INSERT ... `
/// prefix), each row's values given by `values`, and appends `tail`.
pub(super) fn insert_values<R>(
    head: &str,
    rows: &[R],
    tail: &str,
    mut values: impl FnMut(&mut Sql, &R) -> StoreResult<()>,
) -> StoreResult<Sql> {
    let mut sql = Sql::new(head);
    sql.push(" VALUES ");
    for (i, row) in rows.iter().enumerate() {
        sql.push(if i == 0 { "(" } else { ", (" });
        values(&mut sql, row)?;
        sql.push(")");
    }
    sql.push(tail);
    Ok(sql)
}

/// Appends `, ` between the values of one row (for [`insert_values`] closures).
pub(super) fn row<'q, T>(sql: &mut Sql, first: bool, value: T) -> StoreResult<()>
where
    T: Encode<'q, Any> + Type<Any> + 'q,
{
    if !first {
        sql.push(", ");
    }
    sql.bind(value)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_backend() {
        assert_eq!(Backend::of_url("postgres://u:p@h/db"), Backend::Postgres);
        assert_eq!(Backend::of_url("PostgreSQL://h/db"), Backend::Postgres);
        assert_eq!(Backend::of_url("orchestrator.db"), Backend::Sqlite);
        assert_eq!(Backend::of_url("sqlite::memory:"), Backend::Sqlite);
        assert_eq!(Backend::of_url("postgres.db"), Backend::Sqlite);
    }

    #[test]
    fn pieces_are_numbered_in_order() {
        let mut sql = Sql::new("SELECT 1 WHERE a = ");
        sql.bind(1_i64).unwrap().push(" AND b IN (");
        sql.bind("x").unwrap().push(", ");
        sql.bind("y").unwrap().push(")");
        assert_eq!(sql.finish().0.0, "SELECT 1 WHERE a = $1 AND b IN ($2, $3)");
        let sql = insert_values(
            "INSERT INTO t (a, b)",
            &[(1_i64, "x"), (2, "y")],
            "",
            |s, r| {
                row(s, true, r.0)?;
                row(s, false, r.1)
            },
        )
        .unwrap();
        assert_eq!(
            sql.finish().0.0,
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)"
        );
    }
}
