//! DAGs as front-ends list and show them: filtered and paged, with their paused flag,
//! latest runs and next scheduled interval, fetched for the whole page in a few statements
//! (never one per DAG); and a DAG's definition as it is now or as a run executed it.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{Service, ServiceError, ServiceResult};
use crate::dag::{Dag, LoadError};
use crate::ids::DagId;
use crate::store::RunRow;

/// Which DAGs a listing wants.
#[derive(Clone, Debug, Default)]
pub struct DagQuery {
    /// DAGs whose id (or description) contains this text, ignoring case.
    pub search: Option<String>,
    /// DAGs carrying any of these tags (all when empty).
    pub tags: Vec<String>,
    /// Only paused (`Some(true)`) or active (`Some(false)`) DAGs.
    pub paused: Option<bool>,
    /// At most this many DAGs (0: no limit).
    pub limit: usize,
    /// Skip this many.
    pub offset: usize,
    /// Latest runs to fetch per DAG.
    pub recent_runs: u32,
}

/// The next interval the scheduler will create a run for.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct NextRun {
    /// Its logical date (the interval's start).
    pub logical_date: DateTime<Utc>,
    /// When the run is created (the interval's end).
    pub run_after: DateTime<Utc>,
}

/// One DAG of a listing.
#[derive(Clone, Debug)]
pub struct DagSummary {
    /// The DAG.
    pub dag: Arc<Dag>,
    /// Whether its schedule is paused.
    pub paused: bool,
    /// Its latest runs, newest first.
    pub recent: Vec<RunRow>,
    /// Its next scheduled run (none for manual-only or finished schedules).
    pub next: Option<NextRun>,
}

/// A page of DAGs.
#[derive(Clone, Debug)]
pub struct DagListing {
    /// The DAGs of the page, by id.
    pub dags: Vec<DagSummary>,
    /// How many DAGs match in all.
    pub total: usize,
    /// Every tag of every loaded DAG, sorted (for filters).
    pub all_tags: Vec<String>,
    /// Files that failed to load.
    pub errors: Vec<LoadError>,
}

/// A DAG's definition.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DagSourceView {
    /// The DAG.
    pub dag_id: DagId,
    /// The file it was read from (the template for generated DAGs).
    pub path: String,
    /// The project that generated it.
    pub project: Option<String>,
    /// The YAML (for generated DAGs, the template after substitution).
    pub yaml: String,
    /// The template file as it is on disk now, for generated DAGs.
    pub template: Option<String>,
    /// Hash of this definition.
    pub version: String,
    /// Whether this is the definition loaded now (false: an older one a run executed).
    pub current: bool,
}

impl Service {
    /// DAGs matching `query`, with their state, one page of them.
    pub async fn list_dags(&self, query: &DagQuery) -> ServiceResult<DagListing> {
        let bag = self.bag();
        let paused = self.store.paused_flags().await?;
        let is_paused = |dag: &Dag| paused.get(&dag.id).copied().unwrap_or(false);
        let search = query.search.as_deref().map(str::to_lowercase);
        let matching: Vec<&Arc<Dag>> = bag
            .dags
            .values()
            .filter(|d| query.paused.is_none_or(|p| p == is_paused(d)))
            .filter(|d| query.tags.is_empty() || d.tags.iter().any(|t| query.tags.contains(t)))
            .filter(|d| {
                search.as_deref().is_none_or(|s| {
                    d.id.as_str().to_lowercase().contains(s)
                        || d.description
                            .as_deref()
                            .is_some_and(|t| t.to_lowercase().contains(s))
                })
            })
            .collect();
        let total = matching.len();
        let limit = if query.limit == 0 {
            usize::MAX
        } else {
            query.limit
        };
        let page: Vec<&Arc<Dag>> = matching
            .into_iter()
            .skip(query.offset)
            .take(limit)
            .collect();
        let ids: Vec<DagId> = page.iter().map(|d| d.id.clone()).collect();
        let mut recent: HashMap<DagId, Vec<RunRow>> = HashMap::new();
        for run in self.store.recent_runs(&ids, query.recent_runs).await? {
            recent.entry(run.dag_id.clone()).or_default().push(run);
        }
        let scheduled: Vec<DagId> = page
            .iter()
            .filter(|d| d.timetable.is_some())
            .map(|d| d.id.clone())
            .collect();
        let last_ends = self.store.last_scheduled_ends(&scheduled).await?;
        let now = Utc::now();
        let dags = page
            .into_iter()
            .map(|dag| DagSummary {
                paused: is_paused(dag),
                recent: recent.remove(&dag.id).unwrap_or_default(),
                next: next_run(dag, last_ends.get(&dag.id).copied(), now),
                dag: dag.clone(),
            })
            .collect();
        let mut all_tags: Vec<String> = bag.dags.values().flat_map(|d| d.tags.clone()).collect();
        all_tags.sort_unstable();
        all_tags.dedup();
        Ok(DagListing {
            dags,
            total,
            all_tags,
            errors: bag.errors.clone(),
        })
    }

    /// One DAG with its state and latest runs.
    pub async fn dag_summary(&self, dag_id: &str, recent_runs: u32) -> ServiceResult<DagSummary> {
        let dag = self.dag(dag_id)?;
        let paused = self.paused(&dag.id).await?;
        let ids = [dag.id.clone()];
        let recent = self.store.recent_runs(&ids, recent_runs).await?;
        let last_end = match dag.timetable {
            Some(_) => self.store.last_scheduled_ends(&ids).await?.remove(&dag.id),
            None => None,
        };
        Ok(DagSummary {
            next: next_run(&dag, last_end, Utc::now()),
            dag,
            paused,
            recent,
        })
    }

    /// Whether a DAG is paused.
    pub async fn paused(&self, dag: &DagId) -> ServiceResult<bool> {
        Ok(self.store.is_paused(dag).await?)
    }

    /// Pauses or unpauses a DAG; returns the previous value.
    pub async fn set_paused(&self, dag_id: &str, paused: bool) -> ServiceResult<bool> {
        let dag = self.dag(dag_id)?;
        let before = self.store.set_paused(&dag.id, paused).await?;
        self.wake().await;
        Ok(before)
    }

    /// A DAG's definition: the one loaded now, or the stored version `version` (a hash a
    /// run recorded) of it.
    pub async fn dag_source(
        &self,
        dag_id: &str,
        version: Option<&str>,
    ) -> ServiceResult<DagSourceView> {
        let current = self.bag().get(dag_id).cloned();
        let wanted = version.filter(|v| current.as_ref().is_none_or(|d| d.source.hash != *v));
        let (path, project, yaml, hash, is_current) = match (wanted, current) {
            (None, Some(dag)) => (
                dag.source.path.display().to_string(),
                dag.source.project.clone(),
                dag.source.text.clone(),
                dag.source.hash.clone(),
                true,
            ),
            (None, None) => return Err(ServiceError::UnknownDag(dag_id.to_string())),
            (Some(hash), _) => {
                let stored = self
                    .store
                    .dag_version(hash)
                    .await?
                    .filter(|v| v.dag_id.as_str() == dag_id)
                    .ok_or_else(|| {
                        ServiceError::UnknownDag(format!("{dag_id}' version '{hash}"))
                    })?;
                (
                    stored.source_path,
                    stored.project,
                    stored.definition,
                    stored.hash,
                    false,
                )
            }
        };
        // The template is read from where the DAG bag says it came from, never from a
        // path a request names.
        let template = match &project {
            Some(_) => std::fs::read(&path)
                .ok()
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
            None => None,
        };
        Ok(DagSourceView {
            dag_id: DagId::new(dag_id),
            path,
            project,
            yaml,
            template,
            version: hash,
            current: is_current,
        })
    }
}

/// The interval the scheduler creates next for `dag`, given where its schedule stands.
fn next_run(dag: &Dag, last_end: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<NextRun> {
    let interval = dag.timetable.as_ref()?.next_interval(last_end, now)?;
    Some(NextRun {
        logical_date: interval.start,
        run_after: interval.end,
    })
}
