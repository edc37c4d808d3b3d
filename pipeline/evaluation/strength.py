"""How strong should the class weights be: metrics against the weight strength α.

A loss trained over ``train.alphas`` (``weighted_ce_a0.25``, ``weighted_ce_a0.5``, …: w_c ∝
n_c^(−α), :func:`pipeline.data.weights.power_weights`) forms a *family*, its α = 0 point being the
loss's unweighted form (``ce``), trained once. :func:`strength_curves` gives, per family and per
α, the policy's metric, macro-, micro- and weighted-F1 and the tail classes' mean recall and
precision, each with its percentile bootstrap interval on validation (what choosing reads) and on
test (the estimate). Several seeds are averaged resample by resample, so the interval is that of
the seed mean.

Then what the audit says of each family: where the policy's metric peaks in α on validation, how
flat the top is (every α whose paired bootstrap difference to the peak, on validation, does not
exclude zero), and what the tail gains and the head pays on test from the α = 0 point to the
peak (:func:`pipeline.evaluation.evidence.tail_trade`).
"""

from __future__ import annotations

import numpy as np

from pipeline.artifacts import ModelRecord
from pipeline.evaluation.evidence import class_means, paired_difference, tail_trade
from pipeline.loss_specs import loss_spec
from pipeline.decision.metrics import Resamples, percentile_interval
from pipeline.training.plan import model_name
from pipeline.decision.selection import Policy, flat_values, resampled_values

# What the curve shows beside the policy's metric (micro-F1 equals accuracy with one label per row).
CURVE_METRICS = ("macro_f1", "micro_f1", "weighted_f1", "tail_recall", "tail_precision")
SPLITS = {"val": "validation", "test": "test"}


def tail_classes(train_counts: list[int]) -> list[int]:
    """Class indices with a training count below the median (the rarest class if none has): the
    tail of :func:`pipeline.evaluation.evidence.tail_trade`."""
    counts = np.asarray(train_counts)
    return [i for i, n in enumerate(counts) if n < np.median(counts)] or [int(np.argmin(counts))]


def family_name(loss: str, gamma: float | None) -> str:
    """A weight-strength family: ``weighted_ce``, or ``weighted_focal_g2`` in a γ × α grid."""
    return model_name(loss, gamma, 0, 1)


def families(records: list[ModelRecord]) -> dict[str, list[tuple[float, list[ModelRecord]]]]:
    """Family -> ``[(alpha, members)]`` in increasing α, members one per seed. The α = 0 point is
    the family loss's ``alpha_zero`` at the same γ when it was trained (``ce``, ``focal_g2``)."""
    plain = [r for r in records if r.rule is None and r.kind == "mlp"]
    out: dict[str, dict[float, list[ModelRecord]]] = {}
    first: dict[str, ModelRecord] = {}
    for r in plain:
        if r.alpha is not None:
            key = family_name(r.loss, r.gamma)
            out.setdefault(key, {}).setdefault(float(r.alpha), []).append(r)
            first.setdefault(key, r)
    for key, by_alpha in out.items():
        zero, gamma = loss_spec(first[key].loss).alpha_zero, first[key].gamma
        members = [r for r in plain if r.loss == zero and r.alpha is None and r.gamma == gamma]
        if members and 0.0 not in by_alpha:
            by_alpha[0.0] = members
    return {
        key: sorted((a, sorted(m, key=lambda r: r.seed)) for a, m in by_alpha.items()) for key, by_alpha in out.items()
    }


def _values(
    members: list[ModelRecord],
    split: str,
    metrics: dict,
    names: list[str],
    primary: str,
    *,
    policy: Policy,
    cfg,
    classes: list[str],
    tail: list[int],
    indices: Resamples,
    cost: np.ndarray | None,
) -> dict[str, tuple[float, np.ndarray]]:
    """name -> (point, (B,) resampled) of the curve's metrics, the mean over ``members`` (seeds)."""
    per_member = []
    for r in members:
        preds = getattr(r, split)
        y = preds.y_true
        entry = metrics[r.name]["val"] if split == "val" else metrics[r.name]
        flat = flat_values({r.name: entry}, policy.view.key)[r.name]
        got: dict[str, tuple[float, np.ndarray]] = {}
        # the policy's metric as the policy reads it (its view's weights), the others as held out
        boot = resampled_values(
            [policy.metric],
            y,
            preds.y_pred,
            preds.proba,
            classes,
            indices=indices,
            sample_weight=policy.weights(y),
            cost=cost,
            ece_bins=cfg.ece_bins,
        )
        got[primary] = (float(flat[primary]), boot[policy.metric])
        plain = [n for n in names if n in ("macro_f1", "micro_f1", "weighted_f1") and n != primary]
        if plain:
            boot = resampled_values(plain, y, preds.y_pred, preds.proba, classes, indices=indices)
            got.update({n: (float(flat[n]), boot[n]) for n in plain})
        means = class_means(y, preds.y_pred, len(classes), tail, indices=indices)
        got["tail_recall"], got["tail_precision"] = means["recall"], means["precision"]
        per_member.append(got)
    with np.errstate(invalid="ignore"):
        return {
            n: (float(np.mean([m[n][0] for m in per_member])), np.mean([m[n][1] for m in per_member], axis=0))
            for n in names
        }


def _point(value: float, dist: np.ndarray, level: float) -> dict:
    finite = dist[np.isfinite(dist)]
    lo, hi = percentile_interval(finite, level) if len(finite) else (None, None)
    return {"value": None if not np.isfinite(value) else value, "low": lo, "high": hi}


def strength_curves(
    records: list[ModelRecord],
    metrics: dict,
    *,
    policy: Policy,
    cfg,
    classes: list[str],
    train_counts: list[int],
    val_indices: Resamples,
    test_indices: Resamples,
    cost: np.ndarray | None = None,
) -> dict[str, dict]:
    """Every weight-strength family's curve and what the audit says of it (``audit.json``'s
    ``weight_strength``); empty when nothing was trained over ``train.alphas``."""
    fams = families(records)
    if not fams:
        return {}
    primary = policy.primary
    names = list(dict.fromkeys([primary, *CURVE_METRICS]))
    tail = tail_classes(train_counts)
    head = [i for i in range(len(classes)) if i not in tail]
    level = cfg.bootstrap.level
    sign = -1.0 if policy.lower_is_better else 1.0
    out = {}
    for key, points in fams.items():
        rows, dists = [], []
        for alpha, members in points:
            row = {"alpha": alpha, "models": [m.name for m in members]}
            split_dists = {}
            for split, indices in (("val", val_indices), ("test", test_indices)):
                vals = _values(
                    members,
                    split,
                    metrics,
                    names,
                    primary,
                    policy=policy,
                    cfg=cfg,
                    classes=classes,
                    tail=tail,
                    indices=indices,
                    cost=cost,
                )
                row[split] = {n: _point(v, d, level) for n, (v, d) in vals.items()}
                split_dists[split] = vals
            rows.append(row)
            dists.append(split_dists)
        # the peak on validation (ties: the weaker weighting), and every alpha within noise of it
        val_scores = [sign * d["val"][primary][0] for d in dists]
        best = max(range(len(rows)), key=lambda i: (val_scores[i], -rows[i]["alpha"]))
        flat = []
        for i, d in enumerate(dists):
            diff = paired_difference(
                sign * d["val"][primary][1],
                sign * dists[best]["val"][primary][1],
                val_scores[i],
                val_scores[best],
                level,
            )
            natural = {k: (None if v is None else sign * v) for k, v in diff.items()}  # this α − the peak
            if sign < 0:
                natural["low"], natural["high"] = natural["high"], natural["low"]
            rows[i]["val_vs_peak"] = natural
            if i == best or diff["high"] is None or diff["high"] >= 0:
                flat.append(rows[i]["alpha"])
        peak = rows[best]
        start = rows[0]
        trade = None
        if best != 0:
            a, b = start["models"][0], peak["models"][0]
            by_name = {r.name: r for r in records}
            y_test = by_name[a].test.y_true
            trade = tail_trade(
                y_test,
                {a: by_name[a].test.y_pred, b: by_name[b].test.y_pred},
                classes,
                train_counts,
                reference=a,
                models=[b],
                indices=test_indices,
                level=level,
            )["models"][b]
        entry = {
            "loss": points[-1][1][0].loss,
            "gamma": points[-1][1][0].gamma,
            "metric": primary,
            "higher_is_better": sign > 0,
            "alphas": [r["alpha"] for r in rows],
            "rows": rows,
            "tail_classes": [classes[i] for i in tail],
            "head_classes": [classes[i] for i in head],
            "peak": {
                "alpha": peak["alpha"],
                "models": peak["models"],
                "validation": peak["val"][primary]["value"],
                "test": peak["test"][primary]["value"],
                "test_low": peak["test"][primary]["low"],
                "test_high": peak["test"][primary]["high"],
                "at_edge": best == len(rows) - 1 and len(rows) > 1,
            },
            "flat_top": {
                "alphas": flat,
                "low": min(flat),
                "high": max(flat),
                "contiguous": flat == [r["alpha"] for r in rows if min(flat) <= r["alpha"] <= max(flat)],
            },
            "from": {"alpha": start["alpha"], "models": start["models"]},
            "trade": trade,
            "level": level,
        }
        entry["summary"] = summary_words(key, entry)
        out[key] = entry
    return out


def _signed(d: dict | None) -> str:
    if not d or d.get("value") is None:
        return "undefined"
    if d.get("low") is None:
        return f"{d['value']:+.3f}"
    return f"{d['value']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"


def summary_words(key: str, e: dict) -> str:
    """One paragraph: the peak, the flat top, the tail's gain and the head's price."""
    peak, flat, start = e["peak"], e["flat_top"], e["from"]
    lvl = f"{e['level']:.0%}"
    words = [
        f"{key}: {e['metric']} on validation peaks at α = {peak['alpha']:g} ({peak['models'][0]}: "
        f"{peak['validation']:.3f}; test {peak['test']:.3f}"
        + (f" [{peak['test_low']:.3f}, {peak['test_high']:.3f}]" if peak["test_low"] is not None else "")
        + ")."
    ]
    if peak["at_edge"]:
        words.append("That is the largest α tried: a stronger weighting might score higher.")
    if len(flat["alphas"]) == 1:
        words.append(f"No other α is within noise of it (paired {lvl} bootstrap on validation): the top is sharp.")
    else:
        span = (
            f"α from {flat['low']:g} to {flat['high']:g}"
            if flat["contiguous"]
            else "α in {" + ", ".join(f"{a:g}" for a in flat["alphas"]) + "}"
        )
        words.append(
            f"Within noise of it (paired {lvl} bootstrap on validation): {span}; any of these is as defensible."
        )
    t = e["trade"]
    if t is None:
        words.append(
            f"The peak is the α = {start['alpha']:g} point ({start['models'][0]}) itself: "
            "weighting buys nothing measurable here."
        )
    else:
        parts = [
            f"tail recall {_signed(t.get('tail_recall_change'))}",
            f"tail precision {_signed(t.get('tail_precision_change'))}",
        ]
        if "head_recall_change" in t:
            parts += [
                f"head recall {_signed(t['head_recall_change'])}",
                f"head precision {_signed(t['head_precision_change'])}",
            ]
        words.append(
            f"From α = {start['alpha']:g} ({start['models'][0]}) to the peak, on test: "
            + ", ".join(parts)
            + f" ({t['verdict']})."
        )
    return " ".join(words)


def curve_rows(curves: dict[str, dict]) -> list[dict]:
    """DVC's plot of the policy's metric against α: one line per family and split, the peak on
    validation ``kept`` (a dot)."""
    out = []
    for key, e in curves.items():
        for split, label in SPLITS.items():
            for row in e["rows"]:
                v = row[split][e["metric"]]
                out.append(
                    {
                        "name": f"{key} ({label})",
                        "alpha": row["alpha"],
                        "policy_metric": v["value"],
                        "low": v["low"],
                        "high": v["high"],
                        "kept": split == "val" and row["alpha"] == e["peak"]["alpha"],
                    }
                )
    return out


def curve_table(curves: dict[str, dict]) -> list[dict]:
    """The α curves as a table (the evaluation run's ``alpha_curves.json``): one row per family,
    α and split, each metric with its interval (``<metric>``, ``<metric>_low``, ``<metric>_high``)."""
    return [
        {
            "family": key,
            "alpha": row["alpha"],
            "split": label,
            **{
                f"{name}{end}": v[part]
                for name, v in row[split].items()
                for end, part in (("", "value"), ("_low", "low"), ("_high", "high"))
            },
        }
        for key, e in curves.items()
        for row in e["rows"]
        for split, label in SPLITS.items()
    ]
