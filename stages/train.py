"""train@<loss>: train every configuration in one loss's plan as one batched sweep; save each.

All configurations of the loss (every gamma x seed) train at once as one stacked model
(:func:`pipeline.train.fit_sweep`), each with its own data order, dropout masks, optimizer state
and early-stopping point. Writes, per configuration, ``<models>/<model>.pt`` (loadable with
``torch.load(..., weights_only=True)``: ``state_dict`` of :class:`pipeline.model.MLP`,
``in_features``, ``hidden``, ``dropout``, ``classes``), its entry in ``<models>/training.json``
(per-epoch curves and early-stopping point) and ``<predictions>/<model>.parquet`` (test split:
``y_true``, ``y_pred``, ``p_<class>``, from the plain logits whatever the loss).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd
import torch

from pipeline.config import GAMMA_LOSSES, TrainConfig, parse_params
from pipeline.data import SPLITS, split_arrays
from pipeline.io import atomic_dirs, read_json, read_parquet, write_json
from pipeline.losses import Criterion, make_criterion
from pipeline.train import RunSpec, drw_start, fit_sweep, predict_logits, resolve_device
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


def plan_criterion(plan: dict, cfg: TrainConfig, runs: list[RunSpec]) -> Criterion:
    """The criterion of the plan's loss, with one gamma per run for the focal family."""
    loss, weights, counts = plan["loss"], plan["class_weights"], plan.get("class_counts")
    return make_criterion(
        loss,
        gamma=[r.gamma for r in runs] if loss in GAMMA_LOSSES else None,
        class_weight=torch.tensor(weights["weights"], dtype=torch.float32) if weights else None,
        class_counts=counts["counts"] if counts else None,
        tau=cfg.tau,
        max_margin=cfg.ldam_max_margin,
        scale=cfg.ldam_scale,
        drw_epoch=drw_start(cfg),
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--plan", required=True, help="outputs/plans/<loss>.json written by plan")
    ap.add_argument("--data", required=True, help="directory written by prepare")
    ap.add_argument("--models", required=True, help="directory for this loss's model weights")
    ap.add_argument("--predictions", required=True, help="directory for this loss's test predictions")
    ap.add_argument("--no-progress", action="store_true",
                    help="hide the per-epoch progress bar (without a terminal: the progress log lines)")
    args = ap.parse_args(argv)

    plan = read_json(args.plan, what="training plan")
    cfg: TrainConfig = parse_params({"train": plan["train"]}, source=args.plan).train
    data_dir = Path(args.data)
    meta = read_json(data_dir / "meta.json", what="prepared-data metadata")
    classes = meta["classes"]
    data = {s: split_arrays(read_parquet(data_dir / f"{s}.parquet", what=f"{s} split"), classes)
            for s in SPLITS}
    device = resolve_device(cfg.device)
    runs = [RunSpec(**r) for r in plan["runs"]]
    criterion = plan_criterion(plan, cfg, runs)
    log.info("%s: %d model(s) as one batched sweep on %s, %d training rows", plan["loss"], len(runs),
             device, len(data["train"][0]))

    results = fit_sweep(runs, criterion, data, len(classes), cfg, device,
                        progress=False if args.no_progress else None, desc=plan["loss"])
    X_test = torch.tensor(data["test"][0], device=device)
    summary = {}
    with atomic_dirs(args.models, args.predictions) as (models_dir, preds_dir):
        for spec, result in zip(runs, results):
            torch.save({
                "state_dict": {k: v.cpu() for k, v in result.model.state_dict().items()},
                "in_features": int(data["train"][0].shape[1]),
                "hidden": list(cfg.hidden),
                "dropout": cfg.dropout,
                "classes": classes,
            }, models_dir / f"{spec.model}.pt")
            proba = torch.softmax(predict_logits(result.model, X_test).double(), dim=1).cpu().numpy()
            predictions_frame(proba, data["test"][1], classes).to_parquet(
                preds_dir / f"{spec.model}.parquet", index=False)
            summary[spec.model] = {
                "loss": spec.loss, "gamma": spec.gamma, "seed": spec.seed,
                "best_epoch": result.best_epoch, "epochs_run": len(result.history),
                "best_val_macro_f1": result.best_val_macro_f1,
                "history": result.history,
            }
            log.info("%s: best val macro-F1 %.4f at epoch %d of %d", spec.model,
                     result.best_val_macro_f1, result.best_epoch, len(result.history))
        write_json(models_dir / "training.json", {"loss": plan["loss"], "device": str(device), "runs": summary})
    log.info("%s: %d model(s) trained in %.1fs", plan["loss"], len(runs), results[0].seconds)


if __name__ == "__main__":
    run(main)
