"""report: one self-contained HTML page for stakeholders, from this run's evaluation.

Reads the evaluation's outputs (metrics, audit, MLflow run ids, the figures evaluate drew), the
prepared-data metadata and the class weights; adds provenance from git and ``dvc.lock``, and the
sha256 of every candidate's validation and test prediction files (the evidence the numbers come
from: the decide stage's, under ``--decisions``). Writes ``--out``
(deterministic: the same inputs give the same bytes) and logs it to the evaluation's MLflow run.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pipeline import Interrupted, PipelineError, interruption
from pipeline.artifacts import PREDICTED_SPLITS, predictions_by_model, read_figures
from pipeline.config import load_params
from pipeline.io import read_json, write_text
from pipeline.tracking.provenance import (
    commit_date,
    file_digest,
    git_tags,
    lock_outputs,
    lock_params,
    package_versions,
    read_lock,
)
from pipeline.report.render import Provenance, render
from pipeline.tracking.outbox import clear_task, outbox_dir, read_tasks, write_task
from pipeline.tracking.runs import error_line, log_artifacts_to_run, repo_root
from stages._cli import run

log = logging.getLogger("report")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--meta", required=True, help="meta.json written by prepare")
    ap.add_argument("--weights", required=True, help="class_weights.json written by weights")
    ap.add_argument("--metrics", required=True, help="metrics.json written by evaluate")
    ap.add_argument("--audit", required=True, help="audit.json written by evaluate")
    ap.add_argument("--runs", required=True, help="mlflow_runs.json written by evaluate")
    ap.add_argument("--figures", required=True, help="figures directory written by evaluate")
    ap.add_argument(
        "--decisions", required=True, help="the decide stage's predictions: <split>/<group>/<candidate>.parquet"
    )
    ap.add_argument("--lock", default="dvc.lock", help="DVC lock file, read for provenance")
    ap.add_argument("--out", required=True, help="report.html to write")
    ap.add_argument("--no-mlflow", action="store_true", help="do not log the page to MLflow")
    args = ap.parse_args(argv)

    cfg = load_params(args.params).report
    meta = read_json(args.meta, what="prepared-data metadata")
    weights = read_json(args.weights, what="class weights")
    metrics = read_json(args.metrics, what="evaluation metrics")
    audit = read_json(args.audit, what="evaluation audit")
    # no DVC dependency (run ids change every execution): read when there, else no MLflow links
    runs = read_json(args.runs, what="MLflow run list of the evaluation") if Path(args.runs).is_file() else None
    files = predictions_by_model(args.decisions, list(metrics))
    evidence = {key: file_digest(files[key]) for key in (f"{split}/{m}" for m in metrics for split in PREDICTED_SPLITS)}
    images = read_figures(args.figures)

    lock = read_lock(args.lock)
    git = git_tags()
    provenance = Provenance(  # the report's own lock entry is left out: it would hold the previous render
        commit=git["git_commit"],
        dirty=git["git_dirty"],
        date=commit_date(),
        stages=lock_outputs(lock, skip=("report",)),
        params=lock_params(lock, skip=("report",)),
        packages=package_versions(),
        command=f"git checkout {git['git_commit'][:12]} && make repro",
        evidence=evidence,
    )
    mlflow_url = cfg.mlflow_url or (runs["tracking_uri"] if runs and runs["tracking_uri"].startswith("http") else None)
    page = render(
        title=cfg.title,
        meta=meta,
        weights=weights,
        metrics=metrics,
        audit=audit,
        runs=runs,
        mlflow_url=mlflow_url,
        provenance=provenance,
        images=images,
    )

    out = Path(args.out)
    write_text(out, page)
    log.info("wrote %s (%d kB)", out, len(page.encode()) // 1024)
    if args.no_mlflow:
        return
    box = outbox_dir(repo_root())
    task = {"kind": "report", "path": str(out.resolve()), "runs": str(Path(args.runs).resolve())}
    if runs is None:
        if any(t["kind"] == "evaluate" for _, t in read_tasks(box)):  # the evaluation waits: the page goes with it
            write_task(box, "report", task)
            log.info("the evaluation is not in MLflow yet: the report waits in %s with it (make send)", box)
        return
    try:
        log_artifacts_to_run(runs["evaluation_run"], [out])
    except (PipelineError, Interrupted, KeyboardInterrupt):
        raise
    except Exception as exc:  # the store was lost: the page is written, its logging waits
        if (stop := interruption(exc)) is not None:  # not the store: a signal, turned into this on its way out
            raise stop
        write_task(box, "report", task)
        first = error_line(exc)
        log.warning(
            "MLflow store lost while logging the report (%s): it waits in %s; `make send` logs it", first[:200], box
        )
        return
    clear_task(box, "report")
    log.debug("logged to MLflow run %s", runs["evaluation_run"])


if __name__ == "__main__":
    run(main)
