"""Batched sweep against the sequential loop: K focal-loss configurations trained on synthetic data.

    python -m bench.sweep                      # K=8 gammas, 100 000 x 64, 10 classes, 3 epochs
    python -m bench.sweep --distinct-seeds     # seeds 0..K-1: no shared data order or dropout masks
    python -m bench.sweep --device cuda --batch auto --n 540000    # the batch auto picks at 1M rows there

The sequential loop is :func:`pipeline.training.train.fit` once per configuration, what a user writes;
the batched sweep is :func:`pipeline.training.sweep.fit_sweep`, all K at once. Each runs in a child
process of its own so that its peak memory is its own. Both train the same K configurations
for the same epochs (early stopping off), validation every epoch included, after an untimed
warm-up fit on 2 048 rows. ``--batch auto`` is ``train.batch_size: auto`` (its batch, its scaled
rate and warm-up) for ``--n`` training rows. Prints figures and asserts nothing about time; it also prints how
much CPU other processes took during each run, because a busy machine slows both.

By default the K configurations share one seed, as a pipeline gamma sweep does: the sweep
then draws the data order and dropout masks once for all, where the loop draws them K times.
``--distinct-seeds`` measures the stack alone, with nothing shared.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import time

GAMMAS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 0.1, 0.75, 1.25, 1.75, 2.5, 4.0, 6.0, 8.0)


def _batch(text: str) -> int | str:
    return text if text == "auto" else int(text)


def _args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k", type=int, default=8, help="configurations (gamma values), at most 16")
    ap.add_argument("--n", type=int, default=100_000, help="training rows (validation: n / 5 more)")
    ap.add_argument("--features", type=int, default=64)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=_batch, default=256, help="rows per step, or auto (train.batch_size: auto)")
    ap.add_argument("--hidden", type=int, nargs="+", default=[128, 128])
    ap.add_argument("--dropout", type=float, default=0.1, help="dropout rate (default: the pipeline's, 0.1)")
    ap.add_argument(
        "--distinct-seeds",
        action="store_true",
        help="give configuration k seed k: nothing is shared (default: one seed, as a gamma sweep)",
    )
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--child", choices=["sequential", "batched"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not 1 <= args.k <= len(GAMMAS):
        ap.error(f"--k must be in [1, {len(GAMMAS)}]; got {args.k}")
    return args


def _data(args):
    """Long-tailed synthetic classification data, as the pipeline's ``synthetic`` source."""
    from sklearn.datasets import make_classification

    from pipeline.data.prepare import long_tail_profile

    n_val, n_stop = args.n // 5, args.n // 10
    weights = long_tail_profile(args.classes, 10.0)
    X, y = make_classification(
        n_samples=args.n + n_val + n_stop,
        n_features=args.features,
        n_informative=args.features // 2,
        n_redundant=0,
        n_classes=args.classes,
        n_clusters_per_class=1,
        weights=list(weights / weights.sum()),
        random_state=0,
    )
    X, y = X.astype("float32"), y.astype("int64")
    cut = (args.n, args.n + n_val)
    return {
        "train": (X[: cut[0]], y[: cut[0]]),
        "val": (X[cut[0] : cut[1]], y[cut[0] : cut[1]]),
        "stop": (X[cut[1] :], y[cut[1] :]),
    }


def _child(args) -> dict:
    """Train the K configurations one way; report time, throughput and peak memory."""
    import torch

    from pipeline.config import TrainConfig
    from pipeline.training.criterion import make_criterion
    from pipeline.decision.metrics import class_count_metrics
    from pipeline.training.plan import RunSpec
    from pipeline.training.sweep import fit_sweep
    from pipeline.training.train import fit, resolve_batch, resolve_device, thread_plan

    device = resolve_device(args.device)
    threads = torch.get_num_threads()
    data = _data(args)
    cfg = TrainConfig(
        hidden=tuple(args.hidden),
        epochs=args.epochs,
        batch_size=args.batch,
        patience=args.epochs + 1,
        dropout=args.dropout,
        device=device.type,
    )
    cfg = resolve_batch(
        cfg, args.n, device
    )  # auto: the batch, rate and warm-up of args.n rows, fixed for the warm-up too
    gammas = GAMMAS[: args.k]
    specs = [RunSpec(f"focal_g{g:g}", "focal", g, k if args.distinct_seeds else 0) for k, g in enumerate(gammas)]

    def train(data, cfg):
        if args.child == "sequential":
            return [
                fit(s, make_criterion("focal", gamma=s.gamma), data, args.classes, cfg, device, progress=False)
                for s in specs
            ]
        intra_op, groups = thread_plan(threads, len({sp.seed for sp in specs}), device, cfg.dropout)
        torch.set_num_threads(intra_op)  # as the train stage sets it
        return fit_sweep(
            specs,
            make_criterion("focal", gamma=list(gammas)),
            data,
            args.classes,
            cfg,
            device,
            progress=False,
            groups=groups,
        )

    # warm-up, untimed: the first fit in a process pays one-off costs (lazy imports, allocator)
    train({s: (X[:2048], y[:2048]) for s, (X, y) in data.items()}, dataclasses.replace(cfg, epochs=1))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    start = time.perf_counter()
    results = train(data, cfg)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "samples_per_s": args.k * args.n * args.epochs / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None,
        "best_val_macro_f1": [
            float(class_count_metrics(**r.history[r.best_epoch - 1]["val_counts"])["macro_f1"]) for r in results
        ],
        "batch": cfg.batch_size,
        "device": str(device),
    }


def _busy_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (Linux), or None."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _timed_child(mode: str, forwarded: list[str]) -> dict:
    """Run one mode in a child process; add how much CPU other processes used meanwhile."""
    busy0, own0 = _busy_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        [sys.executable, "-m", "bench.sweep", *forwarded, "--child", mode], capture_output=True, text=True
    )
    busy1, own1 = _busy_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"{mode} run failed:\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    own = (own1.ru_utime + own1.ru_stime) - (own0.ru_utime + own0.ru_stime)
    result["other_cpu_s"] = None if busy0 is None else max(0.0, busy1 - busy0 - own)
    return result


def hardware(device: str) -> list[str]:
    import torch

    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    lines = [
        f"cpu        {cpu}, {os.cpu_count()} logical cores ({len(os.sched_getaffinity(0))} usable)",
        f"torch      {torch.__version__}, {torch.get_num_threads()} intra-op threads, "
        f"{torch.get_num_interop_threads()} inter-op threads",
        f"python     {platform.python_version()} on {platform.system()} {platform.release()}",
    ]
    if torch.cuda.is_available():
        lines.append(f"gpu        {torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})")
    else:
        lines.append("gpu        none")
    return lines


def main(argv: list[str] | None = None) -> None:
    args = _args(argv)
    if args.child:
        print(json.dumps(_child(args)))
        return
    forwarded = [a for a in (argv if argv is not None else sys.argv[1:])]
    print(
        f"bench.sweep: K={args.k} focal-loss gammas {list(GAMMAS[: args.k])}, {args.n:,} x {args.features} "
        f"synthetic training rows (+{args.n // 5:,} validation, +{args.n // 10:,} early-stopping slice), {args.classes} classes, {args.epochs} epochs, "
        f"batch {args.batch}, hidden {args.hidden}, dropout {args.dropout}, "
        f"{'seeds 0..K-1' if args.distinct_seeds else 'one seed'}, device {args.device}"
    )
    for line in hardware(args.device):
        print(line)
    print(f"load avg   {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1, 5, 15 min) before")
    out = {mode: _timed_child(mode, forwarded) for mode in ("sequential", "batched")}
    print(f"load avg   {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1, 5, 15 min) after")
    print(f"device     {out['batched']['device']}, batch {out['batched']['batch']}")
    print()
    print(
        f"{'mode':<12} {'seconds':>9} {'samples/s':>12} {'peak RSS MB':>12} {'peak CUDA MB':>13} "
        f"{'other procs CPU s':>18}"
    )
    for mode, r in out.items():
        cuda = f"{r['cuda_peak_mb']:.0f}" if r["cuda_peak_mb"] is not None else "-"
        other = f"{r['other_cpu_s']:.1f}" if r["other_cpu_s"] is not None else "-"
        print(
            f"{mode:<12} {r['seconds']:>9.2f} {r['samples_per_s']:>12,.0f} {r['peak_rss_mb']:>12.0f} {cuda:>13} "
            f"{other:>18}"
        )
    ratio = out["batched"]["samples_per_s"] / out["sequential"]["samples_per_s"]
    gap = max(abs(a - b) for a, b in zip(out["batched"]["best_val_macro_f1"], out["sequential"]["best_val_macro_f1"]))
    print()
    print(f"batched / sequential throughput: {ratio:.2f}x")
    print(f"max |best val macro-F1 difference| over the {args.k} configurations: {gap:.2e}")
    print("(samples/s = K x training rows x epochs / wall seconds, validation every epoch included;")
    print(" 'other procs CPU s': CPU seconds other processes took meanwhile - far from 0, the figures")
    print(" are those of a shared machine)")


if __name__ == "__main__":
    main()
