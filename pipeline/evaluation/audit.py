"""The audit: the declared policy applied on validation, and the pick's evidence on test.

Given every candidate's metrics on validation and test, :func:`build_audit` applies the selection
policy (``evaluate.select``: a metric, a view and constraints) on validation only, with P(best)
over validation resamples; gives the pick's test estimate, its optimism and its paired difference
against the reference (plain cross-entropy); groups candidates identical for the policy; ranks
the candidates under each metric and names each metric's winner on validation with why it is
not the pick (Kendall's tau-b between metric rankings). The questions beside the pick (tail and
head trade, prior shift, the special loss, loss-metric agreement, warnings) are
:mod:`pipeline.evaluation.evidence`'s.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import numpy as np
from scipy.stats import kendalltau, rankdata

from pipeline.config import Constraint
from pipeline.decision.metrics import (
    COST_METRIC,
    HEADLINE,
    Resamples,
    lower_is_better,
)
from pipeline.evaluation.evidence import paired_difference, verdict
from pipeline.decision.selection import (
    Pick,
    Policy,
    check_policy,
    flat_values,
    p_best,
    resampled_values,
    select,
)

if TYPE_CHECKING:
    from pipeline.artifacts import Audit, ModelRecord
    from pipeline.config import EvaluateConfig


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


def audit_metric_names(rarest: str, view_key: str, *, costs: bool = False) -> list[str]:
    """The leaderboard's columns: headline metrics (and ``expected_cost`` with costs), the rarest
    class, and the reweighted view's accuracy and macro-F1 (where accuracy parts ways with the
    others). Each number once: micro-F1 equals accuracy (one label per row), and under a uniform
    prior the reweighted accuracy equals balanced accuracy."""
    view = [
        f"{view_key}/{m}" for m in ("accuracy", "macro_f1") if not (view_key == "uniform_prior" and m == "accuracy")
    ]
    return [
        *(m for m in HEADLINE if m != "micro_f1"),
        *((COST_METRIC,) if costs else ()),
        f"recall/{rarest}",
        f"precision/{rarest}",
        *view,
    ]


# Metrics shown beside the picks, never as rival picks: they judge probabilities, not choices.
NOT_CRITERIA = ("log_loss", "ece")


# --- the audit: selection on validation, the estimate on test ----------------------------------


def group_identical(records: list[ModelRecord], by_probabilities: bool) -> dict[str, list[str]]:
    """``representative -> members``: candidates identical for the policy on validation (the
    same decisions, or the same probabilities when the policy reads them), represented by the
    member with the fewest fitted parameters (then the first name)."""
    groups: dict[bytes, list[ModelRecord]] = {}
    for r in records:
        key = r.val.proba.round(12).tobytes() if by_probabilities else r.val.y_pred.tobytes()
        groups.setdefault(key, []).append(r)
    out = {}
    for members in groups.values():
        members = sorted(members, key=lambda r: (r.fitted_parameters, r.name))
        out[members[0].name] = [m.name for m in members]
    return out


def _reference(records: list[ModelRecord], reference_loss: str) -> str | None:
    return next((r.name for r in records if r.loss == reference_loss and r.rule is None), None)


def build_audit(
    records: list[ModelRecord],
    metrics: dict[str, dict],
    *,
    policy: Policy,
    cfg: EvaluateConfig,
    classes: list[str],
    train_counts: list[int],
    reference_loss: str,
    cost: np.ndarray | None,
    val_indices: Resamples,
    test_indices: Resamples,
    deploy_prior: np.ndarray | None = None,
) -> Audit:
    """Everything in ``reports/audit.json``. The pick, P(best), every decision rule and the prior
    shift read the validation split only; the test split gives each candidate's estimate, the
    pick's difference against the reference and the warning example of test-set selection.

    Raises a one-line error if the policy names an unknown metric or class; no candidate meeting
    the constraints is a valid outcome (``pick`` None)."""
    by_name = {r.name: r for r in records}
    view = policy.view
    rarest = rarest_class(train_counts, classes)
    names = audit_metric_names(rarest, view.key, costs=cost is not None)
    held_names = {k for k, v in metrics[records[0].name]["val"].items() if not isinstance(v, dict)}
    check_policy(policy, held_names, classes)
    primary, scoped = policy.primary, policy.scoped
    val_values = flat_values({n: m["val"] for n, m in metrics.items()}, view.key)
    test_values = flat_values(metrics, view.key)  # "val" is a block of its own, not a value
    size = {r.name: r.fitted_parameters for r in records}
    groups = group_identical(records, policy.reads_probabilities)
    reps = list(groups)
    sel = select({r: val_values[r] for r in reps}, primary, scoped, size)
    test_sel = select({r: test_values[r] for r in reps}, primary, scoped, size)
    pick = sel.pick
    reference = _reference(records, reference_loss)
    y_val, y_test = records[0].val.y_true, records[0].test.y_true
    w_val, w_test = policy.weights(y_val), policy.weights(y_test)

    def resampled(name: str, split: str, metric_names: list[str]) -> dict[str, np.ndarray]:
        r = by_name[name]
        preds, y, idx, w = (
            (r.val, y_val, val_indices, w_val) if split == "val" else (r.test, y_test, test_indices, w_test)
        )
        got = resampled_values(
            metric_names,
            y,
            preds.y_pred,
            preds.proba,
            classes,
            indices=idx,
            sample_weight=w,
            cost=cost,
            ece_bins=cfg.ece_bins,
        )
        return {policy.read(k): v for k, v in got.items()}

    chance = p_best({r: resampled(r, "val", policy.names) for r in reps}, primary, scoped, size)
    level = cfg.bootstrap.level

    def versus(a: str, b: str, metric: str = policy.metric) -> dict:
        ra, rb = resampled(a, "test", [metric]), resampled(b, "test", [metric])
        key = policy.read(metric)
        d = paired_difference(ra[key], rb[key], test_values[a][key], test_values[b][key], level)
        return {
            **d,
            "metric": key,
            "words": verdict(
                d,
                higher_is_better=not lower_is_better(metric),
                against=f"{b}" if b != reference else "plain cross-entropy",
            ),
        }

    def simpler(a: str, b: str) -> dict:
        """``a`` against the simpler ``b`` on validation, where the choice was made (paired)."""
        metric = policy.metric
        ra, rb = resampled(a, "val", [metric]), resampled(b, "val", [metric])
        d = paired_difference(ra[primary], rb[primary], val_values[a][primary], val_values[b][primary], level)
        return {
            **d,
            "model": b,
            "metric": primary,
            "words": verdict(d, higher_is_better=not lower_is_better(metric), against=b),
        }

    baselines = [r.name for r in records if r.kind == "baseline" and r.rule is None and r.name in reps]
    best_baseline = (min if policy.lower_is_better else max)(
        baselines, key=lambda m: val_values[m][primary], default=None
    )
    tied = [r for r in reps if pick and r != pick and val_values[r][primary] == val_values[pick][primary]]

    leaderboard = []
    val_ranks = ranks({r: val_values[r] for r in reps}, names)
    for r in sel.order:
        rec = by_name[r]
        ci = _interval(metrics[r], primary, view.key)
        leaderboard.append(
            {
                "model": r,
                "base_model": rec.model,
                "rule": rec.rule,
                "kind": rec.kind,
                "loss": rec.loss,
                "members": groups[r],
                "parameters": size[r],
                "p_best": chance.get(r, 0.0),
                "validation": val_values[r][primary],
                "test": test_values[r][primary],
                "test_low": ci[0],
                "test_high": ci[1],
                "gap": val_values[r][primary] - test_values[r][primary],
                "violations": sel.violations.get(r, []),
                "values": {k: test_values[r][k] for k in names},
                "val_values": {k: val_values[r][k] for k in names},
                "ranks": val_ranks[r],
            }
        )

    informative_reps = [r for r in reps if len(np.unique(by_name[r].val.y_pred)) > 1]
    criteria = [n for n in names if n.split("/")[-1] not in NOT_CRITERIA]
    win = winners({r: val_values[r] for r in informative_reps}, criteria, pick)
    disagreements = [
        {"metric": k, "winner": w, "reason": _reason(k, w, pick, primary, val_values, sel.violations)}
        for k, w in win.items()
        if w != pick
    ]
    beside = {
        n: {
            "pick": val_values[pick][n] if pick else None,
            "best": min(val_values[r][n] for r in informative_reps),
            "best_model": min(informative_reps, key=lambda r: val_values[r][n]),
        }
        for n in NOT_CRITERIA
        if n in val_values[reps[0]]
    }
    with warnings.catch_warnings():  # constant rankings give an undefined tau, reported as None
        warnings.simplefilter("ignore")
        tau = rank_agreement({r: val_values[r] for r in reps}, names)

    audit: Audit = {
        "views": {
            "held_out": "as held out",
            "reweighted": {"key": view.key, "description": view.description, "prior": dict(zip(classes, view.prior))},
        },
        "rarest_class": rarest,
        "metrics": names,
        "reference": {
            "loss": reference_loss,
            "model": reference,
            "why": "plain cross-entropy"
            if reference_loss == "ce"
            else "the first loss in train.losses (ce is not trained)",
        },
        "policy": {
            "metric": policy.metric,
            "view": policy.setting,
            "split": "val",
            "constraints": [str(c) for c in scoped],
            "pick": pick,
            "eligible": sel.eligible,
            "violations": sel.violations,
            # no pick: the candidate violating the fewest constraints (the registry's challenger)
            "closest": None if pick else min(sel.violations, key=lambda m: len(sel.violations[m]), default=None),
            "summary": _policy_summary(primary, scoped, sel, val_values),
            "p_best": chance.get(pick, 0.0) if pick else None,
            "tie_break": policy.tie_break,
            # distinct candidates with the pick's very validation score: the tie-break chose among them
            "tied": tied,
            "bootstrap": {"resamples": len(val_indices), "seed": cfg.bootstrap.seed, "level": level},
        },
        "estimate": _estimate(pick, metrics, primary, view.key, val_values, test_values) if pick else None,
        "test_selection": {
            "pick": test_sel.pick,
            "note": "what ranking by the test split would have picked: shown as a "
            "warning example of the winner's curse, never used",
            "its_test": test_values[test_sel.pick][primary] if test_sel.pick else None,
            "its_validation": val_values[test_sel.pick][primary] if test_sel.pick else None,
        },
        "vs_reference": versus(pick, reference) if pick and reference and pick != reference else None,
        # the pick against plain cross-entropy and the best plain baseline, on validation
        "vs_simpler": [
            simpler(pick, m)
            for m in dict.fromkeys([reference, best_baseline])
            if pick and m and m != pick and m not in groups.get(pick, [])
        ],
        "winners": win,
        "disagreements": disagreements,
        "beside": beside,
        "leaderboard": leaderboard,
        "groups": {r: m for r, m in groups.items() if len(m) > 1},
        "kendall_tau": tau,
    }
    return audit


def _interval(entry: dict, primary: str, view_key: str) -> tuple[float | None, float | None]:
    """The bootstrap interval of ``primary`` on test from a metrics.json entry (None if none)."""
    part, name = (entry[view_key], primary.split("/", 1)[1]) if primary.startswith(f"{view_key}/") else (entry, primary)
    ci = part.get("ci", {}).get(name)
    return (ci["low"], ci["high"]) if ci else (None, None)


def _estimate(pick: str, metrics: dict, primary: str, view_key: str, val_values: dict, test_values: dict) -> dict:
    lo, hi = _interval(metrics[pick], primary, view_key)
    return {
        "metric": primary,
        "test": test_values[pick][primary],
        "low": lo,
        "high": hi,
        "validation": val_values[pick][primary],
        "optimism": val_values[pick][primary] - test_values[pick][primary],
    }


def winners(values: dict[str, dict[str, float]], metric_names: list[str], prefer: str | None) -> dict[str, str]:
    """Each metric's best candidate; ties go to ``prefer`` if among the best, else the first."""
    out = {}
    for name in metric_names:
        best = (min if lower_is_better(name) else max)(values[m][name] for m in values)
        tied = [m for m in values if values[m][name] == best]
        out[name] = prefer if prefer in tied else tied[0]
    return out


def _reason(metric: str, winner: str, pick: str | None, primary: str, values: dict, violations: dict) -> str:
    if violations.get(winner):
        return f"{winner} fails {'; '.join(violations[winner])}"
    if pick is None:
        return "no candidate meets the constraints"
    return (
        f"{winner} is best on {metric} ({values[winner][metric]:.4f} vs {values[pick][metric]:.4f}) "
        f"but the policy ranks by {primary}, where {pick} scores {values[pick][primary]:.4f} "
        f"and {winner} {values[winner][primary]:.4f}"
    )


def _policy_summary(primary: str, constraints: list[Constraint], sel: Pick, values: dict) -> str:
    where = " subject to " + ", ".join(map(str, constraints)) if constraints else ""
    rule = f"best {primary} on validation{where}"
    if sel.pick is None:
        closest = min(sel.violations, key=lambda m: len(sel.violations[m]))  # as "closest" above
        return (
            f"{rule}: no candidate meets the constraints; {closest} fails the fewest "
            f"({'; '.join(sel.violations[closest])})"
        )
    return f"{rule}: {sel.pick} ({values[sel.pick][primary]:.4f} on validation)"
