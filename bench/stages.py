"""What each stage of the default run costs: wall time, CPU time, peak memory, and imports.

    python -m bench.stages [--ref HEAD] [--repeats 3] [--repro-only]

Clones ``--ref`` from this repository into a temporary directory and, with this checkout's
environment (``.venv``) and a new MLflow store:

1. times a full ``dvc repro`` (the fresh-clone run a new user makes) and a no-op ``dvc repro``;
2. runs every stage's command from ``dvc.lock`` again, in pipeline order, ``--repeats`` times,
   each as its own process, measuring wall time, CPU seconds (user + system) and peak resident
   memory of that process and its children (``os.wait4``);
3. runs each command once more with ``PYTHONPROFILEIMPORTTIME=1`` and sums the time spent in
   imports (``-X importtime``'s top-level entries).

Prints a Markdown table of medians (docs/scale.md's), the sum over stages, and what ``dvc repro``
itself took. A benchmark: it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _env(repo: Path, stage: str | None = None) -> dict[str, str]:
    # as a user's shell runs it: no store or stage of this checkout's, and Python caches bytecode
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "MLFLOW_")) and k != "PYTHONDONTWRITEBYTECODE"
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    if stage:  # what DVC sets for a stage's command
        env.update(DVC_ROOT=str(repo), DVC_STAGE=stage)
    return env


def measure(cmd: str, cwd: Path, env: dict[str, str]) -> tuple[float, float, float, str]:
    """Wall s, CPU s, peak RSS MB of ``cmd`` (a shell command) and everything it started; stderr."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        ["bash", "-c", cmd], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        sys.exit(f"{cmd} failed ({proc.returncode}):\n{err[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, err


def import_seconds(importtime_log: str) -> float:
    """Sum of the top-level entries of ``-X importtime`` (their cumulative microseconds)."""
    total = 0
    for line in importtime_log.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\s*)(\S+)", line)
        if m and not m.group(2):  # depth 0: no indent after the bar
            total += int(m.group(1))
    return total / 1e6


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", default="HEAD")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--repro-only", action="store_true", help="time the fresh clone's dvc repro (and a no-op one) only")
    args = ap.parse_args(argv)
    repo = Path(tempfile.mkdtemp(prefix="bench-stages-")) / "repo"
    try:
        subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
        subprocess.run(["git", "checkout", "-q", args.ref], cwd=repo, check=True)
        full = measure("dvc repro", repo, _env(repo))
        noop = measure("dvc repro", repo, _env(repo))
        print(
            f"fresh clone, new MLflow store: dvc repro {full[0]:.1f} s wall, {full[1]:.1f} CPU s, "
            f"peak {full[2]:.0f} MB; no-op dvc repro {noop[0]:.2f} s"
        )
        if args.repro_only:
            return
        stages = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
        order = [s for s in stages if not s.startswith(("baselines", "evaluate", "report"))]
        order += [s for s in ("baselines", "evaluate", "report") if s in stages]
        rows, totals = [], [0.0, 0.0]
        for name in order:
            cmd = stages[name]["cmd"]
            runs = [measure(cmd, repo, _env(repo, name)) for _ in range(args.repeats)]
            traced = measure(cmd, repo, {**_env(repo, name), "PYTHONPROFILEIMPORTTIME": "1"})
            wall, cpu, rss = (statistics.median(r[i] for r in runs) for i in range(3))
            imports = import_seconds(traced[3])
            totals[0] += wall
            totals[1] += cpu
            rows.append(f"| {name} | {wall:.2f} | {cpu:.2f} | {rss:.0f} | {imports:.2f} |")
        print(f"\nmedian of {args.repeats} runs of each stage's command ({os.cpu_count()} cores)\n")
        print("| stage | wall s | CPU s | peak MB | imports s |")
        print("| --- | --- | --- | --- | --- |")
        print("\n".join(rows))
        print(f"| all stages | {totals[0]:.2f} | {totals[1]:.2f} | | |")
    finally:
        shutil.rmtree(repo.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
