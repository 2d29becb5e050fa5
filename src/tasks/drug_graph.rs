//! `drug_graph`: builds the drug-mention graph from the staged drugs, PubMed (CSV and JSON
//! tables together) and clinical-trial tables, and writes `graph.json`, `top_journals.json`
//! and the journal index `graph.journals.jsonl` (see [`crate::graph::index`]) to the output
//! store (atomically), plus `graph.rejects.jsonl` listing rows that could not take part and
//! why.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use arrow_array::RecordBatch;
use serde::{Deserialize, Serialize};

use super::{TaskContext, TaskError, TaskOutcome};
use crate::data::direct::DirectWriter;
use crate::data::parquet_io::read_batches;
use crate::data::table::text_at;
use crate::data::{DataError, Location};
use crate::graph::index::{GraphStamp, IndexWriter, index_name};
use crate::graph::{
    GraphBuilder, PreparedChunk, Preparer, RawDrug, RawPublication, Source, SpillPlan,
};

/// Rows left out that the log lists one by one (the rejects file has them all).
const SHOWN_REJECTS: usize = 20;

/// Rows per unit of cleaning and matching work: enough to spread a batch over every core
/// and keep hand-over costs small.
const ROWS_PER_JOB: usize = 8192;

/// Build the drug-mention graph.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrugGraphTask {
    /// Staged table of drugs (columns `atccode`, `drug`).
    #[serde(default = "defaults::drugs")]
    pub drugs: String,
    /// Staged PubMed tables (columns `id`, `title`, `date`, `journal`).
    #[serde(default = "defaults::pubmed")]
    pub pubmed: Vec<String>,
    /// Staged clinical-trial tables (`id`, `scientific_title` or `title`, `date`, `journal`).
    #[serde(default = "defaults::clinical_trials")]
    pub clinical_trials: Vec<String>,
    /// Graph file in the output store.
    #[serde(default = "defaults::output")]
    pub output: String,
    /// Top-journals file in the output store.
    #[serde(default = "defaults::top_journals")]
    pub top_journals: String,
    /// Write the graph with `O_DIRECT` (past the page cache) where the file system allows
    /// it: less CPU on fast local disks. Set to false when the output volume is slow (a
    /// network disk) and the machine has the memory to buffer the file.
    #[serde(default = "defaults::direct_io")]
    pub direct_io: bool,
    /// Peak memory the build aims to stay under (`256MiB`, `1GiB`, `500MB` or a number of
    /// bytes): past it, rows spill to a temporary folder beside the output.
    #[serde(default = "defaults::memory_budget")]
    pub memory_budget: Size,
}

/// A size as written in a DAG: a number of bytes or text such as `256MiB`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Size {
    /// Bytes.
    Bytes(u64),
    /// Text with a unit, read by [`parse_size`].
    Text(String),
}

/// Smallest memory budget taken: below it the fixed costs (matcher, buffers) dominate.
pub const MIN_MEMORY_BUDGET: u64 = 1 << 20;

impl Size {
    /// The size in bytes.
    pub fn bytes(&self) -> Result<u64, String> {
        match self {
            Self::Bytes(n) => Ok(*n),
            Self::Text(t) => parse_size(t),
        }
    }
}

/// Reads `256MiB`, `1 GiB`, `1.5GB`, `4096` (bytes); units B, KB/MB/GB/TB (powers of 1000)
/// and KiB/MiB/GiB/TiB (powers of 1024), K/M/G/T meaning the binary ones, case-insensitive.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "cannot read '{text}' as a size (write e.g. 256MiB or 1GiB)"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("cannot read '{text}' as a size (write e.g. 256MiB or 1GiB)"))?;
    let bytes = value * scale as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("'{text}' is too large"));
    }
    Ok(bytes as u64)
}

mod defaults {
    pub fn drugs() -> String {
        "drugs".into()
    }
    pub fn pubmed() -> Vec<String> {
        vec!["pubmed_csv".into(), "pubmed_json".into()]
    }
    pub fn clinical_trials() -> Vec<String> {
        vec!["clinical_trials".into()]
    }
    pub fn output() -> String {
        "graph.json".into()
    }
    pub fn top_journals() -> String {
        "top_journals.json".into()
    }
    pub fn direct_io() -> bool {
        true
    }
    pub fn memory_budget() -> super::Size {
        super::Size::Text("1GiB".into())
    }
}

impl DrugGraphTask {
    /// Checks arguments at load time.
    pub fn validate(&self) -> Result<(), String> {
        self.budget()?;
        // Four files are written: none may be another (the index and rejects names are
        // made from the graph's).
        let derived = [index_name(&self.output), rejects_name(&self.output)];
        if self.top_journals == self.output || derived.contains(&self.top_journals) {
            return Err(format!(
                "drug_graph 'top_journals': '{}' is also the name of the graph or of a file \
                 named after it ({}, {})",
                self.top_journals, derived[0], derived[1]
            ));
        }

        std::iter::once(&self.drugs)
            .chain(&self.pubmed)
            .chain(&self.clinical_trials)
            .try_for_each(|t| super::import::valid_table(t))
    }

    /// The memory budget in bytes.
    fn budget(&self) -> Result<u64, String> {
        let bytes = self
            .memory_budget
            .bytes()
            .map_err(|e| format!("drug_graph 'memory_budget': {e}"))?;
        if bytes < MIN_MEMORY_BUDGET {
            return Err(format!(
                "drug_graph 'memory_budget': {bytes} bytes is below the smallest budget, 1MiB"
            ));
        }
        Ok(bytes)
    }

    /// Reads the tables, builds the graph, writes the outputs.
    pub async fn run(&self, ctx: &TaskContext) -> Result<TaskOutcome, TaskError> {
        let fail = |e: DataError| ctx.failure(e);
        let staging = &ctx.data.staging;
        let drugs = staging
            .fetch(&format!("{}.parquet", self.drugs))
            .await
            .map_err(fail)?;
        let mut sources = Vec::new();
        for (tables, kind) in [
            (&self.pubmed, Source::Pubmed),
            (&self.clinical_trials, Source::ClinicalTrial),
        ] {
            for t in tables {
                sources.push((
                    t.clone(),
                    kind,
                    staging.fetch(&format!("{t}.parquet")).await.map_err(fail)?,
                ));
            }
        }
        let output = ctx.data.output.clone();
        let scratch = [
            &self.output,
            &self.top_journals,
            &rejects_name(&self.output),
            &index_name(&self.output),
        ]
        .map(|name| output.scratch(name))
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(fail)?;
        let task = self.clone();
        let drugs_path = drugs.path().to_path_buf();
        let paths: Vec<_> = sources
            .iter()
            .map(|(t, k, c)| (t.clone(), *k, c.path().to_path_buf()))
            .collect();
        let graph_path = scratch[0].path().to_path_buf();
        let files: Vec<std::fs::File> = scratch[1..]
            .iter()
            .map(|t| {
                t.reopen()
                    .map_err(|e| DataError::io(&t.path().display().to_string(), e))
            })
            .collect::<Result<_, _>>()
            .map_err(fail)?;
        let cancel = ctx.cancel.clone();
        let summary = tokio::task::spawn_blocking(move || {
            task.build(&drugs_path, &paths, &graph_path, files, &|| {
                cancel.is_cancelled()
            })
        })
        .await
        .map_err(|e| ctx.failure(format!("drug_graph stopped: {e}")))?
        .map_err(fail)?;
        if ctx.cancel.is_cancelled() {
            // A cancelled try publishes nothing, even when its work happened to finish.
            return Err(TaskError::Cancelled(
                "drug_graph stopped before publishing".into(),
            ));
        }
        let [graph, top, rejects, index] = <[_; 4]>::try_from(scratch)
            .map_err(|_| ctx.failure("drug_graph: missing output file"))?;
        // The index after the graph: readers take it only when it is not older.
        let index_name = index_name(&self.output);
        for (name, file) in [
            (&self.output, graph),
            (&self.top_journals, top),
            (&index_name, index),
        ] {
            output.publish(name, file).await.map_err(fail)?;
        }
        publish_rejects(
            &output,
            &rejects_name(&self.output),
            rejects,
            summary.rejected,
        )
        .await
        .map_err(fail)?;
        ctx.count_rows(crate::metrics::Rows::Rejected, summary.rejected as u64);
        for line in summary.lines {
            ctx.log.info(line);
        }
        ctx.log.info(format!(
            "wrote {}, {} and {}",
            output.display(&self.output),
            output.display(&self.top_journals),
            output.display(&index_name)
        ));
        Ok(TaskOutcome::Success)
    }

    fn build(
        &self,
        drugs: &std::path::Path,
        sources: &[(String, Source, std::path::PathBuf)],
        graph: &std::path::Path,
        files: Vec<std::fs::File>,
        cancelled: &(dyn Fn() -> bool + Sync),
    ) -> Result<Summary, DataError> {
        let started = std::time::Instant::now();
        let mut timings = Vec::new();
        let raw_drugs = read_drugs(&self.drugs, drugs)?;
        let budget = self.budget().map_err(DataError::Format)?;
        let input_bytes = sources
            .iter()
            .filter_map(|(_, _, p)| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        // Only an estimate: a file that cannot be read fails the build when it is read.
        let input_rows = sources
            .iter()
            .filter_map(|(_, _, p)| crate::data::parquet_io::row_count(p).ok())
            .sum();
        let plan = SpillPlan {
            // Beside the output (its scratch file is), else the system's temporary folder.
            dir: graph
                .parent()
                .map_or_else(std::env::temp_dir, std::path::Path::to_path_buf),
            budget: usize::try_from(budget).unwrap_or(usize::MAX),
            input_bytes,
            input_rows,
        };
        // Folders of builds killed outright would otherwise stay (and fill the disk).
        let swept = crate::graph::sweep_stale(&plan.dir);
        let plan_dir = plan.dir.clone();
        let mut files = files.into_iter();
        let mut next = || {
            files
                .next()
                .ok_or_else(|| DataError::Format("missing output file".into()))
        };
        let top_file = next()?;
        let rejects = std::io::BufWriter::with_capacity(1 << 16, next()?);
        let index_file = next()?;
        let mut builder = GraphBuilder::new(raw_drugs)
            .map_err(DataError::Format)?
            .with_budget(plan)
            .with_rejects(Box::new(rejects), SHOWN_REJECTS);
        timings.push(format!(
            "drugs and matcher {:.2}s",
            started.elapsed().as_secs_f64()
        ));
        let t = std::time::Instant::now();
        read_publications(sources, &mut builder, cancelled)?;
        timings.push(format!("publications {:.2}s", t.elapsed().as_secs_f64()));
        let spilled = builder.spilled();
        if cancelled() {
            return Err(DataError::Cancelled("drug_graph stopped".into()));
        }
        let t = std::time::Instant::now();
        let mut built = builder.finish();
        built
            .close_rejects()
            .map_err(|e| DataError::io(&rejects_name(&self.output), e))?;
        timings.push(format!("grouping {:.2}s", t.elapsed().as_secs_f64()));
        let t = std::time::Instant::now();
        let graph_error = |e| DataError::io(&self.output, e);
        let mut out = DirectWriter::open(graph, self.direct_io).map_err(graph_error)?;
        let direct = out.is_direct();
        let mut index = IndexWriter::new(std::io::BufWriter::new(index_file));
        built
            .write_json_indexed(&mut out, workers(), Some(&mut index))
            .and_then(|()| out.finish())
            .map_err(graph_error)?;
        // Publishing renames the file: its size and time stay those recorded here.
        let stamp = GraphStamp::of(&std::fs::metadata(graph).map_err(graph_error)?);
        index
            .finish(stamp)
            .map_err(|e| DataError::io(&index_name(&self.output), e))?;
        let top = built.top_journals();
        timings.push(format!(
            "sort and write {:.2}s{}",
            t.elapsed().as_secs_f64(),
            if direct { " (direct I/O)" } else { "" }
        ));
        // A spilled graph's counts are complete once it is written.
        let report = built.report();
        serde_json::to_writer_pretty(std::io::BufWriter::new(top_file), &top)
            .map_err(|e| DataError::Format(format!("{}: {e}", self.top_journals)))?;
        let mut lines = vec![
            format!(
                "{} drug(s); {} publication row(s) read; {} merged into another row of the same publication",
                report.drugs, report.rows, report.merged
            ),
            format!(
                "{} publication(s) mention a drug: {} mention(s); top journal(s) with {} drug(s): {}",
                report.mentioning,
                report.mentions,
                top.max_distinct_drugs,
                top.journals.join(", ")
            ),
        ];
        if swept > 0 {
            lines.push(format!(
                "removed {swept} spill folder(s) left in {} by a build that was killed",
                plan_dir.display()
            ));
        }
        if spilled {
            lines.push(format!(
                "the rows passed the memory budget ({} bytes): they were spilled to disk and merged back ({})",
                budget,
                built.spill_summary().unwrap_or_default()
            ));
        }
        lines.push(format!("timings: {}", timings.join(", ")));
        lines.extend(
            report
                .rejected
                .iter()
                .take(SHOWN_REJECTS)
                .map(|r| format!("left out {} row {}: {}", r.source, r.row, r.reason)),
        );
        if report.rejected_total > SHOWN_REJECTS {
            lines.push(format!(
                "... and {} more row(s) left out (all are in {})",
                report.rejected_total - SHOWN_REJECTS,
                rejects_name(&self.output)
            ));
        }
        Ok(Summary {
            lines,
            rejected: report.rejected_total,
        })
    }
}

struct Summary {
    lines: Vec<String>,
    rejected: usize,
}

fn rejects_name(output: &str) -> String {
    let stem = output.strip_suffix(".json").unwrap_or(output);
    format!("{stem}.rejects.jsonl")
}

async fn publish_rejects(
    output: &Location,
    name: &str,
    file: tempfile::NamedTempFile,
    count: usize,
) -> Result<(), DataError> {
    if count > 0 {
        output.publish(name, file).await
    } else {
        output.remove(name).await
    }
}

/// Finds a column by any of its accepted names.
fn column(batch: &RecordBatch, names: &[&str]) -> Option<usize> {
    let schema = batch.schema();
    names.iter().find_map(|n| schema.index_of(n).ok())
}

fn missing(table: &str, wanted: &str, batch: &RecordBatch) -> DataError {
    let found: Vec<String> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    DataError::Format(format!(
        "table '{table}' has no {wanted} column (it has: {})",
        found.join(", ")
    ))
}

fn read_drugs(table: &str, path: &std::path::Path) -> Result<Vec<RawDrug>, DataError> {
    let mut out = Vec::new();
    for batch in read_batches(path)? {
        let batch = batch.map_err(|e| DataError::arrow(table, e))?;
        let name = column(&batch, &["drug"]).ok_or_else(|| missing(table, "'drug'", &batch))?;
        let code = column(&batch, &["atccode"]);
        for i in 0..batch.num_rows() {
            let text = |c: usize| cell(table, &batch, c, i).map(|t| t.map(Cow::into_owned));
            out.push(RawDrug {
                row: out.len() + 1,
                atccode: code.map(text).transpose()?.flatten(),
                drug: text(name)?,
            });
        }
    }
    Ok(out)
}

fn cell<'a>(
    table: &str,
    batch: &'a RecordBatch,
    col: usize,
    row: usize,
) -> Result<Option<Cow<'a, str>>, DataError> {
    text_at(batch.column(col).as_ref(), row).map_err(|e| DataError::Format(format!("{table}: {e}")))
}

/// Threads for cleaning, matching and encoding.
fn workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8)
}

/// Where a publication table keeps the columns the graph needs.
#[derive(Clone, Copy)]
struct Columns {
    title: usize,
    date: usize,
    id: Option<usize>,
    journal: Option<usize>,
}

impl Columns {
    fn find(table: &str, batch: &RecordBatch) -> Result<Self, DataError> {
        Ok(Self {
            title: column(batch, &["title", "scientific_title"])
                .ok_or_else(|| missing(table, "'title' or 'scientific_title'", batch))?,
            date: column(batch, &["date"]).ok_or_else(|| missing(table, "'date'", batch))?,
            id: column(batch, &["id"]),
            journal: column(batch, &["journal"]),
        })
    }
}

/// Rows to clean and match, and where to send the result.
struct Job<'a> {
    table: &'a str,
    kind: Source,
    batch: RecordBatch,
    /// Rows of the table before this batch.
    first_row: usize,
    columns: Columns,
    reply: mpsc::SyncSender<Result<PreparedChunk, DataError>>,
}

type Reply = mpsc::Receiver<Result<PreparedChunk, DataError>>;

/// Reads the publication tables: this thread decodes Parquet and cuts it into jobs, worker
/// threads clean and match them, and one thread adds the results to the builder in source
/// order (merging split records must be deterministic). Every queue is bounded, so memory
/// stays flat whatever the input size.
fn read_publications(
    sources: &[(String, Source, std::path::PathBuf)],
    builder: &mut GraphBuilder,
    cancelled: &(dyn Fn() -> bool + Sync),
) -> Result<(), DataError> {
    let preparer = builder.preparer();
    let workers = workers();
    let failed = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let (jobs, job_rx) = mpsc::sync_channel::<Job>(workers * 2);
        // Each worker owns a handle: if they all stop, the queue closes and the reader stops.
        let job_rx = Arc::new(Mutex::new(job_rx));
        // Replies in source order: the builder thread waits on each in turn.
        let (order, order_rx) = mpsc::sync_channel::<Reply>(workers * 4);
        for _ in 0..workers {
            let (job_rx, preparer) = (Arc::clone(&job_rx), &preparer);
            scope.spawn(move || {
                // The lock guard is a temporary, released before the work starts.
                while let Ok(Ok(job)) = job_rx.lock().map(|rx| rx.recv()) {
                    // A dropped receiver means the builder gave up; nothing to report.
                    let _ = job.reply.send(prepare_job(&job, preparer));
                }
            });
        }
        drop(job_rx);
        let failed = &failed;
        let accumulator = scope.spawn(move || -> Result<(), DataError> {
            let mut result = Ok(());
            for reply in order_rx {
                if result.is_err() {
                    continue;
                }
                match reply.recv() {
                    Ok(Ok(chunk)) => builder.accept(chunk),
                    Ok(Err(e)) => result = Err(e),
                    Err(_) => result = Err(DataError::Format("a graph worker stopped".into())),
                }
                if result.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
            }
            result
        });
        let read = sources.iter().try_for_each(|(table, kind, path)| {
            send_jobs(table, *kind, path, &jobs, &order, failed, cancelled)
        });
        drop((jobs, order));
        let built = accumulator
            .join()
            .map_err(|_| DataError::Format("the graph builder stopped".into()))?;
        built.and(read)
    })
}

/// Decodes one table and queues its rows in jobs; stops early once something failed or the
/// task is cancelled.
fn send_jobs<'a>(
    table: &'a str,
    kind: Source,
    path: &std::path::Path,
    jobs: &mpsc::SyncSender<Job<'a>>,
    order: &mpsc::SyncSender<Reply>,
    failed: &AtomicBool,
    cancelled: &dyn Fn() -> bool,
) -> Result<(), DataError> {
    if failed.load(Ordering::Relaxed) {
        return Ok(());
    }
    let mut first_row = 0;
    for batch in read_batches(path)? {
        let batch = batch.map_err(|e| DataError::arrow(table, e))?;
        let columns = Columns::find(table, &batch)?;
        let rows = batch.num_rows();
        for start in (0..rows).step_by(ROWS_PER_JOB) {
            if failed.load(Ordering::Relaxed) {
                return Ok(());
            }
            if cancelled() {
                return Err(DataError::Cancelled("drug_graph stopped".into()));
            }
            let (reply, reply_rx) = mpsc::sync_channel(1);
            let job = Job {
                table,
                kind,
                batch: batch.slice(start, ROWS_PER_JOB.min(rows - start)),
                first_row: first_row + start,
                columns,
                reply,
            };
            // A queue closes only when the threads at its other end stopped (a failed
            // chunk, or every worker gone); the builder thread reports why.
            if jobs.send(job).is_err() || order.send(reply_rx).is_err() {
                return Ok(());
            }
        }
        first_row += rows;
    }
    Ok(())
}

fn prepare_job(job: &Job<'_>, preparer: &Preparer) -> Result<PreparedChunk, DataError> {
    let mut chunk = PreparedChunk::default();
    let c = job.columns;
    for i in 0..job.batch.num_rows() {
        let text = |col: usize| cell(job.table, &job.batch, col, i);
        let raw = RawPublication {
            source: job.table,
            row: job.first_row + i + 1,
            kind: job.kind,
            id: c.id.map(text).transpose()?.flatten(),
            title: text(c.title)?,
            date: text(c.date)?,
            journal: c.journal.map(text).transpose()?.flatten(),
        };
        preparer.prepare_into(&raw, &mut chunk);
    }
    Ok(chunk)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use arrow_array::{ArrayRef, StringArray};
    use parquet::arrow::ArrowWriter;

    use super::*;

    #[test]
    fn sizes_read_with_their_units() {
        for (text, bytes) in [
            ("256MiB", 256 << 20),
            ("1GiB", 1 << 30),
            (" 1 gib ", 1 << 30),
            ("1.5G", 3 << 29),
            ("500MB", 500_000_000),
            ("4096", 4096),
            ("2k", 2048),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for bad in ["", "MiB", "12XB", "-1MiB", "1..2G", "1e400"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_top_journals_file_cannot_be_one_the_task_writes_otherwise() {
        let task = |yaml: &str| serde_norway::from_str::<DrugGraphTask>(yaml).unwrap();
        assert!(task("{}").validate().is_ok());
        for clash in ["graph.json", "graph.journals.jsonl", "graph.rejects.jsonl"] {
            let err = task(&format!("{{top_journals: {clash}}}"))
                .validate()
                .unwrap_err();
            assert!(err.starts_with("drug_graph 'top_journals'"), "{err}");
        }
        let err = task("{output: out/g.json, top_journals: out/g.rejects.jsonl}")
            .validate()
            .unwrap_err();
        assert!(err.contains("out/g.journals.jsonl"), "{err}");
    }

    fn parquet(dir: &Path, name: &str, columns: &[(&str, Vec<String>)]) -> PathBuf {
        let path = dir.join(name);
        let batch = RecordBatch::try_from_iter(
            columns
                .iter()
                .map(|(n, v)| (*n, Arc::new(StringArray::from(v.clone())) as ArrayRef)),
        )
        .unwrap();
        let mut w =
            ArrowWriter::try_new(File::create(&path).unwrap(), batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        path
    }

    use std::fs::File;

    /// A cancelled or failed build leaves no spill folder behind.
    #[test]
    fn a_cancelled_or_failed_build_removes_its_spill() {
        let dir = tempfile::tempdir().unwrap();
        let drugs = parquet(
            dir.path(),
            "drugs.parquet",
            &[
                ("atccode", (0..20).map(|i| format!("A{i}")).collect()),
                ("drug", (0..20).map(|i| format!("DRUG{i}")).collect()),
            ],
        );
        let rows = 60_000;
        let pubmed = parquet(
            dir.path(),
            "pubmed.parquet",
            &[
                ("id", (0..rows).map(|i| i.to_string()).collect()),
                (
                    "title",
                    (0..rows)
                        .map(|i| format!("drug{} and drug{} study number {i}", i % 20, i % 7))
                        .collect(),
                ),
                (
                    "date",
                    (0..rows).map(|_| "2020-01-01".to_string()).collect(),
                ),
                (
                    "journal",
                    (0..rows).map(|i| format!("J{}", i % 9)).collect(),
                ),
            ],
        );
        // No date column: fails after the first table spilled.
        let broken = parquet(
            dir.path(),
            "broken.parquet",
            &[("title", vec!["drug1".to_string()])],
        );
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let task: DrugGraphTask = serde_json::from_value(
            serde_json::json!({"type": "drug_graph", "memory_budget": "1MiB"})
                .as_object()
                .map(|m| {
                    let mut m = m.clone();
                    m.remove("type");
                    serde_json::Value::Object(m)
                })
                .unwrap(),
        )
        .unwrap();
        let files = || {
            (0..3)
                .map(|i| File::create(out.join(format!("f{i}"))).unwrap())
                .collect::<Vec<_>>()
        };
        let graph = out.join("graph.json");
        let left = || {
            std::fs::read_dir(&out)
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .starts_with(".graph-spill")
                })
                .count()
        };
        let sources = vec![("pubmed".to_string(), Source::Pubmed, pubmed.clone())];
        // Past the second job, waits (boundedly) until the spill folder exists: the spill
        // has started whatever the threads' speed.
        let calls = AtomicUsize::new(0);
        let spilling = || {
            if calls.fetch_add(1, Ordering::Relaxed) >= 2 {
                let limit = std::time::Instant::now() + std::time::Duration::from_secs(60);
                while left() == 0 && std::time::Instant::now() < limit {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                assert_eq!(left(), 1, "the build did not spill");
                return true;
            }
            false
        };
        let result = task.build(&drugs, &sources, &graph, files(), &spilling);
        assert!(
            matches!(result, Err(DataError::Cancelled(_))),
            "{:?}",
            result.err()
        );
        assert_eq!(left(), 0);
        let failing = vec![
            ("pubmed".to_string(), Source::Pubmed, pubmed),
            ("broken".to_string(), Source::Pubmed, broken),
        ];
        calls.store(0, Ordering::Relaxed);
        let waited = std::sync::atomic::AtomicBool::new(false);
        let result = task.build(&drugs, &failing, &graph, files(), &|| {
            if !waited.load(Ordering::Relaxed) && spilling() {
                waited.store(true, Ordering::Relaxed);
            }
            false
        });
        assert!(waited.load(Ordering::Relaxed));
        assert!(
            matches!(&result, Err(DataError::Format(m)) if m.contains("no 'date' column")),
            "{:?}",
            result.err()
        );
        assert_eq!(left(), 0);
        File::create(&graph).unwrap();
        // And a finished build removes it too, having spilled.
        let summary = task
            .build(&drugs, &sources, &graph, files(), &|| false)
            .unwrap();
        assert!(summary.lines.iter().any(|l| l.contains("spilled to disk")));
        assert_eq!(left(), 0);
    }
}
