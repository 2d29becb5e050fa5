//! `load`: loads staged Parquet tables into the warehouse (SQLite or PostgreSQL), one table
//! per staged table, replacing (atomically) or appending. Each table is its own transaction, recorded
//! in the warehouse ledger: a retry skips the tables an earlier try of the same attempt
//! committed and loads the others.

use std::collections::HashMap;

use arrow_array::RecordBatchReader;
use serde::{Deserialize, Serialize};

use super::import::valid_table;
use super::{TaskContext, TaskError, TaskOutcome};
use crate::data::DataError;
use crate::data::ledger::{Committed, LedgerTry, Ledgered};
use crate::data::parquet_io::{decode_in_background, read_batches};
use crate::data::warehouse::{Batches, LoadMode};

/// Load staged tables into the warehouse.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadTask {
    /// Staged tables to load; each becomes a warehouse table of the same name.
    pub tables: Vec<String>,
    /// `replace` (default) or `append`.
    #[serde(default)]
    pub mode: LoadMode,
}

impl LoadTask {
    /// Checks arguments at load time.
    pub fn validate(&self) -> Result<(), String> {
        if self.tables.is_empty() {
            return Err("load needs at least one table in 'tables'".into());
        }
        self.tables.iter().try_for_each(|t| valid_table(t))
    }

    /// Loads each table in turn, skipping those an earlier try of this attempt committed.
    pub async fn run(&self, ctx: &TaskContext) -> Result<TaskOutcome, TaskError> {
        let who = ctx.ledger_try();
        let done = self.already_committed(ctx, &who).await?;
        for table in &self.tables {
            if ctx.cancel.is_cancelled() {
                return Err(TaskError::Cancelled("load stopped".into()));
            }
            let outcome = match done.get(table) {
                Some(earlier) => Ledgered::AlreadyCommitted(*earlier),
                None => self.load_one(ctx, table, &who).await?,
            };
            match outcome {
                Ledgered::Written(rows) => {
                    ctx.count_rows(crate::metrics::Rows::Loaded, rows);
                    ctx.log.info(format!(
                        "loaded {rows} row(s) into {}.{table}",
                        ctx.data.warehouse.shown()
                    ));
                }
                Ledgered::AlreadyCommitted(earlier) => ctx.log.info(format!(
                    "try {} already committed {table} ({} row(s)); not writing it again",
                    earlier.try_number, earlier.rows
                )),
            }
        }
        Ok(TaskOutcome::Success)
    }

    /// The tables an earlier try of this attempt committed (looked up before fetching
    /// anything; each load checks again inside its transaction).
    async fn already_committed(
        &self,
        ctx: &TaskContext,
        who: &LedgerTry,
    ) -> Result<HashMap<String, Committed>, TaskError> {
        let mut done = HashMap::new();
        for table in &self.tables {
            let found = ctx.data.warehouse.committed(who, table).await;
            if let Some(earlier) = found.map_err(|e| ctx.failure(e))? {
                done.insert(table.clone(), earlier);
            }
        }
        Ok(done)
    }

    /// Loads one staged table; statements stop as soon as the try is cancelled.
    async fn load_one(
        &self,
        ctx: &TaskContext,
        table: &str,
        who: &LedgerTry,
    ) -> Result<Ledgered<u64>, TaskError> {
        let copy = ctx
            .data
            .staging
            .fetch(&format!("{table}.parquet"))
            .await
            .map_err(|e| ctx.failure(e))?;
        let path = copy.path().to_path_buf();
        // Opening the file reads its footer: blocking work. Decoding then runs on a thread
        // of its own, a couple of batches ahead of the warehouse, which takes them as they
        // come (inserting or encoding rows costs about what decoding does: they overlap).
        let opened = tokio::task::spawn_blocking(move || {
            let reader = read_batches(&path)?;
            let schema = reader.schema();
            let batches: Batches =
                Box::new(decode_in_background(reader, &path.display().to_string())?);
            Ok::<_, DataError>((schema, batches))
        })
        .await
        .map_err(|e| ctx.failure(format!("loading {table}: {e}")))?;
        let (schema, batches) = opened.map_err(|e| ctx.failure(e))?;
        let warehouse = ctx.data.warehouse.cancelled_by(ctx.cancel.clone());
        let loaded = warehouse
            .load(table, &schema, batches, self.mode, who)
            .await
            .map_err(|e| ctx.failure(e));
        // The staged copy stays until the load has read it all.
        drop(copy);
        loaded
    }
}
