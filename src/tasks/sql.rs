//! `sql`: runs a statement or a `.sql` file against the warehouse; the first result rows go
//! to the task log, and the result can replace a warehouse table.

use serde::{Deserialize, Serialize};

use super::import::valid_table;
use super::{TaskContext, TaskError, TaskOutcome};
use crate::data::warehouse::Warehouse;

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

    /// Runs the SQL.
    pub async fn run(&self, ctx: &TaskContext) -> Result<TaskOutcome, TaskError> {
        let fail = |e: crate::data::DataError| TaskError::Failed(e.to_string());
        let sql = match (&self.sql, &self.file) {
            (Some(sql), _) => sql.clone(),
            (None, Some(file)) => std::fs::read_to_string(file)
                .map_err(|e| TaskError::Failed(format!("{file}: {e}")))?,
            (None, None) => return Err(TaskError::Fatal("sql task needs `sql` or `file`".into())),
        };
        ctx.log.info(format!(
            "running on {}:\n{}",
            ctx.data.warehouse.display(),
            sql.trim()
        ));
        let (path, into, shown) = (
            ctx.data.warehouse.clone(),
            self.into_table.clone(),
            self.show_rows.unwrap_or(20),
        );
        let (created, result) = tokio::task::spawn_blocking(move || {
            let mut warehouse = Warehouse::open(&path)?;
            match into {
                Some(table) => {
                    let rows = warehouse.create_table_as(&table, &sql)?;
                    let select =
                        format!("SELECT * FROM {}", crate::data::warehouse::quote(&table)?);
                    Ok::<_, crate::data::DataError>((
                        Some((table, rows)),
                        warehouse.query(&select, shown)?,
                    ))
                }
                None => Ok((None, warehouse.run_script(&sql, shown)?)),
            }
        })
        .await
        .map_err(|e| TaskError::Failed(format!("sql task stopped: {e}")))?
        .map_err(fail)?;
        if let Some((table, rows)) = created {
            ctx.log.info(format!("table {table} now has {rows} row(s)"));
        }
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
        Ok(TaskOutcome::Success)
    }
}
