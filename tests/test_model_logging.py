"""Every candidate as an MLflow run and model: logged once, linked from a later execution rather
than logged again, and no stop leaves a process or a run behind."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT
from tests.services import default_sigint
from tests.test_stages import evaluate_args


def test_an_evaluation_logged_again_links_its_candidates_and_logs_nothing_twice(pipeline_run, tmp_path, monkeypatch):
    import mlflow

    from stages import evaluate

    d = tmp_path / "run"
    shutil.copytree(pipeline_run, d, ignore=shutil.ignore_patterns("mlartifacts", "outbox"))
    uri = f"sqlite:///{d / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("tiny").experiment_id

    def state():
        runs = client.search_runs([exp])
        return (
            sorted(r.info.run_id for r in runs if r.data.tags.get("role") in ("candidate", "training")),
            sorted(m.model_id for m in client.search_logged_models([exp])),
        )

    before = state()
    first = json.loads((d / "reports/mlflow_runs.json").read_text())
    evaluate.main([*evaluate_args(d, d / "params.yaml"), "--log-only"])
    assert state() == before  # no candidate run, training run or model made again
    again = json.loads((d / "reports/mlflow_runs.json").read_text())
    assert again["evaluation_run"] != first["evaluation_run"] and again["logged_models"] == first["logged_models"]
    linked = client.get_run(again["evaluation_run"]).inputs.model_inputs  # the new execution lists them
    assert sorted(m.model_id for m in linked) == sorted(first["logged_models"].values())
    table = client.load_table(exp, "candidates.json", run_ids=[again["evaluation_run"]])
    assert table["logged_before"].all() and sorted(table["candidate"]) == sorted(first["logged_models"])


@pytest.mark.parametrize(("sig", "whole_group"), [("SIGINT", True), ("SIGTERM", True), ("SIGTERM", False)])
def test_an_evaluation_stopped_while_logging_leaves_no_process_and_no_run_open(
    pipeline_run, tmp_path, stage_env, sig, whole_group
):
    """Ctrl-C (the whole process group) or a SIGTERM to the stage alone, while it logs models: the
    stage says one line, and leaves no process and no RUNNING run."""
    import mlflow

    from pipeline.tracking.runs import ensure_store

    d = tmp_path / "run"
    shutil.copytree(pipeline_run, d, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts", "outbox"))
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    ensure_store(uri)  # made before this test's client polls it beside the stage (MLflow's migrations race)
    env = {
        **stage_env,
        "MLFLOW_TRACKING_URI": uri,
        "PIPELINE_OUTBOX": str(tmp_path / "outbox"),
        "DVC_STAGE": "evaluate",
        "PYTHONFAULTHANDLER": "1",
    }  # see _communicate
    before = (d / "reports/audit.json").read_bytes()
    stage = subprocess.Popen(
        [sys.executable, "-m", "stages.evaluate", *evaluate_args(d, d / "params.yaml")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=default_sigint,
    )
    client = mlflow.MlflowClient(uri)
    deadline = time.time() + 180
    while time.time() < deadline:  # until it is logging models
        exp = client.get_experiment_by_name("tiny")
        if exp and len(client.search_logged_models([exp.experiment_id])) >= 2:
            break
        assert stage.poll() is None, stage.communicate()[1]
        time.sleep(0.1)
    if whole_group:
        os.killpg(stage.pid, getattr(signal, sig))
    else:
        stage.send_signal(getattr(signal, sig))
    err = _communicate(stage, timeout=120)
    assert stage.returncode == 128 + getattr(signal, sig), err
    assert f"interrupted: evaluate stopped by {sig}" in err and "Traceback" not in err
    with pytest.raises(ProcessLookupError):  # nothing is left in the group
        os.killpg(stage.pid, 0)
    runs = client.search_runs([exp.experiment_id])
    assert runs and "RUNNING" not in {r.info.status for r in runs}
    assert "KILLED" in {r.info.status for r in runs}  # the evaluation run at least
    ready = {m.tags["candidate"] for m in client.search_logged_models([exp.experiment_id]) if str(m.status) == "READY"}
    assert 1 <= len(ready) < len(json.loads((d / "reports/metrics.json").read_text()))  # stopped midway
    assert (d / "reports/audit.json").read_bytes() == before


def _communicate(proc: subprocess.Popen, timeout: float) -> str:
    """``proc``'s stderr once it has ended; if it has not in ``timeout`` s, the test fails with
    where each thread of each process in its group stood (SIGABRT, under PYTHONFAULTHANDLER)."""
    try:
        return proc.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGABRT)
        err = proc.communicate(timeout=30)[1]
        pytest.fail(f"the stage had not ended {timeout} s after the signal; where its threads stood:\n{err[-8000:]}")


def _cleanup_fails_on_the_way_out(*args, **kwargs):
    """What MLflow did when a SIGTERM came while it wrote a model: its temporary directory, half
    written, could not be removed, and that error replaced the interruption."""
    from pipeline import Interrupted

    try:
        raise Interrupted(signal.SIGTERM)
    except Interrupted:
        raise OSError(39, "Directory not empty", "bundle")


def test_an_interruption_turned_into_another_error_still_stops_the_stage(pipeline_run, tmp_path, monkeypatch):
    from pipeline import Interrupted, interruption
    from stages import evaluate

    assert interruption(OSError("store down")) is None
    try:
        _cleanup_fails_on_the_way_out()
    except OSError as exc:
        assert isinstance(interruption(exc), Interrupted)

    d = tmp_path / "run"
    shutil.copytree(pipeline_run, d, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts", "outbox"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.setenv("PIPELINE_OUTBOX", str(tmp_path / "outbox"))
    monkeypatch.setattr(evaluate, "log_evaluation", _cleanup_fails_on_the_way_out)
    with pytest.raises(Interrupted):  # not taken for a lost store, which would carry on and exit 0
        evaluate.main(evaluate_args(d, d / "params.yaml"))
    assert not (tmp_path / "outbox" / "pending").exists()  # nothing left waiting as if the store were down


def test_stage_runs_stopped_inside_mlflow_are_stopped_not_lost(tmp_path, monkeypatch):
    from pipeline import Interrupted
    from pipeline.tracking.runs import StageRuns

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.setenv("PIPELINE_OUTBOX", str(tmp_path / "outbox"))
    runs = StageRuns("x", "train@ce", {"ce": {}}, {}, {})
    try:
        _cleanup_fails_on_the_way_out()
    except OSError as exc:
        error = exc
    with pytest.raises(Interrupted):  # while training: the stop, not a lost store
        runs._lost(error)
    runs.client = object()  # as if the store had been reached
    runs._lost(OSError("store down"))  # a store that is really lost: said, and training goes on
    assert runs.client is None
    runs.client, runs._exiting = object(), error.__context__  # ending the runs that this very stop ends
    runs._lost(error)  # then it is the store's error: said, and the runs end as far as they can
    assert runs.client is None
