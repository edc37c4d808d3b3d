"""The metric-choice audit: how the choice of metric changes which model wins.

Given every model's metrics, it ranks the models under each metric, names each metric's winner,
measures how far metrics agree on the ranking (Kendall's tau-b), and applies the declared
selection policy (``evaluate.select``: a primary metric, a view, and constraints), stating for
every metric whose winner differs from the policy's pick why it differs.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.stats import kendalltau, rankdata

from pipeline import PipelineError
from pipeline.config import Constraint, EvaluateConfig, SelectConfig, parse_constraint
from pipeline.metrics import (
    HEADLINE,
    PER_CLASS,
    SUMMARY,
    bootstrap_distribution,
    confusion_matrix,
    count_metrics,
    lower_is_better,
    percentile_interval,
)
from pipeline.plan import model_name

if TYPE_CHECKING:
    from pipeline.artifacts import Audit
    from pipeline.evaluation import View


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


def _policy_names(select: SelectConfig) -> list[tuple[str, str]]:
    """``(metric name, params key)`` of the policy's metric and of every constraint's."""
    return [(select.metric, "evaluate.select.metric"),
            *((parse_constraint(c).metric, "evaluate.select.constraints") for c in select.constraints)]


def _unknown_metric(name: str, key: str, summary: Iterable[str] = SUMMARY) -> PipelineError:
    return PipelineError(
        f"params.yaml: {key} names unknown metric {name!r}; use one of {', '.join(sorted(summary))}, "
        f"or <{'|'.join(p for p in PER_CLASS if p != 'support')}>/<class>"
    )


def check_policy_metrics(select: SelectConfig) -> None:
    """The policy's metric names, before the classes are known: a summary metric, or a per-class
    one with a class part (:func:`check_policy` checks the class once the data is read)."""
    for name, key in _policy_names(select):
        base, slash, cls = name.partition("/")
        if not (name in SUMMARY if not slash else base in PER_CLASS and cls):
            raise _unknown_metric(name, key)


def check_policy(select: SelectConfig, metric_names: set[str], classes: list[str]) -> list[Constraint]:
    """Constraints of ``select``, with every metric name checked against what was computed."""
    for name, key in _policy_names(select):
        if name in metric_names:
            continue
        base, _, cls = name.partition("/")
        if cls and f"{base}/{classes[0]}" in metric_names:
            raise PipelineError(
                f"params.yaml: {key} names class {cls!r} in {name!r}; classes are: {', '.join(classes)}"
            )
        raise _unknown_metric(name, key, (n for n in metric_names if "/" not in n))
    return [parse_constraint(c) for c in select.constraints]


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


def rarest_class(train_counts: list[int], classes: list[str]) -> str:
    """The class with the fewest training samples (the first such on ties)."""
    return classes[int(np.argmin(train_counts))]


def audit_metric_names(rarest: str, view_key: str) -> list[str]:
    """The leaderboard's columns: headline metrics, the rarest class, and the reweighted view's
    accuracy and F1s (where accuracy parts ways with the others)."""
    return [*HEADLINE, f"recall/{rarest}", f"precision/{rarest}",
            f"{view_key}/accuracy", f"{view_key}/micro_f1", f"{view_key}/macro_f1"]


def tail_trade(
    y_true: np.ndarray,
    predictions: dict[str, np.ndarray],
    classes: list[str],
    train_counts: list[int],
    *,
    reference: str,
    models: list[str],
    indices: np.ndarray,
    level: float,
) -> dict:
    """Change in mean recall and precision over the tail classes, each model against ``reference``.

    Tail classes have a training count below the median (the rarest class if none has). The
    intervals are paired bootstrap intervals of the difference (the same resamples for both
    models); a change counts as a gain or a loss only when its interval excludes zero.
    """
    counts = np.asarray(train_counts)
    tail = [i for i, n in enumerate(counts) if n < np.median(counts)] or [int(np.argmin(counts))]

    def tail_means(name):
        point = count_metrics(confusion_matrix(y_true, predictions[name], len(classes)))
        boot = bootstrap_distribution(y_true, predictions[name], len(classes), indices=indices)
        return {k: (point[k][tail].mean(), boot[k][:, tail].mean(axis=1)) for k in ("recall", "precision")}

    def word(lo, hi, what):
        if lo > 0:
            return f"gains {what}"
        if hi < 0:
            return f"loses {what}"
        return f"no clear change in {what}"

    ref = tail_means(reference)
    out = {"reference": reference, "tail_classes": [classes[i] for i in tail], "level": level, "models": {}}
    for m in models:
        cur = tail_means(m)
        entry = {}
        for k in ("recall", "precision"):
            lo, hi = percentile_interval(cur[k][1] - ref[k][1], level)
            entry[f"tail_{k}_change"] = {"value": float(cur[k][0] - ref[k][0]), "low": lo, "high": hi}
        entry["verdict"] = (
            word(entry["tail_recall_change"]["low"], entry["tail_recall_change"]["high"], "tail recall") + ", "
            + word(entry["tail_precision_change"]["low"], entry["tail_precision_change"]["high"], "tail precision")
        )
        out["models"][m] = entry
    return out


def build_audit(
    metrics: dict[str, dict],
    *,
    view: View,
    cfg: EvaluateConfig,
    classes: list[str],
    train_counts: list[int],
    models: list[dict],
    y_true: np.ndarray,
    predictions: dict[str, np.ndarray],
    indices: np.ndarray,
) -> Audit:
    """Everything in ``reports/audit.json``. Raises a one-line error if the policy names an
    unknown metric or class; no model meeting the constraints is a valid outcome (``pick`` None)."""
    rarest = rarest_class(train_counts, classes)
    names = audit_metric_names(rarest, view.key)
    values = flat_values(metrics, view.key)
    held_names = {k for k in next(iter(metrics.values())) if not isinstance(next(iter(metrics.values()))[k], dict)}
    constraints = check_policy(cfg.select, held_names, classes)
    prefix = "" if cfg.select.view == "held_out" else f"{view.key}/"
    primary = prefix + cfg.select.metric
    scoped = [Constraint(prefix + c.metric, c.op, c.bound) for c in constraints]
    with warnings.catch_warnings():  # constant rankings give an undefined tau, reported as None
        warnings.simplefilter("ignore")
        tau = rank_agreement(values, names)
    outcome, win = apply_policy(values, primary, scoped, names)
    order = list(metrics)
    if outcome.pick is not None:
        rank_primary = ranks(values, [primary])
        order.sort(key=lambda m: (m in outcome.violations, rank_primary[m][primary]))

    groups: dict[str, list[str]] = {}
    for m in models:  # a configuration across its seeds
        groups.setdefault(model_name(m["loss"], m["gamma"], m["seed"], n_seeds=1), []).append(m["name"])
    audit: Audit = {
        "views": {"held_out": "test split as held out",
                  "reweighted": {"key": view.key, "description": view.description,
                                 "prior": dict(zip(classes, view.prior))}},
        "rarest_class": rarest,
        "metrics": names,
        "policy": {
            "metric": cfg.select.metric,
            "view": cfg.select.view,
            "constraints": [str(c) for c in scoped],
            "pick": outcome.pick,
            "eligible": outcome.eligible,
            "violations": outcome.violations,
            "summary": _policy_summary(primary, scoped, outcome, values),
        },
        "winners": win,
        "disagreements": [{"metric": k, "winner": win[k], "reason": r} for k, r in outcome.reasons.items()],
        "leaderboard": [
            {"model": m, "values": {k: values[m][k] for k in names}, "ranks": ranks(values, names)[m]}
            for m in order
        ],
        "kendall_tau": tau,
        "across_seeds": across_seeds(values, groups, names),
    }
    if "majority" in metrics:
        maj_h, maj_r = metrics["majority"], metrics["majority"][view.key]
        audit["accuracy_paradox"] = {
            "model": "majority",
            "accuracy_held_out": maj_h["accuracy"], f"accuracy_{view.key}": maj_r["accuracy"],
            "macro_f1_held_out": maj_h["macro_f1"], f"macro_f1_{view.key}": maj_r["macro_f1"],
            "summary": (
                f"always predicting the most frequent training class scores accuracy "
                f"{maj_r['accuracy']:.3f} with macro-F1 {maj_r['macro_f1']:.3f} on the {view.key} view "
                f"({view.description}), and accuracy {maj_h['accuracy']:.3f} with macro-F1 "
                f"{maj_h['macro_f1']:.3f} as held out"
            ),
        }
    if "ce" in metrics:
        others = [m["name"] for m in models if m["name"] != "ce" and m.get("kind") == "mlp"]
        audit["tail_trade"] = tail_trade(y_true, predictions, classes, train_counts, reference="ce",
                                         models=others, indices=indices, level=cfg.bootstrap.level)
    return audit


def _policy_summary(primary: str, constraints: list[Constraint], outcome, values) -> str:
    where = " subject to " + ", ".join(map(str, constraints)) if constraints else ""
    rule = f"best {primary}{where}"
    if outcome.pick is None:
        closest = min(values, key=lambda m: len(outcome.violations.get(m, [])))
        return (f"{rule}: no model meets the constraints; {closest} fails the fewest "
                f"({'; '.join(outcome.violations[closest])})")
    return f"{rule}: {outcome.pick} ({values[outcome.pick][primary]:.4f})"
