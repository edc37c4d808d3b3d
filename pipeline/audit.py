"""The audit: the declared policy applied on validation, and what an auditor asks of the pick.

Given every candidate's metrics on validation and test, it applies the selection policy
(``evaluate.select``: a metric, a view and constraints) on validation only, with P(best) over
validation resamples; gives the pick's test estimate, its optimism and its paired difference
against the reference (plain cross-entropy); ranks the candidates under each metric and names
each metric's winner on validation with why it is not the pick (Kendall's tau-b between metric
rankings); and answers the questions beside the pick: the tail/head trade against the
reference, the pick under shifted class priors, whether a special loss was needed at all, and
whether each loss agrees with the metric epoch by epoch.
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
from pipeline.config import Constraint, SelectConfig, parse_constraint
from pipeline.metrics import (
    COST_METRIC,
    HEADLINE,
    PER_CLASS,
    SUMMARY,
    bootstrap_distribution,
    confusion_matrix,
    count_metrics,
    lower_is_better,
    percentile_interval,
)
from pipeline.selection import (
    Pick,
    View,
    kish_ess,
    metric_value,
    p_best,
    prior_family,
    reads_probabilities,
    resampled_values,
    select,
    shifted_weights,
)

if TYPE_CHECKING:
    from pipeline.artifacts import Audit, ModelRecord
    from pipeline.config import EvaluateConfig


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


def _policy_names(select: SelectConfig) -> list[tuple[str, str]]:
    """``(metric name, params key)`` of the policy's metric and of every constraint's."""
    return [(select.metric, "evaluate.select.metric"),
            *((parse_constraint(c).metric, "evaluate.select.constraints") for c in select.constraints)]


def _unknown_metric(name: str, key: str, summary: Iterable[str] = SUMMARY) -> PipelineError:
    return PipelineError(
        f"params.yaml: {key} names unknown metric {name!r}; use one of {', '.join(sorted(summary))}, "
        f"or <{'|'.join(p for p in PER_CLASS if p != 'support')}>/<class>"
    )


def check_policy_metrics(select: SelectConfig, *, costs: bool = False) -> None:
    """The policy's metric names, before the classes are known: a summary metric (``expected_cost``
    only with ``evaluate.costs``), or a per-class one with a class part (:func:`check_policy`
    checks the class once the data is read)."""
    summary = (*SUMMARY, COST_METRIC) if costs else SUMMARY
    for name, key in _policy_names(select):
        base, slash, cls = name.partition("/")
        if name == COST_METRIC and not costs:
            raise PipelineError(f"params.yaml: {key} names {COST_METRIC}, which needs evaluate.costs "
                                "(the cost of each decision by class); set it or choose another metric")
        if not (name in summary if not slash else base in PER_CLASS and cls):
            raise _unknown_metric(name, key, summary)


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
    class, and the reweighted view's accuracy and F1s (where accuracy parts ways with the others).
    Under a uniform prior the reweighted accuracy equals balanced accuracy: shown once."""
    view = [f"{view_key}/{m}" for m in ("accuracy", "micro_f1", "macro_f1")
            if not (view_key == "uniform_prior" and m in ("accuracy", "micro_f1"))]
    return [*HEADLINE, *((COST_METRIC,) if costs else ()), f"recall/{rarest}", f"precision/{rarest}", *view]


# Metrics shown beside the picks, never as rival picks: they judge probabilities, not choices.
NOT_CRITERIA = ("log_loss", "ece")


def paired_difference(a: dict[str, np.ndarray], b: dict[str, np.ndarray], point_a: float, point_b: float,
                      level: float) -> dict[str, float]:
    """``a - b`` with the percentile interval of its paired bootstrap distribution (the same
    resamples for both: ``a`` and ``b`` are (B,) arrays of one metric). NaN resamples (an
    undefined value) are left out."""
    diff = np.asarray(a, float) - np.asarray(b, float)
    diff = diff[np.isfinite(diff)]
    if not len(diff):
        return {"value": float(point_a - point_b), "low": None, "high": None}
    lo, hi = percentile_interval(diff, level)
    return {"value": float(point_a - point_b), "low": lo, "high": hi}


def verdict(diff: dict, *, higher_is_better: bool, against: str) -> str:
    """``better than <against> beyond noise``, ``worse than ...`` or ``not distinguishable from
    it`` from a paired interval."""
    lo, hi = diff["low"], diff["high"]
    if lo is None:
        return "undefined"
    if (lo > 0) if higher_is_better else (hi < 0):
        return f"better than {against} beyond noise"
    if (hi < 0) if higher_is_better else (lo > 0):
        return f"worse than {against} beyond noise"
    return f"not distinguishable from {against}"


def class_means(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, members: list[int], *,
                indices: np.ndarray) -> dict[str, tuple[float, np.ndarray]]:
    """Mean recall and precision over ``members`` (class indices): the point value and (B,)
    resampled values. A class the model never predicts has no precision (not 0): it is left out
    of the precision mean, which is NaN when no member is ever predicted."""
    cm = confusion_matrix(y_true, y_pred, n_classes)
    point = count_metrics(cm)
    boot = bootstrap_distribution(y_true, y_pred, n_classes, indices=indices)
    predicted = cm.sum(0)[members] > 0  # (M,)
    boot_pred = _predicted_counts(y_pred, n_classes, indices)[:, members] > 0  # (B, M)

    def mean_defined(values, defined):
        with warnings.catch_warnings():  # no member predicted: NaN, said as "undefined"
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(np.where(defined, values, np.nan), axis=-1)

    return {
        "recall": (float(point["recall"][members].mean()), boot["recall"][:, members].mean(1)),
        "precision": (float(mean_defined(point["precision"][members], predicted)),
                      mean_defined(boot["precision"][:, members], boot_pred)),
        "undefined_precision": [int(m) for m, p in zip(members, predicted) if not p],
    }


def _predicted_counts(y_pred: np.ndarray, n_classes: int, indices: np.ndarray) -> np.ndarray:
    """(B, C) how often each class is predicted in each resample."""
    out = np.empty((len(indices), n_classes))
    for start in range(0, len(indices), 256):
        chunk = y_pred[indices[start:start + 256]]  # (b, N)
        offset = (np.arange(len(chunk)) * n_classes)[:, None]
        out[start:start + len(chunk)] = np.bincount((chunk + offset).ravel(),
                                                    minlength=len(chunk) * n_classes).reshape(-1, n_classes)
    return out


def tail_trade(y_true: np.ndarray, predictions: dict[str, np.ndarray], classes: list[str],
               train_counts: list[int], *, reference: str, models: list[str], indices: np.ndarray,
               level: float) -> dict:
    """What each model gains on the tail classes and what it pays on the head, against ``reference``.

    Tail classes have a training count below the median (the rarest class if none has), head
    classes the others. For each: the change in mean recall and mean precision (precision over
    the classes both models predict at all: a class never predicted has no precision, and a
    model that starts predicting it gains nothing measurable there), and the change in accuracy;
    each with a paired bootstrap interval (the same resamples for both models). A change is a
    gain or a loss only when its interval excludes zero.
    """
    counts = np.asarray(train_counts)
    tail = [i for i, n in enumerate(counts) if n < np.median(counts)] or [int(np.argmin(counts))]
    head = [i for i in range(len(classes)) if i not in tail]
    k = len(classes)

    def parts(name):
        out = {"tail": class_means(y_true, predictions[name], k, tail, indices=indices)}
        if head:
            out["head"] = class_means(y_true, predictions[name], k, head, indices=indices)
        hit = (predictions[name] == y_true).astype(float)
        out["accuracy"] = (float(hit.mean()), hit[indices].mean(1))
        return out

    ref = parts(reference)
    out = {"reference": reference, "tail_classes": [classes[i] for i in tail],
           "head_classes": [classes[i] for i in head], "level": level,
           "reference_undefined_precision": [classes[i] for i in ref["tail"]["undefined_precision"]],
           "models": {}}
    for m in models:
        cur = parts(m)
        entry: dict = {}
        for side in ("tail", "head"):
            if side not in cur:
                continue
            for what in ("recall", "precision"):
                (pa, ba), (pb, bb) = cur[side][what], ref[side][what]
                entry[f"{side}_{what}_change"] = (
                    paired_difference(ba, bb, pa, pb, level) if np.isfinite(pa) and np.isfinite(pb)
                    else {"value": None, "low": None, "high": None})
        entry["accuracy_change"] = paired_difference(cur["accuracy"][1], ref["accuracy"][1],
                                                     cur["accuracy"][0], ref["accuracy"][0], level)
        entry["undefined_precision"] = [classes[i] for i in cur["tail"]["undefined_precision"]]
        entry["verdict"] = _trade_words(entry)
        out["models"][m] = entry
    return out


def _trade_words(entry: dict) -> str:
    def word(d, what):
        if d["low"] is None:
            return f"{what} undefined (a class is never predicted)"
        if d["low"] > 0:
            return f"gains {what}"
        if d["high"] < 0:
            return f"loses {what}"
        return f"no clear change in {what}"

    words = [word(entry["tail_recall_change"], "tail recall"), word(entry["tail_precision_change"], "tail precision")]
    if "head_recall_change" in entry:
        words.append(word(entry["head_recall_change"], "head recall"))
    words.append(word(entry["accuracy_change"], "accuracy"))
    return ", ".join(words)


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


def _scoped(cfg: EvaluateConfig, view: View, name: str) -> str:
    return name if cfg.select.view == "held_out" else f"{view.key}/{name}"


def build_audit(records: list[ModelRecord], metrics: dict[str, dict], *, view: View, cfg: EvaluateConfig,
                classes: list[str], train_counts: list[int], reference_loss: str, cost: np.ndarray | None,
                val_indices: np.ndarray, test_indices: np.ndarray,
                deploy_prior: np.ndarray | None = None) -> Audit:
    """Everything in ``reports/audit.json``. The pick, P(best), every decision rule and the prior
    shift read the validation split only; the test split gives each candidate's estimate, the
    pick's difference against the reference and the warning example of test-set selection.

    Raises a one-line error if the policy names an unknown metric or class; no candidate meeting
    the constraints is a valid outcome (``pick`` None)."""
    by_name = {r.name: r for r in records}
    rarest = rarest_class(train_counts, classes)
    names = audit_metric_names(rarest, view.key, costs=cost is not None)
    held_names = {k for k, v in metrics[records[0].name]["val"].items() if not isinstance(v, dict)}
    constraints = check_policy(cfg.select, held_names, classes)
    primary = _scoped(cfg, view, cfg.select.metric)
    scoped = [Constraint(_scoped(cfg, view, c.metric), c.op, c.bound) for c in constraints]
    val_values = flat_values({n: m["val"] for n, m in metrics.items()}, view.key)
    test_values = flat_values({n: {k: v for k, v in m.items() if k != "val"} for n, m in metrics.items()}, view.key)
    size = {r.name: r.fitted_parameters for r in records}
    by_proba = any(reads_probabilities(n) for n in [cfg.select.metric, *(c.metric for c in constraints)])
    groups = group_identical(records, by_proba)
    reps = list(groups)
    sel = select({r: val_values[r] for r in reps}, primary, scoped, size)
    test_sel = select({r: test_values[r] for r in reps}, primary, scoped, size)
    pick = sel.pick
    reference = _reference(records, reference_loss)
    y_val, y_test = records[0].val.y_true, records[0].test.y_true
    w_val = shifted_weights(y_val, view.prior) if cfg.select.view == "reweighted" else None
    w_test = shifted_weights(y_test, view.prior) if cfg.select.view == "reweighted" else None
    policy_names = list(dict.fromkeys([cfg.select.metric, *(c.metric for c in constraints)]))

    def resampled(name: str, split: str, metric_names: list[str]) -> dict[str, np.ndarray]:
        r = by_name[name]
        preds, y, idx, w = (r.val, y_val, val_indices, w_val) if split == "val" else (r.test, y_test, test_indices, w_test)
        got = resampled_values(metric_names, y, preds.y_pred, preds.proba, classes, indices=idx, sample_weight=w,
                               cost=cost, ece_bins=cfg.ece_bins)
        return {_scoped(cfg, view, k): v for k, v in got.items()}

    chance = p_best({r: resampled(r, "val", policy_names) for r in reps}, primary, scoped, size)
    level = cfg.bootstrap.level
    higher = not lower_is_better(cfg.select.metric)

    def versus(a: str, b: str, metric: str = cfg.select.metric) -> dict:
        ra, rb = resampled(a, "test", [metric]), resampled(b, "test", [metric])
        key = _scoped(cfg, view, metric)
        d = paired_difference(ra[key], rb[key], test_values[a][key], test_values[b][key], level)
        return {**d, "metric": key, "words": verdict(d, higher_is_better=not lower_is_better(metric),
                                                    against=f"{b}" if b != reference else "plain cross-entropy")}

    leaderboard = []
    val_ranks = ranks({r: val_values[r] for r in reps}, names)
    for r in sel.order:
        rec = by_name[r]
        ci = _interval(metrics[r], primary, view.key)
        leaderboard.append({
            "model": r, "base_model": rec.model, "rule": rec.rule, "kind": rec.kind, "loss": rec.loss,
            "members": groups[r], "parameters": size[r], "p_best": chance.get(r, 0.0),
            "validation": val_values[r][primary], "test": test_values[r][primary],
            "test_low": ci[0], "test_high": ci[1], "gap": val_values[r][primary] - test_values[r][primary],
            "violations": sel.violations.get(r, []),
            "values": {k: test_values[r][k] for k in names}, "val_values": {k: val_values[r][k] for k in names},
            "ranks": val_ranks[r],
        })

    informative_reps = [r for r in reps if len(np.unique(by_name[r].val.y_pred)) > 1]
    criteria = [n for n in names if n.split("/")[-1] not in NOT_CRITERIA]
    win = _winners({r: val_values[r] for r in informative_reps}, criteria, pick)
    disagreements = [
        {"metric": k, "winner": w, "reason": _reason(k, w, pick, primary, val_values, sel.violations)}
        for k, w in win.items() if w != pick
    ]
    beside = {n: {"pick": val_values[pick][n] if pick else None,
                  "best": min(val_values[r][n] for r in informative_reps),
                  "best_model": min(informative_reps, key=lambda r: val_values[r][n])}
              for n in NOT_CRITERIA if n in val_values[reps[0]]}
    with warnings.catch_warnings():  # constant rankings give an undefined tau, reported as None
        warnings.simplefilter("ignore")
        tau = rank_agreement({r: val_values[r] for r in reps}, names)

    audit: Audit = {
        "views": {"held_out": "as held out",
                  "reweighted": {"key": view.key, "description": view.description,
                                 "prior": dict(zip(classes, view.prior))}},
        "rarest_class": rarest,
        "metrics": names,
        "reference": {"loss": reference_loss, "model": reference,
                      "why": "plain cross-entropy" if reference_loss == "ce" else
                             "the first loss in train.losses (ce is not trained)"},
        "policy": {
            "metric": cfg.select.metric, "view": cfg.select.view, "split": "val",
            "constraints": [str(c) for c in scoped],
            "pick": pick, "eligible": sel.eligible, "violations": sel.violations,
            "summary": _policy_summary(primary, scoped, sel, val_values),
            "p_best": chance.get(pick, 0.0) if pick else None,
            "tie_break": "fewer fitted parameters, then name",
            "bootstrap": {"resamples": len(val_indices), "seed": cfg.bootstrap.seed, "level": level},
        },
        "estimate": _estimate(pick, metrics, primary, view.key, val_values, test_values) if pick else None,
        "test_selection": {
            "pick": test_sel.pick, "note": "what ranking by the test split would have picked: shown as a "
                                            "warning example of the winner's curse, never used",
            "its_test": test_values[test_sel.pick][primary] if test_sel.pick else None,
            "its_validation": val_values[test_sel.pick][primary] if test_sel.pick else None,
        },
        "vs_reference": versus(pick, reference) if pick and reference and pick != reference else None,
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
    return {"metric": primary, "test": test_values[pick][primary], "low": lo, "high": hi,
            "validation": val_values[pick][primary],
            "optimism": val_values[pick][primary] - test_values[pick][primary]}


def _winners(values: dict[str, dict[str, float]], metric_names: list[str], prefer: str | None) -> dict[str, str]:
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
    return (f"{winner} is best on {metric} ({values[winner][metric]:.4f} vs {values[pick][metric]:.4f}) "
            f"but the policy ranks by {primary}, where {pick} scores {values[pick][primary]:.4f} "
            f"and {winner} {values[winner][primary]:.4f}")


def _policy_summary(primary: str, constraints: list[Constraint], sel: Pick, values: dict) -> str:
    where = " subject to " + ", ".join(map(str, constraints)) if constraints else ""
    rule = f"best {primary} on validation{where}"
    if sel.pick is None:
        closest = min(sel.violations, key=lambda m: len(sel.violations[m]))
        return (f"{rule}: no candidate meets the constraints; {closest} fails the fewest "
                f"({'; '.join(sel.violations[closest])})")
    return f"{rule}: {sel.pick} ({values[sel.pick][primary]:.4f} on validation)"


def prior_shift(records: list[ModelRecord], reps: list[str], *, cfg: EvaluateConfig, classes: list[str],
                train_counts: list[int], deploy_prior: np.ndarray | None, cost: np.ndarray | None,
                top: list[str], pick: str | None) -> dict:
    """The policy re-run on validation under deployment priors from the validation prior to the
    training prior (and the user's ``evaluate.deploy_prior``), by per-row reweighting (label
    shift: p(x | y) fixed); where the pick changes; and ``top`` candidates' test scores under the
    same priors, each point with the Kish effective sample size of its weights."""
    by_name = {r.name: r for r in records}
    y_val, y_test = records[0].val.y_true, records[0].test.y_true
    val_prior = np.bincount(y_val, minlength=len(classes)) / len(y_val)
    train_prior = np.asarray(train_counts, float) / sum(train_counts)
    constraints = [parse_constraint(c) for c in cfg.select.constraints]
    names = list(dict.fromkeys([cfg.select.metric, *(c.metric for c in constraints)]))
    size = {r: by_name[r].fitted_parameters for r in reps}
    points = []
    for point in prior_family(val_prior, train_prior, deploy_prior):
        w_val, w_test = shifted_weights(y_val, point["prior"]), shifted_weights(y_test, point["prior"])

        def value(name, split, metric, w):
            p = getattr(by_name[name], split)
            return metric_value(metric, p.y_true, p.y_pred, p.proba, classes, sample_weight=w, cost=cost,
                                ece_bins=cfg.ece_bins)

        val = {r: {n: value(r, "val", n, w_val) for n in names} for r in reps}
        chosen = select(val, cfg.select.metric, constraints, size).pick
        points.append({**point, "pick": chosen, "val_ess": kish_ess(w_val), "test_ess": kish_ess(w_test),
                       "test": {m: value(m, "test", cfg.select.metric, w_test) for m in top}})
    changes = next((p for p in points if p["pick"] != pick), None)
    return {
        "assumption": "label shift: the class prior changes between validation and deployment while "
                      "p(x | class) stays the same; each prior is obtained by reweighting rows",
        "metric": cfg.select.metric, "points": points, "top": top,
        "changes_at": None if changes is None else {"label": changes["label"], "t": changes["t"],
                                                     "pick": changes["pick"]},
    }


def special_loss_question(records: list[ModelRecord], metrics: dict, *, reference_loss: str, cfg: EvaluateConfig,
                          view: View, classes: list[str], train_counts: list[int], cost: np.ndarray | None,
                          test_indices: np.ndarray) -> dict | None:
    """"Was the special loss needed?": the best train-time remedy (any other MLP loss, argmax) and
    the best post-hoc rule on the reference model, each chosen on validation, compared on test
    with paired intervals for the policy's metric and tail recall/precision."""
    primary = _scoped(cfg, view, cfg.select.metric)
    constraints = [Constraint(_scoped(cfg, view, c.metric), c.op, c.bound)
                   for c in (parse_constraint(t) for t in cfg.select.constraints)]
    val = flat_values({n: m["val"] for n, m in metrics.items()}, view.key)
    size = {r.name: r.fitted_parameters for r in records}
    remedies = [r.name for r in records if r.kind == "mlp" and r.rule is None and r.loss != reference_loss]
    posthoc = [r.name for r in records if r.loss == reference_loss and r.rule is not None]
    if not remedies or not posthoc:
        return None
    best_remedy = select({m: val[m] for m in remedies}, primary, constraints, size).order[0]
    best_posthoc = select({m: val[m] for m in posthoc}, primary, constraints, size).order[0]
    by_name = {r.name: r for r in records}
    y_test = records[0].test.y_true
    w = shifted_weights(y_test, view.prior) if cfg.select.view == "reweighted" else None

    def dist(name):
        p = by_name[name].test
        return resampled_values([cfg.select.metric], y_test, p.y_pred, p.proba, classes, indices=test_indices,
                                sample_weight=w, cost=cost, ece_bins=cfg.ece_bins)[cfg.select.metric]

    test = flat_values({n: {k: v for k, v in m.items() if k != "val"} for n, m in metrics.items()}, view.key)
    d = paired_difference(dist(best_remedy), dist(best_posthoc), test[best_remedy][primary],
                          test[best_posthoc][primary], cfg.bootstrap.level)
    trade = tail_trade(y_test, {n: by_name[n].test.y_pred for n in (best_remedy, best_posthoc)}, classes,
                       train_counts, reference=best_posthoc, models=[best_remedy], indices=test_indices,
                       level=cfg.bootstrap.level)["models"][best_remedy]
    words = verdict(d, higher_is_better=not lower_is_better(cfg.select.metric), against=best_posthoc)
    return {
        "remedy": best_remedy, "posthoc": best_posthoc, "metric": primary,
        "remedy_validation": val[best_remedy][primary], "posthoc_validation": val[best_posthoc][primary],
        "remedy_test": test[best_remedy][primary], "posthoc_test": test[best_posthoc][primary],
        "difference": d, "tail_recall_change": trade["tail_recall_change"],
        "tail_precision_change": trade["tail_precision_change"],
        "answer": (f"the best special loss ({best_remedy}) is {words} (the best post-hoc rule on "
                   f"{reference_loss}) on {primary}: {d['value']:+.4f} on test"
                   + (f" [{d['low']:+.4f}, {d['high']:+.4f}]" if d["low"] is not None else "")),
    }


def loss_metric_agreement(records: list[ModelRecord], *, metric: str, classes: list[str]) -> dict:
    """Per MLP: do epoch-to-epoch falls in validation loss go with rises in the metric?

    From each epoch's validation loss and confusion matrix (recorded in training, read by
    nothing there): Spearman's rho between ``-diff(val_loss)`` and ``diff(metric)`` (positive:
    they agree), and the epoch each would choose (lowest loss, best metric) against the epoch
    early stopping chose on its slice. A metric that reads probabilities cannot be computed from
    confusion matrices: macro-F1 stands in, and the result says so.
    """
    from scipy.stats import spearmanr

    used = metric if not reads_probabilities(metric) else "macro_f1"
    base, _, cls = used.partition("/")
    out = {"metric": used, "requested": metric, "models": {}}
    for r in records:
        history = r.training.get("history") or []
        if r.kind != "mlp" or r.rule is not None or not history or "val_confusion" not in history[0]:
            continue
        cms = np.asarray([h["val_confusion"] for h in history], dtype=np.float64)  # (E, C, C)
        values = count_metrics(cms)[base]
        values = values[:, classes.index(cls)] if cls else values
        loss = np.asarray([h["val_loss"] for h in history])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rho = spearmanr(-np.diff(loss), np.diff(values)).statistic if len(loss) > 2 else float("nan")
        sign = -1 if lower_is_better(used) else 1
        out["models"][r.name] = {
            "loss": r.loss, "spearman": None if not np.isfinite(rho) else float(rho),
            "epoch_by_loss": int(np.argmin(loss)) + 1, "epoch_by_metric": int(np.argmax(sign * values)) + 1,
            "epoch_chosen": r.training["best_epoch"], "epochs": len(history),
            "loss_curve": loss.tolist(), "metric_curve": values.tolist(),
        }
    return out


def pick_warnings(pick: str | None, metrics: dict, classes: list[str], vs_reference: dict | None,
                  p_best_value: float | None) -> list[str]:
    """What the first screen must say in words: a class the pick never recalls, a lead over the
    reference within noise, a choice that resampling often overturns."""
    if pick is None:
        return ["no candidate meets the policy's constraints on validation: nothing is recommended"]
    out = []
    for split, entry in (("validation", metrics[pick]["val"]), ("test", metrics[pick])):
        missed = [c for c in classes if entry[f"recall/{c}"] == 0 and entry[f"support/{c}"] > 0]
        if missed:
            out.append(f"{pick} never recalls class{'es' if len(missed) > 1 else ''} "
                       f"{', '.join(missed)} on the {split} split (recall 0)")
    if vs_reference and "not distinguishable" in vs_reference["words"]:
        out.append(f"{pick}'s lead over the reference is within noise on test "
                   f"({vs_reference['value']:+.4f} [{vs_reference['low']:+.4f}, {vs_reference['high']:+.4f}])")
    if p_best_value is not None and p_best_value < 0.5:
        out.append(f"the choice is uncertain: {pick} is the pick in only {p_best_value:.0%} of validation resamples")
    return out
