//! Runs, task instances, tries and logs as front-ends show them, and the actions on them:
//! trigger, clear (a run, or tasks with or without their downstream), mark.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{Service, ServiceError, ServiceResult};
use crate::dag::Dag;
use crate::ids::{DagId, RunKey, TaskId};
use crate::state::{RunState, RunType, TaskState};
use crate::store::{NewRun, Owner, RunQuery, RunRow, TaskInstanceRow, TryRow};

/// A run with everything its page shows.
#[derive(Debug, serde::Serialize)]
pub struct RunDetail {
    /// The run.
    #[serde(flatten)]
    pub run: RunRow,
    /// Its task instances.
    pub task_instances: Vec<TaskInstanceRow>,
    /// Every try of every task, by start.
    #[serde(skip)]
    pub tries: Vec<TryRow>,
    /// The run whose `trigger_dag` task created it.
    #[serde(skip)]
    pub parent: Option<RunRow>,
    /// The runs its `trigger_dag` tasks created.
    #[serde(skip)]
    pub children: Vec<RunRow>,
}

/// Recent runs of a DAG with their task instances (the grid).
#[derive(Debug)]
pub struct Grid {
    /// The runs of the page, newest first.
    pub runs: Vec<RunRow>,
    /// Task instances by run.
    pub instances: HashMap<RunKey, Vec<TaskInstanceRow>>,
    /// Runs of the DAG in all.
    pub total: u64,
}

/// What to queue.
#[derive(Clone, Debug, Default)]
pub struct TriggerRequest {
    /// The run's conf (a JSON object).
    pub conf: serde_json::Value,
    /// Reserve the run for this foreground process.
    pub owner: Option<Owner>,
}

/// What a REST client may choose about a run it triggers (the rest as [`Service::trigger`]).
#[derive(Clone, Debug, Default)]
pub struct RunChoice {
    /// The run id (generated when `None`).
    pub run_id: Option<String>,
    /// The logical date (now when `None`).
    pub logical_date: Option<chrono::DateTime<Utc>>,
    /// The user's note.
    pub note: Option<String>,
}

/// Which task instances of a finished run to clear.
#[derive(Clone, Debug, Default)]
pub struct ClearRequest {
    /// These tasks (all when `None`).
    pub tasks: Option<Vec<String>>,
    /// Only those whose state is a failure.
    pub only_failed: bool,
    /// With everything downstream of them.
    pub downstream: bool,
    /// Say what would be cleared without clearing.
    pub dry_run: bool,
}

/// What `clear` did.
#[derive(Debug, serde::Serialize)]
pub struct Cleared {
    /// The run, queued again.
    pub run: RunRow,
    /// Task ids reset.
    pub tasks: Vec<TaskId>,
}

/// What `mark` did.
#[derive(Debug, serde::Serialize)]
pub struct Marked {
    /// The run after the mark (its state follows its task instances).
    pub run: RunRow,
    /// The task marked.
    pub task_id: TaskId,
    /// Its new state.
    pub state: TaskState,
}

/// Whether a run will progress without anyone acting: running, or queued and able to
/// start (its DAG is unpaused, or a foreground process reserved it). A queued run of a
/// paused DAG waits for the DAG to be unpaused, so pages need not poll for it.
pub fn is_active(run: &RunRow, dag_paused: bool) -> bool {
    match run.state {
        RunState::Running => true,
        RunState::Queued => !dag_paused || run.owner.is_some(),
        RunState::Success | RunState::Failed => false,
    }
}

impl Service {
    /// One page of runs and how many match in all.
    pub async fn list_runs(&self, query: &RunQuery) -> ServiceResult<(Vec<RunRow>, u64)> {
        Ok(self.store.query_runs(query).await?)
    }

    /// Whether any run (of one DAG) will progress without anyone acting (see
    /// [`is_active`]).
    pub async fn any_active_run(&self, dag: Option<&DagId>) -> ServiceResult<bool> {
        Ok(self.store.any_active_run(dag).await?)
    }

    /// Finds one run by run id (and DAG when given): the CLI's lookup.
    pub async fn find_run(&self, run_id: &str, dag: Option<&str>) -> ServiceResult<RunRow> {
        let dag = dag.map(DagId::new);
        let mut rows = self.store.runs_by_run_id(run_id, dag.as_ref()).await?;
        match rows.len() {
            0 => Err(ServiceError::UnknownRun(run_id.to_string())),
            1 => Ok(rows.remove(0)),
            _ => {
                let dags: Vec<String> = rows.iter().map(|r| r.dag_id.to_string()).collect();
                Err(ServiceError::AmbiguousRun(
                    run_id.to_string(),
                    dags.join(", "),
                ))
            }
        }
    }

    /// The run `run_id` of `dag_id` (the DAG need not be loaded any more).
    pub async fn run(&self, dag_id: &str, run_id: &str) -> ServiceResult<RunRow> {
        let dag = DagId::new(dag_id);
        self.store
            .runs_by_run_id(run_id, Some(&dag))
            .await?
            .pop()
            .ok_or_else(|| ServiceError::UnknownRun(format!("{dag_id}/{run_id}")))
    }

    /// A run as stored now, by key.
    pub async fn refresh(&self, run: &RunRow) -> ServiceResult<RunRow> {
        self.store
            .run(run.key)
            .await?
            .ok_or_else(|| ServiceError::UnknownRun(run.run_id.to_string()))
    }

    /// Waits until `run` has finished, reading the store every `poll` (whoever executes
    /// it: this process, a server or another instance), and calls `on_change` with the run
    /// each time its state changes. Returns the finished run.
    pub async fn wait(
        &self,
        run: &RunRow,
        poll: std::time::Duration,
        mut on_change: impl FnMut(&RunRow),
    ) -> ServiceResult<RunRow> {
        let mut last = run.state;
        loop {
            let now = self.refresh(run).await?;
            if now.state != last {
                on_change(&now);
                last = now.state;
            }
            if now.state.is_finished() {
                return Ok(now);
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// A run with its task instances, tries, parent and children.
    pub async fn run_detail(&self, run: RunRow) -> ServiceResult<RunDetail> {
        let task_instances = self.store.task_instances(run.key).await?;
        let tries = self.store.tries(run.key).await?;
        let parent = match run.parent_run {
            Some(key) => self.store.run(key).await?,
            None => None,
        };
        let children = self.store.child_runs(run.key).await?;
        Ok(RunDetail {
            run,
            task_instances,
            tries,
            parent,
            children,
        })
    }

    /// Runs a `trigger_dag` task of `run` created.
    pub async fn children(&self, run: &RunRow) -> ServiceResult<Vec<RunRow>> {
        Ok(self.store.child_runs(run.key).await?)
    }

    /// A page of a DAG's runs, newest first, with their task instances.
    pub async fn grid(&self, dag_id: &str, limit: u32, offset: u64) -> ServiceResult<Grid> {
        let query = RunQuery {
            dags: vec![DagId::new(dag_id)],
            limit,
            offset,
            ..RunQuery::default()
        };
        let (runs, total) = self.store.query_runs(&query).await?;
        let keys: Vec<RunKey> = runs.iter().map(|r| r.key).collect();
        let instances = self.store.task_instances_of(&keys).await?;
        Ok(Grid {
            runs,
            instances,
            total,
        })
    }

    /// Queues a manual run of a loaded DAG.
    pub async fn trigger(&self, dag_id: &str, req: TriggerRequest) -> ServiceResult<RunRow> {
        let new = self.manual_run(dag_id, req, Utc::now()).await?;
        let run = self
            .store
            .insert_run(&new)
            .await?
            .ok_or_else(|| ServiceError::Conflict("run id already taken".into()))?;
        self.wake().await;
        Ok(run)
    }

    /// Queues a manual run with the run id, logical date and note a REST client chose;
    /// a run id the DAG already has is a conflict.
    pub async fn trigger_chosen(
        &self,
        dag_id: &str,
        req: TriggerRequest,
        choice: RunChoice,
    ) -> ServiceResult<RunRow> {
        let Some(run_id) = choice.run_id else {
            if choice.logical_date.is_none() && choice.note.is_none() {
                return self.trigger(dag_id, req).await;
            }
            let at = choice.logical_date.unwrap_or_else(Utc::now);
            let generated = format!(
                "manual__{}",
                at.to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
            );
            let choice = RunChoice {
                run_id: Some(generated),
                ..choice
            };
            return Box::pin(self.trigger_chosen(dag_id, req, choice)).await;
        };
        if !crate::ids::is_valid_run_id(&run_id) {
            return Err(ServiceError::Invalid(format!(
                "'{run_id}' is not a valid run id (1 to 250 of letters, digits and _-.:+~, \
                 not only dots)"
            )));
        }
        let at = choice.logical_date.unwrap_or_else(Utc::now);
        let new = self.manual_run(dag_id, req, at).await?;
        let run = self
            .store
            .insert_named_run(&new, &run_id, choice.note.as_deref())
            .await?
            .ok_or_else(|| {
                ServiceError::Conflict(format!(
                    "DAG '{dag_id}' already has a run with id '{run_id}'"
                ))
            })?;
        self.wake().await;
        Ok(run)
    }

    /// The manual run of a loaded DAG at `at` (its logical date), with the DAG known to
    /// the store; `conf` must be a JSON object (or absent).
    async fn manual_run(
        &self,
        dag_id: &str,
        req: TriggerRequest,
        at: DateTime<Utc>,
    ) -> ServiceResult<NewRun> {
        let dag = self.dag(dag_id)?;
        let conf = match req.conf {
            serde_json::Value::Null => serde_json::json!({}),
            conf @ serde_json::Value::Object(_) => conf,
            _ => return Err(ServiceError::Invalid("conf must be a JSON object".into())),
        };
        self.store.ensure_dags([&dag.id]).await?;
        Ok(NewRun {
            dag_id: dag.id.clone(),
            run_type: RunType::Manual,
            interval_start: at,
            interval_end: at,
            conf,
            parent: None,
            owner: req.owner,
            version: Some(dag.version()),
        })
    }

    /// Sets or removes the note a user wrote on a run.
    pub async fn set_run_note(&self, run: &RunRow, note: Option<&str>) -> ServiceResult<RunRow> {
        self.store.set_run_note(run.key, note).await?;
        self.refresh(run).await
    }

    /// Sets a run's state as a user asks: `queued` clears a finished run (every task runs
    /// again); `success` or `failed` relabels a finished run. A run under way belongs to
    /// the engine: changing it is a conflict.
    pub async fn set_run_state(&self, run: RunRow, state: RunState) -> ServiceResult<RunRow> {
        if state == run.state {
            return Ok(run);
        }
        if !run.state.is_finished() {
            return Err(ServiceError::Conflict(format!(
                "run '{}' is {}; its state can be changed once it has finished",
                run.run_id, run.state
            )));
        }
        match state {
            RunState::Queued => Ok(self.clear(run, false).await?.run),
            RunState::Success | RunState::Failed => {
                if !self.store.set_finished_run_state(run.key, state).await? {
                    return Err(ServiceError::Conflict(format!(
                        "run '{}' started again meanwhile",
                        run.run_id
                    )));
                }
                self.refresh(&run).await
            }
            RunState::Running => Err(ServiceError::Invalid(
                "a run's state can be set to queued, success or failed".into(),
            )),
        }
    }

    /// Clears the task instances of a finished run that `req` selects (see
    /// [`ClearRequest`]) and queues the run again; nothing selected changes nothing.
    pub async fn clear_selected(&self, run: RunRow, req: &ClearRequest) -> ServiceResult<Cleared> {
        let dag = self.finished_run_dag(&run)?;
        let tis = self.store.task_instances(run.key).await?;
        let state_of = |id: &TaskId| tis.iter().find(|t| &t.task_id == id).and_then(|t| t.state);
        let mut roots = Vec::new();
        match &req.tasks {
            None => roots.extend(0..dag.tasks.len()),
            Some(ids) => {
                for id in ids {
                    let Some(&i) = dag.index.get(&TaskId::new(id.as_str())) else {
                        return Err(ServiceError::UnknownTask(format!(
                            "DAG '{}' has no task '{id}'",
                            dag.id
                        )));
                    };
                    roots.push(i);
                }
            }
        }
        roots.retain(|&i| {
            !req.only_failed || state_of(&dag.tasks[i].id).is_some_and(TaskState::is_failure)
        });
        if req.dry_run || roots.is_empty() {
            let tasks = closure(&dag, roots, req.downstream)
                .into_iter()
                .map(|i| dag.tasks[i].id.clone())
                .collect();
            return Ok(Cleared { run, tasks });
        }
        self.clear_tasks(run, &dag, roots, req.downstream).await
    }

    /// Resets a finished run's tasks (all, or the failed ones and everything downstream of
    /// them) and queues the run again. Cleared tasks get their full retries back.
    pub async fn clear(&self, run: RunRow, only_failed: bool) -> ServiceResult<Cleared> {
        let dag = self.finished_run_dag(&run)?;
        let tis = self.store.task_instances(run.key).await?;
        let state_of = |id: &TaskId| tis.iter().find(|t| &t.task_id == id).and_then(|t| t.state);
        let roots: Vec<usize> = (0..dag.tasks.len())
            .filter(|&i| {
                !only_failed || state_of(&dag.tasks[i].id).is_some_and(TaskState::is_failure)
            })
            .collect();
        if roots.is_empty() {
            return Err(ServiceError::Conflict(format!(
                "run '{}' has no failed tasks to clear",
                run.run_id
            )));
        }
        self.clear_tasks(run, &dag, roots, true).await
    }

    /// Resets one task of a finished run (and, with `downstream`, every task downstream of
    /// it) and queues the run again.
    pub async fn clear_task(
        &self,
        run: RunRow,
        task_id: &str,
        downstream: bool,
    ) -> ServiceResult<Cleared> {
        let dag = self.finished_run_dag(&run)?;
        let Some(&index) = dag.index.get(&TaskId::new(task_id)) else {
            return Err(ServiceError::UnknownTask(format!(
                "DAG '{}' has no task '{task_id}'",
                dag.id
            )));
        };
        self.clear_tasks(run, &dag, vec![index], downstream).await
    }

    /// The DAG a finished run executes, for clearing it.
    fn finished_run_dag(&self, run: &RunRow) -> ServiceResult<Arc<Dag>> {
        if !run.state.is_finished() {
            return Err(ServiceError::Conflict(format!(
                "run '{}' is {}; only finished runs can be cleared",
                run.run_id, run.state
            )));
        }
        self.dag(run.dag_id.as_str())
    }

    async fn clear_tasks(
        &self,
        run: RunRow,
        dag: &Dag,
        roots: Vec<usize>,
        downstream: bool,
    ) -> ServiceResult<Cleared> {
        let indices = closure(dag, roots, downstream);
        let tasks: Vec<(TaskId, u32)> = indices
            .iter()
            .map(|&i| (dag.tasks[i].id.clone(), dag.tasks[i].retry.max_tries()))
            .collect();
        self.store.clear_run(run.key, &tasks).await?;
        let run = self.refresh(&run).await?;
        self.wake().await;
        Ok(Cleared {
            run,
            tasks: tasks.into_iter().map(|(t, _)| t).collect(),
        })
    }

    /// Marks a task instance of a finished run `success` or `failed`; the run's state
    /// follows by the scheduler's rule (failed if a leaf task failed, success otherwise),
    /// over the DAG version the run executed (every task counts as a leaf when that
    /// version is gone).
    pub async fn mark(
        &self,
        run: RunRow,
        task_id: &str,
        state: TaskState,
    ) -> ServiceResult<Marked> {
        if !matches!(state, TaskState::Success | TaskState::Failed) {
            return Err(ServiceError::Invalid(format!(
                "a task can be marked success or failed, not {state}"
            )));
        }
        let task = TaskId::new(task_id);
        let dag = self.run_dag(&run).await?;
        // A queued run may have no task instances yet: its DAG knows its tasks.
        let known = dag.as_ref().is_some_and(|d| d.index.contains_key(&task))
            || self
                .store
                .task_instances(run.key)
                .await?
                .iter()
                .any(|t| t.task_id == task);
        if !known {
            return Err(ServiceError::UnknownTask(format!(
                "run '{}' has no task '{task_id}'",
                run.run_id
            )));
        }
        if !run.state.is_finished() {
            return Err(ServiceError::Conflict(format!(
                "run '{}' is {}; tasks can be marked once it has finished",
                run.run_id, run.state
            )));
        }
        let leaves: Option<Vec<TaskId>> = dag.map(|d| {
            d.tasks
                .iter()
                .filter(|t| t.downstream.is_empty())
                .map(|t| t.id.clone())
                .collect()
        });
        self.store
            .mark_task(run.key, &task, state, leaves.as_deref())
            .await?;
        Ok(Marked {
            run: self.refresh(&run).await?,
            task_id: task,
            state,
        })
    }

    /// The DAG a run executes: the loaded one when it is the version the run was created
    /// with, else that stored version; `None` when neither is available.
    async fn run_dag(&self, run: &RunRow) -> ServiceResult<Option<Arc<Dag>>> {
        let loaded = self.bag().get(run.dag_id.as_str()).cloned();
        let Some(hash) = &run.dag_version else {
            return Ok(loaded);
        };
        if let Some(dag) = loaded.filter(|d| &d.source.hash == hash) {
            return Ok(Some(dag));
        }
        let Some(version) = self.store.dag_version(hash).await? else {
            return Ok(None);
        };
        Ok(Dag::from_version(&version).ok().map(Arc::new))
    }
}

/// The tasks `roots` name, with (when `downstream`) everything downstream of them, by index.
fn closure(dag: &Dag, roots: Vec<usize>, downstream: bool) -> Vec<usize> {
    let mut chosen: HashSet<usize> = HashSet::new();
    let mut stack = roots;
    while let Some(i) = stack.pop() {
        if chosen.insert(i) && downstream {
            stack.extend(dag.tasks[i].downstream.iter().copied());
        }
    }
    let mut indices: Vec<usize> = chosen.into_iter().collect();
    indices.sort_unstable();
    indices
}
