"""Does ``train.batch_size: auto`` keep the quality of batch 64? Paired over seeds, per loss.

    python -m bench.batch_quality --repo DIR [--batches 64 auto] [--seeds 0 1 2] [--gamma 2] [--alpha 1]

``DIR`` is a project checkout whose pipeline has run (``data/prepared`` and
``outputs/class_weights.json``, e.g. a ``python -m bench.scale --keep`` clone). For every loss
of its ``params.yaml`` (one configuration each: focal-family losses at ``--gamma``, the
weight-strength sweep at ``--alpha``), trains the configuration once per seed under each of
``--batches``: ``64`` is batch 64 at ``train.lr`` (the pipeline before ``auto``), ``auto`` what
the rule gives, another number that batch with the rule's learning rate (``train.lr`` scaled by
``sqrt(batch / 64)``) and one epoch of warm-up. Each is one batched sweep over the seeds, as the
train stage runs it. Prints per loss and batch: validation macro-F1 at the epoch early stopping
kept (on its slice of the training split) seed by seed, the paired difference to the first of
``--batches`` with a 95 % t interval, epochs run and training seconds. A benchmark: it asserts
nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
from pathlib import Path

import torch

from pipeline.artifacts import read_prepared
from pipeline.config import load_params
from pipeline.training.criterion import plan_criterion
from pipeline.io import read_json
from pipeline.decision.metrics import class_count_metrics
from pipeline.training.plan import RunSpec, loss_plan
from pipeline.training.sweep import fit_sweep
from pipeline.training.train import BASE_BATCH, resolve_batch, resolve_threads, thread_plan, train_config

T975 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26}


def train(loss: str, t, weights, data, n_classes: int, batch: str) -> tuple[list[float], list[int], float, int]:
    n = len(data["train"][0])
    if batch == "auto":
        t = dataclasses.replace(t, batch_size="auto", warmup_steps="auto")
    elif int(batch) == BASE_BATCH:
        t = dataclasses.replace(t, batch_size=BASE_BATCH, warmup_steps=0)
    else:
        b = int(batch)
        t = dataclasses.replace(t, batch_size=b, lr=t.lr * math.sqrt(b / BASE_BATCH), warmup_steps=math.ceil(n / b))
    plan = loss_plan(loss, t, weights)
    cfg = train_config(plan, source=f"{loss} plan")
    runs = [RunSpec(**r) for r in plan["runs"]]
    device = torch.device("cpu")
    intra_op, groups = thread_plan(resolve_threads(cfg.threads), len({r.seed for r in runs}), device, cfg.dropout)
    torch.set_num_threads(intra_op)
    results = fit_sweep(runs, plan_criterion(plan), data, n_classes, cfg, device, groups=groups, progress=False)
    f1 = [float(class_count_metrics(**r.history[r.best_epoch - 1]["val_counts"])["macro_f1"]) for r in results]
    return f1, [len(r.history) for r in results], results[0].seconds, resolve_batch(cfg, n).batch_size


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, required=True)
    ap.add_argument("--batches", nargs="+", default=["64", "auto"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--gamma", type=float, default=2.0)
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--losses", nargs="+", help="default: params.yaml's train.losses")
    args = ap.parse_args(argv)
    params = load_params(args.repo / "params.yaml")
    t = dataclasses.replace(params.train, gammas=(args.gamma,), alphas=(args.alpha,), seeds=tuple(args.seeds))
    meta, data = read_prepared(args.repo / "data/prepared", early_stopping_fraction=t.early_stopping_fraction)
    weights = read_json(args.repo / "outputs/class_weights.json", what="class weights")
    n = len(data["train"][0])
    print(
        f"{n} training rows, {len(data['val'][0])} validation rows; seeds {args.seeds}; "
        f"gamma {args.gamma:g}, alpha {args.alpha:g}; torch {torch.__version__}"
    )
    print("\n| loss | batch | val macro-F1 per seed | mean | paired diff to the first, 95 % t | epochs | seconds |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    diffs: dict[str, list[float]] = {b: [] for b in args.batches[1:]}
    for loss in args.losses or params.train.losses:
        first = None
        for b in args.batches:
            f1, epochs, seconds, used = train(loss, t, weights, data, len(meta["classes"]), b)
            cell = "–"
            if first is None:
                first = f1
            else:
                d = [a - c for a, c in zip(f1, first)]
                diffs[b] += d
                half = T975.get(len(d) - 1, 1.96) * statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else math.nan
                cell = f"{statistics.fmean(d):+.4f} ± {half:.4f}"
            print(
                f"| {loss} | {b}{f' ({used})' if b == 'auto' else ''} | {' '.join(f'{v:.4f}' for v in f1)} | "
                f"{statistics.fmean(f1):.4f} | {cell} | {statistics.fmean(epochs):.0f} | {seconds:.1f} |",
                flush=True,
            )
    for b, d in diffs.items():
        half = 1.96 * statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else math.nan
        print(
            f"\nbatch {b} against {args.batches[0]}, all losses and seeds: paired difference "
            f"{statistics.fmean(d):+.4f} ± {half:.4f} (n = {len(d)})"
        )


if __name__ == "__main__":
    main()
