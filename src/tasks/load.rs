//! `load`: loads staged Parquet tables into the warehouse (SQLite), one table per staged
//! table, replacing (atomically) or appending.

use arrow_array::RecordBatchReader;
use serde::{Deserialize, Serialize};

use super::import::valid_table;
use super::{TaskContext, TaskError, TaskOutcome};
use crate::data::DataError;
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

    /// Loads each table in turn.
    pub async fn run(&self, ctx: &TaskContext) -> Result<TaskOutcome, TaskError> {
        let fail = |e: DataError| TaskError::Failed(e.to_string());
        for table in &self.tables {
            if ctx.cancel.is_cancelled() {
                return Err(TaskError::Cancelled("load stopped".into()));
            }
            let copy = ctx
                .data
                .staging
                .fetch(&format!("{table}.parquet"))
                .await
                .map_err(fail)?;
            let (path, name, mode) = (ctx.data.warehouse.clone(), table.clone(), self.mode);
            let cancel = ctx.cancel.clone();
            let rows = tokio::task::spawn_blocking(move || {
                let reader = read_batches(copy.path())?;
                let schema = reader.schema();
                let context = copy.path().display().to_string();
                // Decoding Parquet and inserting rows cost about the same: overlap them.
                std::thread::scope(|scope| {
                    let batches = decode_ahead(scope, reader, &context);
                    Warehouse::open(&path)?
                        .load(&name, &schema, batches, mode, &|| cancel.is_cancelled())
                })
            })
            .await
            .map_err(|e| TaskError::Failed(format!("loading {table}: {e}")))?
            .map_err(fail)?;
            ctx.log.info(format!(
                "loaded {rows} row(s) into {}.{table}",
                ctx.data.warehouse.display()
            ));
        }
        Ok(TaskOutcome::Success)
    }
}
