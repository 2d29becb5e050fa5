//! `drug_graph`: builds the drug-mention graph from the staged drugs, PubMed (CSV and JSON
//! tables together) and clinical-trial tables, and writes `graph.json` and
//! `top_journals.json` to the output store (atomically), plus `graph.rejects.jsonl` listing
//! rows that could not take part and why.

use std::borrow::Cow;
use std::io::Write;

use arrow_array::RecordBatch;
use serde::{Deserialize, Serialize};

use super::{TaskContext, TaskError, TaskOutcome};
use crate::data::parquet_io::read_batches;
use crate::data::table::text_at;
use crate::data::{DataError, Location};
use crate::graph::{GraphBuilder, Prepared, Preparer, RawDrug, RawPublication, Source};

/// Rows left out that the log lists one by one (the rejects file has them all).
const SHOWN_REJECTS: usize = 20;

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
        let fail = |e: DataError| TaskError::Failed(e.to_string());
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
        let files: Vec<std::fs::File> = scratch
            .iter()
            .map(|t| {
                t.reopen()
                    .map_err(|e| DataError::io(&t.path().display().to_string(), e))
            })
            .collect::<Result<_, _>>()
            .map_err(fail)?;
        let summary = tokio::task::spawn_blocking(move || task.build(&drugs_path, &paths, files))
            .await
            .map_err(|e| TaskError::Failed(format!("drug_graph stopped: {e}")))?
            .map_err(fail)?;
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
        files: Vec<std::fs::File>,
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
        read_publications(sources, &mut builder)?;
        timings.push(format!("publications {:.2}s", t.elapsed().as_secs_f64()));
        let t = std::time::Instant::now();
        let built = builder.finish();
        timings.push(format!("sort {:.2}s", t.elapsed().as_secs_f64()));
        let t = std::time::Instant::now();
        let report = built.report();
        let mut files = files.into_iter();
        let mut next = || {
            files
                .next()
                .ok_or_else(|| DataError::Format("missing output file".into()))
        };
        let mut out = std::io::BufWriter::with_capacity(1 << 20, next()?);
        built
            .write_json(&mut out)
            .and_then(|()| out.flush())
            .map_err(|e| DataError::io(&self.output, e))?;
        let top = built.top_journals();
        timings.push(format!("write {:.2}s", t.elapsed().as_secs_f64()));
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

/// Reads the publication tables: batches are cleaned and matched on every core while a
/// separate thread adds the results to the builder, in source order so merging stays
/// deterministic.
fn read_publications(
    sources: &[(String, Source, std::path::PathBuf)],
    builder: &mut GraphBuilder,
) -> Result<(), DataError> {
    let preparer = builder.preparer();
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Prepared>>(4);
        let accumulator = scope.spawn(move || {
            for part in rx {
                part.into_iter().for_each(|p| builder.accept(p));
            }
        });
        let result = sources
            .iter()
            .try_for_each(|(table, kind, path)| prepare_table(table, *kind, path, &preparer, &tx));
        drop(tx);
        accumulator
            .join()
            .map_err(|_| DataError::Format("the graph builder panicked".into()))?;
        result
    })
}

fn prepare_table(
    table: &str,
    kind: Source,
    path: &std::path::Path,
    preparer: &Preparer,
    out: &std::sync::mpsc::SyncSender<Vec<Prepared>>,
) -> Result<(), DataError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let mut done = 0;
    for batch in read_batches(path)? {
        let batch = batch.map_err(|e| DataError::arrow(table, e))?;
        let title = column(&batch, &["title", "scientific_title"])
            .ok_or_else(|| missing(table, "'title' or 'scientific_title'", &batch))?;
        let date = column(&batch, &["date"]).ok_or_else(|| missing(table, "'date'", &batch))?;
        let id = column(&batch, &["id"]);
        let journal = column(&batch, &["journal"]);
        let raw_at = |i: usize| -> Result<RawPublication<'_>, DataError> {
            let text = |c: usize| cell(table, &batch, c, i);
            Ok(RawPublication {
                source: table,
                row: done + i + 1,
                kind,
                id: id.map(text).transpose()?.flatten(),
                title: text(title)?,
                date: text(date)?,
                journal: journal.map(text).transpose()?.flatten(),
            })
        };
        let rows = batch.num_rows();
        let chunk = rows.div_ceil(threads).max(1);
        let parts: Vec<Result<Vec<Prepared>, DataError>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..rows)
                .step_by(chunk)
                .map(|start| {
                    let raw_at = &raw_at;
                    scope.spawn(move || {
                        (start..(start + chunk).min(rows))
                            .map(|i| raw_at(i).map(|raw| preparer.prepare(&raw)))
                            .collect::<Result<Vec<_>, _>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join().unwrap_or_else(|_| {
                        Err(DataError::Format(format!("{table}: a worker panicked")))
                    })
                })
                .collect()
        });
        for part in parts {
            // The receiver only goes away if the builder thread panicked; join reports that.
            if out.send(part?).is_err() {
                break;
            }
        }
        done += rows;
    }
    Ok(())
}
