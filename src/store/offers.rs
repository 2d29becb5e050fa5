//! Offered tries: how a ready try of one instance's run executes on another instance with a
//! free slot, when several instances share a PostgreSQL store.
//!
//! The run's owner stays the one that decides its tasks' states. When its own slots are
//! full it offers a ready task's next try (its number fixed by the owner); any instance
//! with a free slot claims offers with `SELECT … FOR UPDATE SKIP LOCKED` and starts the try
//! in the same transaction (the task instance moves from `queued` at the previous try to
//! `running`, exactly as the owner's own start would, so the two can never both start it).
//! The worker writes the try's log lines and its end to the offer, fenced by its claim; the
//! owner hears (`NOTIFY`), records the end as it records its own tries' ends, and drops the
//! offer. A worker whose lease lapses has its claim counted as an interrupted try by the
//! owner; an owner that dies leaves the run, offers and claims included, to its adopter.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::{Any, Row, Transaction};

use super::rows::{Change, RemoteEnd};
use super::sql::{Backend, insert_values, row};
use super::{Owner, Store, StoreError, StoreResult, from_text, to_text};
use crate::ids::{RunKey, TaskId};

/// An offer this instance claimed: the try it now runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimedTry {
    /// The run.
    pub run: RunKey,
    /// The task.
    pub task: TaskId,
    /// The try it starts.
    pub try_number: u32,
    /// First try of the task's current attempt.
    pub first_try: u32,
    /// The run is this instance's own: the try is an ordinary local one (the offer is gone).
    pub mine: bool,
}

/// A claimed offer of one of an owner's runs, as the owner must see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimedOffer {
    /// The run.
    pub run: RunKey,
    /// The task.
    pub task: TaskId,
    /// The try the worker runs.
    pub try_number: u32,
    /// Where the try stands.
    pub state: OfferState,
}

/// Where a claimed try stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OfferState {
    /// Running on a worker whose lease is live.
    Running,
    /// Ended on its worker.
    Ended {
        end: RemoteEnd,
        at: DateTime<Utc>,
        duration_ms: u64,
    },
    /// Its worker's lease lapsed (crash, `kill -9`, freeze) before it ended.
    WorkerLost,
}

impl Store {
    /// Claims up to `limit` open offers, oldest first, for `worker` (on `host`), starting
    /// their tries. Offers that no longer match their task (it moved on) are deleted.
    /// `announced`: something was just offered, so the cheap look for open offers that
    /// otherwise comes before taking the write lock is skipped.
    pub async fn claim_offers(
        &self,
        worker: &Owner,
        host: &str,
        limit: usize,
        announced: bool,
    ) -> StoreResult<Vec<ClaimedTry>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        if !announced {
            let open: Option<i64> =
                sqlx::query_scalar("SELECT 1 FROM try_offer WHERE worker IS NULL LIMIT 1")
                    .fetch_optional(&self.pool)
                    .await?;
            if open.is_none() {
                return Ok(Vec::new());
            }
        }
        let mut tx = self.begin_write().await?;
        let now = to_text(self.now());
        if !Self::lease_is_live(&mut tx, worker, &now).await? {
            return Err(StoreError::LeaseLost);
        }
        // The advisory write lock already serialises claims; the row locks keep a claim
        // correct on its own and let concurrent ones pass over each other's rows.
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE OF o SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT o.run, o.task_id, o.try_number, COALESCE(ti.first_try, 1) AS first_try, \
             CASE WHEN ti.state = 'queued' AND ti.try_number = o.try_number - 1 \
             AND r.state = 'running' THEN 1 ELSE 0 END AS valid, \
             CASE WHEN r.owner = $1 AND r.owner_epoch = $2 THEN 1 ELSE 0 END AS mine \
             FROM try_offer o JOIN dag_run r ON r.id = o.run \
             LEFT JOIN task_instance ti ON ti.run = o.run AND ti.task_id = o.task_id \
             WHERE o.worker IS NULL ORDER BY o.offered_at, o.run, o.task_id LIMIT $3{lock}"
        ));
        let rows = sqlx::query(sql)
            .bind(worker.id.as_str())
            .bind(worker.epoch)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await?;
        let mut claimed = Vec::new();
        for r in &rows {
            let run = RunKey(r.try_get("run")?);
            let task: String = r.try_get("task_id")?;
            let task = TaskId::new(task);
            let try_number = super::rows::uint(r, "try_number")?;
            if r.try_get::<i64, _>("valid")? == 0 {
                drop_offer(&mut tx, run, &task).await?;
                continue;
            }
            let mine = r.try_get::<i64, _>("mine")? == 1;
            if mine {
                drop_offer(&mut tx, run, &task).await?;
            } else {
                sqlx::query(
                    "UPDATE try_offer SET worker = $1, worker_epoch = $2, claimed_at = $3 \
                     WHERE run = $4 AND task_id = $5",
                )
                .bind(worker.id.as_str())
                .bind(worker.epoch)
                .bind(&now)
                .bind(run.0)
                .bind(task.as_str())
                .execute(&mut *tx)
                .await?;
            }
            let started = sqlx::query(
                "UPDATE task_instance SET state = 'running', try_number = $1, start_date = $2, \
                 end_date = NULL, next_retry_at = NULL, error = NULL \
                 WHERE run = $3 AND task_id = $4 AND try_number = $1 - 1 AND state = 'queued'",
            )
            .bind(i64::from(try_number))
            .bind(&now)
            .bind(run.0)
            .bind(task.as_str())
            .execute(&mut *tx)
            .await?;
            if started.rows_affected() != 1 {
                return Err(StoreError::Conflict(format!(
                    "offered try {try_number} of task {task} of run {run} cannot start"
                )));
            }
            sqlx::query(
                "INSERT INTO task_try (run, task_id, try_number, state, start_date, host, \
                 instance) VALUES ($1, $2, $3, 'running', $4, $5, $6)",
            )
            .bind(run.0)
            .bind(task.as_str())
            .bind(i64::from(try_number))
            .bind(&now)
            .bind((!mine).then_some(host))
            .bind(worker.id.as_str())
            .execute(&mut *tx)
            .await?;
            claimed.push(ClaimedTry {
                run,
                task,
                try_number,
                first_try: super::rows::uint(r, "first_try")?,
                mine,
            });
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// The claimed offers of `owner`'s runs (only of `run` when given): running, ended, or
    /// left by a worker whose lease lapsed.
    pub async fn claimed_offers(
        &self,
        owner: &Owner,
        run: Option<RunKey>,
    ) -> StoreResult<Vec<ClaimedOffer>> {
        let rows = sqlx::query(
            "SELECT o.run, o.task_id, o.try_number, o.outcome, o.error, o.ended_at, \
             o.duration_ms, CASE WHEN i.epoch = o.worker_epoch AND i.stopped_at IS NULL \
             AND i.lease_expires_at > $3 THEN 1 ELSE 0 END AS live \
             FROM try_offer o JOIN dag_run r ON r.id = o.run \
             LEFT JOIN instance i ON i.id = o.worker \
             WHERE r.owner = $1 AND r.owner_epoch = $2 AND o.worker IS NOT NULL \
             AND ($4 = 0 OR o.run = $4) ORDER BY o.run, o.task_id",
        )
        .bind(owner.id.as_str())
        .bind(owner.epoch)
        .bind(to_text(self.now()))
        .bind(run.map_or(0, |r| r.0))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let task: String = r.try_get("task_id")?;
                let outcome: Option<String> = r.try_get("outcome")?;
                let state = match outcome {
                    Some(outcome) => {
                        let ended_at: Option<String> = r.try_get("ended_at")?;
                        OfferState::Ended {
                            end: RemoteEnd::from_columns(&outcome, r.try_get("error")?)?,
                            at: from_text(ended_at.as_deref().unwrap_or_default())?,
                            duration_ms: super::rows::opt_uint(r, "duration_ms")?.unwrap_or(0),
                        }
                    }
                    None if r.try_get::<i64, _>("live")? == 1 => OfferState::Running,
                    None => OfferState::WorkerLost,
                };
                Ok(ClaimedOffer {
                    run: RunKey(r.try_get("run")?),
                    task: TaskId::new(task),
                    try_number: super::rows::uint(r, "try_number")?,
                    state,
                })
            })
            .collect()
    }

    /// The tries `worker` claimed and has not ended, still on offer: a try missing here
    /// was withdrawn by its run's owner (or its adopter) and must stop.
    pub async fn live_claims(&self, worker: &Owner) -> StoreResult<HashSet<(RunKey, TaskId, u32)>> {
        let rows = sqlx::query(
            "SELECT run, task_id, try_number FROM try_offer \
             WHERE worker = $1 AND worker_epoch = $2 AND outcome IS NULL",
        )
        .bind(worker.id.as_str())
        .bind(worker.epoch)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let task: String = r.try_get("task_id")?;
                Ok((
                    RunKey(r.try_get("run")?),
                    TaskId::new(task),
                    super::rows::uint(r, "try_number")?,
                ))
            })
            .collect()
    }

    /// Withdraws the offers of `owner`'s run `run` (it timed out): open ones are deleted,
    /// so no instance can claim them any more; returns the claimed ones' tasks and tries
    /// (their workers stop them when they see the claim gone). Nothing for a run `owner`
    /// does not hold.
    pub async fn withdraw_offers(
        &self,
        owner: &Owner,
        run: RunKey,
    ) -> StoreResult<Vec<(TaskId, u32)>> {
        let mut tx = self.begin_write().await?;
        let held: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM dag_run WHERE id = $1 AND owner = $2 AND owner_epoch = $3",
        )
        .bind(run.0)
        .bind(owner.id.as_str())
        .bind(owner.epoch)
        .fetch_optional(&mut *tx)
        .await?;
        if held.is_none() {
            return Ok(Vec::new());
        }
        sqlx::query("DELETE FROM try_offer WHERE run = $1 AND worker IS NULL")
            .bind(run.0)
            .execute(&mut *tx)
            .await?;
        let rows = sqlx::query(
            "SELECT task_id, try_number FROM try_offer WHERE run = $1 AND outcome IS NULL",
        )
        .bind(run.0)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                let task: String = r.try_get("task_id")?;
                Ok((TaskId::new(task), super::rows::uint(r, "try_number")?))
            })
            .collect()
    }

    /// Reports every try `worker` claimed and has not ended as stopped by its own restart
    /// (its scheduler started over after a panic or a database outage and stopped them):
    /// their owners run them again without using a retry.
    pub async fn abandon_claims(&self, worker: &Owner, why: &str) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE try_offer SET outcome = 'abandoned', error = $1, ended_at = $2, \
             duration_ms = 0 WHERE worker = $3 AND worker_epoch = $4 AND outcome IS NULL",
        )
        .bind(why)
        .bind(to_text(Utc::now()))
        .bind(worker.id.as_str())
        .bind(worker.epoch)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() > 0 {
            self.announce_tries(&mut tx, false).await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}

async fn drop_offer(
    tx: &mut Transaction<'static, Any>,
    run: RunKey,
    task: &TaskId,
) -> StoreResult<()> {
    sqlx::query("DELETE FROM try_offer WHERE run = $1 AND task_id = $2")
        .bind(run.0)
        .bind(task.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Writes a batch's offers and dropped offers (the owner's side; the batch's runs were
/// checked against the owner's fence). True if anything was offered.
pub(super) async fn apply_owner(
    tx: &mut Transaction<'static, Any>,
    changes: &[Change],
) -> StoreResult<bool> {
    let offers: Vec<_> = changes
        .iter()
        .filter_map(|c| match c {
            Change::OfferTry {
                run,
                task,
                try_number,
                at,
            } => Some((*run, task, *try_number, *at)),
            _ => None,
        })
        .collect();
    // Dropped first: a batch may drop a task's ended offer and offer its next try (a try
    // handed back by a worker's shutdown).
    for change in changes {
        if let Change::DropOffer { run, task } = change {
            drop_offer(tx, *run, task).await?;
        }
    }
    for chunk in offers.chunks(200) {
        // An offer a worker already claimed stays as it is (the claim decides); an open
        // one left from before (an adopted run) takes the new try number.
        let q = insert_values(
            "INSERT INTO try_offer (run, task_id, try_number, offered_at)",
            chunk,
            " ON CONFLICT (run, task_id) DO UPDATE SET try_number = excluded.try_number, \
             offered_at = excluded.offered_at WHERE try_offer.worker IS NULL",
            |q, (run, task, try_number, at)| {
                row(q, true, run.0)?;
                row(q, false, task.as_str().to_owned())?;
                row(q, false, i64::from(*try_number))?;
                row(q, false, to_text(*at))
            },
        )?;
        let (sql, args) = q.finish();
        sqlx::query_with(sql, args).execute(&mut **tx).await?;
    }
    Ok(!offers.is_empty())
}

/// Writes a batch's worker changes that `worker`'s claims still allow (a withdrawn claim's
/// are dropped: the try is no longer the worker's to report); returns the allowed log
/// lines as ordinary log changes, for the batch's log insert, and whether any end was
/// written.
pub(super) async fn apply_worker(
    tx: &mut Transaction<'static, Any>,
    worker: &Owner,
    changes: &[Change],
) -> StoreResult<(Vec<Change>, bool)> {
    let mut keys: Vec<(RunKey, &TaskId, u32)> = changes
        .iter()
        .filter_map(|c| match c {
            Change::RemoteLogs {
                run,
                task,
                try_number,
                ..
            }
            | Change::RemoteProcess {
                run,
                task,
                try_number,
                ..
            }
            | Change::EndOffer {
                run,
                task,
                try_number,
                ..
            } => Some((*run, task, *try_number)),
            _ => None,
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let mut allowed: HashSet<(RunKey, &TaskId, u32)> = HashSet::new();
    for (run, task, try_number) in keys {
        let held: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM try_offer WHERE run = $1 AND task_id = $2 AND try_number = $3 \
             AND worker = $4 AND worker_epoch = $5 AND outcome IS NULL",
        )
        .bind(run.0)
        .bind(task.as_str())
        .bind(i64::from(try_number))
        .bind(worker.id.as_str())
        .bind(worker.epoch)
        .fetch_optional(&mut **tx)
        .await?;
        if held.is_some() {
            allowed.insert((run, task, try_number));
        }
    }
    let mut logs = Vec::new();
    let mut ended = false;
    for change in changes {
        match change {
            Change::RemoteLogs {
                run,
                task,
                try_number,
                lines,
                dropped,
            } if allowed.contains(&(*run, task, *try_number)) => logs.push(Change::Logs {
                run: *run,
                task: task.clone(),
                try_number: *try_number,
                lines: lines.clone(),
                dropped: dropped.clone(),
            }),
            Change::RemoteProcess {
                run,
                task,
                try_number,
                group,
            } if allowed.contains(&(*run, task, *try_number)) => {
                super::tasks::set_try_process(tx, *run, task, *try_number, group).await?;
            }
            Change::EndOffer {
                run,
                task,
                try_number,
                end,
                at,
                duration_ms,
            } if allowed.contains(&(*run, task, *try_number)) => {
                let (outcome, error) = end.to_columns();
                sqlx::query(
                    "UPDATE try_offer SET outcome = $1, error = $2, ended_at = $3, \
                     duration_ms = $4 WHERE run = $5 AND task_id = $6",
                )
                .bind(outcome)
                .bind(super::sql::storable_opt(error))
                .bind(to_text(*at))
                .bind(i64::try_from(*duration_ms).unwrap_or(i64::MAX))
                .bind(run.0)
                .bind(task.as_str())
                .execute(&mut **tx)
                .await?;
                ended = true;
            }
            _ => {}
        }
    }
    Ok((logs, ended))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::state::TaskState;
    use crate::store::InstanceKind;
    use crate::store::testing::TestDb;

    const LEASE: Duration = Duration::from_secs(600);

    fn task(name: &str) -> TaskId {
        TaskId::new(name)
    }

    /// A store with a run owned by a fresh instance (tasks `a` and `b`), that instance,
    /// and a second one to work for it.
    async fn owner_and_worker(backend: super::Backend) -> (TestDb, RunKey, Owner, Owner) {
        let db = TestDb::open(backend).await;
        let new = crate::store::testing::manual_run("d");
        let run = db.insert_run(&new).await.unwrap().unwrap().key;
        let register = || db.register_instance(InstanceKind::Serve, LEASE);
        let (owner, worker) = (register().await.unwrap(), register().await.unwrap());
        let tasks = [(task("a"), 2), (task("b"), 1)];
        assert!(db.claim_run(run, &owner, &tasks).await.unwrap());
        (db, run, owner, worker)
    }

    /// What the owner's dispatch commits for a task its slots cannot take.
    fn offer(run: RunKey, name: &str, try_number: u32) -> [Change; 2] {
        [
            Change::SetTaskState {
                run,
                task: task(name),
                state: TaskState::Queued,
                at: Utc::now(),
            },
            Change::OfferTry {
                run,
                task: task(name),
                try_number,
                at: Utc::now(),
            },
        ]
    }

    fn end(run: RunKey, name: &str, try_number: u32, end: RemoteEnd) -> Change {
        Change::EndOffer {
            run,
            task: task(name),
            try_number,
            end,
            at: Utc::now(),
            duration_ms: 7,
        }
    }

    async fn state_of(db: &Store, run: RunKey, name: &str) -> (Option<TaskState>, u32) {
        let tis = db.task_instances(run).await.unwrap();
        let ti = tis.iter().find(|t| t.task_id.as_str() == name).unwrap();
        (ti.state, ti.try_number)
    }

    async fn a_claimed_try_starts_once_and_its_end_reaches_the_owner(backend: super::Backend) {
        let (db, run, owner, worker) = owner_and_worker(backend).await;
        db.commit(&owner, &offer(run, "a", 1)).await.unwrap();
        let claimed = db.claim_offers(&worker, "w-host", 4, false).await.unwrap();
        assert_eq!(
            claimed,
            [ClaimedTry {
                run,
                task: task("a"),
                try_number: 1,
                first_try: 1,
                mine: false,
            }]
        );
        assert_eq!(state_of(&db, run, "a").await, (Some(TaskState::Running), 1));
        // Claimed once: nothing is left on offer, and the owner cannot start it itself.
        assert!(
            db.claim_offers(&owner, "o", 4, false)
                .await
                .unwrap()
                .is_empty()
        );
        let own_start = Change::StartTry {
            run,
            task: task("a"),
            try_number: 1,
            at: Utc::now(),
        };
        assert!(db.commit(&owner, &[own_start]).await.is_err());
        let seen = db.claimed_offers(&owner, None).await.unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].state, OfferState::Running);
        assert_eq!(
            db.live_claims(&worker).await.unwrap(),
            HashSet::from([(run, task("a"), 1)])
        );
        // The worker's log lines and end go in under its claim, not the run's owner.
        let line = crate::tasks::LogLine {
            seq: 1,
            ts: Utc::now(),
            level: "INFO",
            message: "hello from the worker".into(),
        };
        let logs = Change::RemoteLogs {
            run,
            task: task("a"),
            try_number: 1,
            lines: vec![line],
            dropped: None,
        };
        let failed = RemoteEnd::Failed {
            error: "exit 1".into(),
            retryable: true,
        };
        db.commit(&worker, &[logs, end(run, "a", 1, failed.clone())])
            .await
            .unwrap();
        let seen = db.claimed_offers(&owner, Some(run)).await.unwrap();
        assert!(
            matches!(&seen[0].state, OfferState::Ended { end, duration_ms: 7, .. } if *end == failed),
            "{seen:?}"
        );
        let log = db.logs(run, &task("a"), 1).await.unwrap();
        assert!(
            log.iter().any(|l| l.message == "hello from the worker"),
            "{log:?}"
        );
        assert!(db.live_claims(&worker).await.unwrap().is_empty());
        // A second end of the same claim is not written.
        db.commit(&worker, &[end(run, "a", 1, RemoteEnd::Success)])
            .await
            .unwrap();
        let seen = db.claimed_offers(&owner, Some(run)).await.unwrap();
        assert!(matches!(&seen[0].state, OfferState::Ended { end, .. } if *end == failed));
        db.commit(
            &owner,
            &[Change::DropOffer {
                run,
                task: task("a"),
            }],
        )
        .await
        .unwrap();
        assert!(db.claimed_offers(&owner, None).await.unwrap().is_empty());
    }

    async fn an_owner_claiming_its_own_offer_runs_it_as_a_local_try(backend: super::Backend) {
        let (db, run, owner, _worker) = owner_and_worker(backend).await;
        db.commit(&owner, &offer(run, "b", 1)).await.unwrap();
        let claimed = db.claim_offers(&owner, "o", 1, false).await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert!(claimed[0].mine);
        assert_eq!(state_of(&db, run, "b").await, (Some(TaskState::Running), 1));
        // No offer is left: its end is an ordinary commit of the owner.
        assert!(db.claimed_offers(&owner, None).await.unwrap().is_empty());
        let finish = Change::FinishTry {
            run,
            task: task("b"),
            try_number: 1,
            state: TaskState::Success,
            at: Utc::now(),
            error: None,
            next_retry_at: None,
            interrupted: false,
        };
        db.commit(&owner, &[finish]).await.unwrap();
    }

    async fn withdrawn_and_lost_claims_are_not_reported(backend: super::Backend) {
        let (db, run, owner, worker) = owner_and_worker(backend).await;
        db.commit(&owner, &offer(run, "a", 1)).await.unwrap();
        db.commit(&owner, &offer(run, "b", 1)).await.unwrap();
        assert_eq!(
            db.claim_offers(&worker, "w", 1, false).await.unwrap().len(),
            1
        );
        assert_eq!(
            db.claim_offers(&worker, "w", 1, false).await.unwrap().len(),
            1
        );
        // The owner withdraws `a` (a timeout): the worker's end of it is dropped.
        db.commit(
            &owner,
            &[Change::DropOffer {
                run,
                task: task("a"),
            }],
        )
        .await
        .unwrap();
        assert_eq!(
            db.live_claims(&worker).await.unwrap(),
            HashSet::from([(run, task("b"), 1)])
        );
        db.commit(&worker, &[end(run, "a", 1, RemoteEnd::Success)])
            .await
            .unwrap();
        assert!(
            db.claimed_offers(&owner, None)
                .await
                .unwrap()
                .iter()
                .all(|c| c.task == task("b"))
        );
        // The worker dies: its claim on `b` shows as lost, and its late end is refused.
        db.stop_instance(&worker).await.unwrap();
        let seen = db.claimed_offers(&owner, None).await.unwrap();
        assert_eq!(seen[0].state, OfferState::WorkerLost);
        let err = db
            .commit(&worker, &[end(run, "b", 1, RemoteEnd::Success)])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::LeaseLost), "{err}");
    }

    async fn stale_offers_are_dropped_not_claimed(backend: super::Backend) {
        let (db, run, owner, worker) = owner_and_worker(backend).await;
        db.commit(&owner, &offer(run, "a", 1)).await.unwrap();
        // The owner started the task itself meanwhile (an adopter re-evaluating the run).
        let start = Change::StartTry {
            run,
            task: task("a"),
            try_number: 1,
            at: Utc::now(),
        };
        db.commit(&owner, &[start]).await.unwrap();
        assert!(
            db.claim_offers(&worker, "w", 4, false)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            db.claim_offers(&worker, "w", 4, false)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(db.claimed_offers(&owner, None).await.unwrap().is_empty());
        assert_eq!(state_of(&db, run, "a").await, (Some(TaskState::Running), 1));
    }

    async fn a_restarted_worker_hands_its_claims_back(backend: super::Backend) {
        let (db, run, owner, worker) = owner_and_worker(backend).await;
        db.commit(&owner, &offer(run, "a", 1)).await.unwrap();
        assert_eq!(
            db.claim_offers(&worker, "w", 4, false).await.unwrap().len(),
            1
        );
        assert_eq!(db.abandon_claims(&worker, "restarted").await.unwrap(), 1);
        let seen = db.claimed_offers(&owner, None).await.unwrap();
        assert!(
            matches!(&seen[0].state, OfferState::Ended { end: RemoteEnd::Abandoned(why), .. } if why == "restarted"),
            "{seen:?}"
        );
        // Only once, and only its own.
        assert_eq!(db.abandon_claims(&worker, "again").await.unwrap(), 0);
        assert_eq!(db.abandon_claims(&owner, "not mine").await.unwrap(), 0);
    }

    async fn wake_ups_say_whether_runs_or_only_tries_changed(backend: super::Backend) {
        let (db, run, owner, _worker) = owner_and_worker(backend).await;
        let Some(mut listener) = db.work_listener().await.unwrap() else {
            assert_eq!(
                backend,
                super::Backend::Sqlite,
                "only SQLite has no listener"
            );
            return;
        };
        let wait = Duration::from_secs(30);
        db.commit(&owner, &offer(run, "a", 1)).await.unwrap();
        let heard = tokio::time::timeout(wait, listener.next(Duration::from_secs(1))).await;
        assert_eq!(heard.unwrap(), super::super::Heard::Tries { offered: true });
        let new = crate::store::testing::manual_run("d");
        db.insert_run(&new).await.unwrap().unwrap();
        let heard = tokio::time::timeout(wait, listener.next(Duration::from_secs(1))).await;
        assert_eq!(heard.unwrap(), super::super::Heard::Work);
    }

    crate::store::testing::on_both!(
        wake_ups_say_whether_runs_or_only_tries_changed,
        a_restarted_worker_hands_its_claims_back,
        a_claimed_try_starts_once_and_its_end_reaches_the_owner,
        an_owner_claiming_its_own_offer_runs_it_as_a_local_try,
        withdrawn_and_lost_claims_are_not_reported,
        stale_offers_are_dropped_not_claimed,
    );
}
