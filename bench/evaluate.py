"""What evaluate's computation costs, two commits side by side on the same outputs.

    python -m bench.evaluate --repo DIR [--refs HEAD~1 HEAD] [--repeats 1] [--stage]

``DIR`` is a checkout whose pipeline has run up to decide (a ``python -m bench.scale --keep``
clone at 1 000 000 rows, say). For each ref, this repository's ``pipeline/`` at that commit is
exported to a temporary directory, and a fresh process with it on ``sys.path`` reads ``DIR``'s
plans, predictions and decision rules as the evaluate stage does and runs
:func:`pipeline.evaluation.evaluate.evaluate` and :func:`~pipeline.evaluation.evaluate.plot_data` on them: every
metric, interval, P(best), the audit, the tail trade and the weight curve, without MLflow and
without writing anything. Prints each ref's wall seconds, CPU seconds and peak memory, alternating
the refs ``--repeats`` times, and whether ``metrics.json`` and ``audit.json`` came out the same
(their md5). ``--stage`` runs the whole evaluate stage instead (its command from ``DIR``'s
``dvc.lock``, with that ref's ``stages/`` and ``pipeline/``), each time into a new MLflow store
in a temporary directory: what a run pays, model logging included (the store has no training
runs, so evaluate restores them from ``training.json`` first, the same work for every ref). It
writes ``DIR``'s evaluate outputs, the same bytes when the refs agree. A benchmark: it asserts
nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import hashlib, json, sys
sys.path.insert(0, sys.argv[1])
from pipeline.artifacts import load_decision_records, load_model_records
from pipeline.config import load_params
try:
    from pipeline.evaluation.evaluate import evaluate, plot_data
except ModuleNotFoundError:  # a commit from before pipeline/ had sub-packages
    from pipeline.evaluation import evaluate, plot_data
from pipeline.io import dumps, read_json
params = load_params("params.yaml")
meta = read_json("data/prepared/meta.json")
models = load_model_records("outputs/plans", "outputs/models", "reports/predictions", "baselines", meta)
records = load_decision_records(models, "reports/decisions", "outputs/decisions", meta["classes"])
losses = params.train.losses
ev = evaluate(records, meta, params.evaluate, reference_loss="ce" if "ce" in losses else losses[0])
plot_data(records, ev, meta["classes"])
print(json.dumps({"candidates": len(records),
                  "metrics": hashlib.md5(dumps(ev.metrics).encode()).hexdigest(),
                  "audit": hashlib.md5(dumps(ev.audit).encode()).hexdigest()}))
"""


STAGE = """
import runpy, sys
sys.path.insert(0, sys.argv[1])
sys.argv = ["stages.evaluate", *sys.argv[2:]]
runpy.run_module("stages.evaluate", run_name="__main__")
"""


def export(ref: str, where: Path) -> Path:
    """``pipeline/`` and ``stages/`` at ``ref``, unpacked under ``where``."""
    archive = subprocess.run(
        ["git", "archive", ref, "pipeline", "stages"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    where.mkdir(parents=True)
    with tempfile.TemporaryFile() as f:
        f.write(archive)
        f.seek(0)
        with tarfile.open(fileobj=f) as tar:
            tar.extractall(where, filter="data")
    return where


def run(code_dir: Path, repo: Path, stage: bool = False) -> tuple[float, float, float, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "MLFLOW_"))}
    env["PYTHONPATH"] = str(code_dir)
    if stage:
        import yaml

        cmd = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["evaluate"]["cmd"].split()
        store = Path(tempfile.mkdtemp(prefix="bench-evaluate-"))
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{store / 'mlflow.db'}"
        env["PIPELINE_OUTBOX"] = str(store / "outbox")
        argv = [sys.executable, "-c", STAGE, str(code_dir), *cmd[3:]]  # after "python -m stages.evaluate"
    else:
        argv = [sys.executable, "-c", CHILD, str(code_dir)]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    out, err = proc.stdout.read(), proc.stderr.read()
    if os.waitstatus_to_exitcode(status):
        sys.exit(f"evaluate at {code_dir} failed:\n{err[-3000:]}")
    if stage:
        shutil.rmtree(store, ignore_errors=True)
        digests = {
            name: hashlib.md5((repo / "reports" / f"{name}.json").read_bytes()).hexdigest()
            for name in ("metrics", "audit")
        }
        return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, {"candidates": "all", **digests}
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, required=True)
    ap.add_argument("--refs", nargs="+", default=["HEAD~1", "HEAD"])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--stage", action="store_true", help="the whole evaluate stage, MLflow included, on a new store")
    args = ap.parse_args(argv)
    repo = args.repo.resolve()
    meta = json.loads((repo / "data/prepared/meta.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {ref: export(ref, Path(tmp) / hashlib.md5(ref.encode()).hexdigest()) for ref in args.refs}
        print(f"{os.cpu_count()} cores; {repo}; split sizes {meta['sizes']}")
        results = {ref: [] for ref in args.refs}
        for _ in range(args.repeats):
            for ref in args.refs:
                wall, cpu, rss, out = run(dirs[ref], repo, args.stage)
                results[ref].append((wall, cpu, rss, out))
                print(
                    f"  {ref:<12} {wall:8.1f} s wall {cpu:8.1f} CPU s {rss:6.0f} MB  {out['candidates']} candidates, "
                    f"metrics {out['metrics'][:8]}, audit {out['audit'][:8]}",
                    flush=True,
                )
        print(
            "\n| ref | wall s (median) | CPU s | peak MB | metrics.json md5 | audit.json md5 |\n| --- | --- | --- | --- | --- | --- |"
        )
        for ref, rows in results.items():
            rows = sorted(rows)
            wall, cpu, rss, out = rows[len(rows) // 2]
            print(f"| {ref} | {wall:.1f} | {cpu:.1f} | {rss:.0f} | {out['metrics'][:8]} | {out['audit'][:8]} |")


if __name__ == "__main__":
    main()
