//! A try's log: numbered lines, a bounded buffer between flushes, and the cap that drops the
//! middle of a huge log without renumbering.
//!
//! Tasks write through [`TaskLog`]; the executor drains it into the store every second while
//! the try runs and once more with its result ([`LogBatch`]). Numbering and the cap are
//! decided here, at write time, from counters this buffer keeps anyway, so the store never
//! counts or sizes a log: it appends lines and, when the cap bites, deletes one seq range
//! and upserts one marker line.
//!
//! The rule readers rely on: a try's lines are numbered 1, 2, 3… in write order and a kept
//! line's `seq` never changes. When the log passes `max_log_bytes`, the head (the first half
//! of the budget) and the most recent tail are kept, and the middle is dropped: the first
//! dropped seq becomes the marker line (level `DROP`, its message updated as more lines go)
//! and the other dropped seqs disappear. A reader asking for "lines after seq N" therefore
//! sees seqs in increasing order, each at most once; one positioned inside the dropped range
//! just continues with the next kept line.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Default cap on one try's stored log (`max_log_bytes`): 10 MiB.
pub const DEFAULT_MAX_LOG_BYTES: u64 = 10 * 1024 * 1024;
/// The smallest cap accepted: below it the head and tail would hold only a few lines.
pub const MIN_MAX_LOG_BYTES: u64 = 1024;
/// What a line costs beyond its text (its time, level and number: roughly what its stored
/// row costs). It also bounds how many lines a capped log keeps, so empty lines can't
/// make the tail's bookkeeping grow without limit.
pub const LINE_OVERHEAD: u64 = 32;
/// Bound on lines waiting for the next flush (1 MiB, or the cap if smaller): a task printing
/// faster than this per flush loses the oldest unflushed tail lines, not memory.
const PENDING_MAX_BYTES: u64 = 1024 * 1024;
/// Level of the marker line that stands for a dropped middle.
pub const DROP_LEVEL: &str = "DROP";

/// One line of a task's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// Position in its try's log: 1, 2, 3… in write order, never renumbered.
    pub seq: u64,
    /// When it was written.
    pub ts: DateTime<Utc>,
    /// `INFO`, `WARN`, `ERROR`, `STDOUT`, `STDERR`, or `DROP` for the dropped-middle marker.
    pub level: &'static str,
    /// The text.
    pub message: String,
}

/// The middle of a try's log dropped by the cap, as the store applies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogDrop {
    /// The marker, at the first dropped seq; replaces any line stored there.
    pub marker: LogLine,
    /// First kept seq after the drop: stored lines with `marker.seq < seq < until_seq` go.
    pub until_seq: u64,
}

/// What one drain of a [`TaskLog`] hands to the store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogBatch {
    /// New lines, in seq order.
    pub lines: Vec<LogLine>,
    /// The dropped middle, when it grew since the previous drain.
    pub dropped: Option<LogDrop>,
}

impl LogBatch {
    /// Whether there is nothing to store.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.dropped.is_none()
    }
}

/// Size limits of one try's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogLimits {
    /// Cap on the stored log, in accounted bytes (text plus [`LINE_OVERHEAD`] per line).
    pub max_bytes: u64,
    /// Cap on lines waiting for the next flush.
    pub pending_max_bytes: u64,
}

impl LogLimits {
    /// Limits for a cap of `max_bytes` (raised to [`MIN_MAX_LOG_BYTES`]).
    pub fn new(max_bytes: u64) -> Self {
        let max_bytes = max_bytes.max(MIN_MAX_LOG_BYTES);
        Self {
            max_bytes,
            pending_max_bytes: max_bytes.min(PENDING_MAX_BYTES),
        }
    }

    fn head_budget(&self) -> u64 {
        self.max_bytes / 2
    }

    /// Longer lines are cut, so one line always fits in the tail's budget.
    fn line_max(&self) -> usize {
        usize::try_from(self.max_bytes / 4).unwrap_or(usize::MAX)
    }
}

impl Default for LogLimits {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_LOG_BYTES)
    }
}

/// The dropped middle so far.
#[derive(Debug)]
struct Dropped {
    first_seq: u64,
    ts: DateTime<Utc>,
    lines: u64,
    bytes: u64,
}

/// The accounting behind [`TaskLog`]: lines are `1..=head_end` (head, complete once the tail
/// starts), then the dropped range, then `tail_start..next_seq` (tail, its oldest lines
/// dropped first). Unflushed lines are a suffix of the head and/or of the tail.
#[derive(Debug)]
struct LogBuffer {
    limits: LogLimits,
    next_seq: u64,
    head_open: bool,
    head_bytes: u64,
    pending_head: Vec<LogLine>,
    tail_start: u64,
    /// Accounted size of every kept tail line, flushed or not, oldest first.
    tail_sizes: VecDeque<u64>,
    tail_bytes: u64,
    pending_tail: VecDeque<LogLine>,
    pending_bytes: u64,
    dropped: Option<Dropped>,
    /// Dropped line count at the last drain, to report the drop only when it grew.
    reported_drops: u64,
    /// Secret values the task was given (a shell task's secret-named variables).
    secrets: crate::redact::Secrets,
}

impl LogBuffer {
    fn new(limits: LogLimits) -> Self {
        Self {
            limits,
            next_seq: 1,
            head_open: true,
            head_bytes: 0,
            pending_head: Vec::new(),
            tail_start: 1,
            tail_sizes: VecDeque::new(),
            tail_bytes: 0,
            pending_tail: VecDeque::new(),
            pending_bytes: 0,
            dropped: None,
            reported_drops: 0,
            secrets: crate::redact::Secrets::default(),
        }
    }

    fn write(&mut self, ts: DateTime<Utc>, level: &'static str, message: String) {
        let message = cut(message, self.limits.line_max());
        let cost = message.len() as u64 + LINE_OVERHEAD;
        let line = LogLine {
            seq: self.next_seq,
            ts,
            level,
            message,
        };
        self.next_seq += 1;
        self.pending_bytes += cost;
        // The head takes lines until its budget is spent (or the unflushed buffer is full,
        // as the head can't drop lines), then closes for good: it must stay 1..=head_end.
        if self.head_open
            && self.head_bytes + cost <= self.limits.head_budget()
            && self.pending_bytes <= self.limits.pending_max_bytes
        {
            self.head_bytes += cost;
            self.pending_head.push(line);
            return;
        }
        if self.head_open {
            self.head_open = false;
            self.tail_start = line.seq;
        }
        self.tail_sizes.push_back(cost);
        self.tail_bytes += cost;
        self.pending_tail.push_back(line);
        let tail_budget = self.limits.max_bytes - self.head_bytes;
        while self.tail_bytes > tail_budget || self.pending_bytes > self.limits.pending_max_bytes {
            if !self.drop_oldest_tail_line(ts) {
                break;
            }
        }
    }

    /// Moves the oldest tail line into the dropped middle; false if the tail is empty.
    fn drop_oldest_tail_line(&mut self, now: DateTime<Utc>) -> bool {
        let Some(cost) = self.tail_sizes.pop_front() else {
            return false;
        };
        let seq = self.tail_start;
        self.tail_start += 1;
        self.tail_bytes -= cost;
        if self.pending_tail.front().is_some_and(|l| l.seq == seq) {
            self.pending_tail.pop_front();
            self.pending_bytes -= cost;
        }
        let dropped = self.dropped.get_or_insert(Dropped {
            first_seq: seq,
            ts: now,
            lines: 0,
            bytes: 0,
        });
        dropped.lines += 1;
        dropped.bytes += cost - LINE_OVERHEAD;
        true
    }

    fn drain(&mut self) -> LogBatch {
        let mut lines = std::mem::take(&mut self.pending_head);
        lines.extend(self.pending_tail.drain(..));
        self.pending_bytes = 0;
        let dropped = match &self.dropped {
            Some(d) if d.lines > self.reported_drops => {
                self.reported_drops = d.lines;
                Some(LogDrop {
                    marker: LogLine {
                        seq: d.first_seq,
                        ts: d.ts,
                        level: DROP_LEVEL,
                        message: marker_text(d, self.limits.max_bytes),
                    },
                    until_seq: self.tail_start,
                })
            }
            _ => None,
        };
        LogBatch { lines, dropped }
    }
}

fn marker_text(d: &Dropped, max_bytes: u64) -> String {
    format!(
        "... {} line(s), {} byte(s) dropped here (seq {} to {}): this try's log is capped at \
         {max_bytes} bytes (max_log_bytes), keeping its head and its latest lines ...",
        d.lines,
        d.bytes,
        d.first_seq,
        d.first_seq + d.lines - 1
    )
}

/// Room kept at the end of a cut line for its note.
const CUT_NOTE_ROOM: usize = 64;

/// Cuts `message` to at most `max` bytes (on a character boundary), saying how much went.
fn cut(mut message: String, max: usize) -> String {
    if message.len() <= max {
        return message;
    }
    let total = message.len();
    let mut end = max.saturating_sub(CUT_NOTE_ROOM);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message.truncate(end);
    message.push_str(&cut_note(total));
    message
}

/// The note ending a line cut from `total` bytes.
pub fn cut_note(total: usize) -> String {
    format!(" ... [line cut: {total} bytes]")
}

/// A try's log buffer; the executor drains it into the store while the task runs.
#[derive(Clone, Debug)]
pub struct TaskLog(Arc<Mutex<LogBuffer>>);

impl Default for TaskLog {
    fn default() -> Self {
        Self::new(LogLimits::default())
    }
}

impl TaskLog {
    /// An empty log for one try with these limits.
    pub fn new(limits: LogLimits) -> Self {
        Self(Arc::new(Mutex::new(LogBuffer::new(limits))))
    }

    /// Appends a line at `level`, numbering it.
    pub fn write(&self, level: &'static str, message: impl Into<String>) {
        let message = message.into();
        // Every line — the task's own messages and the command output it captures — passes
        // here, so secrets are masked before anything is stored or shown.
        let mut buffer = self.buffer();
        let message = match crate::redact::text(&message) {
            Cow::Borrowed(_) => message,
            Cow::Owned(masked) => masked,
        };
        let message = match buffer.secrets.mask(&message) {
            Cow::Borrowed(_) => message,
            Cow::Owned(masked) => masked,
        };
        tracing::debug!(target: "task_log", level, message = %message);
        buffer.write(Utc::now(), level, message);
    }

    /// Masks, from now on, the values of the secret-named variables among `vars` (a shell
    /// task's `env`) in every line of this log.
    pub fn mask_secrets_of<'a>(&self, vars: impl IntoIterator<Item = (&'a String, &'a String)>) {
        let vars = vars.into_iter().map(|(k, v)| (k.clone(), v.clone()));
        self.buffer().secrets = crate::redact::Secrets::named(vars);
    }

    /// Appends an INFO line.
    pub fn info(&self, message: impl Into<String>) {
        self.write("INFO", message);
    }

    /// How much of a long line's text is kept before its [`cut_note`]: a reader of a
    /// command's output need never hold more of one line than this.
    pub fn line_keep_bytes(&self) -> usize {
        self.buffer()
            .limits
            .line_max()
            .saturating_sub(CUT_NOTE_ROOM)
    }

    /// Takes every line written since the last drain, and the dropped middle if it grew.
    pub fn drain(&self) -> LogBatch {
        self.buffer().drain()
    }

    fn buffer(&self) -> std::sync::MutexGuard<'_, LogBuffer> {
        // A poisoned lock only means another writer panicked mid-write; the counters are
        // updated before and after pushes that cannot panic, so the data is usable.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests;
