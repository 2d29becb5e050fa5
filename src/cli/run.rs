//! `trigger` and `run`: queue a run (for a server, or for this process) and, for `run` and
//! `trigger --wait`, follow it to its end with live progress.

use std::sync::Arc;
use std::time::Duration;

use chrono::Local;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Config, Outcome, notify_server, open};
use crate::scheduler::{Engine, Mode, Progress};
use crate::service;
use crate::state::{RunState, TaskState};
use crate::store::{InstanceKind, Owner, RunRow, Store};

/// How often `trigger --wait` re-reads a run executed by the server.
const WAIT_POLL: Duration = Duration::from_millis(50);

pub(super) async fn trigger(
    config: &Config,
    dag_id: &str,
    conf: Option<&str>,
    wait: bool,
) -> anyhow::Result<Outcome> {
    let conf = service::parse_conf(conf)?;
    let (store, bag) = open(config).await?;
    service::dag(&bag, dag_id)?;
    // `--wait` without a server runs it here; the run is reserved so a server starting
    // meanwhile leaves it alone.
    let dag = crate::ids::DagId::new(dag_id);
    let paused = store
        .paused_flags()
        .await?
        .get(&dag)
        .copied()
        .unwrap_or(false);
    let here = wait && !paused && !notify_server(config).await;
    let owner = match here {
        true => Some(register(&store, config).await?),
        false => None,
    };
    let run = service::trigger(&store, &bag, dag_id, conf, owner.clone()).await?;
    println!("queued {} run {}", run.dag_id, run.run_id);
    if let Some(owner) = owner {
        return execute_here(config, store, Arc::new(bag), run, owner).await;
    }
    if !notify_server(config).await {
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
        follow(&store, run).await
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
    let (store, bag) = open(config).await?;
    let owner = register(&store, config).await?;
    let run = service::trigger(&store, &bag, dag_id, conf, Some(owner.clone())).await?;
    println!("running {} run {}", run.dag_id, run.run_id);
    execute_here(config, store, Arc::new(bag), run, owner).await
}

/// Registers this process as an instance that executes runs (with a lease).
async fn register(store: &Store, config: &Config) -> anyhow::Result<Owner> {
    Ok(store
        .register_instance(InstanceKind::Foreground, config.lease)
        .await?)
}

/// Executes a run reserved for this process (and the runs it triggers), printing progress.
async fn execute_here(
    config: &Config,
    store: Store,
    bag: Arc<crate::dag::DagBag>,
    run: RunRow,
    owner: Owner,
) -> anyhow::Result<Outcome> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    tokio::spawn(crate::daemon::stop_on_signal(shutdown.clone()));
    let mode = Mode::Foreground { root: run.key };
    let engine = Engine::start(
        store.clone(),
        bag,
        mode,
        crate::daemon::scheduler_config(config)?,
        owner,
        shutdown.clone(),
        Some(tx),
    );
    while let Some(p) = rx.recv().await {
        print_progress(&p);
    }
    engine.done.await??;
    shutdown.cancel();
    let end = store
        .run(run.key)
        .await?
        .map_or(RunState::Failed, |r| r.state);
    finish(&store, &run, end).await
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
async fn follow(store: &Store, run: RunRow) -> anyhow::Result<Outcome> {
    let mut last = run.state;
    loop {
        let Some(now) = store.run(run.key).await? else {
            anyhow::bail!("run {} disappeared", run.run_id)
        };
        if now.state != last {
            println!(
                "[{}] {} run {}: {}",
                Local::now().format("%H:%M:%S%.3f"),
                now.dag_id,
                now.run_id,
                now.state
            );
            last = now.state;
        }
        if now.state.is_finished() {
            return finish(store, &now, now.state).await;
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
}

async fn finish(store: &Store, run: &RunRow, state: RunState) -> anyhow::Result<Outcome> {
    if state == RunState::Success {
        println!("{} run {} succeeded", run.dag_id, run.run_id);
        return Ok(Outcome::Success);
    }
    let failed: Vec<String> = store
        .task_instances(run.key)
        .await?
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
