import os
import shutil
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# CI explores the same examples every run (a failure there is reproducible); locally, fresh ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

ROOT = Path(__file__).resolve().parents[1]

# Tests never touch the user's MLflow store: each gets one of its own (below), and nothing may
# inherit the user's tracking server or the DVC run this suite might be started from.
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("DVC_ROOT", None)
os.environ.pop("PIPELINE_OUTBOX", None)


def _store_state(root: Path) -> dict[str, tuple]:
    """What the repository's own MLflow store holds: every file with its size and mtime."""
    state = {}
    for name in ("mlflow.db", "mlartifacts", "mlruns", ".mlflow-outbox"):
        path = root / name
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []
        state.update({str(f): (f.stat().st_size, f.stat().st_mtime_ns) for f in files})
    return state


@pytest.fixture(scope="session", autouse=True)
def _repository_store_untouched():
    """Fails the session if any test wrote to the repository's mlflow.db, mlartifacts/ or mlruns/."""
    before = _store_state(ROOT)
    yield
    after = _store_state(ROOT)
    assert after == before, (
        f"tests changed the repository's MLflow store: {sorted(set(after) ^ set(before) or after)[:5]}"
    )


@pytest.fixture(autouse=True)
def mlflow_store(tmp_path, monkeypatch) -> str:
    """Each test's own tracking store (artifacts beside it, under tmp_path); a test that starts a
    tracking server overrides ``MLFLOW_TRACKING_URI`` itself."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("PIPELINE_OUTBOX", str(tmp_path / "outbox"))
    return uri


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def stage_env(tmp_path):
    """Environment for running a stage as a subprocess from ``tmp_path``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env["PIPELINE_OUTBOX"] = str(tmp_path / "outbox")
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
    mp.setenv("PIPELINE_OUTBOX", str(d / "outbox"))
    mp.delenv("DVC_ROOT", raising=False)
    try:
        run_pipeline(d, write_params(d / "params.yaml"))
    finally:
        mp.undo()
    return d


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """moto's S3 server on 127.0.0.1 with an empty bucket (tests.services.BUCKET), once per session;
    ``url``: its endpoint, ``env``: what a client of it needs (credentials, MLFLOW_S3_ENDPOINT_URL)."""
    from tests.services import start_s3

    service = start_s3(tmp_path_factory.mktemp("s3"))
    try:
        yield service
    finally:
        service.stop()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, driven by Playwright (the report's and the MLflow UI's tests)."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium package")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        yield b
        b.close()


# Tests that need one of these (directly or through another fixture) are end-to-end: the tiny
# pipeline run, a real browser, an S3 or model server. They are marked slow, so that `make test-fast`
# (`-m "not slow"`) leaves them out of the developer loop; `make test` and CI run everything.
SLOW_FIXTURES = {"pipeline_run", "browser", "s3", "user_server"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
