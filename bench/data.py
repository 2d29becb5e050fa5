#!/usr/bin/env python3
"""Data-task benchmarks (issue: data tasks, item 8).

For each scale, generates sample-like dirty data (bench/gen_drug_data.py, cached under
bench/out/), then runs the shipped drugs pipeline with the release binary and reports wall
time and peak RSS of import, load and drug_graph separately (each its own `orchestrator run`)
and end to end (`orchestrator run drugs_orchestrator`, all in one process), with MB/s and
publications/s.

`--memory-budget 256MiB` sets the `drug_graph` task's `memory_budget` (default: the task's own,
1GiB); a budget below what the build holds makes it spill to disk, and the table's peak RSS
shows whether it stayed within the budget.

Usage: python3 bench/data.py [--scales S,M,L] [--repeats 1] [--memory-budget 256MiB]
                             [--binary target/release/orchestrator]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCALES = {"S": (1_000, 100_000), "M": (5_000, 1_000_000), "L": (10_000, 5_000_000)}


def generate(scale):
    drugs, pubs = SCALES[scale]
    out = ROOT / "bench" / "out" / f"data-{scale}"
    if not (out / "clinical_trials.csv").exists():
        print(f"generating {scale}: {drugs} drugs x {pubs} publications ...", file=sys.stderr)
        subprocess.run([sys.executable, str(ROOT / "bench/gen_drug_data.py"), "--drugs", str(drugs),
                        "--publications", str(pubs), "--out", str(out)], check=True)
    return out, pubs


def timed(binary, args, cwd):
    """Runs one command; returns (seconds, peak RSS in MB) of that process alone."""
    start = time.perf_counter()
    proc = subprocess.Popen([str(binary), *args], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=dict(os.environ, ORCHESTRATOR_BIND="127.0.0.1:1"))
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"{args} failed: {proc.stderr.read().decode()}")
    return elapsed, usage.ru_maxrss / 1024


def project(folder: Path, data: Path, budget=None):
    for d in ("dags", "config"):
        shutil.copytree(ROOT / d, folder / d, dirs_exist_ok=True)
    if budget:
        process = folder / "dags/templates/process.yaml"
        process.write_text(process.read_text().rstrip("\n") + f"\n    memory_budget: {budget}\n")
    (folder / "config/projects.yaml").write_text(
        f"projects:\n  - name: drugs\n    dags: [import, load, process, orchestrator]\n"
        f"    vars: {{input_dir: {data}}}\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scales", default="S,M,L")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--memory-budget", default=None, help="drug_graph memory_budget, e.g. 256MiB")
    ap.add_argument("--binary", default=str(ROOT / "target/release/orchestrator"))
    a = ap.parse_args()
    binary = Path(a.binary).resolve()
    if not binary.exists():
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    print(f"drug_graph memory_budget: {a.memory_budget or 'default (1GiB)'}")
    print("| scale | step | wall s (median) | range s | peak RSS MB | throughput |")
    print("|---|---|---|---|---|---|")
    for scale in a.scales.split(","):
        data, pubs = generate(scale)
        mb = sum(f.stat().st_size for f in data.iterdir()) / 1e6
        results = {}
        for _ in range(a.repeats):
            folder = Path(tempfile.mkdtemp(prefix=f"orchestrator-data-{scale}-"))
            try:
                project(folder, data, a.memory_budget)
                for step, dag in (("import", "drugs_import"), ("load", "drugs_load"),
                                  ("drug_graph", "drugs_process"), ("end to end", "drugs_orchestrator")):
                    results.setdefault(step, []).append(timed(binary, ["run", dag], folder))
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        for step, runs in results.items():
            walls = [r[0] for r in runs]
            rss = max(r[1] for r in runs)
            med = statistics.median(walls)
            if step == "import":
                thr = f"{mb / med:.0f} MB/s ({mb:.0f} MB)"
            elif step in ("drug_graph", "end to end"):
                thr = f"{pubs / med / 1e6:.2f} M publications/s"
            else:
                thr = f"{pubs / med / 1e6:.2f} M rows/s"
            print(f"| {scale} | {step} | {med:.2f} | {min(walls):.2f}–{max(walls):.2f} | {rss:.0f} | {thr} |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
