"""Print the decision from ``reports/audit.json``: the policy's top candidates, validation and
test side by side, and the pick against the reference."""

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


def leaderboard(audit: dict, top: int = 10) -> str:
    """The policy's first ``top`` candidates: validation score (what picked them), test estimate
    with its interval, P(best) and fitted parameters."""
    metric = audit["policy"]["metric"]
    rows = audit["leaderboard"][:top]
    width = max(len("candidate"), *(len(r["model"]) for r in rows))
    lines = [f"{'candidate':<{width}}  {'val ' + metric:>14}  {'test ' + metric:>14}  {'test interval':>17}"
             f"  {'P(best)':>7}  {'parameters':>10}"]
    for r in rows:
        ci = "" if r["test_low"] is None else f"[{r['test_low']:.3f}, {r['test_high']:.3f}]"
        lines.append(f"{r['model']:<{width}}  {r['validation']:>14.4f}  {r['test']:>14.4f}  {ci:>17}"
                     f"  {r['p_best']:>7.2f}  {r['parameters']:>10}")
    lines.append(f"({len(audit['leaderboard'])} distinct candidates; all in reports/audit.json and the report)")
    return "\n".join(lines)


def decision(audit: dict) -> str:
    """The pick in two lines, with the warnings."""
    out = [f"policy: {audit['policy']['summary']}"]
    if audit.get("estimate"):
        est = audit["estimate"]
        ci = "" if est["low"] is None else f" [{est['low']:.4f}, {est['high']:.4f}]"
        out.append(f"pick on test (its unbiased estimate): {est['metric']} {est['test']:.4f}{ci}; "
                   f"P(best) {audit['policy']['p_best']:.2f}")
    vs = audit.get("vs_reference")
    if vs:
        out.append(f"against {audit['reference']['model']} on test: {vs['value']:+.4f} "
                   f"[{vs['low']:+.4f}, {vs['high']:+.4f}]: {vs['words']}")
    out += [f"warning: {w}" for w in audit.get("warnings", [])]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--audit", default="reports/audit.json")
    args = ap.parse_args(argv)
    audit = read_json(args.audit, what="audit")
    print(leaderboard(audit))
    print()
    print(decision(audit))


if __name__ == "__main__":
    run(main)
