//! Prometheus metrics of `serve`: a [`Metrics`] handle that `serve` creates and hands to
//! what records (the scheduler, the data tasks, the DAG loader), and the text exposition
//! `GET /metrics` returns. Recording is an atomic add or a short-held lock per event, cheap
//! enough for the scheduler's hot path; values that live in the store (queued and running
//! runs) are read once per scrape by the service and passed to [`Metrics::render`].
//!
//! Processes that do not serve (`orchestrator run`) record into [`Metrics::disabled`], which
//! does nothing.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, prometheus_text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::ids::{DagId, TaskId};
use crate::state::{RunState, TaskState};

/// The `Content-Type` of what [`Metrics::render`] returns (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Upper bounds (seconds) of the run duration buckets: seconds to a day.
const RUN_BUCKETS: [f64; 13] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0,
];
/// Upper bounds (seconds) of the try duration buckets: a no-op to hours.
const TRY_BUCKETS: [f64; 15] = [
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0,
];
/// Upper bounds (seconds) of the scheduler loop latency buckets: a turn takes milliseconds.
const LOOP_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Errors of the metrics module.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The text exposition could not be written.
    #[error("cannot encode the metrics: {0}")]
    Encode(#[from] std::fmt::Error),
}

/// How a try ended, as the `state` label of the try counters and durations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TryEnd {
    /// The task state the try ended in (success, failed, up_for_retry, skipped).
    State(TaskState),
    /// Stopped by a shutdown; the task runs again on the next start without using a retry.
    Abandoned,
}

impl TryEnd {
    fn label(self) -> &'static str {
        match self {
            Self::State(s) => s.as_str(),
            Self::Abandoned => "abandoned",
        }
    }
}

/// What the scheduler committed, recorded once its commit succeeded.
#[derive(Clone, Debug)]
pub enum Event {
    /// A run finished; `duration` from its start, when known.
    RunEnded {
        /// The run's DAG.
        dag_id: DagId,
        /// Its final state.
        state: RunState,
        /// From the run's start to its end.
        duration: Option<Duration>,
    },
    /// A try started.
    TryStarted {
        /// The run's DAG.
        dag_id: DagId,
        /// The task.
        task_id: TaskId,
    },
    /// A try ended; `duration` is unknown for a try found interrupted by a crash.
    TryEnded {
        /// The run's DAG.
        dag_id: DagId,
        /// The task.
        task_id: TaskId,
        /// How it ended.
        end: TryEnd,
        /// How long it ran.
        duration: Option<Duration>,
    },
}

/// Which data row counter a task adds to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rows {
    /// Rows an `import` wrote to the staging store.
    Imported,
    /// Rows a `load` wrote to the warehouse.
    Loaded,
    /// Rows refused as unreadable or invalid (`import` rejects, `drug_graph` left-outs).
    Rejected,
}

/// Values read at scrape time rather than recorded as they change.
#[derive(Clone, Debug, Default)]
pub struct ScrapeValues {
    /// Runs per DAG in each of the states `queued` and `running` (zeros included).
    pub runs: Vec<(DagId, RunState, u64)>,
    /// DAGs loaded now.
    pub dags_loaded: usize,
    /// Problems found by the last load of the DAG folder.
    pub load_errors: usize,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DagLabels {
    dag_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DagStateLabels {
    dag_id: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    dag_id: String,
    task_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskStateLabels {
    dag_id: String,
    task_id: String,
    state: &'static str,
}

type Histograms<S> = Family<S, Histogram, fn() -> Histogram>;

/// The metric families, registered once.
#[derive(Debug)]
struct Families {
    runs_started: Family<DagLabels, Counter>,
    runs_ended: Family<DagStateLabels, Counter>,
    run_duration: Histograms<DagStateLabels>,
    tries_started: Family<TaskLabels, Counter>,
    tries_ended: Family<TaskStateLabels, Counter>,
    try_duration: Histograms<DagStateLabels>,
    loop_latency: Histogram,
    tries_running: Gauge,
    tries_waiting: Gauge,
    runs: Family<DagStateLabels, Gauge>,
    dags_loaded: Gauge,
    load_errors: Gauge,
    load_failures: Counter,
    rows_imported: Family<TaskLabels, Counter>,
    rows_loaded: Family<TaskLabels, Counter>,
    rows_rejected: Family<TaskLabels, Counter>,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    families: Families,
    /// One scrape at a time: the scrape-time gauges are reset and set, then encoded.
    scrape: Mutex<()>,
}

/// The metrics of this process: a cheap clone sharing one registry, or a disabled handle
/// that records nothing (the `Default`, like [`Metrics::disabled`]).
#[derive(Clone, Debug, Default)]
pub struct Metrics(Option<Arc<Inner>>);

impl Metrics {
    /// A fresh registry with every family registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("orchestrator");
        let families = Families::register(&mut registry);
        Self(Some(Arc::new(Inner {
            registry,
            families,
            scrape: Mutex::new(()),
        })))
    }

    /// A handle that records nothing (processes without `/metrics`).
    pub fn disabled() -> Self {
        Self(None)
    }

    /// Whether this handle records.
    pub fn is_enabled(&self) -> bool {
        self.0.is_some()
    }

    fn families(&self) -> Option<&Families> {
        self.0.as_deref().map(|i| &i.families)
    }

    /// A queued run was claimed and started.
    pub fn run_started(&self, dag_id: &DagId) {
        if let Some(f) = self.families() {
            f.runs_started.get_or_create(&dag(dag_id)).inc();
        }
    }

    /// Records a committed scheduler event.
    pub fn record(&self, event: &Event) {
        let Some(f) = self.families() else { return };
        match event {
            Event::RunEnded {
                dag_id,
                state,
                duration,
            } => {
                let labels = dag_state(dag_id, state.as_str());
                f.runs_ended.get_or_create(&labels).inc();
                if let Some(d) = duration {
                    f.run_duration
                        .get_or_create(&labels)
                        .observe(d.as_secs_f64());
                }
            }
            Event::TryStarted { dag_id, task_id } => {
                f.tries_started.get_or_create(&task(dag_id, task_id)).inc();
            }
            Event::TryEnded {
                dag_id,
                task_id,
                end,
                duration,
            } => {
                let labels = TaskStateLabels {
                    dag_id: dag_id.to_string(),
                    task_id: task_id.to_string(),
                    state: end.label(),
                };
                f.tries_ended.get_or_create(&labels).inc();
                if let Some(d) = duration {
                    let labels = dag_state(dag_id, end.label());
                    f.try_duration
                        .get_or_create(&labels)
                        .observe(d.as_secs_f64());
                }
            }
        }
    }

    /// One scheduler turn: from the event that woke the loop to its commit.
    pub fn loop_latency(&self, latency: Duration) {
        if let Some(f) = self.families() {
            f.loop_latency.observe(latency.as_secs_f64());
        }
    }

    /// The scheduler's slots after a turn: tries running (holding a slot) and tries ready
    /// but waiting for one.
    pub fn slots(&self, running: usize, waiting: usize) {
        if let Some(f) = self.families() {
            f.tries_running.set(saturate(running));
            f.tries_waiting.set(saturate(waiting));
        }
    }

    /// A (re)load of the DAG folder found `files` files that failed to load.
    pub fn dag_files_failed(&self, files: usize) {
        if let Some(f) = self.families() {
            f.load_failures.inc_by(files as u64);
        }
    }

    /// A data task wrote (or refused) `count` rows.
    pub fn rows(&self, dag_id: &DagId, task_id: &TaskId, which: Rows, count: u64) {
        let Some(f) = self.families() else { return };
        let family = match which {
            Rows::Imported => &f.rows_imported,
            Rows::Loaded => &f.rows_loaded,
            Rows::Rejected => &f.rows_rejected,
        };
        family.get_or_create(&task(dag_id, task_id)).inc_by(count);
    }

    /// The text exposition, with the scrape-time values; `None` when disabled.
    pub fn render(&self, values: &ScrapeValues) -> Result<Option<String>, MetricsError> {
        let Some(inner) = self.0.as_deref() else {
            return Ok(None);
        };
        let _one_at_a_time = inner.scrape.lock().unwrap_or_else(PoisonError::into_inner);
        let f = &inner.families;
        // DAGs deleted since the last scrape must not linger with stale counts.
        f.runs.clear();
        for (dag_id, state, count) in &values.runs {
            let labels = dag_state(dag_id, state.as_str());
            f.runs.get_or_create(&labels).set(saturate(*count as usize));
        }
        f.dags_loaded.set(saturate(values.dags_loaded));
        f.load_errors.set(saturate(values.load_errors));
        let mut text = String::new();
        prometheus_text::encode(&mut text, &inner.registry)?;
        Ok(Some(text))
    }
}

impl Families {
    fn register(r: &mut Registry) -> Self {
        let f = Self {
            runs_started: Family::default(),
            runs_ended: Family::default(),
            run_duration: Family::new_with_constructor(|| Histogram::new(RUN_BUCKETS)),
            tries_started: Family::default(),
            tries_ended: Family::default(),
            try_duration: Family::new_with_constructor(|| Histogram::new(TRY_BUCKETS)),
            loop_latency: Histogram::new(LOOP_BUCKETS),
            tries_running: Gauge::default(),
            tries_waiting: Gauge::default(),
            runs: Family::default(),
            dags_loaded: Gauge::default(),
            load_errors: Gauge::default(),
            load_failures: Counter::default(),
            rows_imported: Family::default(),
            rows_loaded: Family::default(),
            rows_rejected: Family::default(),
        };
        let secs = Unit::Seconds;
        r.register(
            "dag_runs_started",
            "Runs claimed and started, by DAG",
            f.runs_started.clone(),
        );
        r.register(
            "dag_runs_ended",
            "Runs finished, by DAG and final state",
            f.runs_ended.clone(),
        );
        r.register_with_unit(
            "dag_run_duration",
            "Run durations from start to end, by DAG and final state",
            secs.clone(),
            f.run_duration.clone(),
        );
        r.register(
            "task_tries_started",
            "Task tries started, by DAG and task",
            f.tries_started.clone(),
        );
        r.register(
            "task_tries_ended",
            "Task tries ended, by DAG, task and the state the try ended in",
            f.tries_ended.clone(),
        );
        r.register_with_unit(
            "task_try_duration",
            "Task try durations, by DAG and the state the try ended in",
            secs.clone(),
            f.try_duration.clone(),
        );
        r.register_with_unit(
            "scheduler_loop_latency",
            "Time from the event that woke the scheduler to its decisions being committed",
            secs,
            f.loop_latency.clone(),
        );
        Self::register_gauges(r, &f);
        f
    }

    fn register_gauges(r: &mut Registry, f: &Self) {
        r.register(
            "task_tries_running",
            "Tries this process is running that hold a slot",
            f.tries_running.clone(),
        );
        r.register(
            "task_tries_waiting",
            "Tries ready to start but waiting for a slot (parallelism, max_active_tasks)",
            f.tries_waiting.clone(),
        );
        r.register(
            "dag_runs",
            "Runs queued or running now, by DAG and state",
            f.runs.clone(),
        );
        r.register("dags_loaded", "DAGs loaded now", f.dags_loaded.clone());
        r.register(
            "dag_load_errors",
            "Problems found by the last load of the DAG folder",
            f.load_errors.clone(),
        );
        r.register(
            "dag_file_load_failures",
            "DAG files that failed to load, counted at every (re)load of the folder",
            f.load_failures.clone(),
        );
        r.register(
            "data_rows_imported",
            "Rows import tasks wrote to the staging store, by DAG and task",
            f.rows_imported.clone(),
        );
        r.register(
            "data_rows_loaded",
            "Rows load tasks wrote to the warehouse, by DAG and task",
            f.rows_loaded.clone(),
        );
        r.register(
            "data_rows_rejected",
            "Rows refused as unreadable or invalid, by DAG and task",
            f.rows_rejected.clone(),
        );
    }
}

fn dag(dag_id: &DagId) -> DagLabels {
    DagLabels {
        dag_id: dag_id.to_string(),
    }
}

fn dag_state(dag_id: &DagId, state: &'static str) -> DagStateLabels {
    DagStateLabels {
        dag_id: dag_id.to_string(),
        state,
    }
}

fn task(dag_id: &DagId, task_id: &TaskId) -> TaskLabels {
    TaskLabels {
        dag_id: dag_id.to_string(),
        task_id: task_id.to_string(),
    }
}

fn saturate(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
