"""Training on a GPU against the CPU: every loss's plan, the early-stopping slice, the same data.

    python -m bench.device_train --export data/device.npz    # here: the prepared splits as arrays
    python -m bench.device_train --data data/device.npz      # there: train on cuda and cpu, compare

The second form trains every configuration of ``outputs/plans/*.json`` with
:func:`pipeline.sweep.fit_sweep` on ``cuda`` (when torch sees a GPU) and on the CPU, from the
same arrays and the same early-stopping slice, and prints per model the epochs run, the epoch
kept, the monitored value there and the validation macro-F1 at that epoch, and the wall time of
each loss's sweep on each device. It also checks, on each device, what training promises: the
kept epoch is the best monitored one on the slice, the restored weights give that value again,
and every epoch's validation confusion matrix counts every validation row. Needs numpy, torch,
PyYAML and tqdm, not pandas or MLflow (the arrays are exported beforehand). A benchmark: nothing
about time is asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np


def export(data_dir: str, out: str) -> None:
    from pipeline.artifacts import read_prepared

    meta, data = read_prepared(data_dir)
    arrays = {f"{s}_{k}": a for s, (X, y) in data.items() for k, a in (("X", X), ("y", y))}
    np.savez_compressed(out, meta=json.dumps(meta), **arrays)
    print(f"wrote {out}")


def _macro_f1(cm) -> float:
    cm = np.asarray(cm, dtype=float)
    tp = np.diag(cm)
    denom = cm.sum(0) + cm.sum(1)
    return float(np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0).mean())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export", metavar="NPZ", help="write the prepared splits of --prepared to NPZ and stop")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--data", default="data/device.npz")
    ap.add_argument("--plans", default="outputs/plans")
    ap.add_argument("--out", default=None, help="write the results as JSON here too")
    args = ap.parse_args(argv)
    if args.export:
        export(args.prepared, args.export)
        return

    import torch

    from pipeline.artifacts import early_stopping_mask
    from pipeline.criterion import plan_criterion
    from pipeline.plan import RunSpec
    from pipeline.sweep import fit_sweep
    from pipeline.train import predict_logits, stopping_values, train_config

    raw = np.load(args.data)
    meta = json.loads(str(raw["meta"]))
    n_classes = len(meta["classes"])
    devices = [torch.device("cuda")] if torch.cuda.is_available() else []
    devices.append(torch.device("cpu"))
    print(f"torch {torch.__version__}; devices: {', '.join(map(str, devices))}"
          + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else ""))
    results, failures = {}, []
    for plan_file in sorted(Path(args.plans).glob("*.json")):
        plan = json.loads(plan_file.read_text())
        cfg = train_config(plan, source=str(plan_file))
        X, y = raw["train_X"], raw["train_y"]
        stop = early_stopping_mask(y, cfg.early_stopping_fraction, int(meta["params"]["seed"]))
        data = {"train": (X[~stop], y[~stop]), "stop": (X[stop], y[stop]), "val": (raw["val_X"], raw["val_y"])}
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
                again = stopping_values(predict_logits(r.model, torch.tensor(data["stop"][0], device=device)),
                                        torch.tensor(data["stop"][1], device=device), n_classes)[metric][0]
                ok = (abs(curve[r.best_epoch - 1] - best) < 1e-9 and abs(again - r.best_score) < 1e-4
                      and all(int(np.sum(h["val_confusion"])) == len(raw["val_y"]) for h in r.history))
                if not ok:
                    failures.append(f"{spec.model} on {device}")
                results.setdefault(spec.model, {})[device.type] = {
                    "epochs": len(r.history), "best_epoch": r.best_epoch, "best_score": r.best_score,
                    "val_macro_f1": _macro_f1(r.history[r.best_epoch - 1]["val_confusion"]),
                    "sweep_seconds": seconds, "checks": ok}
            print(f"{plan['loss']:>16} on {device.type}: {len(runs)} model(s) in {seconds:.2f} s", flush=True)
    kinds = [d.type for d in devices]
    print("\nmodel".ljust(22) + "".join(f"{k + ' epochs':>12}{k + ' kept':>10}{k + ' val F1':>12}" for k in kinds))
    for model, by in results.items():
        print(f"{model:<21}" + "".join(f"{by[k]['epochs']:>12}{by[k]['best_epoch']:>10}{by[k]['val_macro_f1']:>12.4f}"
                                       for k in kinds))
    if len(kinds) == 2:
        gaps = [abs(by["cuda"]["val_macro_f1"] - by["cpu"]["val_macro_f1"]) for by in results.values()]
        same = sum(by["cuda"]["best_epoch"] == by["cpu"]["best_epoch"] for by in results.values())
        print(f"\nGPU against CPU: the same kept epoch for {same} of {len(results)} models; validation "
              f"macro-F1 at the kept epoch differs by at most {max(gaps):.4f} (mean {np.mean(gaps):.4f})")
    print("checks (kept epoch is the slice's best, restored weights reproduce it, confusion counts every row): "
          + ("all passed" if not failures else "FAILED for " + ", ".join(failures)))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
