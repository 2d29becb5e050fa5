//! `orchestrator serve`: wires the store, the DAG loader and its file watcher, the
//! scheduler, the metrics they record into and the HTTP listener, and shuts them down
//! together on SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::dag::DagBag;
use crate::dag::watch::{DagSources, watch as watch_dags};
use crate::data::warehouse::Warehouse;
use crate::data::{DataError, DataPaths, Location};
use crate::metrics::Metrics;
use crate::scheduler::{Engine, LeaseTiming, Mode, SchedulerConfig};
use crate::store::{InstanceKind, Store};
use crate::web::{AppState, router_on};

/// How long requests in flight at shutdown may take to finish.
const WEB_SHUTDOWN: Duration = Duration::from_secs(5);

/// Runs the daemon until a signal stops it. A non-loopback `bind` needs users (or
/// `insecure_no_auth`), and then requires authentication for the server's whole life.
pub async fn serve(
    config: &Config,
    bind: Option<SocketAddr>,
    insecure_no_auth: bool,
) -> anyhow::Result<()> {
    let bind = bind.unwrap_or(config.bind);
    let open_files = crate::web::raise_open_file_limit();
    let max_connections = crate::web::connection_limit(config.max_connections, open_files);
    let store = Store::open(&config.database_url, 4).await?;
    check_exposure(&store, bind, insecure_no_auth).await?;
    let sources = sources(config);
    let metrics = Metrics::new();
    let bag = Arc::new(
        tokio::task::spawn_blocking({
            let s = sources.clone();
            move || s.load()
        })
        .await?,
    );
    report_load(&bag, &metrics);
    store.ensure_dags(bag.dags.keys()).await?;
    let scheduler = scheduler_config(config)?;
    // An unreachable PostgreSQL warehouse is a set-up error, said once at start (exit 2) like
    // an unreachable state database, rather than by every load that would fail.
    scheduler.data.warehouse.check().await?;
    let listener = TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    let bound = listener.local_addr()?;
    // Signal handlers go in before the address is announced: whoever starts `serve` may
    // stop it as soon as it answers, before the rest of the start-up has run.
    let shutdown = CancellationToken::new();
    let signals = stop_on_signal(shutdown.clone());
    tracing::info!(
        dags = bag.dags.len(),
        max_connections,
        "orchestrator serving on http://{bound}"
    );

    let owner = store
        .register_instance(InstanceKind::Serve, config.lease)
        .await?;
    tracing::info!(instance = %owner.id, "registered as an instance with a lease of {}", humantime::format_duration(config.lease));
    let engine = Engine::start(
        store.clone(),
        bag.clone(),
        Mode::Serve,
        SchedulerConfig {
            metrics: metrics.clone(),
            ..scheduler
        },
        owner,
        shutdown.clone(),
        None,
    );
    let listen = match store.work_listener().await {
        Ok(Some(listener)) => Some(tokio::spawn(wake_on_notify(
            listener,
            engine.handle.clone(),
            shutdown.clone(),
        ))),
        Ok(None) => None,
        // The safety poll still picks work up; only the instant wake-up is lost.
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for other instances' wake-ups; relying on the poll");
            None
        }
    };
    let (dags_tx, dags_rx) = watch::channel(bag);
    let reload_store = store.clone();
    let reload_engine = engine.handle.clone();
    let dags_tx = Arc::new(dags_tx);
    let reload_metrics = metrics.clone();
    let (_watcher, watch_task) = watch_dags(sources, shutdown.clone(), move |bag: Arc<DagBag>| {
        let (store, engine, dags_tx) =
            (reload_store.clone(), reload_engine.clone(), dags_tx.clone());
        report_load(&bag, &reload_metrics);
        async move {
            if let Err(e) = store.ensure_dags(bag.dags.keys()).await {
                tracing::error!(error = %e, "cannot record reloaded DAGs");
            }
            dags_tx.send_replace(bag.clone());
            let _ = engine.dags_changed(bag).await;
        }
    })
    .context("cannot watch the DAG folder")?;

    let service = crate::service::Service::new(store.clone(), dags_rx, Some(engine.handle.clone()))
        .with_metrics(metrics)
        .with_auth_required(!bind.ip().is_loopback() && !insecure_no_auth);
    let app = router_on(AppState { service }, bound);
    tokio::spawn(signals);
    let web = tokio::spawn(crate::web::serve(
        listener,
        app,
        max_connections,
        shutdown.clone(),
    ));

    let result = engine.done.await;
    shutdown.cancel();
    if tokio::time::timeout(WEB_SHUTDOWN, web).await.is_err() {
        tracing::warn!(
            "HTTP requests still in flight after {}; closing their connections",
            humantime::format_duration(WEB_SHUTDOWN)
        );
    }
    let _ = watch_task.await;
    if let Some(listen) = listen {
        let _ = listen.await;
    }
    store.close().await;
    tracing::info!("orchestrator stopped");
    result
        .context("scheduler task failed")?
        .context("scheduler stopped on a state-store error")
}

/// Longest pause between attempts to re-establish the wake-up listener.
const LISTEN_RETRY_MAX: Duration = Duration::from_secs(10);

/// Rereads the store whenever another instance (or a CLI on another host) announces work on
/// the shared PostgreSQL store, until shutdown.
async fn wake_on_notify(
    mut listener: crate::store::WorkListener,
    engine: crate::scheduler::EngineHandle,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            heard = listener.next(LISTEN_RETRY_MAX) => {
                tracing::debug!(?heard, "wake-up from the shared store");
                let sent = match heard {
                    crate::store::Heard::Tries { offered } => {
                        engine.offers_changed(offered).await
                    }
                    crate::store::Heard::Work => engine.wake().await,
                    crate::store::Heard::Stopped | crate::store::Heard::Reconnected => {
                        engine.instance_stopped().await
                    }
                };
                if sent.is_err() {
                    return;
                }
            }
        }
    }
}

/// Refuses to listen beyond loopback while no users exist (anyone reaching the address
/// could run tasks), unless the operator said so explicitly.
async fn check_exposure(store: &Store, bind: SocketAddr, insecure: bool) -> anyhow::Result<()> {
    if bind.ip().is_loopback() {
        return Ok(());
    }
    if store.any_user().await? {
        return Ok(());
    }
    if insecure {
        tracing::warn!(
            "listening on {bind} without authentication (--insecure-no-auth): anyone who can \
             reach it can trigger, pause and clear runs"
        );
        return Ok(());
    }
    bail!(
        "refusing to listen on {bind}: no users exist, so anyone who can reach this address \
         could run tasks. Add one with `orchestrator users add NAME --role admin` (logins are \
         then required), bind to a loopback address (127.0.0.1, ::1), or pass \
         --insecure-no-auth to serve without authentication"
    )
}

/// Where DAGs come from, per the configuration.
pub fn sources(config: &Config) -> DagSources {
    DagSources {
        dags_folder: config.dags_folder.clone(),
        projects_file: config.projects_file.clone(),
        max_file_bytes: config.max_dag_file_bytes,
    }
}

/// The scheduler's settings, per the configuration.
pub fn scheduler_config(config: &Config) -> Result<SchedulerConfig, DataError> {
    Ok(SchedulerConfig {
        parallelism: config.parallelism,
        shutdown_grace: Duration::from_secs(config.shutdown_grace_secs),
        data: Arc::new(data_paths(config)?),
        lease: LeaseTiming {
            heartbeat: config.heartbeat,
            lease: config.lease,
        },
        log_limits: crate::tasks::LogLimits::new(config.max_log_bytes),
        metrics: crate::metrics::Metrics::disabled(),
    })
}

/// The data locations, per the configuration. A PostgreSQL warehouse gets a connection per
/// task slot, so that no warehouse task ever waits for another's connection.
pub fn data_paths(config: &Config) -> Result<DataPaths, DataError> {
    let slots = u32::try_from(config.parallelism).unwrap_or(u32::MAX);
    Ok(DataPaths {
        staging: Location::parse(&config.staging)?,
        output: Location::parse(&config.output)?,
        warehouse: Warehouse::open(&config.warehouse, slots)?,
    })
}

/// Logs a (re)load of the DAG folder and counts the files that failed.
fn report_load(bag: &DagBag, metrics: &Metrics) {
    for e in &bag.errors {
        tracing::warn!("DAG load error: {e}");
    }
    let failed: std::collections::HashSet<_> = bag.errors.iter().map(|e| &e.file).collect();
    metrics.dag_files_failed(failed.len());
    tracing::info!(
        dags = bag.dags.len(),
        errors = bag.errors.len(),
        "DAGs loaded"
    );
}

/// Cancels `shutdown` on SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when the returned future is first polled, so a signal that arrives before
/// the task runs (a test that stops `serve` as soon as it answers) still shuts down
/// cleanly instead of killing the process.
pub fn stop_on_signal(shutdown: CancellationToken) -> impl Future<Output = ()> + Send {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        let wait = |stream: std::io::Result<tokio::signal::unix::Signal>, name: &'static str| async move {
            match stream {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for {name}");
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            () = wait(int, "SIGINT") => tracing::info!("SIGINT received"),
            () = wait(term, "SIGTERM") => tracing::info!("SIGTERM received"),
            () = shutdown.cancelled() => {}
        }
        shutdown.cancel();
    }
}
