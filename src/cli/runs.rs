//! `runs list|show`, `logs`, `clear`, `backfill`.

use super::output::{duration, json, table, time};
use super::{Config, Format, Outcome, RunsCommand, notify_server, open, open_runs};
use crate::ids::{DagId, TaskId};
use crate::service::{self, ServiceError};
use crate::service::{RunQuery, RunRow};
use crate::state::RunState;

pub(super) async fn execute(config: &Config, cmd: RunsCommand) -> anyhow::Result<Outcome> {
    match cmd {
        RunsCommand::List {
            dag,
            state,
            limit,
            output,
        } => {
            list(
                config,
                dag.as_deref(),
                state.as_deref(),
                limit,
                output.format,
            )
            .await
        }
        RunsCommand::Show {
            run_id,
            dag,
            output,
        } => show(config, &run_id, dag.as_deref(), output.format).await,
    }
}

fn run_rows(runs: &[RunRow]) -> Vec<Vec<String>> {
    runs.iter()
        .map(|r| {
            vec![
                r.dag_id.to_string(),
                r.run_id.to_string(),
                r.state.to_string(),
                r.run_type.to_string(),
                time(Some(r.logical_date)),
                duration(r.start_date, r.end_date),
            ]
        })
        .collect()
}

const RUN_HEADER: [&str; 6] = [
    "DAG_ID",
    "RUN_ID",
    "STATE",
    "RUN_TYPE",
    "LOGICAL_DATE",
    "DURATION",
];

async fn list(
    config: &Config,
    dag: Option<&str>,
    state: Option<&str>,
    limit: u32,
    format: Format,
) -> anyhow::Result<Outcome> {
    let state = state
        .map(|s| {
            s.parse::<RunState>()
                .map_err(|e| ServiceError::Invalid(format!("--state: {e}")))
        })
        .transpose()?;
    let query = RunQuery {
        dags: dag.map(DagId::new).into_iter().collect(),
        states: state.into_iter().collect(),
        limit,
        ..RunQuery::default()
    };
    let (runs, _) = open_runs(config).await?.list_runs(&query).await?;
    match format {
        Format::Json => json(&runs)?,
        Format::Table => table(&RUN_HEADER, &run_rows(&runs)),
    }
    Ok(Outcome::Success)
}

async fn show(
    config: &Config,
    run_id: &str,
    dag: Option<&str>,
    format: Format,
) -> anyhow::Result<Outcome> {
    let service = open_runs(config).await?;
    let run = service.find_run(run_id, dag).await?;
    let detail = service.run_detail(run).await?;
    let children = &detail.children;
    if format == Format::Json {
        json(&detail)?;
        return Ok(Outcome::Success);
    }
    let r = &detail.run;
    println!("dag_id:        {}", r.dag_id);
    println!("run_id:        {}", r.run_id);
    println!("state:         {}", r.state);
    println!("run_type:      {}", r.run_type);
    println!("logical_date:  {}", r.logical_date.to_rfc3339());
    println!("conf:          {}", r.conf);
    if let Some(version) = &r.dag_version {
        println!("dag_version:   {version}");
    }
    println!("started:       {}", time(r.start_date));
    println!(
        "ended:         {}   ({})",
        time(r.end_date),
        duration(r.start_date, r.end_date)
    );
    if let Some(note) = &r.note {
        println!("note:          {note}");
    }
    println!();
    let rows: Vec<Vec<String>> = detail
        .task_instances
        .iter()
        .map(|t| {
            vec![
                t.task_id.to_string(),
                t.state
                    .map_or_else(|| "none".to_string(), |s| s.to_string()),
                t.try_number.to_string(),
                time(t.start_date),
                duration(t.start_date, t.end_date),
                t.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &["TASK_ID", "STATE", "TRY", "STARTED", "DURATION", "ERROR"],
        &rows,
    );
    if !children.is_empty() {
        println!("\ntriggered runs:");
        table(&RUN_HEADER, &run_rows(children));
    }
    Ok(Outcome::Success)
}

pub(super) async fn logs(
    config: &Config,
    run_id: &str,
    task_id: &str,
    try_number: Option<u32>,
    dag: Option<&str>,
    format: Format,
) -> anyhow::Result<Outcome> {
    let service = open_runs(config).await?;
    let run = service.find_run(run_id, dag).await?;
    let task = service.task_logs(&run, task_id, try_number).await?;
    let lines = service
        .log(&run, &task.instance.task_id, task.try_number)
        .await?;
    if format == Format::Json {
        json(&lines)?;
        return Ok(Outcome::Success);
    }
    // A dropped middle is one stored marker line (level DROP), printed like any other.
    for line in lines {
        println!(
            "[{}] {:<6} {}",
            line.ts.format("%Y-%m-%d %H:%M:%S%.3f"),
            line.level,
            // Lines stored before masking existed are masked as they are shown.
            crate::redact::text(&line.message)
        );
    }
    Ok(Outcome::Success)
}

/// What `clear` resets.
pub(super) enum ClearWhat {
    /// Every task.
    All,
    /// Failed tasks and their downstream.
    Failed,
    /// One task, with or without its downstream.
    Task { task: String, downstream: bool },
}

pub(super) async fn clear(
    config: &Config,
    run_id: &str,
    what: ClearWhat,
    dag: Option<&str>,
) -> anyhow::Result<Outcome> {
    let service = open(config).await?;
    let run = service.find_run(run_id, dag).await?;
    let cleared = match what {
        ClearWhat::All => service.clear(run, false).await?,
        ClearWhat::Failed => service.clear(run, true).await?,
        ClearWhat::Task { task, downstream } => service.clear_task(run, &task, downstream).await?,
    };
    let names: Vec<&str> = cleared.tasks.iter().map(TaskId::as_str).collect();
    println!(
        "cleared {} task(s) of {} run {}: {}",
        names.len(),
        cleared.run.dag_id,
        cleared.run.run_id,
        names.join(", ")
    );
    server_note(config, &service).await;
    Ok(Outcome::Success)
}

pub(super) async fn mark(
    config: &Config,
    run_id: &str,
    task: &str,
    state: crate::state::TaskState,
    dag: Option<&str>,
) -> anyhow::Result<Outcome> {
    let service = open_runs(config).await?;
    let run = service.find_run(run_id, dag).await?;
    let marked = service.mark(run, task, state).await?;
    println!(
        "marked {} of {} run {} {}; the run is {}",
        marked.task_id, marked.run.dag_id, marked.run.run_id, marked.state, marked.run.state
    );
    Ok(Outcome::Success)
}

pub(super) async fn backfill(
    config: &Config,
    dag_id: &str,
    req: service::BackfillRequest<'_>,
) -> anyhow::Result<Outcome> {
    let service = open(config).await?;
    let report = service.backfill(dag_id, req, chrono::Utc::now()).await?;
    let (queue, again, skip) = if report.dry_run {
        ("would queue", "would run", "would skip")
    } else {
        ("queued", "ran", "skipped")
    };
    println!(
        "{queue} {} backfill run(s) of {dag_id}; {again} {} existing run(s) again; \
         {skip} {} date(s) that have a run",
        report.created.len(),
        report.reprocessed.len(),
        report.skipped.len()
    );
    let mut dates: Vec<_> = report
        .created
        .iter()
        .map(|d| (d, "new"))
        .chain(report.reprocessed.iter().map(|d| (d, "again")))
        .chain(report.skipped.iter().map(|d| (d, "skipped")))
        .collect();
    dates.sort_unstable();
    for (date, what) in dates {
        println!(
            "  {}  {what}",
            date.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
    }
    if !report.dry_run {
        server_note(config, &service).await;
    }
    Ok(Outcome::Success)
}

async fn server_note(config: &Config, service: &service::Service) {
    if !notify_server(config, service).await {
        println!(
            "note: no server answers at {}; queued runs start when `orchestrator serve` runs",
            config.bind
        );
    }
}
