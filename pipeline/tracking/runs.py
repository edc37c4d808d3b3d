"""Everything this pipeline says to MLflow, in one module: where the runs go, what each stage
logs, and the candidates as models in the Model Registry.

Store. ``MLFLOW_TRACKING_URI`` when set, else ``sqlite:///<repo root>/mlflow.db``, the repo root
being ``DVC_ROOT`` (set by DVC for every stage, the user's repository even for ``dvc exp run
--queue``) or the working directory. :func:`preflight` checks it before a stage works.

Runs. A training stage logs one run for itself (``role=stage``, with the machine's system
metrics) and, under it, one per model it trains (``role=training``: per-epoch curves as they come,
sent with MLflow's asynchronous logging). evaluate logs one run per pipeline execution
(``role=evaluation``) and, directly under it, one run per candidate (``role=candidate``), named
as the candidate is: a few headline metrics that say their split (``val_macro_f1``,
``test_rarest_recall``...; :func:`headline`), every other metric as the table ``metrics.json``,
and the candidate as a logged model whose metrics are linked to the validation and test
datasets. A candidate already logged with the same content and metrics is linked to the new
execution (as an input of its run), not logged again.

Outbox. What a stage means to log is written first as files (:mod:`pipeline.tracking.outbox`), so a store
that is down or lost mid-run stops nothing: the stage trains on, and ``make send``
(:func:`send_pending`) logs what waits, idempotently (a run by its ``outbox_key`` tag, a metric
by its key and step).

Names. Runs, tags and registered versions carry the candidates' own names; only where MLflow
refuses characters are they replaced (:mod:`pipeline.tracking.names`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import interruption
from pipeline.tracking.names import check_distinct, key_part, model_name
from pipeline.tracking.outbox import RunRecord, mark_sent, read_records, this_writer, writer_alive, write_record

if TYPE_CHECKING:
    import pandas as pd

    from pipeline.artifacts import Meta, ModelRecord

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
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}
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

    fix = (
        "set MLFLOW_TRACKING_URI to a reachable store, unset it for the local one, or set PIPELINE_OFFLINE=1 "
        "to train now and send the runs later (make send)"
    )
    try:
        parts = urllib.parse.urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        raise PipelineError(f"MLflow tracking URI {uri!r} is malformed ({exc}); expected {URI_FORMS}") from None
    scheme = parts.scheme.split("+")[0].lower()
    if scheme == "sqlite":
        path = uri.split(":///", 1)[1] if ":///" in uri else ""
        if not path or path == ":memory:":
            raise PipelineError(
                f"MLflow tracking URI {uri!r} is malformed: a SQLite store is sqlite:///path/to/mlflow.db"
            )
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
            raise PipelineError(
                f"MLflow tracking store {uri} is not reachable ({exc.strerror or type(exc).__name__}); {fix}"
            ) from None
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

    path = Path(uri[len("sqlite:///") :])
    with open(path.with_name(path.name + ".lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
            client.search_experiments(max_results=1)
            client.search_registered_models(max_results=1)
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    _READY.add(uri)


def experiment_id(client, name: str, uri: str) -> str:
    """The id of experiment ``name``, created when absent (its artifacts under
    :func:`artifact_root`), tagged so that MLflow 3's UI opens it on its runs table."""
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            client.create_experiment(name, artifact_location=artifact_root(uri), tags={_KIND_TAG: _KIND})
        except MlflowException:  # created meanwhile by a parallel `dvc queue` worker
            pass
        exp = client.get_experiment_by_name(name)
    if _KIND_TAG not in exp.tags:
        client.set_experiment_tag(exp.experiment_id, _KIND_TAG, _KIND)
    return exp.experiment_id


# Makes the MLflow 3 UI open the experiment on its runs table rather than the GenAI views.
_KIND_TAG, _KIND = "mlflow.experimentKind", "custom_model_development"


def artifact_root(uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: ``mlartifacts/`` beside a SQLite store's file.
    For any other store None: the store decides. (Without this, MLflow puts a SQLite store's
    artifacts under the working directory, whatever the store.)"""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri[len(prefix) :] in ("", ":memory:"):
        return None
    return (Path(uri[len(prefix) :]).resolve().parent / "mlartifacts").as_uri()


def client_for(uri: str):
    """An ``MlflowClient`` of ``uri`` (a new SQLite store created first: :func:`ensure_store`),
    which MLflow's module-level calls (``log_model``, ``register_model``) then use too."""
    import mlflow

    ensure_store(uri)
    mlflow.set_tracking_uri(uri)  # the registry follows it
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


@contextmanager
def closing_runs(client) -> Iterator[list[str]]:
    """A list to put the ids of runs being written in (and take them out when finished): on an
    error they are marked FAILED (KILLED when the stage was interrupted), never left RUNNING."""
    open_runs: list[str] = []
    try:
        yield open_runs
    except BaseException as exc:
        status = "KILLED" if interruption(exc) else "FAILED"
        let_go(exc)
        for run_id in open_runs:
            try:
                client.set_terminated(run_id, status)
            except Exception:  # the store itself may be what failed; the original error matters
                log.warning("could not mark MLflow run %s as %s", run_id, status)
        raise


def let_go(exc: BaseException) -> None:
    """Free what the frames ``exc`` came through still hold, before the store is written again.

    A signal can stop MLflow in the middle of reading the store. The SQLite cursor it was reading
    from is then kept alive by the exception's traceback, and since Python 3.11 a rollback no
    longer resets it, so it holds a read lock on the file: every write (marking the runs KILLED)
    would wait out SQLite's 20 s busy timeout and fail. The frames have finished; their locals
    are dropped here, and collected."""
    import gc
    import traceback

    traceback.clear_frames(exc.__traceback__)
    gc.collect()


def log_artifacts_to_run(run_id: str, paths: list[Path], environ: Mapping[str, str] = os.environ) -> None:
    """Add files to an existing run (the report to its evaluation run)."""
    client = client_for(tracking_uri(environ))
    for path in paths:
        client.log_artifact(run_id, str(path))


def gamma_text(gamma: float | None) -> str:
    """γ (or the weight strength α) as the run names write it: 2, not 2.0; ``none`` for None."""
    return "none" if gamma is None else f"{gamma:g}"


def _ms() -> int:
    return int(time.time() * 1000)


def flat_params(params: Mapping[str, Any]) -> dict[str, str]:
    """MLflow params: nested keys joined with ``.``, values as text (MLflow keeps 6000 characters)."""
    from pipeline.artifacts import flatten

    return {k: str(v)[:6000] for k, v in flatten(params, sep=".").items()}


def run_tags(meta: Meta, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Tags every run of an execution carries: git commit (MLflow's own tag too), the data
    digest, and inside ``dvc exp run`` the experiment's name and its base commit (and no
    ``git_dirty``: a queued experiment changes ``params.yaml`` by design; its params say how)."""
    from pipeline.tracking.provenance import git_tags

    git = git_tags()
    tags = {**git, "mlflow.source.git.commit": git["git_commit"], "data_digest": meta["digest"]}
    if environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = environ["DVC_EXP_NAME"]
        tags["dvc_exp_base_commit"] = environ.get("DVC_EXP_BASELINE_REV") or git["git_commit"]
        tags.pop("git_dirty", None)
    return tags


# --- the outbox, sent --------------------------------------------------------------------------

KEY_TAG = "outbox_key"  # the tag by which a run is found again from its record
_BATCH = 900  # MLflow takes at most 1000 metrics per log_batch call


def find_run(client, experiment: str, key: str):
    """The run tagged with outbox key ``key`` (the earliest if several), or None."""
    runs = client.search_runs(
        [experiment], filter_string=f"tags.{KEY_TAG} = '{key}'", order_by=["attributes.start_time ASC"], max_results=1
    )
    return runs[0] if runs else None


def log_batches(client, run_id: str, *, params=(), metrics=(), synchronous: bool = True) -> list:
    """``params`` and ``metrics`` (MLflow entities) in as few ``log_batch`` calls as MLflow
    takes; the pending operations when not ``synchronous``."""
    params, metrics = list(params), list(metrics)
    return [
        client.log_batch(
            run_id, params=params[i : i + _BATCH], metrics=metrics[i : i + _BATCH], synchronous=synchronous
        )
        for i in range(0, max(len(params), len(metrics), 1), _BATCH)
    ]


def send(client, experiment: str, record: RunRecord, parent_run_id: str | None = None, new: bool = False) -> str:
    """Make the store hold ``record``: create its run when absent (``new``: known to be, not looked
    for), add the params and metrics it lacks, end it as the record says. Returns the run id."""
    from mlflow.entities import Metric, Param
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    run = None if new else find_run(client, experiment, record.key)
    if run is not None and run.info.status != "RUNNING":
        return run.info.run_id
    have: set[tuple[str, int]] = set()
    params_have: set[str] = set()
    if run is None:
        tags = {**record.tags, KEY_TAG: record.key, **({MLFLOW_PARENT_RUN_ID: parent_run_id} if parent_run_id else {})}
        run = client.create_run(experiment, start_time=record.start_time or None, tags=tags, run_name=record.name)
    else:
        have = {
            (m.key, m.step)
            for key in {m[0] for m in record.metrics}
            for m in client.get_metric_history(run.info.run_id, key)
        }
        params_have = set(run.data.params)
        for k, v in record.tags.items():
            if run.data.tags.get(k) != v:
                client.set_tag(run.info.run_id, k, v)
    run_id = run.info.run_id
    log_batches(
        client,
        run_id,
        params=[Param(k, v) for k, v in record.params.items() if k not in params_have],
        metrics=[Metric(k, float(v), int(t), int(s)) for k, v, t, s in record.metrics if (k, s) not in have],
    )
    if record.status != "RUNNING":
        client.set_terminated(run_id, record.status, end_time=record.end_time)
    return run_id


def send_pending(client, uri: str, box: str | Path) -> int:
    """Send every record in the outbox ``box`` whose run is missing or unfinished in the store,
    parents first, and move the ended ones to ``sent/``. A RUNNING record of a process still
    alive (a parallel ``dvc queue`` job, or this one) is left to it. Returns how many were sent."""
    sent, ids = 0, {}
    for record in read_records(box):
        if record.status == "RUNNING" and writer_alive(record.writer):
            continue
        exp = experiment_id(client, record.experiment, uri)
        run = find_run(client, exp, record.key)
        sent += run is None or run.info.status == "RUNNING"
        parent = ids.get(record.parent) if record.parent else None
        if record.parent and parent is None:  # its parent was sent before: find it
            found = find_run(client, exp, record.parent)
            parent = found.info.run_id if found else None
        ids[record.key] = send(client, exp, record, parent)
        if record.status != "RUNNING":
            mark_sent(box, record)
    return sent


# --- a training stage's runs ---------------------------------------------------------------------


class StageRuns:
    """A training stage's MLflow runs, logged while it trains.

    One run for the stage (``role=stage``, started with ``mlflow.start_run`` so that it carries
    the machine's system metrics, sampled each second) and, as its children, one run per model
    (``role=training``): real start and end times, per-epoch curves sent at most once a second
    with each epoch's own timestamp (asynchronously: training does not wait for the store), and at
    the end the tags ``weights_sha256`` and ``best_epoch`` by which evaluate finds the run again.
    On an error the runs end FAILED (KILLED when the stage was interrupted).

    Every run is written to the outbox first (at the start, once a second, at the end). When the
    store cannot be reached or is lost, that is said once and the stage trains on; ``make send``
    (or the next stage that logs) sends what is missing."""

    def __init__(
        self,
        experiment: str,
        stage: str,
        models: Mapping[str, Mapping[str, Any]],
        model_tags: Mapping[str, Mapping[str, str]],
        tags: Mapping[str, str],
        environ: Mapping[str, str] = os.environ,
        datasets: Mapping[str, Path] | None = None,
    ):
        import uuid

        from pipeline.tracking.outbox import outbox_dir

        self.box, self.uri = outbox_dir(repo_root(environ), environ), tracking_uri(environ)
        self.online = not offline(environ)
        key = f"{stage}/{uuid.uuid4().hex}"
        self.stage = RunRecord(
            key, experiment, stage, tags={**tags, "role": "stage", "dvc_stage": stage}, writer=this_writer()
        )
        self.models = {
            m: RunRecord(
                f"{key}/{m}",
                experiment,
                m,
                parent=key,
                params=flat_params(models[m]),
                tags={**tags, **model_tags.get(m, {}), "role": "training", "model": m, "dvc_stage": stage},
                writer=this_writer(),
            )
            for m in models
        }
        self.datasets = dict(datasets or {})  # name -> prepared split file, logged as the runs' inputs
        self.client, self.ids, self.sent = None, {}, dict.fromkeys(self.models, 0)
        self._pending: list = []  # asynchronous operations not yet waited for
        self._last, self._active = 0, None  # the stage's run, once started (with its system metrics)
        self._exiting: BaseException | None = None  # what ends the stage's runs, in __exit__

    def _records(self) -> list[RunRecord]:
        return [self.stage, *self.models.values()]

    def _lost(self, exc: BaseException) -> None:
        stop = interruption(exc)
        if stop is not None and stop is not interruption(self._exiting):  # not the store: a stop, now
            raise stop
        log.warning(
            "MLflow store %s lost (%s): training goes on, its runs wait in %s; `make send` (or the next "
            "stage that logs) sends them",
            self.uri,
            error_line(exc),
            self.box,
        )
        self.client = None

    def __enter__(self) -> StageRuns:
        now = _ms()  # training starts now
        for r in self._records():
            r.start_time = now
            write_record(self.box, r)
        if self.online:
            try:
                self._open()
            except Exception as exc:  # a store that cannot be reached must not stop training
                self._lost(exc)
        return self

    def _open(self) -> None:
        import mlflow

        self.client = client_for(self.uri)
        send_pending(self.client, self.uri, self.box)  # what earlier stages left waiting
        exp = experiment_id(self.client, self.stage.experiment, self.uri)
        stage_id = send(self.client, exp, self.stage, new=True)  # its key is new: no run has it yet
        self.ids = {
            self.stage.key: stage_id,
            **{r.key: send(self.client, exp, r, stage_id, new=True) for r in self.models.values()},
        }
        mlflow.set_system_metrics_sampling_interval(1)
        mlflow.set_system_metrics_samples_before_logging(1)
        self._active = mlflow.start_run(run_id=stage_id, log_system_metrics=True)
        if self.datasets:
            inputs, _ = dataset_inputs(self.datasets)
            for run_id in self.ids.values():
                self.client.log_inputs(run_id, datasets=inputs)

    def epoch(self, model: str, record: Mapping[str, Any]) -> None:
        """One epoch of ``model``'s history (scalars; the class counts stay in training.json)."""
        now = _ms()
        self.models[model].metrics += [
            (k, float(v), now, int(record["epoch"]))
            for k, v in record.items()
            if k != "epoch" and isinstance(v, (int, float))
        ]
        if now - self._last >= 1000:
            self._flush()

    def _flush(self) -> None:
        """Write the records that gained metrics and send what they gained, asynchronously (after
        waiting for the previous sending, a second old: a lost store is noticed within seconds)."""
        self._last = _ms()
        try:
            for op in self._pending:
                op.wait()
        except Exception as exc:
            self._lost(exc)
        self._pending = []
        for m, r in self.models.items():
            if len(r.metrics) > self.sent[m]:
                write_record(self.box, r)
                if self.client is not None:
                    from mlflow.entities import Metric

                    new = [Metric(*x) for x in r.metrics[self.sent[m] :]]
                    self._pending += log_batches(self.client, self.ids[r.key], metrics=new, synchronous=False)
                self.sent[m] = len(r.metrics)

    def finish(self, tags: Mapping[str, Mapping[str, str]]) -> None:
        """The models are saved: add each one's ``tags`` (weights_sha256, best_epoch...)."""
        for m, t in tags.items():
            self.models[m].tags.update(t)

    def __exit__(self, exc_type, exc, tb) -> bool:
        status = "FINISHED" if exc is None else "KILLED" if interruption(exc) else "FAILED"
        self._exiting = exc  # an error of the store's while ending a stopped stage is the store's
        if exc is not None:
            let_go(exc)
        end = _ms()
        for r in self._records():
            r.status, r.end_time = status, end
            write_record(self.box, r)
        if self._active is None:  # offline, or the store was unreachable from the start
            return False
        import mlflow
        from mlflow.entities import RunTag

        if self.client is not None:
            self._flush()  # the last metrics
        try:
            if self.client is not None:
                for op in self._pending:
                    op.wait()
                for r in self.models.values():
                    self.client.log_batch(self.ids[r.key], tags=[RunTag(k, v) for k, v in r.tags.items()])
                    self.client.set_terminated(self.ids[r.key], status, end_time=end)
                    mark_sent(self.box, r)
                mlflow.end_run(status)  # the stage's run, and its system metrics' thread
                mark_sent(self.box, self.stage)
        except Exception as exc2:
            self._lost(exc2)
        if mlflow.active_run() is not None:  # lost: its system metrics' thread stops, the run's end waits
            with contextlib.suppress(Exception):
                mlflow.end_run(status)
        return False


# --- datasets ------------------------------------------------------------------------------------

SCHEMA_ROWS = 100  # rows the column types are read from (frame_schema; prepared splits hold typed numbers): 10 000 took 2.5 s at 200 columns


def frame_schema(frame: pd.DataFrame):
    """The MLflow schema of ``frame`` as ``mlflow.data.from_pandas`` would infer it, computed in
    O(columns) Python: the types from the first :data:`SCHEMA_ROWS` rows, a column required where
    no row of the whole frame is missing. MLflow's own inference tests every value in Python: 30 s
    for the 600 000 training rows of 1 000 000 (tested equal)."""
    from mlflow.models import infer_signature
    from mlflow.types.schema import ColSpec, Schema

    head = infer_signature(frame.head(SCHEMA_ROWS)).inputs
    missing = frame.isna().any()
    return Schema([ColSpec(c.type, c.name, required=not bool(missing[c.name])) for c in head.inputs])


def dataset_inputs(splits: Mapping[str, Path]) -> tuple[list, dict[str, str]]:
    """MLflow dataset inputs of prepared splits (``name -> parquet file``), each with its digest,
    source, schema (:func:`frame_schema`) and profile, and their digests by name."""
    import mlflow.data
    import pandas as pd
    from mlflow.data.dataset import Dataset
    from mlflow.entities import Dataset as DatasetEntity
    from mlflow.entities import DatasetInput, InputTag

    from pipeline.artifacts import LABEL

    inputs, digests = [], {}
    for name, path in splits.items():
        with warnings.catch_warnings():  # a local path matches two of MLflow's source types; either is right
            warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
            warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")  # source_row
            frame = pd.read_parquet(path)
            ds = mlflow.data.from_pandas(frame, source=str(Path(path).resolve()), targets=LABEL, name=name)
            schema = json.dumps({"mlflow_colspec": frame_schema(frame).to_dict()})
        # the base class's fields (name, digest, source): PandasDataset.to_dict would infer the schema value by value
        entity = DatasetEntity(**Dataset.to_dict(ds), schema=schema, profile=json.dumps(ds.profile))
        inputs.append(DatasetInput(entity, [InputTag("mlflow.data.context", name)]))
        digests[name] = ds.digest
    return inputs, digests


# --- the candidates, as runs and logged models -----------------------------------------------------

MODEL_CODE = Path(__file__).with_name("mlflow_model.py")
PACKAGE = Path(__file__).parents[1]  # the whole pipeline package travels with the model
# what the model needs at load time, pinned to the versions it was logged with
REQUIREMENTS = ("mlflow", "numpy", "pandas", "scikit-learn", "scipy", "skops", "torch", "xgboost-cpu", "pyarrow")
SPLITS = (("val", "validation"), ("test", "test"))  # prefix of a headline key, the dataset it is linked to
TABLE = "metrics.json"  # each candidate run's full metrics table (mlflow.log_table)
PROGRESS_EVERY_S = 10


def metric_key(split: str, metric: str, view: str | None = None) -> str:
    """A headline metric's key: ``<split>_[<view>_]<metric>``, a class name in it through
    :func:`pipeline.tracking.names.key_part` (``val_macro_f1``, ``test_recall/8``, ``val_uniform_prior_macro_f1``)."""
    base, _, cls = metric.partition("/")
    return f"{split}_{view + '_' if view else ''}{base}" + (f"/{key_part(cls)}" if cls else "")


def headline(entry: Mapping[str, Any], policy: tuple[str, str | None], rarest: str) -> dict[str, dict[str, float]]:
    """Dataset -> key -> value of one candidate (a ``metrics.json`` entry): the policy's metric
    (``policy``: the metric and the view it reads, None for held out), macro-F1, balanced
    accuracy, and the rarest class's recall and precision, on validation and on test. At most 10
    keys; they sort by split."""
    metric, view = policy
    out = {}
    for split, dataset in SPLITS:
        part = entry["val"] if split == "val" else entry
        values = {
            metric_key(split, metric, view): (part[view] if view else part).get(metric),
            f"{split}_macro_f1": part.get("macro_f1"),
            f"{split}_balanced_accuracy": part.get("balanced_accuracy"),
            f"{split}_rarest_recall": part.get(f"recall/{rarest}"),
            f"{split}_rarest_precision": part.get(f"precision/{rarest}"),
        }
        out[dataset] = {k: float(v) for k, v in values.items() if isinstance(v, (int, float))}
    return out


def pip_requirements() -> list[str]:
    """The model's requirements, pinned to this environment's versions (torch without ``+cpu``)."""
    out = []
    for name in REQUIREMENTS:
        try:
            out.append(f"{name}=={metadata.version(name).split('+')[0]}")
        except metadata.PackageNotFoundError:
            continue
    return out


def signature(input_types: Mapping[str, str], outputs: list[str]):
    """Inputs: the raw columns the model reads, each typed as the preprocessing decided
    (``double``, ``datetime`` or ``string``; :meth:`pipeline.data.preprocessing.Preprocessing.input_types`)
    and required, so that MLflow refuses a missing column or a value of the wrong type before the
    model runs; outputs: the decided class (text) and one probability (double) per class, as
    :mod:`pipeline.tracking.serving` names them."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec(kind, name, required=True) for name, kind in input_types.items()]),
        outputs=Schema([ColSpec("string", outputs[0]), *(ColSpec("double", c) for c in outputs[1:])]),
    )


@dataclass
class Candidate:
    """What one candidate's run and logged model hold."""

    name: str
    bundle: Path  # a pipeline.tracking.serving bundle
    digest: str  # the bundle's content digest
    metrics: dict[str, dict[str, float]]  # dataset -> key -> value (headline)
    table: pd.DataFrame  # every metric of metrics.json, one row per (split, metric)
    params: dict[str, str]
    tags: dict[str, str]
    weights_digest: str = ""  # a trained model's: sha256 of its checkpoint or description file
    best_epoch: int = 0
    curves: list[dict[str, Any]] = field(default_factory=list)  # per-epoch history (trained models)
    artifacts: list[Path] = field(default_factory=list)

    @property
    def trained(self) -> bool:
        return not self.tags.get("rule")


@dataclass(frozen=True)
class Logged:
    run_id: str
    model_id: str
    reused: bool


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _existing(client, exp: str, data_digest: str) -> dict[tuple[str, str], Any]:
    """(content digest, metrics digest) -> the earliest READY logged model of this data."""
    found: dict[tuple[str, str], Any] = {}
    token = None
    while True:
        page = client.search_logged_models(
            [exp], filter_string=f"tags.data_digest = '{data_digest}'", max_results=50, page_token=token
        )
        for m in page:
            key = (m.tags.get("content_digest"), m.tags.get("metrics_digest"))
            if str(m.status).endswith("READY") and (
                key not in found or m.creation_timestamp < found[key].creation_timestamp
            ):
                found[key] = m
        token = page.token
        if not token:
            return found


def training_runs(client, exp: str, data_digest: str) -> dict[str, str]:
    """weights sha256 -> the earliest FINISHED run that trained those weights on this data
    (deterministic training makes repeats share a digest)."""
    found: dict[str, str] = {}
    where = f"tags.role = 'training' AND tags.data_digest = '{data_digest}' AND attributes.status = 'FINISHED'"
    for run in client.search_runs(
        [exp], filter_string=where, order_by=["attributes.start_time DESC"], max_results=50_000
    ):
        found[run.data.tags.get("weights_sha256", "")] = run.info.run_id
    return found


def restore_training_run(client, exp: str, c: Candidate, tags: Mapping[str, str], box: Path) -> str:
    """The run that trained ``c``, absent from the store (a stage DVC skipped, a new store): sent
    again from the outbox's record, or else recreated from ``training.json``, tagged ``restored``."""
    for record in read_records(box, sent=True):
        if (
            record.tags.get("weights_sha256") == c.weights_digest
            and record.tags.get("data_digest") == tags["data_digest"]
        ):
            return send(client, exp, record)
    now = _ms()
    log.info("%s: its training run is not in the store: recreated from training.json, tagged restored", c.name)
    return send(
        client,
        exp,
        RunRecord(
            f"restored/{tags['data_digest']}/{c.weights_digest}",
            client.get_experiment(exp).name,
            c.name,
            tags={
                **tags,
                **{k: v for k, v in c.tags.items() if k != "role"},
                "role": "training",
                "restored": "true",
                "model": c.name,
                "weights_sha256": c.weights_digest,
                "best_epoch": str(c.best_epoch),
            },
            params=c.params,
            metrics=[
                (k, float(v), now, int(h["epoch"]))
                for h in c.curves
                for k, v in h.items()
                if k != "epoch" and isinstance(v, (int, float))
            ],
            start_time=now,
            end_time=now,
            status="FINISHED",
        ),
    )


def log_candidates(
    client,
    exp: str,
    candidates: list[Candidate],
    *,
    execution: str,
    run_tags: Mapping[str, str],
    datasets: Mapping[str, str],
    input_example: pd.DataFrame | None,
    input_types: Mapping[str, str],
    outputs: list[str],
    open_runs: list[str],
    box: Path,
) -> dict[str, Logged]:
    """Log each candidate as a run under the execution's run ``execution`` and as a model,
    unless the same model (content and metrics) is already in the experiment: then it is linked
    to the execution's run (as an input) and not logged again. A trained model's logged model is
    also an output of the run that trained it. ``datasets``: dataset name -> digest."""
    import mlflow
    from mlflow.entities import LoggedModelInput, LoggedModelOutput, Metric, Param
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    check_distinct([c.name for c in candidates], model_name, "candidates")
    data_digest = run_tags["data_digest"]
    existing, trained = _existing(client, exp, data_digest), training_runs(client, exp, data_digest)
    sig, reqs = signature(input_types, outputs), pip_requirements()
    out: dict[str, Logged] = {}
    said = time.monotonic()
    for i, c in enumerate(candidates):
        if time.monotonic() - said >= PROGRESS_EVERY_S:  # a line now and then: a model takes about 0.3 s
            said = time.monotonic()
            log.info("MLflow: %d of %d candidates logged", i, len(candidates))
        mdigest = _digest(c.metrics)
        found = existing.get((c.digest, mdigest))
        if found is not None:
            client.log_inputs(execution, models=[LoggedModelInput(found.model_id)])
            out[c.name] = Logged(found.source_run_id, found.model_id, True)
            continue
        tags = {**run_tags, **c.tags, "candidate": c.name, "content_digest": c.digest, "execution": execution}
        trained_by = (
            None
            if not (c.trained and c.weights_digest)
            else (trained.get(c.weights_digest) or restore_training_run(client, exp, c, run_tags, box))
        )
        run_id = client.create_run(
            exp,
            run_name=c.name,
            tags={**tags, MLFLOW_PARENT_RUN_ID: execution, **({"training_run": trained_by} if trained_by else {})},
        ).info.run_id
        open_runs.append(run_id)
        model = mlflow.initialize_logged_model(
            name=model_name(c.name),
            source_run_id=run_id,
            experiment_id=exp,
            tags={**{k: v for k, v in tags.items() if not k.startswith("mlflow.")}, "metrics_digest": mdigest},
        )
        mlflow.pyfunc.log_model(
            name=model_name(c.name),
            python_model=str(MODEL_CODE),
            artifacts={"bundle": str(c.bundle)},
            code_paths=[str(PACKAGE)],
            pip_requirements=reqs,
            signature=sig,
            input_example=input_example,
            model_id=model.model_id,
        )
        now = _ms()  # validation first: a logged model lists its metrics in the order they came
        client.log_batch(
            run_id,
            params=[Param(k, v) for k, v in c.params.items()],
            metrics=[
                Metric(
                    k, v, now + j, 0, model_id=model.model_id, dataset_name=dataset, dataset_digest=datasets[dataset]
                )
                for j, (dataset, values) in enumerate(c.metrics.items())
                for k, v in values.items()
            ],
        )
        client.log_table(run_id, data=c.table, artifact_file=TABLE)
        for path in c.artifacts:
            client.log_artifact(run_id, str(path))
        if trained_by:
            client.log_outputs(trained_by, [LoggedModelOutput(model.model_id, c.best_epoch)])
        client.set_terminated(run_id, "FINISHED")
        open_runs.remove(run_id)
        out[c.name] = Logged(run_id, model.model_id, False)
    return out


def decision_record(
    audit: Mapping[str, Any],
    validation_score: float | None,
    candidate: str,
    *,
    commit: str,
    data_digest: str,
    lock_hashes: Mapping[str, str],
) -> tuple[dict[str, str], str]:
    """The registry version's tags and description: the policy, the pick's validation score and
    P(best), its test estimate with interval, the paired difference against the reference,
    the git commit, ``dvc.lock``'s stage hashes and the data digest, and how far its probabilities
    are calibrated."""
    policy, est, ref = audit["policy"], audit.get("estimate") or {}, audit.get("vs_reference")
    cal = audit.get("calibration") or {}
    calibration = (
        "unknown"
        if not cal
        else (
            f"{cal['method']}; ECE validation {_num(cal['validation_ece'])}, test {_num(cal['test_ece'])} "
            f"[{_num(cal['test_ece_low'])}, {_num(cal['test_ece_high'])}]"
        )
    )
    versus = (
        "none"
        if not ref
        else (
            f"{ref['metric']} {ref['value']:+.4f} [{ref['low']:+.4f}, {ref['high']:+.4f}]: {ref['words']}"
            if ref.get("low") is not None
            else ref["words"]
        )
    )
    tags = {
        "policy": policy["summary"],
        "pick": str(candidate),
        "validation_score": _num(validation_score),
        "p_best": _num(policy.get("p_best")),
        "test_estimate": _num(est.get("test")),
        "test_interval": f"[{_num(est.get('low'))}, {_num(est.get('high'))}]",
        "difference_vs_reference": versus,
        "calibration": calibration,
        "git_commit": commit,
        "data_digest": data_digest,
        **{f"dvc_lock/{stage.replace('@', ':')}": h for stage, h in lock_hashes.items()},  # MLflow refuses @
    }
    head = (
        f"Picked by the policy on the validation split: {policy['summary']}."
        if policy["pick"] == candidate
        else f"Not promoted: no candidate meets the policy's constraints on validation; {candidate} comes closest "
        f"(violates {', '.join(policy['violations'].get(candidate, [])) or 'none'})."
    )
    description = "\n".join(
        [
            head,
            f"Validation {policy.get('metric', '')}: {tags['validation_score']}; P(best) {tags['p_best']}.",
            f"Test estimate (unbiased; never used to choose): {tags['test_estimate']} {tags['test_interval']}.",
            f"Against the reference: {tags['difference_vs_reference']}.",
            f"Probabilities (p_<class>): calibrated by {calibration} (expected calibration error, 0 is perfect; "
            f"the prediction column is the decision rule's, made before calibration)."
            if cal
            else "Probabilities (p_<class>): calibration unknown.",
            f"Git commit {commit}; data digest {data_digest}.",
        ]
    )
    return tags, description


def _num(x) -> str:
    return "none" if x is None else f"{float(x):.4f}"


def register(
    client,
    name: str,
    logged: Logged,
    *,
    content_digest: str,
    tags: dict[str, str],
    description: str,
    alias: str | None,
    experiment_name: str | None,
) -> tuple[str, bool]:
    """Register ``logged`` as a version of ``name`` (once per content digest) and move ``alias``
    to it; returns (version, created). ``experiment_name`` (a ``dvc exp run``) tags the version."""
    import mlflow

    same = [
        v for v in client.search_model_versions(f"name = '{name}'") if v.tags.get("content_digest") == content_digest
    ]
    created = not same
    if same:
        version = min(same, key=lambda v: int(v.version))
    else:  # register_model creates the model the first time, and links the logged model both ways
        version = mlflow.register_model(
            f"models:/{logged.model_id}", name, tags={**tags, "content_digest": content_digest}
        )
        client.update_model_version(name, version.version, description=description)
        if not client.get_registered_model(name).description:
            client.update_registered_model(
                name,
                description="Picked by the selection policy on validation; each version carries its decision record.",
            )
    if experiment_name:
        client.set_model_version_tag(name, version.version, "dvc_exp_name", experiment_name)
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return str(version.version), created


def _candidates(
    records: list[ModelRecord],
    ev,
    meta: Meta,
    policy: tuple[str, str | None],
    bundles: Mapping[str, tuple[Path, str]],
    figures: Path,
) -> list[Candidate]:
    """What each candidate's run and logged model hold (:class:`Candidate`)."""
    import pandas as pd

    from pipeline.artifacts import confusion_figure_file, flatten
    from pipeline.tracking.provenance import file_digest

    out = []
    for rec in records:
        entry = ev.metrics[rec.name]
        table = pd.DataFrame(
            [
                {"split": split, "metric": k, "value": v}
                for split, part in (("validation", entry["val"]), ("test", entry))
                for k, v in flatten(part).items()
                if isinstance(v, (int, float)) and not k.startswith("val/")
            ]
        )
        params = {
            "model": rec.model,
            "loss": rec.loss,
            "gamma": gamma_text(rec.gamma),
            "alpha": gamma_text(rec.alpha),
            "seed": rec.seed,
            "kind": rec.kind,
            **(
                {"rule": rec.rule, **flatten({"rule": rec.decision["params"]}, sep=".")}
                if rec.rule
                else {**rec.params, "data": meta["params"]}
            ),
        }
        trained = rec.rule is None
        out.append(
            Candidate(
                name=rec.name,
                bundle=bundles[rec.name][0],
                digest=bundles[rec.name][1],
                metrics=headline(entry, policy, ev.rarest),
                table=table,
                params=flat_params(params),
                tags={
                    "role": "candidate",
                    "model": rec.model,
                    "loss": rec.loss,
                    "kind": rec.kind,
                    "device": rec.device,
                    "rarest_class": ev.rarest,
                    **({"rule": rec.rule} if rec.rule else {}),
                },
                weights_digest=file_digest(rec.weights) if trained and rec.weights else "",
                best_epoch=int(rec.training.get("best_epoch") or 0) if trained else 0,
                curves=rec.training["history"] if trained else [],
                artifacts=[p for p in [figures / confusion_figure_file(rec.name)] if p.is_file()],
            )
        )
    return out


def load_candidate(uri: str, environ: Mapping[str, str] = os.environ):
    """The :class:`pipeline.tracking.serving.Candidate` inside the MLflow model at ``uri`` (a
    ``models:/`` or ``runs:/`` one read from the tracking store); a one-line error otherwise."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from pipeline import PipelineError

    mlflow.set_tracking_uri(tracking_uri(environ))
    try:
        model = mlflow.pyfunc.load_model(uri)
    except MlflowException as exc:
        raise PipelineError(
            f"--model: cannot load {uri}: {error_line(exc)} (run `make repro` to register a champion, "
            "or give a model URI)"
        ) from None
    inner = model.unwrap_python_model()
    if not hasattr(inner, "candidate"):
        raise PipelineError(f"--model: {uri} is not a candidate model of this pipeline")
    return inner.candidate


def runs_table(exp: str, data_digest: str, sort_key: str, ascending: bool) -> str:
    """The part of the MLflow UI's address after the host that lists the candidates of this data
    flat, best first on the policy's validation metric (``sort_key``; ``ascending`` where lower
    is better)."""
    from urllib.parse import urlencode

    return f"#/experiments/{exp}/runs?" + urlencode(
        {
            "searchFilter": f"tags.role = 'candidate' AND tags.data_digest = '{data_digest}'",
            "orderByKey": f"metrics.`{sort_key}`",
            "orderByAsc": str(ascending).lower(),
            "workflowType": "machine_learning",
        }
    )  # the UI's "Model training" side, not its GenAI one


def log_evaluation(
    experiment: str,
    records: list[ModelRecord],
    ev,
    meta: Meta,
    cfg,
    *,
    figures: Path,
    reports: list[Path],
    bundles: Mapping[str, tuple[Path, str]],
    input_types: Mapping[str, str],
    outputs: list[str],
    input_example: pd.DataFrame | None,
    registered_model: str,
    tables: Mapping[str, list[dict]] | None = None,
    lock_hashes: Mapping[str, str] | None = None,
    splits: Mapping[str, Path] | None = None,
    environ: Mapping[str, str] = os.environ,
) -> dict[str, Any]:
    """Log an evaluation (:class:`pipeline.evaluation.evaluate.Evaluation` ``ev`` of ``records``, every
    candidate, under :class:`pipeline.config.EvaluateConfig` ``cfg``).

    One run for the execution holds ``reports``, the cross-model figures, the leaderboard,
    ``tables`` (artifact file -> rows: the γ and α curves) and the pick's headline metrics; each
    candidate is a run under it and a logged model (:func:`log_candidates`; ``bundles``: name ->
    (bundle directory, content digest); ``outputs``: the model's output columns); the pick is
    registered as a version of ``registered_model`` with its decision record. In a plain run the alias ``champion`` moves to it (``challenger`` to the closest
    candidate when none meets the constraints); under ``dvc exp run`` (``DVC_EXP_NAME``) no alias
    moves. Returns where it all went. Runs left unfinished by an error end FAILED (KILLED when
    interrupted)."""
    import pandas as pd
    from mlflow.entities import Metric, Param

    from pipeline.artifacts import FIGURES, alpha_figure_file, flatten, gamma_figure_file
    from pipeline.tracking.outbox import outbox_dir

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per model otherwise
    uri = tracking_uri(environ)
    client = client_for(uri)
    box = outbox_dir(repo_root(environ), environ)
    pending = send_pending(client, uri, box)
    if pending:
        log.info("MLflow: %d run(s) from earlier stages sent from the outbox", pending)
    exp = experiment_id(client, experiment, uri)
    exp_name = environ.get("DVC_EXP_NAME")
    tags = run_tags(meta, environ)
    policy = ev.audit["policy"]
    reads = (ev.policy.metric, ev.view.key if ev.policy.reweighted else None)  # the metric and its view
    candidates = _candidates(records, ev, meta, reads, bundles, figures)
    with closing_runs(client) as open_runs:
        label = exp_name or tags.get("git_commit", "unknown")[:7]
        parent_id = client.create_run(
            exp,
            run_name=f"evaluate-{label}",
            tags={
                **tags,
                "role": "evaluation",
                "dvc_stage": environ.get("DVC_STAGE", "evaluate"),
                "policy_pick": policy["pick"] or "none",
            },
        ).info.run_id
        open_runs.append(parent_id)
        digests = {"validation": meta["digest"][:12], "test": meta["digest"][:12]}
        if splits:  # the splits the metrics were computed on, as the evaluation run's inputs
            inputs, digests = dataset_inputs(splits)
            client.log_inputs(parent_id, datasets=inputs)
        started = time.perf_counter()
        log.info("MLflow: logging %d candidates as runs and models in %s ...", len(candidates), uri)
        logged = log_candidates(
            client,
            exp,
            candidates,
            execution=parent_id,
            run_tags=tags,
            datasets=digests,
            input_example=input_example,
            input_types=input_types,
            outputs=outputs,
            open_runs=open_runs,
            box=box,
        )
        new = sum(not v.reused for v in logged.values())
        log.info(
            "MLflow: %d candidates logged, %d already there (linked), in %.1fs",
            new,
            len(logged) - new,
            time.perf_counter() - started,
        )

        chosen = policy["pick"] or policy.get("closest")
        pick = next((c for c in candidates if c.name == chosen), None)
        now = _ms()
        metrics = [
            Metric(k, v, now, 0) for values in (pick.metrics.values() if pick else ()) for k, v in values.items()
        ]
        leaderboard = pd.DataFrame(
            [
                {"model": row["model"], **row["values"], **flatten({"rank": row["ranks"]})}
                for row in ev.audit["leaderboard"]
            ]
        )
        client.log_batch(
            parent_id,
            metrics=metrics,
            params=[
                Param(k, v)
                for k, v in flat_params(
                    {
                        "data": meta["params"],
                        "evaluate": {"prior": cfg.prior, "view_key": ev.view.key, "select": policy["summary"]},
                        "n_candidates": len(records),
                        "registered_model": registered_model,
                    }
                ).items()
            ],
        )
        shared = [figures / FIGURES[k] for k in ("ranks", "agreement", "focal_shape")]
        for path in [
            *reports,
            *(f for f in shared if f.is_file()),
            *(figures / gamma_figure_file(loss) for loss in ev.gammas),
            *(figures / alpha_figure_file(f) for f in ev.audit.get("weight_strength") or {}),
        ]:
            client.log_artifact(parent_id, str(path))
        client.log_table(parent_id, data=leaderboard, artifact_file="leaderboard.json")
        client.log_table(
            parent_id,
            artifact_file="candidates.json",
            data=pd.DataFrame(
                [
                    {"candidate": n, "run_id": v.run_id, "model_id": v.model_id, "logged_before": v.reused}
                    for n, v in logged.items()
                ]
            ),
        )
        for artifact_file, rows in (tables or {}).items():
            if rows:
                client.log_table(parent_id, data=pd.DataFrame(rows), artifact_file=artifact_file)

        registered = None
        sort_key = metric_key("val", *reads)
        if chosen:
            alias = None if exp_name else ("champion" if policy["pick"] else "challenger")
            record_tags, description = decision_record(
                ev.audit,
                pick.metrics["validation"].get(sort_key),
                chosen,
                commit=tags.get("git_commit", "unknown"),
                data_digest=meta["digest"],
                lock_hashes=lock_hashes or {},
            )
            version, created = register(
                client,
                registered_model,
                logged[chosen],
                content_digest=bundles[chosen][1],
                tags=record_tags,
                description=description,
                alias=alias,
                experiment_name=exp_name,
            )
            registered = {
                "name": registered_model,
                "version": version,
                "alias": alias,
                "new_version": created,
                "candidate": chosen,
            }
            client.set_tag(parent_id, "registered_version", f"{registered_model}/{version}")
            log.info(
                "registry: %s version %s (%s)%s",
                registered_model,
                version,
                "new" if created else "same content as before: no new version",
                f", alias {alias}" if alias else f", tagged {exp_name} (dvc exp run: no alias moves)",
            )
            if not policy["pick"]:
                log.warning(
                    "nothing promoted to champion: no candidate meets the policy's constraints on validation; "
                    "%s, the closest, is the challenger",
                    chosen,
                )
        client.set_terminated(parent_id, "FINISHED")
        open_runs.remove(parent_id)
    return {
        "tracking_uri": uri,
        "experiment": experiment,
        "experiment_id": exp,
        "evaluation_run": parent_id,
        "models": {name: v.run_id for name, v in logged.items()},
        "logged_models": {name: v.model_id for name, v in logged.items()},
        "registered": registered,
        "runs_table": runs_table(exp, meta["digest"], sort_key, ascending=ev.policy.lower_is_better),
    }
