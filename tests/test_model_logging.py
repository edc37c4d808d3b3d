"""Every candidate as an MLflow model, logged by two processes: the store holds what one process
would have made, and no error or stop leaves a process or a run behind."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from tests.conftest import ROOT
from tests.services import default_sigint
from tests.test_stages import evaluate_args


def _candidates(d, tmp):
    from pipeline.artifacts import load_decision_records, load_model_records
    from pipeline.io import read_json
    from pipeline.registry import Candidate
    from pipeline.serving import write_candidate_bundle

    meta = read_json(d / "data/prepared/meta.json")
    models = load_model_records(d / "outputs/plans", d / "outputs/models", d / "reports/predictions", "baselines", meta)
    records = models + load_decision_records(models, d / "reports/decisions", d / "outputs/decisions", meta["classes"])
    out = []
    for i, rec in enumerate(records):
        bundle = tmp / "bundles" / str(i)
        digest = write_candidate_bundle(bundle, rec, classes=meta["classes"],
                                        preprocessing_file=d / "data/prepared/preprocessing.json",
                                        decisions_dir=d / "outputs/decisions")
        score = 0.5 + i / 1000
        out.append(Candidate(rec.name, bundle, digest, {"validation": {"macro_f1": score}},
                             pd.DataFrame({"metric": ["macro_f1"], "value": [score]}), {"index": str(i)},
                             {"kind": rec.kind}, parent=None if rec.rule is None else rec.model, weights_digest=digest))
    return meta, out


def _log(uri, d, meta, candidates, helper=None):
    import mlflow

    from pipeline.preprocessing import load_preprocessing
    from pipeline.registry import log_candidates
    from pipeline.tracking import _experiment_id, closing_runs

    pre = load_preprocessing(d / "data/prepared/preprocessing.json")
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(uri)
    exp = _experiment_id(client, "two", uri)
    with closing_runs(client) as open_runs:
        return log_candidates(client, exp, candidates, data_digest="d", dataset_digests={"validation": "v"},
                              input_example=pre.example(), raw_columns=pre.raw_columns, classes=meta["classes"],
                              run_tags={"execution": "e"}, open_runs=open_runs, helper=helper)


def _store(uri):
    """What a store holds, without its ids and times: each logged model with its run, the run's
    parent, its status and its metrics; each run with its parent and status."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("two").experiment_id
    runs = {r.info.run_id: r for r in client.search_runs([exp])}

    def name(run_id):
        return runs[run_id].data.tags.get("candidate") or runs[run_id].info.run_name if run_id else None

    models = sorted(
        (m.tags["candidate"], m.tags["content_digest"], m.tags["metrics_digest"], str(m.status), name(m.source_run_id),
         name(runs[m.source_run_id].data.tags.get("mlflow.parentRunId")),
         tuple(sorted((x.key, x.value, x.dataset_name) for x in m.metrics or [])))
        for m in client.search_logged_models([exp]))
    return models, sorted((name(i), r.info.status, name(r.data.tags.get("mlflow.parentRunId"))) for i, r in runs.items())


def test_two_processes_log_the_same_models_runs_and_metrics_as_one(pipeline_run, tmp_path, monkeypatch):
    from pipeline.registry import _halves, start_helper, stop_helper

    d = pipeline_run
    meta, candidates = _candidates(d, tmp_path)
    theirs, mine = _halves(candidates)
    assert theirs and mine and abs(len(theirs) - len(mine)) <= 3
    assert {c.parent for c in theirs if c.parent} <= {c.name for c in theirs}  # a model's rules go with it

    one = f"sqlite:///{tmp_path / 'one.db'}"
    logged_one = _log(one, d, meta, candidates)
    two = f"sqlite:///{tmp_path / 'two.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", two)
    helper = start_helper()
    assert helper is not None  # this machine has two cores
    logged_two = _log(two, d, meta, candidates, helper=helper)
    assert helper.returncode == 0

    assert list(logged_two) == [c.name for c in candidates]
    assert not any(v.reused for v in [*logged_one.values(), *logged_two.values()])
    models, runs = _store(two)
    assert (models, runs) == _store(one)
    assert len(models) == len(candidates) and {m[3] for m in models} == {"READY"}
    assert {r[1] for r in runs} == {"FINISHED"}
    by_name = {c.name: c for c in candidates}
    for m in models:  # a <model>+<rule> in a child of its model's run
        assert m[5] == by_name[m[0]].parent

    helper = start_helper()  # again: every model is already there, nothing is logged twice
    again = _log(two, d, meta, candidates, helper=helper)
    assert helper.poll() is None  # given nothing: it waits until the stage lets it go
    stop_helper(helper, interrupted=False)
    assert helper.returncode == 0
    assert all(v.reused for v in again.values()) and {k: v.model_id for k, v in again.items()} == {
        k: v.model_id for k, v in logged_two.items()}
    assert _store(two) == (models, runs)


def test_a_failing_helper_is_one_error_and_leaves_no_run_open(pipeline_run, tmp_path, monkeypatch):
    from pipeline.registry import _halves, candidate_helper

    d = pipeline_run
    meta, candidates = _candidates(d, tmp_path)
    theirs, mine = _halves(candidates)
    for c in theirs:  # its models log, then the first of their rules fails in the run made for it
        if c.parent:
            c.bundle = tmp_path / "gone"
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(RuntimeError) as err:
        with candidate_helper() as helper:
            assert helper is not None
            _log(uri, d, meta, candidates, helper=helper)
    assert "\n" not in str(err.value)
    assert helper.returncode == 0  # it answered with its error and ended
    models, runs = _store(uri)
    ready = {m[0] for m in models if m[3] == "READY"}
    assert {c.name for c in mine} <= ready  # this process's half is whole
    assert not ready & {c.name for c in theirs if c.parent}
    assert "RUNNING" not in {r[1] for r in runs}
    assert "FAILED" in {r[1] for r in runs}  # the helper's decision run it could not finish


def _communicate(proc: subprocess.Popen, timeout: float) -> str:
    """``proc``'s stderr once it has ended; if it has not in ``timeout`` s, the test fails with
    where each thread of each process in its group stood (SIGABRT, under PYTHONFAULTHANDLER)."""
    try:
        return proc.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGABRT)
        err = proc.communicate(timeout=30)[1]
        pytest.fail(f"the stage had not ended {timeout} s after the signal; where its threads stood:\n{err[-8000:]}")


@pytest.mark.parametrize(("sig", "whole_group"), [("SIGINT", True), ("SIGTERM", True), ("SIGTERM", False)])
def test_an_evaluation_stopped_while_logging_leaves_no_process_and_no_run_open(pipeline_run, tmp_path, stage_env,
                                                                                sig, whole_group):
    """Ctrl-C (the whole process group) or a SIGTERM to the stage alone, while both processes log
    models: the stage says one line, and neither it nor its helper leaves a process or a RUNNING run."""
    import mlflow

    from pipeline.tracking import ensure_store

    d = tmp_path / "run"
    shutil.copytree(pipeline_run, d, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts", "outbox"))
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    ensure_store(uri)  # made before this test's client polls it beside the stage (MLflow's migrations race)
    env = {**stage_env, "MLFLOW_TRACKING_URI": uri, "PIPELINE_OUTBOX": str(tmp_path / "outbox"), "DVC_STAGE": "evaluate",
           "PYTHONFAULTHANDLER": "1"}  # see _communicate
    before = (d / "reports/audit.json").read_bytes()
    stage = subprocess.Popen([sys.executable, "-m", "stages.evaluate", *evaluate_args(d, d / "params.yaml")], cwd=ROOT,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True, preexec_fn=default_sigint)
    client = mlflow.MlflowClient(uri)
    deadline = time.time() + 180
    while time.time() < deadline:  # until both processes are logging models
        exp = client.get_experiment_by_name("tiny")
        if exp and len(client.search_logged_models([exp.experiment_id])) >= 4:
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
    with pytest.raises(ProcessLookupError):  # the helper is gone too: nothing is left in the group
        os.killpg(stage.pid, 0)
    runs = client.search_runs([exp.experiment_id])
    assert runs and "RUNNING" not in {r.info.status for r in runs}
    assert "KILLED" in {r.info.status for r in runs}  # the evaluation run at least
    assert "FAILED" not in {r.info.status for r in runs}  # the helper was stopped, not cut off from its bundles
    from pipeline.registry import _halves

    theirs, _ = _halves(_candidates(d, tmp_path)[1])  # what the helper was given: it stopped too
    ready = {m.tags["candidate"] for m in client.search_logged_models([exp.experiment_id]) if str(m.status) == "READY"}
    assert not {c.name for c in theirs} <= ready
    assert (d / "reports/audit.json").read_bytes() == before


def test_the_helper_is_this_package_and_one_that_ended_early_leaves_the_work_here(pipeline_run, tmp_path, monkeypatch,
                                                                                   caplog):
    from pipeline.registry import _halves, start_helper

    d = pipeline_run
    meta, candidates = _candidates(d, tmp_path)
    families = list(dict.fromkeys(c.parent or c.name for c in candidates))[:2]
    candidates = [c for c in candidates if (c.parent or c.name) in families]
    assert all(_halves(candidates))
    other = tmp_path / "other-checkout"  # a working directory with a pipeline package of its own
    (other / "pipeline").mkdir(parents=True)
    (other / "pipeline" / "__init__.py").write_text("")
    (other / "pipeline" / "registry.py").write_text("raise SystemExit(3)\n")
    monkeypatch.chdir(other)
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)

    helper = start_helper()
    logged = _log(uri, d, meta, candidates, helper=helper)
    assert helper.returncode == 0 and "ended early" not in caplog.text  # ours did its half
    assert sorted(logged) == sorted(c.name for c in candidates)

    helper = start_helper()
    helper.kill()
    helper.wait()
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    logged = _log(fresh, d, meta, candidates, helper=helper)
    assert "the helper process logging candidate models ended early (status -9): this process logs them all" in caplog.text
    assert not any(v.reused for v in logged.values())
    models, runs = _store(fresh)
    assert sorted(m[0] for m in models) == sorted(c.name for c in candidates) and {r[1] for r in runs} == {"FINISHED"}
