"""What the whole pipeline costs as the rows grow: wall time, CPU time and peak memory per stage.

    python -m bench.scale [--rows 10000 100000 1000000 | --case classes | --case columns] [--ref HEAD]
                          [--set train.batch_size=64 ...]

For each row count: clones ``--ref`` from this repository into a temporary directory, sets
``data.source: synthetic`` with ``data.synthetic.n_samples`` rows (32 features, 10 classes,
imbalance ratio 10; the other parameters as committed, ``--set`` overrides any), and with this
checkout's environment (``.venv``) and a new MLflow store runs the pipeline stage by stage,
``dvc repro --single-item <stage>`` in the graph's order, measuring each one's wall time, CPU
seconds (user + system, of the process and everything it started) and peak resident memory: of
its largest process (``os.wait4``), and of the whole process tree at once (workers included,
sampled every 0.2 s). Then a no-op ``dvc repro`` checks that nothing is left to run.

Prints a table per row count and one of wall times side by side, so that how each stage's
cost grows with the rows is visible. A benchmark: it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from bench.stages import _env

ROOT = Path(__file__).resolve().parents[1]
# The other axes: many classes on few rows, many columns (``--case``).
CASES = {
    "classes": (3_000, ["data.synthetic.n_classes=300", "data.synthetic.imbalance_ratio=4"]),
    "columns": (20_000, ["data.synthetic.n_features=200"]),
}


TREE_SAMPLE_S = 0.2  # how often the process tree's memory is summed


def _tree_peak(pid: int, done: threading.Event, peak: list[float]) -> None:
    """The largest sum of resident memory (MB) over ``pid`` and every process under it, sampled
    every :data:`TREE_SAMPLE_S` until ``done``: forked workers count together, as the machine
    holds them at once. An upper bound: pages a fork shares with its parent count twice."""
    import psutil

    while not done.wait(TREE_SAMPLE_S):
        try:
            root = psutil.Process(pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:  # the command has ended
            return
        total = 0
        for p in tree:
            try:
                total += p.memory_info().rss
            except psutil.Error:  # ended between the listing and the reading
                continue
        peak[0] = max(peak[0], total / 2**20)


def measure(cmd: list[str], cwd: Path, env: dict[str, str], log) -> tuple[float, float, float, float]:
    """Wall s, CPU s, peak RSS MB of the largest process and peak MB of the whole process tree
    of ``cmd`` and what it started; its output goes to ``log``."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    done, peak = threading.Event(), [0.0]
    sampler = threading.Thread(target=_tree_peak, args=(proc.pid, done, peak), daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    if os.waitstatus_to_exitcode(status):
        log.flush()
        sys.exit(f"{' '.join(cmd)} failed; its output: {log.name}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, max(peak[0], usage.ru_maxrss / 1024)


def _set(params: dict, assignment: str) -> None:
    key, _, value = assignment.partition("=")
    *path, last = key.split(".")
    node = params
    for part in path:
        node = node[part]
    node[last] = yaml.safe_load(value)


def stage_order(params: dict) -> list[str]:
    """The stages in an order ``dvc repro`` could run them (each after what it depends on)."""
    return [
        "prepare",
        "weights",
        "plan",
        *(f"train@{loss}" for loss in params["train"]["losses"]),
        "baselines",
        "decide",
        "evaluate",
        "report",
    ]


def run_scale(rows: int, ref: str, sets: list[str], workdir: Path) -> list[tuple[str, float, float, float, float]]:
    repo = workdir / f"rows-{rows}-{len(list(workdir.iterdir()))}"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
    subprocess.run(["git", "checkout", "-q", ref], cwd=repo, check=True)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"]["source"] = "synthetic"
    params["data"]["synthetic"]["n_samples"] = rows
    for assignment in sets:
        _set(params, assignment)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = _env(repo)
    measured = []
    with open(repo.with_suffix(".log"), "w") as log:
        for stage in stage_order(params):
            wall, cpu, rss, tree = measure(["dvc", "repro", "--single-item", stage], repo, env, log)
            measured.append((stage, wall, cpu, rss, tree))
            print(
                f"  {rows:>9,} rows  {stage:<26} {wall:8.1f} s wall {cpu:8.1f} CPU s {rss:6.0f} MB {tree:6.0f} MB tree",
                flush=True,
            )
        status = subprocess.run(["dvc", "status", "--quiet"], cwd=repo, env=env)
        if status.returncode:
            sys.exit(f"dvc status at {rows} rows: stages left to run after the stage-by-stage run")
    return measured


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument(
        "--case",
        choices=sorted(CASES),
        help="instead of --rows: " + "; ".join(f"{k}: {rows:,} rows, {', '.join(v)}" for k, (rows, v) in CASES.items()),
    )
    ap.add_argument("--ref", default="HEAD")
    ap.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a params.yaml override, e.g. train.batch_size=64 (repeatable)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the clones (their outputs and logs)")
    args = ap.parse_args(argv)
    if args.case:
        rows, case_sets = CASES[args.case]
        args.rows, args.sets = [rows], [*case_sets, *args.sets]
    workdir = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    print(f"{os.cpu_count()} cores; ref {args.ref}; overrides {args.sets or 'none'}; logs in {workdir}")
    results = {}
    try:
        for rows in args.rows:
            results[rows] = run_scale(rows, args.ref, args.sets, workdir)
            m = results[rows]
            print(
                f"\n{rows:,} rows\n\n| stage | wall s | CPU s | peak MB (largest process) | peak MB (process tree) |"
                "\n| --- | --- | --- | --- | --- |"
            )
            for stage, wall, cpu, rss, tree in m:
                print(f"| {stage} | {wall:.1f} | {cpu:.1f} | {rss:.0f} | {tree:.0f} |")
            print(
                f"| **all stages** | **{sum(r[1] for r in m):.1f}** | {sum(r[2] for r in m):.1f} | "
                f"{max(r[3] for r in m):.0f} | {max(r[4] for r in m):.0f} |\n",
                flush=True,
            )
        if len(results) > 1:
            counts = list(results)
            print("wall s by rows\n\n| stage | " + " | ".join(f"{r:,}" for r in counts) + " |")
            print("| --- |" + " --- |" * len(counts))
            for i, (stage, *_) in enumerate(results[counts[0]]):
                print(f"| {stage} | " + " | ".join(f"{results[r][i][1]:.1f}" for r in counts) + " |")
            print("| all stages | " + " | ".join(f"{sum(x[1] for x in results[r]):.1f}" for r in counts) + " |")
            print(
                "| peak MB (process tree) | "
                + " | ".join(f"{max(x[4] for x in results[r]):.0f}" for r in counts)
                + " |"
            )
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
