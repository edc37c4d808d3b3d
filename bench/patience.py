"""What a smaller ``train.patience`` would have saved and cost, read from a run's own curves.

    python -m bench.patience --repo DIR [--patience 4 8]

``DIR`` is a checkout whose train stages have run (a ``python -m bench.scale --keep`` clone at
1 000 000 rows, say). Training is deterministic and early stopping only decides when to stop,
so a smaller patience would have followed the same per-epoch curve and stopped on it: for each
model in ``outputs/models/<loss>/training.json`` this replays early stopping on the recorded
monitored score (from the loss's first selectable epoch: ``ldam_drw``'s re-weighted phase) and
prints, per patience, the epochs the model would have run and the one it would have kept, and
the validation macro-F1 (from the recorded validation class counts) at the kept epoch
against the run's own. A stage trains its models as one stack, so its time follows its longest
model: the per-loss lines give the stack's epochs. A benchmark: it asserts nothing, trains
nothing, and reads only the patience the run used or a smaller one (a larger patience would need
epochs that were never run).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


from pipeline.decision.metrics import class_count_metrics
from pipeline.training.train import EarlyStopping


def macro_f1(counts: dict) -> float:
    return float(class_count_metrics(**counts)["macro_f1"])


def replay(scores: list[float], patience: int, select_from: int) -> tuple[int, int]:
    """``(epochs run, kept epoch)`` of :class:`pipeline.training.train.EarlyStopping` on ``scores``
    (higher is better, epoch 1 first)."""
    stopper = EarlyStopping(patience, select_from)
    for epoch, score in enumerate(scores, start=1):
        stopper.step(epoch, score)
        if stopper.stopped:
            return epoch, stopper.best_epoch
    return len(scores), stopper.best_epoch


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, required=True)
    ap.add_argument("--patience", type=int, nargs="+", default=[4, 8])
    args = ap.parse_args(argv)
    import yaml

    from pipeline.training.criterion import plan_criterion
    from pipeline.io import read_json

    params = yaml.safe_load((args.repo / "params.yaml").read_text())
    used = int(params["train"]["patience"])
    if max(args.patience) > used:
        raise SystemExit(f"--patience must be at most the run's train.patience ({used})")
    print(f"{args.repo}: train.patience {used}\n")
    print(
        "| loss | model | epochs run | kept epoch | val macro-F1 at the kept epoch | "
        + " | ".join(f"patience {p}: run, kept, val macro-F1 (change)" for p in args.patience)
        + " |"
    )
    print("| --- | --- | --- | --- | --- |" + " --- |" * len(args.patience))
    changes = {p: [] for p in args.patience}
    epochs = {p: 0 for p in [used, *args.patience]}
    for loss in params["train"]["losses"]:
        summary = json.loads((args.repo / "outputs/models" / loss / "training.json").read_text())
        stack = {p: 0 for p in [used, *args.patience]}
        # the first epoch early stopping may keep (ldam_drw: its re-weighted phase), as the train stage has it
        select_from = plan_criterion(read_json(args.repo / "outputs/plans" / f"{loss}.json")).final_phase_epoch
        for name, run in summary["runs"].items():
            history = run["history"]
            sign = 1.0 if run["monitor"] == "macro_f1" else -1.0
            scores = [sign * h[f"stop_{run['monitor']}"] for h in history]
            val = [macro_f1(h["val_counts"]) for h in history]
            ran, kept = replay(scores, used, select_from)
            if (ran, kept) != (len(history), run["best_epoch"]):
                raise SystemExit(
                    f"{name}: replaying patience {used} gives {ran} epochs kept {kept}, the run "
                    f"{len(history)} kept {run['best_epoch']}: not this run's curve"
                )
            stack[used] = max(stack[used], ran)
            cells = []
            for p in args.patience:
                r, k = replay(scores, p, select_from)
                stack[p] = max(stack[p], r)
                changes[p].append(val[k - 1] - val[kept - 1])
                cells.append(f"{r}, {k}, {val[k - 1]:.4f} ({val[k - 1] - val[kept - 1]:+.4f})")
            print(f"| {loss} | {name} | {ran} | {kept} | {val[kept - 1]:.4f} | " + " | ".join(cells) + " |")
        for p in stack:
            epochs[p] += stack[p]
    print(
        f"\nepochs of the train stages' stacks, summed over losses: patience {used}: {epochs[used]}; "
        + "; ".join(f"patience {p}: {epochs[p]} ({epochs[p] / epochs[used]:.2f}x)" for p in args.patience)
    )
    for p in args.patience:
        c = changes[p]
        print(
            f"patience {p}: validation macro-F1 at the kept epoch changes by {statistics.mean(c):+.4f} on average "
            f"(from {min(c):+.4f} to {max(c):+.4f}; {sum(x < 0 for x in c)} of {len(c)} models lower)"
        )


if __name__ == "__main__":
    main()
