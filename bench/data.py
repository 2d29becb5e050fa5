#!/usr/bin/env python3
"""Data-task benchmarks (issue: data tasks, item 8).

For each scale (S = 1k drugs x 100k publications, M = 5k x 1M, L = 10k x 5M, XL = 10k x 20M:
about 4 GB of input and 17 GB more on disk while it runs; benchmark only), generates
sample-like dirty data (bench/gen_drug_data.py, cached under bench/out/), then runs the shipped drugs pipeline with the release binary and reports wall
time and peak RSS of import, load and drug_graph separately (each its own `orchestrator run`)
and end to end (`orchestrator run drugs_orchestrator`, all in one process), with MB/s and
publications/s.

`--memory-budget 256MiB` sets the `drug_graph` task's `memory_budget` (default: the task's own,
1GiB); a budget below what the build holds makes it spill to disk, and the table's peak RSS
shows whether it stayed within the budget.

`--files 100000,1000000` instead times `import` of a glob over that many small CSV files (two
rows each, all in one folder: the worst case for the listing; `--per-folder 1000` spreads
them over folders, `in/*/*.csv`), generated under `--tmp` and removed afterwards, and reports
files/s and peak RSS. `--big-file 1,10` times `import` of one
CSV file of that many GB, and reports MB/s and peak RSS (which should not grow with the size).
Both need free space under `--tmp` (a 10 GB file and its Parquet: about 15 GB); they check it
first.

Usage: python3 bench/data.py [--scales S,M,L] [--repeats 1] [--memory-budget 256MiB]
                             [--binary target/release/orchestrator]
       python3 bench/data.py --files 100000,1000000 [--per-folder 1000] [--repeats 3] [--tmp /tmp]
       python3 bench/data.py --big-file 1,10 [--repeats 1] [--tmp /tmp]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCALES = {"S": (1_000, 100_000), "M": (5_000, 1_000_000), "L": (10_000, 5_000_000),
          "XL": (10_000, 20_000_000)}


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


def import_project(folder: Path, source: Path):
    """A project with one DAG, `imp`, importing `source` into table `t`."""
    (folder / "dags").mkdir(parents=True, exist_ok=True)
    (folder / "dags/imp.yaml").write_text(
        f"dag_id: imp\ntasks:\n  t: {{type: import, source: '{source}', table: t}}\n")


def need_space(where: Path, gb: float):
    free = shutil.disk_usage(where).free / 1e9
    if free < gb:
        sys.exit(f"{where} has {free:.0f} GB free; this needs about {gb:.0f} GB")


def imported_files(folder: Path, binary: Path) -> str:
    """The import's own summary line from its log (rows and files), to check the work done."""
    out = subprocess.run([str(binary), "logs", latest_run(folder, binary), "t", "-o", "json"],
                         cwd=folder, capture_output=True, text=True, check=True,
                         env=dict(os.environ, ORCHESTRATOR_BIND="127.0.0.1:1"))
    lines = [line["message"] for line in json.loads(out.stdout) if "imported" in line["message"]]
    return lines[-1] if lines else "?"


def latest_run(folder: Path, binary: Path) -> str:
    out = subprocess.run([str(binary), "runs", "list", "--dag", "imp", "-o", "json"], cwd=folder,
                         capture_output=True, text=True, check=True,
                         env=dict(os.environ, ORCHESTRATOR_BIND="127.0.0.1:1"))
    return json.loads(out.stdout)[0]["run_id"]


def timed_imports(binary: Path, folder: Path, source: Path, repeats: int, label):
    """`repeats` imports of `source` in a project in `folder`: (walls, peak RSS MBs); the
    import's own summary of the last one goes to stderr, to check the work done."""
    import_project(folder, source)
    runs = [timed(binary, ["run", "imp"], folder) for _ in range(repeats)]
    print(f"{label}: {imported_files(folder, binary)}", file=sys.stderr)
    return [r[0] for r in runs], [r[1] for r in runs]


def many_files(binary: Path, counts, repeats: int, tmp: Path, per_folder: int):
    """`import` of a glob over `count` small files, for each count: all in one folder, or
    `per_folder` to a folder (`in/*/*.csv`)."""
    layout = f"{per_folder:,} per folder" if per_folder else "one folder"
    print(f"| files ({layout}) | wall s (median) | range s | files/s (median) "
          "| peak RSS MB (median) | range MB |")
    print("|---|---|---|---|---|---|")
    for count in counts:
        need_space(tmp, count * 8e-6 + 2)  # a 4 KiB block and an inode each, and the table
        folder = Path(tempfile.mkdtemp(prefix="orchestrator-files-", dir=tmp))
        try:
            inputs = folder / "in"
            inputs.mkdir()
            start = time.perf_counter()
            for i in range(count):
                where = inputs
                if per_folder:
                    where = inputs / f"d{i // per_folder:06d}"
                    if i % per_folder == 0:
                        where.mkdir()
                with open(where / f"f{i:08d}.csv", "w") as f:
                    f.write(f"id,name,score\n{2 * i},n{i},{i % 97}.5\n{2 * i + 1},m{i},{i % 89}\n")
            print(f"generated {count} files in {time.perf_counter() - start:.0f} s", file=sys.stderr)
            walls, rss = timed_imports(binary, folder, inputs / ("*/*.csv" if per_folder
                                                                  else "*.csv"), repeats, count)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        med = statistics.median(walls)
        print(f"| {count:,} | {med:.2f} | {min(walls):.2f}–{max(walls):.2f} | {count / med:,.0f} "
              f"| {statistics.median(rss):.0f} | {min(rss):.0f}–{max(rss):.0f} |")
        sys.stdout.flush()


def big_file(binary: Path, sizes_gb, repeats: int, tmp: Path):
    """`import` of one CSV file of each size."""
    print("| file GB | wall s (median) | range s | MB/s (median) | peak RSS MB (median) | range MB |")
    print("|---|---|---|---|---|---|")
    for gb in sizes_gb:
        need_space(tmp, gb * 1.6 + 2)  # the file, its Parquet (well under half) and some room
        folder = Path(tempfile.mkdtemp(prefix="orchestrator-bigfile-", dir=tmp))
        try:
            source = folder / "big.csv"
            start, size, chunk = time.perf_counter(), 0, 0
            with open(source, "w") as f:
                f.write("id,drug,journal,score,date,title\n")
                while size < gb * 1e9:
                    rows = "".join(
                        f"{chunk}-{i},DRUG{i % 5000},Journal {i % 733},{(i * 7) % 1000}.25,"
                        f"2020-{1 + i % 12:02d}-{1 + i % 28:02d},A study of drug {i % 5000} "
                        f"in {chunk % 1000} patients\n" for i in range(10_000))
                    size += f.write(rows)
                    chunk += 1
            print(f"generated {size / 1e9:.1f} GB in {time.perf_counter() - start:.0f} s",
                  file=sys.stderr)
            walls, rss = timed_imports(binary, folder, source, repeats, f"{gb} GB")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        med = statistics.median(walls)
        print(f"| {gb} | {med:.1f} | {min(walls):.1f}–{max(walls):.1f} | {size / 1e6 / med:.0f} "
              f"| {statistics.median(rss):.0f} | {min(rss):.0f}–{max(rss):.0f} |")
        sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scales", default="S,M,L")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--memory-budget", default=None, help="drug_graph memory_budget, e.g. 256MiB")
    ap.add_argument("--files", default=None, help="import globs of this many small files, e.g. 100000,1000000")
    ap.add_argument("--per-folder", type=int, default=0,
                    help="with --files: this many files to a folder (default: all in one)")
    ap.add_argument("--big-file", default=None, help="import one CSV file of this many GB, e.g. 1,10")
    ap.add_argument("--tmp", default=tempfile.gettempdir(), help="where --files and --big-file write")
    ap.add_argument("--binary", default=str(ROOT / "target/release/orchestrator"))
    a = ap.parse_args()
    binary = Path(a.binary).resolve()
    if not binary.exists():
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    if a.files or a.big_file:
        if a.files:
            many_files(binary, [int(n) for n in a.files.split(",")], a.repeats, Path(a.tmp),
                       a.per_folder)
        if a.big_file:
            big_file(binary, [float(g) if "." in g else int(g) for g in a.big_file.split(",")],
                     a.repeats, Path(a.tmp))
        return
    print(f"drug_graph memory_budget: {a.memory_budget or 'default (1GiB)'}")
    print("| scale | step | wall s (median) | range s | peak RSS MB | throughput |")
    print("|---|---|---|---|---|---|")
    for scale in a.scales.split(","):
        data, pubs = generate(scale)
        # Staging, warehouse and graph take about 3.5 times the input, plus the spill.
        need_space(Path(tempfile.gettempdir()), sum(f.stat().st_size for f in data.iterdir()) * 4.5e-9 + 1)
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
