#!/usr/bin/env python3
"""Benchmarks of the PostgreSQL state store and of several instances sharing it (issue:
beyond one machine, item 6). Uses the release binary and a PostgreSQL database given by
--postgres (default: the one .ci/run and the project's machines use); each benchmark works
in a schema of its own, dropped at the end.

Reports, for the same machine and the same run:
  (a) trigger-to-success of a 3-task noop chain, SQLite vs PostgreSQL (p50, p99, range), and
      the end-to-start gap between a task and its downstream on each
  (b) 1,000 queued runs of a one-task DAG (a 20 ms shell task) drained by 1 instance on
      SQLite, 1 instance on PostgreSQL and 3 instances on PostgreSQL, 4 slots each (wall
      time, runs/s, share of runs per instance)
  (c) one run of a 200-task fan-out of 0.2 s shell tasks: 1 instance x 12 slots against
      3 instances x 4 slots on PostgreSQL (run start to end, share of tries per instance)
  (d) task end -> downstream start across instances: a 3-task chain whose owner's only
      slot is taken by a sleeping task, so the chain's tasks run on a second instance
      (which has no DAG files: it runs the stored DAG version); from the end the worker
      reported to the start of the downstream try recorded in the store

Usage: python3 bench/several.py [--runs 100] [--queued 1000] [--binary target/release/orchestrator]
"""

import argparse
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from core import CHAIN, Project, ms, summary, trigger  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# Marks the end of one query's answer on the kept psql session.
END = "__end_of_answer__"
ONE = """dag_id: one
max_active_runs: 1000
tasks:
  t: {type: shell, command: 'sleep 0.02; echo $INSTANCE'}
"""


class Pg:
    """A schema of its own in the benchmark database."""

    def __init__(self, base: str):
        self.base = base
        self.schema = "bench_" + uuid.uuid4().hex[:10]
        self.psql(f"CREATE SCHEMA {self.schema}")
        sep = "&" if "?" in base else "?"
        self.url = f"{base}{sep}options=-c%20search_path%3D{self.schema}"
        self.session = None

    def psql(self, sql: str) -> str:
        return subprocess.run(["psql", self.base, "-At", "-F", "\t", "-c", sql], check=True,
                              capture_output=True, text=True).stdout

    def rows(self, sql: str):
        """Rows of one query, over one psql session kept open: a psql process (and a new
        server backend) per query would cost the machine more than the work measured
        while a run is being polled for (SQLite's poll is an in-process read)."""
        if self.session is None:
            self.session = subprocess.Popen(
                ["psql", self.url, "-At", "-F", "\t", "-q", "-X"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, text=True, bufsize=1)
        self.session.stdin.write(f"{sql};\n\\echo {END}\n")
        self.session.stdin.flush()
        out = []
        for line in self.session.stdout:
            line = line.rstrip("\n")
            if line == END:
                return out
            if line:
                out.append(line.split("\t"))
        raise RuntimeError(f"psql ended while answering: {sql}")

    def drop(self):
        if self.session is not None:
            self.session.stdin.close()
            self.session.wait()
            self.session = None
        self.psql(f"DROP SCHEMA {self.schema} CASCADE")


class PgProject(Project):
    """A project whose state is in a PostgreSQL schema."""

    def __init__(self, binary: Path, folder: Path, pg: Pg, name: str = "i0"):
        super().__init__(binary, folder)
        self.pg = pg
        self.env["ORCHESTRATOR_DATABASE_URL"] = pg.url
        self.env["INSTANCE"] = name

    def run_state(self, dag, run_id):
        rows = self.pg.rows(f"SELECT state FROM dag_run WHERE dag_id='{dag}' AND run_id='{run_id}'")
        return rows[0][0] if rows else None


def bench_chain_sqlite(binary, scratch, runs):
    p = Project(binary, scratch / "chain-sqlite")
    (p.folder / "dags/chain3.yaml").write_text(CHAIN)
    from core import bench_chain
    return bench_chain(p, runs)


def bench_chain_pg(binary, scratch, runs, pg):
    p = PgProject(binary, scratch / "chain-pg", pg)
    (p.folder / "dags/chain3.yaml").write_text(CHAIN)
    p.serve()
    for _ in range(runs):
        p.wait_run("chain3", trigger(p, "chain3"))
    p.stop()
    latency, gaps = [], []
    runs_rows = pg.rows("SELECT id, queued_at, end_date FROM dag_run WHERE dag_id='chain3'")
    ends = {(r, t): e for r, t, e in pg.rows("SELECT run, task_id, end_date FROM task_instance")}
    began = {(r, t): ts for r, t, ts in pg.rows(
        "SELECT run, task_id, MIN(ts) FROM task_log GROUP BY run, task_id")}
    for rid, q, e in runs_rows:
        latency.append(ms(q, e))
        gaps.append(ms(ends[(rid, "a")], began[(rid, "b")]))
        gaps.append(ms(ends[(rid, "b")], began[(rid, "c")]))
    return summary(latency), summary(gaps)


def drain(projects, queued, rows_of):
    """Queues `queued` runs (no server running), starts every project's server, waits for
    all to succeed; returns wall seconds from the first start to the last end."""
    first = projects[0]
    for _ in range(queued):
        first.cli("trigger", "one")
    start = time.perf_counter()
    for p in projects:
        p.serve()
    while True:
        done = rows_of("SELECT COUNT(*) FROM dag_run WHERE state IN ('success', 'failed')")
        if int(done[0][0]) >= queued:
            break
        time.sleep(0.05)
    wall = time.perf_counter() - start
    for p in projects:
        p.stop()
    return wall


def bench_drain(binary, scratch, queued, base):
    results = {}
    # SQLite, one instance.
    p = Project(binary, scratch / "drain-sqlite")
    (p.folder / "dags/one.yaml").write_text(ONE)
    p.env["ORCHESTRATOR_PARALLELISM"] = "4"

    def sqlite_rows(sql):
        with p.db() as c:
            return [tuple(r) for r in c.execute(sql).fetchall()]

    results["sqlite x1"] = (drain([p], queued, sqlite_rows), None)
    for n in (1, 3):
        pg = Pg(base)
        try:
            projects = []
            for i in range(n):
                q = PgProject(binary, scratch / f"drain-pg{n}-{i}", pg, f"i{i}")
                (q.folder / "dags/one.yaml").write_text(ONE)
                q.env["ORCHESTRATOR_PARALLELISM"] = "4"
                projects.append(q)
            wall = drain(projects, queued, pg.rows)
            share = pg.rows("SELECT owner, COUNT(*) FROM dag_run GROUP BY owner ORDER BY 2 DESC")
            results[f"postgres x{n}"] = (wall, [int(c) for _, c in share])
        finally:
            pg.drop()
    return results


WIDE = "\n".join(
    ["dag_id: wide", "max_active_tasks: 256", "tasks:", "  start: {type: noop}"]
    + [f"  t{i}: {{type: shell, command: 'sleep 0.2; echo $INSTANCE', depends_on: start}}"
       for i in range(200)]
    + ["  end: {type: noop, depends_on: [" + ", ".join(f"t{i}" for i in range(200)) + "]}"]
) + "\n"


def bench_wide(binary, scratch, base, repeats):
    """Wall seconds (run start to end) of the 200-task fan-out per layout, and the share of
    its tries each instance ran."""
    results = {}
    for n, slots in ((1, 12), (3, 4)):
        walls, shares = [], []
        for rep in range(repeats):
            pg = Pg(base)
            try:
                projects = []
                for i in range(n):
                    q = PgProject(binary, scratch / f"wide{n}-{rep}-{i}", pg, f"i{i}")
                    (q.folder / "dags/wide.yaml").write_text(WIDE)
                    q.env["ORCHESTRATOR_PARALLELISM"] = str(slots)
                    q.serve()
                    projects.append(q)
                run_id = trigger(projects[0], "wide")
                projects[0].wait_run("wide", run_id)
                (start, end), = pg.rows(
                    "SELECT start_date, end_date FROM dag_run WHERE dag_id='wide'")
                walls.append(ms(start, end) / 1000)
                per = pg.rows("SELECT message, COUNT(*) FROM task_log WHERE level='STDOUT' "
                              "GROUP BY message ORDER BY message")
                shares.append({m: int(c) for m, c in per})
                for q in projects:
                    q.stop()
            finally:
                pg.drop()
        results[f"{n} x {slots} slots"] = (walls, shares)
    return results


BLOCKED = """dag_id: blocked
tasks:
  blocker: {type: shell, command: 'echo $INSTANCE; sleep 0.4'}
  a: {type: shell, command: 'echo $INSTANCE'}
  b: {type: shell, command: 'echo $INSTANCE', depends_on: a}
  c: {type: shell, command: 'echo $INSTANCE', depends_on: b}
"""


def bench_across(binary, scratch, base, runs):
    """Gaps between a chain task's end and its downstream's start when the downstream ran
    on another instance than the run's owner (the instance that ran `blocker`, the first
    task it dispatched). Either instance may take a run (the one without DAG files runs
    the stored version), so both own about half of them."""
    pg = Pg(base)
    try:
        owner = PgProject(binary, scratch / "across-owner", pg, "owner")
        (owner.folder / "dags/blocked.yaml").write_text(BLOCKED)
        owner.env["ORCHESTRATOR_PARALLELISM"] = "1"
        worker = PgProject(binary, scratch / "across-worker", pg, "worker")
        worker.env["ORCHESTRATOR_PARALLELISM"] = "1"
        owner.serve()
        worker.serve()
        for _ in range(runs):
            owner.wait_run("blocked", trigger(owner, "blocked"))
        owner.stop()
        worker.stop()
        ends = {(r, t): e for r, t, e in pg.rows("SELECT run, task_id, end_date FROM task_instance")}
        # When the downstream try started (claimed, or started by the owner), as the
        # store records it: the coordination, without the shell's own start-up.
        began = {(r, t): ts for r, t, ts in pg.rows(
            "SELECT run, task_id, MIN(start_date) FROM task_try GROUP BY run, task_id")}
        ran_on = {(r, t): m for r, t, m in pg.rows(
            "SELECT run, task_id, MIN(message) FROM task_log WHERE level = 'STDOUT' "
            "GROUP BY run, task_id")}
        across, local = [], []
        for (rid,) in pg.rows("SELECT id FROM dag_run"):
            for up, down in (("a", "b"), ("b", "c")):
                gap = ms(ends[(rid, up)], began[(rid, down)])
                elsewhere = ran_on[(rid, down)] != ran_on[(rid, "blocker")]
                (across if elsewhere else local).append(gap)
        return summary(across), summary(local) if local else None
    finally:
        pg.drop()


def fmt(s):
    return f"p50 {s['p50']:.2f} ms, p99 {s['p99']:.2f} ms (range {s['min']:.2f}-{s['max']:.2f}, n={s['n']})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--queued", type=int, default=1000)
    ap.add_argument("--wide", type=int, default=3, help="repeats of the fan-out benchmark")
    ap.add_argument("--only", default="abcd", help="which benchmarks to run (letters)")
    ap.add_argument("--binary", default=str(ROOT / "target/release/orchestrator"))
    ap.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432/test")
    args = ap.parse_args()
    binary = Path(args.binary).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        if "a" in args.only:
            lat, gaps = bench_chain_sqlite(binary, scratch, args.runs)
            print(f"(a) sqlite   chain3 trigger->success: {fmt(lat)}")
            print(f"    sqlite   task end -> downstream start: {fmt(gaps)}")
            pg = Pg(args.postgres)
            try:
                lat_pg, gaps_pg = bench_chain_pg(binary, scratch, args.runs, pg)
            finally:
                pg.drop()
            print(f"    postgres chain3 trigger->success: {fmt(lat_pg)}")
            print(f"    postgres task end -> downstream start: {fmt(gaps_pg)}")
            print(f"    ratio of p50s postgres/sqlite: {lat_pg['p50'] / lat['p50']:.2f}")
        if "b" in args.only:
            for name, (wall, share) in bench_drain(binary, scratch, args.queued,
                                                   args.postgres).items():
                extra = f", runs per instance {share}" if share else ""
                print(f"(b) {name}: {args.queued} queued runs drained in {wall:.2f} s "
                      f"({args.queued / wall:.0f} runs/s){extra}")
        if "c" in args.only:
            for name, (walls, shares) in bench_wide(binary, scratch, args.postgres,
                                                    args.wide).items():
                walls_s = sorted(walls)
                print(f"(c) 200-task fan-out, {name}: median {walls_s[len(walls_s) // 2]:.2f} s "
                      f"(range {walls_s[0]:.2f}-{walls_s[-1]:.2f}); tries per instance {shares}")
        if "d" in args.only:
            across, local = bench_across(binary, scratch, args.postgres, args.runs)
            print(f"(d) task end -> downstream start on another instance than the run's owner: "
                  f"{fmt(across)}")
            if local:
                print(f"    (downstream started on the run's owner: {fmt(local)})")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
