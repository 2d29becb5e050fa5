//! `import`: reads a CSV or JSON source (a path, a glob, or an object-store URL) and writes
//! it to the staging store as table `<table>.parquet`, streaming in record batches; a glob
//! is walked while its files are read, one at a time. Rows that cannot be read go to
//! `<table>.rejects.jsonl` (line, raw text, reason, file) and the log gives the counts. A
//! file that cannot be read fails the import, naming it. The table appears atomically; a
//! failed import leaves the old one.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{TaskContext, TaskError, TaskOutcome};
use crate::data::csv_source::CsvReader;
use crate::data::glob::{self, Walked};
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
        let inputs = Inputs::fetch(&self.source).await.map_err(fail)?;
        let parquet_name = format!("{}.parquet", self.table);
        let rejects_name = format!("{}.rejects.jsonl", self.table);
        let parquet = staging.scratch(&parquet_name).map_err(fail)?;
        let rejects = staging.scratch(&rejects_name).map_err(fail)?;
        let files = (clone_file(&parquet)?, clone_file(&rejects)?);
        let (task, cancel) = (self.clone(), ctx.cancel.clone());
        let (stats, walked) =
            tokio::task::spawn_blocking(move || task.convert(inputs, files, cancel))
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
            walked.files,
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
        if let Some(folders) = skipped_folders(&walked) {
            ctx.log.write("WARN", folders);
        }
        Ok(TaskOutcome::Success)
    }

    /// Reads the inputs one at a time into the table (a glob is walked as it is read).
    fn convert(
        &self,
        inputs: Inputs,
        files: (std::fs::File, std::fs::File),
        cancel: CancellationToken,
    ) -> Result<(ImportStats, Walked), DataError> {
        let given = self.schema.iter().map(|(k, v)| (k.clone(), *v)).collect();
        let stop = cancel.clone();
        let mut out = TableWriter::new(files.0, files.1, given, &self.table)
            .stop_when(move || stop.is_cancelled());
        let mut csv = CsvReader::default();
        let walked = match &inputs {
            Inputs::One { path, name, .. } => {
                self.read(path, name, &mut csv, &mut out)?;
                Walked {
                    files: 1,
                    ..Walked::default()
                }
            }
            Inputs::Glob(pattern) => {
                let walked = glob::walk(pattern, |path| {
                    // The writer checks once per batch; a batch can span thousands of files.
                    if cancel.is_cancelled() {
                        return Err(DataError::Cancelled(format!(
                            "importing {} stopped",
                            self.table
                        )));
                    }
                    self.read(path, &path.display().to_string(), &mut csv, &mut out)
                })?;
                if walked.files == 0 {
                    return Err(DataError::Missing(format!("{pattern} (no file matches)")));
                }
                walked
            }
        };
        Ok((out.finish()?, walked))
    }

    /// Reads the file at `path` into `out`; `name` is how the user named it (a path shown
    /// lossily if it is not UTF-8, or a URL), for messages, rejects and its format. CSV
    /// files go through `csv`, one parser for all of them.
    fn read(
        &self,
        path: &Path,
        name: &str,
        csv: &mut CsvReader,
        out: &mut TableWriter,
    ) -> Result<(), DataError> {
        let format = self.format_of(Path::new(name))?;
        let file = open_input(path, name)?;
        match format {
            Format::Json => read_json(file, name, out),
            Format::Csv => {
                let tsv = Path::new(name).extension().is_some_and(|e| e == "tsv");
                let d = self.delimiter.unwrap_or(if tsv { '\t' } else { ',' });
                csv.read(file, name, d as u8, out)
            }
        }
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

/// What a source names: one file (local, or downloaded from an object store), or a glob.
enum Inputs {
    /// One file to read at `path`, named `name` in messages and rejects.
    One {
        path: PathBuf,
        name: String,
        /// The download of a remote file, removed when dropped.
        _copy: Option<LocalCopy>,
    },
    /// A local glob, walked while it is read.
    Glob(String),
}

impl Inputs {
    /// Parses `source`, downloading it first if it is a URL.
    async fn fetch(source: &str) -> Result<Self, DataError> {
        if source.contains("://") {
            let (dir, name) = source.rsplit_once('/').unwrap_or((source, ""));
            let location = Location::parse(dir)?;
            let copy = location.fetch(name).await?;
            return Ok(Self::One {
                path: copy.path().to_path_buf(),
                name: location.display(name),
                _copy: Some(copy),
            });
        }
        if source.contains(['*', '?', '[']) {
            return Ok(Self::Glob(source.to_string()));
        }
        Ok(Self::One {
            path: PathBuf::from(source),
            name: source.to_string(),
            _copy: None,
        })
    }
}

/// Opens an input, refusing what is not a regular file: a folder, or a FIFO or device,
/// which could block or never end. It is opened without blocking (a FIFO would otherwise
/// wait for a writer); that changes nothing for a regular file.
fn open_input(path: &Path, name: &str) -> Result<File, DataError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound if path.is_symlink() => DataError::Format(format!(
                "{name}: a symbolic link to a file that does not exist"
            )),
            std::io::ErrorKind::NotFound => DataError::Missing(name.to_string()),
            _ => DataError::io(name, e),
        })?;
    let kind = file
        .metadata()
        .map_err(|e| DataError::io(name, e))?
        .file_type();
    if kind.is_file() {
        return Ok(file);
    }
    let what = if kind.is_dir() {
        "a folder"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "a device"
    };
    Err(DataError::Format(format!("{name}: {what}, not a file")))
}

/// The warning for folders a glob matched (they are not read), if any.
fn skipped_folders(walked: &Walked) -> Option<String> {
    if walked.folders.is_empty() {
        return None;
    }
    let more = match walked.more_folders {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    Some(format!(
        "the glob matches {} folder(s), which are not read (only files are): {}{more}",
        walked.folders.len() as u64 + walked.more_folders,
        walked.folders.join(", ")
    ))
}
