"""What the decide stage makes of the trained models: each model's calibration, and the
``<model>+<rule>`` candidates (which models get decision rules, and each rule), all fitted on
validation, cross-fitted for the validation predictions and fitted once for test.

Every candidate ships its model's calibrated probabilities (:func:`pipeline.decision.rules.calibrate`)
beside the decisions its rule makes on the model's own ones (a rule with a posterior of its own,
as the ``cost`` rule has, ships that one: :data:`pipeline.rule_specs.RULE_SPECS`); a model's own
candidate decides by its argmax, as trained.

The maths of the rules is :mod:`pipeline.decision.rules`'s; the policy as an objective is
:mod:`pipeline.decision.selection`'s. Nothing here reads a test label: the test split's features and
probabilities go through the fitted rule, and its ``y_true`` is copied into the output as is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.ensemble import IsolationForest

from pipeline import PipelineError, in_parallel
from pipeline.artifacts import Meta, ModelRecord, candidate_name, predictions_frame
from pipeline.config import EvaluateConfig, cost_matrix
from pipeline.decision.rules import (
    RuleContext,
    anomaly_scores,
    apply_rule,
    calibrate,
    calibration_method,
    crossfit,
    crossfit_calibration,
    crossfit_folds,
    fit_calibration,
    fit_isolation_forest,
    fit_rule,
    logp_of,
    parameter_count,
)
from pipeline.rule_specs import ANOMALY_SCORES, COST, rule_spec
from pipeline.decision.selection import Objective, policy_of

log = logging.getLogger(__name__)


@dataclass
class Decision:
    """One model's calibration, or one fitted rule: its files' contents."""

    name: str  # <model>, or <model>+<rule>
    group: str  # its model's loss, or baselines
    frames: dict[str, pd.DataFrame]  # split -> predictions (val: cross-fitted)
    fitted: dict  # outputs/decisions/<name>.json (a rule's) or outputs/decisions/calibration/<name>.json

    @property
    def is_rule(self) -> bool:
        return "rule" in self.fitted


ANOMALY_FOREST = "anomaly_forest.skops"  # the anomaly rule's isolation forest, beside the rules' files


def informative(rec: ModelRecord) -> bool:
    """False for a model whose probabilities are the same for every row (``majority``)."""
    p = rec.val.proba
    return bool(np.ptp(p, axis=0).max() > 0)


def models_to_decide(
    records: list[ModelRecord], setting: str | tuple[str, ...], objective: Objective, w: np.ndarray | None
) -> list[ModelRecord]:
    """``evaluate.decisions.models`` (``setting``): ``best`` (each loss's best on validation under
    the policy's ``objective``, its rows weighted by ``w``), ``all``, or the listed names. Models
    that give every row the same probabilities are left out."""
    usable = [r for r in records if informative(r)]
    if setting == "all":
        return usable
    if setting != "best":
        names = {r.name: r for r in records}
        unknown = [m for m in setting if m not in names]
        if unknown:
            raise PipelineError(
                f"params.yaml: evaluate.decisions.models names unknown model {unknown[0]!r}; "
                f"trained: {', '.join(names)}"
            )
        return [names[m] for m in setting]
    best = []
    for loss in dict.fromkeys(r.loss for r in usable):
        members = [r for r in usable if r.loss == loss]
        scored = {r.name: objective(r.val.y_true, r.val.y_pred, r.val.proba, w) for r in members}
        size = {r.name: r.fitted_parameters for r in members}
        # fewest violations first, then the policy's order
        best_name = min(scored, key=lambda m: (scored[m][0], -scored[m][1], size[m], m))
        best.append(next(r for r in members if r.name == best_name))
    return best


def decide_all(
    records: list[ModelRecord],
    meta: Meta,
    cfg: EvaluateConfig,
    *,
    features: dict[str, np.ndarray] | None = None,
    write: Callable[[Decision], None] | None = None,
) -> tuple[list[Decision], IsolationForest | None]:
    """Every model's calibration and every (model, rule) of ``evaluate.decisions``, fitted on
    validation, and the anomaly rule's isolation forest (None without that rule).

    ``write``, when given, is called with each decision as soon as it is made (in the worker that
    made it), and the decisions returned hold no frames: however many rules and rows, one
    decision's predictions are in memory at a time per worker.

    ``features`` (``train``, ``val``, ``test`` feature arrays and ``y_train``) are needed by the
    ``anomaly`` rule only. Each rule's file holds the ``context`` that applying it to new rows
    needs (:func:`rule_context`): the log training prior, the rarest class, the view's prior ratio.
    """
    classes = meta["classes"]
    rules = list(cfg.decisions.rules)
    if not records:
        return [], None
    train_counts = np.array([meta["counts"]["train"][c] for c in classes])
    val_counts = np.array([meta["counts"]["val"][c] for c in classes], dtype=float)
    policy = policy_of(meta, cfg)
    cost = cost_matrix(cfg.costs, classes, list(train_counts)) if cfg.costs else None
    for rule in [r for r in rules if rule_spec(r).needs == COST and cost is None]:
        log.info("rule %s skipped: evaluate.costs is not set", rule)
        rules.remove(rule)
    rarest = int(np.argmin(train_counts))
    scores = forest = None
    if any(rule_spec(r).needs == ANOMALY_SCORES for r in rules):
        if (train_counts == train_counts.min()).sum() > 1:
            for rule in [r for r in rules if rule_spec(r).needs == ANOMALY_SCORES]:
                log.info(
                    "rule %s skipped: %d classes share the smallest training count (%d)",
                    rule,
                    int((train_counts == train_counts.min()).sum()),
                    int(train_counts.min()),
                )
                rules.remove(rule)
        else:
            if features is None:
                raise PipelineError("the anomaly rule needs the prepared features (internal: pass features=)")
            others = features["y_train"] != rarest
            forest = fit_isolation_forest(features["train"][others], seed=cfg.bootstrap.seed)
            scores = {split: anomaly_scores(forest, features[split]) for split in ("val", "test")}
    prior_ratio = np.asarray(policy.view.prior) / (val_counts / val_counts.sum()) if policy.reweighted else None
    objective = policy.objective(classes, cost=cost, ece_bins=cfg.ece_bins)
    y_val = records[0].val.y_true
    w = policy.weights(y_val)
    chosen = {r.name for r in models_to_decide(records, cfg.decisions.models, objective, w)} if rules else set()
    folds = crossfit_folds(y_val, cfg.crossfit_folds, cfg.bootstrap.seed)
    crossfitted = {"folds": int(folds.max()) + 1, "seed": cfg.bootstrap.seed}
    method = calibration_method(len(y_val), len(classes))
    if method != "vector_scaling":
        log.info(
            "calibration: %s (%d validation rows are too few for a scale and a bias per class)", method, len(y_val)
        )

    def context(split: str) -> RuleContext:
        return RuleContext(
            classes=classes,
            log_train_prior=np.log(train_counts / train_counts.sum()),
            cost=cost,
            prior_ratio=prior_ratio,
            rarest=rarest,
            anomaly_scores=None if scores is None else scores[split],
            seed=cfg.bootstrap.seed,
        )

    def emit(decision: Decision) -> Decision:
        if write is not None:
            write(decision)
            decision.frames = {}
        return decision

    def one(rec: ModelRecord) -> list[Decision]:
        """The model's calibration, then each rule on it (when it is among those decided)."""
        calibration = fit_calibration(logp_of(rec.val.proba), y_val, method)
        shipped = {
            "val": crossfit_calibration(rec.val.proba, y_val, folds, method),
            "test": calibrate(rec.test.proba, calibration),
        }
        out = [
            emit(
                Decision(
                    rec.name,
                    rec.group,
                    {
                        "val": predictions_frame(shipped["val"], y_val, classes, rec.val.y_pred),
                        "test": predictions_frame(shipped["test"], rec.test.y_true, classes, rec.test.y_pred),
                    },
                    {"model": rec.name, "calibration": calibration, "crossfit": crossfitted},
                )
            )
        ]
        return out + [emit(ruled(rec, rule, shipped)) for rule in (rules if rec.name in chosen else ())]

    def ruled(rec: ModelRecord, rule: str, shipped: dict[str, np.ndarray]) -> Decision:
        name = candidate_name(rec.name, rule)
        val_proba, val_pred = crossfit(rule, rec.val.proba, y_val, folds, objective, context("val"), sample_weight=w)
        params = fit_rule(rule, rec.val.proba, y_val, objective, context("val"), sample_weight=w)
        test_proba, test_pred = apply_rule(rule, params, rec.test.proba, context("test"))
        fitted = {
            "model": rec.name,
            "rule": rule,
            "group": rec.group,
            "params": params,
            "parameters": parameter_count(rule, params),
            "fitted_on": {"split": "val", "rows": int(len(y_val)), **policy.described()},
            "crossfit": crossfitted,
            "context": {
                "log_train_prior": context("val").log_train_prior.tolist(),
                "rarest": rarest,
                "prior_ratio": None if prior_ratio is None else np.asarray(prior_ratio).tolist(),
            },
        }
        spec = rule_spec(rule)
        if spec.needs == ANOMALY_SCORES:
            fitted["context"]["forest"] = ANOMALY_FOREST
        if spec.needs == COST:
            fitted["cost_matrix"] = cost.tolist()
        if not spec.posterior:  # the probabilities shipped: the model's, calibrated (or the rule's own)
            val_proba, test_proba = shipped["val"], shipped["test"]
        frames = {
            "val": predictions_frame(val_proba, y_val, classes, val_pred),
            "test": predictions_frame(test_proba, rec.test.y_true, classes, test_pred),
        }
        log.debug("%s: %s", name, ", ".join(f"{k} {_short(v)}" for k, v in params.items()))
        return Decision(name, rec.group, frames, fitted)

    return [d for ds in in_parallel(one, [(rec,) for rec in records]) for d in ds], forest


def rule_context(fitted: dict, anomaly_scores: np.ndarray | None = None) -> RuleContext:
    """The :class:`~pipeline.decision.rules.RuleContext` a rule's file describes, for new rows
    (``anomaly_scores``: theirs, the anomaly rule only)."""
    ctx = fitted["context"]
    cost = fitted.get("cost_matrix")
    return RuleContext(
        classes=[],
        log_train_prior=np.asarray(ctx["log_train_prior"], dtype=np.float64),
        cost=None if cost is None else np.asarray(cost, dtype=np.float64),
        prior_ratio=None if ctx["prior_ratio"] is None else np.asarray(ctx["prior_ratio"]),
        rarest=int(ctx["rarest"]),
        anomaly_scores=anomaly_scores,
    )


def _short(value) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(f"{v:.2f}" for v in value) + "]"
    return "none" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)
