//! `dags list|show|validate`, `pause`, `unpause`.

use serde::Serialize;

use super::output::{json, table};
use super::{Config, DagsCommand, Format, Outcome, notify_server, open};
use crate::dag::Dag;
use crate::service::DagQuery;

/// A DAG as `dags list -o json` prints it.
#[derive(Serialize)]
struct DagSummary<'a> {
    dag_id: &'a str,
    paused: bool,
    schedule: Option<&'a str>,
    timezone: String,
    tags: &'a [String],
    description: Option<&'a str>,
    fileloc: String,
    project: Option<&'a str>,
}

impl<'a> DagSummary<'a> {
    fn new(dag: &'a Dag, paused: bool) -> Self {
        Self {
            dag_id: dag.id.as_str(),
            paused,
            schedule: dag.schedule_text.as_deref(),
            timezone: dag.timezone.to_string(),
            tags: &dag.tags,
            description: dag.description.as_deref(),
            fileloc: dag.source.path.display().to_string(),
            project: dag.source.project.as_deref(),
        }
    }
}

pub(super) async fn execute(config: &Config, cmd: DagsCommand) -> anyhow::Result<Outcome> {
    match cmd {
        DagsCommand::List(out) => list(config, out.format).await,
        DagsCommand::Show { dag_id, output } => show(config, &dag_id, output.format).await,
        DagsCommand::Validate => Ok(validate(config)),
    }
}

async fn list(config: &Config, format: Format) -> anyhow::Result<Outcome> {
    let listing = open(config).await?.list_dags(&DagQuery::default()).await?;
    let dags: Vec<DagSummary> = listing
        .dags
        .iter()
        .map(|d| DagSummary::new(&d.dag, d.paused))
        .collect();
    match format {
        Format::Json => json(&dags)?,
        Format::Table => {
            let rows: Vec<Vec<String>> = dags
                .iter()
                .map(|d| {
                    vec![
                        d.dag_id.to_string(),
                        if d.paused { "yes" } else { "no" }.into(),
                        d.schedule.unwrap_or("-").to_string(),
                        d.tags.join(","),
                        d.fileloc.clone(),
                    ]
                })
                .collect();
            table(&["DAG_ID", "PAUSED", "SCHEDULE", "TAGS", "FILE"], &rows);
        }
    }
    if !listing.errors.is_empty() {
        eprintln!(
            "warning: {} DAG load error(s); run `orchestrator dags validate`",
            listing.errors.len()
        );
    }
    Ok(Outcome::Success)
}

#[derive(Serialize)]
struct TaskSummary<'a> {
    task_id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    depends_on: Vec<&'a str>,
    trigger_rule: crate::dag::TriggerRule,
    retries: u32,
    execution_timeout_secs: Option<f64>,
    doc: Option<&'a str>,
}

async fn show(config: &Config, dag_id: &str, format: Format) -> anyhow::Result<Outcome> {
    let service = open(config).await?;
    let dag = service.dag(dag_id)?;
    let dag = &dag;
    let paused = service.paused(&dag.id).await?;
    let tasks: Vec<TaskSummary> = dag
        .tasks
        .iter()
        .map(|t| TaskSummary {
            task_id: t.id.as_str(),
            kind: t.kind.type_name(),
            depends_on: t
                .upstream
                .iter()
                .map(|&u| dag.tasks[u].id.as_str())
                .collect(),
            trigger_rule: t.trigger_rule,
            retries: t.retry.retries,
            execution_timeout_secs: t.execution_timeout.map(|d| d.as_secs_f64()),
            doc: t.doc.as_deref(),
        })
        .collect();
    match format {
        Format::Json => {
            #[derive(Serialize)]
            struct Shown<'a> {
                #[serde(flatten)]
                dag: DagSummary<'a>,
                max_active_runs: u32,
                max_active_tasks: u32,
                catchup: bool,
                params: &'a serde_json::Map<String, serde_json::Value>,
                tasks: Vec<TaskSummary<'a>>,
            }
            json(&Shown {
                dag: DagSummary::new(dag, paused),
                max_active_runs: dag.max_active_runs,
                max_active_tasks: dag.max_active_tasks,
                catchup: dag.timetable.as_ref().is_some_and(|t| t.catchup),
                params: &dag.params,
                tasks,
            })?;
        }
        Format::Table => {
            println!("dag_id:    {}", dag.id);
            println!(
                "schedule:  {}",
                dag.schedule_text
                    .as_deref()
                    .unwrap_or("none (manual runs only)")
            );
            println!("paused:    {paused}");
            println!("file:      {}", dag.source.path.display());
            if let Some(d) = &dag.description {
                println!("about:     {d}");
            }
            println!();
            let rows: Vec<Vec<String>> = tasks
                .iter()
                .map(|t| {
                    vec![
                        t.task_id.to_string(),
                        t.kind.to_string(),
                        t.depends_on.join(","),
                        serde_json::to_value(t.trigger_rule)
                            .ok()
                            .and_then(|v| v.as_str().map(String::from))
                            .unwrap_or_default(),
                        t.retries.to_string(),
                    ]
                })
                .collect();
            table(
                &["TASK_ID", "TYPE", "DEPENDS_ON", "TRIGGER_RULE", "RETRIES"],
                &rows,
            );
        }
    }
    Ok(Outcome::Success)
}

fn validate(config: &Config) -> Outcome {
    let bag = crate::daemon::sources(config).load();
    for e in &bag.errors {
        println!("error: {}", crate::redact::text(&e.to_string()));
    }
    println!(
        "{} DAG(s) valid, {} error(s)",
        bag.dags.len(),
        bag.errors.len()
    );
    if bag.errors.is_empty() {
        Outcome::Success
    } else {
        Outcome::Failed
    }
}

pub(super) async fn pause(config: &Config, dag_id: &str, paused: bool) -> anyhow::Result<Outcome> {
    let service = open(config).await?;
    let before = service.set_paused(dag_id, paused).await?;
    notify_server(config, &service).await;
    let word = if paused { "paused" } else { "unpaused" };
    if before == paused {
        println!("{dag_id} was already {word}");
    } else {
        println!("{dag_id} {word}");
    }
    Ok(Outcome::Success)
}
