//! Wake-ups between instances sharing a PostgreSQL store: a write that creates work for
//! others (a run queued or requeued, a run finished and its slot freed, an instance stopped
//! and its runs adoptable) sends `NOTIFY` in its transaction, so it is delivered exactly when
//! the work becomes visible; every `serve` listens and rereads the store at once instead of
//! at its next safety poll. On SQLite, where the processes share one host, the CLI wakes the
//! local server over HTTP instead and these are no-ops.

use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::{Any, Transaction};

use super::sql::Backend;
use super::{Store, StoreResult};

/// The channel; the payload is the store's schema, since channels are per database and
/// several stores (schemas) may share one, followed by [`OFFERED`] or [`ENDED`] for news
/// about offered tries only (which needs a look at the offers, not at runs and schedules).
const CHANNEL: &str = "orchestrator_work";

/// Payload suffix: tries were offered.
const OFFERED: &str = ":offered";
/// Payload suffix: offered tries ended (or were handed back).
const ENDED: &str = ":ended";
/// Payload suffix: an instance stopped; its runs are adoptable.
const STOPPED: &str = ":stopped";

impl Store {
    /// Queues the wake-up inside a write transaction: sent when (and only if) it commits.
    pub(super) async fn announce_work(
        &self,
        tx: &mut Transaction<'static, Any>,
    ) -> StoreResult<()> {
        self.notify(tx, "").await
    }

    /// Like [`Store::announce_work`], for an instance that stopped.
    pub(super) async fn announce_stop(
        &self,
        tx: &mut Transaction<'static, Any>,
    ) -> StoreResult<()> {
        self.notify(tx, STOPPED).await
    }

    /// Like [`Store::announce_work`], for news about offered tries: some were offered
    /// (`offered`), or some ended.
    pub(super) async fn announce_tries(
        &self,
        tx: &mut Transaction<'static, Any>,
        offered: bool,
    ) -> StoreResult<()> {
        self.notify(tx, if offered { OFFERED } else { ENDED }).await
    }

    async fn notify(&self, tx: &mut Transaction<'static, Any>, suffix: &str) -> StoreResult<()> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT CAST(pg_notify($1, current_schema() || $2) AS TEXT)")
                .bind(CHANNEL)
                .bind(suffix)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// A listener for other instances' wake-ups; `None` on SQLite.
    pub async fn work_listener(&self) -> StoreResult<Option<WorkListener>> {
        let Some(url) = &self.listen_url else {
            return Ok(None);
        };
        let schema: String = sqlx::query_scalar("SELECT CAST(current_schema() AS TEXT)")
            .fetch_one(&self.pool)
            .await?;
        let mut listener = PgListener::connect(url).await?;
        listener.listen(CHANNEL).await?;
        Ok(Some(WorkListener { listener, schema }))
    }
}

/// Receives the wake-ups meant for this store.
pub struct WorkListener {
    listener: PgListener,
    schema: String,
}

/// What a [`WorkListener`] heard.
#[derive(Debug, PartialEq, Eq)]
pub enum Heard {
    /// Another write created work.
    Work,
    /// An instance stopped.
    Stopped,
    /// Tries were offered (`offered`), or offered tries ended.
    Tries { offered: bool },
    /// The connection was lost and is back: wake-ups may have been missed meanwhile.
    Reconnected,
}

impl WorkListener {
    /// Waits for the next wake-up for this store. Reconnects by itself when the connection
    /// drops (with growing pauses while the server is unreachable, up to `max_pause`) and
    /// then reports [`Heard::Reconnected`].
    pub async fn next(&mut self, max_pause: Duration) -> Heard {
        let mut pause = Duration::from_millis(100);
        let mut lost = false;
        loop {
            match self.listener.try_recv().await {
                Ok(Some(n)) if n.payload().starts_with(self.schema.as_str()) => {
                    let heard = match &n.payload()[self.schema.len()..] {
                        _ if lost => Heard::Reconnected,
                        "" => Heard::Work,
                        OFFERED => Heard::Tries { offered: true },
                        ENDED => Heard::Tries { offered: false },
                        STOPPED => Heard::Stopped,
                        // Another schema whose name starts with this one's.
                        _ => continue,
                    };
                    return heard;
                }
                Ok(Some(_)) if lost => return Heard::Reconnected,
                Ok(Some(_)) => {}
                // The connection dropped; the next call reconnects.
                Ok(None) => lost = true,
                Err(e) => {
                    lost = true;
                    tracing::warn!(error = %e, "lost the PostgreSQL wake-up listener; retrying in {pause:?}");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(max_pause);
                }
            }
            if lost && self.listener.listen(CHANNEL).await.is_ok() {
                return Heard::Reconnected;
            }
        }
    }
}
