"""report: one self-contained HTML page for stakeholders, from this run's evaluation.

Reads the evaluation's outputs (metrics, audit, MLflow run ids, plot data), the predictions of the
chosen model and of ``ce``, and the prepared-data metadata; adds provenance from git and
``dvc.lock``. Writes ``--out`` (deterministic: the same inputs give the same bytes) and logs it to
the evaluation's MLflow run.
"""

from __future__ import annotations

import argparse
import io
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from pipeline import PipelineError
from pipeline.config import load_params
from pipeline.io import read_json, read_parquet, write_text
from pipeline.metrics import confusion_matrix
from pipeline.plots import (
    class_distribution_figure,
    confusion_pair_figure,
    focal_shape_figure,
    gamma_curves_figure,
    per_class_figure,
    plt,
    rank_figure,
)
from pipeline.provenance import commit_date, git_tags, lock_outputs, lock_params, package_versions
from pipeline.report import Provenance, render
from pipeline.tracking import log_artifacts_to_run
from stages._cli import run

log = logging.getLogger("report")

GAMMA_METRICS = ["macro_f1", "micro_f1", "accuracy", "balanced_accuracy", "rarest_recall", "rarest_precision"]


def png(fig) -> bytes:
    """PNG bytes of ``fig`` with no metadata that could vary between runs."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def prediction_files(root: Path, models: list[str]) -> dict[str, Path]:
    """``model -> <root>/<loss or baselines>/<model>.parquet`` for every evaluated model."""
    found = {p.stem: p for p in sorted(root.glob("*/*.parquet"))}
    for name in models:
        if name not in found:
            raise PipelineError(f"{root}/*/{name}.parquet: predictions of {name} not found "
                                "(re-run the pipeline: dvc repro)")
    return found


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--meta", required=True, help="meta.json written by prepare")
    ap.add_argument("--weights", required=True, help="class_weights.json written by weights")
    ap.add_argument("--metrics", required=True, help="metrics.json written by evaluate")
    ap.add_argument("--audit", required=True, help="audit.json written by evaluate")
    ap.add_argument("--runs", required=True, help="mlflow_runs.json written by evaluate")
    ap.add_argument("--plots", required=True, help="plot data directory written by evaluate")
    ap.add_argument("--predictions", required=True, help="parent of the per-loss prediction directories")
    ap.add_argument("--lock", default="dvc.lock", help="DVC lock file, read for provenance")
    ap.add_argument("--out", required=True, help="report.html to write")
    ap.add_argument("--no-mlflow", action="store_true", help="do not log the page to MLflow")
    args = ap.parse_args(argv)

    cfg = load_params(args.params).report
    meta = read_json(args.meta, what="prepared-data metadata")
    weights = read_json(args.weights, what="class weights")
    metrics = read_json(args.metrics, what="evaluation metrics")
    audit = read_json(args.audit, what="evaluation audit")
    runs = read_json(args.runs, what="MLflow run list of the evaluation")
    classes = meta["classes"]

    preds = prediction_files(Path(args.predictions), list(metrics))
    pick = audit["policy"]["pick"]
    images = {
        "distribution": png(class_distribution_figure(meta["counts"], classes)),
        "ranks": png(rank_figure([r["model"] for r in audit["leaderboard"]], audit["metrics"],
                                 {r["model"]: r["ranks"] for r in audit["leaderboard"]}, pick)),
    }
    cms = {}
    for model in dict.fromkeys(m for m in (pick, "ce") if m and m in metrics):
        frame = read_parquet(preds[model], what=f"predictions of {model}")
        codes = [pd.Categorical(frame[c].astype(str), categories=classes).codes for c in ("y_true", "y_pred")]
        label = f"{model} (chosen)" if model == pick else model
        cms[label] = confusion_matrix(np.asarray(codes[0]), np.asarray(codes[1]), len(classes))
    if cms:
        images["confusion"] = png(confusion_pair_figure(cms, classes))
    train = meta["counts"]["train"]
    order = sorted(classes, key=lambda c: (-train[c], classes.index(c)))
    shown = list(dict.fromkeys(m for m in ("ce", "weighted_ce", pick) if m and m in metrics))
    if shown:
        images["per_class"] = png(per_class_figure({m: metrics[m] for m in shown}, classes, order))
    gamma_files = sorted((Path(args.plots) / "gamma").glob("*.json"))
    gammas = sorted({r["gamma"] for f in gamma_files for r in read_json(f)})
    if gammas:
        images["focal_shape"] = png(focal_shape_figure(gammas))
    for f in gamma_files:
        images[f"gamma_{f.stem}"] = png(gamma_curves_figure(
            read_json(f), GAMMA_METRICS, f"{f.stem}: test metrics against gamma (rarest class: {audit['rarest_class']})"))

    lock_path = Path(args.lock)
    lock = yaml.safe_load(lock_path.read_text()) if lock_path.is_file() else {}
    git = git_tags()
    provenance = Provenance(
        commit=git["git_commit"], dirty=git["git_dirty"], date=commit_date(),
        stages=lock_outputs(lock), params=lock_params(lock), packages=package_versions(),
        command=f"git checkout {git['git_commit'][:12]} && make repro",
    )
    mlflow_url = cfg.mlflow_url or (runs["tracking_uri"] if runs["tracking_uri"].startswith("http") else None)
    page = render(title=cfg.title, meta=meta, weights=weights, metrics=metrics, audit=audit, runs=runs,
                  mlflow_url=mlflow_url, provenance=provenance, images=images)

    out = Path(args.out)
    write_text(out, page)
    log.info("wrote %s (%d kB)", out, len(page.encode()) // 1024)
    if not args.no_mlflow:
        log_artifacts_to_run(runs["evaluation_run"], [out])
        log.info("logged to MLflow run %s", runs["evaluation_run"])


if __name__ == "__main__":
    run(main)
