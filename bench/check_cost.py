"""What an early-stopping check costs against the training it would interrupt.

    python -m bench.check_cost [--train 540000] [--stop 60000] [--val 200000] [--models 5]

Trains a stack of ``--models`` MLPs (as one loss's sweep does: 32 features, hidden 128 and 64,
10 classes, dropout 0.1, Adam, batch 2048, two threads) on random rows for a while and times it
per row, then times what each check reads: the logits and stopping metrics on the
early-stopping slice (``--stop`` rows) and the validation record (``--val`` rows: logits and
class counts). The defaults are the splits of 1 000 000 synthetic rows. Prints the seconds per
50 000 training rows and per epoch beside one check's. A benchmark: it asserts nothing.
"""

from __future__ import annotations

import argparse
import time

import torch

from pipeline.training.model import MLP, StackedMLP
from pipeline.training.train import class_counts, predict_logits, stopping_values

FEATURES, HIDDEN, CLASSES, BATCH = 32, [128, 64], 10, 2048


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=int, default=540_000, help="training rows (an epoch)")
    ap.add_argument("--stop", type=int, default=60_000, help="early-stopping slice rows")
    ap.add_argument("--val", type=int, default=200_000, help="validation rows")
    ap.add_argument("--models", type=int, default=5, help="configurations in the stack")
    ap.add_argument("--timed-rows", type=int, default=200_000, help="training rows timed")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    torch.manual_seed(0)
    stack = StackedMLP([MLP(FEATURES, HIDDEN, CLASSES, 0.1) for _ in range(args.models)])
    opt = torch.optim.Adam(stack.parameters(), lr=1e-3, fused=True)
    gen = [torch.Generator().manual_seed(0)]
    timed = min(args.timed_rows, args.train)
    X, y = torch.randn(timed, FEATURES), torch.randint(0, CLASSES, (timed,))
    stack.train()
    start = time.perf_counter()
    for i in range(0, timed, BATCH):
        xb, yb = X[i : i + BATCH], y[i : i + BATCH].expand(args.models, -1)
        out = stack(xb, stack.dropout_masks(len(xb), gen))
        loss = torch.nn.functional.cross_entropy(out.reshape(-1, CLASSES), yb.reshape(-1), reduction="none")
        opt.zero_grad(set_to_none=True)
        loss.view(args.models, -1).mean(1).sum().backward()
        opt.step()
    per_row = (time.perf_counter() - start) / timed
    Xs, ys = torch.randn(args.stop, FEATURES), torch.randint(0, CLASSES, (args.stop,))
    Xv, yv = torch.randn(args.val, FEATURES), torch.randint(0, CLASSES, (args.val,))
    start = time.perf_counter()
    stopping_values(predict_logits(stack, Xs), ys, CLASSES)
    stop_s = time.perf_counter() - start
    start = time.perf_counter()
    class_counts(yv, predict_logits(stack, Xv).argmax(-1), CLASSES)
    val_s = time.perf_counter() - start
    print(
        f"{args.models} models, {args.train:,} training rows, {args.stop:,} early-stopping rows, {args.val:,} validation"
    )
    print(f"training: {per_row * 5e4:.2f} s per 50 000 rows, {per_row * args.train:.1f} s per epoch")
    print(f"one check: {stop_s:.2f} s on the early-stopping slice, {val_s:.2f} s for the validation record")
    print(
        f"a check every 50 000 rows adds {(stop_s + val_s) / (per_row * 5e4):.0%} to training; every epoch {(stop_s + val_s) / (per_row * args.train):.0%}"
    )


if __name__ == "__main__":
    main()
