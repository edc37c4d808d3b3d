"""Every benchmark under bench/ still runs, at a tiny size, so that none rots unnoticed.

The benchmarks that train on synthetic data or read a finished run (the shared tiny pipeline run)
run to their last line here. The ones that clone the repository and run the whole pipeline
(``scale``, ``stages``, ``identical``, ``evaluate``, ``threads``) take minutes each: they are
started with ``--help`` only, which imports them and builds their options.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _bench(name: str, *args: str, cwd: Path = ROOT) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.parametrize(
    ("name", "args", "last"),
    [
        ("sweep", ["--k", "2", "--n", "300", "--epochs", "1", "--device", "cpu"], "batched / sequential throughput"),
        (
            "alpha",
            ["--k", "2", "--n", "300", "--epochs", "1", "--repeats", "1", "--device", "cpu"],
            "alpha sweep / focal gamma sweep",
        ),
        ("exit", ["--repeats", "1"], "| torch"),
        ("check_cost", ["--train", "4000", "--stop", "500", "--val", "1000", "--timed-rows", "4000"], "adds"),
    ],
)
def test_a_synthetic_benchmark_runs_at_a_tiny_size(name, args, last):
    assert last in _bench(name, *args)


def test_the_benchmarks_that_read_a_finished_run_run_on_the_tiny_one(pipeline_run):
    d = str(pipeline_run)
    assert "epochs of the train stages' stacks" in _bench("patience", "--repo", d, "--patience", "2")
    assert "| ce | 64 |" in _bench("batch_quality", "--repo", d, "--batches", "64", "--seeds", "0", "--losses", "ce")
    assert "monitor" in _bench("early_stopping", "--metrics", "macro_f1", cwd=pipeline_run)
    assert "as evaluate logs them" in _bench("model_logging", "--limit", "1", cwd=pipeline_run)


@pytest.mark.parametrize("name", ["scale", "stages", "identical", "evaluate", "threads", "device_train"])
def test_a_whole_pipeline_benchmark_imports_and_builds_its_options(name):
    assert "usage:" in _bench(name, "--help")
