#!/usr/bin/env python3
"""Warehouse benchmark (issue 12, item 3): `load` of a generated data set into the SQLite
warehouse and into a PostgreSQL one (binary COPY), rows/s.

Generates the data set (bench/gen_drug_data.py through bench/data.py, cached under
bench/out/), stages it once with `orchestrator run drugs_import`, then runs `orchestrator run
drugs_load` (mode replace, four tables) --repeats times against each warehouse, alternating,
with the release binary. The PostgreSQL warehouse is a schema of its own in --postgres
(default: the database .ci/run and the project's machines use), dropped at the end.

Reports per warehouse the median and range of: the load task's duration (from the state
store's start and end times: staging fetch, Parquet decoding, encoding and writing, commit),
rows loaded per second of it, the command's wall time and its peak RSS.

Usage: python3 bench/warehouse.py [--scale M] [--repeats 3] [--postgres URL]
                                  [--binary target/release/orchestrator]
"""

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data import generate, project  # noqa: E402
from several import Pg  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TABLES = ["drugs", "pubmed_csv", "pubmed_json", "clinical_trials"]


def timed_run(binary, args, cwd, env):
    """Runs one command; returns (wall seconds, peak RSS in MB) of that process alone."""
    start = time.perf_counter()
    proc = subprocess.Popen([str(binary), *args], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"{args} failed: {proc.stderr.read().decode()}")
    return elapsed, usage.ru_maxrss / 1024


def load_task_seconds(binary, folder, env):
    """Duration of the latest drugs_load run's load task, from the state store."""
    runs = json.loads(subprocess.run([str(binary), "runs", "list", "--dag", "drugs_load", "-o", "json"],
                                     cwd=folder, env=env, check=True, capture_output=True).stdout)
    detail = json.loads(subprocess.run([str(binary), "runs", "show", runs[0]["run_id"], "-o", "json"],
                                       cwd=folder, env=env, check=True, capture_output=True).stdout)
    ti = detail["task_instances"][0]
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return (parse(ti["end_date"]) - parse(ti["start_date"])).total_seconds()


def summary(values, fmt):
    return f"{fmt(statistics.median(values))} ({fmt(min(values))}–{fmt(max(values))})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", default="M")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432/test")
    ap.add_argument("--binary", default=str(ROOT / "target/release/orchestrator"))
    a = ap.parse_args()
    binary = Path(a.binary).resolve()
    if not binary.exists():
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    data, _ = generate(a.scale)
    folder = Path(tempfile.mkdtemp(prefix=f"orchestrator-warehouse-{a.scale}-"))
    pg = Pg(a.postgres)
    try:
        project(folder, data)
        base_env = dict(os.environ, ORCHESTRATOR_BIND="127.0.0.1:1")
        base_env.pop("ORCHESTRATOR_WAREHOUSE", None)
        timed_run(binary, ["run", "drugs_import"], folder, base_env)
        envs = {"SQLite": base_env, "PostgreSQL": dict(base_env, ORCHESTRATOR_WAREHOUSE=pg.url)}
        results = {name: [] for name in envs}
        for _ in range(a.repeats):
            for name, env in envs.items():
                wall, rss = timed_run(binary, ["run", "drugs_load"], folder, env)
                task = load_task_seconds(binary, folder, env)
                results[name].append((task, wall, rss))
        sqlite_db = sqlite3.connect(folder / "warehouse.db")
        rows = {t: sqlite_db.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in TABLES}
        pg_rows = {t: int(pg.rows(f'SELECT COUNT(*) FROM "{t}"')[0][0]) for t in TABLES}
        if rows != pg_rows:
            raise RuntimeError(f"the warehouses differ: SQLite {rows}, PostgreSQL {pg_rows}")
        total = sum(rows.values())
        mb = sum((folder / "imported_data" / f"{t}.parquet").stat().st_size for t in TABLES) / 1e6
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
              f"PostgreSQL: {pg.psql('SHOW server_version').strip()}")
        print(f"scale {a.scale}: {total:,} rows in {len(TABLES)} tables ({mb:.0f} MB of staged Parquet), "
              f"{a.repeats} runs each, median (range)")
        print("| warehouse | load task s | rows/s | `run drugs_load` wall s | peak RSS MB |")
        print("|---|---|---|---|---|")
        for name, runs in results.items():
            tasks = [r[0] for r in runs]
            print(f"| {name} | {summary(tasks, lambda v: f'{v:.2f}')} | "
                  f"{summary([total / t for t in tasks], lambda v: f'{v / 1e6:.2f} M')} | "
                  f"{summary([r[1] for r in runs], lambda v: f'{v:.2f}')} | "
                  f"{max(r[2] for r in runs):.0f} |")
    finally:
        pg.drop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
