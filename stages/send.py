"""send: bring the MLflow store up to date with the DVC outputs (``make send``).

What the stages could not log, because the store was unreachable, lost mid-run or skipped with
``PIPELINE_OFFLINE=1``, waits in the outbox (``.mlflow-outbox/`` at the repository root):

- training runs, as run records: sent idempotently (by run and by metric key and step), with
  their real times; a run left RUNNING by a lost store is ended as its record says;
- an evaluation (``pending/evaluate-*.json``): evaluate is run again with ``--log-only`` on the
  outputs it wrote (the same computation, nothing written but ``reports/mlflow_runs.json``); the
  candidates already logged are found by content digest and not logged twice;
- a report (``pending/report.json``): the page is logged to its evaluation's run.

The store is checked first (one line naming the URI when unreachable, exit 2). ``--if-pending``
(what ``make repro`` runs after ``dvc repro``) does nothing, and checks nothing, when the outbox
holds nothing to send. Exits 0 when everything was sent.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from pathlib import Path

from pipeline.io import read_json
from pipeline.tracking.outbox import clear_task, outbox_dir, read_records, read_tasks
from pipeline.tracking.runs import check_store, client_for, log_artifacts_to_run, repo_root, send_pending, tracking_uri
from stages._cli import run

log = logging.getLogger("send")


@contextlib.contextmanager
def _in(cwd: Path, env: dict[str, str]):
    """Run a task where it was made (its directory, or the repository root when that is gone,
    e.g. a `dvc queue` worker's copy after `dvc exp apply`), with its `dvc exp run` variables."""
    before, saved = Path.cwd(), {k: os.environ.get(k) for k in env}
    os.chdir(cwd if cwd.is_dir() else repo_root())
    os.environ.update(env)
    try:
        yield
    finally:
        os.chdir(before)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--if-pending", action="store_true", help="do nothing when the outbox holds nothing to send")
    args = ap.parse_args(argv)

    box = outbox_dir(repo_root())
    records, tasks = read_records(box), read_tasks(box)
    if args.if_pending and not records and not tasks:
        return
    uri = tracking_uri()
    check_store(uri)
    client = client_for(uri)
    runs = send_pending(client, uri, box) if records else 0
    done = []
    for path, task in tasks:
        if task["kind"] == "evaluate":
            from stages import evaluate

            with _in(Path(task["cwd"]), task.get("env", {})):
                evaluate.main([*task["argv"], "--log-only"])
                logged = read_json(task["runs"], what="MLflow run list of the evaluation")
            done.append(f"evaluation run {logged['evaluation_run']}")
        elif task["kind"] == "report":
            report, runs_file = Path(task["path"]), Path(task["runs"])
            if not report.is_file() or not runs_file.is_file():
                log.warning("%s: %s or %s is gone; nothing to log", path.name, report, runs_file)
            else:
                run_id = read_json(runs_file, what="MLflow run list of the evaluation")["evaluation_run"]
                log_artifacts_to_run(run_id, [report])
                done.append(f"the report to run {run_id}")
        clear_task(box, path.stem)
    what = ([f"{runs} run(s)"] if runs else []) + done
    log.info(
        "MLflow store %s is up to date with the DVC outputs%s",
        uri,
        f": sent {', '.join(what)}" if what else " (nothing was waiting)",
    )


if __name__ == "__main__":
    run(main)
