//! Riding out an outage of the state database (`serve` only). The instance takes no work
//! while the database is away, but its running tries go on as long as its lease would still
//! be valid: their ends are kept and committed once the database answers. When the lease
//! is about to run out first, the tries stop (another instance may then adopt their runs)
//! and the runs are taken on again from the store once it answers and the lease is renewed
//! (or a new one taken).

use std::time::Duration;

use tokio::time::Instant;

use super::Command;
use super::core::Scheduler;
use crate::store::StoreError;

/// Longest pause between attempts to reach the state database during an outage (a
/// ping is cheap; the instance resumes within this of the database's return).
const OUTAGE_RETRY_MAX: Duration = Duration::from_secs(2);
/// First pause between attempts to reach the state database.
const OUTAGE_RETRY_FIRST: Duration = Duration::from_millis(250);

/// How holding on to the running tries through an outage ended.
enum Held {
    /// The database answered and what the tries did meanwhile is committed.
    Resumed,
    /// The lease is about to lapse (or lapsed): the tries must stop.
    LeaseEnding,
    /// `serve` is shutting down.
    Shutdown,
}

impl Scheduler {
    /// Waits, with growing pauses, until the state database answers again after `error`.
    /// Ok(false) if shut down meanwhile.
    pub(super) async fn ride_out_outage(&mut self, error: &StoreError) -> Result<bool, StoreError> {
        tracing::error!(
            error = %error,
            "lost the state database: this instance takes no work until it answers again; \
             its running tries go on while its lease lasts"
        );
        let mut commands = Vec::new();
        match self.hold_tries(&mut commands).await? {
            Held::Resumed => {
                tracing::info!("the state database answers again: resuming");
                // Requests that needed the database, answered now in the order they came.
                for cmd in commands {
                    self.handle(cmd).await?;
                }
                self.missed_wakeups();
                return Ok(true);
            }
            Held::Shutdown => {
                self.start_over();
                return Ok(false);
            }
            Held::LeaseEnding => {
                tracing::warn!(
                    "the lease runs out before the state database answers: this instance stops \
                     its tries, and takes its runs on again from the store once it answers"
                );
                self.on_lease_change();
                self.start_over();
            }
        }
        // Requests left unanswered fail now (their senders see the channel closed).
        drop(commands);
        let mut pause = OUTAGE_RETRY_FIRST;
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return Ok(false),
                () = tokio::time::sleep(pause) => {}
            }
            if self.store.ping().await.is_ok() {
                // Runs are taken on again only under a lease known to be live: the keeper
                // renews it (or takes a new one) on its next heartbeat. Resuming before
                // that could take a run on just before the lease turns out to have lapsed.
                tokio::select! {
                    () = self.shutdown.cancelled() => return Ok(false),
                    changed = self.lease.changed() => {
                        if changed.is_err() {
                            return Ok(false);
                        }
                        self.on_lease_change();
                        // The ends of the stopped tries come first: taking a run on again
                        // before one arrives would mistake it for the run's latest try.
                        while let Ok(cmd) = self.rx.try_recv() {
                            if let Some(cmd) = self.handle_offline(cmd) {
                                self.handle(cmd).await?;
                            }
                        }
                        tracing::info!("the state database answers again: resuming");
                        return Ok(true);
                    }
                    () = tokio::time::sleep(self.config.lease.lease) => {}
                }
            }
            pause = (pause * 2).min(OUTAGE_RETRY_MAX);
        }
    }

    /// Keeps the running tries (and the uncommitted changes) until the database answers
    /// and takes them, or the lease is about to end. Commands that need the database are
    /// kept in `commands` for after.
    async fn hold_tries(&mut self, commands: &mut Vec<Command>) -> Result<Held, StoreError> {
        let mut pause = OUTAGE_RETRY_FIRST;
        let mut next_attempt = Instant::now() + pause;
        loop {
            let Some(lease_ends) = self.tries_may_run_until() else {
                return Ok(Held::LeaseEnding);
            };
            if self.guard.take_fired() {
                return Ok(Held::LeaseEnding);
            }
            tokio::select! {
                () = self.shutdown.cancelled() => return Ok(Held::Shutdown),
                () = tokio::time::sleep_until(lease_ends) => return Ok(Held::LeaseEnding),
                changed = self.lease.changed() => {
                    // A renewal pushes the end further; a new epoch means the old lease lapsed.
                    if changed.is_err() || self.lease.borrow().owner != self.owner {
                        return Ok(Held::LeaseEnding);
                    }
                }
                cmd = self.rx.recv() => match cmd {
                    Some(cmd) => {
                        if let Some(cmd) = self.handle_offline(cmd) {
                            commands.push(cmd);
                        }
                    }
                    None => return Ok(Held::Shutdown),
                },
                () = tokio::time::sleep_until(next_attempt) => {
                    if self.store.ping().await.is_ok() {
                        match self.flush().await {
                            Ok(()) => return Ok(Held::Resumed),
                            Err(e) if e.is_outage() => {}
                            Err(e) => return Err(e),
                        }
                    }
                    pause = (pause * 2).min(OUTAGE_RETRY_MAX);
                    next_attempt = Instant::now() + pause;
                }
            }
        }
    }

    /// When the running tries must be told to stop: [`super::lease::stop_margin`] before the
    /// lease, as last renewed, lapses. None if that moment has passed.
    fn tries_may_run_until(&self) -> Option<Instant> {
        let expires_at = self.lease.borrow().expires_at;
        let margin =
            chrono::Duration::from_std(super::lease::stop_margin(self.config.lease)).ok()?;
        let left = (expires_at - margin - chrono::Utc::now()).to_std().ok()?;
        (!left.is_zero()).then(|| Instant::now() + left)
    }

    /// Everything a wake-up may have said while the database was away is looked at again.
    fn missed_wakeups(&mut self) {
        self.cron_dirty = true;
        self.look_for_queued = true;
        self.look_for_orphans = self.mode == super::Mode::Serve;
        self.offers_changed = true;
        self.look_for_offers = true;
    }

    /// Handles what needs no database (a try's end or log lines are kept for the next
    /// commit); returns the commands that do, to be handled once it answers.
    fn handle_offline(&mut self, cmd: Command) -> Option<Command> {
        match self.handle_in_memory(cmd)? {
            // Looked at again on resuming (`missed_wakeups`).
            Command::Wake | Command::InstanceStopped => None,
            cmd => Some(cmd),
        }
    }
}
