//! `drug_graph`: builds the drug-mention graph from the staged drugs, PubMed (CSV and JSON
//! tables together) and clinical-trial tables, and writes `graph.json` and
//! `top_journals.json` to the output store (atomically), plus `graph.rejects.jsonl` listing
//! rows that could not take part and why.

use std::borrow::Cow;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use arrow_array::RecordBatch;
use serde::{Deserialize, Serialize};

use super::{TaskContext, TaskError, TaskOutcome};
use crate::data::direct::DirectWriter;
use crate::data::parquet_io::read_batches;
use crate::data::table::text_at;
use crate::data::{DataError, Location};
use crate::graph::{GraphBuilder, PreparedChunk, Preparer, RawDrug, RawPublication, Source};

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
}

impl DrugGraphTask {
    /// Checks arguments at load time.
    pub fn validate(&self) -> Result<(), String> {
        std::iter::once(&self.drugs)
            .chain(&self.pubmed)
            .chain(&self.clinical_trials)
            .try_for_each(|t| super::import::valid_table(t))
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
        let mut scratch = scratch.into_iter();
        for name in [&self.output, &self.top_journals] {
            if let Some(file) = scratch.next() {
                output.publish(name, file).await.map_err(fail)?;
            }
        }
        publish_rejects(
            &output,
            &rejects_name(&self.output),
            scratch.next(),
            summary.rejected,
        )
        .await
        .map_err(fail)?;
        ctx.count_rows(crate::metrics::Rows::Rejected, summary.rejected as u64);
        for line in summary.lines {
            ctx.log.info(line);
        }
        ctx.log.info(format!(
            "wrote {} and {}",
            output.display(&self.output),
            output.display(&self.top_journals)
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
        let mut builder = GraphBuilder::new(raw_drugs).map_err(DataError::Format)?;
        timings.push(format!(
            "drugs and matcher {:.2}s",
            started.elapsed().as_secs_f64()
        ));
        let t = std::time::Instant::now();
        read_publications(sources, &mut builder, cancelled)?;
        timings.push(format!("publications {:.2}s", t.elapsed().as_secs_f64()));
        if cancelled() {
            return Err(DataError::Cancelled("drug_graph stopped".into()));
        }
        let t = std::time::Instant::now();
        let built = builder.finish();
        timings.push(format!("grouping {:.2}s", t.elapsed().as_secs_f64()));
        let t = std::time::Instant::now();
        let report = built.report();
        let mut files = files.into_iter();
        let mut next = || {
            files
                .next()
                .ok_or_else(|| DataError::Format("missing output file".into()))
        };
        let graph_error = |e| DataError::io(&self.output, e);
        let mut out = DirectWriter::open(graph, self.direct_io).map_err(graph_error)?;
        let direct = out.is_direct();
        built
            .write_json(&mut out, workers())
            .and_then(|()| out.finish())
            .map_err(graph_error)?;
        let top = built.top_journals();
        timings.push(format!(
            "sort and write {:.2}s{}",
            t.elapsed().as_secs_f64(),
            if direct { " (direct I/O)" } else { "" }
        ));
        serde_json::to_writer_pretty(std::io::BufWriter::new(next()?), &top)
            .map_err(|e| DataError::Format(format!("{}: {e}", self.top_journals)))?;
        let mut rejects = std::io::BufWriter::new(next()?);
        for r in &report.rejected {
            let line = serde_json::to_string(r).map_err(|e| DataError::Format(e.to_string()))?;
            writeln!(rejects, "{line}").map_err(|e| DataError::io("graph rejects", e))?;
        }
        rejects
            .flush()
            .map_err(|e| DataError::io("graph rejects", e))?;
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
        lines.push(format!("timings: {}", timings.join(", ")));
        lines.extend(
            report
                .rejected
                .iter()
                .take(SHOWN_REJECTS)
                .map(|r| format!("left out {} row {}: {}", r.source, r.row, r.reason)),
        );
        if report.rejected.len() > SHOWN_REJECTS {
            lines.push(format!(
                "... and {} more row(s) left out (all are in {})",
                report.rejected.len() - SHOWN_REJECTS,
                rejects_name(&self.output)
            ));
        }
        Ok(Summary {
            lines,
            rejected: report.rejected.len(),
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
    file: Option<tempfile::NamedTempFile>,
    count: usize,
) -> Result<(), DataError> {
    match file {
        Some(f) if count > 0 => output.publish(name, f).await,
        _ => output.remove(name).await,
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
