"""When the tracking store fails: a real `mlflow server` killed while a stage trains, an evaluation
whose logging is cut off, and `make send` (`python -m stages.send`) bringing the store up to date
with the DVC outputs, nothing lost and nothing logged twice."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.services import default_sigint
from tests.test_stages import evaluate_args, report_args

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``mlflow server`` on 127.0.0.1 with a SQLite backend and local artifacts, started and
    killed (SIGKILL, its whole process group: no clean shutdown) on demand."""

    def __init__(self, root: Path):
        self.root, self.port, self.proc = root, _free_port(), None
        self.uri = f"http://127.0.0.1:{self.port}"

    def start(self):
        mlflow = Path(sys.executable).with_name("mlflow")
        self.proc = subprocess.Popen(
            [
                str(mlflow),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
                "--backend-store-uri",
                f"sqlite:///{self.root / 'server.db'}",
                "--artifacts-destination",
                (self.root / "artifacts").as_uri(),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2):
                    return self
            except OSError:
                time.sleep(0.3)
        self.kill()
        raise RuntimeError("mlflow server did not start within 90 s")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path)
    yield s
    s.kill()


def _client(uri):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri)


def test_killing_the_server_mid_training_loses_nothing_and_send_logs_nothing_twice(
    pipeline_run, tmp_path, server, stage_env
):
    d = pipeline_run
    plan = json.loads((d / "outputs/plans/focal.json").read_text())
    # long enough to be killed in the middle: many small steps, no early stop before the end
    plan["train"].update(epochs=150, patience=150, batch_size=8)
    (tmp_path / "focal.json").write_text(json.dumps(plan))
    server.start()
    env = {**stage_env, "MLFLOW_TRACKING_URI": server.uri, "PIPELINE_OUTBOX": str(tmp_path / "outbox")}
    stage = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stages.train",
            "--params",
            str(d / "params.yaml"),
            "--plan",
            str(tmp_path / "focal.json"),
            "--data",
            str(d / "data/prepared"),
            "--models",
            str(tmp_path / "models"),
            "--val-predictions",
            str(tmp_path / "val"),
            "--test-predictions",
            str(tmp_path / "test"),
            "--no-progress",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = _client(server.uri)
    deadline = time.time() + 120
    while time.time() < deadline:  # until the models' runs hold their first epochs
        exp = client.get_experiment_by_name("tiny")
        runs = client.search_runs([exp.experiment_id]) if exp else []
        live = [r for r in runs if r.data.tags.get("role") == "training" and "train_loss" in r.data.metrics]
        if len(live) == len(plan["runs"]):
            break
        assert stage.poll() is None, stage.communicate()[1]
        time.sleep(0.2)
    server.kill()  # mid-run: the stage is training
    out, err = stage.communicate(timeout=600)
    assert stage.returncode == 0, err
    assert f"MLflow store {server.uri} lost" in err  # said once, in one line
    assert err.count(" lost (") == 1
    training = json.loads((tmp_path / "models/training.json").read_text())["runs"]
    assert set(training) == {r["model"] for r in plan["runs"]}  # the DVC outputs are all written

    server.start()  # the same store, back
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert {r.info.status for r in runs if r.data.tags.get("role") in ("training", "stage")} == {"RUNNING"}
    held = {
        r.info.run_name: len(client.get_metric_history(r.info.run_id, "train_loss"))
        for r in runs
        if r.data.tags.get("role") == "training"
    }
    assert all(held[name] < len(t["history"]) for name, t in training.items()), held  # killed mid-run
    sent = subprocess.run([sys.executable, "-m", "stages.send"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert sent.returncode == 0, sent.stderr
    assert f"MLflow store {server.uri} is up to date with the DVC outputs: sent 3 run(s)" in sent.stderr

    def state():
        runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
        return {
            r.info.run_name: (
                r.info.status,
                [
                    (m.step, m.value)
                    for m in sorted(client.get_metric_history(r.info.run_id, "train_loss"), key=lambda m: m.step)
                ],
            )
            for r in runs
            if r.data.tags.get("role") in ("training", "stage")
        }

    got = state()
    assert {status for status, _ in got.values()} == {"FINISHED"}  # nothing left RUNNING
    for name, t in training.items():  # every epoch once, with its value
        assert got[name][1] == [(h["epoch"], pytest.approx(h["train_loss"])) for h in t["history"]]
    again = subprocess.run([sys.executable, "-m", "stages.send"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert again.returncode == 0 and "(nothing was waiting)" in again.stderr
    assert state() == got  # idempotent


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_train_stage_stopped_as_a_process_group_ends_its_runs_killed_in_the_store(
    pipeline_run, tmp_path, stage_env, sig
):
    """Ctrl-C in a terminal (or a SIGTERM to the group) reaches the stage and every thread in it:
    the stage ends its runs KILLED in the store before it exits."""
    from pipeline.tracking.runs import ensure_store

    d = pipeline_run
    plan = json.loads((d / "outputs/plans/ce.json").read_text())
    plan["train"].update(epochs=150, patience=150, batch_size=8)
    (tmp_path / "ce.json").write_text(json.dumps(plan))
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    ensure_store(uri)  # made before this test's client polls it beside the stage (MLflow's migrations race)
    env = {**stage_env, "MLFLOW_TRACKING_URI": uri, "PIPELINE_OUTBOX": str(tmp_path / "outbox")}
    stage = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stages.train",
            "--params",
            str(d / "params.yaml"),
            "--plan",
            str(tmp_path / "ce.json"),
            "--data",
            str(d / "data/prepared"),
            "--models",
            str(tmp_path / "models"),
            "--val-predictions",
            str(tmp_path / "val"),
            "--test-predictions",
            str(tmp_path / "test"),
            "--no-progress",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=default_sigint,
    )
    client = _client(uri)
    deadline = time.time() + 120
    while time.time() < deadline:  # until the model's run holds its first epochs: the stage is sending
        exp = client.get_experiment_by_name("tiny")
        runs = client.search_runs([exp.experiment_id]) if exp else []
        if any(r.data.tags.get("role") == "training" and "train_loss" in r.data.metrics for r in runs):
            break
        assert stage.poll() is None, stage.communicate()[1]
        time.sleep(0.2)
    os.killpg(stage.pid, getattr(signal, sig))
    _, err = stage.communicate(timeout=120)
    assert stage.returncode == 128 + getattr(signal, sig), err
    assert f"stopped by {sig}; its temporary files are removed" in err
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert sorted(r.data.tags["role"] for r in runs) == ["stage", "training"]
    assert {r.info.status for r in runs} == {"KILLED"}  # sent by the stage before it exited
    assert not (tmp_path / "models").exists()  # no half-written output


def test_an_evaluation_cut_off_while_logging_keeps_its_outputs_and_send_logs_it_once(
    pipeline_run, tmp_path, monkeypatch, caplog, mlflow_store
):
    from stages import evaluate, report, send

    caplog.set_level("INFO", logger="send")
    d = tmp_path / "run"
    shutil.copytree(pipeline_run, d, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts", "outbox"))
    params = d / "params.yaml"
    (d / "reports/mlflow_runs.json").unlink()
    before = (d / "reports/audit.json").read_bytes()

    def lost(*args, **kwargs):
        raise ConnectionError("Connection refused")

    monkeypatch.setattr(evaluate, "log_evaluation", lost)
    evaluate.main(evaluate_args(d, params))  # exits normally: the outputs stand
    assert "lost while logging the evaluation (Connection refused)" in caplog.text
    assert (d / "reports/audit.json").read_bytes() == before and not (d / "reports/mlflow_runs.json").exists()
    box = Path(os.environ["PIPELINE_OUTBOX"])
    assert [p.name for p in (box / "pending").iterdir()] == ["evaluate-workspace.json"]
    report.main(report_args(d, params, d / "reports/report.html"))  # no run to log to yet: it waits too
    assert sorted(p.name for p in (box / "pending").iterdir()) == ["evaluate-workspace.json", "report.json"]

    monkeypatch.undo()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_store)
    monkeypatch.setenv("PIPELINE_OUTBOX", str(box))
    send.main([])
    assert not list((box / "pending").iterdir())
    assert (
        "is up to date with the DVC outputs: sent evaluation run" in caplog.text and "the report to run" in caplog.text
    )
    runs = json.loads((d / "reports/mlflow_runs.json").read_text())
    client = _client(mlflow_store)
    evaluation = client.get_run(runs["evaluation_run"])
    assert evaluation.info.status == "FINISHED"
    assert {"report.html", "audit.json"} <= {a.path for a in client.list_artifacts(evaluation.info.run_id)}
    assert (d / "reports/audit.json").read_bytes() == before  # --log-only wrote no output
    audit = json.loads(before)
    version = client.get_model_version_by_alias("tiny", "champion")
    assert version.tags["pick"] == audit["policy"]["pick"]
    logged = len(client.search_logged_models([evaluation.info.experiment_id]))
    send.main([])  # nothing waits: nothing logged again
    assert "nothing was waiting" in caplog.text, [r.getMessage() for r in caplog.records if r.name == "send"]
    assert len(client.search_logged_models([evaluation.info.experiment_id])) == logged


# A stage that works in forked processes (decide's rules, evaluate's figures), each job a minute
# long: stopped while they run, every process must be gone within 10 s.
WORKING_STAGE = """
import sys, time
from stages._cli import run
from pipeline import in_parallel
from pipeline.evaluation.plots import render


def main():
    if sys.argv[1] == "rules":
        in_parallel(time.sleep, [(60,)] * 4, workers=2)
    else:
        render([(str(i), time.sleep, (60,)) for i in range(4)], workers=2)


run(main)
"""


@pytest.mark.parametrize("work", ["rules", "figures"])
@pytest.mark.parametrize("stop", ["SIGTERM to the group", "Ctrl-C", "SIGTERM to the stage"])
def test_a_stage_stopped_while_its_workers_run_ends_with_every_worker_within_10_s(tmp_path, work, stop):
    import psutil

    script = tmp_path / "working_stage.py"
    script.write_text(WORKING_STAGE)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    stage = subprocess.Popen(
        [sys.executable, str(script), work],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=default_sigint,
    )
    deadline = time.time() + 60
    while len(psutil.Process(stage.pid).children()) < 2:  # both workers at work
        assert time.time() < deadline and stage.poll() is None, stage.communicate()[1]
        time.sleep(0.1)
    workers = psutil.Process(stage.pid).children()
    time.sleep(0.5)  # the jobs have started
    stopped = time.time()
    if stop == "SIGTERM to the stage":
        os.kill(stage.pid, signal.SIGTERM)
    else:
        os.killpg(stage.pid, signal.SIGINT if stop == "Ctrl-C" else signal.SIGTERM)
    try:
        _, err = stage.communicate(timeout=10)
        _, alive = psutil.wait_procs(workers, timeout=max(0.1, 10 - (time.time() - stopped)))
    except subprocess.TimeoutExpired:
        pytest.fail(f"the stage still runs 10 s after {stop}")
    finally:  # whatever the outcome, nothing is left running
        if stage.poll() is None:
            os.killpg(stage.pid, signal.SIGKILL)
        for worker in workers:
            if worker.is_running():
                worker.kill()
    assert not alive, f"workers still running 10 s after {stop}: {alive}"
    assert stage.returncode == (130 if stop == "Ctrl-C" else 143)
    assert err.count("\n") == 1 and err.startswith("interrupted: "), err  # one line, no traceback


def test_a_stop_raised_where_python_ignores_exceptions_still_stops_the_stage(tmp_path):
    # SIGTERM's handler can run inside a weakref callback, where Python prints "Exception
    # ignored" and goes on; the stop is delivered again where it can end the stage
    script = tmp_path / "stage.py"
    script.write_text(
        "import time, weakref\n"
        "from pipeline import Interrupted\n"
        "from stages._cli import run\n"
        "class Thing: pass\n"
        "def main():\n"
        "    def callback(ref):\n"
        "        raise Interrupted(15)  # as the handler would, had the signal come here\n"
        "    thing = Thing()\n"
        "    keep = weakref.ref(thing, callback)\n"
        "    del thing\n"
        "    time.sleep(30)\n"
        "    print('finished', keep)\n"
        "run(main)\n"
    )
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 143, proc.stderr
    assert "interrupted:" in proc.stderr and "finished" not in proc.stdout and "Exception ignored" not in proc.stderr
    assert time.monotonic() - start < 20
