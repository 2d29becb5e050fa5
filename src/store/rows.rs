//! Typed rows read from the store and the changes written to it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{StoreError, StoreResult, from_text};
use crate::ids::{DagId, InstanceId, ProcessGroup, RunId, RunKey, TaskId};
use crate::state::{RunState, RunType, TaskState};
use crate::tasks::{LogDrop, LogLine};

/// A DAG run.
#[derive(Clone, Debug, Serialize)]
pub struct RunRow {
    /// Store key.
    #[serde(skip)]
    pub key: RunKey,
    /// DAG.
    pub dag_id: DagId,
    /// Airflow-style run id.
    pub run_id: RunId,
    /// Why it exists.
    pub run_type: RunType,
    /// Current state.
    pub state: RunState,
    /// Logical date (= data interval start).
    pub logical_date: DateTime<Utc>,
    /// Data interval start.
    pub data_interval_start: DateTime<Utc>,
    /// Data interval end.
    pub data_interval_end: DateTime<Utc>,
    /// Run configuration.
    pub conf: serde_json::Value,
    /// When it was queued.
    pub queued_at: DateTime<Utc>,
    /// When it started running.
    pub start_date: Option<DateTime<Utc>>,
    /// When it finished.
    pub end_date: Option<DateTime<Utc>>,
    /// The run whose `trigger_dag` task created it.
    #[serde(skip)]
    pub parent_run: Option<RunKey>,
    /// That task's id.
    #[serde(skip)]
    pub parent_task_id: Option<String>,
    /// The try of that task that created it.
    #[serde(skip)]
    pub parent_try: Option<u32>,
    /// Instance executing it (or that reserved it while queued).
    #[serde(skip)]
    pub owner: Option<InstanceId>,
    /// That instance's epoch when it took the run.
    #[serde(skip)]
    pub owner_epoch: Option<i64>,
    /// Hash of the stored DAG version it executes (`None` for runs older than versions).
    pub dag_version: Option<String>,
    /// Random id, unique across state databases (keys the warehouse ledger).
    #[serde(skip)]
    pub uid: Option<String>,
    /// Why it ended as it did, when not obvious (e.g. dagrun timeout).
    pub note: Option<String>,
    /// A note a user wrote on it (the REST API's `note`).
    pub user_note: Option<String>,
}

/// The latest state of one task in one run.
#[derive(Clone, Debug, Serialize)]
pub struct TaskInstanceRow {
    /// Task.
    pub task_id: TaskId,
    /// `None`: no status yet.
    pub state: Option<TaskState>,
    /// Tries started so far.
    pub try_number: u32,
    /// Tries allowed (grows on clear).
    pub max_tries: u32,
    /// Start of the latest try.
    pub start_date: Option<DateTime<Utc>>,
    /// End of the latest try.
    pub end_date: Option<DateTime<Utc>>,
    /// When the next try is due (up_for_retry).
    pub next_retry_at: Option<DateTime<Utc>>,
    /// Why the latest try failed.
    pub error: Option<String>,
    /// First try of the current attempt (since the last clear).
    #[serde(skip)]
    pub first_try: u32,
}

/// One try of a task instance.
#[derive(Clone, Debug, Serialize)]
pub struct TryRow {
    /// Task.
    pub task_id: TaskId,
    /// 1-based try.
    pub try_number: u32,
    /// How the try ended (`running` while it runs).
    pub state: TaskState,
    /// Start.
    pub start_date: DateTime<Utc>,
    /// End.
    pub end_date: Option<DateTime<Utc>>,
    /// Failure reason.
    pub error: Option<String>,
}

/// The `trigger_dag` try a child run is created by.
#[derive(Clone, Debug)]
pub struct ParentTask {
    /// The parent run.
    pub run: RunKey,
    /// Its `trigger_dag` task.
    pub task: TaskId,
    /// The try that creates the child.
    pub try_number: u32,
}

/// One definition of a DAG as stored (its YAML after load-time placeholders).
#[derive(Clone, Debug)]
pub struct DagVersion {
    /// SHA-256 of the DAG id and definition, hex.
    pub hash: String,
    /// The DAG.
    pub dag_id: DagId,
    /// The file it was read from.
    pub source_path: String,
    /// The generating project, for template DAGs.
    pub project: Option<String>,
    /// The YAML.
    pub definition: String,
}

/// A run to create.
#[derive(Clone, Debug)]
pub struct NewRun {
    /// DAG.
    pub dag_id: DagId,
    /// Why.
    pub run_type: RunType,
    /// Data interval start (= logical date).
    pub interval_start: DateTime<Utc>,
    /// Data interval end.
    pub interval_end: DateTime<Utc>,
    /// Run configuration (a JSON object).
    pub conf: serde_json::Value,
    /// The `trigger_dag` try that creates it.
    pub parent: Option<ParentTask>,
    /// Reserve the queued run for this instance (foreground runs and their children).
    pub owner: Option<super::Owner>,
    /// The DAG definition it executes.
    pub version: Option<DagVersion>,
}

/// One state change, committed in a batch by [`super::Store::commit`].
#[derive(Clone, Debug)]
pub enum Change {
    /// A try starts: the instance becomes running and a try row is added.
    StartTry {
        run: RunKey,
        task: TaskId,
        try_number: u32,
        at: DateTime<Utc>,
    },
    /// A try ended with `state` (success, failed, up_for_retry, skipped).
    FinishTry {
        run: RunKey,
        task: TaskId,
        try_number: u32,
        state: TaskState,
        at: DateTime<Utc>,
        error: Option<String>,
        next_retry_at: Option<DateTime<Utc>>,
        /// The try did not end on its own: its owner died or lost its lease.
        interrupted: bool,
    },
    /// A try was interrupted by shutdown: recorded as failed, the instance reset with one
    /// more try allowed, so it runs again without using up a retry.
    AbandonTry {
        run: RunKey,
        task: TaskId,
        try_number: u32,
        at: DateTime<Utc>,
        reason: String,
    },
    /// A state set without a try (queued, upstream_failed, skipped).
    SetTaskState {
        run: RunKey,
        task: TaskId,
        state: TaskState,
        at: DateTime<Utc>,
    },
    /// Log lines of a try (each with its seq), and the middle the cap dropped if it grew.
    Logs {
        run: RunKey,
        task: TaskId,
        try_number: u32,
        lines: Vec<LogLine>,
        dropped: Option<LogDrop>,
    },
    /// The process group a running try's command runs in (for killing it after a crash).
    TryProcess {
        run: RunKey,
        task: TaskId,
        try_number: u32,
        group: ProcessGroup,
    },
    /// The run ended.
    FinishRun {
        run: RunKey,
        state: RunState,
        at: DateTime<Utc>,
        note: Option<String>,
    },
    /// The run's owner has no free slot for a ready task: any instance may claim its next
    /// try (`try_number`), the owner included (shared stores only).
    OfferTry {
        run: RunKey,
        task: TaskId,
        try_number: u32,
        at: DateTime<Utc>,
    },
    /// The owner has recorded the end of an offered try (or given it up): the offer goes.
    DropOffer { run: RunKey, task: TaskId },
    /// Log lines of a try this instance runs for another instance's run (fenced by the
    /// offer it claimed, not by the run's owner).
    RemoteLogs {
        run: RunKey,
        task: TaskId,
        try_number: u32,
        lines: Vec<LogLine>,
        dropped: Option<LogDrop>,
    },
    /// The process group of a try run for another instance's run (fenced by the claim),
    /// so whoever finds the try abandoned on this host can stop what it left.
    RemoteProcess {
        run: RunKey,
        task: TaskId,
        try_number: u32,
        group: ProcessGroup,
    },
    /// A try run for another instance's run ended: its end goes to the offer, for the
    /// run's owner to record (fenced by the claim).
    EndOffer {
        run: RunKey,
        task: TaskId,
        try_number: u32,
        end: RemoteEnd,
        at: DateTime<Utc>,
        duration_ms: u64,
    },
}

/// How a try run for another instance's run ended, as its owner needs to know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteEnd {
    /// Succeeded.
    Success,
    /// The task decided not to run, with why.
    Skipped(String),
    /// Failed; whether the retry policy applies.
    Failed { error: String, retryable: bool },
    /// Stopped by the worker's shutdown: runs again without using a retry.
    Abandoned(String),
}

impl RemoteEnd {
    /// The `outcome` and `error` columns.
    pub(super) fn to_columns(&self) -> (&'static str, Option<&str>) {
        match self {
            Self::Success => ("success", None),
            Self::Skipped(why) => ("skipped", Some(why)),
            Self::Failed {
                error,
                retryable: true,
            } => ("failed", Some(error)),
            Self::Failed {
                error,
                retryable: false,
            } => ("fatal", Some(error)),
            Self::Abandoned(why) => ("abandoned", Some(why)),
        }
    }

    /// Back from the `outcome` and `error` columns.
    pub(super) fn from_columns(outcome: &str, error: Option<String>) -> StoreResult<Self> {
        let error = error.unwrap_or_default();
        Ok(match outcome {
            "success" => Self::Success,
            "skipped" => Self::Skipped(error),
            "failed" => Self::Failed {
                error,
                retryable: true,
            },
            "fatal" => Self::Failed {
                error,
                retryable: false,
            },
            "abandoned" => Self::Abandoned(error),
            other => {
                return Err(super::StoreError::Corrupt(format!(
                    "try_offer.outcome {other:?}"
                )));
            }
        })
    }
}

impl Change {
    /// The run the change is about.
    pub fn run(&self) -> RunKey {
        match self {
            Self::StartTry { run, .. }
            | Self::FinishTry { run, .. }
            | Self::AbandonTry { run, .. }
            | Self::SetTaskState { run, .. }
            | Self::Logs { run, .. }
            | Self::TryProcess { run, .. }
            | Self::FinishRun { run, .. }
            | Self::OfferTry { run, .. }
            | Self::DropOffer { run, .. }
            | Self::RemoteLogs { run, .. }
            | Self::RemoteProcess { run, .. }
            | Self::EndOffer { run, .. } => *run,
        }
    }

    /// A running try's log lines or process group as the instance that claimed the try
    /// writes them for another instance's run; other changes are returned as they are.
    pub fn into_remote(self) -> Self {
        match self {
            Self::Logs {
                run,
                task,
                try_number,
                lines,
                dropped,
            } => Self::RemoteLogs {
                run,
                task,
                try_number,
                lines,
                dropped,
            },
            Self::TryProcess {
                run,
                task,
                try_number,
                group,
            } => Self::RemoteProcess {
                run,
                task,
                try_number,
                group,
            },
            other => other,
        }
    }

    /// Written by an instance running a try for another instance's run: fenced by its
    /// claim on the offer rather than by owning the run.
    pub fn is_worker_change(&self) -> bool {
        matches!(
            self,
            Self::RemoteLogs { .. } | Self::RemoteProcess { .. } | Self::EndOffer { .. }
        )
    }
}

pub(super) fn parse<T: std::str::FromStr>(s: &str) -> StoreResult<T>
where
    T::Err: std::fmt::Display,
{
    s.parse()
        .map_err(|e: T::Err| StoreError::Corrupt(e.to_string()))
}

/// An unsigned column (stored as a signed integer: neither engine has unsigned types).
pub(super) fn uint<T: TryFrom<i64>>(row: &AnyRow, col: &str) -> StoreResult<T> {
    let n: i64 = row.try_get(col)?;
    T::try_from(n).map_err(|_| StoreError::Corrupt(format!("{col} {n} is out of range")))
}

pub(super) fn opt_uint<T: TryFrom<i64>>(row: &AnyRow, col: &str) -> StoreResult<Option<T>> {
    let n: Option<i64> = row.try_get(col)?;
    n.map(|n| T::try_from(n).map_err(|_| StoreError::Corrupt(format!("{col} {n} is out of range"))))
        .transpose()
}

fn opt_time(row: &AnyRow, col: &str) -> StoreResult<Option<DateTime<Utc>>> {
    row.try_get::<Option<String>, _>(col)?
        .as_deref()
        .map(from_text)
        .transpose()
}

fn time(row: &AnyRow, col: &str) -> StoreResult<DateTime<Utc>> {
    from_text(&row.try_get::<String, _>(col)?)
}

impl RunRow {
    /// The run's unique id across state databases; runs from before uids existed are
    /// identified by what identifies them instead.
    pub fn uid_or_legacy(&self) -> String {
        self.uid.clone().unwrap_or_else(|| {
            format!(
                "{}/{}/{}",
                self.dag_id,
                self.run_id,
                super::to_text(self.queued_at)
            )
        })
    }

    pub(super) fn from_row(row: &AnyRow) -> StoreResult<Self> {
        let conf: String = row.try_get("conf")?;
        Ok(Self {
            key: RunKey(row.try_get("id")?),
            dag_id: DagId::new(row.try_get::<String, _>("dag_id")?),
            run_id: RunId::new(row.try_get::<String, _>("run_id")?),
            run_type: parse(&row.try_get::<String, _>("run_type")?)?,
            state: parse(&row.try_get::<String, _>("state")?)?,
            logical_date: time(row, "logical_date")?,
            data_interval_start: time(row, "data_interval_start")?,
            data_interval_end: time(row, "data_interval_end")?,
            conf: serde_json::from_str(&conf)
                .map_err(|e| StoreError::Corrupt(format!("conf: {e}")))?,
            queued_at: time(row, "queued_at")?,
            start_date: opt_time(row, "start_date")?,
            end_date: opt_time(row, "end_date")?,
            parent_run: row.try_get::<Option<i64>, _>("parent_run")?.map(RunKey),
            parent_task_id: row.try_get("parent_task_id")?,
            parent_try: opt_uint(row, "parent_try")?,
            owner: row
                .try_get::<Option<String>, _>("owner")?
                .map(InstanceId::new),
            owner_epoch: row.try_get("owner_epoch")?,
            dag_version: row.try_get("dag_version")?,
            uid: row.try_get("uid")?,
            note: row.try_get("note")?,
            user_note: row.try_get("user_note")?,
        })
    }
}

impl TaskInstanceRow {
    /// A task instance that has not been created yet (its run is queued): no status, no
    /// try.
    pub fn unstarted(task: &TaskId) -> Self {
        Self {
            task_id: task.clone(),
            state: None,
            try_number: 0,
            max_tries: 1,
            start_date: None,
            end_date: None,
            next_retry_at: None,
            error: None,
            first_try: 1,
        }
    }

    pub(super) fn from_row(row: &AnyRow) -> StoreResult<Self> {
        let state: Option<String> = row.try_get("state")?;
        Ok(Self {
            task_id: TaskId::new(row.try_get::<String, _>("task_id")?),
            state: state.as_deref().map(parse).transpose()?,
            try_number: uint(row, "try_number")?,
            max_tries: uint(row, "max_tries")?,
            start_date: opt_time(row, "start_date")?,
            end_date: opt_time(row, "end_date")?,
            next_retry_at: opt_time(row, "next_retry_at")?,
            error: row.try_get("error")?,
            first_try: uint(row, "first_try")?,
        })
    }
}

impl TryRow {
    pub(super) fn from_row(row: &AnyRow) -> StoreResult<Self> {
        Ok(Self {
            task_id: TaskId::new(row.try_get::<String, _>("task_id")?),
            try_number: uint(row, "try_number")?,
            state: parse(&row.try_get::<String, _>("state")?)?,
            start_date: time(row, "start_date")?,
            end_date: opt_time(row, "end_date")?,
            error: row.try_get("error")?,
        })
    }
}
