//! Process groups of shell tries: how one is identified (`/proc/<pid>/stat`) and how a group
//! left behind by a dead owner is killed before its try is retried.
//!
//! The scheduler calls [`kill_stale_group`] when it adopts a run whose try was running; the
//! shell task's supervisor ([`super::supervise`]) reports the group through [`group_led_by`].
//! A group is only ever signalled when its leader still runs on this host with the recorded
//! start time, or when its leader is gone and a remaining member carries the try's marker
//! in its environment ([`TRY_MARKER_VAR`]), so a pid reused by an unrelated process is
//! never touched.

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::ids::ProcessGroup;

/// How long [`kill_stale_group`] waits for a SIGKILLed group's leader to go.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How often it looks.
const POLL: Duration = Duration::from_millis(20);

/// The fields of `/proc/<pid>/stat` this module needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    /// One-letter state (`R`, `S`, `Z` for a zombie...).
    pub state: char,
    /// Process group id (field 5).
    pub pgrp: i32,
    /// Start time in clock ticks after boot (field 22).
    pub start_ticks: u64,
}

/// Parses a `/proc/<pid>/stat` line. The command name (field 2) is in parentheses and may
/// itself hold spaces and parentheses, so fields are counted from the *last* `)`.
pub fn parse_stat(line: &str) -> Option<ProcStat> {
    let (_, rest) = line.rsplit_once(')')?;
    // `rest` starts at field 3 (state): field n is at index n - 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let mut state = fields.first()?.chars();
    let stat = ProcStat {
        state: state.next()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    };
    state.next().is_none().then_some(stat)
}

/// Reads a process's stat; `None` when it does not exist (or /proc is not there).
pub fn read_stat(pid: i32) -> Option<ProcStat> {
    let line = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&line)
}

/// This machine's host name (empty if it cannot be read, which then matches no record).
pub fn this_host() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The group `pid` leads, identified for a later [`kill_stale_group`]; `None` when `pid` is
/// not a group leader or its start time cannot be read.
pub fn group_led_by(pid: i32) -> Option<ProcessGroup> {
    let stat = read_stat(pid).filter(|s| s.pgrp == pid)?;
    Some(ProcessGroup {
        host: this_host(),
        pgid: pid,
        start_ticks: stat.start_ticks,
    })
}

/// What [`kill_stale_group`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StaleGroup {
    /// Recorded on another host: nothing can be done from here.
    OtherHost,
    /// Its leader is gone, or the pid now belongs to another process (never signalled).
    Gone,
    /// It was still there and has been SIGKILLed; its leader is gone.
    Killed,
    /// SIGKILLed, but its leader was still there when the wait ended.
    Lingering,
}

/// Whether the recorded group's leader is still the process that was recorded.
fn is_recorded_leader(group: &ProcessGroup) -> bool {
    read_stat(group.pgid).is_some_and(|s| {
        s.start_ticks == group.start_ticks && s.pgrp == group.pgid && s.state != 'Z'
    })
}

/// Environment variable every process of a shell try inherits: which try it belongs to
/// (`<run uid>:<task>:<try>`), so its leftovers can be told apart from strangers.
pub const TRY_MARKER_VAR: &str = "ORCHESTRATOR_TRY";

/// The value of [`TRY_MARKER_VAR`] for one try.
pub fn try_marker(run_uid: &str, task: &str, try_number: u32) -> String {
    format!("{run_uid}:{task}:{try_number}")
}

/// Whether any live process other than the leader in group `pgid` carries `marker` in its
/// environment (it was started by that try).
fn marked_members(pgid: i32, marker: &str) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    let wanted = format!("{TRY_MARKER_VAR}={marker}");
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != pgid)
        .filter(|&pid| read_stat(pid).is_some_and(|s| s.pgrp == pgid && s.state != 'Z'))
        .any(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == wanted.as_bytes()))
        })
}

/// Kills a group a dead owner left running, if it still exists on this host: SIGKILL to the
/// whole group, then a bounded wait until its leader is gone.
pub async fn kill_stale_group(group: &ProcessGroup, marker: &str) -> StaleGroup {
    if group.host != this_host() {
        return StaleGroup::OtherHost;
    }
    // An empty group (the usual case) needs no look at /proc.
    if group.pgid <= 1 || killpg(Pid::from_raw(group.pgid), None) == Err(Errno::ESRCH) {
        return StaleGroup::Gone;
    }
    // A zombie leader still holds the pgid, so its live members can be signalled safely;
    // `is_recorded_leader` rejects it only as a sign that the leader has finished.
    let leader = read_stat(group.pgid);
    let holds_pgid =
        leader.is_some_and(|s| s.start_ticks == group.start_ticks && s.pgrp == group.pgid);
    // The leader exited but members may live on (`sh -c 'sleep 100 &'`). Linux does not
    // hand out a pid still in use as a process group id, so a member that carries this
    // try's marker proves the whole group is the try's (a reused pgid would hold strangers).
    let orphaned_members = leader.is_none() && marked_members(group.pgid, marker);
    if !holds_pgid && !orphaned_members {
        return StaleGroup::Gone;
    }
    match killpg(Pid::from_raw(group.pgid), Signal::SIGKILL) {
        Err(Errno::ESRCH) => return StaleGroup::Gone,
        Err(e) => {
            tracing::warn!(pgid = group.pgid, error = %e, "cannot kill a stale process group")
        }
        Ok(()) => {}
    }
    let deadline = tokio::time::Instant::now() + KILL_WAIT;
    while is_recorded_leader(group)
        || (orphaned_members && killpg(Pid::from_raw(group.pgid), None).is_ok())
    {
        if tokio::time::Instant::now() >= deadline {
            return StaleGroup::Lingering;
        }
        tokio::time::sleep(POLL).await;
    }
    StaleGroup::Killed
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    use super::*;

    #[test]
    fn the_start_time_is_field_22_even_when_the_name_holds_spaces_and_parens() {
        let line = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    987654 1000 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 3 0 0\n";
        assert_eq!(
            parse_stat(line),
            Some(ProcStat {
                state: 'S',
                pgrp: 4242,
                start_ticks: 987_654
            })
        );
    }

    #[test]
    fn a_truncated_or_garbled_stat_line_is_not_read() {
        assert_eq!(parse_stat("12 (sh) S 1 12 12"), None);
        assert_eq!(
            parse_stat("12 sh S 1 12 12 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 5"),
            None
        );
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn this_process_has_a_readable_start_time() {
        let pid = i32::try_from(std::process::id()).unwrap();
        assert!(read_stat(pid).unwrap().start_ticks > 0);
    }

    fn sleeper() -> std::process::Child {
        Command::new("sleep")
            .arg("100")
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap()
    }

    #[tokio::test]
    async fn a_live_group_whose_start_time_does_not_match_is_not_killed() {
        let mut child = sleeper();
        let mut group = group_led_by(i32::try_from(child.id()).unwrap()).unwrap();
        group.start_ticks += 1;
        assert_eq!(kill_stale_group(&group, "r:t:1").await, StaleGroup::Gone);
        assert!(
            child.try_wait().unwrap().is_none(),
            "the process was signalled"
        );
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[tokio::test]
    async fn a_group_recorded_on_another_host_is_not_killed() {
        let mut child = sleeper();
        let mut group = group_led_by(i32::try_from(child.id()).unwrap()).unwrap();
        group.host.push_str(".elsewhere");
        assert_eq!(
            kill_stale_group(&group, "r:t:1").await,
            StaleGroup::OtherHost
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the process was signalled"
        );
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[tokio::test]
    async fn leftovers_whose_leader_is_gone_are_killed_only_with_the_try_marker() {
        use std::io::BufRead;
        let mut sh = Command::new("sh")
            .args(["-c", "sleep 100 & echo $!; sleep 0.2"])
            .env(TRY_MARKER_VAR, "r:t:1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let group = group_led_by(i32::try_from(sh.id()).unwrap()).unwrap();
        let mut line = String::new();
        std::io::BufReader::new(sh.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let leftover: i32 = line.trim().parse().unwrap();
        sh.wait().unwrap();
        let alive = || read_stat(leftover).is_some_and(|s| s.state != 'Z');
        assert!(alive());
        // Another try's marker proves nothing: a reused pgid could hold strangers.
        assert_eq!(kill_stale_group(&group, "r:t:2").await, StaleGroup::Gone);
        assert!(alive(), "a process without the try's marker was signalled");
        assert_eq!(kill_stale_group(&group, "r:t:1").await, StaleGroup::Killed);
        assert!(!alive());
    }

    #[tokio::test]
    async fn a_group_that_still_matches_its_record_is_killed() {
        use std::os::unix::process::ExitStatusExt;
        let mut child = sleeper();
        let group = group_led_by(i32::try_from(child.id()).unwrap()).unwrap();
        // The leader is this test's child, so it stays a zombie until reaped: "gone" for
        // `kill_stale_group`, which counts a zombie leader as finished.
        assert_eq!(kill_stale_group(&group, "r:t:1").await, StaleGroup::Killed);
        assert_eq!(child.wait().unwrap().signal(), Some(9));
    }
}
