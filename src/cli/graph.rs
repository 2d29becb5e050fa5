//! `graph top-journals` and `graph related-drugs <drug>`: analyses of the produced graph.

use super::output::json;
use super::{Config, Format, GraphCommand, Outcome};
use crate::data::Location;
use crate::graph::Graph;
use crate::graph::analysis::{related_drugs, top_journals};
use crate::service::ServiceError;

pub(super) async fn execute(config: &Config, cmd: GraphCommand) -> anyhow::Result<Outcome> {
    match cmd {
        GraphCommand::TopJournals { graph, output } => {
            let top = top_journals(&read(config, graph.as_deref()).await?);
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
            let related = related_drugs(&read(config, graph.as_deref()).await?, &drug)
                .map_err(ServiceError::Invalid)?;
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

/// Reads the graph: `--graph` (a path or URL) or `graph.json` in the output store.
async fn read(config: &Config, explicit: Option<&str>) -> anyhow::Result<Graph> {
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
    let shown = location.display(&name);
    let copy = location.fetch(&name).await.map_err(|e| {
        anyhow::anyhow!(
            "{e} (build it with `orchestrator run drugs_orchestrator`, or pass --graph)"
        )
    })?;
    let text = std::fs::read_to_string(copy.path()).map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{shown}: not a drug graph: {e}"))
}
