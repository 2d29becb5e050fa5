//! `sql`: runs a statement or a `.sql` file against the warehouse (SQLite or PostgreSQL:
//! multi-statement scripts on both, in one transaction); the first result rows go
//! to the task log, and the result can replace a warehouse table. The write and its
//! warehouse-ledger row commit together; a retry that finds an earlier try's row of the
//! same attempt takes that result instead of running the SQL again.

use serde::{Deserialize, Serialize};

use super::import::valid_table;
use super::{TaskContext, TaskError, TaskOutcome};
use crate::data::DataError;
use crate::data::ledger::{Committed, Ledgered};
use crate::data::warehouse::{QueryRows, Warehouse, quote};

/// Run SQL against the warehouse.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlTask {
    /// The SQL to run (one or more statements).
    pub sql: Option<String>,
    /// A `.sql` file to run instead (relative to the working directory).
    pub file: Option<String>,
    /// Replace this warehouse table with the result (the SQL must be one SELECT).
    pub into_table: Option<String>,
    /// Rows of the result written to the log (default 20).
    pub show_rows: Option<usize>,
}

impl SqlTask {
    /// Checks arguments at load time.
    pub fn validate(&self) -> Result<(), String> {
        match (&self.sql, &self.file) {
            (Some(_), Some(_)) => return Err("sql task: give `sql` or `file`, not both".into()),
            (None, None) => return Err("sql task needs `sql` or `file`".into()),
            _ => {}
        }
        self.into_table.as_deref().map_or(Ok(()), valid_table)
    }

    /// Runs the SQL, unless an earlier try of this attempt committed it.
    pub async fn run(&self, ctx: &TaskContext) -> Result<TaskOutcome, TaskError> {
        let sql = match (&self.sql, &self.file) {
            (Some(sql), _) => sql.clone(),
            (None, Some(file)) => std::fs::read_to_string(file)
                .map_err(|e| TaskError::Failed(format!("{file}: {e}")))?,
            (None, None) => return Err(TaskError::Fatal("sql task needs `sql` or `file`".into())),
        };
        ctx.log.info(format!(
            "running on {}:\n{}",
            ctx.data.warehouse.shown(),
            sql.trim()
        ));
        let warehouse = ctx.data.warehouse.cancelled_by(ctx.cancel.clone());
        let shown = self.show_rows.unwrap_or(20);
        let (written, result) =
            self.write(&warehouse, &sql, shown, ctx)
                .await
                .map_err(|e| match e {
                    DataError::Refused(why) => TaskError::Fatal(why),
                    e => ctx.failure(e),
                })?;
        log_result(ctx, &written, result.as_ref());
        Ok(TaskOutcome::Success)
    }

    /// Runs the SQL as a script, or into its table; returns what was written and the rows
    /// to show.
    async fn write(
        &self,
        warehouse: &Warehouse,
        sql: &str,
        shown: usize,
        ctx: &TaskContext,
    ) -> Result<(Written, Option<QueryRows>), DataError> {
        let who = ctx.ledger_try();
        match &self.into_table {
            Some(table) => {
                let written = warehouse.create_table_as(table, sql, &who).await?;
                // Reading the table back writes nothing: shown after a take-over too.
                let select = format!("SELECT * FROM {}", quote(table)?);
                let rows = warehouse.query(&select, shown).await?;
                Ok((Written::Table(table.clone(), written), Some(rows)))
            }
            None => match warehouse.run_script(sql, shown, &who).await? {
                Ledgered::Written(rows) => Ok((Written::Script(None), Some(rows))),
                Ledgered::AlreadyCommitted(c) => Ok((Written::Script(Some(c)), None)),
            },
        }
    }
}

/// What the task wrote, or which earlier try had.
enum Written {
    /// `into_table`: the table and its row count.
    Table(String, Ledgered<u64>),
    /// A script; `Some` when an earlier try had run it.
    Script(Option<Committed>),
}

fn log_result(ctx: &TaskContext, written: &Written, result: Option<&QueryRows>) {
    match written {
        Written::Table(table, Ledgered::Written(rows)) => {
            ctx.log.info(format!("table {table} now has {rows} row(s)"));
        }
        Written::Table(table, Ledgered::AlreadyCommitted(c)) => ctx.log.info(format!(
            "try {} already committed {table} ({} row(s)); not writing it again",
            c.try_number, c.rows
        )),
        Written::Script(Some(c)) => ctx.log.info(format!(
            "try {} already committed this script ({} row(s) changed); not running it again",
            c.try_number, c.rows
        )),
        Written::Script(None) => {}
    }
    let Some(result) = result else {
        return;
    };
    if !result.columns.is_empty() {
        ctx.log.info(result.columns.join(" | "));
        for row in &result.rows {
            ctx.log.info(row.join(" | "));
        }
    }
    ctx.log.info(format!(
        "{} row(s) returned, {} shown",
        result.total,
        result.rows.len()
    ));
}
