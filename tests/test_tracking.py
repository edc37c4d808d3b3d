"""Where runs and their artifacts go."""

import os
import socket
from pathlib import Path

import pytest

from pipeline.tracking.runs import artifact_root, experiment_id, log_artifacts_to_run, tracking_uri

ROOT = Path(__file__).resolve().parents[1]


def test_a_sqlite_store_keeps_its_artifacts_beside_it(tmp_path, monkeypatch):
    import mlflow

    store = tmp_path / "elsewhere"
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    monkeypatch.chdir(ROOT)  # where a user runs the stages from; nothing may land here
    before = set((ROOT / "mlartifacts").rglob("*"))
    figure = tmp_path / "confusion_ce.png"
    figure.write_bytes(b"png")
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = experiment_id(client, "isolation", uri)
    log_artifacts_to_run(client.create_run(exp).info.run_id, [figure], environ={"MLFLOW_TRACKING_URI": uri})
    location = client.get_experiment(exp).artifact_location
    assert location == (store / "mlartifacts").as_uri()
    assert (store / "mlartifacts").is_dir() and list((store / "mlartifacts").rglob("confusion_ce.png"))
    assert set((ROOT / "mlartifacts").rglob("*")) == before  # nothing landed in the repository's store


def test_artifact_root_follows_the_sqlite_file_and_leaves_servers_alone(tmp_path):
    assert artifact_root(f"sqlite:///{tmp_path}/a/mlflow.db") == (tmp_path / "a" / "mlartifacts").as_uri()
    assert artifact_root("http://127.0.0.1:5000") is None
    assert artifact_root("postgresql://u@127.0.0.1/db") is None


def test_the_default_store_is_the_repository_root(tmp_path):
    assert tracking_uri({"DVC_ROOT": str(tmp_path)}) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert tracking_uri({"MLFLOW_TRACKING_URI": "http://x"}) == "http://x"


def test_every_test_gets_a_store_of_its_own(mlflow_store, tmp_path):
    assert os.environ["MLFLOW_TRACKING_URI"] == mlflow_store == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert tracking_uri() != f"sqlite:///{ROOT / 'mlflow.db'}"


def test_runs_stopped_while_mlflow_reads_the_store_are_marked_killed_at_once(mlflow_store, caplog):
    """A stop can land as MLflow starts reading a query's rows (where CI once saw it): the
    SQLite cursor, held by the traceback, keeps a read lock on the store. closing_runs frees it
    before it marks its runs, so they end KILLED at once, not after a 20 s busy timeout or never."""
    import signal
    import time
    from unittest import mock

    from sqlalchemy.orm import loading

    from pipeline import Interrupted
    from pipeline.tracking.runs import closing_runs, ensure_store

    ensure_store(mlflow_store)
    client = _client(mlflow_store)
    exp = experiment_id(client, "stopped", mlflow_store)
    other = client.create_run(exp).info.run_id

    def stopped(cursor, context):  # the signal's exception, raised where the rows are first read
        raise Interrupted(signal.SIGTERM)

    with pytest.raises(Interrupted):
        with closing_runs(client) as open_runs:
            open_runs.append(client.create_run(exp).info.run_id)
            start = time.time()
            with mock.patch.object(loading, "instances", stopped):
                client.get_run(other)
    assert client.get_run(open_runs[0]).info.status == "KILLED"
    assert time.time() - start < 10 and "could not mark" not in caplog.text


def _client(uri):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri)


def _stage_runs(uri, box, **kw):
    from pipeline.tracking.runs import StageRuns

    return StageRuns(
        "stage",
        "train@ce",
        {"ce": {"loss": "ce", "gamma": "none"}},
        {"ce": {"loss": "ce"}},
        {"data_digest": "d", "git_commit": "c"},
        environ={"MLFLOW_TRACKING_URI": uri, "PIPELINE_OUTBOX": str(box), **kw},
    )


def test_stage_runs_log_as_they_train_with_system_metrics(tmp_path):
    import time

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = _client(uri)
    with _stage_runs(uri, tmp_path / "box") as runs:
        for epoch in (1, 2, 3):
            runs.epoch(
                "ce",
                {
                    "epoch": epoch,
                    "train_loss": 1.0 / epoch,
                    "val_counts": {"tp": [1], "support": [1], "predicted": [1]},
                },
            )
            time.sleep(1.1)

        def live():  # what the store holds while the stage still trains
            found = client.search_runs([e.experiment_id for e in client.search_experiments()])
            return {r.data.tags["role"]: r for r in found} if len(found) == 2 else {}

        deadline = time.time() + 60  # the stage's run samples the machine each second
        while not (
            (now := live())
            and any(k.startswith("system/") for k in now["stage"].data.metrics)
            and now["training"].data.metrics.get("train_loss") == pytest.approx(1 / 3)
        ):
            assert time.time() < deadline, f"not sent while the stage ran: {now}"
            time.sleep(0.5)
        assert {r.info.status for r in now.values()} == {"RUNNING"}
        runs.finish({"ce": {"weights_sha256": "w"}})
    found = client.search_runs([client.get_experiment_by_name("stage").experiment_id])
    stage = next(r for r in found if r.data.tags["role"] == "stage")
    model = next(r for r in found if r.data.tags["role"] == "training")
    assert any(k.startswith("system/") for k in stage.data.metrics)
    assert model.data.tags["mlflow.parentRunId"] == stage.info.run_id and model.data.tags["weights_sha256"] == "w"
    curve = client.get_metric_history(model.info.run_id, "train_loss")
    assert [m.step for m in curve] == [1, 2, 3]
    assert curve[2].timestamp - curve[0].timestamp >= 2000  # each epoch's own time, not the end's
    assert model.info.status == stage.info.status == "FINISHED"
    assert stage.info.start_time == model.info.start_time  # when the stage started
    assert not list((tmp_path / "box").glob("*.json"))  # sent: the records moved to sent/
    assert len(list((tmp_path / "box" / "sent").glob("*.json"))) == 2


_INTERRUPTED_STAGE = """
import sys
from pipeline.tracking.runs import StageRuns

runs = StageRuns("stage", "train@ce", {"ce": {"loss": "ce"}}, {"ce": {"loss": "ce"}}, {"data_digest": "d"},
                 environ={"MLFLOW_TRACKING_URI": sys.argv[1], "PIPELINE_OUTBOX": sys.argv[2]})
try:
    with runs:
        runs.epoch("ce", {"epoch": 1, "train_loss": 0.5})
        raise KeyboardInterrupt
except KeyboardInterrupt:
    print("stopped")
"""


def test_a_stages_interrupted_runs_end_killed_with_what_they_logged(tmp_path):
    import subprocess
    import sys

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = subprocess.run(
        [sys.executable, "-c", _INTERRUPTED_STAGE, uri, str(tmp_path / "box")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "stopped", proc.stderr
    client = _client(uri)
    found = client.search_runs([client.get_experiment_by_name("stage").experiment_id])
    assert sorted(r.data.tags["role"] for r in found) == ["stage", "training"]
    assert {r.info.status for r in found} == {"KILLED"}
    assert next(r for r in found if r.data.tags["role"] == "training").data.metrics["train_loss"] == 0.5
    assert not list((tmp_path / "box").glob("*.json"))  # sent


def test_offline_runs_wait_in_the_outbox_until_the_next_stage_sends_them(tmp_path, caplog):
    from pipeline.tracking.outbox import read_records
    from pipeline.tracking.runs import preflight, send_pending

    box = tmp_path / "box"
    down = "http://127.0.0.1:9"  # nothing listens there
    assert preflight({"MLFLOW_TRACKING_URI": down, "PIPELINE_OFFLINE": "1"}) is None  # what a stage checks first
    with _stage_runs(down, box, PIPELINE_OFFLINE="1") as runs:  # trained on purpose without the store
        runs.epoch("ce", {"epoch": 1, "train_loss": 0.5})
        runs.finish({"ce": {"weights_sha256": "w"}})
    assert "PIPELINE_OFFLINE is set: nothing is sent to http://127.0.0.1:9" in caplog.text
    waiting = read_records(box)
    assert {r.name for r in waiting} == {"train@ce", "ce"} and {r.status for r in waiting} == {"FINISHED"}

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = _client(uri)
    assert send_pending(client, uri, box) == 2
    assert send_pending(client, uri, box) == 0  # idempotent
    found = client.search_runs([client.get_experiment_by_name("stage").experiment_id])
    model = next(r for r in found if r.data.tags["role"] == "training")
    assert model.info.status == "FINISHED" and model.data.metrics["train_loss"] == 0.5
    assert model.info.start_time == next(r for r in waiting if r.name == "ce").start_time  # the real times
    stage = next(r for r in found if r.data.tags["role"] == "stage")
    assert model.data.tags["mlflow.parentRunId"] == stage.info.run_id


def test_send_adds_only_what_a_run_lacks(tmp_path):
    from pipeline.tracking.outbox import RunRecord
    from pipeline.tracking.runs import send

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = _client(uri)
    exp = client.create_experiment("x")
    record = RunRecord("k1", "x", "ce", params={"a": "1"}, metrics=[("loss", 1.0, 1000, 1)], start_time=1000)
    run_id = send(client, exp, record)
    record.metrics.append(("loss", 0.5, 2000, 2))
    record.status, record.end_time = "FINISHED", 3000
    assert send(client, exp, record) == run_id
    assert send(client, exp, record) == run_id  # a finished run is left as it is
    history = client.get_metric_history(run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(1, 1.0), (2, 0.5)]
    run = client.get_run(run_id)
    assert (run.info.start_time, run.info.end_time, run.info.status) == (1000, 3000, "FINISHED")


def test_a_running_record_of_a_live_process_is_left_to_it(tmp_path):
    import subprocess
    import sys

    from pipeline.tracking.outbox import RunRecord, write_record
    from pipeline.tracking.runs import send_pending

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = _client(uri)
    client.create_experiment("x")
    exp = client.get_experiment_by_name("x").experiment_id
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        from pipeline.tracking.outbox import this_writer

        host = this_writer().rpartition(":")[0]
        write_record(tmp_path, RunRecord("live", "x", "a", start_time=1000, writer=f"{host}:{other.pid}"))
        write_record(tmp_path, RunRecord("dead", "x", "b", start_time=1000, writer=f"{host}:999999999"))
        assert send_pending(client, uri, tmp_path) == 1  # the dead writer's run only
        assert {r.info.run_name for r in client.search_runs([exp])} == {"b"}
    finally:
        other.kill()
        other.wait()


# --- the pre-flight check, before anything trains ------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        (
            "http://127.0.0.1:{closed}",
            "MLflow tracking server http://127.0.0.1:{closed} is not reachable (Connection refused)",
        ),
        (
            "postgresql://u@127.0.0.1:{closed}/db",
            "MLflow tracking store postgresql://u@127.0.0.1:{closed}/db is not reachable",
        ),
        ("htp://127.0.0.1:5000", "MLflow tracking URI 'htp://127.0.0.1:5000' is not one this pipeline can use"),
        ("mlruns", "MLflow tracking URI 'mlruns' is not one this pipeline can use"),
        ("http://127.0.0.1:port", "MLflow tracking URI 'http://127.0.0.1:port' is malformed"),
        ("http://", "MLflow tracking URI 'http://' is malformed: no host"),
        ("sqlite://", "MLflow tracking URI 'sqlite://' is malformed"),
        (
            "sqlite:////no/such/dir/mlflow.db",
            "MLflow tracking URI 'sqlite:////no/such/dir/mlflow.db': directory /no/such/dir",
        ),
    ],
)
def test_a_bad_store_is_one_line_naming_the_uri_within_seconds(uri, message):
    import time

    from pipeline import PipelineError
    from pipeline.tracking.runs import check_store

    closed = _free_port()
    uri, message = uri.format(closed=closed), message.format(closed=closed)
    start = time.perf_counter()
    with pytest.raises(PipelineError) as err:
        check_store(uri)
    assert time.perf_counter() - start < 10
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


@pytest.mark.parametrize(("status", "ok"), [(200, True), (401, True), (404, False), (503, False)])
def test_only_an_mlflow_health_answer_passes(status, ok):
    import http.server
    import threading

    from pipeline import PipelineError
    from pipeline.tracking.runs import check_store

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_port}"
    try:
        if ok:
            check_store(uri)
        else:
            with pytest.raises(
                PipelineError,
                match=f"MLflow tracking server {uri} is not reachable "
                f"\\(HTTP {status} on /health: not an MLflow tracking server\\)",
            ):
                check_store(uri)
    finally:
        server.shutdown()


@pytest.mark.parametrize("kind", ["down", "malformed"])
def test_a_train_stage_stops_before_training_when_the_store_is_down(pipeline_run, tmp_path, stage_env, kind):
    import subprocess
    import sys
    import time

    d = pipeline_run
    uri = f"http://127.0.0.1:{_free_port()}" if kind == "down" else "htp://127.0.0.1:5000"
    env = {**stage_env, "MLFLOW_TRACKING_URI": uri}
    start = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stages.train",
            "--params",
            str(d / "params.yaml"),
            "--plan",
            str(d / "outputs/plans/ce.json"),
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
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and time.perf_counter() - start < 20  # python and torch start included
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: MLflow tracking server {uri} is not reachable (Connection refused); set "
        "MLFLOW_TRACKING_URI to a reachable store, unset it for the local one, or set PIPELINE_OFFLINE=1 "
        "to train now and send the runs later (make send)"
        if kind == "down"
        else f"error: MLflow tracking URI {uri!r} is not one this pipeline can use; expected http(s)://host:port, "
        "sqlite:///path/to/mlflow.db or postgresql://user@host:port/db"
    ]
    assert "epoch" not in proc.stderr  # nothing trained
    assert not (tmp_path / "models").exists() and not (tmp_path / "val").exists()
    assert not Path(stage_env["PIPELINE_OUTBOX"]).exists()  # nothing recorded either


def test_a_port_that_accepts_but_is_no_postgresql_server_fails_the_check():
    import threading

    from pipeline import PipelineError
    from pipeline.tracking.runs import check_store

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def answer_nonsense():
        conn, _ = listener.accept()
        conn.recv(8)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        conn.close()

    threading.Thread(target=answer_nonsense, daemon=True).start()
    uri = f"postgresql://u@127.0.0.1:{listener.getsockname()[1]}/db"
    try:
        with pytest.raises(
            PipelineError,
            match=f"MLflow tracking store {uri} is not reachable \\(no PostgreSQL server answers there\\)",
        ):
            check_store(uri)
    finally:
        listener.close()


def _open_new_store(uri, queue):
    try:
        from pipeline.tracking.runs import ensure_store

        ensure_store(uri)
        import mlflow

        mlflow.MlflowClient(uri).search_experiments(max_results=1)
        queue.put("ok")
    except Exception as exc:  # what a crash in MLflow's table migrations looks like
        queue.put(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")


def test_three_processes_opening_a_new_sqlite_store_at_once_all_succeed(tmp_path):
    import multiprocessing

    uri = f"sqlite:///{tmp_path / 'new.db'}"
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_open_new_store, args=(uri, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [queue.get(timeout=5) for _ in procs] == ["ok"] * 3


def test_predict_from_a_down_store_is_one_line_naming_it(tmp_path, stage_env):
    import subprocess
    import sys

    rows = tmp_path / "rows.csv"
    rows.write_text("a,b\n1,2\n")
    uri = f"http://127.0.0.1:{_free_port()}"
    proc = subprocess.run(
        [sys.executable, "-m", "stages.predict", "--input", str(rows), "--model", "models:/m@champion"],
        cwd=ROOT,
        env={**stage_env, "MLFLOW_TRACKING_URI": uri},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: MLflow tracking server {uri} is not reachable (Connection refused)")
    )
    assert not (tmp_path / "rows.predictions.csv").exists()


@pytest.mark.filterwarnings("ignore:Hint. Inferred schema contains integer")
def test_a_large_datasets_schema_is_what_mlflow_infers_without_testing_every_value():
    import mlflow.data
    import numpy as np
    import pandas as pd

    from pipeline.tracking.runs import SCHEMA_ROWS, frame_schema

    n = SCHEMA_ROWS + 500
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=n).astype(np.float32),
            "late_gap": rng.normal(size=n),
            "count": rng.integers(0, 9, n),
            "label": rng.choice(["a", "b<1"], n),
        }
    )
    frame.loc[n - 3, "late_gap"] = np.nan  # missing only after the rows the types are read from
    ours, mlflows = frame_schema(frame), mlflow.data.from_pandas(frame).schema  # MLflow's, value by value
    assert ours == mlflows
    assert not next(c for c in ours.inputs if c.name == "late_gap").required


@pytest.mark.filterwarnings("ignore:Hint. Inferred schema contains integer")
@pytest.mark.filterwarnings("ignore:The specified dataset source can be interpreted")
def test_a_logged_split_is_the_dataset_mlflow_would_log(tmp_path):
    import mlflow.data
    import numpy as np
    import pandas as pd

    from pipeline.artifacts import LABEL
    from pipeline.tracking.runs import dataset_inputs

    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"x": rng.normal(size=50), "n": rng.integers(0, 5, 50), LABEL: rng.integers(0, 3, 50)})
    frame.loc[7, "x"] = np.nan
    path = tmp_path / "val.parquet"
    frame.to_parquet(path)
    (entry,), digests = dataset_inputs({"validation": path})
    expected = mlflow.data.from_pandas(
        pd.read_parquet(path), source=str(path.resolve()), targets=LABEL, name="validation"
    ).to_dict()
    got = entry.dataset
    assert {k: getattr(got, k) for k in expected} == expected
    assert digests == {"validation": expected["digest"]}
    assert [(t.key, t.value) for t in entry.tags] == [("mlflow.data.context", "validation")]


@pytest.mark.parametrize(("metric", "ascending"), [("val_macro_f1", False), ("val_log_loss", True)])
def test_the_runs_table_address_lists_this_datas_candidates_best_first(metric, ascending):
    from urllib.parse import parse_qs

    from pipeline.decision.metrics import lower_is_better
    from pipeline.tracking.runs import runs_table

    address = runs_table("3", "abc", metric, ascending=lower_is_better(metric.removeprefix("val_")))
    path, query = address.split("?", 1)
    q = parse_qs(query)
    assert path == "#/experiments/3/runs" and q["orderByKey"] == [f"metrics.`{metric}`"]
    assert q["orderByAsc"] == [str(ascending).lower()] and q["workflowType"] == ["machine_learning"]
    assert q["searchFilter"] == ["tags.role = 'candidate' AND tags.data_digest = 'abc'"]
