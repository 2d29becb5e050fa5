#!/usr/bin/env python3
"""Scheduler benchmarks for the core engine (issue: core engine, item 8).

Runs the release binary in a scratch folder and reports:
  (a) trigger-to-success time of a 3-task chained noop DAG over N runs (p50, p99)
  (b) gap between a task's end and its downstream's start (p50, p99)
  (c) a 1,000-task fan-out/fan-in DAG end to end
  (d) time to load 100 generated DAGs (`dags validate`, process start included)
  (e) idle RSS of `serve` with the shipped DAGs
  (f) `orchestrator dags list` wall time

Times (a)-(c) are read from the state store's own timestamps (queued_at, start/end of
each task instance), so they measure the engine, not this script's polling.

Usage: python3 bench/core.py [--runs 200] [--binary target/release/orchestrator]
"""

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHAIN = """dag_id: chain3
tasks:
  a: {type: noop}
  b: {type: noop, depends_on: a}
  c: {type: noop, depends_on: b}
"""


def fanout(n: int) -> str:
    lines = ["dag_id: fanout", f"max_active_tasks: {n}", "tasks:", "  start: {type: noop}"]
    lines += [f"  t{i}: {{type: noop, depends_on: start}}" for i in range(n)]
    ups = ", ".join(f"t{i}" for i in range(n))
    lines.append(f"  end: {{type: noop, depends_on: [{ups}]}}")
    return "\n".join(lines) + "\n"


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def ms(a: str, b: str) -> float:
    return (ts(b) - ts(a)).total_seconds() * 1000


def pct(values, p):
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(p / 100 * (len(values) - 1))))
    return values[k]


def summary(values):
    return {
        "n": len(values),
        "p50": pct(values, 50),
        "p99": pct(values, 99),
        "min": min(values),
        "max": max(values),
    }


class Project:
    def __init__(self, binary: Path, folder: Path):
        self.binary = binary
        self.folder = folder
        (folder / "dags").mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ, ORCHESTRATOR_BIND="127.0.0.1:1", RUST_LOG="warn")
        self.server = None

    def cli(self, *args, check=True):
        return subprocess.run([str(self.binary), *args], cwd=self.folder, env=self.env,
                              capture_output=True, text=True, check=check)

    def serve(self):
        self.server = subprocess.Popen(
            [str(self.binary), "serve", "--bind", "127.0.0.1:0"], cwd=self.folder,
            env=dict(self.env, RUST_LOG="info"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True)
        for line in self.server.stderr:
            if "serving on http://" in line:
                addr = line.split("serving on http://")[1].split()[0]
                self.env["ORCHESTRATOR_BIND"] = addr
                break
        # Keep draining the log so the server never blocks on a full pipe.
        import threading
        threading.Thread(target=lambda: [None for _ in self.server.stderr], daemon=True).start()

    def stop(self):
        if self.server:
            self.server.send_signal(signal.SIGTERM)
            self.server.wait(timeout=60)
            self.server = None

    def db(self):
        conn = sqlite3.connect(self.folder / "orchestrator.db", timeout=30)
        conn.row_factory = sqlite3.Row
        return conn

    def run_state(self, dag, run_id):
        with self.db() as c:
            row = c.execute("SELECT state FROM dag_run WHERE dag_id=? AND run_id=?", (dag, run_id)).fetchone()
            return row["state"] if row else None

    def wait_run(self, dag, run_id, limit=120):
        deadline = time.time() + limit
        while time.time() < deadline:
            if self.run_state(dag, run_id) in ("success", "failed"):
                return
            time.sleep(0.002)
        raise RuntimeError(f"{dag} {run_id} did not finish")


def trigger(p: Project, dag: str) -> str:
    out = p.cli("trigger", dag).stdout
    return out.split(" run ")[1].split()[0]


def bench_chain(p: Project, runs: int):
    p.serve()
    for _ in range(runs):
        p.wait_run("chain3", trigger(p, "chain3"))
    p.stop()
    latency, gaps = [], []
    with p.db() as c:
        for r in c.execute("SELECT id, queued_at, end_date FROM dag_run WHERE dag_id='chain3'").fetchall():
            latency.append(ms(r["queued_at"], r["end_date"]))
            tis = {t["task_id"]: t for t in c.execute(
                "SELECT task_id, end_date FROM task_instance WHERE run=?", (r["id"],))}
            # A try's real start is its first log line, written once the start is committed
            # and the task is executing (task_instance.start_date is the dispatch decision).
            began = {t["task_id"]: t["ts"] for t in c.execute(
                "SELECT task_id, MIN(ts) AS ts FROM task_log WHERE run=? GROUP BY task_id", (r["id"],))}
            gaps.append(ms(tis["a"]["end_date"], began["b"]))
            gaps.append(ms(tis["b"]["end_date"], began["c"]))
    return summary(latency), summary(gaps)


def bench_fanout(p: Project, repeats: int):
    p.serve()
    served = []
    for _ in range(repeats):
        run_id = trigger(p, "fanout")
        p.wait_run("fanout", run_id)
        with p.db() as c:
            r = c.execute("SELECT queued_at, end_date FROM dag_run WHERE dag_id='fanout' AND run_id=?",
                          (run_id,)).fetchone()
            served.append(ms(r["queued_at"], r["end_date"]))
    p.stop()
    foreground = []
    for _ in range(repeats):
        start = time.perf_counter()
        p.cli("run", "fanout")
        foreground.append((time.perf_counter() - start) * 1000)
    return summary(served), summary(foreground)


def wall(p: Project, args, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        p.cli(*args)
        times.append((time.perf_counter() - start) * 1000)
    return summary(times)


def bench_load_100(binary: Path, scratch: Path, repeats: int):
    p = Project(binary, scratch / "generated")
    (p.folder / "dags" / "templates").mkdir(parents=True)
    (p.folder / "config").mkdir()
    shutil.copy(ROOT / "dags/templates/process.yaml", p.folder / "dags/templates/process.yaml")
    projects = "projects:\n" + "".join(
        f"  - {{name: p{i:03}, dags: [process], vars: {{input_dir: data/sample}}}}\n" for i in range(100))
    (p.folder / "config/projects.yaml").write_text(projects)
    out = p.cli("dags", "validate").stdout
    assert "100 DAG(s) valid, 0 error(s)" in out, out
    return wall(p, ["dags", "validate"], repeats)


def bench_idle_rss(binary: Path, scratch: Path):
    p = Project(binary, scratch / "shipped")
    for d in ("dags", "config", "data"):
        shutil.copytree(ROOT / d, p.folder / d, dirs_exist_ok=True)
    p.serve()
    time.sleep(3)
    rss = next(int(l.split()[1]) for l in Path(f"/proc/{p.server.pid}/status").read_text().splitlines()
               if l.startswith("VmRSS"))
    dags_list = wall(p, ["dags", "list"], 30)
    p.stop()
    return rss / 1024, dags_list


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--fanout", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--binary", default=str(ROOT / "target/release/orchestrator"))
    args = ap.parse_args()
    binary = Path(args.binary).resolve()
    if not binary.exists():
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    scratch = Path(tempfile.mkdtemp(prefix="orchestrator-bench-"))
    try:
        chain = Project(binary, scratch / "chain")
        (chain.folder / "dags/chain3.yaml").write_text(CHAIN)
        latency, gaps = bench_chain(chain, args.runs)
        fan = Project(binary, scratch / "fanout")
        (fan.folder / "dags/fanout.yaml").write_text(fanout(args.fanout))
        fan_served, fan_fg = bench_fanout(fan, args.repeats)
        load = bench_load_100(binary, scratch, 20)
        rss, dags_list = bench_idle_rss(binary, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    def row(name, s, target):
        return f"| {name} | {s['n']} | {s['p50']:.2f} | {s['p99']:.2f} | {s['min']:.2f}–{s['max']:.2f} | {target} |"

    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    print("| measure | n | p50 ms | p99 ms | range ms | target |")
    print("|---|---|---|---|---|---|")
    print(row("(a) trigger → success, 3-task chain (server)", latency, "p50 < 10 ms"))
    print(row("(b) task end → downstream start", gaps, "p50 < 1 ms"))
    print(row(f"(c) {args.fanout}-task fan-out/fan-in, trigger → success (server)", fan_served, "< 1 s"))
    print(row(f"(c) {args.fanout}-task fan-out/fan-in, `orchestrator run` wall", fan_fg, "< 1 s"))
    print(row("(d) load 100 generated DAGs (`dags validate` wall, process start incl.)", load, "< 100 ms"))
    print(row("(f) `dags list` wall (shipped DAGs)", dags_list, "< 50 ms"))
    print(f"| (e) idle RSS of `serve`, shipped DAGs | 1 | {rss:.1f} MB | | | < 30 MB |")
    json.dump({"a": latency, "b": gaps, "c_served": fan_served, "c_run": fan_fg, "d": load,
               "e_mb": rss, "f": dags_list}, sys.stderr)
    print(file=sys.stderr)


if __name__ == "__main__":
    main()
