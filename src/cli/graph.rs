//! `graph top-journals` and `graph related-drugs <drug>`: analyses of the produced graph.
//! Both read the graph as a stream (one drug node at a time), so memory does not grow with
//! it; `top-journals` first takes the `top_journals.json` the task wrote beside the graph.

use std::io::BufReader;

use super::output::json;
use super::{Config, Format, GraphCommand, Outcome};
use crate::data::Location;
use crate::data::location::LocalCopy;
use crate::graph::TopJournals;
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
            let copy = found.fetch().await?;
            let path = copy.path().to_path_buf();
            let wanted = drug.clone();
            let related = tokio::task::spawn_blocking(move || {
                stream::related_drugs(
                    || {
                        Ok(BufReader::with_capacity(
                            READ_BUFFER,
                            std::fs::File::open(&path)?,
                        ))
                    },
                    &wanted,
                )
            })
            .await?
            .map_err(|e| match e {
                StreamError::UnknownDrug(_) => {
                    anyhow::Error::from(ServiceError::Invalid(e.to_string()))
                }
                e => anyhow::anyhow!("{}: {e}", found.shown()),
            })?;
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
    let path = copy.path().to_path_buf();
    let top = tokio::task::spawn_blocking(move || -> Result<TopJournals, StreamError> {
        stream::top_journals(BufReader::with_capacity(
            READ_BUFFER,
            std::fs::File::open(&path)?,
        ))
    })
    .await?;
    drop(copy);
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
