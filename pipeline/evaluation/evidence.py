"""What an auditor asks beside the pick, each answered with paired intervals on the test split
or with the validation split reweighted:

- :func:`tail_trade`: what a model gains on the tail classes and pays on the head, against the
  reference (undefined precision said as undefined);
- :func:`prior_shift`: the policy re-run under deployment priors (label shift);
- :func:`special_loss_question`: was a special loss needed, or only a decision rule on ``ce``?
- :func:`loss_metric_agreement`: does lowering each loss raise the metric, epoch by epoch?
- :func:`pick_warnings`: what the first screen must say in words.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
from scipy.stats import spearmanr

from pipeline.decision.metrics import (
    Resamples,
    as_resamples,
    COST_METRIC,
    bootstrap_distribution,
    class_count_metrics,
    class_counts,
    decided_counts,
    lower_is_better,
    percentile_interval,
)
from pipeline.decision.selection import (
    Policy,
    flat_values,
    kish_ess,
    metric_value,
    prior_family,
    reads_probabilities,
    resampled_values,
    select,
    shifted_weights,
)

if TYPE_CHECKING:
    from pipeline.artifacts import ModelRecord
    from pipeline.config import EvaluateConfig


def paired_difference(
    a: dict[str, np.ndarray], b: dict[str, np.ndarray], point_a: float, point_b: float, level: float
) -> dict[str, float]:
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


def class_means(
    y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, members: list[int], *, indices: Resamples | np.ndarray
) -> dict[str, tuple[float, np.ndarray]]:
    """Mean recall and precision over ``members`` (class indices): the point value and (B,)
    resampled values. A class the model never predicts has no precision (not 0): it is left out
    of the precision mean, which is NaN when no member is ever predicted."""
    counts = class_counts(y_true, y_pred, n_classes)
    point = class_count_metrics(*counts)
    boot = bootstrap_distribution(y_true, y_pred, n_classes, indices=indices)
    predicted = counts[2][members] > 0  # (M,)
    boot_pred = _predicted_counts(y_true, y_pred, n_classes, indices)[:, members] > 0  # (B, M)

    def mean_defined(values, defined):
        with warnings.catch_warnings():  # no member predicted: NaN, said as "undefined"
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(np.where(defined, values, np.nan), axis=-1)

    return {
        "recall": (float(point["recall"][members].mean()), boot["recall"][:, members].mean(1)),
        "precision": (
            float(mean_defined(point["precision"][members], predicted)),
            mean_defined(boot["precision"][:, members], boot_pred),
        ),
        "undefined_precision": [int(m) for m, p in zip(members, predicted) if not p],
    }


def _predicted_counts(
    y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, indices: Resamples | np.ndarray
) -> np.ndarray:
    """(B, C) how often each class is predicted in each resample: the counts that
    :func:`~pipeline.decision.metrics.bootstrap_distribution` made (the same codes and weights, so
    :meth:`~pipeline.decision.metrics.Resamples.counts` keeps them: not counted again)."""
    return decided_counts(as_resamples(indices), y_true, y_pred, n_classes)[1]


def tail_trade(
    y_true: np.ndarray,
    predictions: dict[str, np.ndarray],
    classes: list[str],
    train_counts: list[int],
    *,
    reference: str,
    models: list[str],
    indices: Resamples,
    level: float,
) -> dict:
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
        out["accuracy"] = (float(hit.mean()), as_resamples(indices).sums(hit) / len(hit))
        return out

    ref = parts(reference)
    out = {
        "reference": reference,
        "tail_classes": [classes[i] for i in tail],
        "head_classes": [classes[i] for i in head],
        "level": level,
        "reference_undefined_precision": [classes[i] for i in ref["tail"]["undefined_precision"]],
        "models": {},
    }
    for m in models:
        cur = parts(m)
        entry: dict = {}
        for side in ("tail", "head"):
            if side not in cur:
                continue
            for what in ("recall", "precision"):
                (pa, ba), (pb, bb) = cur[side][what], ref[side][what]
                entry[f"{side}_{what}_change"] = (
                    paired_difference(ba, bb, pa, pb, level)
                    if np.isfinite(pa) and np.isfinite(pb)
                    else {"value": None, "low": None, "high": None}
                )
        entry["accuracy_change"] = paired_difference(
            cur["accuracy"][1], ref["accuracy"][1], cur["accuracy"][0], ref["accuracy"][0], level
        )
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


def prior_shift(
    records: list[ModelRecord],
    reps: list[str],
    *,
    policy: Policy,
    cfg: EvaluateConfig,
    classes: list[str],
    train_counts: list[int],
    deploy_prior: np.ndarray | None,
    cost: np.ndarray | None,
    top: list[str],
    pick: str | None,
) -> dict:
    """The policy re-run on validation under deployment priors from the validation prior to the
    training prior (and the user's ``evaluate.deploy_prior``), by per-row reweighting (label
    shift: p(x | y) fixed); where the pick changes; and ``top`` candidates' test scores under the
    same priors, each point with the Kish effective sample size of its weights."""
    by_name = {r.name: r for r in records}
    y_val, y_test = records[0].val.y_true, records[0].test.y_true
    val_prior = np.bincount(y_val, minlength=len(classes)) / len(y_val)
    train_prior = np.asarray(train_counts, float) / sum(train_counts)
    constraints, names = list(policy.constraints), policy.names
    size = {r: by_name[r].fitted_parameters for r in reps}
    points = []
    for point in prior_family(val_prior, train_prior, deploy_prior):
        w_val, w_test = shifted_weights(y_val, point["prior"]), shifted_weights(y_test, point["prior"])

        def value(name, split, metric, w):
            p = getattr(by_name[name], split)
            return metric_value(
                metric, p.y_true, p.y_pred, p.proba, classes, sample_weight=w, cost=cost, ece_bins=cfg.ece_bins
            )

        val = {r: {n: value(r, "val", n, w_val) for n in names} for r in reps}
        chosen = select(val, policy.metric, constraints, size).pick
        points.append(
            {
                **point,
                "pick": chosen,
                "val_ess": kish_ess(w_val),
                "test_ess": kish_ess(w_test),
                "test": {m: value(m, "test", policy.metric, w_test) for m in top},
            }
        )
    changes = next((p for p in points if p["pick"] != pick), None)
    return {
        "assumption": "label shift: the class prior changes between validation and deployment while "
        "p(x | class) stays the same; each prior is obtained by reweighting rows",
        "metric": policy.metric,
        "points": points,
        "top": top,
        "changes_at": None
        if changes is None
        else {"label": changes["label"], "t": changes["t"], "pick": changes["pick"]},
    }


def special_loss_question(
    records: list[ModelRecord],
    metrics: dict,
    *,
    reference_loss: str,
    cfg: EvaluateConfig,
    policy: Policy,
    classes: list[str],
    train_counts: list[int],
    cost: np.ndarray | None,
    test_indices: Resamples,
) -> dict | None:
    """ "Was the special loss needed?": the best train-time remedy (any other MLP loss, argmax) and
    the best post-hoc rule on the reference model, each chosen on validation, compared on test
    with paired intervals for the policy's metric and tail recall/precision."""
    primary, constraints, view = policy.primary, policy.scoped, policy.view
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
    w = policy.weights(y_test)

    def dist(name):
        p = by_name[name].test
        return resampled_values(
            [policy.metric],
            y_test,
            p.y_pred,
            p.proba,
            classes,
            indices=test_indices,
            sample_weight=w,
            cost=cost,
            ece_bins=cfg.ece_bins,
        )[policy.metric]

    test = flat_values(metrics, view.key)
    d = paired_difference(
        dist(best_remedy),
        dist(best_posthoc),
        test[best_remedy][primary],
        test[best_posthoc][primary],
        cfg.bootstrap.level,
    )
    trade = tail_trade(
        y_test,
        {n: by_name[n].test.y_pred for n in (best_remedy, best_posthoc)},
        classes,
        train_counts,
        reference=best_posthoc,
        models=[best_remedy],
        indices=test_indices,
        level=cfg.bootstrap.level,
    )["models"][best_remedy]
    words = verdict(d, higher_is_better=not policy.lower_is_better, against=best_posthoc)
    return {
        "remedy": best_remedy,
        "posthoc": best_posthoc,
        "metric": primary,
        "remedy_validation": val[best_remedy][primary],
        "posthoc_validation": val[best_posthoc][primary],
        "remedy_test": test[best_remedy][primary],
        "posthoc_test": test[best_posthoc][primary],
        "difference": d,
        "tail_recall_change": trade["tail_recall_change"],
        "tail_precision_change": trade["tail_precision_change"],
        "answer": (
            f"the best special loss ({best_remedy}) is {words} (the best post-hoc rule on "
            f"{reference_loss}) on {primary}: {d['value']:+.4f} on test"
            + (f" [{d['low']:+.4f}, {d['high']:+.4f}]" if d["low"] is not None else "")
        ),
    }


def loss_metric_agreement(records: list[ModelRecord], *, metric: str, classes: list[str]) -> dict:
    """Per MLP: do epoch-to-epoch falls in validation loss go with rises in the metric?

    From each epoch's validation loss and class counts (recorded in training, read by nothing
    there): Spearman's rho between ``-diff(val_loss)`` and ``diff(metric)`` (positive: they
    agree), and the epoch each would choose (lowest loss, best metric) against the epoch early
    stopping chose on its slice. A metric that reads probabilities (or every cell of the
    confusion matrix: the expected cost) cannot be computed from class counts: macro-F1 stands
    in, and the result says so.
    """
    used = metric if not reads_probabilities(metric) and metric != COST_METRIC else "macro_f1"
    base, _, cls = used.partition("/")
    out = {"metric": used, "requested": metric, "models": {}}
    for r in records:
        history = r.training.get("history") or []
        if r.kind != "mlp" or r.rule is not None or not history or "val_counts" not in history[0]:
            continue
        counts = {k: np.asarray([h["val_counts"][k] for h in history]) for k in ("tp", "support", "predicted")}
        values = class_count_metrics(**counts)[base]  # (E,) or (E, C)
        values = values[:, classes.index(cls)] if cls else values
        loss = np.asarray([h["val_loss"] for h in history])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rho = spearmanr(-np.diff(loss), np.diff(values)).statistic if len(loss) > 2 else float("nan")
        sign = -1 if lower_is_better(used) else 1
        out["models"][r.name] = {
            "loss": r.loss,
            "spearman": None if not np.isfinite(rho) else float(rho),
            "epoch_by_loss": int(np.argmin(loss)) + 1,
            "epoch_by_metric": int(np.argmax(sign * values)) + 1,
            "epoch_chosen": r.training["best_epoch"],
            "epochs": len(history),
            "loss_curve": loss.tolist(),
            "metric_curve": values.tolist(),
        }
    return out


def pick_warnings(
    audit: dict,
    metrics: dict,
    classes: list[str],
    *,
    min_recall: float,
    stopped: list[str] | None = None,
    epochs: int | None = None,
) -> list[str]:
    """What the first screen must say in words (``audit.json``'s ``warnings``): models that ran
    every epoch (``stopped``: their names, ``epochs``: ``train.epochs``), a class the pick finds
    below ``min_recall``, a pick no better than plain cross-entropy or the best plain baseline on
    validation, a choice shared by tied candidates or often overturned by resampling, a test
    estimate far below validation or near chance, probabilities not calibrated enough to be read
    as chances."""
    policy = audit["policy"]
    pick = policy["pick"]
    out = []
    if stopped:
        shown = ", ".join(stopped[:5]) + (f" and {len(stopped) - 5} more" if len(stopped) > 5 else "")
        out.append(
            f"{len(stopped)} model(s) ran all {epochs} epochs without early stopping ({shown}): they may "
            "be undertrained; raise train.epochs"
        )
    if pick is None:
        return ["no candidate meets the policy's constraints on validation: nothing is recommended", *out]
    for split, entry in (("validation", metrics[pick]["val"]), ("test", metrics[pick])):
        low = {
            c: entry[f"recall/{c}"] for c in classes if entry[f"support/{c}"] > 0 and entry[f"recall/{c}"] < min_recall
        }
        if low:
            said = ", ".join(
                f"{c} ({v:.3f}, {round(v * entry[f'support/{c}'])} of {entry[f'support/{c}']:g})"
                for c, v in low.items()
            )
            out.append(
                f"{pick} {'never recalls' if not any(low.values()) else 'rarely finds'} "
                f"class{'es' if len(low) > 1 else ''} {said} on the {split} split "
                f"(recall below evaluate.min_recall {min_recall:g})"
            )
    trade = (audit.get("tail_trade") or {}).get("models", {}).get(pick)
    for d in audit.get("vs_simpler") or []:
        if d["low"] is None or not d["words"].startswith("not distinguishable"):
            continue
        plain = d["model"] == audit["reference"]["model"]
        what = f"plain cross-entropy ({d['model']})" if plain else f"the {d['model']} baseline"
        cost = ""
        if plain and trade and audit["tail_trade"]["reference"] == d["model"]:
            head = trade.get("head_recall_change")
            cost = (
                "; against it on test, the pick changes "
                + (f"head-class recall by {head['value']:+.3f} and " if head else "")
                + f"accuracy by {trade['accuracy_change']['value']:+.3f}"
            )
        out.append(
            f"{pick} is not better than {what} beyond noise on validation ({d['metric']} {d['value']:+.4f} "
            f"[{d['low']:+.4f}, {d['high']:+.4f}]): the simpler model would do as well{cost}"
        )
    tied = policy.get("tied") or []
    if tied:
        test = [metrics[m][policy["metric"]] for m in [pick, *tied] if policy["metric"] in metrics[m]]
        spread = f"; on test they score {min(test):.4f} to {max(test):.4f}" if test else ""
        out.append(
            f"{len(tied) + 1} candidates tie at the pick's validation score: P(best) belongs to the tied "
            f"group, and {pick} was taken by the tie-break ({policy['tie_break']}){spread}"
        )
    elif policy["p_best"] is not None and policy["p_best"] < 0.5:
        out.append(
            f"the choice is uncertain: {pick} is the pick in only {policy['p_best']:.0%} of validation resamples"
        )
    est = audit.get("estimate") or {}
    if est.get("low") is not None and not lower_is_better(policy["metric"]):
        noise = (est["high"] - est["low"]) / 2 * np.sqrt(2)  # validation is about as noisy as test
        if est["validation"] - est["test"] > noise:
            out.append(
                f"the test estimate ({est['test']:.4f} [{est['low']:.4f}, {est['high']:.4f}]) is below the "
                f"validation score ({est['validation']:.4f}) beyond the noise of both splits: the split or the "
                "labels may have shifted"
            )
        if est.get("chance") is not None and est["low"] <= est["chance"]:
            out.append(
                f"on test the pick is near chance: {est['metric']} {est['test']:.4f} [{est['low']:.4f}, "
                f"{est['high']:.4f}] against {est['chance']:.4f} for its own decisions shuffled over the rows"
            )
    calibration = audit.get("calibration")
    if calibration and calibration["validation_ece"] > calibration["max_ece"]:
        out.append(
            f"{pick}'s probabilities (p_<class>) are poorly calibrated: ECE {calibration['validation_ece']:.3f} "
            f"on validation, above evaluate.max_ece {calibration['max_ece']:g}; read them as scores, not as "
            "chances"
        )
    return out
