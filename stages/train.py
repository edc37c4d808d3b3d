"""train@<loss>: train every configuration in one loss's plan as one batched sweep; save each.

All configurations of the loss (every gamma x alpha x seed) train at once as one stacked model
(:func:`pipeline.training.sweep.fit_sweep`), each with its own data order, dropout masks, optimizer state
and early-stopping point. Writes, per configuration, ``<models>/<model>.pt`` (a checkpoint:
:func:`pipeline.training.checkpoint.load_model`), its entry in ``<models>/training.json`` (per-epoch curves
and early-stopping point) and ``<val-predictions>/<model>.parquet`` and
``<test-predictions>/<model>.parquet`` (``y_true``, ``y_pred``, ``p_<class>``, from the plain
logits whatever the loss). Early stopping reads a slice of the training split
(``train.early_stopping_fraction``); validation and test are only predicted.
"""

from __future__ import annotations

import argparse
import logging

from stages._cli import run

# training.json holds no wall-clock figures: the same inputs give the same bytes.
log = logging.getLogger("train")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--plan", required=True, help="outputs/plans/<loss>.json written by plan")
    ap.add_argument("--data", required=True, help="directory written by prepare")
    ap.add_argument("--models", required=True, help="directory for this loss's model weights")
    ap.add_argument("--val-predictions", required=True, help="directory for this loss's validation predictions")
    ap.add_argument("--test-predictions", required=True, help="directory for this loss's test predictions")
    ap.add_argument(
        "--params",
        default="params.yaml",
        help="read for mlflow.experiment only: where the runs go changes no result, so it is no DVC param",
    )
    ap.add_argument(
        "--no-progress",
        action="store_true",
        help="hide the per-epoch progress bar (without a terminal: the progress log lines)",
    )
    args = ap.parse_args(argv)
    train(args)


def train(args) -> None:
    from pathlib import Path

    import torch

    from pipeline.artifacts import check_stopping_slice, read_prepared
    from pipeline.config import load_params
    from pipeline.training.criterion import plan_criterion
    from pipeline.io import read_json
    from pipeline.training.plan import RunSpec
    from pipeline.training.sweep import fit_sweep
    from pipeline.tracking.runs import StageRuns, gamma_text, preflight, run_tags
    from pipeline.training.train import (
        resolve_batch,
        resolve_device,
        resolve_threads,
        stopping_sign,
        thread_plan,
        train_config,
    )

    preflight()  # a malformed or unreachable store: one line, before anything trains
    plan = read_json(args.plan, what="training plan")
    cfg = train_config(plan, source=args.plan)
    meta, data = read_prepared(args.data, early_stopping_fraction=cfg.early_stopping_fraction)
    check_stopping_slice(data, meta["classes"])
    device = resolve_device(cfg.device)
    cfg = resolve_batch(cfg, len(data["train"][0]), device)  # train.batch_size: auto -> a number, and its rate
    classes = meta["classes"]
    runs = [RunSpec(**r) for r in plan["runs"]]
    threads = resolve_threads(cfg.threads)
    intra_op, groups = thread_plan(threads, len({r.seed for r in runs}), device, cfg.dropout)
    torch.set_num_threads(intra_op)  # the one place torch's thread count is set
    log.debug(
        "%s: %d model(s) as one batched sweep on %s (%d CPU thread(s) in %d stack(s)), %d training rows "
        "(%d more for early stopping, by %s)",
        plan["loss"],
        len(runs),
        device,
        threads,
        groups,
        len(data["train"][0]),
        len(data["stop"][0]),
        cfg.early_stopping_metric,
    )
    log.debug(
        "%s: batch %d, learning rate %.3g, warm-up %d step(s)", plan["loss"], cfg.batch_size, cfg.lr, cfg.warmup_steps
    )
    used = {"batch_size": cfg.batch_size, "lr": cfg.lr, "warmup_steps": cfg.warmup_steps}

    weights = plan.get("class_weights")
    model_params = {
        spec.model: {
            "model": spec.model,
            "loss": spec.loss,
            "gamma": gamma_text(spec.gamma),
            "alpha": gamma_text(spec.alpha),
            "seed": spec.seed,
            "kind": "mlp",
            "train": plan["train"],
            "used": used,
            "weights": {k: weights[k] for k in ("scheme", "beta")} if weights else "none",
            "data": meta["params"],
        }
        for spec in runs
    }
    stage_runs = StageRuns(
        load_params(args.params).mlflow.experiment,
        f"train@{plan['loss']}",
        model_params,
        {spec.model: {"loss": spec.loss, "kind": "mlp", "device": str(device)} for spec in runs},
        run_tags(meta),
        datasets={"train": Path(args.data) / "train.parquet"},
    )
    with stage_runs:
        results = fit_sweep(
            runs,
            plan_criterion(plan),
            data,
            len(classes),
            cfg,
            device,
            groups=groups,
            progress=False if args.no_progress else None,
            desc=plan["loss"],
            on_epoch=lambda i, record: stage_runs.epoch(runs[i].model, record),
        )
        X = {split: torch.tensor(data[split][0], device=device) for split in ("val", "test")}
        write_outputs(args, runs, results, X, data, classes, plan, cfg, device, stage_runs, used)
    best = max(range(len(runs)), key=lambda i: stopping_sign(cfg.early_stopping_metric) * results[i].best_score)
    log.info(
        "%s: %d model(s) trained in %.1fs on %s, batch %d; best early-stopping %s %.4f (%s, epoch %d of %d)",
        plan["loss"],
        len(runs),
        results[0].seconds,
        device,
        cfg.batch_size,
        cfg.early_stopping_metric,
        results[best].best_score,
        runs[best].model,
        results[best].best_epoch,
        len(results[best].history),
    )


def write_outputs(args, runs, results, X, data, classes, plan, cfg, device, stage_runs, used) -> None:
    import dataclasses

    import torch

    from pipeline.artifacts import TRAINING_SUMMARY, checkpoint_path, predictions_file, predictions_frame
    from pipeline.training.checkpoint import save_checkpoint
    from pipeline.io import atomic_dirs, write_json
    from pipeline.tracking.provenance import file_digest
    from pipeline.training.train import predict_logits

    summary = {}
    with atomic_dirs(args.models, args.val_predictions, args.test_predictions) as (models_dir, *pred_dirs):
        for spec, result in zip(runs, results):
            path = checkpoint_path(models_dir, spec.model)
            save_checkpoint(path, result.model, classes=classes, run=dataclasses.asdict(spec))
            stage_runs.finish({spec.model: {"weights_sha256": file_digest(path), "best_epoch": str(result.best_epoch)}})
            for split, preds_dir in zip(("val", "test"), pred_dirs):
                proba = torch.softmax(predict_logits(result.model, X[split]).double(), dim=1).cpu().numpy()
                predictions_frame(proba, data[split][1], classes).to_parquet(
                    predictions_file(preds_dir, spec.model), index=False
                )
            summary[spec.model] = {
                "loss": spec.loss,
                "gamma": spec.gamma,
                "alpha": spec.alpha,
                "seed": spec.seed,
                "best_epoch": result.best_epoch,
                "epochs_run": len(result.history),
                "monitor": cfg.early_stopping_metric,
                "best_score": result.best_score,
                "history": result.history,
            }
            log.debug(
                "%s: best early-stopping %s %.4f at epoch %d of %d",
                spec.model,
                cfg.early_stopping_metric,
                result.best_score,
                result.best_epoch,
                len(result.history),
            )
        write_json(
            models_dir / TRAINING_SUMMARY, {"loss": plan["loss"], "device": str(device), **used, "runs": summary}
        )


if __name__ == "__main__":
    run(main)
