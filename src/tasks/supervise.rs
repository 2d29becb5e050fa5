//! The supervisor of a shell try: a small process between `orchestrator` and `sh -c CMD`
//! that makes the command's whole process group die with its owner.
//!
//! A parent-death signal is not enough: it fires when the spawning *thread* exits, and it
//! reaches only `sh`, not what `sh` started. So the shell task runs this same binary as
//! `orchestrator __supervise CMD` ([`ARG`]), with one end of a socket pair as its stdin; only
//! the owner holds the other end (close-on-exec, so no other child inherits it). The
//! supervisor starts `sh -c CMD` in a new process group, reports that group on the socket
//! (`"<pgid> <start ticks>\n"`) and waits for whichever comes first:
//! - `sh` exits: what it left running in its group is stopped (SIGTERM, then SIGKILL after
//!   [`KILL_GRACE`]) and the supervisor exits the same way (same code, or the same signal);
//! - EOF on the socket: the owner died or wants the command stopped (timeout, cancellation,
//!   or the try abandoned). It sends SIGTERM to the group, waits up to [`KILL_GRACE`] for
//!   the group to be empty, SIGKILLs what is left and exits.
//!
//! `main` calls [`requested`] first thing (then [`run`]), and [`enable`] otherwise: only a program that does
//! so can supervise. A library test binary does not, so a shell task there fails clearly
//! instead of running the test harness as its supervisor.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg, raise};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

use super::process::group_led_by;

/// The hidden first argument that makes `orchestrator` a supervisor.
pub const ARG: &str = "__supervise";
/// How long a group has between SIGTERM and SIGKILL when its owner goes.
pub const KILL_GRACE: Duration = Duration::from_secs(3);
/// How long the supervisor waits for a SIGKILLed group to be reaped before it exits anyway.
const KILL_WAIT: Duration = Duration::from_secs(2);
/// How often it looks whether the group is empty.
const POLL: Duration = Duration::from_millis(20);

static PROGRAM: OnceLock<PathBuf> = OnceLock::new();

/// Errors that stop the supervisor before the command runs.
#[derive(Debug, thiserror::Error)]
enum SuperviseError {
    /// Stdin is not usable as the link to the owner.
    #[error("cannot use stdin as the owner link: {0}")]
    Link(std::io::Error),
    /// `sh` could not be started.
    #[error("cannot start `sh -c` for the command: {0}")]
    Spawn(std::io::Error),
}

/// The command line of a supervisor this process was started as, if it was.
pub fn requested() -> Option<OsString> {
    let mut args = std::env::args_os().skip(1);
    (args.next()? == ARG).then(|| args.next()).flatten()
}

/// Records that this program answers [`ARG`], so shell tasks may start it as their supervisor.
pub fn enable() {
    // /proc/self/exe, resolved by the new process, is this very binary even after the file
    // on disk was replaced or deleted (an upgrade while `serve` runs).
    let program = if cfg!(target_os = "linux") {
        Ok(PathBuf::from("/proc/self/exe"))
    } else {
        std::env::current_exe()
    };
    if let Ok(program) = program {
        let _ = PROGRAM.set(program);
    }
}

/// The program to start as a supervisor, when [`enable`] was called.
pub fn program() -> Option<&'static PathBuf> {
    PROGRAM.get()
}

/// Runs the supervisor for `command` and returns how `sh` ended (re-raising its signal).
pub fn run(command: &OsStr) -> ExitCode {
    match supervise(command) {
        Ok(end) => exit_like(end),
        Err(e) => {
            eprintln!("orchestrator: {e}");
            ExitCode::from(127)
        }
    }
}

/// How `sh` ended.
#[derive(Clone, Copy, Debug)]
enum End {
    Code(i32),
    Signal(Signal),
}

enum Event {
    Ended(End),
    OwnerGone,
}

fn supervise(command: &OsStr) -> Result<End, SuperviseError> {
    // Members of the group that lose their parent are reparented here and reaped by
    // `reap`, so "the group is empty" is seen without waiting on init.
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_child_subreaper(true);
    let link = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map(UnixStream::from)
        .map_err(SuperviseError::Link)?;
    let child = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(SuperviseError::Spawn)?;
    // A pid always fits in pid_t.
    let pid = Pid::from_raw(child.id() as i32);
    // Reaped by `reap` through waitpid, not through `child` (dropping it neither waits nor kills).
    drop(child);
    report(&link, pid);
    let (tx, rx) = mpsc::channel();
    let owner_tx = tx.clone();
    std::thread::spawn(move || watch_owner(link, &owner_tx));
    std::thread::spawn(move || reap(pid, &tx));
    match rx.recv() {
        Ok(Event::Ended(end)) => {
            // What the command left running in its group ends with the try, so a later try
            // never runs beside it (a process that must outlive the task leaves the group).
            if killpg(pid, None).is_ok() {
                stop_group(pid);
            }
            Ok(end)
        }
        Ok(Event::OwnerGone) | Err(_) => {
            stop_group(pid);
            let ended = rx.try_iter().find_map(|e| match e {
                Event::Ended(end) => Some(end),
                Event::OwnerGone => None,
            });
            Ok(ended.unwrap_or(End::Signal(Signal::SIGKILL)))
        }
    }
}

/// Tells the owner which group to kill should this supervisor die too.
fn report(mut link: &UnixStream, pgid: Pid) {
    let line = match group_led_by(pgid.as_raw()) {
        Some(g) => format!("{} {}\n", g.pgid, g.start_ticks),
        None => format!("{pgid} -\n"),
    };
    // The owner may be gone already; the EOF on the link then says so.
    let _ = link.write_all(line.as_bytes());
}

/// Reads the link until EOF: the owner closed it or died.
fn watch_owner(mut link: UnixStream, tx: &mpsc::Sender<Event>) {
    let mut buf = [0u8; 64];
    loop {
        match link.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = tx.send(Event::OwnerGone);
}

/// Reaps every child (`sh`, and orphans of its group), reporting how `sh` ended.
fn reap(sh: Pid, tx: &mpsc::Sender<Event>) {
    loop {
        let end = match waitpid(None, None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == sh => End::Code(code),
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == sh => End::Signal(signal),
            Ok(_) | Err(Errno::EINTR) => continue,
            // ECHILD: no child is left, and none can be reparented here any more.
            Err(_) => return,
        };
        let _ = tx.send(Event::Ended(end));
    }
}

/// SIGTERM to the group, then SIGKILL once the grace period is over.
fn stop_group(pgid: Pid) {
    let _ = killpg(pgid, Signal::SIGTERM);
    if !wait_until_empty(pgid, KILL_GRACE) {
        let _ = killpg(pgid, Signal::SIGKILL);
        wait_until_empty(pgid, KILL_WAIT);
    }
}

/// Whether the group became empty (no member, not even an unreaped zombie) within `limit`.
fn wait_until_empty(pgid: Pid, limit: Duration) -> bool {
    let start = Instant::now();
    loop {
        if killpg(pgid, None) == Err(Errno::ESRCH) {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// Exits as `sh` did, so the owner sees the same exit code or the same killing signal.
fn exit_like(end: End) -> ExitCode {
    match end {
        End::Code(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        End::Signal(signal) => {
            // Dispositions here are those `sh` inherited, under which it died of this signal,
            // except SIGPIPE, which the Rust runtime ignores (kept: a default SIGPIPE would
            // kill the supervisor on a write to a vanished owner). When the signal does not
            // end this process, the shell's convention for "killed by a signal" is next best.
            let _ = raise(signal);
            ExitCode::from(128 + u8::try_from(signal as i32).unwrap_or(0))
        }
    }
}
