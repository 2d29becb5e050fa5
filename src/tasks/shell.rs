//! `shell`: runs a command through `sh -c`, its stdout and stderr going to the task log.
//!
//! The command runs under a supervisor ([`super::supervise`]) in its own process group, so a
//! timeout or cancellation stops the whole tree it started (SIGTERM, then SIGKILL after a
//! grace period), and so does the death of this process. The group is reported through
//! [`TaskContext::process`] for a process that adopts the run after a crash.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::net::UnixStream;
use tokio::process::{Child, Command};
use tokio_util::task::AbortOnDropHandle;

use super::process::{TRY_MARKER_VAR, this_host, try_marker};
use super::supervise::{self, KILL_GRACE};
use super::{TaskContext, TaskError, TaskOutcome};
use crate::dag::duration::DurationValue;
use crate::ids::ProcessGroup;

/// Exit code that marks the try as skipped rather than failed (Airflow's default).
const DEFAULT_SKIP_EXIT_CODE: i32 = 99;
/// How long a stopped supervisor may take beyond its kill grace period before it is killed.
const STOP_MARGIN: Duration = Duration::from_secs(5);
/// How long the output is drained after the command ended.
const PIPE_DRAIN: Duration = Duration::from_secs(2);

/// Run a shell command.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShellTask {
    /// The command line, given to `sh -c`; `{{ }}` templates are rendered first.
    pub command: String,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory (default: the directory `orchestrator` runs in).
    pub cwd: Option<String>,
    /// Kill the command after this long (like `execution_timeout`, counted per try).
    pub timeout: Option<DurationValue>,
    /// An exit with this code marks the try skipped (default 99, as in Airflow).
    pub skip_exit_code: Option<i32>,
}

impl ShellTask {
    /// Checks the timeout at load time.
    pub fn validate(&self) -> Result<(), String> {
        if self.command.trim().is_empty() {
            return Err("shell task needs a non-empty 'command'".into());
        }
        self.timeout_duration().map(|_| ())
    }

    fn timeout_duration(&self) -> Result<Option<Duration>, String> {
        self.timeout
            .as_ref()
            .map(|t| t.parse().map_err(|e| format!("timeout: {e}")))
            .transpose()
    }

    /// Runs the command to completion, timeout or cancellation.
    pub async fn run(&self, ctx: &TaskContext) -> Result<TaskOutcome, TaskError> {
        let timeout = self.timeout_duration().map_err(TaskError::Fatal)?;
        let program = supervise::program().ok_or_else(|| {
            TaskError::Fatal("shell tasks run only under the orchestrator binary".into())
        })?;
        ctx.log.mask_secrets_of(&self.env);
        ctx.log.info(format!("$ {}", self.command));
        let marker = try_marker(&ctx.run_uid, ctx.task_id.as_str(), ctx.try_number);
        let mut job = self
            .start(program, &marker)
            .map_err(|e| TaskError::Failed(format!("cannot start the command: {e}")))?;
        let pipes = forward_output(&mut job.child, ctx);
        tokio::pin!(pipes);
        let status = tokio::select! {
            status = job.wait(ctx) => status,
            () = ctx.cancel.cancelled() => {
                job.stop().await;
                // What the command printed while it was being stopped belongs in the log.
                let _ = tokio::time::timeout(PIPE_DRAIN, &mut pipes).await;
                return Err(TaskError::Cancelled("shell command stopped".into()));
            }
            () = sleep_or_forever(timeout) => {
                job.stop().await;
                let _ = tokio::time::timeout(PIPE_DRAIN, &mut pipes).await;
                return Err(TaskError::TimedOut(timeout.unwrap_or_default()));
            }
        };
        if status.as_ref().is_ok_and(|s| s.signal().is_some()) {
            // The supervisor itself was killed: it could not stop what is left of the group.
            job.stop_leftovers();
        }
        // Drain what the command printed before it exited. A process that left the group
        // (setsid) may hold the pipes open for good: the try does not wait for it.
        if tokio::time::timeout(PIPE_DRAIN, pipes).await.is_err() {
            ctx.log.write(
                "WARN",
                "a process the command started outside its process group still holds its \
                 output; not waiting for it",
            );
        }
        let status = status.map_err(|e| TaskError::Failed(format!("waiting for command: {e}")))?;
        self.outcome(status)
    }

    fn outcome(&self, status: ExitStatus) -> Result<TaskOutcome, TaskError> {
        match (status.code(), status.signal()) {
            (Some(0), _) => Ok(TaskOutcome::Success),
            (Some(code), _) if code == self.skip_exit_code.unwrap_or(DEFAULT_SKIP_EXIT_CODE) => Ok(
                TaskOutcome::Skipped(format!("command exited with skip code {code}")),
            ),
            (Some(code), _) => Err(TaskError::Failed(format!(
                "command exited with code {code}"
            ))),
            (None, signal) => Err(TaskError::Killed(format!(
                "command was killed by signal {}",
                signal_name(signal)
            ))),
        }
    }

    /// Starts the supervisor, which starts `sh -c` (see [`super::supervise`]).
    fn start(&self, program: &Path, marker: &str) -> std::io::Result<Job> {
        // Close-on-exec on both ends: only the supervisor gets its end, as its stdin.
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        let mut cmd = Command::new(program);
        // Shown as `orchestrator __supervise ...` in `ps`, not as `/proc/self/exe`.
        cmd.arg0("orchestrator")
            .arg(supervise::ARG)
            .arg(&self.command)
            .envs(&self.env)
            .env(TRY_MARKER_VAR, marker)
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        // Not `kill_on_drop`: a SIGKILLed supervisor could not stop the command. Dropping the
        // job closes the link instead, and the supervisor stops the group and exits.
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
        }
        let child = cmd.spawn()?;
        ours.set_nonblocking(true)?;
        Ok(Job {
            child,
            link: Some(UnixStream::from_std(ours)?),
            group: None,
        })
    }
}

/// A running supervised command.
struct Job {
    /// The supervisor.
    child: Child,
    /// The owner's end of the link; closing it stops the command.
    link: Option<UnixStream>,
    /// The command's process group, once the supervisor has told it.
    group: Option<ProcessGroup>,
}

impl Job {
    /// Reports the command's process group, then waits for the command to end.
    async fn wait(&mut self, ctx: &TaskContext) -> std::io::Result<ExitStatus> {
        if let Some(link) = &mut self.link
            && let Some(group) = read_group(link).await
        {
            ctx.process.report(group.clone()).await;
            self.group = Some(group);
        }
        self.child.wait().await
    }

    /// After the supervisor exited: if its group still has members (the supervisor itself
    /// was killed, e.g. by a service manager's signal), they die now.
    fn stop_leftovers(&self) {
        if let Some(group) = &self.group {
            let pgid = Pid::from_raw(group.pgid);
            // The pgid cannot name another group while any member of this one lives.
            if killpg(pgid, None).is_ok() {
                let _ = killpg(pgid, Signal::SIGKILL);
            }
        }
    }

    /// Stops the whole group: closing the link makes the supervisor send SIGTERM, then
    /// SIGKILL after its grace period; it exits once the group is gone.
    async fn stop(&mut self) {
        self.link = None;
        let limit = KILL_GRACE + STOP_MARGIN;
        if tokio::time::timeout(limit, self.child.wait())
            .await
            .is_err()
        {
            // A stuck supervisor: kill the group and the supervisor directly.
            if let Some(group) = &self.group {
                let _ = killpg(Pid::from_raw(group.pgid), Signal::SIGKILL);
            }
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
        // A supervisor killed while stopping the group (by a service manager's signal, the
        // OOM killer) leaves the rest to its owner.
        self.stop_leftovers();
    }
}

/// Reads the supervisor's `"<pgid> <start ticks>\n"`; `None` if it could not start `sh` (it
/// then closes the link) or could not read the start time (`"<pgid> -"`).
async fn read_group(link: &mut UnixStream) -> Option<ProcessGroup> {
    let mut line = String::new();
    BufReader::new(link.take(64))
        .read_line(&mut line)
        .await
        .ok()?;
    let (pgid, start) = line.trim_end().split_once(' ')?;
    Some(ProcessGroup {
        host: this_host(),
        pgid: pgid.parse().ok()?,
        start_ticks: start.parse().ok()?,
    })
}

fn signal_name(signal: Option<i32>) -> String {
    let Some(number) = signal else {
        return "(unknown)".into();
    };
    Signal::try_from(number).map_or_else(|_| number.to_string(), |s| s.as_str().to_string())
}

async fn sleep_or_forever(timeout: Option<Duration>) {
    match timeout {
        Some(t) => tokio::time::sleep(t).await,
        None => std::future::pending().await,
    }
}

fn forward_output(child: &mut Child, ctx: &TaskContext) -> impl Future<Output = ()> + use<> {
    let out = child
        .stdout
        .take()
        .map(|s| AbortOnDropHandle::new(tokio::spawn(copy_lines(s, ctx.log.clone(), "STDOUT"))));
    let err = child
        .stderr
        .take()
        .map(|s| AbortOnDropHandle::new(tokio::spawn(copy_lines(s, ctx.log.clone(), "STDERR"))));
    // Readers stop when the returned future is dropped (the try gave up on the output).
    async move {
        for handle in [out, err].into_iter().flatten() {
            // A reader only ends at EOF or on a read error; either way the log has what came.
            let _ = handle.await;
        }
    }
}

async fn copy_lines(stream: impl AsyncRead + Unpin, log: super::TaskLog, level: &'static str) {
    let keep = log.line_keep_bytes();
    read_lines(stream, keep, |line| log.write(level, line)).await;
}

/// Calls `line` with each line of `stream` (without its `\n` or `\r\n`), holding at most
/// `keep` bytes of one line: the rest of a longer line is skipped and counted in its cut
/// note, so a command printing a huge line without newlines can't exhaust memory. Bytes
/// that are not UTF-8 are replaced rather than ending the read, so the pipe is always
/// drained and the command never blocks on a full pipe.
async fn read_lines(stream: impl AsyncRead + Unpin, keep: usize, mut line: impl FnMut(String)) {
    let mut reader = BufReader::new(stream);
    let mut kept: Vec<u8> = Vec::new();
    let mut total = 0;
    let mut emit = |kept: &mut Vec<u8>, total: &mut usize| {
        if *total == kept.len() && kept.last() == Some(&b'\r') {
            kept.pop();
            *total -= 1;
        }
        let mut text = String::from_utf8_lossy(kept).into_owned();
        if *total > kept.len() {
            text.push_str(&super::cut_note(*total));
        }
        line(text);
        kept.clear();
        *total = 0;
    };
    // A read error ends the output like EOF: the log has what came.
    while let Ok(buf) = reader.fill_buf().await {
        if buf.is_empty() {
            break;
        }
        let newline = memchr::memchr(b'\n', buf);
        let chunk = &buf[..newline.unwrap_or(buf.len())];
        let room = keep.saturating_sub(kept.len()).min(chunk.len());
        kept.extend_from_slice(&chunk[..room]);
        total += chunk.len();
        let used = newline.map_or(buf.len(), |i| i + 1);
        reader.consume(used);
        if newline.is_some() {
            emit(&mut kept, &mut total);
        }
    }
    // The last line may have no newline.
    if total > 0 {
        emit(&mut kept, &mut total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], keep: usize) -> Vec<String> {
        let mut out = Vec::new();
        read_lines(input, keep, |l| out.push(l)).await;
        out
    }

    #[tokio::test]
    async fn output_is_split_into_lines_like_a_terminal_shows_them() {
        let got = lines(b"one\ntwo\r\n\nlast without newline", 100).await;
        assert_eq!(got, ["one", "two", "", "last without newline"]);
        assert!(lines(b"", 100).await.is_empty());
    }

    #[tokio::test]
    async fn a_huge_line_keeps_its_start_and_says_how_long_it_was() {
        let mut input = vec![b'x'; 100_000];
        input.extend_from_slice(b"\nnext\n");
        let got = lines(&input, 10).await;
        assert_eq!(got, ["xxxxxxxxxx ... [line cut: 100000 bytes]", "next"]);
    }

    #[tokio::test]
    async fn bytes_that_are_not_utf8_are_replaced_and_reading_goes_on() {
        let got = lines(b"bad \xff byte\nfine\n", 100).await;
        assert_eq!(got, ["bad \u{fffd} byte", "fine"]);
    }
}
