//! The lease keeper: renews this process's lease every heartbeat on its own task (never
//! behind the scheduler's work), publishes each renewal, and when the lease turns out to be
//! lost — the process was frozen, or the store unreachable, for longer than the lease —
//! takes a new one under the next epoch. The scheduler watches what it publishes: a new
//! epoch means every run it held is no longer its own.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::store::{Owner, Store};

/// The lease as last renewed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseState {
    /// The instance and its current epoch.
    pub owner: Owner,
    /// The last successful renewal.
    pub renewed_at: DateTime<Utc>,
    /// When the lease lapses unless renewed again.
    pub expires_at: DateTime<Utc>,
}

/// How often the lease is renewed and how long it lasts.
#[derive(Clone, Copy, Debug)]
pub struct LeaseTiming {
    /// Between renewals.
    pub heartbeat: Duration,
    /// Validity of one renewal; runs are adopted by others only after it lapses.
    pub lease: Duration,
}

impl LeaseState {
    /// The state right after registering (or renewing) at `now`.
    pub fn fresh(owner: Owner, now: DateTime<Utc>, lease: Duration) -> Self {
        let expires_at = chrono::Duration::from_std(lease)
            .ok()
            .and_then(|d| now.checked_add_signed(d))
            .unwrap_or(now);
        Self {
            owner,
            renewed_at: now,
            expires_at,
        }
    }
}

/// Renews the lease until `stop` is cancelled.
pub(super) async fn keep(
    store: Store,
    tx: watch::Sender<LeaseState>,
    timing: LeaseTiming,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(timing.heartbeat) => {}
        }
        let owner = tx.borrow().owner.clone();
        match store.renew_lease(&owner, timing.lease).await {
            Ok(Some((renewed_at, expires_at))) => tx.send_modify(|s| {
                s.renewed_at = renewed_at;
                s.expires_at = expires_at;
            }),
            Ok(None) => {
                tracing::warn!(
                    instance = %owner.id,
                    epoch = owner.epoch,
                    "this process's lease lapsed (it was frozen or could not reach the store \
                     for longer than the lease): its runs may be adopted by another instance; \
                     its tries stop and it takes a new lease"
                );
                match store.reacquire_lease(&owner, timing.lease).await {
                    Ok(owner) => {
                        tx.send_replace(LeaseState::fresh(owner, Utc::now(), timing.lease));
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot take a new lease; will retry"),
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot renew the lease; will retry"),
        }
    }
}
