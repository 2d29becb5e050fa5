//! Creating scheduled runs: for each unpaused DAG with a schedule, the next data interval
//! is created (queued) once it has ended, catching up per `catchup` and never beyond
//! `max_active_runs` queued-or-running runs.

use chrono::{DateTime, Utc};

use super::core::Scheduler;
use crate::state::RunType;
use crate::store::{NewRun, StoreError};

impl Scheduler {
    /// Creates every scheduled run that is due now.
    pub(super) async fn schedule_due(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        // Read when an interval is due (most wake-ups find none).
        let mut active = None;
        let dags: Vec<_> = self
            .bag
            .dags
            .values()
            .filter(|d| d.timetable.is_some())
            .cloned()
            .collect();
        for dag in dags {
            let Some(timetable) = &dag.timetable else {
                continue;
            };
            if self.paused.get(&dag.id).copied().unwrap_or(false) {
                continue;
            }
            loop {
                let next = match self.cron.get(&dag.id) {
                    Some(next) => *next,
                    None => {
                        let last = self.store.last_scheduled_end(&dag.id).await?;
                        let next = timetable.next_interval(last, now);
                        self.cron.insert(dag.id.clone(), next);
                        next
                    }
                };
                let Some(due) = next.filter(|i| i.end <= now) else {
                    break;
                };
                let active = match &mut active {
                    Some(active) => active,
                    None => active.insert(self.store.active_run_counts().await?),
                };
                // Backfill runs do not hold the schedule back (their pool is separate).
                let count = active.entry((dag.id.clone(), false)).or_default();
                if *count >= dag.max_active_runs {
                    break;
                }
                // Decided now, not when `due` was cached: without catchup a run held back
                // by max_active_runs covers the latest complete interval, not a stale one.
                let interval = timetable.to_create(due, now);
                let new = NewRun {
                    dag_id: dag.id.clone(),
                    run_type: RunType::Scheduled,
                    interval_start: interval.start,
                    interval_end: interval.end,
                    conf: serde_json::json!({}),
                    parent: None,
                    owner: None,
                    version: Some(dag.version()),
                };
                if let Some(row) = self.store.insert_run(&new).await? {
                    tracing::info!(dag_id = %dag.id, run_id = %row.run_id, "scheduled run queued");
                    *count += 1;
                    self.look_for_queued = true;
                }
                self.cron.insert(
                    dag.id.clone(),
                    timetable.next_interval(Some(interval.end), now),
                );
            }
        }
        Ok(())
    }
}
