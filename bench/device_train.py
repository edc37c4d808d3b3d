"""Training on a GPU against the CPU: every loss's plan, the early-stopping slice, the same data.

    python -m bench.device_train                                   # data/prepared, outputs/plans
    python -m bench.device_train --prepared DIR --plans DIR --devices cuda --out results.json

Trains every configuration of ``<plans>/*.json`` with :func:`pipeline.training.sweep.fit_sweep` on
``cuda`` (when torch sees a GPU) and on the CPU, or where ``--devices`` says, from the prepared splits
of ``--prepared`` and the early-stopping slice the train stage carves, as the train stage trains
them, and prints per model the epochs run, the epoch kept, and the validation macro-F1 at that
epoch, and the wall time of each loss's sweep on each device. It also checks, on each device,
what training promises: the kept epoch is the best monitored one on the slice, the restored
weights give that value again, and every epoch's validation class counts count every
validation row; it exits 1 when a check fails. Needs numpy, pandas, pyarrow, torch, PyYAML and
tqdm, not MLflow. A benchmark: nothing about time is asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prepared", default="data/prepared", help="prepare's output directory")
    ap.add_argument("--plans", default="outputs/plans", help="plan's output directory")
    ap.add_argument(
        "--devices",
        nargs="+",
        choices=["cuda", "cpu"],
        help="where to train (default: cuda when torch sees a GPU, and cpu)",
    )
    ap.add_argument("--out", default=None, help="write the results as JSON here too")
    args = ap.parse_args(argv)

    import torch

    from pipeline.artifacts import early_stopping_mask, read_prepared
    from pipeline.training.criterion import plan_criterion
    from pipeline.decision.metrics import class_count_metrics
    from pipeline.training.plan import RunSpec
    from pipeline.training.sweep import fit_sweep
    from pipeline.training.train import predict_logits, stopping_values, train_config

    names = args.devices or (["cuda"] if torch.cuda.is_available() else []) + ["cpu"]
    if "cuda" in names and not torch.cuda.is_available():
        sys.exit("bench.device_train: --devices names cuda, but torch sees no CUDA device here")
    plan_files = sorted(Path(args.plans).glob("*.json"))
    if not plan_files:
        sys.exit(f"bench.device_train: no <loss>.json plan in {args.plans}; run the plan stage first")
    devices = [torch.device(d) for d in dict.fromkeys(names)]
    meta, splits = read_prepared(args.prepared)
    n_classes = len(meta["classes"])
    print(
        f"{args.prepared}: train {len(splits['train'][1]):,}, val {len(splits['val'][1]):,} rows, "
        f"{splits['train'][0].shape[1]} features, {n_classes} classes"
    )
    print(
        f"torch {torch.__version__}; devices: {', '.join(map(str, devices))}"
        + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "")
    )
    if torch.device("cuda") in devices:
        torch.zeros(1, device="cuda")  # the CUDA context, made once before any clock starts
    results, failures, totals = {}, [], dict.fromkeys([d.type for d in devices], 0.0)
    for plan_file in plan_files:
        plan = json.loads(plan_file.read_text())
        cfg = train_config(plan, source=str(plan_file))
        X, y = splits["train"]
        stop = early_stopping_mask(y, cfg.early_stopping_fraction, int(meta["params"]["seed"]))
        data = {"train": (X[~stop], y[~stop]), "stop": (X[stop], y[stop]), "val": splits["val"]}
        runs = [RunSpec(**r) for r in plan["runs"]]
        for device in devices:
            cfg_d = dataclasses.replace(cfg, device=device.type)
            start = time.perf_counter()
            fitted = fit_sweep(runs, plan_criterion(plan), data, n_classes, cfg_d, device, progress=False)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            for spec, r in zip(runs, fitted):
                metric = cfg.early_stopping_metric
                curve = [h[f"stop_{metric}"] for h in r.history]
                best = max(curve) if metric == "macro_f1" else min(curve)
                again = stopping_values(
                    predict_logits(r.model, torch.tensor(data["stop"][0], device=device)),
                    torch.tensor(data["stop"][1], device=device),
                    n_classes,
                )[metric][0]
                ok = (
                    abs(curve[r.best_epoch - 1] - best) < 1e-9
                    and abs(again - r.best_score) < 1e-4
                    and all(sum(h["val_counts"]["predicted"]) == len(data["val"][1]) for h in r.history)
                )
                if not ok:
                    failures.append(f"{spec.model} on {device}")
                results.setdefault(spec.model, {})[device.type] = {
                    "epochs": len(r.history),
                    "best_epoch": r.best_epoch,
                    "best_score": r.best_score,
                    "val_macro_f1": float(class_count_metrics(**r.history[r.best_epoch - 1]["val_counts"])["macro_f1"]),
                    "sweep_seconds": seconds,
                    "checks": ok,
                }
            totals[device.type] += seconds
            print(
                f"{plan['loss']:>16} on {device.type}: {len(runs)} model(s) in {seconds:.2f} s, "
                f"{max(len(r.history) for r in fitted)} epochs at most",
                flush=True,
            )
    kinds = [d.type for d in devices]
    print("every loss's sweep: " + ", ".join(f"{t:.1f} s on {k}" for k, t in totals.items()))
    print("\nmodel".ljust(22) + "".join(f"{k + ' epochs':>12}{k + ' kept':>10}{k + ' val F1':>12}" for k in kinds))
    for model, by in results.items():
        print(
            f"{model:<21}"
            + "".join(f"{by[k]['epochs']:>12}{by[k]['best_epoch']:>10}{by[k]['val_macro_f1']:>12.4f}" for k in kinds)
        )
    if len(kinds) == 2:
        gaps = [abs(by["cuda"]["val_macro_f1"] - by["cpu"]["val_macro_f1"]) for by in results.values()]
        same = sum(by["cuda"]["best_epoch"] == by["cpu"]["best_epoch"] for by in results.values())
        print(
            f"\nGPU against CPU: the same kept epoch for {same} of {len(results)} models; validation "
            f"macro-F1 at the kept epoch differs by at most {max(gaps):.4f} (mean {np.mean(gaps):.4f})"
        )
    print(
        "checks (kept epoch is the slice's best, restored weights reproduce it, class counts count every row): "
        + ("all passed" if not failures else "FAILED for " + ", ".join(failures))
    )
    if args.out:
        Path(args.out).write_text(json.dumps({"seconds": totals, "models": results}, indent=1))
    if failures:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
