"""train@<loss>: train every configuration in one loss's plan; save weights and predictions.

Writes ``<models>/<model>.pt`` (loadable with ``torch.load(..., weights_only=True)``),
``<models>/training.json`` (per-epoch curves and early-stopping point of each model) and
``<predictions>/<model>.parquet`` (test split: ``y_true``, ``y_pred``, ``p_<class>``).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd
import torch

from pipeline.config import TrainConfig, parse_params
from pipeline.data import SPLITS, split_arrays
from pipeline.io import atomic_dirs, read_json, read_parquet, write_json
from pipeline.losses import make_criterion
from pipeline.train import RunSpec, fit, predict_logits, resolve_device
from stages._cli import run

# training.json holds no wall-clock figures: the same inputs give the same bytes.
log = logging.getLogger("train")


def predictions_frame(proba, y_true, classes: list[str]) -> pd.DataFrame:
    """``y_true``, ``y_pred`` (class names) and one ``p_<class>`` column per class."""
    frame = pd.DataFrame({
        "y_true": [classes[i] for i in y_true],
        "y_pred": [classes[i] for i in proba.argmax(1)],
    })
    for j, c in enumerate(classes):
        frame[f"p_{c}"] = proba[:, j]
    return frame


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--plan", required=True, help="outputs/plans/<loss>.json written by plan")
    ap.add_argument("--data", required=True, help="directory written by prepare")
    ap.add_argument("--models", required=True, help="directory for this loss's model weights")
    ap.add_argument("--predictions", required=True, help="directory for this loss's test predictions")
    ap.add_argument("--no-progress", action="store_true", help="hide the per-epoch progress bar")
    args = ap.parse_args(argv)

    plan = read_json(args.plan, what="training plan")
    cfg: TrainConfig = parse_params({"train": plan["train"]}, source=args.plan).train
    data_dir = Path(args.data)
    meta = read_json(data_dir / "meta.json", what="prepared-data metadata")
    classes = meta["classes"]
    data = {s: split_arrays(read_parquet(data_dir / f"{s}.parquet", what=f"{s} split"), classes)
            for s in SPLITS}
    device = resolve_device(cfg.device)
    weights = plan["class_weights"]
    class_weight = torch.tensor(weights["weights"], dtype=torch.float32, device=device) if weights else None
    runs = [RunSpec(**r) for r in plan["runs"]]
    log.info("%s: %d model(s) on %s, %d training rows", plan["loss"], len(runs), device, len(data["train"][0]))

    summary = {}
    with atomic_dirs(args.models, args.predictions) as (models_dir, preds_dir):
        for i, spec in enumerate(runs, 1):
            criterion = make_criterion(spec.loss, gamma=spec.gamma, class_weight=class_weight)
            result = fit(spec, criterion, data, len(classes), cfg, device,
                         progress=False if args.no_progress else None)
            torch.save({
                "state_dict": result.model.state_dict(),
                "in_features": int(data["train"][0].shape[1]),
                "hidden": list(cfg.hidden),
                "dropout": cfg.dropout,
                "classes": classes,
            }, models_dir / f"{spec.model}.pt")
            X_test = torch.tensor(data["test"][0], device=device)
            proba = torch.softmax(predict_logits(result.model, X_test).double(), dim=1).cpu().numpy()
            predictions_frame(proba, data["test"][1], classes).to_parquet(
                preds_dir / f"{spec.model}.parquet", index=False)
            summary[spec.model] = {
                "loss": spec.loss, "gamma": spec.gamma, "seed": spec.seed,
                "best_epoch": result.best_epoch, "epochs_run": len(result.history),
                "best_val_macro_f1": result.best_val_macro_f1,
                "history": result.history,
            }
            log.info("[%d/%d] %s: best val macro-F1 %.4f at epoch %d of %d (%.1fs)", i, len(runs),
                     spec.model, result.best_val_macro_f1, result.best_epoch, len(result.history),
                     result.seconds)
        write_json(models_dir / "training.json", {"loss": plan["loss"], "device": str(device), "runs": summary})


if __name__ == "__main__":
    run(main)
