//! `import`: reads a CSV or JSON source (a path, a glob, or an object-store URL) and writes
//! it to the staging store as table `<table>.parquet`, streaming in record batches. Rows
//! that cannot be read go to `<table>.rejects.jsonl` (line, raw text, reason) and the log
//! gives the counts. The table appears atomically; a failed import leaves the old one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{TaskContext, TaskError, TaskOutcome};
use crate::data::csv_source::read_csv;
use crate::data::json_source::read_json;
use crate::data::location::LocalCopy;
use crate::data::parquet_io::{ImportStats, TableWriter};
use crate::data::table::ColumnType;
use crate::data::{DataError, Location};
use crate::metrics::Rows;

/// Source formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// A JSON array of objects, or one object per line.
    Json,
}

/// Import a file into the staging store.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportTask {
    /// A path, a glob such as `data/*.csv`, or a URL such as `s3://bucket/in/file.csv`.
    pub source: String,
    /// Staged table name (`<table>.parquet` in the staging store).
    pub table: String,
    /// `csv` or `json` (default: from the file extension).
    pub format: Option<Format>,
    /// Column types to use instead of inferring them (`string`, `int`, `float`, `bool`).
    #[serde(default)]
    pub schema: BTreeMap<String, ColumnType>,
    /// CSV field delimiter (default `,`; `\t` for .tsv files).
    pub delimiter: Option<char>,
}

impl ImportTask {
    /// Checks arguments at load time.
    pub fn validate(&self) -> Result<(), String> {
        valid_table(&self.table)?;
        if self.delimiter.is_some_and(|d| !d.is_ascii()) {
            return Err("import 'delimiter' must be one ASCII character".into());
        }
        Ok(())
    }

    /// Imports every matching file into the table.
    pub async fn run(&self, ctx: &TaskContext) -> Result<TaskOutcome, TaskError> {
        let fail = |e: DataError| ctx.failure(e);
        let staging = &ctx.data.staging;
        let inputs = resolve(&self.source).await.map_err(fail)?;
        let mut copies = Vec::with_capacity(inputs.len());
        for (location, name) in &inputs {
            copies.push(location.fetch(name).await.map_err(fail)?);
        }
        let parquet_name = format!("{}.parquet", self.table);
        let rejects_name = format!("{}.rejects.jsonl", self.table);
        let parquet = staging.scratch(&parquet_name).map_err(fail)?;
        let rejects = staging.scratch(&rejects_name).map_err(fail)?;
        let files = (clone_file(&parquet)?, clone_file(&rejects)?);
        let (task, cancel) = (self.clone(), ctx.cancel.clone());
        let stats = tokio::task::spawn_blocking(move || task.convert(&copies, files, cancel))
            .await
            .map_err(|e| ctx.failure(format!("import stopped: {e}")))?
            .map_err(fail)?;
        if ctx.cancel.is_cancelled() {
            // A cancelled try publishes nothing, even when its work happened to finish.
            return Err(TaskError::Cancelled(
                "import stopped before publishing".into(),
            ));
        }
        staging
            .publish(&parquet_name, parquet)
            .await
            .map_err(fail)?;
        if stats.rejected > 0 {
            staging
                .publish(&rejects_name, rejects)
                .await
                .map_err(fail)?;
        } else {
            staging.remove(&rejects_name).await.map_err(fail)?;
        }
        ctx.log.info(format!(
            "imported {} row(s) from {} file(s) into {}; {} rejected{}; {} blank line(s) skipped",
            stats.rows,
            inputs.len(),
            staging.display(&parquet_name),
            stats.rejected,
            if stats.rejected > 0 {
                format!(" (see {})", staging.display(&rejects_name))
            } else {
                String::new()
            },
            stats.blank
        ));
        ctx.count_rows(Rows::Imported, stats.rows);
        ctx.count_rows(Rows::Rejected, stats.rejected);
        if stats.rejected > 0 {
            ctx.log.write(
                "WARN",
                format!("{} row(s) could not be read", stats.rejected),
            );
        }
        Ok(TaskOutcome::Success)
    }

    fn convert(
        &self,
        copies: &[LocalCopy],
        files: (std::fs::File, std::fs::File),
        cancel: CancellationToken,
    ) -> Result<ImportStats, DataError> {
        let given = self.schema.iter().map(|(k, v)| (k.clone(), *v)).collect();
        let mut out = TableWriter::new(files.0, files.1, given, &self.table)
            .stop_when(move || cancel.is_cancelled());
        for copy in copies {
            match self.format_of(copy.path())? {
                Format::Json => read_json(copy.path(), &mut out)?,
                Format::Csv => {
                    let tsv = copy.path().extension().is_some_and(|e| e == "tsv");
                    let d = self.delimiter.unwrap_or(if tsv { '\t' } else { ',' });
                    read_csv(copy.path(), d as u8, &mut out)?;
                }
            }
        }
        out.finish()
    }

    fn format_of(&self, path: &Path) -> Result<Format, DataError> {
        if let Some(f) = self.format {
            return Ok(f);
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        match ext.as_str() {
            "csv" | "tsv" | "txt" => Ok(Format::Csv),
            "json" | "jsonl" | "ndjson" => Ok(Format::Json),
            _ => Err(DataError::Format(format!(
                "cannot tell the format of '{}' from its extension; set `format: csv` or `format: json`",
                self.source
            ))),
        }
    }
}

/// Table names become file and SQL names: keep them plain.
pub fn valid_table(name: &str) -> Result<(), String> {
    if crate::ids::is_valid_id(name) && !name.contains('.') {
        Ok(())
    } else {
        Err(format!(
            "bad table name '{name}': use letters, digits, '_' and '-'"
        ))
    }
}

fn clone_file(t: &tempfile::NamedTempFile) -> Result<std::fs::File, TaskError> {
    t.reopen()
        .map_err(|e| TaskError::Failed(format!("{}: {e}", t.path().display())))
}

/// The (location, name) of every input `source` names: one file, a local glob, or a URL.
async fn resolve(source: &str) -> Result<Vec<(Location, String)>, DataError> {
    if source.contains("://") {
        let (dir, name) = source.rsplit_once('/').unwrap_or((source, ""));
        return Ok(vec![(Location::parse(dir)?, name.to_string())]);
    }
    if !source.contains(['*', '?', '[']) {
        let path = Path::new(source);
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Ok(vec![(Location::Local(dir), name)]);
    }
    let matches = glob(source)?;
    if matches.is_empty() {
        return Err(DataError::Missing(format!("{source} (no file matches)")));
    }
    Ok(matches
        .into_iter()
        .map(|p| (Location::Local(PathBuf::new()), p.display().to_string()))
        .collect())
}

/// Files matching a local glob, sorted. `*` does not cross `/`; symlinked folders are not
/// followed (no loops).
fn glob(pattern: &str) -> Result<Vec<PathBuf>, DataError> {
    let pattern = pattern.strip_prefix("./").unwrap_or(pattern);
    let matcher = globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| DataError::Format(format!("bad glob '{pattern}': {e}")))?
        .compile_matcher();
    // Walk from the longest prefix without glob characters.
    let base: PathBuf = Path::new(pattern)
        .components()
        .take_while(|c| !c.as_os_str().to_string_lossy().contains(['*', '?', '[']))
        .collect();
    let mut found = Vec::new();
    let mut pending = vec![if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base
    }];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let rel = path.strip_prefix("./").unwrap_or(&path).to_path_buf();
            match entry.file_type() {
                Ok(t) if t.is_dir() => pending.push(path),
                Ok(_) if matcher.is_match(&rel) => found.push(rel),
                _ => {}
            }
        }
    }
    found.sort();
    Ok(found)
}
