//! `load`: loads staged Parquet tables into the warehouse (SQLite), one table per staged
//! table, replacing (atomically) or appending. Each table is its own transaction, recorded
//! in the warehouse ledger: a retry skips the tables an earlier try of the same attempt
//! committed and loads the others.

use std::collections::HashMap;

use arrow_array::RecordBatchReader;
use serde::{Deserialize, Serialize};

use super::import::valid_table;
use super::{TaskContext, TaskError, TaskOutcome};
use crate::data::DataError;
use crate::data::ledger::{Committed, LedgerTry, Ledgered};
use crate::data::parquet_io::{decode_ahead, read_batches};
use crate::data::warehouse::{LoadMode, Warehouse};

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
                        crate::redact::text(&ctx.data.warehouse.display().to_string())
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
        let (path, who, tables) = (ctx.data.warehouse.clone(), who.clone(), self.tables.clone());
        tokio::task::spawn_blocking(move || {
            let warehouse = Warehouse::open(&path)?;
            let mut done = HashMap::new();
            for table in tables {
                if let Some(earlier) = warehouse.committed(&who, &table)? {
                    done.insert(table, earlier);
                }
            }
            Ok::<_, DataError>(done)
        })
        .await
        .map_err(|e| ctx.failure(format!("load stopped: {e}")))?
        .map_err(|e| ctx.failure(e))
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
        let (path, name, mode) = (ctx.data.warehouse.clone(), table.to_string(), self.mode);
        let (cancel, who) = (ctx.cancel.clone(), who.clone());
        tokio::task::spawn_blocking(move || {
            let reader = read_batches(copy.path())?;
            let schema = reader.schema();
            let context = copy.path().display().to_string();
            let mut warehouse = Warehouse::open(&path)?;
            warehouse.cancel_when(move || cancel.is_cancelled())?;
            // Decoding Parquet and inserting rows cost about the same: overlap them.
            std::thread::scope(|scope| {
                let batches = decode_ahead(scope, reader, &context);
                warehouse.load(&name, &schema, batches, mode, &who)
            })
        })
        .await
        .map_err(|e| ctx.failure(format!("loading {table}: {e}")))?
        .map_err(|e| ctx.failure(e))
    }
}
