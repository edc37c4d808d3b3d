"""Two training jobs at once, as `dvc queue start -j 2` runs them: torch's threads per job.

    python -m bench.threads [--loss focal] [--repeats 3]

Prepares the default data in a fresh clone of this repository (``dvc repro plan``), then times
one loss's train stage command (median of ``--repeats``):

- **one job alone**, ``train.threads: auto`` (the cores this process may use), and with one thread;
- **two jobs at once, each with every core's thread** (``train.threads`` set to the core
  count: what torch does by default, and what ``auto`` gave every job before it knew queues);
- **two jobs at once as queue workers**: each runs from its own copy under
  ``.dvc/tmp/exps/`` as ``dvc queue`` workers do, where ``auto`` gives one thread each.

For the pairs the time is until both have finished. Prints a Markdown table; asserts nothing.
"""

from __future__ import annotations

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

ROOT = Path(__file__).resolve().parents[1]


def _env(repo: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "MLFLOW_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(repo)
    return env


def _job(repo: Path, plan: Path, cwd: Path, tag: str) -> list[str]:
    out = repo / "bench-out" / tag
    return [
        sys.executable,
        "-m",
        "stages.train",
        "--plan",
        str(plan),
        "--data",
        str(repo / "data/prepared"),
        "--models",
        str(out / "models"),
        "--predictions",
        str(out / "predictions"),
        "--no-progress",
    ]


def _run_together(jobs: list[tuple[list[str], Path]], env: dict[str, str]) -> float:
    start = time.perf_counter()
    procs = [
        subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for cmd, cwd in jobs
    ]
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            sys.exit(f"a job failed:\n{err[-2000:]}")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loss", default="focal")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    cores = len(os.sched_getaffinity(0))
    repo = Path(tempfile.mkdtemp(prefix="bench-threads-")) / "repo"
    try:
        subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
        env = _env(repo)
        subprocess.run(["dvc", "repro", "-q", "plan"], cwd=repo, env=env, check=True, capture_output=True)
        plan_auto = repo / "outputs/plans" / f"{args.loss}.json"
        plan = json.loads(plan_auto.read_text())
        plan_all = repo / f"plan-{cores}-threads.json"
        plan_all.write_text(json.dumps({**plan, "train": {**plan["train"], "threads": cores}}))
        plan_one = repo / "plan-1-thread.json"
        plan_one.write_text(json.dumps({**plan, "train": {**plan["train"], "threads": 1}}))
        workers = []
        for name in ("w1", "w2"):
            workers.append(repo / ".dvc/tmp/exps" / name)
            workers[-1].mkdir(parents=True)
        scenarios = {
            f"one job alone, threads auto ({cores})": lambda: _run_together(
                [(_job(repo, plan_auto, repo, "a"), repo)], env
            ),
            "one job alone, 1 thread": lambda: _run_together([(_job(repo, plan_one, repo, "a1"), repo)], env),
            f"two jobs at once, {cores} threads each": lambda: _run_together(
                [(_job(repo, plan_all, repo, f"b{i}"), repo) for i in range(2)], env
            ),
            "two jobs at once as queue workers, threads auto (1 each)": lambda: _run_together(
                [(_job(repo, plan_auto, w, f"c{i}"), w) for i, w in enumerate(workers)], env
            ),
        }
        print(
            f"train@{args.loss} ({len(plan['runs'])} models, default data), {cores} cores, median of {args.repeats}\n"
        )
        print("| scenario | wall s |\n| --- | --- |")
        for label, go in scenarios.items():
            print(f"| {label} | {statistics.median(go() for _ in range(args.repeats)):.2f} |")
    finally:
        shutil.rmtree(repo.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
