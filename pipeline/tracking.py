"""Where MLflow runs go, and the runs the training stages log while they train.

Tracking URI: ``MLFLOW_TRACKING_URI`` when set, else ``sqlite:///<repo root>/mlflow.db`` where the
repo root is ``DVC_ROOT`` (set by DVC for every stage, and pointing at the user's repository
even for ``dvc exp run --queue``, which runs in a temporary copy) or the working directory.

One evaluation run per pipeline execution holds the cross-model views and the pick's headline
metrics; every candidate has a run and a logged model (:mod:`pipeline.registry`, which logs an
evaluation); the training stages log their runs while they train (:class:`StageRuns`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import Interrupted

if TYPE_CHECKING:  # imported where used: a stage starts its relay before loading pandas and torch
    import pandas as pd

    from pipeline.artifacts import Meta

log = logging.getLogger(__name__)


def repo_root(environ: Mapping[str, str] = os.environ, cwd: str | Path | None = None) -> Path:
    return Path(environ.get("DVC_ROOT") or cwd or Path.cwd()).resolve()


def tracking_uri(environ: Mapping[str, str] = os.environ, cwd: str | Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the SQLite store at the repository root."""
    uri = environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{repo_root(environ, cwd) / 'mlflow.db'}"


# What a tracking URI may look like here (MLflow 3 refuses its old file store).
URI_FORMS = "http(s)://host:port, sqlite:///path/to/mlflow.db or postgresql://user@host:port/db"
_DB_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}
# A tracking server that stops answering must not stall a stage for minutes (MLflow's defaults:
# 7 retries with exponential back-off, 120 s per request); the user's own settings win.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
OFFLINE = "PIPELINE_OFFLINE"  # =1: train without the store, the runs wait in the outbox
EXP_ENV = ("DVC_EXP_NAME", "DVC_EXP_BASELINE_REV")  # what a logging task keeps of a `dvc exp run`


def error_line(exc: BaseException) -> str:
    """An exception's first line, or its type's name when it says nothing (for a one-line warning)."""
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def offline(environ: Mapping[str, str] = os.environ) -> bool:
    """``PIPELINE_OFFLINE=1``: the stages train without a reachable store; ``make send`` sends later."""
    return environ.get(OFFLINE, "").strip().lower() in ("1", "true", "yes")


def check_store(uri: str, timeout: float = 5.0) -> None:
    """The pre-flight check of a tracking URI, before anything trains: a one-line
    :class:`~pipeline.PipelineError` naming ``uri`` when it is malformed or its store cannot be
    reached, within about ``timeout`` seconds.

    ``sqlite:///<path>``: the file's directory exists and is writable. ``http(s)://``: an MLflow
    server answers ``/health`` (200, or 401/403 behind authentication; anything else there, e.g. a
    proxy's 404, is not one). ``postgresql://``: a PostgreSQL server answers its SSL request on
    the port; ``mysql://``, ``mssql://``: the host accepts a connection. Anything else is malformed.
    """
    import socket
    import urllib.error
    import urllib.parse
    import urllib.request

    from pipeline import PipelineError

    fix = "set MLFLOW_TRACKING_URI to a reachable store, unset it for the local one, or set PIPELINE_OFFLINE=1 " \
          "to train now and send the runs later (make send)"
    try:
        parts = urllib.parse.urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        raise PipelineError(f"MLflow tracking URI {uri!r} is malformed ({exc}); expected {URI_FORMS}") from None
    scheme = parts.scheme.split("+")[0].lower()
    if scheme == "sqlite":
        path = uri.split(":///", 1)[1] if ":///" in uri else ""
        if not path or path == ":memory:":
            raise PipelineError(f"MLflow tracking URI {uri!r} is malformed: a SQLite store is sqlite:///path/to/mlflow.db")
        parent = Path(path).parent
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            raise PipelineError(f"MLflow tracking URI {uri!r}: directory {parent} does not exist or is not writable")
        return
    if scheme in ("http", "https"):
        if not parts.hostname:
            raise PipelineError(f"MLflow tracking URI {uri!r} is malformed: no host; expected {URI_FORMS}")
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):
                return
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):  # an MLflow server behind authentication: MLflow sends the credentials
                return
            why = f"HTTP {exc.code} on /health: not an MLflow tracking server"
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            why = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
        raise PipelineError(f"MLflow tracking server {uri} is not reachable ({why}); {fix}")
    if scheme in _DB_PORTS:
        if not parts.hostname:
            raise PipelineError(f"MLflow tracking URI {uri!r} is malformed: no host; expected {URI_FORMS}")
        try:
            with socket.create_connection((parts.hostname, port or _DB_PORTS[scheme]), timeout=timeout) as conn:
                if scheme == "postgresql":  # PostgreSQL's SSLRequest: a server answers one byte, S or N
                    conn.settimeout(timeout)
                    conn.sendall((8).to_bytes(4, "big") + (80877103).to_bytes(4, "big"))
                    if conn.recv(1) not in (b"S", b"N"):
                        raise OSError(0, "no PostgreSQL server answers there")
        except OSError as exc:
            raise PipelineError(f"MLflow tracking store {uri} is not reachable "
                                f"({exc.strerror or type(exc).__name__}); {fix}") from None
        return
    if scheme == "databricks":
        return
    raise PipelineError(f"MLflow tracking URI {uri!r} is not one this pipeline can use; expected {URI_FORMS}")


def preflight(environ: Mapping[str, str] = os.environ) -> str | None:
    """Before a stage trains or logs: the tracking URI, checked (:func:`check_store`), with
    :data:`HTTP_DEFAULTS` set for an HTTP server; None under ``PIPELINE_OFFLINE=1`` (the runs then
    wait in the outbox)."""
    uri = tracking_uri(environ)
    if offline(environ):
        log.warning("PIPELINE_OFFLINE is set: nothing is sent to %s; the runs wait in the outbox (make send)", uri)
        return None
    check_store(uri)
    if uri.startswith(("http://", "https://")):
        for key, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
    return uri


_READY: set[str] = set()  # SQLite stores this process has seen created


def ensure_store(uri: str) -> None:
    """Create a new SQLite store once, under a file lock, before anything uses it in parallel.

    MLflow creates a SQLite store's tables (its migrations) the first time a client opens it;
    parallel ``dvc queue`` workers opening a new ``mlflow.db`` at once crash there
    (``table _alembic_tmp_… already exists``). The first process to take ``<file>.lock`` creates the
    tables; the others wait for it and find them made. Other stores need nothing.
    """
    if not uri.startswith("sqlite:///") or uri in _READY:
        return
    import fcntl

    import mlflow

    path = Path(uri[len("sqlite:///"):])
    with open(path.with_name(path.name + ".lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
            client.search_experiments(max_results=1)
            client.search_registered_models(max_results=1)
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    _READY.add(uri)


def _params(params: Mapping[str, Any]) -> dict[str, str]:
    """MLflow params: nested keys joined with ``.``, values as text."""
    from pipeline.artifacts import flatten

    return {k: str(v) for k, v in flatten(params, sep=".").items()}


# Makes the MLflow 3 UI open the experiment on its runs table rather than the GenAI views.
_KIND_TAG, _KIND = "mlflow.experimentKind", "custom_model_development"


def artifact_root(uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: ``mlartifacts/`` beside a SQLite store's file.

    For any other store (a tracking server, a database server) None: the store decides. Without
    this, MLflow puts a SQLite store's artifacts under the working directory, whatever the store.
    """
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri[len(prefix):] in ("", ":memory:"):
        return None
    return (Path(uri[len(prefix):]).resolve().parent / "mlartifacts").as_uri()


def _experiment_id(client, name: str, uri: str) -> str:
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is None:
        location = artifact_root(uri)
        try:
            client.create_experiment(name, artifact_location=location, tags={_KIND_TAG: _KIND})
        except MlflowException:  # created meanwhile by a parallel `dvc queue` worker
            pass
        exp = client.get_experiment_by_name(name)
    if _KIND_TAG not in exp.tags:
        client.set_experiment_tag(exp.experiment_id, _KIND_TAG, _KIND)
    return exp.experiment_id


@contextmanager
def closing_runs(client) -> Iterator[list[str]]:
    """A list to put the ids of runs being written in (and take them out when finished): on an
    error they are marked FAILED (KILLED when the stage was interrupted), never left RUNNING."""
    open_runs: list[str] = []
    try:
        yield open_runs
    except BaseException as exc:
        status = "KILLED" if isinstance(exc, (KeyboardInterrupt, Interrupted)) else "FAILED"
        let_go(exc)
        for run_id in open_runs:
            try:
                client.set_terminated(run_id, status)
            except Exception:  # the store itself may be what failed; the original error matters
                log.warning("could not mark MLflow run %s as %s", run_id, status)
        raise


def let_go(exc: BaseException) -> None:
    """Free what the frames ``exc`` came through still hold, before the store is written again.

    A signal can stop MLflow in the middle of reading the store. The SQLite cursor it was
    reading from is then kept alive by the exception's traceback, and since Python 3.11 a
    rollback no longer resets it, so it holds a read lock on the file. Until it is freed, every
    write (marking the runs KILLED, here or in the helper process) waits out SQLite's 20 s busy
    timeout and fails. The frames have finished; their locals are dropped here, and collected."""
    import gc
    import traceback

    traceback.clear_frames(exc.__traceback__)
    gc.collect()


def log_artifacts_to_run(run_id: str, paths: list[Path], environ: Mapping[str, str] = os.environ) -> None:
    """Add files to an existing run (e.g. the report to its evaluation run)."""
    import mlflow

    uri = tracking_uri(environ)
    ensure_store(uri)
    client = mlflow.MlflowClient(tracking_uri=uri)
    for path in paths:
        client.log_artifact(run_id, str(path))


def gamma_text(gamma: float | None) -> str:
    """γ (or the weight strength α) as the run names write it: 2, not 2.0; ``none`` for None."""
    return "none" if gamma is None else f"{gamma:g}"


def _ms() -> int:
    return int(time.time() * 1000)


def run_tags(meta: Meta, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Tags every run of an execution carries: git commit (MLflow's own tag too), the data
    digest, and inside ``dvc exp run`` the experiment's name and its base commit.

    ``git_dirty`` is left out inside ``dvc exp run``: a queued experiment runs on its base commit
    with ``params.yaml`` changed by design, so "dirty" would say nothing; the run's params say
    what the experiment changed."""
    from pipeline.provenance import git_tags

    git = git_tags()
    tags = {**git, "mlflow.source.git.commit": git["git_commit"], "data_digest": meta["digest"]}
    if environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = environ["DVC_EXP_NAME"]
        tags["dvc_exp_base_commit"] = environ.get("DVC_EXP_BASELINE_REV") or git["git_commit"]
        tags.pop("git_dirty", None)
    return tags


def start_relay(environ: Mapping[str, str] = os.environ):
    """Start the relay process that sends a training stage's runs (:func:`relay`) and return it
    (a :class:`subprocess.Popen`), or None under ``PIPELINE_OFFLINE=1`` (the runs then wait in
    the outbox).

    A stage calls this first, before it imports torch and reads its data, so that importing
    MLflow and opening the store (about 3 s) happen beside them, on another core. The pre-flight
    check runs here: a malformed or unreachable store stops the stage before anything else, in
    one line naming the URI."""
    import json
    import subprocess

    from pipeline.outbox import outbox_dir

    if preflight(environ) is None:
        return None
    config = {"uri": tracking_uri(environ), "box": str(outbox_dir(repo_root(environ), environ))}
    return start_module("pipeline.tracking", json.dumps(config), environ=os.environ, stdin=subprocess.PIPE)


def start_module(module: str, *args: str, environ: Mapping[str, str] = os.environ, **popen):
    """``python -P -m <module> <args>`` of this package (a :class:`subprocess.Popen`): the package
    comes from ``PYTHONPATH``, never from the working directory (another checkout's ``pipeline``)."""
    import subprocess
    import sys

    package_root = str(Path(__file__).resolve().parents[1])
    env = {**environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, environ.get("PYTHONPATH")])),
           **popen.pop("env", {})}
    return subprocess.Popen([sys.executable, "-P", "-m", module, *args], env=env, **popen)


@contextmanager
def stage_relay(environ: Mapping[str, str] = os.environ):
    """:func:`start_relay` around a stage's whole work: on the way out the relay's stdin is closed,
    so a stage stopped before its runs began (bad input, Ctrl-C) takes its relay with it."""
    relay = start_relay(environ)
    try:
        yield relay
    finally:
        if relay is not None and not relay.stdin.closed:
            relay.stdin.close()


class StageRuns:
    """A training stage's MLflow runs, logged while it trains.

    One run for the stage (``role=stage``, started with ``mlflow.start_run`` so that it carries
    the machine's system metrics, sampled each second) and, as its children, one run per model
    (``role=model``): real start and end times, per-epoch curves sent as they come (at most once
    a second, with each epoch's own timestamp), and at the end the tags ``weights_sha256`` and
    ``best_epoch`` by which evaluate finds the run again. On an error the runs end FAILED
    (KILLED when the stage was interrupted).

    Everything goes through the outbox (:mod:`pipeline.outbox`): the stage only writes its runs'
    records there (at the start, at most once a second while it trains, at the end) and its relay
    (:func:`start_relay`, given as ``relay`` or started on entering) sends what each record adds,
    so the stage itself never imports MLflow. Leaving the ``with`` block waits for the relay to
    send the end. When the store cannot be reached the relay says so once and the stage trains
    on; a later stage (or ``make send``) sends what is missing.
    """

    def __init__(self, experiment: str, stage: str, models: Mapping[str, Mapping[str, Any]],
                 model_tags: Mapping[str, Mapping[str, str]], tags: Mapping[str, str],
                 environ: Mapping[str, str] = os.environ, datasets: Mapping[str, Path] | None = None,
                 relay=None):
        import threading
        import uuid

        from pipeline.outbox import RunRecord, outbox_dir, this_writer

        self.box, self.uri, self.experiment = outbox_dir(repo_root(environ), environ), tracking_uri(environ), experiment
        self.key = f"{stage}/{uuid.uuid4().hex}"
        now = _ms()
        self.stage = RunRecord(self.key, experiment, stage, tags={**tags, "role": "stage", "dvc_stage": stage},
                               start_time=now, writer=this_writer())
        self.models = {m: RunRecord(f"{self.key}/{m}", experiment, m, parent=self.key, start_time=now,
                                    tags={**tags, **model_tags.get(m, {}), "role": "model", "candidate": m,
                                          "model": m, "dvc_stage": stage},
                                    params=_params(models[m]), writer=this_writer())
                       for m in models}
        self.environ = environ
        self._written = dict.fromkeys(self.models, 0)
        self._lock = threading.Lock()
        self._last = 0
        self.relay, self._started = relay, relay is not None  # the relay process (None: the records wait)
        self.datasets = dict(datasets or {})  # name -> prepared split file, logged as the runs' inputs

    def _records(self):
        return [self.stage, *self.models.values()]

    def __enter__(self) -> StageRuns:
        import json

        from pipeline.outbox import write_record

        if not self._started:
            self.relay, self._started = start_relay(self.environ), True
        now = _ms()  # training starts now
        for r in self._records():
            r.start_time = now
            write_record(self.box, r)
        if self.relay is not None:  # the runs to send, by their records' keys
            order = {"stage": self.key, "models": [r.key for r in self.models.values()],
                     "datasets": {k: str(Path(v).resolve()) for k, v in self.datasets.items()}}
            try:
                self.relay.stdin.write(json.dumps(order).encode() + b"\n")
                self.relay.stdin.flush()
            except OSError as exc:  # the relay is gone: the runs wait in the outbox
                log.warning("MLflow relay stopped (%s): training goes on, its runs wait in %s; `make send` (or the "
                            "next stage that logs) sends them", error_line(exc), self.box)
                self.relay = None
        return self

    def epoch(self, model: str, record: Mapping[str, Any]) -> None:
        """One epoch of ``model``'s history (scalars; the confusion matrices stay in training.json)."""
        now = _ms()
        with self._lock:
            self.models[model].metrics += [(k, float(v), now, int(record["epoch"])) for k, v in record.items()
                                           if k != "epoch" and isinstance(v, (int, float))]
            if now - self._last >= 1000:
                self._write()

    def _write(self) -> None:
        """Rewrite the records that gained metrics: the relay sends what they add."""
        from pipeline.outbox import write_record

        self._last = _ms()
        for m, r in self.models.items():
            if len(r.metrics) > self._written[m]:
                write_record(self.box, r)
                self._written[m] = len(r.metrics)

    def finish(self, tags: Mapping[str, Mapping[str, str]]) -> None:
        """The models are saved: add each one's ``tags`` (weights_sha256, best_epoch...)."""
        for m, t in tags.items():
            self.models[m].tags.update(t)

    def __exit__(self, exc_type, exc, tb) -> bool:
        from pipeline.outbox import write_record

        status = ("FINISHED" if exc is None else
                  "KILLED" if isinstance(exc, (KeyboardInterrupt, Interrupted)) else "FAILED")
        with self._lock:
            end = _ms()
            for r in self._records():
                r.status, r.end_time = status, end
                write_record(self.box, r)
        if self.relay is not None:  # its stdin closed, it sends the end and stops
            try:
                self.relay.stdin.close()
            except OSError:
                pass
            try:
                self.relay.wait()
            except BaseException:  # a second Ctrl-C: stop waiting, the records stay in the outbox
                self.relay.kill()
                raise
        return False


def relay(config: Mapping[str, Any], orders) -> None:
    """The sending half of :class:`StageRuns`, in a process of its own (``python -m
    pipeline.tracking``, :func:`start_relay`).

    Opens the store and sends what earlier stages left in the outbox; then takes from ``orders``
    (a queue) the stage's order, its runs' record keys: starts the stage's run (with system
    metrics) and its models' runs, logs their datasets, and once a second sends the metrics their
    records gained, until ``orders`` yields None (the stage closed the relay's stdin, or died);
    then what is left, the tags and the end. A store that fails is said once; what was not sent
    stays in the outbox."""
    import queue
    import socket

    import mlflow
    from mlflow.entities import Metric, RunTag

    from pipeline.io import read_json
    from pipeline.outbox import RunRecord, log_batches, mark_sent, record_path, send, send_pending

    box, uri = Path(config["box"]), config["uri"]
    state = {"client": None, "said": False}

    def lost(exc: BaseException) -> None:
        if not state["said"]:
            state["said"] = True
            log.warning("MLflow store %s lost (%s): training goes on, its runs wait in %s; `make send` (or the "
                        "next stage that logs) sends them", uri, error_line(exc), box)
        state["client"] = None

    try:
        ensure_store(uri)
        mlflow.set_tracking_uri(uri)
        client = state["client"] = mlflow.MlflowClient(uri)
        # what earlier stages left waiting; the stage that started this relay writes its own
        send_pending(client, lambda name: _experiment_id(client, name, uri), box,
                     leave=f"{socket.gethostname()}:{os.getppid()}")
    except Exception as exc:  # a store that cannot be reached must not stop training
        lost(exc)
    order = orders.get()
    if order is None:  # the stage ended before it trained
        return

    def record(key: str) -> RunRecord:
        return RunRecord.from_dict(read_json(record_path(box, key), what="outbox record"))

    keys, sent, ids = [order["stage"], *order["models"]], {}, {}
    if state["client"] is not None:
        try:
            first = record(keys[0])
            exp_id = _experiment_id(client, first.experiment, uri)
            ids[first.key] = send(client, exp_id, dataclasses.replace(first, status="RUNNING"))  # its real start
            mlflow.set_system_metrics_sampling_interval(1)
            mlflow.set_system_metrics_samples_before_logging(1)
            active = mlflow.start_run(run_id=ids[first.key], log_system_metrics=True)
            for key in keys[1:]:  # the end is sent last, with the tags it gained
                r = record(key)
                ids[key] = send(client, exp_id, dataclasses.replace(r, status="RUNNING"),
                                parent_run_id=active.info.run_id)
                sent[key] = len(r.metrics)
            if order.get("datasets"):
                inputs, _ = dataset_inputs({k: Path(v) for k, v in order["datasets"].items()})
                for run_id in ids.values():
                    client.log_inputs(run_id, datasets=inputs)
        except Exception as exc:
            lost(exc)

    def sync(final: bool) -> None:
        if state["client"] is None:
            return
        try:
            for key in keys[1:]:
                r = record(key)
                if len(r.metrics) > sent[key]:
                    log_batches(client, ids[key], metrics=[Metric(*m) for m in r.metrics[sent[key]:]])
                    sent[key] = len(r.metrics)
                if final and r.status != "RUNNING":
                    client.log_batch(ids[key], tags=[RunTag(k, v) for k, v in r.tags.items()])
                    client.set_terminated(ids[key], r.status, end_time=r.end_time)
                    mark_sent(box, r)
            r = record(keys[0])
            if final and r.status != "RUNNING" and mlflow.active_run() is not None:
                mlflow.end_run(r.status)
                mark_sent(box, r)
        except Exception as exc:
            lost(exc)

    while True:
        try:
            if orders.get(timeout=1.0) is None:
                break
        except queue.Empty:
            sync(final=False)
    sync(final=True)


def _relay_main(argv: list[str]) -> None:
    """``python -m pipeline.tracking <config JSON>``: :func:`relay`, its orders read from stdin
    (one JSON line; the end of stdin ends it: the stage closed it, or died). Ctrl-C and SIGTERM,
    which reach a stage's whole process group, are ignored here: the stage catches them and writes
    its runs' end (KILLED), which the relay then sends. It exits without Python's clean-up
    (MLflow's exit handlers have nothing left to do by then; they take most of a second)."""
    import json
    import queue
    import sys
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    orders: queue.Queue = queue.Queue()

    def read() -> None:
        for line in sys.stdin.buffer:
            orders.put(json.loads(line))
        orders.put(None)

    threading.Thread(target=read, daemon=True).start()
    code = 0
    try:
        relay(json.loads(argv[0]), orders)
    except Exception as exc:  # what was not sent stays in the outbox
        log.warning("MLflow relay stopped (%s): the runs wait in the outbox; `make send` sends them", error_line(exc))
        code = 1
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


SCHEMA_ROWS = 10_000  # rows above which a dataset's schema is inferred by frame_schema


def frame_schema(frame: pd.DataFrame):
    """The MLflow schema ``mlflow.data.from_pandas`` infers for ``frame``, computed in O(columns)
    Python: the types from the first :data:`SCHEMA_ROWS` rows, a column required where no row of
    the whole frame is missing (pandas' ``isna``, vectorised). MLflow's own inference tests every
    value in Python: 30 s for the 600 000 training rows of 1 000 000 (tested equal)."""
    from mlflow.types.schema import ColSpec, Schema
    from mlflow.types.utils import _infer_schema

    head = _infer_schema(frame.head(SCHEMA_ROWS))
    missing = frame.isna().any()
    return Schema([ColSpec(c.type, c.name, required=not bool(missing[c.name])) for c in head.inputs])


def dataset_inputs(splits: Mapping[str, Path]) -> tuple[list, dict[str, str]]:
    """MLflow dataset inputs of prepared splits (``name -> parquet file``), each with its digest
    and source, and their digests by name."""
    import mlflow.data
    import pandas as pd
    from mlflow.entities import DatasetInput, InputTag

    from pipeline.artifacts import LABEL

    inputs, digests = [], {}
    for name, path in splits.items():
        with warnings.catch_warnings():  # a local path matches two of MLflow's source types; either is right
            warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
            warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")  # source_row
            frame = pd.read_parquet(path)
            ds = mlflow.data.from_pandas(frame, source=str(Path(path).resolve()), targets=LABEL, name=name)
            if len(frame) > SCHEMA_ROWS:  # PandasDataset.schema is a cached property: set, it is not inferred
                ds.__dict__["schema"] = frame_schema(frame)
            inputs.append(DatasetInput(ds._to_mlflow_entity(), [InputTag("mlflow.data.context", name)]))
        digests[name] = ds.digest
    return inputs, digests


if __name__ == "__main__":
    import sys

    _relay_main(sys.argv[1:])
