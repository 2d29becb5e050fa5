//! The run page (`/dags/{dag_id}/runs/{run_id}`): what the run is (type, conf, dates,
//! version, parent and children), its task instances, a Gantt of every try, and the
//! actions on a finished run — clear it (all tasks or the failed ones), clear one task
//! (with or without its downstream), mark one task success or failed. Actions are form
//! POSTs that answer 303 back to this page with a flash message; the service refuses them
//! with 409 while the run is queued or running.

use std::collections::HashMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};

use super::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};

use super::flash::{self, Flash};
use super::gantt::{self, Gantt};
use super::{PageError, duration, links, time};
use crate::dag::Dag;
use crate::ids::TaskId;
use crate::service::{RunDetail, RunRow, TaskInstanceRow, is_active};
use crate::state::TaskState;
use crate::web::AppState;

/// A run linked from another (parent, child).
pub struct RunLink {
    /// The run page.
    pub url: String,
    /// `dag_id / run_id`.
    pub label: String,
    /// Its state.
    pub state: &'static str,
}

impl RunLink {
    fn new(run: &RunRow) -> Self {
        Self {
            url: links::run(run.dag_id.as_str(), run.run_id.as_str()),
            label: format!("{} / {}", run.dag_id, run.run_id),
            state: run.state.as_str(),
        }
    }
}

/// One row of the task table.
pub struct TaskRow {
    /// The task.
    pub task_id: String,
    /// Its log page (latest try).
    pub url: String,
    /// State name, `none` for no status.
    pub state: &'static str,
    /// Words for the state.
    pub state_text: &'static str,
    /// `2 of 3`, or `-` before the first try.
    pub tries: String,
    /// Start of the latest try.
    pub start: String,
    /// End of the latest try.
    pub end: String,
    /// How long it ran (so far, while it runs).
    pub duration: String,
    /// Why the latest try failed (masked).
    pub error: Option<String>,
    /// Whether it has an instance (only those can be marked).
    pub marks: bool,
    /// The clear action's URL.
    pub clear_url: String,
    /// The mark action's URL.
    pub mark_url: String,
}

/// The run page.
#[derive(Template, WebTemplate)]
#[template(path = "run.html")]
pub struct RunPage {
    dag_id: String,
    run_id: String,
    dag_url: String,
    run_url: String,
    run_type: &'static str,
    state: &'static str,
    /// The run is queued or running: the page follows it.
    live: bool,
    /// Actions are offered.
    finished: bool,
    /// Some task failed: "clear failed" is offered.
    any_failed: bool,
    /// Pretty JSON, masked; `None` when empty.
    conf: Option<String>,
    logical_date: String,
    interval_start: String,
    interval_end: String,
    queued: String,
    start: String,
    end: String,
    duration: String,
    note: Option<String>,
    /// Short hash and link of the DAG version the run executes.
    version: Option<(String, String)>,
    parent: Option<RunLink>,
    children: Vec<RunLink>,
    tasks: Vec<TaskRow>,
    gantt: Gantt,
    flash: Option<String>,
}

/// `GET /dags/{dag_id}/runs/{run_id}`.
pub async fn page(
    State(state): State<AppState>,
    Path((dag_id, run_id)): Path<(String, String)>,
    flash: Flash,
) -> Result<(Flash, RunPage), PageError> {
    let service = &state.service;
    let run = service.run(&dag_id, &run_id).await?;
    // A queued run of a paused DAG will not move until someone unpauses it: not followed.
    let active = is_active(&run, service.paused(&run.dag_id).await?);
    let detail = service.run_detail(run).await?;
    let dag = service.bag().get(dag_id.as_str()).cloned();
    let message = flash.message().map(str::to_string);
    let page = RunPage::new(&detail, dag.as_deref(), active, Utc::now(), message);
    Ok((flash, page))
}

impl RunPage {
    fn new(
        detail: &RunDetail,
        dag: Option<&Dag>,
        active: bool,
        now: DateTime<Utc>,
        flash: Option<String>,
    ) -> Self {
        let run = &detail.run;
        let (dag_id, run_id) = (run.dag_id.as_str(), run.run_id.as_str());
        let instances = ordered_instances(detail, dag);
        let order: Vec<TaskId> = instances.iter().map(|t| t.task_id.clone()).collect();
        let live = active;
        let run_end = run.end_date.or((!run.state.is_finished()).then_some(now));
        let started = !detail.task_instances.is_empty();
        let tasks = instances
            .iter()
            .map(|t| task_row(run, t, started, now))
            .collect();
        let conf = match &run.conf {
            serde_json::Value::Object(map) if map.is_empty() => None,
            conf => serde_json::to_string_pretty(conf).ok(),
        };
        Self {
            dag_id: dag_id.to_string(),
            run_id: run_id.to_string(),
            dag_url: links::dag(dag_id),
            run_url: links::run(dag_id, run_id),
            run_type: run.run_type.as_str(),
            state: run.state.as_str(),
            live,
            finished: run.state.is_finished(),
            any_failed: instances
                .iter()
                .any(|t| t.state.is_some_and(TaskState::is_failure)),
            conf: conf.map(|c| crate::redact::text(&c).into_owned()),
            logical_date: time(Some(run.logical_date)),
            interval_start: time(Some(run.data_interval_start)),
            interval_end: time(Some(run.data_interval_end)),
            queued: time(Some(run.queued_at)),
            start: time(run.start_date),
            end: time(run.end_date),
            duration: duration(run.start_date, run_end),
            note: run
                .note
                .as_deref()
                .map(|n| crate::redact::text(n).into_owned()),
            version: run.dag_version.as_ref().map(|v| {
                let short: String = v.chars().take(12).collect();
                (short, links::source_version(dag_id, v))
            }),
            parent: detail.parent.as_ref().map(RunLink::new),
            children: detail.children.iter().map(RunLink::new).collect(),
            gantt: gantt::build(run, &order, &detail.tries, now),
            tasks,
            flash,
        }
    }
}

/// The run's task instances in the DAG's order (file order), those the DAG no longer has
/// after them; a run not yet started shows its DAG's tasks with no status.
fn ordered_instances(detail: &RunDetail, dag: Option<&Dag>) -> Vec<TaskInstanceRow> {
    let mut instances = detail.task_instances.clone();
    if instances.is_empty()
        && let Some(dag) = dag
    {
        return dag
            .tasks
            .iter()
            .map(|t| TaskInstanceRow::unstarted(&t.id))
            .collect();
    }
    if let Some(dag) = dag {
        let position: HashMap<&TaskId, usize> = dag.index.iter().map(|(k, v)| (k, *v)).collect();
        instances.sort_by_key(|t| position.get(&t.task_id).copied().unwrap_or(usize::MAX));
    }
    instances
}

/// `started`: the run has task instances (only those can be marked).
fn task_row(run: &RunRow, t: &TaskInstanceRow, started: bool, now: DateTime<Utc>) -> TaskRow {
    let (dag_id, run_id, task_id) = (run.dag_id.as_str(), run.run_id.as_str(), t.task_id.as_str());
    let running = t.state == Some(TaskState::Running);
    let task_url = links::task(dag_id, run_id, task_id);
    TaskRow {
        task_id: task_id.to_string(),
        state: t.state.map_or("none", TaskState::as_str),
        state_text: t.state.map_or("no status", TaskState::as_str),
        tries: if t.try_number == 0 {
            "-".into()
        } else {
            format!("{} of {}", t.try_number, t.max_tries)
        },
        start: time(t.start_date),
        end: time(t.end_date),
        duration: duration(t.start_date, t.end_date.or(running.then_some(now))),
        error: t
            .error
            .as_deref()
            .map(|e| crate::redact::text(e).into_owned()),
        marks: started,
        clear_url: format!("{task_url}/clear"),
        mark_url: format!("{task_url}/mark"),
        url: task_url,
    }
}

/// The clear-run form.
#[derive(serde::Deserialize)]
pub struct ClearRunForm {
    only_failed: String,
}

/// The clear-task form.
#[derive(serde::Deserialize)]
pub struct ClearTaskForm {
    downstream: String,
}

/// The mark form.
#[derive(serde::Deserialize)]
pub struct MarkForm {
    state: String,
}

/// `POST /dags/{dag_id}/runs/{run_id}/clear` with `only_failed=true|false`.
pub async fn clear(
    State(state): State<AppState>,
    Path((dag_id, run_id)): Path<(String, String)>,
    form: Result<Form<ClearRunForm>, FormRejection>,
) -> Result<Response, PageError> {
    let only_failed = flag(&form_value(form)?.only_failed, "only_failed")?;
    let run = state.service.run(&dag_id, &run_id).await?;
    let cleared = state.service.clear(run, only_failed).await?;
    Ok(flash::redirect(
        &links::run(&dag_id, &run_id),
        &cleared_message(&cleared),
    ))
}

/// `POST /dags/{dag_id}/runs/{run_id}/tasks/{task_id}/clear` with `downstream=true|false`.
pub async fn clear_task(
    State(state): State<AppState>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    form: Result<Form<ClearTaskForm>, FormRejection>,
) -> Result<Response, PageError> {
    let downstream = flag(&form_value(form)?.downstream, "downstream")?;
    let run = state.service.run(&dag_id, &run_id).await?;
    let cleared = state.service.clear_task(run, &task_id, downstream).await?;
    Ok(flash::redirect(
        &links::run(&dag_id, &run_id),
        &cleared_message(&cleared),
    ))
}

/// `POST /dags/{dag_id}/runs/{run_id}/tasks/{task_id}/mark` with `state=success|failed`.
pub async fn mark(
    State(state): State<AppState>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    form: Result<Form<MarkForm>, FormRejection>,
) -> Result<Response, PageError> {
    let wanted = form_value(form)?.state;
    let new_state = match wanted.as_str() {
        "success" => TaskState::Success,
        "failed" => TaskState::Failed,
        other => {
            return Err(PageError::new(
                StatusCode::BAD_REQUEST,
                format!("a task can be marked success or failed, not '{other}'"),
            ));
        }
    };
    let run = state.service.run(&dag_id, &run_id).await?;
    let marked = state.service.mark(run, &task_id, new_state).await?;
    let message = format!(
        "Marked {} {}; the run is {}.",
        marked.task_id, marked.state, marked.run.state
    );
    Ok(flash::redirect(&links::run(&dag_id, &run_id), &message))
}

fn form_value<T>(form: Result<Form<T>, FormRejection>) -> Result<T, PageError> {
    form.map(|Form(v)| v)
        .map_err(|e| PageError::new(StatusCode::BAD_REQUEST, e.body_text()))
}

/// A form's `true`/`false`.
fn flag(value: &str, name: &str) -> Result<bool, PageError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(PageError::new(
            StatusCode::BAD_REQUEST,
            format!("{name} must be true or false, not '{other}'"),
        )),
    }
}

fn cleared_message(cleared: &crate::service::Cleared) -> String {
    let names: Vec<&str> = cleared.tasks.iter().map(TaskId::as_str).collect();
    format!(
        "Cleared {} task(s): {}. The run is {} again.",
        names.len(),
        names.join(", "),
        cleared.run.state
    )
}

#[cfg(test)]
mod tests;
