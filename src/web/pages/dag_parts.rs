//! Pieces the DAG list and the DAG page share: a run as a coloured mark, the schedule in
//! words, tag chips, and the pause/trigger controls (rendered by `templates/dag_macros.html`).

use chrono::Utc;

use super::{duration, links, time};
use crate::dag::Dag;
use crate::service::{NextRun, RunRow};

/// A run as a small coloured square linking to its page.
pub struct Mark {
    /// `state-<state>` suffix.
    pub state: &'static str,
    /// The run page.
    pub href: String,
    /// Hover text: run id, state, dates.
    pub title: String,
}

impl Mark {
    /// The mark of `run`.
    pub fn of(run: &RunRow) -> Self {
        let end = run.end_date.or_else(|| run.start_date.map(|_| Utc::now()));
        Self {
            state: run.state.as_str(),
            href: links::run(run.dag_id.as_str(), run.run_id.as_str()),
            title: format!(
                "{} · {} · logical date {} · {}",
                run.run_id,
                run.state,
                time(Some(run.logical_date)),
                duration(run.start_date, end)
            ),
        }
    }
}

/// A run's time for people: when it started (or was queued), with its state.
pub struct RunAt {
    /// The mark (state, link).
    pub mark: Mark,
    /// `2024-01-01 03:00:00`.
    pub when: String,
}

impl RunAt {
    /// `run` as "last run".
    pub fn of(run: &RunRow) -> Self {
        Self {
            mark: Mark::of(run),
            when: time(Some(run.start_date.unwrap_or(run.queued_at))),
        }
    }
}

/// The schedule in words, and as written.
pub struct Schedule {
    /// "every day at 03:00 Europe/Paris", "manual only".
    pub words: String,
    /// The cron text or preset, when there is a schedule and it says more than the words.
    pub cron: Option<String>,
}

impl Schedule {
    /// The schedule of `dag`.
    pub fn of(dag: &Dag) -> Self {
        let words = crate::dag::describe::describe_dag(dag);
        Self {
            cron: dag.schedule_text.clone().filter(|c| *c != words),
            words,
        }
    }
}

/// The next scheduled run: when it will be created, and the interval it covers.
pub fn next_run(next: Option<&NextRun>) -> Option<(String, String)> {
    next.map(|n| {
        (
            time(Some(n.run_after)),
            format!("logical date {}", time(Some(n.logical_date))),
        )
    })
}

/// A tag as a filter chip.
pub struct TagChip {
    /// The tag.
    pub name: String,
    /// The list filtered by it (or, when `active`, without it).
    pub href: String,
    /// Whether the list is filtered by it now.
    pub active: bool,
}

/// The pause toggle and the trigger form of one DAG.
pub struct Controls {
    /// The DAG (for element ids and labels).
    pub dag_id: String,
    /// Whether it is paused.
    pub paused: bool,
    /// Where the toggle posts (`/pause` or `/unpause`).
    pub toggle_action: String,
    /// Where the trigger form posts.
    pub trigger_action: String,
    /// The page to come back to.
    pub next: String,
}

impl Controls {
    /// Controls for `dag_id`, coming back to `next`.
    pub fn new(dag_id: &str, paused: bool, next: &str) -> Self {
        let toggle = if paused { "unpause" } else { "pause" };
        Self {
            dag_id: dag_id.to_string(),
            paused,
            toggle_action: links::dag_action(dag_id, toggle),
            trigger_action: links::dag_action(dag_id, "trigger"),
            next: next.to_string(),
        }
    }
}

/// The project and template file name of a generated DAG.
pub fn generated(dag: &Dag) -> Option<(String, String)> {
    dag.source.project.as_ref().map(|project| {
        let file = dag
            .source
            .path
            .file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
        (project.clone(), file)
    })
}
