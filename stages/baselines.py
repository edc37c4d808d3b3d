"""baselines: majority class, balanced logistic regression and XGBoost on the same splits.

Writes ``<models>/<name>.json`` and ``<models>/training.json`` (as train@<loss> does) and
``<val-predictions>/<name>.parquet`` and ``<test-predictions>/<name>.parquet`` in the
predictions contract, so evaluate treats them as models. They fit on the rows the MLPs fit on
(the training split less its early-stopping slice, ``train.early_stopping_fraction``).
"""

from __future__ import annotations

import argparse
import logging

from stages._cli import run

log = logging.getLogger("baselines")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", required=True, help="directory written by prepare")
    ap.add_argument("--weights", required=True, help="class_weights.json written by weights")
    ap.add_argument("--models", required=True, help="directory for the baselines' models")
    ap.add_argument("--val-predictions", required=True, help="directory for the baselines' validation predictions")
    ap.add_argument("--test-predictions", required=True, help="directory for the baselines' test predictions")
    args = ap.parse_args(argv)
    fit(args)


def fit(args) -> None:
    import time
    from pathlib import Path

    import numpy as np

    from pipeline.artifacts import (
        TRAINING_SUMMARY,
        check_stopping_slice,
        predictions_file,
        predictions_frame,
        read_prepared,
    )
    from pipeline.training.baselines import fit_baseline
    from pipeline.config import load_params, to_dict
    from pipeline.io import atomic_dirs, read_json, write_json
    from pipeline.tracking.provenance import file_digest
    from pipeline.tracking.runs import StageRuns, preflight, run_tags

    preflight()  # a malformed or unreachable store: one line, before anything fits
    params = load_params(args.params)
    cfg = params.baselines
    meta, data = read_prepared(args.data, early_stopping_fraction=params.train.early_stopping_fraction)
    check_stopping_slice(data, meta["classes"])
    classes = meta["classes"]
    weights = read_json(args.weights, what="class weights")
    summary = {}
    shared = {
        **to_dict(cfg),
        "weights": {k: weights[k] for k in ("scheme", "beta")},
        "early_stopping_fraction": params.train.early_stopping_fraction,
    }
    stage_runs = StageRuns(
        params.mlflow.experiment,
        "baselines",
        {
            n: {"model": n, "loss": n, "kind": "baseline", "baselines": shared, "data": meta["params"]}
            for n in cfg.models
        },
        {n: {"loss": n, "kind": "baseline", "device": "cpu"} for n in cfg.models},
        run_tags(meta),
        datasets={"train": Path(args.data) / "train.parquet"},
    )
    with stage_runs, atomic_dirs(args.models, args.val_predictions, args.test_predictions) as (models_dir, *pred_dirs):
        for name in cfg.models:
            start = time.perf_counter()
            result = fit_baseline(name, data, len(classes), np.asarray(weights["weights"]), cfg)
            seconds = time.perf_counter() - start
            write_json(models_dir / f"{name}.json", {**result.saved, "classes": classes})
            for record in result.history:  # XGBoost's rounds (after the fact: it fits in one call)
                stage_runs.epoch(name, record)
            stage_runs.finish(
                {
                    name: {
                        "weights_sha256": file_digest(models_dir / f"{name}.json"),
                        "best_epoch": str(result.best_epoch),
                    }
                }
            )
            for split, preds_dir in zip(("val", "test"), pred_dirs):
                proba = np.asarray(result.predict_proba(data[split][0]), dtype=np.float64)
                proba /= proba.sum(axis=1, keepdims=True)
                predictions_frame(proba, data[split][1], classes).to_parquet(
                    predictions_file(preds_dir, name), index=False
                )
            stops = name == "xgboost"
            summary[name] = {
                "loss": name,
                "gamma": None,
                "seed": cfg.seed,
                "best_epoch": result.best_epoch,
                "epochs_run": len(result.history),
                "monitor": "log_loss" if stops else None,
                "best_score": result.history[result.best_epoch - 1]["stop_log_loss"] if stops else None,
                "history": result.history,
            }
            log.info(
                "%s: macro-F1 %.4f on the early-stopping slice, fitted in %.1fs", name, result.stop_macro_f1, seconds
            )  # one line per baseline: fitting one can take minutes at scale
        write_json(
            models_dir / TRAINING_SUMMARY,
            {
                "loss": "baselines",
                "device": "cpu",
                "runs": summary,
                "params": shared,
            },
        )


if __name__ == "__main__":
    run(main)
