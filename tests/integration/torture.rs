//! Restart torture (issue item 10): a workload of shell chains and fans, a `trigger_dag`
//! parent and child, and an import + append load + append SQL, while `serve` is stopped at
//! pseudo-random moments — `kill -9` and SIGTERM in turn — and restarted. Once a last
//! `serve` has finished everything, the invariants of "Exactly once per try" are checked
//! (see `torture/checks.rs` and `torture/outcome.rs`): every run succeeded, each try started at most once and matches
//! the store, no two tries of a task overlapped, one child per parent run, exact warehouse
//! row counts.
//!
//! `ORCHESTRATOR_TORTURE_ROUNDS` (default 16) sets the number of stops,
//! `ORCHESTRATOR_TORTURE_SEED` replays a seed printed by an earlier run. The test prints a
//! `torture stats:` JSON line (read by `bench/torture.py`).

mod checks;
mod outcome;
mod workload;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use checks::{Line, Violation};
use workload::{CHILD_DAG, Rng, SHELL_DAGS, WAREHOUSE_DAG};

use crate::support::{Env, PATIENCE, Server};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Stop {
    Kill9,
    Sigterm,
}

/// One life of `serve` between a restart and a stop.
struct Round {
    /// How the previous life ended (None for the first).
    after: Option<Stop>,
    /// Time from the restart to the first `start` line, and to the first retry of a try
    /// the previous stop cut (when one happened within this life).
    progress_ms: Option<f64>,
    resume_ms: Option<f64>,
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn setting(name: &str, default: impl FnOnce() -> u64) -> u64 {
    std::env::var(name).map_or_else(
        |_| default(),
        |v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
        },
    )
}

/// Tries that wrote a `start` but no `end` line: those a stop cut (or a kill raced).
fn unfinished(lines: &[Line]) -> BTreeSet<checks::TryKey> {
    let mut open = BTreeSet::new();
    for l in lines {
        match l.kind.as_str() {
            "start" => open.insert(l.key.clone()),
            "end" => open.remove(&l.key),
            _ => false,
        };
    }
    open
}

/// Unfinished tries not yet followed by a later try of their task: those waiting for a retry.
fn awaiting_retry(lines: &[Line]) -> BTreeSet<checks::TryKey> {
    let mut latest: BTreeMap<(&str, &str, &str), u32> = BTreeMap::new();
    for l in lines.iter().filter(|l| l.kind == "start") {
        let t = latest.entry((&l.key.0, &l.key.1, &l.key.2)).or_default();
        *t = (*t).max(l.key.3);
    }
    let mut open = unfinished(lines);
    open.retain(|k| latest[&(k.0.as_str(), k.1.as_str(), k.2.as_str())] == k.3);
    open
}

/// When a later try of one of the `cut` tries started (epoch nanos), if one did after `since`.
fn first_retry(lines: &[Line], cut: &BTreeSet<checks::TryKey>, since: u128) -> Option<u128> {
    lines
        .iter()
        .filter(|l| l.kind == "start" && l.nanos >= since)
        .filter(|l| {
            cut.iter()
                .any(|c| (&c.0, &c.1, &c.2) == (&l.key.0, &l.key.1, &l.key.2) && c.3 < l.key.3)
        })
        .map(|l| l.nanos)
        .min()
}

fn first_start(lines: &[Line], since: u128) -> Option<u128> {
    lines
        .iter()
        .filter(|l| l.kind == "start" && l.nanos >= since)
        .map(|l| l.nanos)
        .min()
}

fn ms_since(at: Option<u128>, since: u128) -> Option<f64> {
    at.map(|t| (t - since) as f64 / 1e6)
}

/// Waits for `cond` up to `limit`; false if it never held.
fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    true
}

struct Torture {
    env: Env,
    rng: Rng,
    triggered: BTreeMap<&'static str, usize>,
    rounds: Vec<Round>,
    last_restart_ns: u128,
    logs: Vec<String>,
    violations: Vec<Violation>,
}

impl Torture {
    fn trigger(&mut self, dag: &'static str) {
        self.env.ok(&["trigger", dag]);
        *self.triggered.entry(dag).or_default() += 1;
    }

    /// Queues runs while no server runs: a shell DAG each time (so every life has work that
    /// shows in the ledger), sometimes the warehouse DAG too.
    fn trigger_while_down(&mut self, round: usize) {
        self.env.bind = "127.0.0.1:1".into();
        self.trigger(SHELL_DAGS[round % SHELL_DAGS.len()]);
        if self.rng.chance(50) {
            self.trigger(WAREHOUSE_DAG);
        }
    }

    /// One life of `serve`: start, wait for progress (and often for the retry of a try the
    /// last stop cut), a pseudo-random while more, then stop it.
    fn life(&mut self, after: Option<Stop>, stop: Stop) {
        let cut = awaiting_retry(&checks::read_ledger(&self.env));
        // The tries the last stop cut (those that started in the last life), for the stats.
        let since = self.last_restart_ns;
        let fresh: BTreeSet<_> = checks::read_ledger(&self.env)
            .into_iter()
            .filter(|l| l.kind == "start" && l.nanos >= since && cut.contains(&l.key))
            .map(|l| l.key)
            .collect();
        let restart_ns = now_ns();
        self.last_restart_ns = restart_ns;
        let mut server = self.env.serve();
        let env = &self.env;
        if !wait_for(PATIENCE, || {
            first_start(&checks::read_ledger(env), restart_ns).is_some()
        }) {
            self.give_up(&server, "a try starts after the restart");
        }
        if !cut.is_empty() && self.rng.chance(70) {
            let retried = wait_for(PATIENCE, || {
                first_retry(&checks::read_ledger(env), &cut, restart_ns).is_some()
            });
            if !retried {
                self.give_up(&server, &format!("one of the cut tries {cut:?} is retried"));
            }
        }
        if self.rng.chance(40) {
            let dag = if self.rng.chance(50) {
                SHELL_DAGS[self.rng.between(0, 2) as usize]
            } else {
                WAREHOUSE_DAG
            };
            self.trigger(dag);
        }
        std::thread::sleep(Duration::from_millis(self.rng.between(300, 2500)));
        eprintln!(
            "torture: life {} (after {after:?}, {} cut tries) ends by {stop:?} at {} ms",
            self.rounds.len(),
            cut.len(),
            (now_ns() - restart_ns) / 1_000_000
        );
        match stop {
            Stop::Kill9 => server.kill9(),
            Stop::Sigterm => {
                let status = server.sigterm();
                if !status.success() {
                    let what = format!("serve exited with {status} after SIGTERM");
                    self.violations.push(Violation {
                        run_id: String::new(),
                        what,
                    });
                }
            }
        }
        let lines = checks::read_ledger(&self.env);
        self.rounds.push(Round {
            after,
            progress_ms: ms_since(first_start(&lines, restart_ns), restart_ns),
            resume_ms: ms_since(first_retry(&lines, &fresh, restart_ns), restart_ns),
        });
        self.logs.push(server.log());
    }

    /// Fails the test on a condition that never came, keeping the project for a look.
    fn give_up(&mut self, server: &Server, what: &str) -> ! {
        self.logs.push(server.log());
        let kept = self.keep();
        panic!(
            "timed out after waiting for: {what}\nproject, ledger and serve logs kept in {}\n\
             this serve's log:\n{}",
            kept.display(),
            server.log()
        );
    }

    /// Writes each serve's log into the project and keeps the project folder.
    fn keep(&mut self) -> std::path::PathBuf {
        for (life, log) in self.logs.iter().enumerate() {
            std::fs::write(self.env.path(&format!("serve-{life}.log")), log).unwrap();
        }
        let dir = std::mem::replace(&mut self.env.dir, tempfile::tempdir().unwrap());
        dir.keep()
    }

    /// A last `serve` runs until every run has finished, then stops gracefully.
    fn finish(&mut self) {
        self.env.bind = "127.0.0.1:1".into();
        let mut server = self.env.serve();
        let runs: usize = self.triggered.values().sum();
        let limit = PATIENCE * 4 + Duration::from_secs(2 * runs as u64);
        let env = &self.env;
        let parents = self.triggered.get("parent").copied().unwrap_or(0);
        let finished = wait_for(limit, || {
            let done = |dag: &str| {
                let runs = env.runs(dag);
                let n = runs.len();
                let finished = runs
                    .iter()
                    .all(|r| r["state"] == "success" || r["state"] == "failed");
                (n, finished)
            };
            let all = SHELL_DAGS.iter().chain([&WAREHOUSE_DAG]).all(|d| done(d).1);
            all && done(CHILD_DAG) == (parents, true)
        });
        if !finished {
            self.give_up(&server, "every run finishes");
        }
        let status = server.sigterm();
        assert!(status.success(), "the last serve exited with {status}");
        self.logs.push(server.log());
    }

    fn check(&mut self) {
        let env = &self.env;
        let lines = checks::read_ledger(env);
        let store = checks::store_tries(env);
        let mut v = Vec::new();
        for dag in SHELL_DAGS.iter().chain([&WAREHOUSE_DAG]) {
            v.extend(outcome::runs_succeeded(
                env,
                dag,
                self.triggered.get(dag).copied().unwrap_or(0),
            ));
        }
        let parents = self.triggered.get("parent").copied().unwrap_or(0);
        v.extend(outcome::runs_succeeded(env, CHILD_DAG, parents));
        v.extend(checks::shell_tries(&lines, &store));
        v.extend(checks::no_overlap(&lines));
        v.extend(outcome::one_child_per_parent(env, "parent"));
        let wh: Vec<String> = env
            .runs(WAREHOUSE_DAG)
            .iter()
            .map(|r| r["run_id"].as_str().unwrap().to_string())
            .collect();
        v.extend(outcome::warehouse_exact(env, &wh, &store));
        v.extend(outcome::one_run_at_a_time(env, WAREHOUSE_DAG));
        self.violations.extend(v);
        self.report(&lines, &store);
    }
}

fn median(mut v: Vec<f64>) -> serde_json::Value {
    if v.is_empty() {
        return serde_json::Value::Null;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = f64::midpoint(v[(n - 1) / 2], v[n / 2]);
    serde_json::json!({"n": n, "median": median, "min": v[0], "max": v[n - 1]})
}

impl Torture {
    fn times(&self, after: Stop, pick: impl Fn(&Round) -> Option<f64>) -> serde_json::Value {
        median(
            self.rounds
                .iter()
                .filter(|r| r.after == Some(after))
                .filter_map(pick)
                .collect(),
        )
    }

    /// Prints the `torture stats:` line, and each violation with its run's `serve` lines.
    fn report(&self, lines: &[Line], store: &BTreeMap<checks::TryKey, checks::StoreTry>) {
        let stats = serde_json::json!({
            "rounds": self.rounds.len(),
            "runs": self.triggered.values().sum::<usize>() + self.triggered.get("parent").copied().unwrap_or(0),
            "tries": store.len(),
            "interrupted_tries": store.values().filter(|t| t.interrupted).count(),
            "shell_tries_unfinished": unfinished(lines).len(),
            "violations": self.violations.len(),
            "progress_ms_after_kill9": self.times(Stop::Kill9, |r| r.progress_ms),
            "progress_ms_after_sigterm": self.times(Stop::Sigterm, |r| r.progress_ms),
            "resume_ms_after_kill9": self.times(Stop::Kill9, |r| r.resume_ms),
            "resume_ms_after_sigterm": self.times(Stop::Sigterm, |r| r.resume_ms),
        });
        println!("torture stats: {stats}");
        for v in &self.violations {
            eprintln!("VIOLATION: {} [{}]", v.what, v.run_id);
            for run_id in v.run_id.split_whitespace() {
                for (life, log) in self.logs.iter().enumerate() {
                    for l in log.lines().filter(|l| l.contains(run_id)).take(40) {
                        eprintln!("  serve #{life}: {l}");
                    }
                }
            }
        }
    }
}

#[test]
fn every_run_succeeds_exactly_once_per_try_while_serve_is_killed_and_restarted() {
    let rounds = usize::try_from(setting("ORCHESTRATOR_TORTURE_ROUNDS", || 16)).unwrap();
    // Truncating the clock to 64 bits is fine for a seed.
    let seed = setting("ORCHESTRATOR_TORTURE_SEED", || now_ns() as u64);
    eprintln!(
        "torture: seed {seed}, {rounds} rounds (ORCHESTRATOR_TORTURE_SEED={seed} replays the \
         same choices; the moments they land on still vary)"
    );
    let env = Env::new();
    workload::install(&env);
    let mut t = Torture {
        env,
        rng: Rng::new(seed),
        triggered: BTreeMap::new(),
        rounds: Vec::new(),
        last_restart_ns: 0,
        logs: Vec::new(),
        violations: Vec::new(),
    };
    for dag in SHELL_DAGS.iter().chain([&WAREHOUSE_DAG]) {
        t.trigger(dag);
    }
    let mut after = None;
    for round in 0..rounds {
        let stop = if round % 2 == 0 {
            Stop::Kill9
        } else {
            Stop::Sigterm
        };
        if round > 0 {
            t.trigger_while_down(round);
        }
        t.life(after, stop);
        after = Some(stop);
    }
    t.finish();
    t.check();
    if t.violations.is_empty() {
        return;
    }
    let n = t.violations.len();
    let kept = t.keep();
    panic!(
        "{n} violation(s) with seed {seed} (listed above); project, ledger and serve logs kept \
         in {}",
        kept.display()
    );
}
