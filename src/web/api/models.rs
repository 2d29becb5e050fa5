//! The JSON bodies of the API, field for field as Airflow 3's response models (the pinned
//! `apache-airflow-client`'s pydantic models) require them, built from the service's
//! records. Fields with no equivalent here carry fixed values (README, "REST API").

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::dag::{Dag, LoadError};
use crate::service::{DagSummary, RunRow, TaskInstanceRow};
use crate::state::{RunState, RunType, TaskState};

/// A DAG tag.
#[derive(Serialize, ToSchema)]
pub struct DagTagResponse {
    /// The tag.
    pub name: String,
    /// Its DAG.
    pub dag_id: String,
    /// Its DAG's display name (the id).
    pub dag_display_name: String,
}

/// A DAG (`GET /dags`, `GET /dags/{dag_id}`).
#[derive(Serialize, ToSchema)]
pub struct DagResponse {
    /// Id.
    pub dag_id: String,
    /// Display name: the id.
    pub dag_display_name: String,
    /// Whether its schedule is paused.
    pub is_paused: bool,
    /// Always false: only loaded DAGs are listed.
    pub is_stale: bool,
    /// Not tracked: null.
    pub last_parsed_time: Option<DateTime<Utc>>,
    /// Not tracked: null.
    pub last_parse_duration: Option<f64>,
    /// Not tracked: null.
    pub last_expired: Option<DateTime<Utc>>,
    /// Null (no bundles).
    pub bundle_name: Option<String>,
    /// Hash of the loaded definition.
    pub bundle_version: Option<String>,
    /// The file it was loaded from, as given.
    pub relative_fileloc: Option<String>,
    /// The file it was loaded from.
    pub fileloc: String,
    /// Description.
    pub description: Option<String>,
    /// The schedule as written.
    pub timetable_summary: Option<String>,
    /// The schedule as written.
    pub timetable_description: Option<String>,
    /// Tags.
    pub tags: Vec<DagTagResponse>,
    /// Concurrent tasks allowed per run.
    pub max_active_tasks: u32,
    /// Concurrent runs allowed.
    pub max_active_runs: Option<u32>,
    /// Always 0 (no auto-pause).
    pub max_consecutive_failed_dag_runs: u32,
    /// Always false.
    pub has_task_concurrency_limits: bool,
    /// Always false: a file with errors yields no DAG (see `/importErrors`).
    pub has_import_errors: bool,
    /// Next scheduled logical date.
    pub next_dagrun_logical_date: Option<DateTime<Utc>>,
    /// Next scheduled interval start.
    pub next_dagrun_data_interval_start: Option<DateTime<Utc>>,
    /// Next scheduled interval end.
    pub next_dagrun_data_interval_end: Option<DateTime<Utc>>,
    /// When the next scheduled run is created.
    pub next_dagrun_run_after: Option<DateTime<Utc>>,
    /// Always empty.
    pub owners: Vec<String>,
    /// The definition hash (Airflow: a signed file location).
    pub file_token: String,
}

/// A page of DAGs.
#[derive(Serialize, ToSchema)]
pub struct DagCollectionResponse {
    /// The DAGs.
    pub dags: Vec<DagResponse>,
    /// How many match in all.
    pub total_entries: u64,
}

/// A DAG with its details (`GET /dags/{dag_id}/details`).
#[derive(Serialize, ToSchema)]
pub struct DagDetailsResponse {
    /// Everything of [`DagResponse`].
    #[serde(flatten)]
    pub dag: DagResponse,
    /// Whether missed intervals are run.
    pub catchup: bool,
    /// `max_active_tasks` (Airflow's deprecated name).
    pub concurrency: u32,
    /// The run timeout as an ISO 8601 duration (`PT3600S`).
    pub dag_run_timeout: Option<String>,
    /// The DAG's `params`.
    #[schema(value_type = Object)]
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Always false.
    pub render_template_as_native_obj: bool,
    /// The schedule's time zone.
    pub timezone: Option<String>,
    /// Description (Markdown is not rendered).
    pub doc_md: Option<String>,
    /// Null.
    pub start_date: Option<DateTime<Utc>>,
    /// Null.
    pub end_date: Option<DateTime<Utc>>,
    /// Null.
    pub last_parsed: Option<DateTime<Utc>>,
}

/// Airflow's `timedelta` JSON.
#[derive(Serialize, ToSchema)]
pub struct TimeDelta {
    /// Always `TimeDelta`.
    #[serde(rename = "__type")]
    pub kind: String,
    /// Days.
    pub days: u64,
    /// Seconds within the day.
    pub seconds: u64,
    /// Microseconds within the second.
    pub microseconds: u64,
}

impl TimeDelta {
    fn of(d: std::time::Duration) -> Self {
        let secs = d.as_secs();
        Self {
            kind: "TimeDelta".into(),
            days: secs / 86_400,
            seconds: secs % 86_400,
            microseconds: u64::from(d.subsec_micros()),
        }
    }
}

/// A task of a DAG (`GET /dags/{dag_id}/tasks`).
#[derive(Serialize, ToSchema)]
pub struct TaskResponse {
    /// Id.
    pub task_id: String,
    /// Display name: the id.
    pub task_display_name: String,
    /// Its `type:` (`shell`, `trigger_dag`, …).
    pub operator_name: String,
    /// Null.
    pub owner: Option<String>,
    /// Its `doc`.
    pub doc_md: Option<String>,
    /// Tasks directly downstream.
    pub downstream_task_ids: Vec<String>,
    /// Its trigger rule.
    pub trigger_rule: String,
    /// Retries after the first try.
    pub retries: u32,
    /// Delay before a retry.
    pub retry_delay: TimeDelta,
    /// Whether retry delays grow.
    pub retry_exponential_backoff: bool,
    /// Limit of one try.
    pub execution_timeout: Option<TimeDelta>,
    /// Always false.
    pub depends_on_past: bool,
    /// Always false.
    pub wait_for_downstream: bool,
    /// Always false.
    pub is_mapped: bool,
    /// Always empty.
    pub extra_links: Vec<String>,
    /// `default_pool`.
    pub pool: String,
    /// 1.
    pub pool_slots: u32,
    /// `default`.
    pub queue: String,
}

/// A DAG's tasks.
#[derive(Serialize, ToSchema)]
pub struct TaskCollectionResponse {
    /// The tasks, in definition order.
    pub tasks: Vec<TaskResponse>,
    /// How many.
    pub total_entries: u64,
}

/// A DAG version (not numbered here: runs name no versions, the list stays empty).
#[derive(Serialize, ToSchema)]
pub struct DagVersionResponse {
    /// Id.
    pub id: String,
}

/// Airflow's run types; ours map onto them (`triggered` → `manual`).
#[derive(Serialize, Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum DagRunType {
    /// `backfill`.
    Backfill,
    /// `scheduled`.
    Scheduled,
    /// `manual` (also our `triggered`).
    Manual,
}

/// Who created a run.
#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum DagRunTriggeredBy {
    /// A `trigger_dag` task of another run.
    Operator,
    /// The schedule.
    Timetable,
    /// A backfill.
    Backfill,
}

/// A DAG run.
#[derive(Serialize, ToSchema)]
pub struct DagRunResponse {
    /// Run id.
    pub dag_run_id: String,
    /// DAG.
    pub dag_id: String,
    /// DAG display name: the id.
    pub dag_display_name: String,
    /// Logical date (= data interval start).
    pub logical_date: Option<DateTime<Utc>>,
    /// When it was queued.
    pub queued_at: Option<DateTime<Utc>>,
    /// Start.
    pub start_date: Option<DateTime<Utc>>,
    /// End.
    pub end_date: Option<DateTime<Utc>>,
    /// Seconds from start to end.
    pub duration: Option<f64>,
    /// Data interval start.
    pub data_interval_start: Option<DateTime<Utc>>,
    /// Data interval end.
    pub data_interval_end: Option<DateTime<Utc>>,
    /// When it could run: the data interval end.
    pub run_after: DateTime<Utc>,
    /// Null.
    pub last_scheduling_decision: Option<DateTime<Utc>>,
    /// Airflow's run type (`triggered` runs are `manual`).
    pub run_type: DagRunType,
    /// State.
    #[schema(value_type = String)]
    pub state: RunState,
    /// `operator` for runs a `trigger_dag` task created.
    pub triggered_by: Option<DagRunTriggeredBy>,
    /// Null.
    pub triggering_user_name: Option<String>,
    /// Conf.
    #[schema(value_type = Object)]
    pub conf: serde_json::Value,
    /// The user's note (or, without one, why the run ended as it did).
    pub note: Option<String>,
    /// Always empty.
    pub dag_versions: Vec<DagVersionResponse>,
    /// Hash of the DAG definition it executes.
    pub bundle_version: Option<String>,
    /// Our own run type (`manual`, `scheduled`, `backfill`, `triggered`).
    #[schema(value_type = String)]
    pub orchestrator_run_type: RunType,
}

/// A page of runs.
#[derive(Serialize, ToSchema)]
pub struct DagRunCollectionResponse {
    /// The runs.
    pub dag_runs: Vec<DagRunResponse>,
    /// How many match in all.
    pub total_entries: u64,
}

/// A task instance.
#[derive(Serialize, ToSchema)]
pub struct TaskInstanceResponse {
    /// Stable id (a UUID derived from the run and task).
    pub id: String,
    /// Task.
    pub task_id: String,
    /// Task display name: the id.
    pub task_display_name: String,
    /// DAG.
    pub dag_id: String,
    /// DAG display name: the id.
    pub dag_display_name: String,
    /// Run.
    pub dag_run_id: String,
    /// The run's logical date.
    pub logical_date: Option<DateTime<Utc>>,
    /// The run's `run_after`.
    pub run_after: DateTime<Utc>,
    /// Start of the latest try.
    pub start_date: Option<DateTime<Utc>>,
    /// End of the latest try.
    pub end_date: Option<DateTime<Utc>>,
    /// Seconds of the latest try.
    pub duration: Option<f64>,
    /// State (null: no status).
    #[schema(value_type = Option<String>)]
    pub state: Option<TaskState>,
    /// Tries started.
    pub try_number: u32,
    /// Tries allowed.
    pub max_tries: u32,
    /// -1.
    pub map_index: i32,
    /// `default_pool`.
    pub pool: String,
    /// 1.
    pub pool_slots: u32,
    /// `default`.
    pub queue: String,
    /// 1.
    pub priority_weight: i32,
    /// Its `type:`.
    pub operator: Option<String>,
    /// Its `type:`.
    pub operator_name: Option<String>,
    /// `{}`.
    pub executor_config: String,
    /// Null.
    pub hostname: Option<String>,
    /// Null.
    pub note: Option<String>,
    /// Why the latest try failed.
    pub error: Option<String>,
}

/// A page of task instances.
#[derive(Serialize, ToSchema)]
pub struct TaskInstanceCollectionResponse {
    /// The task instances.
    pub task_instances: Vec<TaskInstanceResponse>,
    /// How many.
    pub total_entries: u64,
}

/// One log line.
#[derive(Serialize, ToSchema)]
pub struct StructuredLogMessage {
    /// The text.
    pub event: String,
    /// When it was written.
    pub timestamp: Option<DateTime<Utc>>,
    /// `INFO`, `WARN`, `ERROR`, `STDOUT`, `STDERR`.
    pub level: String,
    /// Its sequence number in the try's log.
    pub seq: u64,
}

/// Log lines of a try.
#[derive(Serialize, ToSchema)]
pub struct TaskInstancesLogResponse {
    /// The lines, in order.
    pub content: Vec<StructuredLogMessage>,
    /// Pass back as `token` for the lines after these (the last line's sequence number).
    pub continuation_token: Option<String>,
}

/// A DAG file that failed to load.
#[derive(Serialize, ToSchema)]
pub struct ImportErrorResponse {
    /// Its position in the current load (stable until the files change).
    pub import_error_id: u64,
    /// When the error was seen (the time of the request: load times are not kept).
    pub timestamp: DateTime<Utc>,
    /// The file.
    pub filename: String,
    /// Null.
    pub bundle_name: Option<String>,
    /// What is wrong, with the line when known.
    pub stack_trace: String,
}

/// The current load errors.
#[derive(Serialize, ToSchema)]
pub struct ImportErrorCollectionResponse {
    /// The errors.
    pub import_errors: Vec<ImportErrorResponse>,
    /// How many.
    pub total_entries: u64,
}

/// A DAG's definition.
#[derive(Serialize, ToSchema)]
pub struct DagSourceResponse {
    /// The YAML.
    pub content: Option<String>,
    /// DAG.
    pub dag_id: String,
    /// DAG display name: the id.
    pub dag_display_name: String,
    /// Null (versions are hashes here).
    pub version_number: Option<u32>,
}

/// Version of the server.
#[derive(Serialize, ToSchema)]
pub struct VersionInfo {
    /// The orchestrator's version.
    pub version: String,
    /// Null.
    pub git_version: Option<String>,
}

/// The state of one component.
#[derive(Serialize, ToSchema)]
pub struct BaseInfoResponse {
    /// `healthy` or `unhealthy`.
    pub status: Option<String>,
}

/// The scheduler's state.
#[derive(Serialize, ToSchema)]
pub struct SchedulerInfoResponse {
    /// `healthy` or `unhealthy`.
    pub status: Option<String>,
    /// When this instance last renewed its lease.
    pub latest_scheduler_heartbeat: Option<String>,
}

/// The DAG processor's state (the file watcher of `serve`).
#[derive(Serialize, ToSchema)]
pub struct DagProcessorInfoResponse {
    /// `healthy`.
    pub status: Option<String>,
    /// The time of the request.
    pub latest_dag_processor_heartbeat: Option<String>,
}

/// The triggerer's state: there is none (null fields).
#[derive(Serialize, ToSchema)]
pub struct TriggererInfoResponse {
    /// Null.
    pub status: Option<String>,
    /// Null.
    pub latest_triggerer_heartbeat: Option<String>,
}

/// The loaded DAGs (ours).
#[derive(Serialize, ToSchema)]
pub struct DagsInfo {
    /// DAGs loaded.
    pub loaded: u64,
    /// Files that failed to load.
    pub import_errors: u64,
}

/// This instance (ours).
#[derive(Serialize, ToSchema)]
pub struct InstanceInfo {
    /// When it last renewed its lease on the store (null without an engine).
    pub latest_lease_renewal: Option<DateTime<Utc>>,
}

/// `/api/v2/monitor/health` and `/health`.
#[derive(Serialize, ToSchema)]
pub struct HealthInfoResponse {
    /// The state store.
    pub metadatabase: BaseInfoResponse,
    /// The scheduler.
    pub scheduler: SchedulerInfoResponse,
    /// The DAG file watcher.
    pub dag_processor: DagProcessorInfoResponse,
    /// None here.
    pub triggerer: TriggererInfoResponse,
    /// Loaded DAGs and load errors.
    pub dags: DagsInfo,
    /// This instance's lease.
    pub instance: InstanceInfo,
}

/// Body of `PATCH /dags/{dag_id}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DagPatchBody {
    /// Pause or unpause.
    pub is_paused: bool,
}

/// Body of `POST /dags/{dag_id}/dagRuns`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerDagRunPostBody {
    /// Run id (generated when absent).
    #[serde(default)]
    pub dag_run_id: Option<String>,
    /// Logical date (now when null or absent).
    #[serde(default)]
    pub logical_date: Option<DateTime<Utc>>,
    /// A JSON object.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub conf: Option<serde_json::Value>,
    /// A note.
    #[serde(default)]
    pub note: Option<String>,
    /// Not supported: must be absent or null (the data interval is the logical date).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub data_interval_start: Option<serde_json::Value>,
    /// Not supported: must be absent or null.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub data_interval_end: Option<serde_json::Value>,
    /// Not supported: must be absent or null.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub run_after: Option<serde_json::Value>,
}

impl TriggerDagRunPostBody {
    /// The first field given that is not implemented here.
    pub fn unsupported(&self) -> Option<&'static str> {
        [
            ("data_interval_start", &self.data_interval_start),
            ("data_interval_end", &self.data_interval_end),
            ("run_after", &self.run_after),
        ]
        .into_iter()
        .find(|(_, v)| v.as_ref().is_some_and(|v| !v.is_null()))
        .map(|(name, _)| name)
    }
}

/// Run states a client may set.
#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum DagRunPatchStates {
    /// Clear the run: every task runs again.
    Queued,
    /// Relabel a finished run.
    Success,
    /// Relabel a finished run.
    Failed,
}

/// Body of `PATCH .../dagRuns/{dag_run_id}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DagRunPatchBody {
    /// New state.
    #[serde(default)]
    pub state: Option<DagRunPatchStates>,
    /// New note (at most 1000 characters): `Some(None)` when the body has `"note": null`
    /// (clear it), `None` when it has no `note` (keep it).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub note: Option<Option<String>>,
}

/// Body of `POST .../dagRuns/{dag_run_id}/clear`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DagRunClearBody {
    /// Only say what would be cleared (Airflow's default: true).
    #[serde(default = "yes")]
    pub dry_run: bool,
    /// Only failed tasks (and what is downstream of them).
    #[serde(default)]
    pub only_failed: bool,
    /// Not supported: must be absent or false (a cleared run keeps its DAG version).
    #[serde(default)]
    pub run_on_latest_version: Option<bool>,
}

/// Body of `POST /dags/{dag_id}/clearTaskInstances`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClearTaskInstancesBody {
    /// The run (required here).
    #[serde(default)]
    pub dag_run_id: Option<String>,
    /// Tasks to clear (all when absent).
    #[serde(default)]
    pub task_ids: Option<Vec<String>>,
    /// Only say what would be cleared (default true).
    #[serde(default = "yes")]
    pub dry_run: bool,
    /// Only failed tasks (default true).
    #[serde(default = "yes")]
    pub only_failed: bool,
    /// With what is downstream.
    #[serde(default)]
    pub include_downstream: bool,
    /// Not supported: must be absent or null (`dag_run_id` names the run).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub start_date: Option<serde_json::Value>,
    /// Not supported: must be absent or null.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub end_date: Option<serde_json::Value>,
    /// Not supported: must be absent or false.
    #[serde(default)]
    pub only_running: Option<bool>,
    /// Not supported: must be absent or true (the run is always queued again).
    #[serde(default)]
    pub reset_dag_runs: Option<bool>,
    /// Not supported: must be absent or false.
    #[serde(default)]
    pub include_upstream: Option<bool>,
    /// Not supported: must be absent or false.
    #[serde(default)]
    pub include_future: Option<bool>,
    /// Not supported: must be absent or false.
    #[serde(default)]
    pub include_past: Option<bool>,
    /// Not supported: must be absent or false.
    #[serde(default)]
    pub run_on_latest_version: Option<bool>,
}

impl ClearTaskInstancesBody {
    /// The first field given that is not implemented here.
    pub fn unsupported(&self) -> Option<&'static str> {
        let dates = [
            ("start_date", &self.start_date),
            ("end_date", &self.end_date),
        ]
        .into_iter()
        .find(|(_, v)| v.as_ref().is_some_and(|v| !v.is_null()));
        let flags = [
            ("only_running", self.only_running == Some(true)),
            ("reset_dag_runs", self.reset_dag_runs == Some(false)),
            ("include_upstream", self.include_upstream == Some(true)),
            ("include_future", self.include_future == Some(true)),
            ("include_past", self.include_past == Some(true)),
            (
                "run_on_latest_version",
                self.run_on_latest_version == Some(true),
            ),
        ];
        dates
            .map(|(name, _)| name)
            .or_else(|| flags.into_iter().find(|(_, set)| *set).map(|(n, _)| n))
    }
}

/// Body of `PATCH .../taskInstances/{task_id}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchTaskInstanceBody {
    /// `success` or `failed`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub new_state: Option<String>,
    /// Not stored: must be absent or null.
    #[serde(default)]
    pub note: Option<String>,
    /// Not supported: must be absent or false.
    #[serde(default)]
    pub include_upstream: Option<bool>,
    /// Not supported: must be absent or false.
    #[serde(default)]
    pub include_downstream: Option<bool>,
    /// Not supported: must be absent or false.
    #[serde(default)]
    pub include_future: Option<bool>,
    /// Not supported: must be absent or false.
    #[serde(default)]
    pub include_past: Option<bool>,
}

impl PatchTaskInstanceBody {
    /// The first field given that is not implemented here.
    pub fn unsupported(&self) -> Option<&'static str> {
        [
            ("include_upstream", self.include_upstream),
            ("include_downstream", self.include_downstream),
            ("include_future", self.include_future),
            ("include_past", self.include_past),
        ]
        .into_iter()
        .find(|(_, v)| *v == Some(true))
        .map(|(name, _)| name)
    }
}

/// A field that is present (even as `null`) as `Some`, for bodies where `null` and absent
/// differ (with `#[serde(default)]`, absent stays `None`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

fn yes() -> bool {
    true
}

/// The ISO 8601 form of a duration (`PT90S`, `PT0.5S`).
fn iso_duration(d: std::time::Duration) -> String {
    match d.subsec_micros() {
        0 => format!("PT{}S", d.as_secs()),
        us => format!("PT{}.{us:06}S", d.as_secs()),
    }
}

fn seconds(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> Option<f64> {
    let (start, end) = (start?, end?);
    Some((end - start).num_microseconds()? as f64 / 1e6)
}

/// A UUID-shaped id derived from `parts` (stable for the same parts).
fn derived_uuid(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for p in parts {
        hasher.update(p.as_bytes());
        hasher.update([0]);
    }
    let h: String = hasher
        .finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl DagResponse {
    /// A DAG with its state.
    pub fn of(s: &DagSummary) -> Self {
        let dag = &s.dag;
        let id = dag.id.to_string();
        let path = dag.source.path.display().to_string();
        Self {
            dag_display_name: id.clone(),
            is_paused: s.paused,
            is_stale: false,
            last_parsed_time: None,
            last_parse_duration: None,
            last_expired: None,
            bundle_name: None,
            bundle_version: Some(dag.source.hash.clone()),
            relative_fileloc: Some(path.clone()),
            fileloc: path,
            description: dag.description.clone(),
            timetable_summary: dag.schedule_text.clone(),
            timetable_description: dag.schedule_text.clone(),
            tags: dag
                .tags
                .iter()
                .map(|t| DagTagResponse {
                    name: t.clone(),
                    dag_id: id.clone(),
                    dag_display_name: id.clone(),
                })
                .collect(),
            max_active_tasks: dag.max_active_tasks,
            max_active_runs: Some(dag.max_active_runs),
            max_consecutive_failed_dag_runs: 0,
            has_task_concurrency_limits: false,
            has_import_errors: false,
            next_dagrun_logical_date: s.next.map(|n| n.logical_date),
            next_dagrun_data_interval_start: s.next.map(|n| n.logical_date),
            next_dagrun_data_interval_end: s.next.map(|n| n.run_after),
            next_dagrun_run_after: s.next.map(|n| n.run_after),
            owners: Vec::new(),
            file_token: dag.source.hash.clone(),
            dag_id: id,
        }
    }
}

impl DagDetailsResponse {
    /// A DAG with its details.
    pub fn of(s: &DagSummary) -> Self {
        let dag: &Dag = &s.dag;
        Self {
            catchup: dag.timetable.as_ref().is_some_and(|t| t.catchup),
            concurrency: dag.max_active_tasks,
            dag_run_timeout: dag.dagrun_timeout.map(iso_duration),
            params: dag.params.clone(),
            render_template_as_native_obj: false,
            timezone: Some(dag.timezone.name().to_string()),
            doc_md: dag.description.clone(),
            start_date: None,
            end_date: None,
            last_parsed: None,
            dag: DagResponse::of(s),
        }
    }
}

impl TaskResponse {
    /// A task of `dag`.
    pub fn of(dag: &Dag, index: usize) -> Self {
        let task = &dag.tasks[index];
        let id = task.id.to_string();
        Self {
            task_display_name: id.clone(),
            operator_name: task.kind.type_name().to_string(),
            owner: None,
            doc_md: task.doc.clone(),
            downstream_task_ids: task
                .downstream
                .iter()
                .map(|&i| dag.tasks[i].id.to_string())
                .collect(),
            trigger_rule: trigger_rule_name(&task.trigger_rule),
            retries: task.retry.retries,
            retry_delay: TimeDelta::of(task.retry.delay),
            retry_exponential_backoff: task.retry.exponential_backoff,
            execution_timeout: task.execution_timeout.map(TimeDelta::of),
            depends_on_past: false,
            wait_for_downstream: false,
            is_mapped: false,
            extra_links: Vec::new(),
            pool: "default_pool".into(),
            pool_slots: 1,
            queue: "default".into(),
            task_id: id,
        }
    }
}

/// A trigger rule's name as written in DAG files (`all_success`, …).
fn trigger_rule_name(rule: &crate::dag::TriggerRule) -> String {
    serde_json::to_value(rule)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{rule:?}"))
}

impl DagRunResponse {
    /// A run.
    pub fn of(run: &RunRow) -> Self {
        let dag_id = run.dag_id.to_string();
        let (run_type, triggered_by) = match run.run_type {
            RunType::Manual => (DagRunType::Manual, None),
            RunType::Triggered => (DagRunType::Manual, Some(DagRunTriggeredBy::Operator)),
            RunType::Scheduled => (DagRunType::Scheduled, Some(DagRunTriggeredBy::Timetable)),
            RunType::Backfill => (DagRunType::Backfill, Some(DagRunTriggeredBy::Backfill)),
        };
        Self {
            dag_run_id: run.run_id.to_string(),
            dag_display_name: dag_id.clone(),
            dag_id,
            logical_date: Some(run.logical_date),
            queued_at: Some(run.queued_at),
            start_date: run.start_date,
            end_date: run.end_date,
            duration: seconds(run.start_date, run.end_date),
            data_interval_start: Some(run.data_interval_start),
            data_interval_end: Some(run.data_interval_end),
            run_after: run.data_interval_end,
            last_scheduling_decision: None,
            run_type,
            state: run.state,
            triggered_by,
            triggering_user_name: None,
            conf: run.conf.clone(),
            note: run.user_note.clone().or_else(|| run.note.clone()),
            dag_versions: Vec::new(),
            bundle_version: run.dag_version.clone(),
            orchestrator_run_type: run.run_type,
        }
    }
}

impl TaskInstanceResponse {
    /// A task instance of `run`; `dag` (when loaded) names its type.
    pub fn of(run: &RunRow, ti: &TaskInstanceRow, dag: Option<&Dag>) -> Self {
        let operator = dag
            .and_then(|d| d.index.get(&ti.task_id).map(|&i| &d.tasks[i]))
            .map(|t| t.kind.type_name().to_string());
        let dag_id = run.dag_id.to_string();
        Self {
            id: derived_uuid(&[&run.uid_or_legacy(), ti.task_id.as_str()]),
            task_id: ti.task_id.to_string(),
            task_display_name: ti.task_id.to_string(),
            dag_display_name: dag_id.clone(),
            dag_id,
            dag_run_id: run.run_id.to_string(),
            logical_date: Some(run.logical_date),
            run_after: run.data_interval_end,
            start_date: ti.start_date,
            end_date: ti.end_date,
            duration: seconds(ti.start_date, ti.end_date),
            state: ti.state,
            try_number: ti.try_number,
            max_tries: ti.max_tries,
            map_index: -1,
            pool: "default_pool".into(),
            pool_slots: 1,
            queue: "default".into(),
            priority_weight: 1,
            operator_name: operator.clone(),
            operator,
            executor_config: "{}".into(),
            hostname: None,
            note: None,
            error: ti.error.clone(),
        }
    }
}

impl ImportErrorResponse {
    /// The `n`th (1-based) load error.
    pub fn of(n: usize, e: &LoadError, now: DateTime<Utc>) -> Self {
        let mut trace = String::new();
        if let Some(line) = e.line {
            trace.push_str(&format!("line {line}: "));
        }
        trace.push_str(&e.message);
        Self {
            import_error_id: n as u64,
            timestamp: now,
            filename: e.file.display().to_string(),
            bundle_name: None,
            stack_trace: trace,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn durations_take_airflows_forms() {
        let d = TimeDelta::of(Duration::from_micros(90_061_000_005));
        assert_eq!((d.days, d.seconds, d.microseconds), (1, 3661, 5));
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["__type"], "TimeDelta");
        assert_eq!(iso_duration(Duration::from_secs(3600)), "PT3600S");
        assert_eq!(iso_duration(Duration::from_millis(1500)), "PT1.500000S");
    }

    #[test]
    fn derived_ids_are_stable_uuid_shapes() {
        let a = derived_uuid(&["run", "task"]);
        assert_eq!(a, derived_uuid(&["run", "task"]));
        assert_ne!(a, derived_uuid(&["runt", "ask"]));
        let groups: Vec<usize> = a.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
    }

    #[test]
    fn triggered_runs_are_manual_to_airflow_clients() {
        let now = Utc::now();
        let run = RunRow {
            key: crate::ids::RunKey(1),
            dag_id: crate::ids::DagId::new("child"),
            run_id: crate::ids::RunId::new("triggered__x"),
            run_type: RunType::Triggered,
            state: RunState::Success,
            logical_date: now,
            data_interval_start: now,
            data_interval_end: now,
            conf: serde_json::json!({}),
            queued_at: now,
            start_date: Some(now),
            end_date: Some(now + chrono::Duration::milliseconds(1500)),
            parent_run: None,
            parent_task_id: None,
            parent_try: None,
            owner: None,
            owner_epoch: None,
            dag_version: None,
            uid: None,
            note: Some("timed out".into()),
            user_note: None,
        };
        let json = serde_json::to_value(DagRunResponse::of(&run)).unwrap();
        assert_eq!(json["run_type"], "manual");
        assert_eq!(json["triggered_by"], "operator");
        assert_eq!(json["orchestrator_run_type"], "triggered");
        assert_eq!(json["duration"], 1.5);
        assert_eq!(json["note"], "timed out");
        assert_eq!(json["dag_versions"], serde_json::json!([]));
    }
}
