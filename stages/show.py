"""Print the decision from ``reports/audit.json``: the policy's top candidates, validation and
test side by side, and the pick against the reference. With ``--experiments``, DVC's experiments
side by side instead (``make compare``: ``dvc exp show --json`` read from a file or stdin)."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

from pipeline.io import read_json
from pipeline.decision.metrics import HEADLINE
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
    lines = [
        f"{'candidate':<{width}}  {'val ' + metric:>14}  {'test ' + metric:>14}  {'test interval':>17}"
        f"  {'P(best)':>7}  {'parameters':>10}"
    ]
    for r in rows:
        ci = "" if r["test_low"] is None else f"[{r['test_low']:.3f}, {r['test_high']:.3f}]"
        lines.append(
            f"{r['model']:<{width}}  {r['validation']:>14.4f}  {r['test']:>14.4f}  {ci:>17}"
            f"  {r['p_best']:>7.2f}  {r['parameters']:>10}"
        )
    lines.append(f"({len(audit['leaderboard'])} distinct candidates; all in reports/audit.json and the report)")
    return "\n".join(lines)


def decision(audit: dict) -> str:
    """The pick in two lines, the weight-strength peak of each alpha family, the warnings."""
    out = [f"policy: {audit['policy']['summary']}"]
    if audit.get("estimate"):
        est = audit["estimate"]
        ci = "" if est["low"] is None else f" [{est['low']:.4f}, {est['high']:.4f}]"
        out.append(
            f"pick on test (its unbiased estimate): {est['metric']} {est['test']:.4f}{ci}; "
            f"P(best) {audit['policy']['p_best']:.2f}"
        )
    vs = audit.get("vs_reference")
    if vs:
        out.append(
            f"against {audit['reference']['model']} on test: {vs['value']:+.4f} "
            f"[{vs['low']:+.4f}, {vs['high']:+.4f}]: {vs['words']}"
        )
    for family, curve in (audit.get("weight_strength") or {}).items():
        peak, flat = curve["peak"], curve["flat_top"]
        out.append(
            f"weight strength ({family}): {curve['metric']} on validation peaks at alpha = {peak['alpha']:g} "
            f"({peak['validation']:.4f})"
            + (", the largest tried" if peak["at_edge"] else "")
            + (
                f"; within noise of it: alpha {flat['low']:g} to {flat['high']:g}"
                if len(flat["alphas"]) > 1
                else "; no other alpha within noise of it"
            )
        )
    out += [f"warning: {w}" for w in audit.get("warnings", [])]
    return "\n".join(out)


PARAMS_WIDTH = 44  # the changed-parameters column wraps here, so the table stays within 200 characters


def _flat(tree: dict, prefix: str = "") -> dict:
    """Nested keys joined with ``.``, as ``dvc exp show`` names parameters."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _files_data(section: dict | None) -> dict:
    """Every file's ``data`` of a revision's ``params`` or ``metrics``, merged and flattened."""
    return {k: v for f in (section or {}).values() for k, v in _flat(f.get("data") or {}).items()}


def _value(value) -> str:
    """A parameter's value as ``dvc exp show`` writes it: ``[0, 0.5, 1]``, ``[ce, focal]``."""
    if isinstance(value, list):
        return "[" + ", ".join(map(_value, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_value(v)}" for k, v in value.items()) + "}"
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def experiment_rows(exps: list[dict]) -> list[dict]:
    """The rows of :func:`experiments`: each baseline commit (and the workspace) of ``dvc exp show
    --json``, then its experiments; ``params`` is what differs from the baseline commit's."""
    commits = [e for e in exps if e.get("rev") != "workspace"]
    rows = []
    for entry in exps:
        base = commits[0] if entry.get("rev") == "workspace" and commits else entry
        base_params = _files_data((base.get("data") or {}).get("params"))
        label = "workspace" if entry.get("rev") == "workspace" else entry.get("name") or entry["rev"][:7]
        members = [(label, entry)] + [
            (f"  {e.get('name') or rev.get('name') or rev['rev'][:7]}", rev)
            for e in entry.get("experiments") or []
            for rev in e.get("revs", [])[:1]
        ]
        for name, rev in members:
            data = rev.get("data") or {}
            params = _files_data(data.get("params"))
            changed = [
                f"{k}={_value(params[k]) if k in params else '-'}"
                for k in sorted(set(params) | set(base_params))
                if data and params.get(k) != base_params.get(k)
            ]
            rows.append(
                {
                    "experiment": name,
                    "params": changed,
                    "summary": _files_data(data.get("metrics")),
                    "failed": bool(rev.get("error")) or not data,
                }
            )
    return rows


def experiments(exps: list[dict]) -> str:
    """Experiments side by side: what each changed, the policy's metric, the pick with its
    validation and test scores (the test interval) and P(best), and the reference's scores."""

    def num(value, digits=4):
        return "-" if not isinstance(value, (int, float)) else f"{value:.{digits}f}"

    header = [
        "experiment",
        "changed params",
        "metric",
        "pick",
        "val",
        "test",
        "test interval",
        "P(best)",
        "reference",
        "ref val",
        "ref test",
    ]
    table = []
    for row in experiment_rows(exps):
        s = row["summary"]
        interval = (
            "-" if s.get("pick_test_low") is None else f"[{num(s['pick_test_low'])}, {num(s.get('pick_test_high'))}]"
        )
        params = textwrap.wrap(
            ", ".join(row["params"]), PARAMS_WIDTH, break_on_hyphens=False, break_long_words=False
        ) or [""]
        table.append(
            [
                row["experiment"],
                params[0],
                s.get("policy_metric", "-"),
                "(failed)" if row["failed"] else s.get("pick", "-"),
                num(s.get("pick_val")),
                num(s.get("pick_test")),
                interval,
                num(s.get("pick_p_best"), 2),
                s.get("ref", "-"),
                num(s.get("ref_val")),
                num(s.get("ref_test")),
            ]
        )
        table += [["", more, *[""] * (len(header) - 2)] for more in params[1:]]
    widths = [max(len(str(r[i])) for r in [header, *table]) for i in range(len(header))]
    numeric = {"val", "test", "P(best)", "ref val", "ref test"}
    lines = [
        "  ".join(f"{c:>{w}}" if h in numeric else f"{c:<{w}}" for c, w, h in zip(r, widths, header)).rstrip()
        for r in [header, *table]
    ]
    return "\n".join([lines[0], "-" * max(map(len, lines)), *lines[1:]])


def runs_table(url: str, runs: str = "reports/mlflow_runs.json") -> str:
    """Where to open the MLflow UI at ``url``: the candidates on the last evaluation's data, flat,
    best first on the policy's validation metric (or the UI's front page before any evaluation)."""
    table = read_json(runs, what="MLflow run list").get("runs_table", "") if Path(runs).is_file() else ""
    where = f"{url.rstrip('/')}/{table}"
    return (
        f"MLflow UI: open {where}\n(every candidate on this data, best first on the policy's validation metric; "
        "Columns > Metrics shows their scores; Ctrl-C stops the UI)"
        if table
        else f"MLflow UI: open {where} (no evaluation logged yet)"
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--audit", default="reports/audit.json")
    ap.add_argument(
        "--experiments",
        metavar="JSON",
        help="`dvc exp show --json` output to show side by side instead ('-': standard input)",
    )
    ap.add_argument(
        "--runs-table",
        metavar="URL",
        help="print where the MLflow UI at URL lists this run's candidates, from reports/mlflow_runs.json, instead",
    )
    args = ap.parse_args(argv)
    if args.runs_table:
        print(runs_table(args.runs_table))
        return
    if args.experiments:
        text = sys.stdin.read() if args.experiments == "-" else open(args.experiments).read()
        print(experiments(json.loads(text)))
        return
    audit = read_json(args.audit, what="audit")
    print(leaderboard(audit))
    print()
    print(decision(audit))


if __name__ == "__main__":
    run(main)
