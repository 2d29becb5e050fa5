#!/usr/bin/env python3
"""Restart torture at scale (issue: crash safety, item 10).

A thin wrapper around the suite's torture test (tests/integration/torture.rs): it runs the
same workload and the same invariant checks with many more stops of `serve` (`kill -9` and
SIGTERM in turn), against the release build, and summarises the `torture stats:` line the
test prints. Keeping one implementation of the workload and the checks means the bench can
never check less, or something else, than CI does.

Reports rounds, runs, tries, interrupted tries, wall time, and time to recovery after each
kind of stop: from the restart to the first task start ("progress"), and to the first retry
of a try the stop cut ("resume"; after `kill -9` this includes waiting for the dead
instance's lease to lapse). Exits non-zero on any invariant violation or test failure; the
test then keeps the project folder (ledger, state, warehouse, every serve log) and says
where.

Usage: python3 bench/torture.py [--rounds 100] [--seed N] [--debug]
  --debug  use the debug build (quick proof that the wrapper works; timings not meaningful)
  CARGO_TARGET_DIR is honoured as usual.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST = "torture::every_run_succeeds_exactly_once_per_try_while_serve_is_killed_and_restarted"
STATS = "torture stats: "


def fmt(s):
    if not s:
        return "| – | – | – |"
    return f"| {s['n']} | {s['median']:.0f} | {s['min']:.0f}–{s['max']:.0f} |"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--debug", action="store_true")
    args = ap.parse_args()
    env = dict(os.environ, ORCHESTRATOR_TORTURE_ROUNDS=str(args.rounds))
    if args.seed is not None:
        env["ORCHESTRATOR_TORTURE_SEED"] = str(args.seed)
    base = ["cargo", "test", "--test", "integration"] + ([] if args.debug else ["--release"])
    # Compile first, so the wall time below is the torture alone.
    subprocess.run(base + ["--no-run"], cwd=ROOT, env=env, check=True)
    start = time.monotonic()
    proc = subprocess.Popen(base + [TEST, "--", "--exact", "--nocapture"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    stats = None
    for line in proc.stdout:
        sys.stdout.write(line)
        if line.startswith(STATS):
            stats = json.loads(line[len(STATS):])
    code = proc.wait()
    wall = time.monotonic() - start

    print()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
          f"{'debug' if args.debug else 'release'} build")
    if stats is None:
        print(f"FAILED: the test exited {code} before its checks ran (see its output above)")
        sys.exit(1)
    print(f"rounds {stats['rounds']}, runs {stats['runs']}, tries {stats['tries']} "
          f"({stats['interrupted_tries']} interrupted, {stats['shell_tries_unfinished']} shell "
          f"tries cut before their end), wall {wall:.1f} s")
    print("| time to recovery after restart | n | median ms | range ms |")
    print("|---|---|---|---|")
    for name, key in [("first task start, after kill -9", "progress_ms_after_kill9"),
                      ("first task start, after SIGTERM", "progress_ms_after_sigterm"),
                      ("retry of a cut try, after kill -9", "resume_ms_after_kill9"),
                      ("retry of a cut try, after SIGTERM", "resume_ms_after_sigterm")]:
        print(f"| {name} {fmt(stats[key])}")
    violations = stats["violations"]
    print(f"violations: {violations}")
    json.dump(dict(stats, wall_s=wall), sys.stderr)
    print(file=sys.stderr)
    sys.exit(1 if violations or code else 0)


if __name__ == "__main__":
    main()
