//! Log lines of tries: appended in bulk by the scheduler's commit, capped by deleting one seq
//! range and upserting one marker per drop (see `tasks::log` for the numbering rule), and
//! read whole, followed by seq, or from the end (a tail).

use sqlx::{Any, Row, Transaction};

use super::rows::Change;
use super::sql::storable;
use super::{Store, StoreResult, to_text};
use crate::ids::{RunKey, TaskId};
use crate::tasks::{DROP_LEVEL, LogDrop, LogLine};

impl Store {
    /// The stored log of one try in seq order; a dropped middle shows as its marker line.
    pub async fn logs(
        &self,
        run: RunKey,
        task: &TaskId,
        try_number: u32,
    ) -> StoreResult<Vec<LogLine>> {
        self.logs_after(run, task, try_number, 0, u32::MAX).await
    }

    /// Up to `limit` lines of one try with a seq above `after_seq`, in seq order. A follower
    /// passes the last seq it got (0 at first): it never gets a line twice, and one whose
    /// position fell into a dropped middle continues with the next kept line.
    pub async fn logs_after(
        &self,
        run: RunKey,
        task: &TaskId,
        try_number: u32,
        after_seq: u64,
        limit: u32,
    ) -> StoreResult<Vec<LogLine>> {
        let rows = sqlx::query(
            "SELECT seq, ts, level, message FROM task_log \
             WHERE run = $1 AND task_id = $2 AND try_number = $3 AND seq > $4 ORDER BY seq LIMIT $5",
        )
        .bind(run.0)
        .bind(task.as_str())
        .bind(i64::from(try_number))
        .bind(sql_seq(after_seq))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(log_line).collect()
    }

    /// The last `limit` lines of one try with a seq below `before_seq`, in seq order: the
    /// tail of a log (`before_seq = u64::MAX`), read backwards on the seq index so a
    /// multi-megabyte log costs no more than its tail.
    pub async fn logs_before(
        &self,
        run: RunKey,
        task: &TaskId,
        try_number: u32,
        before_seq: u64,
        limit: u32,
    ) -> StoreResult<Vec<LogLine>> {
        let rows = sqlx::query(
            "SELECT seq, ts, level, message FROM task_log \
             WHERE run = $1 AND task_id = $2 AND try_number = $3 AND seq < $4 \
             ORDER BY seq DESC LIMIT $5",
        )
        .bind(run.0)
        .bind(task.as_str())
        .bind(i64::from(try_number))
        .bind(sql_seq(before_seq))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().rev().map(log_line).collect()
    }
}

fn log_line(r: &sqlx::any::AnyRow) -> StoreResult<LogLine> {
    let level: String = r.try_get("level")?;
    Ok(LogLine {
        seq: super::rows::uint(r, "seq")?,
        ts: super::from_text(&r.try_get::<String, _>("ts")?)?,
        level: level_name(&level),
        message: r.try_get("message")?,
    })
}

/// Seqs are `u64` in Rust and INTEGER (i64) in SQLite; they never come near the limit.
fn sql_seq(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

fn level_name(level: &str) -> &'static str {
    ["INFO", "WARN", "ERROR", "STDOUT", "STDERR", DROP_LEVEL]
        .into_iter()
        .find(|l| *l == level)
        .unwrap_or("INFO")
}

/// Stores the log lines and drops of a commit batch. Every line is inserted first, then the
/// drops are applied in order: a later flush may drop lines an earlier flush of the same
/// batch brought, and the drop ranges of one try only grow, so the last marker wins.
pub(super) async fn store_logs(
    tx: &mut Transaction<'static, Any>,
    changes: &[Change],
) -> StoreResult<()> {
    let mut lines = Vec::new();
    let mut drops = Vec::new();
    for change in changes {
        if let Change::Logs {
            run,
            task,
            try_number,
            lines: new,
            dropped,
        } = change
        {
            lines.extend(new.iter().map(|l| (*run, task, *try_number, l)));
            drops.extend(dropped.as_ref().map(|d| (*run, task, *try_number, d)));
        }
    }
    // Multi-row inserts: a fan-out of a thousand tasks commits in a few statements.
    for chunk in lines.chunks(150) {
        insert_lines(tx, chunk).await?;
    }
    for (run, task, try_number, drop) in drops {
        apply_drop(tx, run, task, try_number, drop).await?;
    }
    Ok(())
}

async fn insert_lines(
    tx: &mut Transaction<'static, Any>,
    lines: &[(RunKey, &TaskId, u32, &LogLine)],
) -> StoreResult<()> {
    use super::sql::row;
    // A seq is written once per try; should one ever come twice, the first stays rather
    // than a log line failing the state changes committed with it.
    let q = super::sql::insert_values(
        "INSERT INTO task_log (run, task_id, try_number, seq, ts, level, message)",
        lines,
        " ON CONFLICT (run, task_id, try_number, seq) DO NOTHING",
        |q, (run, task, try_number, line)| {
            row(q, true, run.0)?;
            row(q, false, task.as_str().to_owned())?;
            row(q, false, i64::from(*try_number))?;
            row(q, false, sql_seq(line.seq))?;
            row(q, false, to_text(line.ts))?;
            row(q, false, line.level.to_owned())?;
            row(q, false, storable(&line.message).into_owned())
        },
    )?;
    let (sql, args) = q.finish();
    sqlx::query_with(sql, args).execute(&mut **tx).await?;
    Ok(())
}

/// Deletes the dropped range of one try (an indexed range delete) and puts its marker at
/// the range's first seq, replacing the line stored there or an older marker.
async fn apply_drop(
    tx: &mut Transaction<'static, Any>,
    run: RunKey,
    task: &TaskId,
    try_number: u32,
    drop: &LogDrop,
) -> StoreResult<()> {
    sqlx::query(
        "DELETE FROM task_log WHERE run = $1 AND task_id = $2 AND try_number = $3 \
         AND seq > $4 AND seq < $5",
    )
    .bind(run.0)
    .bind(task.as_str())
    .bind(i64::from(try_number))
    .bind(sql_seq(drop.marker.seq))
    .bind(sql_seq(drop.until_seq))
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO task_log (run, task_id, try_number, seq, ts, level, message) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (run, task_id, try_number, seq) \
         DO UPDATE SET ts = excluded.ts, level = excluded.level, message = excluded.message",
    )
    .bind(run.0)
    .bind(task.as_str())
    .bind(i64::from(try_number))
    .bind(sql_seq(drop.marker.seq))
    .bind(to_text(drop.marker.ts))
    .bind(drop.marker.level)
    .bind(storable(&drop.marker.message).into_owned())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests;
