"""What a stage means to log to MLflow, written as files first, then sent idempotently.

A stage describes each of its runs as a :class:`RunRecord` (name, tags, params, every metric
with its timestamp and step, start and end time, status, its parent's record) and writes it under
``<repository root>/.mlflow-outbox/`` before, and while, sending it (a training stage writes
them and its relay process sends them: :func:`pipeline.tracking.start_relay`). The repository root is
``DVC_ROOT``: a ``dvc queue`` worker's temporary copy is deleted afterwards, the records must
outlive it. :func:`send` is idempotent by run and key: the run is the one tagged ``outbox_key``
with the record's key (created when absent, with the record's start time), and a metric is sent
when its (key, step) is not in that run yet; a record that says FINISHED (or FAILED, KILLED)
ends the run with the record's end time. So a stage can log live and, when the store was
unreachable or the stage was cut short, :func:`send_pending` sends what is missing later (the
next stage that logs does so first); a run deleted from the store is sent again from its record.

System metrics (CPU, memory, disk, network, sampled each second) are the one exception: MLflow
sends them straight from a background thread of the stage's run (in its relay), so samples taken while the
store is unreachable are lost.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.io import read_json, write_json

log = logging.getLogger(__name__)

OUTBOX = ".mlflow-outbox"
SENT = "sent"
KEY_TAG = "outbox_key"
_BATCH = 900  # MLflow takes at most 1000 metrics per log_batch call


@dataclass
class RunRecord:
    """One run as a stage means to log it."""

    key: str  # unique: the stage's execution and the run's role in it
    experiment: str
    name: str
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: list[tuple[str, float, int, int]] = field(default_factory=list)  # key, value, time (ms), step
    start_time: int = 0  # ms since the epoch
    end_time: int | None = None
    status: str = "RUNNING"  # RUNNING | FINISHED | FAILED | KILLED
    parent: str | None = None  # the parent run's record key
    writer: str = ""  # "<host>:<pid>" of the process logging it (a RUNNING record's owner)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunRecord:
        return cls(**{**d, "metrics": [tuple(m) for m in d["metrics"]]})


def outbox_dir(root: str | Path, environ: Mapping[str, str] | None = None) -> Path:
    """``<root>/.mlflow-outbox``, or ``PIPELINE_OUTBOX`` when set (the tests' own)."""
    import os

    env = os.environ if environ is None else environ
    return Path(env["PIPELINE_OUTBOX"]) if env.get("PIPELINE_OUTBOX") else Path(root) / OUTBOX


def record_path(box: str | Path, key: str) -> Path:
    return Path(box) / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"


def write_record(box: str | Path, record: RunRecord) -> None:
    """Write (or rewrite) ``record`` in the outbox directory ``box``, atomically."""
    path = record_path(box, record.key)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, dataclasses.asdict(record))


def mark_sent(box: str | Path, record: RunRecord) -> None:
    """``record``'s run is in the store and ended: its file moves to ``sent/`` (kept, so that a
    run deleted from the store, or a new store, can be sent again: :func:`read_records`)."""
    path = record_path(box, record.key)
    if path.is_file():
        (path.parent / SENT).mkdir(exist_ok=True)
        path.replace(path.parent / SENT / path.name)


def read_records(box: str | Path, *, sent: bool = False) -> list[RunRecord]:
    """The records waiting in the outbox (``sent``: and those already sent), parents first."""
    paths = sorted(Path(box).glob("*.json"))
    if sent:
        paths += sorted((Path(box) / SENT).glob("*.json"))
    records = [RunRecord.from_dict(read_json(p, what="outbox record")) for p in paths]
    keys = {r.key for r in records}
    return sorted(records, key=lambda r: (r.parent in keys, r.start_time, r.key))


PENDING = "pending"  # tasks beside the run records: an evaluation or a report not logged yet


def write_task(box: str | Path, name: str, task: Mapping[str, Any]) -> Path:
    """A logging task that could not be done (the store was lost): ``<box>/pending/<name>.json``.
    ``task["kind"]`` says what :mod:`stages.send` does with it (``evaluate``, ``report``); a
    newer task of the same name replaces the older one."""
    path = Path(box) / PENDING / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, dict(task))
    return path


def read_tasks(box: str | Path) -> list[tuple[Path, dict]]:
    """The pending tasks, evaluations first (a report is logged to its evaluation's run)."""
    order = {"evaluate": 0, "report": 1}
    tasks = [(p, read_json(p, what="pending MLflow task")) for p in sorted((Path(box) / PENDING).glob("*.json"))]
    return sorted(tasks, key=lambda t: (order.get(t[1].get("kind"), 2), t[0].name))


def clear_task(box: str | Path, name: str) -> None:
    (Path(box) / PENDING / f"{name}.json").unlink(missing_ok=True)


def log_batches(client, run_id: str, *, params: list = (), metrics: list = ()) -> None:
    """``params`` and ``metrics`` (MLflow entities) in as few ``log_batch`` calls as MLflow takes."""
    params, metrics = list(params), list(metrics)
    for i in range(0, max(len(params), len(metrics), 1), _BATCH):
        client.log_batch(run_id, params=params[i : i + _BATCH], metrics=metrics[i : i + _BATCH])


def find_run(client, experiment_id: str, key: str):
    """The run tagged with ``key`` (the earliest if several), or None."""
    runs = client.search_runs([experiment_id], filter_string=f"tags.{KEY_TAG} = '{key}'",
                              order_by=["attributes.start_time ASC"], max_results=1)
    return runs[0] if runs else None


def send(client, experiment_id: str, record: RunRecord, parent_run_id: str | None = None,
         open_runs: list[str] | None = None) -> str:
    """Make the store hold ``record``: create its run when absent, add the params and metrics it
    lacks, end it as the record says. Returns the run id. With ``open_runs``
    (:func:`pipeline.tracking.closing_runs`), the run is in it while being written, so a stop
    midway ends it KILLED rather than RUNNING."""
    from mlflow.entities import Metric, Param
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    run = find_run(client, experiment_id, record.key)
    if run is not None and run.info.status != "RUNNING":
        return run.info.run_id
    if run is None:
        tags = {**record.tags, KEY_TAG: record.key}
        if parent_run_id:
            tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
        run = client.create_run(experiment_id, start_time=record.start_time or None, tags=tags,
                                run_name=record.name)
        have: set[tuple[str, int]] = set()
        params_have: set[str] = set()
    else:
        have = {(m.key, m.step) for key in {m[0] for m in record.metrics}
                for m in client.get_metric_history(run.info.run_id, key)}
        params_have = set(run.data.params)
        missing_tags = {k: v for k, v in record.tags.items() if run.data.tags.get(k) != v}
        for k, v in missing_tags.items():
            client.set_tag(run.info.run_id, k, v)
    run_id = run.info.run_id
    if open_runs is not None:
        open_runs.append(run_id)
    params = [Param(k, v) for k, v in record.params.items() if k not in params_have]
    metrics = [Metric(k, float(v), int(t), int(s)) for k, v, t, s in record.metrics if (k, s) not in have]
    log_batches(client, run_id, params=params, metrics=metrics)
    if record.status != "RUNNING":
        client.set_terminated(run_id, record.status, end_time=record.end_time)
    if open_runs is not None:
        open_runs.remove(run_id)
    return run_id


def this_writer() -> str:
    import os
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(writer: str) -> bool:
    """Whether ``writer`` is a process still running on this host (another ``dvc queue`` job)."""
    import os
    import socket

    host, _, pid = writer.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def send_pending(client, experiment_id_of, box: str | Path, leave: str | None = None) -> int:
    """Send every record in the outbox whose run is missing or unfinished in the store, parents
    first; ``experiment_id_of(name)`` gives an experiment's id. A RUNNING record whose writer is
    still alive (a parallel ``dvc queue`` job) is left to it, and so is every record written by
    ``leave`` (a relay's stage, whatever their status). Returns how many were sent."""
    sent = 0
    ids: dict[str, str] = {}
    for record in read_records(box):
        if record.writer == leave or (record.status == "RUNNING" and record.writer != this_writer()
                                      and _alive(record.writer)):
            continue
        exp_id = experiment_id_of(record.experiment)
        run = find_run(client, exp_id, record.key)
        if run is None or run.info.status == "RUNNING":
            sent += 1
        parent = ids.get(record.parent) if record.parent else None
        if record.parent and parent is None:  # its parent was sent before: find it
            found = find_run(client, exp_id, record.parent)
            parent = found.info.run_id if found else None
        ids[record.key] = send(client, exp_id, record, parent)
        if record.status != "RUNNING":
            mark_sent(box, record)
    return sent
