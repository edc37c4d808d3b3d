import os
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# CI explores the same examples every run (a failure there is reproducible); locally, fresh ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

ROOT = Path(__file__).resolve().parents[1]

# Tests never touch the user's MLflow store.
os.environ.pop("MLFLOW_TRACKING_URI", None)


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def stage_env(tmp_path):
    """Environment for running a stage as a subprocess from ``tmp_path``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env.pop("DVC_ROOT", None)
    return env


def python() -> str:
    return sys.executable


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory):
    """Every stage run once on tiny data (see tests/test_stages.py); shared by the test modules."""
    from tests.test_stages import run_pipeline, write_params

    d = tmp_path_factory.mktemp("run")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{d / 'mlflow.db'}")
    mp.delenv("DVC_ROOT", raising=False)
    try:
        run_pipeline(d, write_params(d / "params.yaml"))
    finally:
        mp.undo()
    return d
