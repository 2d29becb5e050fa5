//! `trigger` and `run`: queue a run (for a server, or for this process) and, for `run` and
//! `trigger --wait`, follow it to its end with live progress.

use std::time::Duration;

use chrono::Local;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Config, Outcome, notify_server, open};
use crate::scheduler::{Mode, Progress, SchedulerConfig};
use crate::service::{self, Service, TriggerRequest};
use crate::service::{Owner, RunRow};
use crate::state::{RunState, TaskState};

/// How often `trigger --wait` re-reads a run executed by the server.
const WAIT_POLL: Duration = Duration::from_millis(50);

pub(super) async fn trigger(
    config: &Config,
    dag_id: &str,
    conf: Option<&str>,
    wait: bool,
) -> anyhow::Result<Outcome> {
    let conf = service::parse_conf(conf)?;
    let service = open(config).await?;
    let dag = service.dag(dag_id)?;
    // `--wait` without a server runs it here; the run is reserved so a server starting
    // meanwhile leaves it alone.
    let paused = service.paused(&dag.id).await?;
    let here = wait && !paused && !notify_server(config, &service).await;
    // The warehouse is checked before the run is queued: an unreachable one leaves no run.
    let (scheduler, owner) = match here {
        true => (
            Some(scheduler_here(config).await?),
            Some(service.register_foreground(config.lease).await?),
        ),
        false => (None, None),
    };
    let request = TriggerRequest {
        conf,
        owner: owner.clone(),
    };
    let run = service.trigger(dag_id, request).await?;
    println!("queued {} run {}", run.dag_id, run.run_id);
    if let (Some(owner), Some(scheduler)) = (owner, scheduler) {
        return execute_here(scheduler, &service, run, owner).await;
    }
    if !notify_server(config, &service).await {
        println!(
            "note: no server answers at {}; the run starts when `orchestrator serve` runs \
             (or use `orchestrator run`)",
            config.bind
        );
    }
    if paused {
        // A paused DAG's run waits, as in Airflow; `--wait` would wait until someone
        // unpauses it, which is better said than done silently.
        println!("note: DAG {dag_id} is paused: the run starts once it is unpaused");
        if wait {
            return Ok(Outcome::Failed);
        }
    }
    if wait {
        follow(&service, run).await
    } else {
        Ok(Outcome::Success)
    }
}

pub(super) async fn run(
    config: &Config,
    dag_id: &str,
    conf: Option<&str>,
) -> anyhow::Result<Outcome> {
    let conf = service::parse_conf(conf)?;
    let service = open(config).await?;
    let scheduler = scheduler_here(config).await?;
    let owner = service.register_foreground(config.lease).await?;
    let request = TriggerRequest {
        conf,
        owner: Some(owner.clone()),
    };
    let run = service.trigger(dag_id, request).await?;
    println!("running {} run {}", run.dag_id, run.run_id);
    execute_here(scheduler, &service, run, owner).await
}

/// The settings of a scheduler that runs tasks in this process, its warehouse reachable.
async fn scheduler_here(config: &Config) -> anyhow::Result<SchedulerConfig> {
    let scheduler = crate::daemon::scheduler_config(config)?;
    scheduler.data.warehouse.check().await?;
    Ok(scheduler)
}

/// Executes a run reserved for this process (and the runs it triggers), printing progress.
async fn execute_here(
    scheduler: SchedulerConfig,
    service: &Service,
    run: RunRow,
    owner: Owner,
) -> anyhow::Result<Outcome> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    tokio::spawn(crate::daemon::stop_on_signal(shutdown.clone()));
    let mode = Mode::Foreground { root: run.key };
    let engine = service.start_engine(mode, scheduler, owner, shutdown.clone(), Some(tx));
    while let Some(p) = rx.recv().await {
        print_progress(&p);
    }
    engine.done.await??;
    shutdown.cancel();
    let end = service
        .refresh(&run)
        .await
        .map_or(RunState::Failed, |r| r.state);
    finish(service, &run, end).await
}

fn print_progress(p: &Progress) {
    let now = Local::now().format("%H:%M:%S%.3f");
    match p {
        Progress::TaskStarted {
            dag_id,
            task_id,
            try_number,
            ..
        } => {
            println!("[{now}] {dag_id}.{task_id}: running (try {try_number})");
        }
        Progress::TaskState {
            dag_id,
            task_id,
            state,
            error,
            ..
        } => {
            let why = error
                .as_deref()
                .filter(|_| *state != TaskState::Success)
                .map(|e| format!(": {}", crate::redact::text(e)));
            println!(
                "[{now}] {dag_id}.{task_id}: {state}{}",
                why.unwrap_or_default()
            );
        }
        Progress::RunFinished {
            dag_id,
            run_id,
            state,
        } => println!("[{now}] {dag_id} run {run_id}: {state}"),
    }
}

/// `trigger --wait` with a server: watch the store until the run ends.
async fn follow(service: &Service, run: RunRow) -> anyhow::Result<Outcome> {
    let end = service
        .wait(&run, WAIT_POLL, |now| {
            println!(
                "[{}] {} run {}: {}",
                Local::now().format("%H:%M:%S%.3f"),
                now.dag_id,
                now.run_id,
                now.state
            );
        })
        .await?;
    finish(service, &end, end.state).await
}

async fn finish(service: &Service, run: &RunRow, state: RunState) -> anyhow::Result<Outcome> {
    if state == RunState::Success {
        println!("{} run {} succeeded", run.dag_id, run.run_id);
        return Ok(Outcome::Success);
    }
    let failed: Vec<String> = service
        .run_detail(run.clone())
        .await?
        .task_instances
        .into_iter()
        .filter(|t| t.state == Some(TaskState::Failed))
        .map(|t| format!("{} ({})", t.task_id, t.error.unwrap_or_default()))
        .collect();
    println!(
        "{} run {} {state}; failed tasks: {}",
        run.dag_id,
        run.run_id,
        if failed.is_empty() {
            "none".into()
        } else {
            failed.join(", ")
        }
    );
    Ok(Outcome::Failed)
}
