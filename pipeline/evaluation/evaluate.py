"""Putting the metrics together: the two class-prior views, intervals, γ and α curves, plot data.

:func:`evaluate` turns every model's test predictions into what ``reports/metrics.json``,
``reports/audit.json`` (:func:`pipeline.evaluation.audit.build_audit`) and ``reports/summary.json`` hold,
and :func:`plot_data` into the data of DVC's plots; the evaluate stage writes and logs them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline import PipelineError
from pipeline.artifacts import Audit, Meta, MetricsFile, ModelRecord
from pipeline.evaluation.audit import across_seeds, build_audit, rarest_class
from pipeline.evaluation.evidence import (
    loss_metric_agreement,
    pick_warnings,
    prior_shift,
    special_loss_question,
    tail_trade,
)
from pipeline.config import EvaluateConfig, cost_matrix, deploy_prior_vector
from pipeline.decision.metrics import (
    COST_METRIC,
    HEADLINE,
    bootstrap_indices,
    bootstrap_intervals,
    classification_metrics,
    confidence_bins,
    percentile_interval,
    confusion_matrix,
    prior_weights,
)
from pipeline.training.plan import model_name
from pipeline.rule_specs import rule_spec
from pipeline.decision.selection import COUNT_METRICS, Policy, View, flat_values, policy_of, resampled_values
from pipeline.evaluation.strength import curve_rows, strength_curves

# The count-based headline metrics: they get bootstrap intervals (besides the rarest class's recall/precision).
CI_METRICS = tuple(m for m in HEADLINE if m in COUNT_METRICS)
# What the γ curves show: a metrics.json name, or rarest_recall / rarest_precision (of the rarest class).
# (micro-F1 is left out: with one label per row it equals accuracy)
GAMMA_METRICS = ("macro_f1", "accuracy", "balanced_accuracy", "rarest_recall", "rarest_precision")


def model_metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray,
    classes: list[str],
    *,
    view: View,
    indices: np.ndarray | None,
    ci_metrics: list[str],
    cfg: EvaluateConfig,
    cost: np.ndarray | None = None,
) -> dict:
    """One candidate's metrics on one split: held out, with ``ci`` when ``indices`` are given,
    and under the reweighted view (its key)."""

    def one(weights):
        m = classification_metrics(
            y_true, y_pred, classes, proba=proba, sample_weight=weights, ece_bins=cfg.ece_bins, cost=cost
        )
        if indices is not None:
            ci = bootstrap_intervals(
                y_true,
                y_pred,
                classes,
                indices=indices,
                metrics=ci_metrics,
                level=cfg.bootstrap.level,
                sample_weight=weights,
                cost=cost,
            )
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
    rarest_keys = {"rarest_recall": f"recall/{rarest}", "rarest_precision": f"precision/{rarest}"}
    names = {label: rarest_keys.get(label, label) for label in GAMMA_METRICS}
    by_loss: dict[str, dict[float, list[str]]] = {}
    for m in models:  # a γ × α grid: one line per alpha (weighted_focal_a0.5)
        if m["gamma"] is not None:
            line = model_name(m["loss"], None, 0, 1, m.get("alpha"))
            by_loss.setdefault(line, {}).setdefault(float(m["gamma"]), []).append(m["name"])
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


@dataclass(frozen=True)
class Evaluation:
    """Everything evaluate computes from the candidates' validation and test predictions."""

    metrics: MetricsFile
    audit: Audit
    policy: Policy
    rarest: str
    y_true: np.ndarray  # (N,) class indices of the test split
    gammas: dict[str, list[dict]]  # loss -> rows of test metrics against gamma

    @property
    def view(self) -> View:
        return self.policy.view

    @property
    def summary(self) -> dict:
        """``reports/summary.json``: see :func:`summary`."""
        return summary(self.audit)


def _labels(records: list[ModelRecord], split: str) -> np.ndarray:
    """The labels of ``split`` every candidate was scored on; candidates must agree on them (and
    then share one array of them)."""
    first = getattr(records[0], split)
    for rec in records[1:]:
        preds = getattr(rec, split)
        if not np.array_equal(preds.y_true, first.y_true):
            raise PipelineError(
                f"{split} predictions of {rec.name}: y_true differs from {records[0].name}'s; "
                "re-run the pipeline so every candidate sees the same split"
            )
        preds.y_true = first.y_true
    return first.y_true


def evaluate(records: list[ModelRecord], meta: Meta, cfg: EvaluateConfig, *, reference_loss: str) -> Evaluation:
    """Every candidate under every metric on validation and test, both views; the test intervals;
    the audit (the pick made on validation); the γ curves.

    ``reference_loss`` is what "against the reference" compares with: ``ce`` when trained, else
    the first loss of ``train.losses``. The policy is checked (a one-line error for an unknown
    metric or class) before anything is returned, so the stage writes nothing on a bad policy.
    """
    classes = meta["classes"]
    train_counts = [meta["counts"]["train"][c] for c in classes]
    y_val, y_test = _labels(records, "val"), _labels(records, "test")
    policy = policy_of(meta, cfg)
    view = policy.view
    rarest = rarest_class(train_counts, classes)
    cost = cost_matrix(cfg.costs, classes, train_counts) if cfg.costs else None
    deploy = deploy_prior_vector(cfg.deploy_prior, classes)
    # the same seed for both splits: any resample can be regenerated from it (indices are not stored)
    test_idx = bootstrap_indices(len(y_test), cfg.bootstrap.resamples, cfg.bootstrap.seed)
    val_idx = bootstrap_indices(len(y_val), cfg.bootstrap.resamples, cfg.bootstrap.seed)
    ci_metrics = [*CI_METRICS, *((COST_METRIC,) if cost is not None else ()), f"recall/{rarest}", f"precision/{rarest}"]
    metrics: MetricsFile = {}
    for rec in records:
        kw = dict(view=view, ci_metrics=ci_metrics, cfg=cfg, cost=cost)
        metrics[rec.name] = {
            **model_metrics(y_test, rec.test.y_pred, rec.test.proba, classes, indices=test_idx, **kw),
            "val": model_metrics(y_val, rec.val.y_pred, rec.val.proba, classes, indices=None, **kw),
        }
    audit = build_audit(
        records,
        metrics,
        policy=policy,
        cfg=cfg,
        classes=classes,
        train_counts=train_counts,
        reference_loss=reference_loss,
        cost=cost,
        val_indices=val_idx,
        test_indices=test_idx,
        deploy_prior=deploy,
    )
    pick, reference = audit["policy"]["pick"], audit["reference"]["model"]
    reps = [row["model"] for row in audit["leaderboard"]]
    top = list(dict.fromkeys([*reps[:4], *([reference] if reference else [])]))
    audit["prior_shift"] = prior_shift(
        records,
        reps,
        policy=policy,
        cfg=cfg,
        classes=classes,
        train_counts=train_counts,
        deploy_prior=deploy,
        cost=cost,
        top=top,
        pick=pick,
    )
    audit["special_loss"] = special_loss_question(
        records,
        metrics,
        reference_loss=reference_loss,
        cfg=cfg,
        policy=policy,
        classes=classes,
        train_counts=train_counts,
        cost=cost,
        test_indices=test_idx,
    )
    audit["loss_metric_agreement"] = loss_metric_agreement(records, metric=policy.metric, classes=classes)
    plain = [r for r in records if r.rule is None]
    if reference:
        others = [r.name for r in plain if r.name != reference and r.kind == "mlp"]
        if pick and pick != reference and pick not in others:
            others.append(pick)
        audit["tail_trade"] = tail_trade(
            y_test,
            {r.name: r.test.y_pred for r in records},
            classes,
            train_counts,
            reference=reference,
            models=others,
            indices=test_idx,
            level=cfg.bootstrap.level,
        )
    if "majority" in metrics:
        audit["accuracy_paradox"] = accuracy_paradox(metrics["majority"], view)
    groups: dict[str, list[str]] = {}
    for r in plain:  # a configuration across its seeds
        groups.setdefault(model_name(r.loss, r.gamma, r.seed, n_seeds=1, alpha=r.alpha), []).append(r.name)
    audit["across_seeds"] = across_seeds(flat_values(metrics, view.key), groups, audit["metrics"])
    audit["weight_strength"] = strength_curves(
        records,
        metrics,
        policy=policy,
        cfg=cfg,
        classes=classes,
        train_counts=train_counts,
        val_indices=val_idx,
        test_indices=test_idx,
        cost=cost,
    )
    by_name = {r.name: r for r in records}
    shipped = pick or audit["policy"].get("closest")
    audit["calibration"] = (
        shipped_calibration(by_name[shipped], metrics[shipped], y_test, classes, test_idx, cfg) if shipped else None
    )
    counts_higher = not (policy.reads_probabilities or policy.lower_is_better)
    if audit["estimate"] and not policy.reweighted and counts_higher:
        audit["estimate"]["chance"] = shuffled_score(
            by_name[pick].test.y_pred, y_test, classes, policy.metric, seed=cfg.bootstrap.seed
        )
    cap = {r.name: r.params.get("train", {}).get("epochs") for r in plain if r.kind == "mlp"}
    stopped = [m for m, n in cap.items() if n and by_name[m].training.get("epochs_run", 0) >= n]
    epochs = {n for n in cap.values() if n}
    audit["warnings"] = pick_warnings(
        audit, metrics, classes, min_recall=cfg.min_recall, stopped=stopped, epochs=max(epochs, default=None)
    )
    models = [
        {"name": r.name, "loss": r.loss, "gamma": r.gamma, "alpha": r.alpha, "seed": r.seed, "kind": r.kind}
        for r in plain
    ]
    return Evaluation(metrics, audit, policy, rarest, y_test, gamma_table(models, metrics, rarest))


def shuffled_score(
    y_pred: np.ndarray, y_true: np.ndarray, classes: list[str], metric: str, *, seed: int, times: int = 20
) -> float | None:
    """The policy's metric of decisions ``y_pred`` shuffled over the rows (``times`` seeded
    permutations, averaged): what the same mix of answers scores by chance."""
    rng = np.random.default_rng(seed)
    value = float(
        np.mean(
            [classification_metrics(y_true, rng.permutation(y_pred), classes).get(metric, np.nan) for _ in range(times)]
        )
    )
    return None if np.isnan(value) else value


def shipped_calibration(
    rec: ModelRecord, entry: dict, y_test: np.ndarray, classes: list[str], indices, cfg: EvaluateConfig
) -> dict:
    """How far the probabilities candidate ``rec`` ships (``p_<class>``) are to be trusted: how they
    were calibrated, their top-label ECE on validation (cross-fitted) and on test with its bootstrap
    interval, their log loss, and the test split's reliability bins (the ECE's: equal width, by the
    top probability; ``confidence`` and ``accuracy`` are the bin's means)."""
    proba = rec.test.proba
    ece = resampled_values(["ece"], y_test, rec.test.y_pred, proba, classes, indices=indices, ece_bins=cfg.ece_bins)[
        "ece"
    ]
    low, high = percentile_interval(ece, cfg.bootstrap.level)
    conf, hit, bins = confidence_bins(proba, y_test, cfg.ece_bins)
    reliability = [
        {
            "low": int(b) / cfg.ece_bins,
            "high": (int(b) + 1) / cfg.ece_bins,
            "rows": int((bins == b).sum()),
            "confidence": float(conf[bins == b].mean()),
            "accuracy": float(hit[bins == b].mean()),
        }
        for b in np.unique(bins)
    ]
    posterior = rule_spec(rec.rule).posterior if rec.rule else ""
    method = (
        f"the {rec.rule} rule's own ({posterior})"
        if posterior
        else f"{rec.calibration['method'].replace('_', ' ')} on validation"
        if rec.calibration
        else "none"
    )
    return {
        "candidate": rec.name,
        "method": method,
        "bins": cfg.ece_bins,
        "max_ece": cfg.max_ece,
        "validation_ece": entry["val"]["ece"],
        "test_ece": entry["ece"],
        "test_ece_low": low,
        "test_ece_high": high,
        "validation_log_loss": entry["val"]["log_loss"],
        "test_log_loss": entry["log_loss"],
        "reliability": reliability,
    }


def accuracy_paradox(majority: dict, view: View) -> dict:
    """The majority baseline's accuracy against its macro-F1 on test, in both views."""
    maj_h, maj_r = majority, majority[view.key]
    return {
        "model": "majority",
        "accuracy_held_out": maj_h["accuracy"],
        f"accuracy_{view.key}": maj_r["accuracy"],
        "macro_f1_held_out": maj_h["macro_f1"],
        f"macro_f1_{view.key}": maj_r["macro_f1"],
        "summary": (
            f"always predicting the most frequent training class scores accuracy "
            f"{maj_r['accuracy']:.3f} with macro-F1 {maj_r['macro_f1']:.3f} on the test split "
            f"{view.description}, and accuracy {maj_h['accuracy']:.3f} with macro-F1 "
            f"{maj_h['macro_f1']:.3f} as held out"
        ),
    }


SUMMARY_DECIMALS = 4


def summary(audit: Audit) -> dict:
    """``reports/summary.json``, DVC's metrics file: the few numbers worth a column in ``dvc exp
    show`` and ``dvc metrics diff``. The policy's metric; the pick (its name a value, never a key:
    DVC reads a ``.`` in a key as nesting), its validation and test scores with the test interval
    and P(best) (``pick_*``); the reference and its validation and test scores (``ref*``). Every
    score is rounded to :data:`SUMMARY_DECIMALS` decimals, so that a re-run on another CPU (torch's
    floats differ in the last digits) diffs as nothing; short keys keep ``dvc metrics show`` on one
    screen."""
    pick, ref = audit["policy"]["pick"], audit["reference"]["model"]

    def rounded(value):
        return None if value is None else round(float(value), SUMMARY_DECIMALS)

    out: dict = {"policy_metric": audit["policy"]["metric"], "pick": pick or "none"}
    est = audit["estimate"]
    if pick and est:
        out.update(
            {
                "pick_val": rounded(est["validation"]),
                "pick_test": rounded(est["test"]),
                "pick_test_low": rounded(est["low"]),
                "pick_test_high": rounded(est["high"]),
                "pick_p_best": rounded(audit["policy"]["p_best"]),
            }
        )
    if ref:
        row = next((r for r in audit["leaderboard"] if ref in r["members"]), None)
        if row:
            out.update({"ref": ref, "ref_val": rounded(row["validation"]), "ref_test": rounded(row["test"])})
    return out


# The data of DVC's plots (dvc.yaml's top-level ``plots``), file names under ``reports/plots/``.
# Each is a JSON list of rows with the same keys; ``name`` is what the lines (or matrices) are
# told apart by (the custom templates in .dvc/plots/ colour or facet by it).
PLOT_FILES = {
    "pr": "pr.json",
    "gamma": "gamma.json",
    "alpha": "alpha.json",
    "training": "training.json",
    "confusion": "confusion.json",
}
PR_TOP = 5  # the policy's first candidates whose precision-recall curves are overlaid (with the reference's)
PR_POINTS = 1000  # points per precision-recall curve at most (a large split's curve is thinned)


def thin_curve(n: int, points: int = PR_POINTS) -> np.ndarray:
    """Indices of at most ``points`` of a curve's ``n`` points, evenly spread, both ends kept
    (every point when ``n <= points``)."""
    if n <= points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, points).round().astype(np.int64))


@dataclass(frozen=True)
class PlotData:
    """The data of DVC's plots (:data:`PLOT_FILES`, one list of rows each) and the confusion
    matrices the figures draw."""

    rows: dict[str, list[dict]]  # PLOT_FILES key -> rows
    cm: dict[str, np.ndarray]  # model -> (C, C) confusion matrix, for the figures: every model and the pick


def _ranks(audit: Audit) -> dict[str, int]:
    """candidate -> its row in the policy's leaderboard (identical candidates share a row)."""
    return {m: i for i, row in enumerate(audit["leaderboard"]) for m in row["members"]}


def pr_rows(records: list[ModelRecord], ev: Evaluation, classes: list[str], top: int = PR_TOP) -> list[dict]:
    """The rarest class's precision-recall curve on test for the policy's first ``top``
    candidates (ranked on validation) and the reference; recall ascending, each curve's points in
    drawing order, at most :data:`PR_POINTS` of them (:func:`thin_curve`). ``name`` reads
    ``#<rank> <candidate>``, with ``(pick)``, ``(reference)``.
    The reference's curve is its own even where an identical candidate (same decisions, other
    probabilities) stands for its group."""
    from sklearn.metrics import precision_recall_curve

    audit, by_name = ev.audit, {r.name: r for r in records}
    pick, ref = audit["policy"]["pick"], audit["reference"]["model"]
    board = audit["leaderboard"]
    chosen = [row["model"] for row in board[:top]]
    if ref and ref in by_name and ref not in chosen:  # (a member of a shown group has a curve of its own)
        chosen.append(ref)
    ranks, r = _ranks(audit), classes.index(ev.rarest)
    out = []
    for name in chosen:
        precision, recall, _ = precision_recall_curve(ev.y_true == r, by_name[name].test.proba[:, r])
        keep = thin_curve(len(recall))
        precision, recall = precision[keep], recall[keep]
        roles = ", ".join(role for role, who in (("pick", pick), ("reference", ref)) if name == who)
        label = f"#{ranks.get(name, len(ranks)) + 1} {name}" + (f" ({roles})" if roles else "")
        out += [
            {"name": label, "recall": float(x), "precision": float(y)} for x, y in zip(recall[::-1], precision[::-1])
        ]
    return out


def gamma_rows(ev: Evaluation) -> list[dict]:
    """:attr:`Evaluation.gammas` as one list, ``name`` the loss: one line per γ-swept loss."""
    return [{"name": loss, **row} for loss, rows in ev.gammas.items() for row in rows]


def training_rows(records: list[ModelRecord], ev: Evaluation) -> list[dict]:
    """Per MLP loss, its best model's (the policy's order on validation) early-stopping curve: the
    metric early stopping monitored on its slice of the training split, per epoch, with the
    epoch it kept (``kept``)."""
    ranks = _ranks(ev.audit)
    best: dict[str, ModelRecord] = {}
    for rec in sorted(
        (r for r in records if r.rule is None and r.kind == "mlp"), key=lambda r: ranks.get(r.name, len(ranks))
    ):
        best.setdefault(rec.loss, rec)
    out = []
    for loss, rec in best.items():
        monitor = rec.training.get("monitor")
        for h in rec.training.get("history", []):
            if monitor and f"stop_{monitor}" in h:
                out.append(
                    {
                        "name": rec.name,
                        "epoch": int(h["epoch"]),
                        "stop_metric": float(h[f"stop_{monitor}"]),
                        "monitor": monitor,
                        "kept": int(h["epoch"]) == rec.training["best_epoch"],
                    }
                )
    return out


CONFUSION_ROWS = 20_000  # test rows up to which the confusion plot's data has a row per sample


def confusion_rows(records: list[ModelRecord], ev: Evaluation, classes: list[str]) -> list[dict]:
    """The pick's and the reference's test predictions, one ``actual``, ``predicted`` row per
    sample, ``name`` ``pick: <candidate>`` or ``reference: <candidate>``; above
    :data:`CONFUSION_ROWS` test rows, one row per non-empty cell with its count in ``rows``."""
    by_name = {r.name: r for r in records}
    pick, ref = ev.audit["policy"]["pick"], ev.audit["reference"]["model"]
    out = []
    for role, name in (("pick", pick), ("reference", ref)):
        if name and name in by_name:
            test = by_name[name].test
            out += confusion_plot_rows(f"{role}: {name}", test.y_true, test.y_pred, classes)
    return out


def confusion_plot_rows(label: str, y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> list[dict]:
    """One ``name``, ``actual``, ``predicted`` row per sample; above :data:`CONFUSION_ROWS`
    samples one per non-empty cell, its count in ``rows`` (the template sums ``rows``, 1 where
    absent)."""
    if len(y_true) <= CONFUSION_ROWS:
        return [{"name": label, "actual": classes[a], "predicted": classes[p]} for a, p in zip(y_true, y_pred)]
    cm = confusion_matrix(y_true, y_pred, len(classes))
    return [
        {"name": label, "actual": classes[a], "predicted": classes[p], "rows": int(cm[a, p])}
        for a, p in zip(*np.nonzero(cm))
    ]


def plot_data(records: list[ModelRecord], ev: Evaluation, classes: list[str]) -> PlotData:
    """Every candidate in ``records``: the rows of each DVC plot, and the confusion matrices of
    every trained model and the pick (the figures')."""
    pick = ev.audit["policy"]["pick"]
    cm = {
        rec.name: confusion_matrix(ev.y_true, rec.test.y_pred, len(classes))
        for rec in records
        if rec.rule is None or rec.name == pick
    }
    rows = {
        "pr": pr_rows(records, ev, classes),
        "gamma": gamma_rows(ev),
        "alpha": curve_rows(ev.audit.get("weight_strength") or {}),
        "training": training_rows(records, ev),
        "confusion": confusion_rows(records, ev, classes),
    }
    return PlotData(rows, cm)
