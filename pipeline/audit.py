"""The metric-choice audit: how the choice of metric changes which model wins.

Given every model's metrics, it ranks the models under each metric, names each metric's winner,
measures how far metrics agree on the ranking (Kendall's tau-b), and applies the declared
selection policy (``evaluate.select``: a primary metric, a view, and constraints), stating for
every metric whose winner differs from the policy's pick why it differs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import kendalltau, rankdata

from pipeline import PipelineError
from pipeline.config import Constraint, SelectConfig, parse_constraint
from pipeline.metrics import lower_is_better


def flat_values(metrics: dict[str, dict], view_key: str) -> dict[str, dict[str, float]]:
    """``model -> metric -> value`` with the held-out metrics under their own names and the
    reweighted view's under ``<view_key>/<name>``; intervals are left out."""
    out = {}
    for model, m in metrics.items():
        row = {k: v for k, v in m.items() if isinstance(v, (int, float))}
        row.update({f"{view_key}/{k}": v for k, v in m[view_key].items() if isinstance(v, (int, float))})
        out[model] = row
    return out


def ranks(values: dict[str, dict[str, float]], metric_names: list[str]) -> dict[str, dict[str, int]]:
    """``model -> metric -> rank``; 1 is best, ties share the best rank of their group."""
    models = list(values)
    out: dict[str, dict[str, int]] = {m: {} for m in models}
    for name in metric_names:
        v = np.array([values[m][name] for m in models], dtype=np.float64)
        r = rankdata(v if lower_is_better(name) else -v, method="min")
        for m, rank in zip(models, r):
            out[m][name] = int(rank)
    return out


def winners(
    values: dict[str, dict[str, float]], metric_names: list[str], prefer: str | None = None
) -> dict[str, str]:
    """Each metric's best model; on a tie, ``prefer`` if it is among the best, else the first listed."""
    out = {}
    for name in metric_names:
        best = (min if lower_is_better(name) else max)(values[m][name] for m in values)
        tied = [m for m in values if values[m][name] == best]
        out[name] = prefer if prefer in tied else tied[0]
    return out


def rank_agreement(values: dict[str, dict[str, float]], metric_names: list[str]) -> dict[str, dict[str, float | None]]:
    """Kendall's tau-b between the model rankings of every pair of metrics (None if undefined).

    1 means the two metrics order the models identically, -1 reversed; lower-is-better metrics
    are negated first so that tau compares "better" with "better".
    """
    models = list(values)

    def oriented(name):
        v = np.array([values[m][name] for m in models], dtype=np.float64)
        return -v if lower_is_better(name) else v

    out: dict[str, dict[str, float | None]] = {}
    for a in metric_names:
        out[a] = {}
        for b in metric_names:
            tau = kendalltau(oriented(a), oriented(b)).statistic if len(models) > 1 else float("nan")
            out[a][b] = None if math.isnan(tau) else float(tau)
    return out


@dataclass(frozen=True)
class PolicyOutcome:
    pick: str | None  # None when no model meets the constraints
    eligible: list[str]
    violations: dict[str, list[str]]  # model -> constraints it fails, with its value
    reasons: dict[str, str]  # metric -> why its winner is not the pick


def check_policy(select: SelectConfig, metric_names: set[str], classes: list[str]) -> list[Constraint]:
    """Constraints of ``select``, with every metric name checked against what was computed."""

    def known(name: str, key: str) -> None:
        if name in metric_names:
            return
        base, _, cls = name.partition("/")
        if cls and f"{base}/{classes[0]}" in metric_names:
            raise PipelineError(
                f"params.yaml: {key} names class {cls!r} in {name!r}; classes are: {', '.join(classes)}"
            )
        summary = sorted(n for n in metric_names if "/" not in n)
        raise PipelineError(
            f"params.yaml: {key} names unknown metric {name!r}; use one of {', '.join(summary)}, "
            f"or <precision|recall|specificity|fpr|f1>/<class>"
        )

    known(select.metric, "evaluate.select.metric")
    constraints = [parse_constraint(c) for c in select.constraints]
    for c in constraints:
        known(c.metric, "evaluate.select.constraints")
    return constraints


def apply_policy(
    values: dict[str, dict[str, float]],
    primary: str,
    constraints: list[Constraint],
    metric_names: list[str],
) -> tuple[PolicyOutcome, dict[str, str]]:
    """Pick the best model by ``primary`` among those meeting every constraint.

    Returns the outcome and each of ``metric_names``' winner (ties go to the pick), with the
    reason why every winner other than the pick was not chosen.
    """
    violations = {
        m: [f"{c} (has {v[c.metric]:.4f})" for c in constraints if not c.holds(v[c.metric])]
        for m, v in values.items()
    }
    eligible = [m for m in values if not violations[m]]
    pick = None
    if eligible:
        best = min if lower_is_better(primary) else max
        pick = best(eligible, key=lambda m: values[m][primary])
    metric_winners = winners(values, metric_names, prefer=pick)
    reasons = {}
    for metric, winner in metric_winners.items():
        if winner == pick:
            continue
        if violations[winner]:
            reasons[metric] = f"{winner} fails {'; '.join(violations[winner])}"
        elif pick is None:
            reasons[metric] = "no model meets the constraints"
        else:
            reasons[metric] = (
                f"{winner} is best on {metric} ({values[winner][metric]:.4f} vs {values[pick][metric]:.4f}) "
                f"but the policy ranks by {primary}, where {pick} scores {values[pick][primary]:.4f} "
                f"and {winner} {values[winner][primary]:.4f}"
            )
    outcome = PolicyOutcome(pick, eligible, {m: v for m, v in violations.items() if v}, reasons)
    return outcome, metric_winners


def across_seeds(metrics: dict[str, dict[str, float]], groups: dict[str, list[str]], metric_names: list[str]) -> dict:
    """``group -> metric -> {mean, std, n}`` over the seeds of each configuration (std: ddof=1)."""
    out = {}
    for group, members in groups.items():
        if len(members) < 2:
            continue
        out[group] = {}
        for name in metric_names:
            v = np.array([metrics[m][name] for m in members], dtype=np.float64)
            out[group][name] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)), "n": len(v)}
    return out
