//! The run page's Gantt timeline: one row per task, one bar per try, placed by its start
//! and end relative to the run's span (a try still running reaches to now), with a time
//! scale of offsets from the run's start. Pure layout; the template draws it with the
//! stylesheet's `.gantt` classes.

use chrono::{DateTime, Duration, Utc};

use super::links;
use crate::ids::TaskId;
use crate::service::{RunRow, TryRow};

/// The timeline of a run.
pub struct Gantt {
    /// One row per task, in the order of the task table.
    pub rows: Vec<GanttRow>,
    /// Marks of the time scale.
    pub ticks: Vec<Tick>,
}

impl Gantt {
    /// Whether any try has started.
    pub fn has_bars(&self) -> bool {
        self.rows.iter().any(|r| !r.bars.is_empty())
    }
}

/// The tries of one task.
pub struct GanttRow {
    /// The task.
    pub task_id: String,
    /// Its bars, first try first.
    pub bars: Vec<Bar>,
}

/// One try.
pub struct Bar {
    /// Offset from the left, in percent of the span (`12.50`).
    pub left: String,
    /// Width, in percent of the span.
    pub width: String,
    /// The try's state (`success`, `running`, …).
    pub state: &'static str,
    /// What a pointer over the bar shows: task, try, state, times.
    pub title: String,
    /// The try's log page.
    pub url: String,
}

/// One mark of the time scale.
pub struct Tick {
    /// Offset from the left, in percent.
    pub left: String,
    /// Time since the run's start (`+1 min 05 s`).
    pub label: String,
}

/// Marks on the time scale, the start included.
const TICKS: i32 = 5;

/// Lays out the tries of `run`, one row per task of `order`.
pub fn build(run: &RunRow, order: &[TaskId], tries: &[TryRow], now: DateTime<Utc>) -> Gantt {
    let (start, end) = span(run, tries, now);
    let total = (end - start).num_milliseconds().max(1) as f64;
    let percent = |t: DateTime<Utc>| {
        let p = (t - start).num_milliseconds() as f64 / total * 100.0;
        p.clamp(0.0, 100.0)
    };
    let rows = order
        .iter()
        .map(|task| GanttRow {
            task_id: task.to_string(),
            bars: tries
                .iter()
                .filter(|t| &t.task_id == task)
                .map(|t| {
                    let stop = t.end_date.unwrap_or(end);
                    let left = percent(t.start_date);
                    Bar {
                        left: format!("{left:.2}"),
                        width: format!("{:.2}", (percent(stop) - left).max(0.0)),
                        state: t.state.as_str(),
                        title: title(t, stop),
                        url: links::task_try(
                            run.dag_id.as_str(),
                            run.run_id.as_str(),
                            task.as_str(),
                            t.try_number,
                        ),
                    }
                })
                .collect(),
        })
        .collect();
    Gantt {
        rows,
        ticks: ticks(start, end),
    }
}

/// From the run's (or its first try's) start to its end, or to now while it goes on
/// (never empty).
fn span(run: &RunRow, tries: &[TryRow], now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let first_try = tries.iter().map(|t| t.start_date).min();
    let start = [run.start_date, first_try]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(run.queued_at);
    let open = !run.state.is_finished() || tries.iter().any(|t| t.end_date.is_none());
    let last_end = tries.iter().filter_map(|t| t.end_date).max();
    let end = [run.end_date, last_end, open.then_some(now)]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(start);
    (start, end.max(start + Duration::milliseconds(1)))
}

fn ticks(start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<Tick> {
    (0..TICKS)
        .map(|i| {
            let at = start + (end - start) * i / (TICKS - 1);
            Tick {
                left: format!("{:.2}", f64::from(i) * 100.0 / f64::from(TICKS - 1)),
                label: if i == 0 {
                    "0".into()
                } else {
                    format!("+{}", super::duration(Some(start), Some(at)))
                },
            }
        })
        .collect()
}

/// `stop`: where the bar ends (now, for a try still running).
fn title(t: &TryRow, stop: DateTime<Utc>) -> String {
    let end = t
        .end_date
        .map_or_else(|| "now".into(), |e| super::time(Some(e)));
    format!(
        "{} · try {} · {} · {} → {end} ({})",
        t.task_id,
        t.try_number,
        t.state,
        super::time(Some(t.start_date)),
        super::duration(Some(t.start_date), Some(stop)),
    )
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::ids::{DagId, RunId, RunKey};
    use crate::state::{RunState, RunType, TaskState};

    fn at(s: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 12, 0, 0).unwrap() + Duration::seconds(s)
    }

    fn run(state: RunState, start: i64, end: Option<i64>) -> RunRow {
        RunRow {
            key: RunKey(1),
            dag_id: DagId::new("d"),
            run_id: RunId::new("r"),
            run_type: RunType::Manual,
            state,
            logical_date: at(0),
            data_interval_start: at(0),
            data_interval_end: at(0),
            conf: serde_json::json!({}),
            queued_at: at(0),
            start_date: Some(at(start)),
            end_date: end.map(at),
            parent_run: None,
            parent_task_id: None,
            parent_try: None,
            owner: None,
            owner_epoch: None,
            dag_version: None,
            uid: None,
            note: None,
            user_note: None,
        }
    }

    fn try_row(task: &str, n: u32, state: TaskState, start: i64, end: Option<i64>) -> TryRow {
        TryRow {
            task_id: TaskId::new(task),
            try_number: n,
            state,
            start_date: at(start),
            end_date: end.map(at),
            error: None,
        }
    }

    #[test]
    fn bars_sit_where_their_tries_ran_within_the_run() {
        let tries = [
            try_row("a", 1, TaskState::Failed, 0, Some(20)),
            try_row("a", 2, TaskState::Success, 30, Some(60)),
            try_row("b", 1, TaskState::Success, 60, Some(100)),
        ];
        let order = [TaskId::new("a"), TaskId::new("b"), TaskId::new("c")];
        let g = build(
            &run(RunState::Success, 0, Some(100)),
            &order,
            &tries,
            at(500),
        );
        let bars: Vec<Vec<(&str, &str, &str)>> = g
            .rows
            .iter()
            .map(|r| {
                r.bars
                    .iter()
                    .map(|b| (b.left.as_str(), b.width.as_str(), b.state))
                    .collect()
            })
            .collect();
        assert_eq!(
            bars,
            [
                vec![("0.00", "20.00", "failed"), ("30.00", "30.00", "success")],
                vec![("60.00", "40.00", "success")],
                vec![],
            ]
        );
        assert_eq!(g.rows[0].bars[1].url, "/dags/d/runs/r/tasks/a?try=2");
        assert!(g.rows[0].bars[0].title.contains("try 1 · failed"));
        let labels: Vec<&str> = g.ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(
            labels,
            ["0", "+25.0 s", "+50.0 s", "+1 min 15 s", "+1 min 40 s"]
        );
    }

    #[test]
    fn a_running_try_reaches_to_now() {
        let tries = [
            try_row("a", 1, TaskState::Success, 0, Some(10)),
            try_row("b", 1, TaskState::Running, 10, None),
        ];
        let order = [TaskId::new("a"), TaskId::new("b")];
        let g = build(&run(RunState::Running, 0, None), &order, &tries, at(40));
        assert_eq!(g.rows[0].bars[0].width, "25.00");
        assert_eq!(g.rows[1].bars[0].left, "25.00");
        assert_eq!(g.rows[1].bars[0].width, "75.00");
    }
}
