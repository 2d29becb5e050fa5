//! Parquet in and out. [`TableWriter`] receives rows from a source, writes record batches
//! to a Parquet file and refused rows to a rejects file (JSON lines: line, raw text,
//! reason, file); [`read_batches`] streams a Parquet file back as record batches.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::mpsc;

use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use super::DataError;
use super::table::{BATCH_ROWS, BatchBuilder, Cell, ColumnType};
use super::warehouse::MAX_COLUMNS;

/// Most rows per Parquet row group.
const ROW_GROUP_ROWS: usize = 1024 * 1024;

/// Encoded bytes at which a row group is closed. A row group is held in memory until it is
/// written, and the file's footer — held until the end — lists every row group: closing
/// them at a size rather than only at a row count keeps both bounded, so a 10 GB file is
/// imported in the memory of a 1 GB one, and wide rows cannot make a row group large.
const ROW_GROUP_BYTES: usize = 8 << 20;

/// Counts of one import.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportStats {
    /// Rows written.
    pub rows: u64,
    /// Rows refused (in the rejects file).
    pub rejected: u64,
    /// Blank or whitespace-only lines skipped.
    pub blank: u64,
    /// JSON elements with keys that are not columns (those keys are not imported).
    pub unknown_keys: u64,
}

/// Writes a table's rows to Parquet and its refused rows to a rejects file.
pub struct TableWriter {
    parquet: Option<File>,
    writer: Option<Encoder>,
    builder: Option<BatchBuilder>,
    rejects: BufWriter<File>,
    /// Column types forced by the task's `schema:`.
    pub given: Vec<(String, ColumnType)>,
    /// Counts so far.
    pub stats: ImportStats,
    context: String,
    /// Whether the import was cancelled; asked once per batch.
    cancelled: Box<dyn Fn() -> bool + Send>,
    /// Inputs that gave no columns (an empty JSON file or array), for the error if none
    /// does: the first few are named, the rest counted (a glob may match a million).
    empty_inputs: Vec<String>,
    empty_more: u64,
    /// The input being read, as the user named it (for rejects).
    file: String,
}

/// How many empty inputs the "nothing to take columns from" error names.
const EMPTY_NAMED: usize = 5;

/// One line of the rejects file. Users' scripts read these fields: add, never rename.
#[derive(serde::Serialize)]
struct Reject<'a> {
    line: u64,
    raw: &'a str,
    reason: &'a str,
    file: &'a str,
}

impl TableWriter {
    /// Writes to these (temporary) files; `context` names the table in errors.
    pub fn new(
        parquet: File,
        rejects: File,
        given: Vec<(String, ColumnType)>,
        context: &str,
    ) -> Self {
        Self {
            parquet: Some(parquet),
            writer: None,
            builder: None,
            rejects: BufWriter::new(rejects),
            given,
            stats: ImportStats::default(),
            context: context.to_string(),
            cancelled: Box::new(|| false),
            empty_inputs: Vec::new(),
            empty_more: 0,
            file: String::new(),
        }
    }

    /// Names the input the next rows come from, as the user named it (a path or a URL;
    /// rejects carry it).
    pub fn start_file(&mut self, name: &str) {
        name.clone_into(&mut self.file);
    }

    /// Makes the writer fail at its next batch once `cancelled` returns true, so a
    /// cancelled import stops reading within a batch.
    pub fn stop_when(mut self, cancelled: impl Fn() -> bool + Send + 'static) -> Self {
        self.cancelled = Box::new(cancelled);
        self
    }

    /// Makes the marked columns keep arrays and objects as JSON text (call after
    /// [`TableWriter::begin`]).
    pub fn keep_json_text(&mut self, columns: Vec<bool>) {
        if let Some(b) = self.builder.as_mut() {
            b.keep_json_text(columns);
        }
    }

    /// Whether the columns are known yet.
    pub fn started(&self) -> bool {
        self.builder.is_some()
    }

    /// The columns, once started.
    pub fn names(&self) -> &[String] {
        self.builder.as_ref().map_or(&[], |b| b.names())
    }

    /// Notes an input that had nothing to take columns from (`why` names it); the import
    /// fails with these notes if no input gives columns.
    pub fn note_empty(&mut self, why: String) {
        if self.empty_inputs.len() < EMPTY_NAMED {
            self.empty_inputs.push(why);
        } else {
            self.empty_more += 1;
        }
    }

    /// Sets the columns: the given schema wins over inferred types. A table without
    /// columns, or wider than a warehouse table can be, is refused.
    pub fn begin(
        &mut self,
        names: Vec<String>,
        inferred: Vec<ColumnType>,
    ) -> Result<(), DataError> {
        if names.is_empty() {
            return Err(DataError::Format(format!("{}: no columns", self.context)));
        }
        if names.len() > MAX_COLUMNS {
            return Err(DataError::Format(format!(
                "{}: {} columns, more than the {MAX_COLUMNS} a warehouse table can hold",
                self.context,
                names.len()
            )));
        }
        let types = names
            .iter()
            .zip(inferred)
            .map(|(n, t)| {
                self.given
                    .iter()
                    .find(|(g, _)| g == n)
                    .map_or(t, |(_, g)| *g)
            })
            .collect();
        let builder = BatchBuilder::new(names, types);
        let file = self
            .parquet
            .take()
            .ok_or_else(|| DataError::Format(format!("{}: columns set twice", self.context)))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            // See ROW_GROUP_BYTES: the encoder also closes a row group at a size.
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            // Statistics per row group, not per page: a page index (an entry per page and
            // column, about 0.5 MB per GB of input here) would be held until the footer
            // is written, so memory would grow with the file. Row groups are small enough
            // for readers to skip by their statistics.
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_offset_index_disabled(true)
            .build();
        let writer = ArrowWriter::try_new(file, builder.schema(), Some(props))
            .map_err(|e| DataError::arrow(&self.context, e))?;
        self.writer = Some(Encoder::start(writer, &self.context)?);
        self.builder = Some(builder);
        Ok(())
    }

    /// Adds a row; a row that does not fit its columns is rejected with `raw()` as its text.
    pub fn row(
        &mut self,
        line: u64,
        cells: &[Cell<'_>],
        raw: impl FnOnce() -> String,
    ) -> Result<(), DataError> {
        let Some(builder) = self.builder.as_mut() else {
            return Err(DataError::Format(format!(
                "{}: row before columns",
                self.context
            )));
        };
        match builder.push(cells) {
            Ok(()) => self.stats.rows += 1,
            Err(reason) => return self.reject(line, &raw(), &reason),
        }
        if builder.len() >= BATCH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    /// Records a refused row.
    pub fn reject(&mut self, line: u64, raw: &str, reason: &str) -> Result<(), DataError> {
        self.stats.rejected += 1;
        let raw: String = raw.chars().take(10_000).collect();
        let entry = Reject {
            line,
            raw: &raw,
            reason,
            file: &self.file,
        };
        let failed = |e: std::io::Error| DataError::io(&format!("{} rejects", self.context), e);
        serde_json::to_writer(&mut self.rejects, &entry).map_err(|e| failed(e.into()))?;
        writeln!(self.rejects).map_err(failed)
    }

    fn flush(&mut self) -> Result<(), DataError> {
        if (self.cancelled)() {
            return Err(DataError::Cancelled(format!(
                "importing {} stopped",
                self.context
            )));
        }
        if let (Some(builder), Some(writer)) = (self.builder.as_mut(), self.writer.as_mut())
            && !builder.is_empty()
        {
            let batch = builder
                .finish()
                .map_err(|e| DataError::arrow(&self.context, e))?;
            if writer.send(batch).is_err() {
                // The encoder stopped on an error: that error is the one to report.
                if let Some(writer) = self.writer.take() {
                    writer.close()?;
                }
                return Err(DataError::Format(format!(
                    "{}: the Parquet encoder stopped",
                    self.context
                )));
            }
        }
        Ok(())
    }

    /// Writes what is buffered and closes both files.
    pub fn finish(mut self) -> Result<ImportStats, DataError> {
        if !self.started() {
            // A table without columns would only fail later, in `load`, far from its cause.
            let mut why = match self.empty_inputs.as_slice() {
                [] => "no input".to_string(),
                notes => notes.join("; "),
            };
            if self.empty_more > 0 {
                why.push_str(&format!("; and {} more empty input(s)", self.empty_more));
            }
            return Err(DataError::Format(format!(
                "{}: nothing to take columns from: {why}",
                self.context
            )));
        }
        self.flush()?;
        if let Some(writer) = self.writer.take() {
            writer.close()?;
        }
        self.rejects
            .flush()
            .map_err(|e| DataError::io(&format!("{} rejects", self.context), e))?;
        Ok(self.stats)
    }
}

/// Encodes and compresses batches into Parquet on its own thread, so that parsing the next
/// rows overlaps with it (each takes about half of an import's time).
struct Encoder {
    batches: Option<mpsc::SyncSender<RecordBatch>>,
    thread: Option<std::thread::JoinHandle<Result<(), DataError>>>,
}

impl Encoder {
    fn start(mut writer: ArrowWriter<File>, context: &str) -> Result<Self, DataError> {
        let (batches, rx) = mpsc::sync_channel::<RecordBatch>(2);
        let context = context.to_string();
        let thread = std::thread::Builder::new()
            .name("parquet-encoder".into())
            .spawn(move || {
                for batch in rx {
                    writer
                        .write(&batch)
                        .map_err(|e| DataError::arrow(&context, e))?;
                    if writer.in_progress_size() >= ROW_GROUP_BYTES {
                        writer.flush().map_err(|e| DataError::arrow(&context, e))?;
                    }
                }
                writer
                    .close()
                    .map(drop)
                    .map_err(|e| DataError::arrow(&context, e))
            })
            .map_err(|e| DataError::io("a Parquet encoder thread", e))?;
        Ok(Self {
            batches: Some(batches),
            thread: Some(thread),
        })
    }

    /// Queues a batch; fails once the encoder has stopped (see [`Encoder::close`]).
    fn send(&self, batch: RecordBatch) -> Result<(), ()> {
        match &self.batches {
            Some(tx) => tx.send(batch).map_err(drop),
            None => Err(()),
        }
    }

    /// Writes what is queued, closes the file and reports the encoder's error, if any.
    fn close(mut self) -> Result<(), DataError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), DataError> {
        self.batches = None;
        match self.thread.take().map(std::thread::JoinHandle::join) {
            None => Ok(()),
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(DataError::Format("the Parquet encoder panicked".into())),
        }
    }
}

impl Drop for Encoder {
    /// An import that failed half-way still waits for its encoder thread.
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// The batches of `reader`, decoded on a thread of their own a couple of batches ahead of
/// the consumer (which may be on any thread: a load hands them from task to task). The
/// decoder stops when the returned iterator is dropped. If the decoder dies (a panic), the
/// iterator ends with an error rather than quietly: a consumer must never take a truncated
/// table for a whole one.
pub fn decode_in_background<I, E>(
    reader: I,
    context: &str,
) -> Result<impl Iterator<Item = Result<RecordBatch, DataError>> + Send + 'static, DataError>
where
    I: Iterator<Item = Result<RecordBatch, E>> + Send + 'static,
    E: std::fmt::Display,
{
    let (tx, rx) = mpsc::sync_channel(2);
    let decoder_context = context.to_string();
    std::thread::Builder::new()
        .name("parquet-decode".into())
        .spawn(move || feed(reader, &tx, &decoder_context))
        .map_err(|e| DataError::io(context, e))?;
    Ok(drain(rx, context))
}

/// The decoder's side: every batch, then an explicit end, so that a dead decoder cannot
/// look like one that finished.
fn feed<I, E>(
    reader: I,
    tx: &mpsc::SyncSender<Option<Result<RecordBatch, DataError>>>,
    context: &str,
) where
    I: Iterator<Item = Result<RecordBatch, E>>,
    E: std::fmt::Display,
{
    for batch in reader {
        let batch = batch.map_err(|e| DataError::arrow(context, e));
        if tx.send(Some(batch)).is_err() {
            return;
        }
    }
    let _ = tx.send(None);
}

/// The consumer's side: the batches, then an error if the decoder vanished before its end.
fn drain(
    rx: mpsc::Receiver<Option<Result<RecordBatch, DataError>>>,
    context: &str,
) -> impl Iterator<Item = Result<RecordBatch, DataError>> + Send + 'static {
    let mut stopped = Some(DataError::Format(format!(
        "{context}: the Parquet decoder stopped"
    )));
    std::iter::from_fn(move || match rx.recv() {
        Ok(Some(batch)) => Some(batch),
        Ok(None) => {
            stopped = None;
            None
        }
        Err(_) => stopped.take().map(Err),
    })
}

/// Streams the record batches of a Parquet file.
pub fn read_batches(path: &Path) -> Result<ParquetRecordBatchReader, DataError> {
    let context = path.display().to_string();
    let file = File::open(path).map_err(|e| DataError::io(&context, e))?;
    ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.with_batch_size(BATCH_ROWS).build())
        .map_err(|e| DataError::arrow(&context, e))
}

/// How many rows the Parquet file at `path` holds, from its footer.
pub fn row_count(path: &Path) -> Result<u64, DataError> {
    let context = path.display().to_string();
    let file = File::open(path).map_err(|e| DataError::io(&context, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| DataError::arrow(&context, e))?;
    Ok(u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::Int64Array;

    use super::*;

    fn batches(n: usize) -> impl Iterator<Item = Result<RecordBatch, String>> + Send + 'static {
        (0..n).map(|i| {
            let ids = Arc::new(Int64Array::from(vec![i as i64]));
            RecordBatch::try_from_iter([("id", ids as arrow_array::ArrayRef)])
                .map_err(|e| e.to_string())
        })
    }

    #[test]
    fn decoding_in_the_background_yields_every_batch_then_ends() {
        let got = decode_in_background(batches(5), "t").unwrap().count();
        assert_eq!(got, 5);
    }

    #[test]
    fn a_dead_decoder_ends_the_stream_with_an_error() {
        let dying = batches(3).chain(std::iter::from_fn(|| panic!("decoder bug")));
        let (mut good, mut bad) = (0, Vec::new());
        for batch in decode_in_background(dying, "t").unwrap() {
            match batch {
                Ok(_) => good += 1,
                Err(e) => bad.push(e.to_string()),
            }
        }
        assert_eq!(good, 3);
        assert_eq!(bad, ["t: the Parquet decoder stopped"]);
    }
}
