//! Launching a try: its context (identity, templates, cancellation, the narrow engine
//! port) and its own tokio task, owned by the scheduler's tracker.

use std::sync::Arc;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::Command;
use super::core::{Finished, Origin, Scheduler};
use crate::dag::Dag;
use crate::executor;
use crate::ids::RunKey;
use crate::store::RunRow;
use crate::tasks::template::{RunInfo, TemplateValues};
use crate::tasks::{TaskContext, TaskLog};

impl Scheduler {
    /// Starts try `try_number` of task `idx` of run `key` (already committed as running).
    pub(super) fn spawn(&mut self, key: RunKey, idx: usize, try_number: u32) {
        let Some(run) = self.runs.get_mut(&key) else {
            return;
        };
        self.handling = Some(key);
        let cancel = run.cancel.child_token();
        run.slots[idx].cancel = Some(cancel.clone());
        let first_try = run.slots[idx].first_try;
        let Some(run) = self.runs.get(&key) else {
            return;
        };
        self.launch(
            &run.row,
            run.dag.clone(),
            idx,
            try_number,
            first_try,
            cancel,
        );
    }

    /// Starts try `try_number` of task `idx` of the run `row` executing `dag`, on its own
    /// task; its end comes back as [`Command::Finished`].
    pub(super) fn launch(
        &self,
        row: &RunRow,
        dag: Arc<Dag>,
        idx: usize,
        try_number: u32,
        first_try: u32,
        cancel: CancellationToken,
    ) {
        let key = row.key;
        let task = &dag.tasks[idx];
        let info = RunInfo {
            dag_id: dag.id.as_str(),
            run_id: row.run_id.as_str(),
            logical_date: row.logical_date,
            data_interval_end: row.data_interval_end,
            params: &dag.params,
            conf: &row.conf,
        };
        let values = TemplateValues::new(&info, task.id.as_str(), try_number);
        let run_uid = row.uid_or_legacy();
        let ctx = TaskContext {
            dag_id: dag.id.clone(),
            run_id: row.run_id.clone(),
            run_key: key,
            task_id: task.id.clone(),
            try_number,
            first_try,
            run_uid,
            logical_date: row.logical_date,
            log: TaskLog::new(self.config.log_limits),
            cancel,
            process: self.handle.group_report(key, task.id.clone(), try_number),
            engine: Arc::new(self.handle.clone()),
            data: self.config.data.clone(),
            metrics: self.config.metrics.clone(),
        };
        let span = tracing::info_span!("task", dag_id = %dag.id, run_id = %row.run_id, task_id = %task.id, try_number);
        let handle = self.handle.clone();
        self.tracker.spawn(
            async move {
                let task = &dag.tasks[idx];
                let started = std::time::Instant::now();
                let result =
                    executor::execute(&task.kind, values, ctx, task.execution_timeout).await;
                let finished = Finished {
                    run: key,
                    task: idx,
                    task_id: task.id.clone(),
                    try_number,
                    result,
                    at: Utc::now(),
                    duration: started.elapsed(),
                    origin: Origin::Local,
                };
                // Fails only when the scheduler is gone, and then nobody is left to tell.
                let _ = handle.send(Command::Finished(Box::new(finished))).await;
            }
            .instrument(span),
        );
    }
}
