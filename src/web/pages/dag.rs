//! `GET /dags/{dag_id}`: one DAG — its header (description, tags, schedule, pause and
//! trigger), Airflow's grid (runs as columns, oldest left, × tasks as rows in dependency
//! order; [`GRID_RUNS`] runs a page, older ones paged with `?offset=`), and the task graph
//! drawn as SVG with the states of one run (`?run_id=`, default the newest shown).

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{RawQuery, State};

use super::extract::Path;
use axum::http::Uri;
use chrono::Utc;

use super::dag_parts::{Controls, Mark, Schedule, TagChip, generated, next_run};
use super::flash::Flash;
use super::{PageError, duration, links};
use crate::dag::Dag;
use crate::ids::TaskId;
use crate::service::{Grid, RunRow, TaskInstanceRow};
use crate::web::AppState;
use crate::web::graph_svg::{self, SvgNode};

/// Runs per grid page.
pub const GRID_RUNS: u32 = 25;

/// A column head: the run's mark, linking to its page.
pub struct RunHead {
    mark: Mark,
    selected: bool,
}

/// One task's row of the grid.
pub struct GridRow {
    task_id: String,
    cells: Vec<Cell>,
}

/// One task instance in the grid.
pub struct Cell {
    state: &'static str,
    href: Option<String>,
    title: String,
    selected: bool,
}

/// The run whose states the graph shows.
pub struct Selected {
    run_id: String,
    state: &'static str,
    href: String,
    /// The same page with the previous (older) / next (newer) run of the grid selected.
    older: Option<String>,
    newer: Option<String>,
    /// The definition it executed, when that is not the one loaded now.
    version_href: Option<String>,
}

/// The DAG page.
#[derive(Template, WebTemplate)]
#[template(path = "dag.html")]
pub struct DagPage {
    dag_id: String,
    description: Option<String>,
    tags: Vec<TagChip>,
    schedule: Schedule,
    next: Option<(String, String)>,
    generated: Option<(String, String)>,
    controls: Controls,
    source_href: String,
    heads: Vec<RunHead>,
    rows: Vec<GridRow>,
    total_runs: u64,
    /// The first page of the grid (for an offset past the last run).
    newest_runs: String,
    newer_runs: Option<String>,
    older_runs: Option<String>,
    graph: String,
    selected: Option<Selected>,
    flash: Option<String>,
    live: bool,
}

/// `?offset=&run_id=` of the DAG page.
#[derive(Debug, Default)]
struct Params {
    offset: u64,
    run_id: Option<String>,
}

impl Params {
    fn parse(query: Option<&str>) -> Self {
        let mut params = Self::default();
        for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*key {
                "offset" => params.offset = value.parse().unwrap_or(0),
                "run_id" if !value.is_empty() => params.run_id = Some(value.into_owned()),
                _ => {}
            }
        }
        params
    }
}

/// `GET /dags/{dag_id}`.
pub async fn dag(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    RawQuery(query): RawQuery,
    uri: Uri,
    flash: Flash,
) -> Result<(Flash, DagPage), PageError> {
    let service = &state.service;
    let params = Params::parse(query.as_deref());
    let summary = service.dag_summary(&dag_id, 0).await?;
    let grid = service.grid(&dag_id, GRID_RUNS, params.offset).await?;
    let selected = match &params.run_id {
        Some(run_id) => Some(selected_run(&state, &grid, &dag_id, run_id).await?),
        None => grid.runs.first().map(|run| {
            let instances = grid.instances.get(&run.key).cloned().unwrap_or_default();
            (run.clone(), instances)
        }),
    };
    let live = service.any_active_run(Some(&summary.dag.id)).await?;
    let dag = &summary.dag;
    let here = uri.path_and_query().map_or("/", |p| p.as_str());
    let selected_key = selected.as_ref().map(|(run, _)| run.key);
    let (heads, rows) = grid_view(dag, &grid, selected_key);
    let page_link = |offset: u64| links::with_query(&links::dag(&dag_id), &offset_query(offset));
    let page = DagPage {
        dag_id: dag.id.to_string(),
        description: dag
            .description
            .as_deref()
            .map(|d| crate::redact::text(d).into_owned()),
        tags: dag
            .tags
            .iter()
            .map(|t| TagChip {
                name: t.clone(),
                href: links::with_query("/", &links::query(&[("tag", t.as_str())])),
                active: false,
            })
            .collect(),
        schedule: Schedule::of(dag),
        next: next_run(summary.next.as_ref()),
        generated: generated(dag),
        controls: Controls::new(dag.id.as_str(), summary.paused, here),
        source_href: links::dag_action(&dag_id, "source"),
        graph: graph(dag, selected.as_ref()),
        selected: selected
            .as_ref()
            .map(|(run, _)| selection(dag, &grid, run, params.offset)),
        heads,
        rows,
        total_runs: grid.total,
        newest_runs: links::dag(&dag_id),
        newer_runs: (params.offset > 0)
            .then(|| page_link(params.offset.saturating_sub(GRID_RUNS.into()))),
        older_runs: (params.offset + u64::from(GRID_RUNS) < grid.total)
            .then(|| page_link(params.offset + u64::from(GRID_RUNS))),
        flash: flash.message().map(str::to_owned),
        live,
    };
    Ok((flash, page))
}

/// The run `?run_id=` names, with its task instances (from the grid when it is shown).
async fn selected_run(
    state: &AppState,
    grid: &Grid,
    dag_id: &str,
    run_id: &str,
) -> Result<(RunRow, Vec<TaskInstanceRow>), PageError> {
    if let Some(run) = grid.runs.iter().find(|r| r.run_id.as_str() == run_id) {
        let instances = grid.instances.get(&run.key).cloned().unwrap_or_default();
        return Ok((run.clone(), instances));
    }
    let run = state.service.run(dag_id, run_id).await?;
    let detail = state.service.run_detail(run).await?;
    Ok((detail.run, detail.task_instances))
}

fn offset_query(offset: u64) -> String {
    if offset == 0 {
        String::new()
    } else {
        links::query(&[("offset", offset.to_string().as_str())])
    }
}

/// The selected run and links selecting its neighbours in the grid page.
fn selection(dag: &Dag, grid: &Grid, run: &RunRow, offset: u64) -> Selected {
    let dag_id = dag.id.as_str();
    let position = grid.runs.iter().position(|r| r.key == run.key);
    let select = |index: usize| {
        grid.runs.get(index).map(|r| {
            let mut pairs = vec![("run_id", r.run_id.as_str())];
            let offset = offset.to_string();
            if offset != "0" {
                pairs.push(("offset", offset.as_str()));
            }
            format!("{}?{}#graph", links::dag(dag_id), links::query(&pairs))
        })
    };
    Selected {
        run_id: run.run_id.to_string(),
        state: run.state.as_str(),
        href: links::run(dag_id, run.run_id.as_str()),
        older: position.and_then(|p| select(p + 1)),
        newer: position.and_then(|p| p.checked_sub(1)).and_then(select),
        version_href: run
            .dag_version
            .as_deref()
            .filter(|v| *v != dag.source.hash)
            .map(|v| links::source_version(dag_id, v)),
    }
}

/// Column heads (oldest run first) and one row per task (in dependency order, then tasks
/// that only old runs have).
fn grid_view(
    dag: &Dag,
    grid: &Grid,
    selected: Option<crate::ids::RunKey>,
) -> (Vec<RunHead>, Vec<GridRow>) {
    let runs: Vec<&RunRow> = grid.runs.iter().rev().collect();
    let heads = runs
        .iter()
        .map(|run| RunHead {
            mark: Mark::of(run),
            selected: Some(run.key) == selected,
        })
        .collect();
    let by_run: Vec<HashMap<&TaskId, &TaskInstanceRow>> = runs
        .iter()
        .map(|run| {
            grid.instances
                .get(&run.key)
                .map(|tis| tis.iter().map(|ti| (&ti.task_id, ti)).collect())
                .unwrap_or_default()
        })
        .collect();
    let mut task_ids: Vec<(TaskId, bool)> = topological(dag)
        .into_iter()
        .map(|i| (dag.tasks[i].id.clone(), true))
        .collect();
    let removed: BTreeSet<&TaskId> = by_run
        .iter()
        .flat_map(|m| m.keys().copied())
        .filter(|id| !dag.index.contains_key(*id))
        .collect();
    task_ids.extend(removed.into_iter().map(|id| (id.clone(), false)));
    let rows = task_ids
        .iter()
        .map(|(task, in_dag)| GridRow {
            task_id: task.to_string(),
            cells: runs
                .iter()
                .zip(&by_run)
                .map(|(run, tis)| cell(run, task, tis.get(task).copied(), *in_dag, selected))
                .collect(),
        })
        .collect();
    (heads, rows)
}

fn cell(
    run: &RunRow,
    task: &TaskId,
    ti: Option<&TaskInstanceRow>,
    in_dag: bool,
    selected: Option<crate::ids::RunKey>,
) -> Cell {
    let state = ti.and_then(|t| t.state).map_or("none", |s| s.as_str());
    Cell {
        state,
        href: (ti.is_some() || in_dag)
            .then(|| links::task(run.dag_id.as_str(), run.run_id.as_str(), task.as_str())),
        title: format!("{task} · {} · {}", run.run_id, instance_summary(ti)),
        selected: Some(run.key) == selected,
    }
}

/// "success · try 1/3 · 12.4 s" (or "no status").
fn instance_summary(ti: Option<&TaskInstanceRow>) -> String {
    let Some(ti) = ti.filter(|t| t.state.is_some()) else {
        return "no status".into();
    };
    let state = ti.state.map_or("no status", |s| s.as_str());
    let end = ti.end_date.or_else(|| ti.start_date.map(|_| Utc::now()));
    format!(
        "{state} · try {}/{} · {}",
        ti.try_number,
        ti.max_tries,
        duration(ti.start_date, end)
    )
}

/// Task indices in dependency order; among tasks that are ready together, file order.
fn topological(dag: &Dag) -> Vec<usize> {
    let mut waiting: Vec<usize> = dag.tasks.iter().map(|t| t.upstream.len()).collect();
    let mut ready: BinaryHeap<Reverse<usize>> = (0..dag.tasks.len())
        .filter(|&i| waiting[i] == 0)
        .map(Reverse)
        .collect();
    let mut order = Vec::with_capacity(dag.tasks.len());
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for &d in &dag.tasks[i].downstream {
            waiting[d] -= 1;
            if waiting[d] == 0 {
                ready.push(Reverse(d));
            }
        }
    }
    order
}

/// The task graph with the selected run's states; nodes link to the task's log in that run,
/// or to the task's grid row when there is no run.
fn graph(dag: &Dag, selected: Option<&(RunRow, Vec<TaskInstanceRow>)>) -> String {
    let nodes: Vec<SvgNode> = dag
        .tasks
        .iter()
        .map(|task| {
            let ti = selected.and_then(|(_, tis)| tis.iter().find(|t| t.task_id == task.id));
            let href = match selected {
                Some((run, _)) => Some(links::task(
                    dag.id.as_str(),
                    run.run_id.as_str(),
                    task.id.as_str(),
                )),
                None => Some(format!("#task-{}", task.id)),
            };
            SvgNode {
                label: task.id.to_string(),
                state: ti.and_then(|t| t.state),
                href,
                title: selected.map(|_| instance_summary(ti)),
            }
        })
        .collect();
    let edges: Vec<(usize, usize)> = dag
        .tasks
        .iter()
        .enumerate()
        .flat_map(|(i, t)| t.downstream.iter().map(move |&d| (i, d)))
        .collect();
    graph_svg::render(&nodes, &edges)
}
