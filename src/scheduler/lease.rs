//! The lease keeper: renews this process's lease every heartbeat on its own task (never
//! behind the scheduler's work), publishes each renewal, and when the lease turns out to be
//! lost — the process was frozen, or the store unreachable, for longer than the lease —
//! takes a new one under the next epoch. The scheduler watches what it publishes: a new
//! epoch means every run it held is no longer its own.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::store::{Owner, Store};
use crate::tasks::supervise::KILL_GRACE;

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

/// How long before the lease, as last renewed, lapses this process's tries are told to
/// stop when it cannot be renewed: a heartbeat, plus the time a stopped command is given
/// before it is killed ([`KILL_GRACE`]), so they are gone before another instance may adopt
/// their runs (on another host it cannot stop them itself). At most half the lease, so a
/// short lease is not given up at its first late renewal.
pub(super) fn stop_margin(timing: LeaseTiming) -> Duration {
    (timing.heartbeat + KILL_GRACE).min(timing.lease / 2)
}

/// The token every try's cancellation descends from. The lease keeper cancels it when the
/// lease is about to lapse unrenewed, so the tries stop even while the scheduler waits on a
/// database that does not answer (a partition that drops packets, not connections).
#[derive(Clone, Default)]
pub(super) struct TriesGuard(Arc<Mutex<CancellationToken>>);

impl TriesGuard {
    /// A token for a new try or run, cancelled with the guard.
    pub(super) fn child(&self) -> CancellationToken {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .child_token()
    }

    fn fire(&self) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .cancel();
    }

    /// Whether the guard fired; if so it is re-armed for the tries that come after.
    pub(super) fn take_fired(&self) -> bool {
        let mut token = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let fired = token.is_cancelled();
        if fired {
            *token = CancellationToken::new();
        }
        fired
    }
}

/// Renews the lease until `stop` is cancelled. A renewal that does not answer within a
/// heartbeat counts as failed; once the lease is within [`stop_margin`] of lapsing
/// unrenewed, `guard` stops every try.
pub(super) async fn keep(
    store: Store,
    tx: watch::Sender<LeaseState>,
    timing: LeaseTiming,
    stop: CancellationToken,
    guard: TriesGuard,
) {
    let margin = chrono::Duration::from_std(stop_margin(timing)).unwrap_or_default();
    let mut stopped_for = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(timing.heartbeat) => {}
        }
        let owner = tx.borrow().owner.clone();
        // A renewal may take until the tries must stop (at least a heartbeat): one that
        // hangs longer (packets dropped, not connections refused) counts as failed.
        let stop_at = tx.borrow().expires_at - margin;
        let wait = (stop_at - Utc::now())
            .to_std()
            .unwrap_or_default()
            .max(timing.heartbeat);
        let renewed = tokio::time::timeout(wait, store.renew_lease(&owner, timing.lease))
            .await
            .unwrap_or_else(|_| {
                Err(crate::store::StoreError::Conflict(
                    "the state database did not answer".into(),
                ))
            });
        // Once per lease as last renewed: tries started after the stop (the scheduler takes
        // its runs on again once the database answers) are not stopped again for it.
        let expires_at = tx.borrow().expires_at;
        if renewed.is_err() && Utc::now() >= stop_at && stopped_for != Some(expires_at) {
            tracing::warn!(
                "the lease cannot be renewed and is about to lapse: this process's tries stop"
            );
            guard.fire();
            stopped_for = Some(expires_at);
        }
        match renewed {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(heartbeat_ms: u64, lease_ms: u64) -> LeaseTiming {
        LeaseTiming {
            heartbeat: Duration::from_millis(heartbeat_ms),
            lease: Duration::from_millis(lease_ms),
        }
    }

    #[test]
    fn tries_stop_a_heartbeat_and_a_kill_grace_before_the_lease_lapses_or_at_half_of_it() {
        assert_eq!(stop_margin(timing(2000, 10_000)), Duration::from_secs(5));
        assert_eq!(stop_margin(timing(2000, 60_000)), Duration::from_secs(5));
        assert_eq!(stop_margin(timing(250, 3000)), Duration::from_millis(1500));
    }

    #[test]
    fn the_guard_stops_the_tries_it_gave_tokens_to_and_rearms_for_the_next() {
        let guard = TriesGuard::default();
        let before = guard.child();
        assert!(!guard.take_fired());
        guard.fire();
        assert!(before.is_cancelled());
        assert!(guard.take_fired());
        let after = guard.child();
        assert!(!after.is_cancelled());
        assert!(!guard.take_fired());
    }
}
