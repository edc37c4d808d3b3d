"""Print the headline metrics of every model from ``reports/metrics.json`` as a table."""

from __future__ import annotations

import argparse

from pipeline.io import read_json
from pipeline.metrics import HEADLINE
from stages._cli import run


def table(metrics: dict[str, dict[str, float]]) -> str:
    """Models as rows; headline metrics plus the worst per-class recall as columns."""
    cols = [*HEADLINE, "min_recall"]
    width = max(len("model"), *(len(m) for m in metrics))
    widths = [max(len(c), 8) for c in cols]
    lines = [f"{'model':<{width}}" + "".join(f"  {c:>{w}}" for c, w in zip(cols, widths))]
    for name, m in metrics.items():
        recalls = [v for k, v in m.items() if k.startswith("recall/")]
        values = [m.get(c, float("nan")) for c in HEADLINE] + [min(recalls) if recalls else float("nan")]
        lines.append(f"{name:<{width}}" + "".join(f"  {v:>{w}.4f}" for v, w in zip(values, widths)))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--metrics", default="reports/metrics.json")
    args = ap.parse_args(argv)
    print(table(read_json(args.metrics, what="metrics")))


if __name__ == "__main__":
    run(main)
