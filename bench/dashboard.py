#!/usr/bin/env python3
"""Dashboard benchmark (issue 10, item 9): every page with a big history in the store.

Builds a scratch project of 500 DAGs (one 10-task fan-out/fan-in DAG `wide10` and 499 small
ones: 2-3 noop tasks, varied tags, descriptions and schedules, some paused), seeds its
state store straight through SQLite with 100,000 finished runs of `wide10` (1 M task
instances, one try each, two log lines per try as a noop task writes) plus 0-20 runs of
every other DAG, checks with the CLI that the seeded rows read back, starts `serve` on it
and times each page of PAGES below (sequential keep-alive GETs after a warm-up): p50, p99,
min and max in ms, and the response size. Pages that do not exist yet show their status
instead of timings. Also reports the start-up time and the RSS of `serve` on this store.

The seeded database is cached in bench/out/ under a key of the parameters, the schema
(migrations/) and the seed code, so later runs start at once. The DAGs' schedules are
chosen so that the scheduler has nothing to do while pages are measured (paused, no
schedule, or an end_date behind the seeded history); the script checks that no run was
created during the measurement.

With `--auth token|basic` a `viewer` user is added first (authentication on) and every
request carries a bearer token from `/auth/token` or basic credentials: the cost of the
check per request.

Usage: python3 bench/dashboard.py [--runs 100000] [--dags 500] [--requests 50]
           [--pages SUBSTRING] [--auth none|token|basic] [--browse]
           [--binary target/release/orchestrator]
"""

import argparse
import hashlib
import http.client
import inspect
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"

# Pages to time: (label, path). Placeholders, filled from the seeded store (path segments
# and query values are percent-encoded):
#   {wide} the 10-task DAG, {small} a small DAG with runs, {tag} a tag on ~10 % of DAGs,
#   {search} a word in ~2 % of DAG ids, {recent_run} the newest run of wide10 (success),
#   {recent_failed} the newest failed run, {old_run} one of the 100 oldest runs,
#   {old_failed} an old failed run and {failed_task} its failed task, {task} a task id,
#   {offset} / {page} far back in wide10's runs (about the 1,000th oldest run, at 25 runs a
#   page for {page}), {before} that run's logical date (RFC 3339), {before_id} its run id;
#   {recent_run_key}, {recent_failed_key}, {old_run_key}: store keys (dag_run.id) of those runs.
# An optional third item is the expected status (default 200); a page answering anything
# else is reported with that status instead of timings (404 = not there yet). Edit freely.
PAGES = [
    ("health (baseline)", "/health"),
    ("DAG list", "/"),
    ("DAG list, tag filter", "/?tags={tag}"),
    ("DAG list, search", "/?search={search}"),
    ("DAG page wide10 (grid + graph)", "/dags/{wide}"),
    ("  older runs ?offset=", "/dags/{wide}?offset={offset}"),
    ("  older runs ?page=", "/dags/{wide}?page={page}"),
    ("  older runs ?before=<date>", "/dags/{wide}?before={before}"),
    ("  older runs ?before=<run id>", "/dags/{wide}?before={before_id}"),
    ("  older runs ?base_date=", "/dags/{wide}?base_date={before}"),
    ("  with a selected run ?run_id=", "/dags/{wide}?run_id={recent_failed}"),
    ("DAG source wide10", "/dags/{wide}/source"),
    ("run page, newest", "/dags/{wide}/runs/{recent_run}"),
    ("run page, newest failed", "/dags/{wide}/runs/{recent_failed}"),
    ("run page, old", "/dags/{wide}/runs/{old_run}"),
    ("task log, newest run", "/dags/{wide}/runs/{recent_run}/tasks/{task}"),
    ("task log, newest run ?try=1", "/dags/{wide}/runs/{recent_run}/tasks/{task}?try=1"),
    ("task log, old failed try", "/dags/{wide}/runs/{old_failed}/tasks/{failed_task}?try=1"),
    ("small DAG page", "/dags/{small}"),
    ("small DAG source", "/dags/{small}/source"),
    ("unknown DAG (404 page)", "/dags/no_such_dag", 404),
    ("API dags", "/api/v2/dags?limit=100"),
    ("API runs, all DAGs", "/api/v2/dags/~/dagRuns?limit=100"),
    ("API runs wide10, newest", "/api/v2/dags/{wide}/dagRuns?limit=100&order_by=-logical_date"),
    ("API runs wide10, far back", "/api/v2/dags/{wide}/dagRuns?limit=100&offset={offset}"),
    ("API run", "/api/v2/dags/{wide}/dagRuns/{recent_run}"),
    ("API task instances", "/api/v2/dags/{wide}/dagRuns/{recent_run}/taskInstances"),
    ("API task log", "/api/v2/dags/{wide}/dagRuns/{recent_run}/taskInstances/{task}/logs/1"),
    ("API DAG details", "/api/v2/dags/{wide}/details"),
    ("API import errors", "/api/v2/importErrors"),
    ("API OpenAPI document", "/api/v2/openapi.json"),
    ("metrics scrape", "/metrics"),
]

# Bump when the seeded rows change, so cached stores are rebuilt.
SEED_VERSION = 1

# The seeded history ends here (fixed, so a cached store stays valid as time passes).
HISTORY_END = datetime(2026, 6, 1, tzinfo=timezone.utc)
HOUR = 3600 * 1_000_000
DAY = 24 * HOUR

WIDE = "wide10"
# Task id and upstreams, in file order (= claim order = task_instance rowid order).
WIDE_TASKS = [
    ("start", []),
    ("fetch_a", ["start"]),
    ("fetch_b", ["start"]),
    ("fetch_c", ["start"]),
    ("fetch_d", ["start"]),
    ("merge", ["fetch_a", "fetch_b", "fetch_c", "fetch_d"]),
    ("check_rows", ["merge"]),
    ("check_keys", ["merge"]),
    ("publish", ["check_rows", "check_keys"]),
    ("end", ["publish"]),
]
# Typical duration of each task in seconds (they are noop tasks; the spread makes the
# grid's durations and the Gantt chart look like real work).
WIDE_SECONDS = {"start": 0.01, "fetch_a": 20, "fetch_b": 35, "fetch_c": 8, "fetch_d": 50,
                "merge": 15, "check_rows": 4, "check_keys": 6, "publish": 12, "end": 0.01}


def wide_yaml(end_date: str, start_date: str, old: bool) -> str:
    # The old version differs in its description: runs of the first half executed it.
    desc = "Ten noop tasks, fanned out and in twice" if not old else "Nightly fan-out (v1)"
    lines = [
        f"dag_id: {WIDE}",
        f"description: {desc}",
        "tags: [bench, wide, finance]",
        'schedule: "@hourly"',
        f'start_date: "{start_date}"',
        f'end_date: "{end_date}"',
        "catchup: false",
        "max_active_runs: 4",
        "tasks:",
    ]
    for task, ups in WIDE_TASKS:
        if not ups:
            lines.append(f"  {task}: {{type: noop}}")
        elif len(ups) == 1:
            lines.append(f"  {task}: {{type: noop, depends_on: {ups[0]}}}")
        else:
            lines.append(f"  {task}: {{type: noop, depends_on: [{', '.join(ups)}]}}")
    return "\n".join(lines) + "\n"


# Small DAGs: schedules whose intervals are exact in UTC as (cron, period, offset of a fire
# time from the epoch): the seed creates the scheduled intervals the cron would.
SCHEDULES = [
    ("@hourly", HOUR, 0),
    ("@daily", DAY, 0),
    ("0 3 * * *", DAY, 3 * HOUR),
    ("30 6 * * *", DAY, 6 * HOUR + 30 * 60 * 1_000_000),
    ("0 */6 * * *", 6 * HOUR, 0),
    ("@weekly", 7 * DAY, 3 * DAY),  # Sunday 00:00; 1970-01-01 was a Thursday
]
TEAMS = ["finance", "marketing", "ops", "ml", "sales", "risk", "growth", "data", "infra", "hr"]
THINGS = ["ledger", "events", "orders", "users", "invoices", "clicks", "churn", "leads",
          "payroll", "inventory", "sessions", "forecast", "audit", "refunds", "signups"]
VERBS = ["sync", "import", "report", "rollup", "export", "cleanup", "score", "snapshot"]
EXTRA_TAGS = ["daily", "hourly", "critical", "sandbox", "pii", "gold", "silver", "legacy"]
TASK_NAMES = ["extract", "transform", "load", "check", "notify", "publish", "archive"]


def micros(d: datetime) -> int:
    return int(d.timestamp()) * 1_000_000 + d.microsecond


_days = {}


def ts(us: int) -> str:
    """A time as the store keeps it (`to_text`: RFC 3339, microseconds, `Z`)."""
    day, rest = divmod(us, DAY)
    prefix = _days.get(day)
    if prefix is None:
        prefix = _days[day] = datetime.fromtimestamp(day * 86400, timezone.utc).strftime("%Y-%m-%dT")
    sec, frac = divmod(rest, 1_000_000)
    m, s = divmod(sec, 60)
    h, m = divmod(m, 60)
    return f"{prefix}{h:02d}:{m:02d}:{s:02d}.{frac:06d}Z"


def run_id(run_type: str, us: int) -> str:
    """`run_id_for`: seconds for scheduled/backfill, microseconds for manual, `+00:00`."""
    sec, frac = divmod(us, 1_000_000)
    base = datetime.fromtimestamp(sec, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    if run_type in ("scheduled", "backfill"):
        assert frac == 0, "scheduled logical dates are whole seconds"
        return f"{run_type}__{base}+00:00"
    return f"{run_type}__{base}.{frac:06d}+00:00"


def yaml_date(us: int) -> str:
    return datetime.fromtimestamp(us // 1_000_000, timezone.utc).strftime("%Y-%m-%d %H:%M")


def definition_hash(dag_id: str, text: str) -> str:
    """`dag::definition_hash`: SHA-256 of the id, a NUL and the YAML text."""
    return hashlib.sha256(dag_id.encode() + b"\0" + text.encode()).hexdigest()


class SmallDag:
    def __init__(self, rng: random.Random, i: int):
        team, thing, verb = rng.choice(TEAMS), rng.choice(THINGS), rng.choice(VERBS)
        self.dag_id = f"{team}_{thing}_{verb}_{i:03}"
        self.tags = sorted({team, *rng.sample(EXTRA_TAGS, rng.randint(0, 2))})
        self.description = rng.choice([
            f"{verb.capitalize()} {thing} for the {team} team",
            f"Keeps {team}'s {thing} tables fresh",
            f"{thing.capitalize()} {verb}: source to warehouse, then a check",
            None,
        ])
        kind = rng.random()
        self.paused = kind < 0.2
        # Unpaused DAGs keep the scheduler idle during the measurement: either no schedule,
        # or an end_date at their last seeded interval.
        self.schedule = None if 0.2 <= kind < 0.45 else rng.choice(SCHEDULES)
        names = rng.sample(TASK_NAMES, rng.randint(2, 3))
        if len(names) == 3 and rng.random() < 0.5:
            self.tasks = [(names[0], []), (names[1], [names[0]]), (names[2], [names[0]])]
        else:
            self.tasks = [(n, [names[k - 1]] if k else []) for k, n in enumerate(names)]
        self.n_runs = rng.choice([0, 0, 1, 2, 3, 5, 8, 10, 12, 15, 20])
        self.text = ""

    def write(self, end_date_us):
        lines = [f"dag_id: {self.dag_id}"]
        if self.description:
            lines.append(f"description: {json.dumps(self.description)}")
        lines.append(f"tags: [{', '.join(self.tags)}]")
        if self.schedule:
            lines.append(f'schedule: "{self.schedule[0]}"')
            lines.append('start_date: "2024-01-01"')
            if end_date_us is not None:
                lines.append(f'end_date: "{yaml_date(end_date_us)}"')
            lines.append("catchup: false")
        lines.append("tasks:")
        for task, ups in self.tasks:
            dep = f", depends_on: {ups[0]}" if ups else ""
            lines.append(f"  {task}: {{type: noop{dep}}}")
        self.text = "\n".join(lines) + "\n"
        return self.text


class Seed:
    """The generated project: DAG files and every row of the state store."""

    def __init__(self, args):
        self.rng = random.Random(args.seed)
        self.args = args
        self.end = micros(HISTORY_END)
        rng = self.rng
        # wide10: ~8 % manual runs; scheduled and backfill runs take consecutive hours
        # ending at HISTORY_END, the last one scheduled (the timetable resumes after it).
        self.n_manual = args.runs * 8 // 100
        self.n_intervals = args.runs - self.n_manual
        self.first_interval = self.end - self.n_intervals * HOUR
        self.wide_end_date = self.end - HOUR  # the last interval's start
        self.wide_text = wide_yaml(yaml_date(self.wide_end_date), yaml_date(self.first_interval), False)
        self.wide_old_text = wide_yaml(yaml_date(self.wide_end_date), yaml_date(self.first_interval), True)
        self.small = [SmallDag(rng, i) for i in range(args.dags - 1)]
        self.small_runs = {}
        for d in self.small:
            self.small_runs[d.dag_id] = self.plan_small(d)
        self.files = {f"{WIDE}.yaml": self.wide_text}
        for d in self.small:
            self.files[f"{d.dag_id}.yaml"] = d.text

    def plan_small(self, d: SmallDag):
        """(run_type, logical start, logical end) of a small DAG's runs; writes its YAML."""
        rng = self.rng
        runs = []
        last_start = None
        if d.schedule:
            _, period, offset = d.schedule
            e = self.end - rng.randint(0, 20) * DAY
            e -= (e - offset) % period
            n_sched = sum(1 for _ in range(d.n_runs) if rng.random() > 0.1)
            for j in range(n_sched):
                start = e - (n_sched - j) * period
                runs.append(("scheduled", start, start + period))
                last_start = start
            if last_start is None:
                last_start = e - period
        for _ in range(d.n_runs - len(runs)):
            at = self.end - rng.randint(HOUR, 60 * DAY) + rng.randint(0, 999_999)
            runs.append(("manual", at, at))
        # Paused DAGs may keep a live schedule; unpaused ones end at their last interval.
        d.write(None if d.paused or not d.schedule else last_start)
        return runs

    def key(self) -> str:
        h = hashlib.sha256()
        h.update(json.dumps([SEED_VERSION, self.args.runs, self.args.dags, self.args.seed]).encode())
        for f in sorted((ROOT / "migrations").glob("*.sql")):
            h.update(f.read_bytes())
        for name in sorted(self.files):
            h.update(name.encode() + self.files[name].encode())
        for code in (Seed, SmallDag, wide_yaml, ts, run_id):
            h.update(inspect.getsource(code).encode())
        return h.hexdigest()[:16]

    def write_dags(self, folder: Path):
        (folder / "dags").mkdir(parents=True, exist_ok=True)
        for name, text in self.files.items():
            (folder / "dags" / name).write_text(text)

    # ---- rows -------------------------------------------------------------------------

    def runs(self):
        """Every run as a dict (without id), wide10's and the small DAGs', in any order."""
        rng = self.rng
        out = []
        v_old = definition_hash(WIDE, self.wide_old_text)
        v_new = definition_hash(WIDE, self.wide_text)
        half = self.first_interval + self.n_intervals // 2 * HOUR
        # Missed stretches filled later by backfills (~4 % of intervals, never the last).
        backfilled = set()
        while len(backfilled) < self.n_intervals * 4 // 100:
            first = rng.randrange(0, max(1, self.n_intervals - 200))
            for k in range(first, min(first + rng.randint(24, 168), self.n_intervals - 1)):
                backfilled.add(k)
        queue_at = {}
        blocks = {}
        for k in sorted(backfilled):
            if k - 1 not in backfilled:
                b = k
            blocks.setdefault(b, []).append(k)
        for b, ks in blocks.items():
            at = self.first_interval + (ks[-1] + 1) * HOUR + 3 * DAY + rng.randint(0, HOUR)
            for j, k in enumerate(ks):
                # Created together, executed at max_active_runs=4 a few minutes apart.
                queue_at[k] = (at + j, at + (j // 4) * 180_000_000 + rng.randint(1_000, 90_000))
        for k in range(self.n_intervals):
            start = self.first_interval + k * HOUR
            if k in backfilled:
                queued, began = queue_at[k]
                run_type = "backfill"
            else:
                queued = start + HOUR + rng.randint(2_000, 300_000)
                began = queued + rng.randint(1_000, 20_000)
                run_type = "scheduled"
            out.append(dict(dag=WIDE, type=run_type, start=start, end=start + HOUR,
                            queued=queued, began=began,
                            version=v_old if start < half else v_new, conf="{}"))
        for _ in range(self.n_manual):
            at = self.first_interval + rng.randrange(0, self.n_intervals * HOUR)
            conf = rng.choice(['{}', '{}', '{"full_refresh":true}', '{"region":"eu","note":"rerun after fix"}'])
            out.append(dict(dag=WIDE, type="manual", start=at, end=at, queued=at + rng.randint(100, 900),
                            began=at + rng.randint(2_000, 20_000),
                            version=v_old if at < half else v_new, conf=conf))
        for d in self.small:
            v = definition_hash(d.dag_id, d.text)
            for run_type, start, end in self.small_runs[d.dag_id]:
                queued = (end if run_type == "scheduled" else start) + rng.randint(2_000, 300_000)
                out.append(dict(dag=d.dag_id, type=run_type, start=start, end=end, queued=queued,
                                began=queued + rng.randint(1_000, 20_000), version=v, conf="{}"))
        return out

    def rows(self, conn: sqlite3.Connection):
        """Inserts everything; returns counts and the ids the pages need."""
        rng = self.rng
        runs = self.runs()
        runs.sort(key=lambda r: r["queued"])
        host = socket.gethostname()
        small_tasks = {d.dag_id: d.tasks for d in self.small}
        # One `serve` instance per ~3 months of history: the owner of the runs it executed.
        instances = []
        owner_of = []
        span = 90 * DAY
        for r in runs:
            if not instances or r["queued"] - instances[-1]["started"] > span:
                if instances:
                    instances[-1]["stopped"] = r["queued"] - 5_000_000
                instances.append(dict(id="%032x" % rng.getrandbits(128), started=r["queued"] - 2_000_000,
                                      pid=rng.randint(1000, 4_000_000), stopped=None))
            owner_of.append(instances[-1]["id"])
        instances[-1]["stopped"] = runs[-1]["queued"] + 600_000_000
        conn.executemany(
            "INSERT INTO instance (id, host, pid, kind, started_at, epoch, heartbeat_at, "
            "lease_expires_at, stopped_at) VALUES (?, ?, ?, 'serve', ?, 1, ?, ?, ?)",
            [(i["id"], host, i["pid"], ts(i["started"]), ts(i["stopped"]), ts(i["stopped"]),
              ts(i["stopped"])) for i in instances])
        # DAG rows and versions.
        first_seen = ts(self.first_interval - DAY)
        conn.executemany("INSERT INTO dag (dag_id, is_paused, first_seen) VALUES (?, ?, ?)",
                         [(WIDE, 0, first_seen)] + [(d.dag_id, int(d.paused), first_seen) for d in self.small])
        versions = [(definition_hash(WIDE, self.wide_old_text), WIDE, self.wide_old_text, self.first_interval),
                    (definition_hash(WIDE, self.wide_text), WIDE, self.wide_text,
                     self.first_interval + self.n_intervals // 2 * HOUR - DAY)]
        versions += [(definition_hash(d.dag_id, d.text), d.dag_id, d.text, self.end - 90 * DAY)
                     for d in self.small if self.small_runs[d.dag_id]]
        conn.executemany(
            "INSERT INTO dag_version (hash, dag_id, source_path, project, definition, created_at) "
            "VALUES (?, ?, ?, NULL, ?, ?)",
            [(h, dag, f"dags/{dag}.yaml", text, ts(at)) for h, dag, text, at in versions])

        stats = dict(runs=0, failed=0, task_instances=0)
        picks = {}
        run_rows, ti_rows = [], []

        def flush():
            conn.executemany(
                "INSERT INTO dag_run (id, dag_id, run_id, run_type, state, logical_date, "
                "data_interval_start, data_interval_end, conf, queued_at, start_date, end_date, "
                "parent_run, parent_task_id, parent_try, note, owner, owner_epoch, dag_version, uid, "
                "legacy_duplicate) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, ?, ?, 1, ?, ?, 0)",
                run_rows)
            conn.executemany(
                "INSERT INTO task_instance (run, task_id, state, try_number, max_tries, start_date, "
                "end_date, next_retry_at, error, first_try) VALUES (?, ?, ?, ?, 1, ?, ?, NULL, ?, 1)",
                ti_rows)
            run_rows.clear()
            ti_rows.clear()

        rnd = rng.random  # `randint` costs several times more; millions are drawn
        for run_key, (r, owner) in enumerate(zip(runs, owner_of), start=1):
            dag = r["dag"]
            tasks = WIDE_TASKS if dag == WIDE else small_tasks[dag]
            rid = run_id(r["type"], r["start"])
            fail_p = 0.06 if dag == WIDE else 0.1
            failing = rng.choice(tasks[1:] if dag == WIDE else tasks)[0] if rnd() < fail_p else None
            ends = {}
            doomed = set()
            for task, ups in tasks:
                if failing and any(u in doomed for u in ups):
                    doomed.add(task)
                    at = max(ends[u] for u in ups) + 200 + int(rnd() * 2_800)
                    ends[task] = at
                    ti_rows.append((run_key, task, "upstream_failed", 0, None, ts(at), None))
                    continue
                began = (max(ends[u] for u in ups) if ups else r["began"]) + 200 + int(rnd() * 4_800)
                end = began + int(WIDE_SECONDS.get(task, 2.0) * (500_000 + rnd() * 1_100_000))
                ends[task] = end
                if task == failing:
                    doomed.add(task)
                    ti_rows.append((run_key, task, "failed", 1, ts(began), ts(end), "command exited with code 1"))
                else:
                    ti_rows.append((run_key, task, "success", 1, ts(began), ts(end), None))
            state = "failed" if failing else "success"
            run_rows.append((run_key, dag, rid, r["type"], state, ts(r["start"]), ts(r["start"]),
                             ts(r["end"]), r["conf"], ts(r["queued"]), ts(r["began"]),
                             ts(max(ends.values()) + 500 + int(rnd() * 4_500)), None, owner,
                             r["version"], "%032x" % rng.getrandbits(128)))
            stats["runs"] += 1
            stats["failed"] += state == "failed"
            stats["task_instances"] += len(tasks)
            if dag == WIDE:
                if failing and "old_failed" not in picks and run_key > 100:
                    picks["old_failed"], picks["failed_task"] = rid, failing
                if run_key <= 100:
                    picks["old_run"], picks["old_run_key"] = rid, run_key
                picks["recent_run" if not failing else "recent_failed"] = rid
                picks["recent_run_key" if not failing else "recent_failed_key"] = run_key
                picks["all"] = picks.get("all", 0) + 1
                if picks["all"] == 1000:
                    picks["before"], picks["before_id"] = ts(r["start"]), rid
            elif state == "success" and self.small_runs[dag] and len(self.small_runs[dag]) >= 10:
                picks["small"] = dag
            if len(ti_rows) >= 50_000:
                flush()
        flush()
        # Tries and log lines follow from the task instances: generated by SQLite, which is
        # many times faster than binding millions of rows from Python. One try per instance
        # that ran; its log is what a noop try writes (a failed one got a command's error).
        stats["tries"] = conn.execute(
            "INSERT INTO task_try (run, task_id, try_number, state, start_date, end_date, error, "
            "interrupted) SELECT run, task_id, 1, state, start_date, end_date, error, 0 "
            "FROM task_instance WHERE try_number = 1 ORDER BY rowid").rowcount
        conn.execute("DROP INDEX task_log_by_seq")
        before = conn.total_changes
        conn.execute(
            "WITH line (state, seq, level, message) AS (VALUES "
            "('success', 1, 'INFO', NULL), ('success', 2, 'INFO', 'task succeeded'), "
            "('failed', 1, 'INFO', NULL), "
            "('failed', 2, 'STDERR', 'psql: error: connection to server failed: timeout expired'), "
            "('failed', 3, 'ERROR', 'task failed: command exited with code 1')) "
            "INSERT INTO task_log (run, task_id, try_number, seq, ts, level, message) "
            "SELECT t.run, t.task_id, 1, l.seq, CASE l.seq WHEN 1 THEN t.start_date ELSE t.end_date END, "
            "l.level, COALESCE(l.message, 'starting noop task ' || t.task_id || ' (try 1) of ' "
            "|| r.dag_id || ' run ' || r.run_id) "
            "FROM task_try t JOIN dag_run r ON r.id = t.run JOIN line l ON l.state = t.state "
            "ORDER BY t.rowid, l.seq")
        # (`rowcount` is -1 for a statement starting with WITH.)
        stats["log_lines"] = conn.total_changes - before
        # Rebuilt as migration 4 defines it (faster than maintaining it row by row).
        conn.execute("CREATE UNIQUE INDEX task_log_by_seq ON task_log (run, task_id, try_number, seq)")
        stats["instances"] = len(instances)
        return stats, picks


def seed_store(seed: Seed, binary: Path, folder: Path) -> dict:
    """Creates `orchestrator.db` in `folder` (schema by the binary, rows from Python)."""
    env = dict(os.environ, RUST_LOG="warn")
    subprocess.run([str(binary), "runs", "list", "-o", "json"], cwd=folder, env=env, check=True,
                   capture_output=True, text=True)
    conn = sqlite3.connect(folder / "orchestrator.db", isolation_level=None)
    # No journal while seeding (a failed seed is thrown away): WAL would write every page
    # twice. The database goes back to WAL, as the store keeps it, at the end.
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -200000")
    conn.execute("BEGIN")
    stats, picks = seed.rows(conn)
    conn.execute("COMMIT")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()
    return {"stats": stats, "picks": picks}


def cli_json(binary: Path, folder: Path, *args):
    out = subprocess.run([str(binary), *args], cwd=folder, env=dict(os.environ, RUST_LOG="warn"),
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"`orchestrator {' '.join(args)}` failed ({out.returncode}):\n{out.stderr}")
    return json.loads(out.stdout) if "-o" in args else out.stdout


def validate(binary: Path, folder: Path, picks: dict, n_dags: int):
    """The CLI reads the seeded rows back: a row it rejects is a bug in the seed."""
    out = cli_json(binary, folder, "dags", "validate")
    assert f"{n_dags} DAG(s) valid, 0 error(s)" in out, out
    newest = cli_json(binary, folder, "runs", "list", "--dag", WIDE, "--limit", "5", "-o", "json")
    assert len(newest) == 5 and picks["recent_run"] in {r["run_id"] for r in newest}, newest
    cli_json(binary, folder, "runs", "list", "--limit", "200", "-o", "json")
    for run in (picks["recent_run"], picks["recent_failed"], picks["old_run"], picks["old_failed"]):
        shown = cli_json(binary, folder, "runs", "show", run, "--dag", WIDE, "-o", "json")
        assert len(shown["task_instances"]) == len(WIDE_TASKS), shown
    log = cli_json(binary, folder, "logs", picks["old_failed"], picks["failed_task"], "--dag", WIDE,
                   "--try", "1", "-o", "json")
    assert "task failed" in json.dumps(log), log
    shown = cli_json(binary, folder, "runs", "list", "--dag", picks["small"], "-o", "json")
    assert shown, picks["small"]


# ---- server and measurement ---------------------------------------------------------------


class Server:
    def __init__(self, binary: Path, folder: Path):
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [str(binary), "serve", "--bind", "127.0.0.1:0"], cwd=folder,
            env=dict(os.environ, RUST_LOG="info"), stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)
        self.addr = None
        self.problems = []
        for line in self.proc.stderr:
            if "serving on http://" in line:
                self.addr = line.split("serving on http://")[1].split()[0]
                break
        if self.addr is None:
            raise RuntimeError(f"serve exited ({self.proc.wait()}) before listening")
        threading.Thread(target=self._drain, daemon=True).start()
        host, port = self.addr.rsplit(":", 1)
        self.host, self.port = host, int(port)
        deadline = time.time() + 120
        while True:
            try:
                c = http.client.HTTPConnection(self.host, self.port, timeout=5)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError("serve never answered /health")
            time.sleep(0.05)
        self.startup_ms = (time.perf_counter() - self.started) * 1000

    def _drain(self):
        for line in self.proc.stderr:
            if " ERROR " in line or " WARN " in line:
                self.problems.append(line.rstrip())

    def memory(self):
        status = Path(f"/proc/{self.proc.pid}/status").read_text().splitlines()
        get = lambda k: next(int(l.split()[1]) for l in status if l.startswith(k)) / 1024
        return get("VmRSS"), get("VmHWM")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def pct(values, p):
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(p / 100 * (len(values) - 1))))
    return values[k]


class Client:
    def __init__(self, host, port, headers=None):
        self.host, self.port = host, port
        self.headers = headers or {}
        self.conn = None

    def get(self, path):
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=300)
            try:
                start = time.perf_counter()
                self.conn.request("GET", path, headers=self.headers)
                resp = self.conn.getresponse()
                body = resp.read()
                elapsed = (time.perf_counter() - start) * 1000
                if resp.getheader("connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return resp.status, len(body), elapsed
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise


def measure(client: Client, path: str, expect: int, requests: int, warmup: int, budget: float):
    status, size, first = client.get(path)
    if status != expect:
        return dict(status=status, bytes=size, first_ms=first)
    # A page taking seconds (the list page before the fix) gets fewer warm-ups.
    for _ in range(max(0, warmup - 1) if first < budget * 100 else 0):
        client.get(path)
    times = []
    deadline = time.perf_counter() + budget
    while len(times) < requests and (len(times) < 5 or time.perf_counter() < deadline):
        status, size, elapsed = client.get(path)
        times.append(elapsed)
    return dict(status=status, bytes=size, first_ms=first, n=len(times), p50=pct(times, 50),
                p99=pct(times, 99), min=min(times), max=max(times))


def fill(path: str, values: dict) -> str:
    return path.format(**{k: quote(str(v), safe="") for k, v in values.items()})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=100_000, help="runs of the 10-task DAG")
    ap.add_argument("--dags", type=int, default=500, help="DAGs in the folder, wide10 included")
    ap.add_argument("--seed", type=int, default=10, help="random seed of the generated history")
    ap.add_argument("--requests", type=int, default=50, help="timed requests per page")
    ap.add_argument("--warmup", type=int, default=3, help="untimed requests per page first")
    ap.add_argument("--budget", type=float, default=20.0,
                    help="seconds per page before stopping early (at least 5 requests)")
    ap.add_argument("--pages", default="", help="only pages whose label or path contains this")
    ap.add_argument("--reseed", action="store_true", help="ignore the cached store in bench/out")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    ap.add_argument("--browse", action="store_true",
                    help="seed, start serve and wait (Ctrl-C ends) instead of measuring")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--auth", choices=["none", "token", "basic"], default="none",
                    help="add a viewer user and send a bearer token or basic credentials")
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    ap.add_argument("--binary", default=str(target / "release/orchestrator"),
                    help="[default: $CARGO_TARGET_DIR or target/, release build; built if missing]")
    args = ap.parse_args()
    binary = Path(args.binary).resolve()
    if not binary.exists():
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)

    t0, cpu0 = time.perf_counter(), time.process_time()
    seed = Seed(args)
    key = seed.key()
    cached = OUT / f"dashboard-{key}.db"
    meta_path = OUT / f"dashboard-{key}.json"
    scratch = Path(tempfile.mkdtemp(prefix="orchestrator-dashboard-"))
    server = None
    try:
        seed.write_dags(scratch)
        db = scratch / "orchestrator.db"
        if cached.exists() and meta_path.exists() and not args.reseed:
            shutil.copyfile(cached, db)
            meta = json.loads(meta_path.read_text())
            seeding = (f"cached ({cached.relative_to(ROOT)}; seeded in {meta['seconds']:.1f} s, "
                       f"{meta['cpu_seconds']:.1f} s CPU)")
        else:
            meta = seed_store(seed, binary, scratch)
            meta["seconds"] = time.perf_counter() - t0
            meta["cpu_seconds"] = time.process_time() - cpu0
            validate(binary, scratch, meta["picks"], args.dags)
            OUT.mkdir(parents=True, exist_ok=True)
            # One cached store at a time: each is half a gigabyte.
            for stale in OUT.glob("dashboard-*"):
                stale.unlink()
            tmp = cached.with_suffix(".tmp")
            shutil.copyfile(db, tmp)
            tmp.rename(cached)
            meta_path.write_text(json.dumps(meta, indent=1))
            seeding = (f"seeded in {meta['seconds']:.1f} s, {meta['cpu_seconds']:.1f} s CPU (validated by "
                       f"the CLI; cached as {cached.relative_to(ROOT)})")
        picks = meta["picks"]
        stats = meta["stats"]
        values = dict(picks, wide=WIDE, task="merge", tag="finance", search="ledger",
                      offset=args.runs - 1000, page=(args.runs - 1000) // 25)
        db_mb = db.stat().st_size / 2**20
        print(f"store: {stats['runs']:,} runs ({stats['failed']:,} failed), "
              f"{stats['task_instances']:,} task instances, {stats['tries']:,} tries, "
              f"{stats['log_lines']:,} log lines, {args.dags} DAGs; {db_mb:.0f} MB; {seeding}")

        password = "bench password"
        if args.auth != "none":
            subprocess.run([str(binary), "users", "add", "bench", "--role", "viewer"], cwd=scratch,
                           input=password + "\n", text=True, check=True, capture_output=True,
                           env=dict(os.environ, RUST_LOG="warn"))
        server = Server(binary, scratch)
        headers = {}
        if args.auth == "token":
            c = http.client.HTTPConnection(server.host, server.port, timeout=30)
            c.request("POST", "/auth/token", json.dumps({"username": "bench", "password": password}),
                      {"Content-Type": "application/json"})
            reply = c.getresponse()
            headers["Authorization"] = "Bearer " + json.loads(reply.read())["access_token"]
        elif args.auth == "basic":
            import base64
            pair = base64.b64encode(f"bench:{password}".encode()).decode()
            headers["Authorization"] = "Basic " + pair
        with sqlite3.connect(db) as c:
            runs_before = c.execute("SELECT COUNT(*) FROM dag_run").fetchone()[0]
        time.sleep(2)
        idle_rss, _ = server.memory()
        base = f"http://{server.addr}"
        if args.browse:
            print(f"serving {scratch} on {base}  (e.g. {base}{fill('/dags/{wide}/runs/{recent_run}', values)})")
            print("Ctrl-C to stop")
            try:
                server.proc.wait()
            except KeyboardInterrupt:
                pass
            return

        client = Client(server.host, server.port, headers)
        results = []
        for label, template, *expect in PAGES:
            if args.pages and args.pages not in label and args.pages not in template:
                continue
            path = fill(template, values)
            try:
                r = measure(client, path, (expect or [200])[0], args.requests, args.warmup, args.budget)
            except Exception as e:  # a crash or hang of one page must not end the bench
                r = dict(status=f"error: {e}", bytes=0)
            results.append(dict(label=label, path=path, **r))
            shown = path if len(path) < 70 else path[:67] + "..."
            if r.get("n"):
                print(f"  {label:<34} {r['p50']:9.2f} ms p50  {r['p99']:9.2f} ms p99  {shown}", flush=True)
            else:
                print(f"  {label:<34} {str(r['status']):>12}  {shown}", flush=True)
        rss, hwm = server.memory()
        with sqlite3.connect(db) as c:
            runs_after = c.execute("SELECT COUNT(*) FROM dag_run").fetchone()[0]
    finally:
        if server:
            server.stop()
        if args.keep:
            print(f"scratch folder kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)

    print()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
          f"binary {binary.relative_to(ROOT) if binary.is_relative_to(ROOT) else binary}")
    print(f"serve start-up to /health: {server.startup_ms:.0f} ms; RSS idle {idle_rss:.1f} MB, "
          f"after the pages {rss:.1f} MB (peak {hwm:.1f} MB)")
    if runs_after != runs_before:
        print(f"WARNING: {runs_after - runs_before} run(s) created while measuring (the scheduler was not idle)")
    print()
    print("| page | path | status | n | p50 ms | p99 ms | min–max ms | first ms | bytes |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        path = r["path"].replace("|", "\\|")
        if r.get("n"):
            print(f"| {r['label'].strip()} | `{path}` | {r['status']} | {r['n']} | {r['p50']:.2f} | "
                  f"{r['p99']:.2f} | {r['min']:.2f}–{r['max']:.2f} | {r['first_ms']:.1f} | {r['bytes']:,} |")
        else:
            print(f"| {r['label'].strip()} | `{path}` | {r['status']} | | | | | | {r['bytes']:,} |")
    if server.problems:
        print(f"\nserve logged {len(server.problems)} warning(s)/error(s), first ones:")
        for line in server.problems[:5]:
            print("  " + line[:300])
    if args.json:
        Path(args.json).write_text(json.dumps(dict(
            store=stats, seeding=seeding, startup_ms=server.startup_ms, idle_rss_mb=idle_rss,
            rss_mb=rss, peak_rss_mb=hwm, pages=results), indent=1))


if __name__ == "__main__":
    main()
