//! The SQLite warehouse: a database file the staged tables are loaded into so they can be
//! queried with SQL. Blocking code (rusqlite, on the same bundled SQLite as the state store);
//! [`super::Warehouse`] calls it from `spawn_blocking`. Loads are atomic per table: the new
//! table is built under a temporary name and swapped in, in one transaction. Every write
//! records the try that made it in the ledger within its own transaction, and a cancelled
//! try's statements are interrupted so that it commits nothing.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, SchemaRef};
use fallible_iterator::FallibleIterator;
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, Statement, Transaction, TransactionBehavior};

use super::{LoadMode, QueryRows, quote};
use crate::data::DataError;
use crate::data::ledger::sqlite as ledger;
use crate::data::ledger::{Committed, LedgerTry, Ledgered, Operation, SCRIPT_ITEM};

/// Rows per prepared multi-row INSERT (fewer for wide tables: SQLite binds at most 32,766
/// parameters per statement).
const INSERT_ROWS: usize = 128;
/// Parameters per statement we allow ourselves.
const MAX_PARAMS: usize = 32_000;
/// Page size of new warehouses (SQLite's largest).
const PAGE_SIZE: u32 = 65_536;
/// SQLite VM instructions between two cancellation checks of a running statement: a few
/// microseconds of work, so a cancelled statement stops within milliseconds.
const CANCEL_CHECK_OPS: std::ffi::c_int = 4096;

/// Whether the work using the warehouse was cancelled.
type CancelCheck = Arc<dyn Fn() -> bool + Send + Sync>;

/// An open SQLite warehouse.
pub struct SqliteWarehouse {
    conn: Connection,
    path: String,
    cancelled: CancelCheck,
}

impl SqliteWarehouse {
    /// Opens (creating) the warehouse database.
    pub fn open(path: &Path) -> Result<Self, DataError> {
        let shown = path.display().to_string();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| DataError::io(&shown, e))?;
        }
        let err = sqlite_error(&shown);
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(err)?;
        // Only takes effect when this creates the database. Large pages make bulk loads
        // about twice as fast in WAL mode (a tenth of the frames to log and checkpoint) and
        // suit the scans analytics does.
        conn.pragma_update(None, "page_size", PAGE_SIZE)
            .map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        Ok(Self {
            conn,
            path: shown,
            cancelled: Arc::new(|| false),
        })
    }

    /// Stops every statement (rolling its transaction back) and every commit once
    /// `cancelled` returns true.
    pub fn cancel_when(
        &mut self,
        cancelled: impl Fn() -> bool + Send + Sync + 'static,
    ) -> Result<(), DataError> {
        let cancelled: CancelCheck = Arc::new(cancelled);
        let check = Arc::clone(&cancelled);
        // A progress handler rather than an interrupt sent when the cancellation comes: an
        // interrupt reaches only a statement already running, so one that started a moment
        // later would run to its end; the handler is asked by every statement, all along.
        self.conn
            .progress_handler(CANCEL_CHECK_OPS, Some(move || check()))
            .map_err(|e| self.err(e))?;
        self.cancelled = cancelled;
        Ok(())
    }

    /// The write of `item` that a try of `who`'s attempt committed, if any (`item` is the
    /// table name, or [`SCRIPT_ITEM`] for a script).
    pub fn committed(&self, who: &LedgerTry, item: &str) -> Result<Option<Committed>, DataError> {
        ledger::find(&self.conn, who, item).map_err(|e| self.err(e))
    }

    /// Starts a write transaction, with the error mapper for its statements.
    fn begin(
        &mut self,
    ) -> Result<
        (
            Transaction<'_>,
            impl Fn(rusqlite::Error) -> DataError + Copy + '_,
        ),
        DataError,
    > {
        let err = sqlite_error(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        Ok((tx, err))
    }

    fn err(&self, e: rusqlite::Error) -> DataError {
        sqlite_error(&self.path)(e)
    }

    /// Loads batches into `table` and records it in the ledger, in one transaction; returns
    /// the number of rows loaded, or the earlier try's load without reading `batches`.
    pub fn load(
        &mut self,
        table: &str,
        schema: &SchemaRef,
        batches: impl Iterator<Item = Result<RecordBatch, DataError>>,
        mode: LoadMode,
        who: &LedgerTry,
    ) -> Result<Ledgered<u64>, DataError> {
        let target = quote(table)?;
        let staging = quote(&format!("{table}__loading"))?;
        let into = if mode == LoadMode::Replace {
            &staging
        } else {
            &target
        };
        let columns = column_defs(schema)?;
        // In WAL mode this syncs only at checkpoints: an OS crash or power loss may lose the
        // latest load (it is rebuilt from staging) but never corrupts the file.
        self.conn
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| self.err(e))?;
        let cancelled = Arc::clone(&self.cancelled);
        let (tx, err) = self.begin()?;
        if let Some(done) = take_over(&tx, who, table).map_err(err)? {
            return Ok(Ledgered::AlreadyCommitted(done));
        }
        if mode == LoadMode::Replace {
            tx.execute_batch(&format!("DROP TABLE IF EXISTS {staging};"))
                .map_err(err)?;
        }
        tx.execute_batch(&format!("CREATE TABLE IF NOT EXISTS {into} ({columns});"))
            .map_err(err)?;
        let width = schema.fields().len();
        // Named columns: an appended table whose columns were reordered still lines up.
        let names = schema
            .fields()
            .iter()
            .map(|f| quote(f.name()))
            .collect::<Result<Vec<_>, _>>()?
            .join(", ");
        let insert = format!("INSERT INTO {into} ({names}) VALUES");
        let row = format!("({})", vec!["?"; width].join(","));
        let per_statement = (MAX_PARAMS / width.max(1)).clamp(1, INSERT_ROWS);
        let mut many = tx
            .prepare(&format!(
                "{insert} {}",
                vec![row.as_str(); per_statement].join(",")
            ))
            .map_err(err)?;
        let mut one = tx.prepare(&format!("{insert} {row}")).map_err(err)?;
        let mut rows = 0u64;
        for batch in batches {
            if cancelled() {
                // Dropping the transaction rolls the partial load back.
                return Err(DataError::Cancelled(format!("loading {table} stopped")));
            }
            let batch = batch?;
            let mut start = 0;
            while start < batch.num_rows() {
                let take = if batch.num_rows() - start >= per_statement {
                    per_statement
                } else {
                    1
                };
                let stmt = if take == per_statement {
                    &mut many
                } else {
                    &mut one
                };
                bind_rows(stmt, &batch, start, take).map_err(err)?;
                stmt.raw_execute().map_err(err)?;
                start += take;
            }
            rows += batch.num_rows() as u64;
        }
        drop((many, one));
        if mode == LoadMode::Replace {
            tx.execute_batch(&swap_in(&staging, &target)).map_err(err)?;
        }
        let operation = match mode {
            LoadMode::Replace => Operation::LoadReplace,
            LoadMode::Append => Operation::LoadAppend,
        };
        ledger::record(&tx, who, table, operation, rows).map_err(err)?;
        commit_unless(tx, &*cancelled, err, &format!("loading {table}"))?;
        Ok(Ledgered::Written(rows))
    }

    /// Runs a script and records it in the ledger, in one transaction (all or nothing, so a
    /// retry never replays half of it); returns the first `keep` rows of its last result,
    /// or the earlier try's run without running it again.
    pub fn run_script(
        &mut self,
        sql: &str,
        keep: usize,
        who: &LedgerTry,
    ) -> Result<Ledgered<QueryRows>, DataError> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| self.err(e))?;
        let done = self
            .script_body(sql, keep, who)
            .and_then(|done| match done {
                Ledgered::Written(_) if (self.cancelled)() => Err(DataError::Cancelled(
                    "the sql script stopped before its commit".into(),
                )),
                Ledgered::Written(_) => {
                    self.conn.execute_batch("COMMIT").map_err(|e| self.err(e))?;
                    Ok(done)
                }
                Ledgered::AlreadyCommitted(_) => Ok(done),
            });
        // Nothing to keep when it failed or an earlier try had committed it; after a
        // COMMIT there is no transaction and this does nothing. An interrupted statement
        // may have rolled the transaction back already: the error adds nothing.
        let _ = self.conn.execute_batch("ROLLBACK");
        done
    }

    /// The script and its ledger row, inside the transaction `run_script` opened.
    fn script_body(
        &self,
        sql: &str,
        keep: usize,
        who: &LedgerTry,
    ) -> Result<Ledgered<QueryRows>, DataError> {
        let err = |e| self.err(e);
        if let Some(done) = take_over(&self.conn, who, SCRIPT_ITEM).map_err(err)? {
            return Ok(Ledgered::AlreadyCommitted(done));
        }
        let before = self.conn.total_changes();
        let rows = self.query(sql, keep)?;
        let changed = self.conn.total_changes().saturating_sub(before);
        ledger::record(&self.conn, who, SCRIPT_ITEM, Operation::SqlScript, changed).map_err(err)?;
        Ok(Ledgered::Written(rows))
    }

    /// Runs SQL (one or more statements); returns the first `keep` rows of the last
    /// statement that returns rows.
    pub fn query(&self, sql: &str, keep: usize) -> Result<QueryRows, DataError> {
        let mut out = QueryRows {
            columns: Vec::new(),
            rows: Vec::new(),
            total: 0,
        };
        let mut batch = rusqlite::Batch::new(&self.conn, sql);
        while let Some(mut stmt) = batch.next().map_err(|e| self.err(e))? {
            if stmt.column_count() == 0 {
                stmt.raw_execute().map_err(|e| self.err(e))?;
                continue;
            }
            out = QueryRows {
                columns: stmt
                    .column_names()
                    .into_iter()
                    .map(str::to_string)
                    .collect(),
                rows: Vec::new(),
                total: 0,
            };
            let width = stmt.column_count();
            let mut rows = stmt.raw_query();
            while let Some(row) = rows.next().map_err(|e| self.err(e))? {
                if out.rows.len() < keep {
                    let cells = (0..width)
                        .map(|i| row.get_ref(i).map(cell_text))
                        .collect::<Result<_, _>>();
                    out.rows.push(cells.map_err(|e| self.err(e))?);
                }
                out.total += 1;
            }
        }
        Ok(out)
    }

    /// Replaces `table` with the result of a query and records it in the ledger,
    /// atomically; returns its row count, or the earlier try's without running the query.
    pub fn create_table_as(
        &mut self,
        table: &str,
        select: &str,
        who: &LedgerTry,
    ) -> Result<Ledgered<u64>, DataError> {
        let target = quote(table)?;
        let staging = quote(&format!("{table}__building"))?;
        let select = select.trim().trim_end_matches(';');
        let cancelled = Arc::clone(&self.cancelled);
        let (tx, err) = self.begin()?;
        if let Some(done) = take_over(&tx, who, table).map_err(err)? {
            return Ok(Ledgered::AlreadyCommitted(done));
        }
        tx.execute_batch(&format!(
            "DROP TABLE IF EXISTS {staging}; CREATE TABLE {staging} AS {select};"
        ))
        .map_err(err)?;
        tx.execute_batch(&swap_in(&staging, &target)).map_err(err)?;
        let count: i64 = tx
            .query_row(&format!("SELECT COUNT(*) FROM {target}"), [], |r| r.get(0))
            .map_err(err)?;
        let count = u64::try_from(count).unwrap_or(0);
        ledger::record(&tx, who, table, Operation::SqlIntoTable, count).map_err(err)?;
        commit_unless(tx, &*cancelled, err, &format!("building {table}"))?;
        Ok(Ledgered::Written(count))
    }
}

/// The earlier commit of `item` by `who`'s attempt, looked up inside the write transaction
/// (which creates the ledger when it is missing), so no other writer can slip in between.
fn take_over(
    conn: &Connection,
    who: &LedgerTry,
    item: &str,
) -> rusqlite::Result<Option<Committed>> {
    ledger::ensure(conn)?;
    ledger::find(conn, who, item)
}

/// Commits `tx` unless the work was cancelled (then dropping it rolls back). This check is
/// the last gate: statements are interrupted while they run, but one that ended just
/// before the cancellation leaves a transaction that must not commit either.
fn commit_unless(
    tx: Transaction<'_>,
    cancelled: &dyn Fn() -> bool,
    err: impl Fn(rusqlite::Error) -> DataError,
    what: &str,
) -> Result<(), DataError> {
    if cancelled() {
        return Err(DataError::Cancelled(format!(
            "{what} stopped before its commit"
        )));
    }
    tx.commit().map_err(err)
}

/// Maps a SQLite error to a warehouse error naming the file; an interrupted statement
/// (the work was cancelled) to [`DataError::Cancelled`].
fn sqlite_error(path: &str) -> impl Fn(rusqlite::Error) -> DataError + Copy + '_ {
    move |e| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::OperationInterrupted) => {
            DataError::Cancelled(format!("warehouse {path}: statement interrupted"))
        }
        _ => DataError::Warehouse {
            path: path.to_string(),
            message: e.to_string(),
        },
    }
}

/// Statements replacing `target` by `staging` (run inside the caller's transaction). The
/// rename uses SQLite's legacy mode: the modern one re-checks every view and fails on a view
/// of `target` (dropped a statement earlier); legacy mode leaves views alone, so a user's
/// views over a loaded table keep working across loads.
fn swap_in(staging: &str, target: &str) -> String {
    format!(
        "DROP TABLE IF EXISTS {target}; PRAGMA legacy_alter_table = ON; \
         ALTER TABLE {staging} RENAME TO {target}; PRAGMA legacy_alter_table = OFF;"
    )
}

fn column_defs(schema: &SchemaRef) -> Result<String, DataError> {
    let mut defs = Vec::new();
    for f in schema.fields() {
        let ty = match f.data_type() {
            DataType::Int64 | DataType::Boolean => "INTEGER",
            DataType::Float64 => "REAL",
            DataType::Utf8 => "TEXT",
            other => {
                return Err(DataError::Format(format!(
                    "column '{}': type {other} cannot be loaded",
                    f.name()
                )));
            }
        };
        defs.push(format!("{} {ty}", quote(f.name())?));
    }
    if defs.is_empty() {
        return Err(DataError::Format(
            "a table needs at least one column".into(),
        ));
    }
    Ok(defs.join(", "))
}

/// Binds rows `start..start + count` of `batch` to `stmt`'s parameters.
fn bind_rows(
    stmt: &mut Statement<'_>,
    batch: &RecordBatch,
    start: usize,
    count: usize,
) -> rusqlite::Result<()> {
    let width = batch.num_columns();
    for r in 0..count {
        for (c, col) in batch.columns().iter().enumerate() {
            let (idx, i, col) = (r * width + c + 1, start + r, col.as_ref());
            let any = col.as_any();
            if col.is_null(i) {
                stmt.raw_bind_parameter(idx, Value::Null)?;
            } else if let Some(a) = any.downcast_ref::<StringArray>() {
                stmt.raw_bind_parameter(idx, a.value(i))?;
            } else if let Some(a) = any.downcast_ref::<Int64Array>() {
                stmt.raw_bind_parameter(idx, a.value(i))?;
            } else if let Some(a) = any.downcast_ref::<Float64Array>() {
                stmt.raw_bind_parameter(idx, a.value(i))?;
            } else if let Some(a) = any.downcast_ref::<BooleanArray>() {
                stmt.raw_bind_parameter(idx, a.value(i))?;
            } else {
                stmt.raw_bind_parameter(idx, Value::Null)?;
            }
        }
    }
    Ok(())
}

fn cell_text(v: ValueRef<'_>) -> String {
    match v {
        ValueRef::Null => "NULL".into(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
        ValueRef::Blob(b) => format!("<{} bytes>", b.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_warehouses_use_large_pages_and_wal() {
        let dir = tempfile::tempdir().unwrap();
        let w = SqliteWarehouse::open(&dir.path().join("w.db")).unwrap();
        let pragma = |p: &str| w.query(&format!("PRAGMA {p}"), 1).unwrap().rows[0][0].clone();
        assert_eq!(pragma("page_size"), PAGE_SIZE.to_string());
        assert_eq!(pragma("journal_mode"), "wal");
    }
}
