"""evaluate: every model under every metric; confusion matrices; one MLflow run per model.

Reads the plans (which models exist), each loss's ``training.json`` and test predictions.
Writes ``reports/metrics.json`` (model -> metric -> value), per-model ``actual,predicted`` CSVs
for ``dvc plots`` and confusion-matrix PNGs, then logs everything to MLflow.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import PipelineError
from pipeline.config import load_params
from pipeline.io import atomic_dirs, read_json, read_parquet, write_json
from pipeline.metrics import classification_metrics, confusion_matrix
from pipeline.plots import confusion_figure, save
from pipeline.tracking import ModelRun, git_tags, log_pipeline_run
from stages._cli import run
from stages.show import table

log = logging.getLogger("evaluate")


def load_models(plans_dir: Path, models_dir: Path, preds_dir: Path) -> list[dict]:
    """One record per planned model: its plan entry, training summary and predictions."""
    plan_files = sorted(plans_dir.glob("*.json"))
    if not plan_files:
        raise PipelineError(f"{plans_dir}: no training plans found (run the plan stage first)")
    records = []
    for plan_file in plan_files:
        plan = read_json(plan_file, what="training plan")
        loss = plan["loss"]
        training = read_json(models_dir / loss / "training.json", what=f"training summary of {loss}")
        for r in plan["runs"]:
            name = r["model"]
            if name not in training["runs"]:
                raise PipelineError(f"{models_dir / loss / 'training.json'}: no entry for model {name}")
            records.append({
                "name": name, "loss": loss, "plan": plan, "run": r,
                "training": training["runs"][name], "device": training["device"],
                "weights": models_dir / loss / f"{name}.pt",
                "predictions": read_parquet(preds_dir / loss / f"{name}.parquet", what=f"predictions of {name}"),
            })
    return records


def _codes(values: pd.Series, classes: list[str], what: str) -> np.ndarray:
    codes = pd.Categorical(values.astype(str), categories=classes).codes
    if (codes < 0).any():
        raise PipelineError(f"{what}: value {values[codes < 0].iloc[0]!r} is not a class of meta.json")
    return codes.astype(np.int64)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--meta", required=True, help="meta.json written by prepare")
    ap.add_argument("--plans", required=True, help="directory written by plan")
    ap.add_argument("--models", required=True, help="parent of the train@<loss> model directories")
    ap.add_argument("--predictions", required=True, help="parent of the train@<loss> prediction directories")
    ap.add_argument("--metrics", required=True, help="metrics.json to write")
    ap.add_argument("--plots", required=True, help="directory for per-model actual,predicted CSVs")
    ap.add_argument("--figures", required=True, help="directory for confusion-matrix PNGs")
    args = ap.parse_args(argv)

    params = load_params(args.params)
    meta = read_json(args.meta, what="prepared-data metadata")
    classes = meta["classes"]
    records = load_models(Path(args.plans), Path(args.models), Path(args.predictions))

    metrics: dict[str, dict[str, float]] = {}
    with atomic_dirs(args.plots, args.figures) as (plots_dir, figures_dir):
        for rec in records:
            name, preds = rec["name"], rec["predictions"]
            y_true = _codes(preds["y_true"], classes, f"predictions of {name}, y_true")
            y_pred = _codes(preds["y_pred"], classes, f"predictions of {name}, y_pred")
            metrics[name] = classification_metrics(y_true, y_pred, classes)
            pd.DataFrame({"actual": preds["y_true"].astype(str), "predicted": preds["y_pred"].astype(str)}).to_csv(
                plots_dir / f"{name}.csv", index=False)
            cm = confusion_matrix(y_true, y_pred, len(classes))
            save(confusion_figure(cm, classes, f"{name} - test split"), figures_dir / f"confusion_{name}.png")
            rec["figure"] = Path(args.figures) / f"confusion_{name}.png"
    write_json(args.metrics, metrics)

    log.info("test split, %d models:\n%s", len(metrics), table(metrics))

    tags = {**git_tags(), "data_digest": meta["digest"]}
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    runs = [
        ModelRun(
            name=rec["name"],
            params={
                "model": rec["name"], "loss": rec["loss"], "gamma": rec["run"]["gamma"],
                "seed": rec["run"]["seed"], "train": rec["plan"]["train"],
                "weights": {k: rec["plan"]["class_weights"][k] for k in ("scheme", "beta")}
                if rec["plan"]["class_weights"] else {"scheme": "unweighted"},
                "data": meta["params"],
            },
            history=rec["training"]["history"],
            metrics={**metrics[rec["name"]],
                     "best_epoch": rec["training"]["best_epoch"],
                     "best_val_macro_f1": rec["training"]["best_val_macro_f1"]},
            tags={"dvc_stage": f"train@{rec['loss']}", "loss": rec["loss"], "device": rec["device"]},
            artifacts=[rec["figure"], rec["weights"]],
        )
        for rec in records
    ]
    log_pipeline_run(
        params.mlflow.experiment,
        models=runs,
        tags={**tags, "dvc_stage": os.environ.get("DVC_STAGE", "evaluate")},
        eval_params={"data": meta["params"], "n_models": len(runs)},
        eval_artifacts=[Path(args.metrics)],
        tables={"leaderboard.json": pd.DataFrame.from_dict(metrics, orient="index").rename_axis("model").reset_index()},
    )


if __name__ == "__main__":
    run(main)
