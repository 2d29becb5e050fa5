//! Instances and their leases: the processes that execute runs register here, renew a
//! heartbeat, and own runs only while their lease is current.
//!
//! Ownership of a run is the pair (instance id, epoch) written on the run. A run may be
//! taken over only when that pair has no live lease: the instance stopped, its lease
//! expired, or it lost its lease and came back under a newer epoch. Every state write of
//! the scheduler is fenced by the same pair (see [`Store::commit`]), so a process that was
//! frozen past its lease cannot commit anything about runs another instance adopted.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Store, StoreError, StoreResult, to_text};
use crate::ids::InstanceId;

/// The SQL condition "the run's recorded owner holds no live lease at its recorded epoch";
/// `?now` must be bound under the name used in the query (it is spelled out inline).
pub(super) fn unowned(now_param: &str) -> String {
    format!(
        "(dag_run.owner IS NULL OR NOT EXISTS (SELECT 1 FROM instance i \
         WHERE i.id = dag_run.owner AND i.epoch = dag_run.owner_epoch \
         AND i.stopped_at IS NULL AND i.lease_expires_at > {now_param}))"
    )
}

/// A registered instance at one epoch: whose writes are fenced by it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// The instance.
    pub id: InstanceId,
    /// Its current epoch.
    pub epoch: i64,
}

/// What kind of process an instance is (shown, not acted on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstanceKind {
    /// `orchestrator serve`.
    Serve,
    /// `orchestrator run` or `trigger --wait` executing in the foreground.
    Foreground,
}

/// A fresh random id (instances, run uids).
pub fn new_uid() -> String {
    let mut bytes = [0u8; 16];
    // Without OS randomness, time and pid still make ids unique on one host.
    if getrandom::fill(&mut bytes).is_err() {
        let seed = Utc::now().timestamp_nanos_opt().unwrap_or_default() as u128
            ^ (u128::from(std::process::id()) << 64);
        bytes = seed.to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn expiry(now: DateTime<Utc>, lease: Duration) -> StoreResult<DateTime<Utc>> {
    chrono::Duration::from_std(lease)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .ok_or_else(|| StoreError::Conflict(format!("lease of {lease:?} is out of range")))
}

impl Store {
    /// Registers this process as an instance holding a lease of `lease` from now.
    pub async fn register_instance(
        &self,
        kind: InstanceKind,
        lease: Duration,
    ) -> StoreResult<Owner> {
        let now = self.now();
        let id = InstanceId::new(new_uid());
        sqlx::query(
            "INSERT INTO instance (id, host, pid, kind, started_at, epoch, heartbeat_at, \
             lease_expires_at) VALUES ($1, $2, $3, $4, $5, 1, $6, $7)",
        )
        .bind(id.as_str())
        .bind(crate::tasks::process::this_host())
        .bind(i64::from(std::process::id()))
        .bind(match kind {
            InstanceKind::Serve => "serve",
            InstanceKind::Foreground => "foreground",
        })
        .bind(to_text(now))
        .bind(to_text(now))
        .bind(to_text(expiry(now, lease)?))
        .execute(&self.pool)
        .await?;
        Ok(Owner { id, epoch: 1 })
    }

    /// Extends the lease if it is still current at `owner`'s epoch; returns the renewal's
    /// time and the new expiry by this host's clock (the store keeps them by the
    /// database's), or `None` if the lease was lost (expired, stopped, or a newer epoch).
    pub async fn renew_lease(
        &self,
        owner: &Owner,
        lease: Duration,
    ) -> StoreResult<Option<(DateTime<Utc>, DateTime<Utc>)>> {
        self.sync_clock().await?;
        // The time is read once the write lock is held: a renewal that waited behind another
        // transaction past the lease's end must fail, not extend a lease that had lapsed.
        let mut tx = self.begin_write().await?;
        let local = Utc::now();
        let now = self.now();
        let until = expiry(now, lease)?;
        let done = sqlx::query(
            "UPDATE instance SET heartbeat_at = $1, lease_expires_at = $2 \
             WHERE id = $3 AND epoch = $4 AND stopped_at IS NULL AND lease_expires_at > $1",
        )
        .bind(to_text(now))
        .bind(to_text(until))
        .bind(owner.id.as_str())
        .bind(owner.epoch)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let local_until = expiry(local, lease)?;
        Ok((done.rows_affected() == 1).then_some((local, local_until)))
    }

    /// Takes a lost lease back under a new epoch: runs owned under the old epoch become
    /// adoptable (by anyone, this instance included) and its old writes stay fenced off.
    pub async fn reacquire_lease(&self, owner: &Owner, lease: Duration) -> StoreResult<Owner> {
        let now = self.now();
        let epoch: i64 = sqlx::query_scalar(
            "UPDATE instance SET epoch = epoch + 1, heartbeat_at = $1, lease_expires_at = $2, \
             stopped_at = NULL WHERE id = $3 RETURNING epoch",
        )
        .bind(to_text(now))
        .bind(to_text(expiry(now, lease)?))
        .bind(owner.id.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(Owner {
            id: owner.id.clone(),
            epoch,
        })
    }

    /// Ends the lease on a clean stop: what this instance still owns is adoptable at once.
    pub async fn stop_instance(&self, owner: &Owner) -> StoreResult<()> {
        let now = to_text(self.now());
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE instance SET stopped_at = $1, lease_expires_at = $1 WHERE id = $2 AND epoch = $3",
        )
        .bind(&now)
        .bind(owner.id.as_str())
        .bind(owner.epoch)
        .execute(&mut *tx)
        .await?;
        self.announce_stop(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// How many `serve` instances hold a live lease: on a shared store, a run queued from
    /// anywhere is taken by one of them at once (they are told over `NOTIFY`).
    pub async fn live_servers(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM instance WHERE kind = 'serve' AND stopped_at IS NULL \
             AND lease_expires_at > $1",
        )
        .bind(to_text(self.now()))
        .fetch_one(&self.pool)
        .await?;
        Ok(n.unsigned_abs())
    }

    /// Whether `owner` still holds a live lease (checked inside fenced transactions).
    pub(super) async fn lease_is_live(
        conn: &mut sqlx::AnyConnection,
        owner: &Owner,
        now: &str,
    ) -> StoreResult<bool> {
        let live: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM instance WHERE id = $1 AND epoch = $2 AND stopped_at IS NULL \
             AND lease_expires_at > $3",
        )
        .bind(owner.id.as_str())
        .bind(owner.epoch)
        .bind(now)
        .fetch_optional(conn)
        .await?;
        Ok(live.is_some())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::Utc;

    use super::*;
    use crate::ids::TaskId;
    use crate::state::TaskState;
    use crate::store::Change;

    const LEASE: Duration = Duration::from_secs(600);

    async fn store_with_run(
        backend: crate::store::Backend,
    ) -> (crate::store::testing::TestDb, Store, crate::ids::RunKey) {
        let dir = crate::store::testing::TestDb::open(backend).await;
        let store = dir.store();
        let new = crate::store::testing::manual_run("d");
        let key = store.insert_run(&new).await.unwrap().unwrap().key;
        (dir, store, key)
    }

    /// A new instance that has claimed `run`, whose task `t` has `max_tries`.
    async fn claimed(store: &Store, run: crate::ids::RunKey, max_tries: u32) -> Owner {
        let owner = store
            .register_instance(InstanceKind::Serve, LEASE)
            .await
            .unwrap();
        assert!(
            store
                .claim_run(run, &owner, &[(TaskId::new("t"), max_tries)])
                .await
                .unwrap()
        );
        owner
    }

    async fn two_instances(store: &Store) -> (Owner, Owner) {
        let register = || store.register_instance(InstanceKind::Serve, LEASE);
        (register().await.unwrap(), register().await.unwrap())
    }

    fn start(run: crate::ids::RunKey, try_number: u32) -> Change {
        Change::StartTry {
            run,
            task: TaskId::new("t"),
            try_number,
            at: Utc::now(),
        }
    }

    async fn writes_of_an_instance_that_lost_the_run_are_refused_whole(
        backend: crate::store::Backend,
    ) {
        let (_dir, store, run) = store_with_run(backend).await;
        let (a, b) = two_instances(&store).await;
        let tasks = [(TaskId::new("t"), 3)];
        assert!(store.claim_run(run, &a, &tasks).await.unwrap());
        // B cannot take a run whose owner holds a live lease.
        assert!(!store.claim_run(run, &b, &tasks).await.unwrap());
        store.commit(&a, &[start(run, 1)]).await.unwrap();
        // A stops (its lease ends): B adopts, and A's writes are fenced off from then on.
        store.stop_instance(&a).await.unwrap();
        // Without a live lease, A cannot take the run back (as if it were queued) either.
        assert!(!store.claim_run(run, &a, &tasks).await.unwrap());
        assert!(store.claim_run(run, &b, &tasks).await.unwrap());
        let late = Change::FinishTry {
            run,
            task: TaskId::new("t"),
            try_number: 1,
            state: TaskState::Success,
            at: Utc::now(),
            error: None,
            next_retry_at: None,
            interrupted: false,
        };
        let err = store
            .commit(&a, std::slice::from_ref(&late))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::LeaseLost), "{err}");
        // Even with a live lease, a run owned by another instance is refused.
        let a2 = store.reacquire_lease(&a, LEASE).await.unwrap();
        assert_eq!(a2.epoch, 2);
        let err = store
            .commit(&a2, std::slice::from_ref(&late))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Fenced(runs) if runs == &[run]),
            "{err}"
        );
        let tis = store.task_instances(run).await.unwrap();
        assert_eq!(
            tis[0].state,
            Some(TaskState::Running),
            "nothing was written"
        );
        store.commit(&b, &[late]).await.unwrap();
        // The try's own row ended with its task instance.
        let tries = store.tries(run).await.unwrap();
        assert_eq!(tries.len(), 1);
        assert_eq!(
            (tries[0].state, tries[0].end_date.is_some(), &tries[0].error),
            (TaskState::Success, true, &None)
        );
    }

    async fn refused_transitions_name_the_run_task_and_states(backend: crate::store::Backend) {
        let (_dir, store, run) = store_with_run(backend).await;
        let a = claimed(&store, run, 3).await;
        store.commit(&a, &[start(run, 1)]).await.unwrap();
        // The same try cannot start twice, nor can a try skip a number.
        let err = store.commit(&a, &[start(run, 1)]).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "refused state change of task t of run d/{}: running (try 1) -> running",
                store.run(run).await.unwrap().unwrap().run_id
            )
        );
        let err = store.commit(&a, &[start(run, 3)]).await.unwrap_err();
        assert!(matches!(err, StoreError::Transition { .. }), "{err}");
        // A finished run cannot be finished again.
        let finish = |state| Change::FinishRun {
            run,
            state,
            at: Utc::now(),
            note: None,
        };
        store
            .commit(&a, &[finish(crate::state::RunState::Failed)])
            .await
            .unwrap();
        let err = store
            .commit(&a, &[finish(crate::state::RunState::Success)])
            .await
            .unwrap_err();
        assert!(err.to_string().ends_with(": failed -> success"), "{err}");
    }

    async fn a_lapsed_lease_is_not_renewed_and_its_runs_become_adoptable(
        backend: crate::store::Backend,
    ) {
        let (_dir, store, run) = store_with_run(backend).await;
        let (a, b) = two_instances(&store).await;
        assert!(store.claim_run(run, &a, &[]).await.unwrap());
        assert!(store.adoptable_running(&b).await.unwrap().is_empty());
        // A was frozen past its lease.
        sqlx::query(
            "UPDATE instance SET lease_expires_at = '2000-01-01T00:00:00.000000Z' WHERE id = $1",
        )
        .bind(a.id.as_str())
        .execute(&store.pool)
        .await
        .unwrap();
        assert_eq!(store.renew_lease(&a, LEASE).await.unwrap(), None);
        assert!(
            !store.claim_run(run, &a, &[]).await.unwrap(),
            "no lease, no claim"
        );
        assert_eq!(store.adoptable_running(&b).await.unwrap().len(), 1);
        assert!(store.claim_run(run, &b, &[]).await.unwrap());
        let row = store.run(run).await.unwrap().unwrap();
        assert_eq!((row.owner, row.owner_epoch), (Some(b.id.clone()), Some(1)));
    }

    async fn text_with_nul_characters_is_stored_on_both_backends(backend: crate::store::Backend) {
        let (_dir, store, run) = store_with_run(backend).await;
        let a = claimed(&store, run, 1).await;
        let finish = Change::FinishTry {
            run,
            task: TaskId::new("t"),
            try_number: 1,
            state: TaskState::Failed,
            at: Utc::now(),
            error: Some("bad\0input".into()),
            next_retry_at: None,
            interrupted: false,
        };
        let end = Change::FinishRun {
            run,
            state: crate::state::RunState::Failed,
            at: Utc::now(),
            note: Some("why\0".into()),
        };
        store
            .commit(&a, &[start(run, 1), finish, end])
            .await
            .unwrap();
        store.set_run_note(run, Some("user\0note")).await.unwrap();
        let ti = &store.task_instances(run).await.unwrap()[0];
        assert_eq!(ti.error.as_deref(), Some("bad\u{FFFD}input"));
        let row = store.run(run).await.unwrap().unwrap();
        assert_eq!(row.note.as_deref(), Some("why\u{FFFD}"));
        assert_eq!(row.user_note.as_deref(), Some("user\u{FFFD}note"));
    }

    async fn lease_times_are_the_databases(backend: crate::store::Backend) {
        let (_dir, store, _run) = store_with_run(backend).await;
        let local = Utc::now();
        let now = store.now();
        let reference = match backend {
            // One host: its clock is the store's.
            crate::store::Backend::Sqlite => local,
            crate::store::Backend::Postgres => {
                let micros: i64 = sqlx::query_scalar(
                    "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)",
                )
                .fetch_one(store.test_pool())
                .await
                .unwrap();
                chrono::DateTime::from_timestamp_micros(micros).unwrap()
            }
        };
        let skew = (now - reference).num_milliseconds().abs();
        assert!(
            skew < 1000,
            "the store's time is {skew} ms off the database's"
        );
        // A renewal reports its times by this host's clock, whatever the database's says.
        let owner = store
            .register_instance(InstanceKind::Serve, LEASE)
            .await
            .unwrap();
        let (renewed, until) = store.renew_lease(&owner, LEASE).await.unwrap().unwrap();
        assert!(renewed >= local && until > renewed);
    }

    async fn a_claim_counts_the_running_runs_of_its_dag_itself(backend: crate::store::Backend) {
        let (_dir, store, first) = store_with_run(backend).await;
        let insert = |dag: &'static str| {
            let store = store.clone();
            async move {
                let mut new = crate::store::testing::manual_run(dag);
                new.interval_start += chrono::Duration::seconds(1);
                store.insert_run(&new).await.unwrap().unwrap().key
            }
        };
        let second = insert("d").await;
        let other = insert("e").await;
        let (a, b) = two_instances(&store).await;
        assert!(
            store
                .claim_run_within(first, &a, &[], Some(1))
                .await
                .unwrap()
        );
        // Another instance that counted before that claim is refused by the claim itself.
        assert!(
            !store
                .claim_run_within(second, &b, &[], Some(1))
                .await
                .unwrap()
        );
        assert!(
            store
                .claim_run_within(other, &b, &[], Some(1))
                .await
                .unwrap()
        );
        assert!(
            store
                .claim_run_within(second, &b, &[], Some(2))
                .await
                .unwrap()
        );
    }

    crate::store::testing::on_both!(
        a_claim_counts_the_running_runs_of_its_dag_itself,
        lease_times_are_the_databases,
        text_with_nul_characters_is_stored_on_both_backends,
        writes_of_an_instance_that_lost_the_run_are_refused_whole,
        refused_transitions_name_the_run_task_and_states,
        a_lapsed_lease_is_not_renewed_and_its_runs_become_adoptable,
    );
}
