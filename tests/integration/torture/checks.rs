//! The torture test's invariants on the shell ledger, checked once every `serve` has
//! exited: each returns the violations it found (empty when the invariant holds), each
//! naming its run.

use std::collections::BTreeMap;

use rusqlite::Connection;

use super::workload::{LEDGER, SHELL_TASKS};
use crate::support::Env;

/// One broken invariant, with the run(s) it concerns (to pick their `serve` log lines).
#[derive(Debug)]
pub struct Violation {
    /// Run ids, separated by spaces.
    pub run_id: String,
    pub what: String,
}

pub fn violation(run_id: &str, what: String) -> Violation {
    Violation {
        run_id: run_id.to_string(),
        what,
    }
}

/// A try of a task: (DAG, run id, task, try number).
pub type TryKey = (String, String, String, u32);

/// One line of the shell ledger: `start|tick|end DAG RUN TASK TRY EPOCH_NANOS`.
#[derive(Debug)]
pub struct Line {
    pub kind: String,
    pub key: TryKey,
    pub nanos: u128,
    /// Position in the file: the order in which the lines were written.
    pub pos: usize,
}

pub fn read_ledger(env: &Env) -> Vec<Line> {
    let text = std::fs::read_to_string(env.path(LEDGER)).unwrap_or_default();
    text.lines()
        .enumerate()
        .map(|(pos, l)| {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!(f.len(), 6, "malformed ledger line {pos}: {l:?}");
            Line {
                kind: f[0].to_string(),
                key: (f[1].into(), f[2].into(), f[3].into(), f[4].parse().unwrap()),
                nanos: f[5].parse().unwrap(),
                pos,
            }
        })
        .collect()
}

/// What the state store says about one try.
#[derive(Debug)]
pub struct StoreTry {
    pub state: String,
    pub interrupted: bool,
}

pub fn state_db(env: &Env) -> Connection {
    Connection::open(env.path("orchestrator.db")).unwrap()
}

/// Every try the state store recorded.
pub fn store_tries(env: &Env) -> BTreeMap<TryKey, StoreTry> {
    let db = state_db(env);
    let mut stmt = db
        .prepare(
            "SELECT r.dag_id, r.run_id, t.task_id, t.try_number, t.state, t.interrupted \
             FROM task_try t JOIN dag_run r ON r.id = t.run",
        )
        .unwrap();
    stmt.query_map([], |r| {
        Ok((
            (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?),
            StoreTry {
                state: r.get(4)?,
                interrupted: r.get::<_, i64>(5)? != 0,
            },
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn describe(k: &TryKey) -> String {
    format!("{} run {} task {} try {}", k.0, k.1, k.2, k.3)
}

/// Each try started at most once, wrote nothing before its start or after its end, matches
/// a try of the store, and every try the store says succeeded wrote its start and end.
pub fn shell_tries(lines: &[Line], store: &BTreeMap<TryKey, StoreTry>) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut by_try: BTreeMap<&TryKey, Vec<&Line>> = BTreeMap::new();
    for l in lines {
        by_try.entry(&l.key).or_default().push(l);
    }
    for (k, ls) in &by_try {
        let count = |kind: &str| ls.iter().filter(|l| l.kind == kind).count();
        let (starts, ends) = (count("start"), count("end"));
        if starts != 1 || ends > 1 {
            let what = format!(
                "{} wrote {starts} start and {ends} end line(s)",
                describe(k)
            );
            out.push(violation(&k.1, what));
        } else if ls[0].kind != "start" || (ends == 1 && ls[ls.len() - 1].kind != "end") {
            let what = format!(
                "{} wrote lines before its start or after its end",
                describe(k)
            );
            out.push(violation(&k.1, what));
        }
        if !store.contains_key(*k) {
            let what = format!("{} ran, but the store has no such try", describe(k));
            out.push(violation(&k.1, what));
        }
    }
    for (k, t) in store {
        let shell = SHELL_TASKS.contains(&(k.0.as_str(), k.2.as_str()));
        let done = by_try.get(k).is_some_and(|ls| {
            ls.iter().any(|l| l.kind == "start") && ls.iter().any(|l| l.kind == "end")
        });
        if shell && t.state == "success" && !done {
            let what = format!(
                "{} is a success in the store without its start and end lines",
                describe(k)
            );
            out.push(violation(&k.1, what));
        }
    }
    out
}

/// No two tries of one task ran at once: every line of an earlier try was written before
/// a later try's `start`. (A try cut by `kill -9` never writes its `end`; if its process
/// outlived the cut, its next `tick` shows it.)
pub fn no_overlap(lines: &[Line]) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut by_task: BTreeMap<(&str, &str, &str), Vec<&Line>> = BTreeMap::new();
    for l in lines {
        by_task
            .entry((&l.key.0, &l.key.1, &l.key.2))
            .or_default()
            .push(l);
    }
    for ((dag, run, task), ls) in by_task {
        for start in ls.iter().filter(|l| l.kind == "start") {
            let late = ls
                .iter()
                .filter(|l| l.key.3 < start.key.3 && l.pos > start.pos)
                .max_by_key(|l| l.pos);
            if let Some(late) = late {
                let ms = (late.nanos as f64 - start.nanos as f64) / 1e6;
                let what = format!(
                    "{dag} run {run} task {task}: try {} wrote `{}` {ms:.0} ms after try {} started \
                     (ledger lines {} and {})",
                    late.key.3,
                    late.kind,
                    start.key.3,
                    late.pos + 1,
                    start.pos + 1
                );
                out.push(violation(run, what));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<Line> {
        text.lines()
            .enumerate()
            .map(|(pos, l)| {
                let f: Vec<&str> = l.split(' ').collect();
                Line {
                    kind: f[0].into(),
                    key: (
                        "chain".into(),
                        "r".into(),
                        f[1].into(),
                        f[2].parse().unwrap(),
                    ),
                    nanos: f[3].parse().unwrap(),
                    pos,
                }
            })
            .collect()
    }

    fn store(tries: &[(&str, u32, &str)]) -> BTreeMap<TryKey, StoreTry> {
        tries
            .iter()
            .map(|(task, n, state)| {
                let key = ("chain".into(), "r".into(), (*task).to_string(), *n);
                let interrupted = false;
                (
                    key,
                    StoreTry {
                        state: (*state).into(),
                        interrupted,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn a_killed_try_followed_by_its_retry_passes() {
        let l = lines("start a 1 10\ntick a 1 20\nstart a 2 50\ntick a 2 60\nend a 2 70");
        assert!(no_overlap(&l).is_empty());
        let s = store(&[("a", 1, "failed"), ("a", 2, "success")]);
        assert!(shell_tries(&l, &s).is_empty());
    }

    #[test]
    fn a_try_writing_after_its_retry_started_is_an_overlap() {
        let l = lines("start a 1 10\nstart a 2 50\ntick a 1 60\nend a 2 70");
        let v = no_overlap(&l);
        assert_eq!(v.len(), 1);
        assert_eq!(
            v[0].what,
            "chain run r task a: try 1 wrote `tick` 0 ms after try 2 started (ledger lines 3 and 2)"
        );
    }

    #[test]
    fn a_try_started_twice_or_unknown_to_the_store_or_a_success_without_end_is_reported() {
        let l = lines("start a 1 10\nstart a 1 20\nstart a 2 30");
        let s = store(&[("a", 1, "failed"), ("b", 1, "success")]);
        let what: Vec<String> = shell_tries(&l, &s).into_iter().map(|v| v.what).collect();
        assert_eq!(
            what,
            [
                "chain run r task a try 1 wrote 2 start and 0 end line(s)",
                "chain run r task a try 2 ran, but the store has no such try",
                "chain run r task b try 1 is a success in the store without its start and end lines",
            ]
        );
    }
}
