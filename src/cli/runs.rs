//! `runs list|show`, `logs`, `clear`, `backfill`.

use super::output::{duration, json, table, time};
use super::{Config, Format, Outcome, RunsCommand, notify_server, open};
use crate::ids::{DagId, TaskId};
use crate::service::{self, ServiceError};
use crate::state::RunState;
use crate::store::RunRow;

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
    let store = crate::store::Store::open(&config.database_url, 1).await?;
    let dag = dag.map(DagId::new);
    let runs = store.list_runs(dag.as_ref(), state, limit).await?;
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
    let store = crate::store::Store::open(&config.database_url, 1).await?;
    let run = service::find_run(&store, run_id, dag).await?;
    let children = service::children(&store, run.key).await?;
    let detail = service::run_detail(&store, run).await?;
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
        table(&RUN_HEADER, &run_rows(&children));
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
    let store = crate::store::Store::open(&config.database_url, 1).await?;
    let run = service::find_run(&store, run_id, dag).await?;
    let task = TaskId::new(task_id);
    let ti = store
        .task_instances(run.key)
        .await?
        .into_iter()
        .find(|t| t.task_id == task);
    let Some(ti) = ti else {
        return Err(
            ServiceError::Invalid(format!("run '{run_id}' has no task '{task_id}'")).into(),
        );
    };
    let try_number = try_number.unwrap_or(ti.try_number.max(1));
    if try_number == 0 || try_number > ti.try_number.max(1) {
        return Err(ServiceError::Invalid(format!(
            "task '{task_id}' of run '{run_id}' has no try {try_number} (it has {})",
            ti.try_number
        ))
        .into());
    }
    let lines = store.logs(run.key, &task, try_number).await?;
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

pub(super) async fn clear(
    config: &Config,
    run_id: &str,
    failed: bool,
    dag: Option<&str>,
) -> anyhow::Result<Outcome> {
    let (store, bag) = open(config).await?;
    let run = service::find_run(&store, run_id, dag).await?;
    let cleared = service::clear(&store, &bag, run, failed).await?;
    let names: Vec<&str> = cleared.tasks.iter().map(TaskId::as_str).collect();
    println!(
        "cleared {} task(s) of {} run {}: {}",
        names.len(),
        cleared.run.dag_id,
        cleared.run.run_id,
        names.join(", ")
    );
    server_note(config).await;
    Ok(Outcome::Success)
}

pub(super) async fn backfill(
    config: &Config,
    dag_id: &str,
    req: service::BackfillRequest<'_>,
) -> anyhow::Result<Outcome> {
    let (store, bag) = open(config).await?;
    let report = service::backfill(&store, &bag, dag_id, req, chrono::Utc::now()).await?;
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
        server_note(config).await;
    }
    Ok(Outcome::Success)
}

async fn server_note(config: &Config) {
    if !notify_server(config).await {
        println!(
            "note: no server answers at {}; queued runs start when `orchestrator serve` runs",
            config.bind
        );
    }
}
