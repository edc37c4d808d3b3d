"""Putting the metrics together: the two class-prior views, intervals, γ curves, plot data.

:func:`evaluate` turns every model's test predictions into what ``reports/metrics.json``,
``reports/audit.json`` (:func:`pipeline.audit.build_audit`) and ``reports/summary.json`` hold,
and :func:`plot_data` into the data of DVC's plots; the evaluate stage writes and logs them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline import PipelineError
from pipeline.artifacts import Audit, Meta, MetricsFile, ModelRecord
from pipeline.audit import build_audit, rarest_class
from pipeline.config import EvaluateConfig
from pipeline.metrics import (
    bootstrap_indices,
    bootstrap_intervals,
    classification_metrics,
    confusion_matrix,
    prior_weights,
)

# A test split whose largest class is at most this many times its smallest counts as balanced.
BALANCED_RATIO = 1.5
# Count-based metrics that get bootstrap intervals (besides the rarest class's recall/precision).
CI_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "micro_f1", "weighted_f1", "mcc",
              "cohen_kappa", "geometric_mean")
# What the γ curves show: a metrics.json name, or rarest_recall / rarest_precision (of the rarest class).
GAMMA_METRICS = ("macro_f1", "micro_f1", "accuracy", "balanced_accuracy", "rarest_recall", "rarest_precision")


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
    rarest_keys = {"rarest_recall": f"recall/{rarest}", "rarest_precision": f"precision/{rarest}"}
    names = {label: rarest_keys.get(label, label) for label in GAMMA_METRICS}
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


@dataclass(frozen=True)
class Evaluation:
    """Everything evaluate computes from the models' test predictions."""

    metrics: MetricsFile
    audit: Audit
    view: View
    rarest: str
    y_true: np.ndarray  # (N,) class indices of the test split
    gammas: dict[str, list[dict]]  # loss -> rows of metrics against gamma

    @property
    def summary(self) -> dict:
        """``reports/summary.json``: see :func:`summary`."""
        return summary(self.metrics, self.audit, self.view.key)


def _test_labels(records: list[ModelRecord]) -> np.ndarray:
    """The test labels every model was scored on; models must agree on them."""
    first = records[0]
    for rec in records[1:]:
        if not np.array_equal(rec.predictions.y_true, first.predictions.y_true):
            raise PipelineError(f"predictions of {rec.name}: y_true differs from {first.name}'s; "
                                "re-run the pipeline so every model sees the same test split")
    return first.predictions.y_true


def evaluate(records: list[ModelRecord], meta: Meta, cfg: EvaluateConfig) -> Evaluation:
    """Every model under every metric, both views, with intervals; the audit; the γ curves.

    The policy is checked (a one-line error for an unknown metric or class) before anything is
    returned, so the stage writes nothing on a bad policy.
    """
    classes = meta["classes"]
    train_counts = [meta["counts"]["train"][c] for c in classes]
    y_true = _test_labels(records)
    view = second_view(train_counts, np.bincount(y_true, minlength=len(classes)).tolist(), cfg.prior)
    rarest = rarest_class(train_counts, classes)
    indices = bootstrap_indices(len(y_true), cfg.bootstrap.resamples, cfg.bootstrap.seed)
    ci_metrics = [*CI_METRICS, f"recall/{rarest}", f"precision/{rarest}"]
    metrics: MetricsFile = {
        rec.name: model_metrics(y_true, rec.predictions.y_pred, rec.predictions.proba, classes, view=view,
                                indices=indices, ci_metrics=ci_metrics, cfg=cfg)
        for rec in records
    }
    models = [{"name": r.name, "loss": r.loss, "gamma": r.gamma, "seed": r.seed, "kind": r.kind} for r in records]
    audit = build_audit(metrics, view=view, cfg=cfg, classes=classes, train_counts=train_counts, models=models,
                        y_true=y_true, predictions={r.name: r.predictions.y_pred for r in records},
                        indices=indices)
    return Evaluation(metrics, audit, view, rarest, y_true, gamma_table(models, metrics, rarest))


def summary(metrics: MetricsFile, audit: Audit, view_key: str) -> dict:
    """The few numbers worth a column in ``dvc exp show``: the policy's pick and every macro-F1."""
    pick = audit["policy"]["pick"]
    out: dict = {"pick": pick or "none"}
    if pick:
        m = metrics[pick]
        out.update({f"pick_{k}": m[k] for k in ("macro_f1", "balanced_accuracy", "accuracy")})
        out.update({f"pick_{view_key}_{k}": m[view_key][k] for k in ("accuracy", "macro_f1")})
    out["macro_f1"] = {name: m["macro_f1"] for name, m in metrics.items()}
    return out


@dataclass(frozen=True)
class PlotData:
    """The data of DVC's plots (``reports/plots/``) per model (the γ curves are ``Evaluation.gammas``)."""

    confusion: dict[str, pd.DataFrame]  # model -> one actual,predicted row per test sample
    pr: dict[str, pd.DataFrame]  # model -> the rarest class's precision-recall curve
    cm: dict[str, np.ndarray]  # model -> (C, C) confusion matrix, for the figures


def plot_data(records: list[ModelRecord], ev: Evaluation, classes: list[str]) -> PlotData:
    from sklearn.metrics import precision_recall_curve

    r = classes.index(ev.rarest)
    confusion, pr, cm = {}, {}, {}
    for rec in records:
        frame = rec.predictions.frame
        confusion[rec.name] = pd.DataFrame({"actual": frame["y_true"].astype(str),
                                            "predicted": frame["y_pred"].astype(str)})
        precision, recall, _ = precision_recall_curve(ev.y_true == r, rec.predictions.proba[:, r])
        pr[rec.name] = pd.DataFrame({"recall": recall, "precision": precision})
        cm[rec.name] = confusion_matrix(ev.y_true, rec.predictions.y_pred, len(classes))
    return PlotData(confusion, pr, cm)
