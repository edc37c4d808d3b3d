"""baselines: majority class, balanced logistic regression and XGBoost on the same splits.

Writes ``<models>/<name>.json`` and ``<models>/training.json`` (as train@<loss> does) and
``<predictions>/<name>.parquet`` in the predictions contract, so evaluate treats them as models.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np

from pipeline.artifacts import TRAINING_SUMMARY, predictions_file, predictions_frame, read_prepared
from pipeline.baselines import fit_baseline
from pipeline.config import load_params, to_dict
from pipeline.io import atomic_dirs, read_json, write_json
from stages._cli import run

log = logging.getLogger("baselines")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", required=True, help="directory written by prepare")
    ap.add_argument("--weights", required=True, help="class_weights.json written by weights")
    ap.add_argument("--models", required=True, help="directory for the baselines' models")
    ap.add_argument("--predictions", required=True, help="directory for the baselines' test predictions")
    args = ap.parse_args(argv)

    cfg = load_params(args.params).baselines
    meta, data = read_prepared(args.data)
    classes = meta["classes"]
    weights = read_json(args.weights, what="class weights")
    summary = {}
    with atomic_dirs(args.models, args.predictions) as (models_dir, preds_dir):
        for name in cfg.models:
            result = fit_baseline(name, data, len(classes), np.asarray(weights["weights"]), cfg)
            write_json(models_dir / f"{name}.json", {**result.saved, "classes": classes})
            proba = np.asarray(result.predict_proba(data["test"][0]), dtype=np.float64)
            proba /= proba.sum(axis=1, keepdims=True)
            predictions_frame(proba, data["test"][1], classes).to_parquet(
                predictions_file(preds_dir, name), index=False)
            summary[name] = {
                "loss": name, "gamma": None, "seed": cfg.seed, "best_epoch": result.best_epoch,
                "epochs_run": len(result.history), "best_val_macro_f1": result.val_macro_f1,
                "history": result.history,
            }
            log.info("%s: val macro-F1 %.4f", name, result.val_macro_f1)
        write_json(models_dir / TRAINING_SUMMARY, {
            "loss": "baselines", "device": "cpu", "runs": summary,
            "params": {**to_dict(cfg), "weights": {k: weights[k] for k in ("scheme", "beta")}},
        })


if __name__ == "__main__":
    run(main)
