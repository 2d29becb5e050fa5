//! `graph top-journals` and `graph related-drugs <drug>`: analyses of the produced graph.
//! Each first takes what the task wrote beside the graph — `top_journals.json`, the journal
//! index (`graph.journals.jsonl`, see [`crate::graph::index`]) — when it is there and current;
//! otherwise it reads the graph as a stream (one drug node at a time), so memory does not
//! grow with it either way.

use std::io::{BufReader, Seek};
use std::path::Path;

use super::output::json;
use super::{Config, Format, GraphCommand, Outcome};
use crate::data::Location;
use crate::data::location::LocalCopy;
use crate::graph::TopJournals;
use crate::graph::index::{self, GraphStamp, IndexError, index_name};
use crate::graph::stream::{self, StreamError};
use crate::service::ServiceError;

/// Read buffer for streaming the graph.
const READ_BUFFER: usize = 1 << 20;

pub(super) async fn execute(config: &Config, cmd: GraphCommand) -> anyhow::Result<Outcome> {
    match cmd {
        GraphCommand::TopJournals { graph, output } => {
            let top = top_journals(config, graph.as_deref()).await?;
            match output.format {
                Format::Json => json(&top)?,
                Format::Table => {
                    println!("{} distinct drug(s), mentioned by:", top.max_distinct_drugs);
                    top.journals.iter().for_each(|j| println!("  {j}"));
                }
            }
        }
        GraphCommand::RelatedDrugs {
            drug,
            graph,
            output,
        } => {
            let found = locate(config, graph.as_deref())?;
            let related = match indexed_related(&found, &drug).await? {
                Some(related) => related,
                None => streamed_related(&found, &drug).await?,
            };
            match output.format {
                Format::Json => json(
                    &serde_json::json!({"drug": drug.trim().to_uppercase(), "related_drugs": related}),
                )?,
                Format::Table => related.iter().for_each(|d| println!("{d}")),
            }
        }
    }
    Ok(Outcome::Success)
}

/// A reader of a local file, buffered for streaming.
fn open_buffered(path: &Path) -> std::io::Result<BufReader<std::fs::File>> {
    Ok(BufReader::with_capacity(
        READ_BUFFER,
        std::fs::File::open(path)?,
    ))
}

/// Readers of one opened file, each from its start: the passes of an analysis read the
/// same file even when the task publishes a new one under its name meanwhile.
fn rereader(
    path: &Path,
) -> std::io::Result<impl FnMut() -> std::io::Result<BufReader<std::fs::File>>> {
    let file = std::fs::File::open(path)?;
    Ok(move || {
        let mut f = file.try_clone()?;
        f.seek(std::io::SeekFrom::Start(0))?;
        Ok(BufReader::with_capacity(READ_BUFFER, f))
    })
}

/// The related drugs from the journal index the task wrote beside the graph, when it is
/// current (see [`current_index`]) and made with this graph (its size and, locally, time); `None`
/// otherwise (the caller streams the graph). An unknown drug is an error only once the index
/// is found good.
async fn indexed_related(found: &Found, drug: &str) -> anyhow::Result<Option<Vec<String>>> {
    let Some((copy, graph)) = current_index(found).await else {
        return Ok(None);
    };
    let wanted = drug.to_string();
    let answer = tokio::task::spawn_blocking(move || {
        index::related_drugs(rereader(copy.path())?, &wanted, graph)
    })
    .await?;
    let shown = found.location.display(&index_name(&found.name));
    match answer {
        Ok(related) => {
            tracing::debug!("{shown}: answered from the index");
            Ok(Some(related))
        }
        Err(e @ IndexError::UnknownDrug(_)) => Err(ServiceError::Invalid(e.to_string()).into()),
        Err(e) => {
            tracing::debug!("{shown}: not used: {e}");
            Ok(None)
        }
    }
}

/// A local copy of the journal index beside the graph, and the graph's stamp, when both are
/// there and the index is not older than the graph (remotely: by the store's `Last-Modified`;
/// the graph is not downloaded).
async fn current_index(found: &Found) -> Option<(LocalCopy, GraphStamp)> {
    let (location, name) = (&found.location, index_name(&found.name));
    let not_used = |why: &dyn std::fmt::Display| {
        tracing::debug!("{}: not used: {why}", location.display(&name));
    };
    let (graph, index) = tokio::join!(location.stat(&found.name), location.stat(&name));
    let (graph, index) = match (graph, index) {
        (Ok(graph), Ok(index)) => (graph, index),
        (Err(e), _) | (_, Err(e)) => {
            not_used(&e);
            return None;
        }
    };
    if index.modified < graph.modified {
        not_used(&"older than the graph");
        return None;
    }
    match location.fetch(&name).await {
        Ok(copy) => Some((
            copy,
            match location {
                Location::Local(_) => GraphStamp::local(graph.bytes, Some(graph.modified)),
                _ => GraphStamp::size(graph.bytes),
            },
        )),
        Err(e) => {
            not_used(&e);
            None
        }
    }
}

/// The related drugs in two streamed passes over the graph.
async fn streamed_related(found: &Found, drug: &str) -> anyhow::Result<Vec<String>> {
    let copy = found.fetch().await?;
    let wanted = drug.to_string();
    tokio::task::spawn_blocking(move || stream::related_drugs(rereader(copy.path())?, &wanted))
        .await?
        .map_err(|e| match e {
            StreamError::UnknownDrug(_) => {
                anyhow::Error::from(ServiceError::Invalid(e.to_string()))
            }
            e => anyhow::anyhow!("{}: {e}", found.shown()),
        })
}

/// The `top_journals.json` the task wrote beside the graph when there is one (and, for
/// local files, it is not older than the graph); otherwise one streamed pass over the graph.
async fn top_journals(config: &Config, explicit: Option<&str>) -> anyhow::Result<TopJournals> {
    let found = locate(config, explicit)?;
    // Only the task's default names are known to belong together.
    if found.name == "graph.json"
        && let Some(top) = written_top(&found, "top_journals.json").await
    {
        return Ok(top);
    }
    let copy = found.fetch().await?;
    let top = tokio::task::spawn_blocking(move || -> Result<TopJournals, StreamError> {
        stream::top_journals(open_buffered(copy.path())?)
    })
    .await?;
    top.map_err(|e| anyhow::anyhow!("{}: {e}", found.shown()))
}

/// The written top journals, if present, readable and not stale.
async fn written_top(found: &Found, name: &str) -> Option<TopJournals> {
    if let Location::Local(dir) = &found.location {
        let modified = |n: &str| {
            std::fs::metadata(dir.join(n))
                .and_then(|m| m.modified())
                .ok()
        };
        if modified(name)? < modified(&found.name)? {
            return None;
        }
    }
    let copy = found.location.fetch(name).await.ok()?;
    let text = std::fs::read(copy.path()).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Where the graph is.
struct Found {
    location: Location,
    name: String,
}

impl Found {
    fn shown(&self) -> String {
        self.location.display(&self.name)
    }

    /// A local copy of the graph.
    async fn fetch(&self) -> anyhow::Result<LocalCopy> {
        self.location.fetch(&self.name).await.map_err(|e| {
            anyhow::anyhow!(
                "{e} (build it with `orchestrator run drugs_orchestrator`, or pass --graph)"
            )
        })
    }
}

/// The graph: `--graph` (a path or URL) or `graph.json` in the output store.
fn locate(config: &Config, explicit: Option<&str>) -> anyhow::Result<Found> {
    if let Some(p) = explicit.filter(|p| !p.contains("://") || p.starts_with("file://")) {
        let path = std::path::Path::new(p.strip_prefix("file://").unwrap_or(p));
        if path.is_dir() {
            let inside = path.join("graph.json");
            let hint = if inside.is_file() {
                format!(" (did you mean --graph {}?)", inside.display())
            } else {
                String::new()
            };
            anyhow::bail!("{}: is a directory, not a graph file{hint}", path.display());
        }
    }
    let (location, name) = match explicit {
        Some(p) => match p.rsplit_once('/') {
            Some((dir, name)) => (Location::parse(dir)?, name.to_string()),
            None => (Location::Local(".".into()), p.to_string()),
        },
        None => (Location::parse(&config.output)?, "graph.json".to_string()),
    };
    Ok(Found { location, name })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRAPH: &str = concat!(
        "{\"drugs\": [\n",
        "{\"atccode\":null,\"drug\":\"A\",\"pubmed\":[{\"id\":null,\"title\":\"A\",",
        "\"date\":\"2020-01-01\",\"journal\":\"J\"}],\"clinical_trials\":[],",
        "\"journals\":[{\"journal\":\"J\",\"date\":\"2020-01-01\"}]},\n",
        "{\"atccode\":null,\"drug\":\"B\",\"pubmed\":[{\"id\":null,\"title\":\"B\",",
        "\"date\":\"2020-01-01\",\"journal\":\"J\"}],\"clinical_trials\":[],",
        "\"journals\":[{\"journal\":\"J\",\"date\":\"2020-01-01\"}]}\n",
        "]}\n"
    );

    /// An index beside the graph saying what the graph says, or (`claims_b`) that A is
    /// related to nothing: which one answered shows whether the index was used.
    fn index(graph_bytes: usize, claims_b: bool) -> String {
        let b = if claims_b { "[0]" } else { "[1]" };
        format!(
            "{{\"drug\":\"A\",\"pubmed\":[0],\"clinical_trials\":[]}}\n\
             {{\"drug\":\"B\",\"pubmed\":{b},\"clinical_trials\":[]}}\n\
             {{\"journals\":[\"J\",\"K\"],\"drugs\":2,\"graph_bytes\":{graph_bytes}}}\n"
        )
    }

    #[tokio::test]
    async fn a_current_index_answers_and_a_missing_stale_or_broken_one_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let found = Found {
            location: Location::Local(dir.path().to_path_buf()),
            name: "graph.json".into(),
        };
        let graph = dir.path().join("graph.json");
        std::fs::write(&graph, GRAPH).unwrap();
        let index_path = dir.path().join("graph.journals.jsonl");
        let ask = |drug: &'static str| {
            let found = &found;
            async move {
                indexed_related(found, drug)
                    .await
                    .map_err(|e| e.to_string())
            }
        };
        assert_eq!(ask("a").await.unwrap(), None);
        assert_eq!(streamed_related(&found, "a").await.unwrap(), vec!["B"]);
        // The index must answer: it says A has no relation the graph has.
        std::fs::write(&index_path, index(GRAPH.len(), false)).unwrap();
        assert_eq!(ask("a").await.unwrap(), Some(vec![]));
        assert_eq!(
            ask(" z ").await.unwrap_err(),
            "drug 'z' is not in the graph"
        );
        std::fs::write(&index_path, index(GRAPH.len() - 1, false)).unwrap();
        assert_eq!(ask("a").await.unwrap(), None);
        assert_eq!(ask("z").await.unwrap(), None);
        std::fs::write(&index_path, &index(GRAPH.len(), false)[..40]).unwrap();
        assert_eq!(ask("a").await.unwrap(), None);
        std::fs::write(&index_path, index(GRAPH.len(), true)).unwrap();
        assert_eq!(ask("a").await.unwrap(), Some(vec!["B".to_string()]));
        // Older than the graph: made with an earlier one.
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
        let file = std::fs::File::options().write(true).open(&graph).unwrap();
        file.set_modified(later).unwrap();
        assert_eq!(ask("a").await.unwrap(), None);
    }
}
