"""Putting the metrics together: the two class-prior views, intervals, γ curves and the audit.

Pure functions from predictions and counts to the dicts that ``reports/metrics.json`` and
``reports/audit.json`` hold; the evaluate stage writes and logs them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from pipeline.audit import across_seeds, apply_policy, check_policy, flat_values, rank_agreement, ranks
from pipeline.config import Constraint
from pipeline.config import EvaluateConfig
from pipeline.metrics import (
    HEADLINE,
    bootstrap_distribution,
    bootstrap_intervals,
    classification_metrics,
    confusion_matrix,
    count_metrics,
    percentile_interval,
    prior_weights,
)

# A test split whose largest class is at most this many times its smallest counts as balanced.
BALANCED_RATIO = 1.5
# Count-based metrics that get bootstrap intervals (besides the rarest class's recall/precision).
CI_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "micro_f1", "weighted_f1", "mcc",
              "cohen_kappa", "geometric_mean")


@dataclass(frozen=True)
class View:
    """The second look at the test split: reweighted to another class prior."""

    key: str  # "train_prior" or "uniform_prior": the key in metrics.json
    prior: list[float]  # target class prior, in class order
    description: str


def second_view(train_counts: list[int], test_counts: list[int], setting: str) -> View:
    """``train``: the training prior (as deployed); ``uniform``: every class equal;
    ``auto``: the training prior when the test split is balanced, else uniform."""
    train, test = np.asarray(train_counts, float), np.asarray(test_counts, float)
    if setting == "auto":
        setting = "train" if test.max() <= BALANCED_RATIO * max(test.min(), 1) else "uniform"
    if setting == "train":
        return View("train_prior", (train / train.sum()).tolist(),
                    "test split reweighted to the training split's class prior (as deployed, if "
                    "deployment data look like the training data)")
    return View("uniform_prior", [1 / len(test)] * len(test),
                "test split reweighted to a uniform class prior (every class counts equally)")


def rarest_class(train_counts: list[int], classes: list[str]) -> str:
    """The class with the fewest training samples (the first such on ties)."""
    return classes[int(np.argmin(train_counts))]


def model_metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray,
    classes: list[str],
    *,
    view: View,
    indices: np.ndarray,
    ci_metrics: list[str],
    cfg: EvaluateConfig,
) -> dict:
    """One model's entry of metrics.json: held-out metrics, ``ci``, and the reweighted view."""

    def one(weights):
        m = classification_metrics(y_true, y_pred, classes, proba=proba, sample_weight=weights,
                                   ece_bins=cfg.ece_bins)
        ci = bootstrap_intervals(y_true, y_pred, classes, indices=indices, metrics=ci_metrics,
                                 level=cfg.bootstrap.level, sample_weight=weights)
        m["ci"] = {k: {"low": lo, "high": hi} for k, (lo, hi) in ci.items()}
        return m

    out = one(None)
    out[view.key] = one(prior_weights(y_true, np.asarray(view.prior)))
    return out


def gamma_table(models: list[dict], metrics: dict[str, dict], rarest: str) -> dict[str, list[dict]]:
    """Headline metrics against γ for every loss trained over a γ sweep.

    ``models`` are ``{"name", "loss", "gamma", "seed", "kind"}`` (kind ``mlp`` or ``baseline``). One row per γ: the value and its interval
    (the bootstrap interval with one seed; mean ± one standard deviation across several seeds).
    """
    names = {"macro_f1": "macro_f1", "micro_f1": "micro_f1", "accuracy": "accuracy",
             "balanced_accuracy": "balanced_accuracy", "rarest_recall": f"recall/{rarest}",
             "rarest_precision": f"precision/{rarest}"}
    by_loss: dict[str, dict[float, list[str]]] = {}
    for m in models:
        if m["gamma"] is not None:
            by_loss.setdefault(m["loss"], {}).setdefault(float(m["gamma"]), []).append(m["name"])
    out = {}
    for loss, by_gamma in by_loss.items():
        rows = []
        for gamma in sorted(by_gamma):
            members = by_gamma[gamma]
            row = {"gamma": gamma, "models": len(members)}
            for label, key in names.items():
                values = np.array([metrics[n][key] for n in members])
                if len(members) > 1:
                    mean, sd = values.mean(), values.std(ddof=1)
                    row.update({label: mean, f"{label}_low": mean - sd, f"{label}_high": mean + sd})
                else:
                    ci = metrics[members[0]]["ci"][key]
                    row.update({label: values[0], f"{label}_low": ci["low"], f"{label}_high": ci["high"]})
            rows.append({k: (float(v) if isinstance(v, np.floating) else v) for k, v in row.items()})
        out[loss] = rows
    return out


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
) -> dict:
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
    for m in models:
        base = m["loss"] if m["gamma"] is None else f"{m['loss']}_g{m['gamma']:g}"
        groups.setdefault(base, []).append(m["name"])
    audit = {
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
