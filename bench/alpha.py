"""Does the weight-strength sweep cost more than a γ sweep of the same size? K class-weight strengths
α of ``weighted_ce`` against K focal-loss γ, each trained as one batched sweep.

    python -m bench.alpha                         # K=4, 20 000 x 64 synthetic rows, 10 classes, 5 epochs
    python -m bench.alpha --n 446 --epochs 30     # the size of the default digits run's training split

Both sweeps are :func:`pipeline.training.sweep.fit_sweep` on the same data, seed, epochs (early stopping
off), batch size and threads (:func:`pipeline.training.train.thread_plan`, as the train stage sets them);
what differs is the criterion alone: per-configuration class weights ((K, C), one row of
:func:`pipeline.data.weights.power_weights` per α) against per-configuration γ ((K, 1)). A third
line, ``weighted_focal`` over the same γ with one row of weights, is the γ sweep that also reads
weights. After an untimed warm-up the modes are timed in turn, ``--repeats`` rounds, each
round in a new order; the median is reported. Prints figures and asserts nothing about time.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

from bench.sweep import hardware

ALPHAS = (0.25, 0.5, 0.75, 1.0, 0.125, 0.375, 0.625, 0.875, 1.25, 1.5, 1.75, 2.0)
GAMMAS = (0.5, 1.0, 2.0, 5.0, 0.25, 0.75, 1.5, 3.0, 4.0, 6.0, 8.0, 10.0)


def _args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--k",
        type=int,
        default=4,
        help=f"configurations per sweep, at most {len(ALPHAS)} (default: the pipeline's four alphas)",
    )
    ap.add_argument("--n", type=int, default=20_000, help="training rows (validation and early stopping: n / 5 each)")
    ap.add_argument("--features", type=int, default=64)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64, help="the pipeline's default: 64")
    ap.add_argument("--hidden", type=int, nargs="+", default=[128, 64])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    args = ap.parse_args(argv)
    if not 1 <= args.k <= len(ALPHAS):
        ap.error(f"--k must be in [1, {len(ALPHAS)}]; got {args.k}")
    return args


def _data(args):
    """Long-tailed synthetic data (ratio 10), as the pipeline's ``synthetic`` source."""
    from sklearn.datasets import make_classification

    from pipeline.data.prepare import long_tail_profile

    m = args.n // 5
    weights = long_tail_profile(args.classes, 10.0)
    X, y = make_classification(
        n_samples=args.n + 2 * m,
        n_features=args.features,
        n_informative=args.features // 2,
        n_redundant=0,
        n_classes=args.classes,
        n_clusters_per_class=1,
        weights=list(weights / weights.sum()),
        random_state=0,
    )
    X, y = X.astype("float32"), y.astype("int64")
    return {
        "train": (X[: args.n], y[: args.n]),
        "stop": (X[args.n : args.n + m], y[args.n : args.n + m]),
        "val": (X[args.n + m :], y[args.n + m :]),
    }


def main(argv: list[str] | None = None) -> None:
    import numpy as np
    import torch

    from pipeline.config import TrainConfig
    from pipeline.training.criterion import make_criterion
    from pipeline.training.plan import RunSpec
    from pipeline.training.sweep import fit_sweep
    from pipeline.training.train import resolve_device, thread_plan
    from pipeline.data.weights import power_weights

    args = _args(argv)
    device = resolve_device(args.device)
    data = _data(args)
    counts = np.bincount(data["train"][1], minlength=args.classes)
    alphas, gammas = ALPHAS[: args.k], GAMMAS[: args.k]
    cfg = TrainConfig(
        hidden=tuple(args.hidden),
        epochs=args.epochs,
        batch_size=args.batch,
        patience=args.epochs + 1,
        device=device.type,
    )
    intra_op, groups = thread_plan(os.cpu_count() or 1, 1, device, cfg.dropout)
    torch.set_num_threads(intra_op)
    rows = torch.tensor(np.array([power_weights(counts, a) for a in alphas]), dtype=torch.float32)
    inverse = torch.tensor(power_weights(counts, 1.0), dtype=torch.float32)
    modes = {
        f"alpha sweep: weighted_ce, alphas {list(alphas)}": (
            [RunSpec(f"weighted_ce_a{a:g}", "weighted_ce", None, 0, a) for a in alphas],
            make_criterion("weighted_ce", class_weight=rows),
        ),
        f"gamma sweep: focal, gammas {list(gammas)}": (
            [RunSpec(f"focal_g{g:g}", "focal", g, 0) for g in gammas],
            make_criterion("focal", gamma=list(gammas)),
        ),
        f"gamma sweep: weighted_focal, gammas {list(gammas)}": (
            [RunSpec(f"weighted_focal_g{g:g}", "weighted_focal", g, 0) for g in gammas],
            make_criterion("weighted_focal", gamma=list(gammas), class_weight=inverse),
        ),
    }
    print(
        f"bench.alpha: K={args.k} configurations per sweep, {args.n:,} x {args.features} synthetic training rows "
        f"(+{args.n // 5:,} early stopping, +{args.n // 5:,} validation), {args.classes} classes, {args.epochs} "
        f"epochs (early stopping off), batch {args.batch}, hidden {args.hidden}, one seed, device {device}, "
        f"{intra_op} torch thread(s) in {groups} stack(s), {args.repeats} rounds"
    )
    for line in hardware(str(device)):
        print(line)
    warm = {s: (X[:1024], y[:1024]) for s, (X, y) in data.items()}
    for specs, crit in modes.values():  # untimed: one-off costs of the first fit
        fit_sweep(
            specs, crit, warm, args.classes, dataclasses.replace(cfg, epochs=1), device, progress=False, groups=groups
        )
    times: dict[str, list[float]] = {m: [] for m in modes}
    names = list(modes)
    for r in range(args.repeats):
        for m in names[r % len(names) :] + names[: r % len(names)]:  # each round starts with another mode
            specs, crit = modes[m]
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fit_sweep(specs, crit, data, args.classes, cfg, device, progress=False, groups=groups)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[m].append(time.perf_counter() - start)
    print()
    print(f"{'sweep':<62} {'median s':>9} {'min s':>8} {'max s':>8}")
    for m, t in times.items():
        print(f"{m:<62} {statistics.median(t):>9.2f} {min(t):>8.2f} {max(t):>8.2f}")
    a, g, wf = (statistics.median(times[m]) for m in names)
    print()
    print(f"alpha sweep / focal gamma sweep:          {a / g:.2f}x")
    print(f"alpha sweep / weighted_focal gamma sweep: {a / wf:.2f}x")
    print("(the same K, data, epochs and threads: the alpha sweep costs no more when these are <= 1)")


if __name__ == "__main__":
    main()
