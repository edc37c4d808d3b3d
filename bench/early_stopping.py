"""What should early stopping monitor on its slice of the training split? Measured on validation.

    python -m bench.early_stopping                       # the prepared data, every loss's plan
    python -m bench.early_stopping --fractions 0.1 0.2   # also other slice sizes

For each ``train.early_stopping_metric`` (and slice size), trains every loss's configurations
from ``outputs/plans/`` on ``data/prepared/`` exactly as the train stage does, and reads the
validation macro-F1 at the epoch early stopping chose from the per-epoch validation confusion
matrices that training records (validation is never read by training, so this is a fair
judge). Also prints the validation macro-F1 at the best epoch in hindsight (an oracle no
pipeline can have) and the epochs run. Run ``dvc repro plan`` first. Prints a table; asserts
nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np


def _f1(counts: dict) -> float:
    from pipeline.decision.metrics import class_count_metrics

    return float(class_count_metrics(**counts)["macro_f1"])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/prepared")
    ap.add_argument("--plans", default="outputs/plans")
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.1])
    ap.add_argument("--metrics", nargs="+", default=["macro_f1", "log_loss", "balanced_log_loss"])
    args = ap.parse_args(argv)

    import torch

    from pipeline.artifacts import read_prepared
    from pipeline.training.criterion import plan_criterion
    from pipeline.training.plan import RunSpec
    from pipeline.training.sweep import fit_sweep
    from pipeline.training.train import resolve_device, resolve_threads, train_config

    torch.set_num_threads(resolve_threads("auto"))
    plans = [json.loads(p.read_text()) for p in sorted(Path(args.plans).glob("*.json"))]
    rows = []
    for fraction in args.fractions:
        meta, data = read_prepared(args.data, early_stopping_fraction=fraction)
        for metric in args.metrics:
            chosen, oracle, epochs = [], [], []
            for plan in plans:
                cfg = dataclasses.replace(
                    train_config(plan, source="plan"), early_stopping_metric=metric, early_stopping_fraction=fraction
                )
                runs = [RunSpec(**r) for r in plan["runs"]]
                device = resolve_device(cfg.device)
                for r in fit_sweep(runs, plan_criterion(plan), data, len(meta["classes"]), cfg, device, progress=False):
                    f1 = [_f1(h["val_counts"]) for h in r.history]
                    chosen.append(f1[r.best_epoch - 1])
                    oracle.append(max(f1))
                    epochs.append(len(r.history))
            rows.append(
                (
                    fraction,
                    len(data["stop"][1]),
                    metric,
                    np.mean(chosen),
                    np.min(chosen),
                    np.mean(oracle),
                    np.mean(epochs),
                    len(chosen),
                )
            )
            print(f"fraction {fraction}: {metric} done", flush=True)
    print(
        f"\n{'fraction':>8} {'slice rows':>10} {'monitor':>18} {'val macro-F1 mean':>18} {'min':>7} "
        f"{'oracle mean':>12} {'epochs':>7} {'models':>7}"
    )
    for f, n, m, mean, low, orc, ep, k in rows:
        print(f"{f:>8} {n:>10} {m:>18} {mean:>18.4f} {low:>7.4f} {orc:>12.4f} {ep:>7.1f} {k:>7}")


if __name__ == "__main__":
    main()
