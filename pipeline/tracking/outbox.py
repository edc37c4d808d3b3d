"""What a stage means to log to MLflow, written as files first (:mod:`pipeline.tracking.runs` sends them).

A training stage describes each of its runs as a :class:`RunRecord` (name, tags, params, every
metric with its timestamp and step, start and end time, status, its parent's record) and writes
it under ``<repository root>/.mlflow-outbox/`` before, and while, sending it. The repository root
is ``DVC_ROOT``: a ``dvc queue`` worker's temporary copy is deleted afterwards, the records must
outlive it. Sending is idempotent (:func:`pipeline.tracking.runs.send`: a run by its ``outbox_key``
tag, a metric by its key and step), so when the store was unreachable or the stage was cut
short, the next stage that logs, or ``make send``, sends what is missing; a sent record moves to
``sent/``, and a run deleted from the store is sent again from it. An evaluation or a report
that could not be logged waits beside them as a task (:func:`write_task`).

System metrics (CPU, memory, disk, network, sampled each second) are the one exception: MLflow
sends them straight from a thread of the stage, so samples taken while the store is unreachable
are lost.
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


def this_writer() -> str:
    import os
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


def writer_alive(writer: str) -> bool:
    """Whether ``writer`` is a process still running on this host (this one, or another ``dvc queue`` job)."""
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
