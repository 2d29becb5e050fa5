//! The one door to the store and the engine for every front-end (CLI, dashboard, REST API):
//! a [`Service`] value offers what they need as domain records — DAGs with their recent
//! runs, runs filtered and paged, task instances, tries, logs from a sequence number — and
//! the actions (trigger, pause, clear, mark, backfill, clean). Front-ends format; this
//! decides. Live state always comes from the store, since runs are also executed by a
//! foreground `orchestrator run` or another process.

mod backfill;
mod dags;
mod logs;
mod metrics;
mod runs;
mod users;

use std::sync::Arc;

use tokio::sync::watch;

use crate::dag::{Dag, DagBag};
use crate::scheduler::EngineHandle;
use crate::store::{Store, StoreError};

pub use crate::store::{Owner, RunField, RunOrder, RunQuery, RunRow, TaskInstanceRow, TryRow};

pub use backfill::{BackfillReport, BackfillRequest, CleanReport, Reprocess};
pub use dags::{DagListing, DagQuery, DagSourceView, DagSummary, NextRun};
pub use logs::{LogChunk, LogTail, TaskLogs};
pub use runs::{
    ClearRequest, Cleared, Grid, Marked, RunChoice, RunDetail, TriggerRequest, is_active,
};
pub use users::{
    AuthMode, Principal, Role, TOKEN_AUDIENCE, TOKEN_ISSUER, TOKEN_LIFETIME, User, constant_time_eq,
};

/// Errors a user can act on (mapped to exit codes by the CLI and to 4xx by the web).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No valid DAG with that id.
    #[error("DAG '{0}' is not loaded (see `orchestrator dags list` and `dags validate`)")]
    UnknownDag(String),
    /// No run with that id.
    #[error("no run with id '{0}'")]
    UnknownRun(String),
    /// The run has no such task, or the task no such try.
    #[error("{0}")]
    UnknownTask(String),
    /// The run id exists for several DAGs.
    #[error("run id '{0}' exists in several DAGs ({1}); pass --dag")]
    AmbiguousRun(String, String),
    /// No user with that name.
    #[error("no user named '{0}' (see `orchestrator users list`)")]
    UnknownUser(String),
    /// Bad user input.
    #[error("{0}")]
    Invalid(String),
    /// Not possible in the current state.
    #[error("{0}")]
    Conflict(String),
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
    /// The metrics could not be encoded.
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    /// Hashing, signing or the OS random generator failed.
    #[error("{0}")]
    Crypto(String),
}

impl ServiceError {
    /// Whether the error says something asked for does not exist (404 on the web).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Self::UnknownDag(_) | Self::UnknownRun(_) | Self::UnknownTask(_) | Self::UnknownUser(_)
        )
    }
}

impl From<StoreError> for ServiceError {
    /// A refused state change is a conflict: the service checked the state just before, so
    /// the store found it changed meanwhile (a concurrent clear, mark or the engine).
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Transition { what, from, to, .. } => Self::Conflict(format!(
                "{what} changed meanwhile: it is {from} now and cannot become {to}; \
                 reload and try again"
            )),
            other => Self::Store(other),
        }
    }
}

/// Result alias.
pub type ServiceResult<T> = Result<T, ServiceError>;

/// The store, the DAGs and (in `serve`) the engine, shared by every front-end.
#[derive(Clone)]
pub struct Service {
    store: Store,
    dags: watch::Receiver<Arc<DagBag>>,
    engine: Option<EngineHandle>,
    metrics: crate::metrics::Metrics,
    /// The token-signing key, read from the store on first need.
    secrets: Arc<tokio::sync::OnceCell<String>>,
    /// Whether requests need credentials even while no user exists (see [`AuthMode`]).
    auth_required: bool,
}

impl Service {
    /// A service over the live DAG bag of `serve` and its engine.
    pub fn new(
        store: Store,
        dags: watch::Receiver<Arc<DagBag>>,
        engine: Option<EngineHandle>,
    ) -> Self {
        Self {
            store,
            dags,
            engine,
            metrics: crate::metrics::Metrics::disabled(),
            secrets: Arc::default(),
            auth_required: false,
        }
    }

    /// The same service, requiring authentication for its whole life: a `serve` listening
    /// beyond loopback without `--insecure-no-auth` refuses every non-public request while
    /// no user exists, instead of falling open when the last one is removed.
    pub fn with_auth_required(mut self, required: bool) -> Self {
        self.auth_required = required;
        self
    }

    /// The same service, exposing `metrics` at `/metrics` (`serve`).
    pub fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Opens the state store at `database_url` (applying migrations) for a command that
    /// works with `bag`.
    pub async fn open(database_url: &str, bag: DagBag) -> ServiceResult<Self> {
        let store = Store::open(database_url, 1).await?;
        Ok(Self::with_bag(store, bag))
    }

    /// A service over a DAG bag loaded once (the CLI).
    pub fn with_bag(store: Store, bag: DagBag) -> Self {
        // The receiver keeps the last value after the sender is dropped.
        let (_tx, rx) = watch::channel(Arc::new(bag));
        Self::new(store, rx, None)
    }

    /// The DAGs and load errors as they are now.
    pub fn bag(&self) -> Arc<DagBag> {
        self.dags.borrow().clone()
    }

    /// A loaded DAG.
    pub fn dag(&self, id: &str) -> ServiceResult<Arc<Dag>> {
        self.bag()
            .get(id)
            .cloned()
            .ok_or_else(|| ServiceError::UnknownDag(id.to_string()))
    }

    /// The engine of `serve`, when this service runs inside one.
    pub fn engine(&self) -> Option<&EngineHandle> {
        self.engine.as_ref()
    }

    /// Whether the state store answers.
    pub async fn ping(&self) -> ServiceResult<()> {
        Ok(self.store.ping().await?)
    }

    /// On a store several instances share (PostgreSQL), how many `serve` instances hold a
    /// live lease (any of them takes a queued run at once); `None` on SQLite, where only a
    /// server on this host's `bind` address is told.
    pub async fn shared_servers(&self) -> ServiceResult<Option<u64>> {
        if self.store.backend() != crate::store::Backend::Postgres {
            return Ok(None);
        }
        Ok(Some(self.store.live_servers().await?))
    }

    /// Asks the engine (when there is one here) to look at the store now.
    pub async fn wake(&self) {
        if let Some(engine) = &self.engine
            && let Err(e) = engine.wake().await
        {
            tracing::debug!(error = %e, "engine not running; nothing to wake");
        }
    }

    /// Starts an engine in this process over the service's store and DAGs (the foreground
    /// `run` and `trigger --wait` without a server).
    pub fn start_engine(
        &self,
        mode: crate::scheduler::Mode,
        config: crate::scheduler::SchedulerConfig,
        owner: crate::store::Owner,
        shutdown: tokio_util::sync::CancellationToken,
        progress: Option<tokio::sync::mpsc::UnboundedSender<crate::scheduler::Progress>>,
    ) -> crate::scheduler::Engine {
        crate::scheduler::Engine::start(
            self.store.clone(),
            self.bag(),
            mode,
            config,
            owner,
            shutdown,
            progress,
        )
    }

    /// Registers this process as an instance that executes runs in the foreground.
    pub async fn register_foreground(
        &self,
        lease: std::time::Duration,
    ) -> ServiceResult<crate::store::Owner> {
        Ok(self
            .store
            .register_instance(crate::store::InstanceKind::Foreground, lease)
            .await?)
    }
}

/// Parses a run's conf: a JSON object.
pub fn parse_conf(text: Option<&str>) -> ServiceResult<serde_json::Value> {
    let Some(text) = text else {
        return Ok(serde_json::json!({}));
    };
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v @ serde_json::Value::Object(_)) => Ok(v),
        Ok(_) => Err(ServiceError::Invalid(
            "--conf must be a JSON object, like '{\"key\": 1}'".into(),
        )),
        Err(e) => Err(ServiceError::Invalid(format!(
            "--conf is not valid JSON: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests;
