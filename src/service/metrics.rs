//! The metrics a scrape returns: what was recorded as it happened, plus what is read at
//! scrape time — queued and running runs from the store (one grouped count over the active
//! runs) and the DAG bag's size and load errors.

use std::collections::BTreeMap;

use super::{Service, ServiceResult};
use crate::metrics::ScrapeValues;
use crate::state::RunState;

impl Service {
    /// The Prometheus text exposition, or `None` when this process keeps no metrics.
    pub async fn metrics_text(&self) -> ServiceResult<Option<String>> {
        if !self.metrics.is_enabled() {
            return Ok(None);
        }
        let values = self.scrape_values().await?;
        Ok(self.metrics.render(&values)?)
    }

    /// Runs per DAG and active state (zero for every loaded DAG, so a series does not
    /// vanish when its DAG goes idle), DAGs loaded and load errors.
    async fn scrape_values(&self) -> ServiceResult<ScrapeValues> {
        let bag = self.bag();
        let mut runs = BTreeMap::new();
        for dag_id in bag.dags.keys() {
            for state in [RunState::Queued, RunState::Running] {
                runs.insert((dag_id.clone(), state.as_str()), (state, 0));
            }
        }
        for (dag_id, state, n) in self.store.active_run_states().await? {
            runs.insert((dag_id, state.as_str()), (state, n));
        }
        Ok(ScrapeValues {
            runs: runs
                .into_iter()
                .map(|((dag_id, _), (state, n))| (dag_id, state, n))
                .collect(),
            dags_loaded: bag.dags.len(),
            load_errors: bag.errors.len(),
        })
    }
}
