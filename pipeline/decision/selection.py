"""Selection on the validation split: the views, the policy as an objective, the pick, P(best)
and the pick under shifted class priors.

Nothing here reads test data: every function takes the validation split's labels and a
candidate's validation predictions. The test split is scored elsewhere
(:mod:`pipeline.evaluation.evaluate`), once per candidate, for the unbiased estimate.

- :class:`Policy` (:func:`policy_of`) is ``evaluate.select`` read once: the metric, the
  constraints, the view they are read under and which way is better. Everything that picks,
  ranks, fits a rule, reports or registers is given one; :func:`check_policy_metrics` and
  :func:`check_policy` check its metric names (before training, and against the classes).
- :func:`second_view` fixes the reweighted view's class prior (from the training and validation
  counts).
- :func:`policy_objective` turns ``evaluate.select`` into ``objective(y, y_pred, proba, w) ->
  (violation, score)``: what every decision rule maximises when fitted and what the pick
  maximises (:func:`select`, ties to fewer fitted parameters, then by name).
- :func:`p_best`: each candidate's probability of being the pick over bootstrap resamples of the
  validation split (the same resamples for all, regenerated from a seed).
- :func:`prior_family` and :func:`kish_ess`: the deployment priors the policy is re-run under,
  by reweighting validation rows (label shift: p(x | y) fixed, the class prior moves).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from pipeline import PipelineError
from pipeline.config import Constraint, SelectConfig, parse_constraint
from pipeline.decision.metrics import (
    COST_METRIC,
    SUMMARY,
    Resamples,
    as_resamples,
    PER_CLASS,
    bootstrap_distribution,
    class_count_metrics,
    class_counts,
    classification_metrics,
    cost_of,
    lower_is_better,
    prior_weights,
    safe_ratio,
)

# A validation split whose largest class is at most this many times its smallest counts as balanced.
BALANCED_RATIO = 1.5
# Metrics of the confusion matrix alone (fast: no probabilities); every other one reads them.
COUNT_METRICS = frozenset(
    {
        "accuracy",
        "balanced_accuracy",
        "macro_f1",
        "micro_f1",
        "weighted_f1",
        "mcc",
        "cohen_kappa",
        "geometric_mean",
        "macro_precision",
        "macro_recall",
        "micro_precision",
        "micro_recall",
        "weighted_precision",
        "weighted_recall",
        COST_METRIC,
    }
)

Objective = Callable[[np.ndarray, np.ndarray, np.ndarray, "np.ndarray | None"], tuple[float, float]]


@dataclass(frozen=True)
class View:
    """The second look at a split: reweighted to another class prior."""

    key: str  # "train_prior" or "uniform_prior": the key in metrics.json
    prior: list[float]  # target class prior, in class order
    description: str


def second_view(train_counts: Sequence[int], val_counts: Sequence[int], setting: str) -> View:
    """``train``: the training prior (as deployed); ``uniform``: every class equal; ``auto``: the
    training prior when the validation split is balanced, else uniform. Decided from the
    validation counts, so the view never depends on the test split."""
    train, val = np.asarray(train_counts, float), np.asarray(val_counts, float)
    if setting == "auto":
        setting = "train" if val.max() <= BALANCED_RATIO * max(val.min(), 1) else "uniform"
    if setting == "train":
        return View(
            "train_prior",
            (train / train.sum()).tolist(),
            "reweighted to the training split's class prior (as deployed, if deployment data "
            "look like the training data)",
        )
    return View(
        "uniform_prior", [1 / len(val)] * len(val), "reweighted to a uniform class prior (every class counts equally)"
    )


def flat_values(metrics: dict[str, dict], view_key: str) -> dict[str, dict[str, float]]:
    """``model -> metric -> value`` with the held-out metrics under their own names and the
    reweighted view's under ``<view_key>/<name>``; intervals are left out."""
    out = {}
    for model, m in metrics.items():
        row = {k: v for k, v in m.items() if isinstance(v, (int, float))}
        row.update({f"{view_key}/{k}": v for k, v in m[view_key].items() if isinstance(v, (int, float))})
        out[model] = row
    return out


def selection_view(meta, cfg) -> View:
    """The reweighted view of a run (``meta`` its :class:`pipeline.artifacts.Meta`, ``cfg`` its
    :class:`pipeline.config.EvaluateConfig`): :func:`second_view` of the training and
    validation counts."""
    classes = meta["classes"]
    return second_view(
        [meta["counts"]["train"][c] for c in classes], [meta["counts"]["val"][c] for c in classes], cfg.prior
    )


@dataclass(frozen=True)
class Policy:
    """The selection policy, read once from ``evaluate.select`` (:func:`policy_of`): the metric,
    the constraints, the view they are read under and which way is better. Whatever picks, ranks,
    fits a rule, reports or registers takes a Policy; no other module reads ``evaluate.select``."""

    metric: str  # as written: macro_f1, recall/8, log_loss
    constraints: tuple[Constraint, ...]  # as written, on held-out metric names
    view: View  # this run's reweighted view
    reweighted: bool  # read under the view (evaluate.select.view: reweighted), else as held out
    tie_break: ClassVar[str] = "fewer fitted parameters, then name"

    @property
    def setting(self) -> str:
        """``held_out`` or ``reweighted``, as ``evaluate.select.view`` says it."""
        return "reweighted" if self.reweighted else "held_out"

    def read(self, name: str) -> str:
        """``name`` as the policy reads it: itself as held out, ``<view key>/<name>`` reweighted."""
        return f"{self.view.key}/{name}" if self.reweighted else name

    @property
    def primary(self) -> str:
        """The policy's metric as it is read (:meth:`read`)."""
        return self.read(self.metric)

    @property
    def scoped(self) -> list[Constraint]:
        """The constraints as they are read (:meth:`read`)."""
        return [Constraint(self.read(c.metric), c.op, c.bound) for c in self.constraints]

    @property
    def names(self) -> list[str]:
        """The metric and every constraint's, once each, as written."""
        return _names(self)

    @property
    def lower_is_better(self) -> bool:
        return lower_is_better(self.metric)

    @property
    def reads_probabilities(self) -> bool:
        return any(reads_probabilities(n) for n in self.names)

    def weights(self, y: np.ndarray) -> np.ndarray | None:
        """Per-row weights of a split as the policy reads it: None held out, else those giving it
        the view's prior."""
        return shifted_weights(y, self.view.prior) if self.reweighted else None

    def objective(self, classes: list[str], *, cost: np.ndarray | None = None, ece_bins: int = 15) -> Objective:
        """:func:`policy_objective` of this policy."""
        return policy_objective(self, classes, cost=cost, ece_bins=ece_bins)

    def described(self) -> dict:
        """``view``, ``metric`` and ``constraints`` as a rule's file records what it was fitted for."""
        return {"view": self.setting, "metric": self.metric, "constraints": [str(c) for c in self.constraints]}


def policy_of(meta, cfg) -> Policy:
    """The :class:`Policy` of ``cfg.select`` (``cfg`` an :class:`pipeline.config.EvaluateConfig`)
    on the run described by ``meta``."""
    select = cfg.select
    return Policy(
        select.metric,
        tuple(parse_constraint(c) for c in select.constraints),
        selection_view(meta, cfg),
        select.view == "reweighted",
    )


def _constraints(select: SelectConfig | Policy) -> list[Constraint]:
    return [c if isinstance(c, Constraint) else parse_constraint(c) for c in select.constraints]


def _policy_names(select: SelectConfig | Policy) -> list[tuple[str, str]]:
    """``(metric name, params key)`` of the policy's metric and of every constraint's."""
    return [
        (select.metric, "evaluate.select.metric"),
        *((c.metric, "evaluate.select.constraints") for c in _constraints(select)),
    ]


def _names(select: SelectConfig | Policy) -> list[str]:
    """The policy's metric and every constraint's, once each, as written."""
    return list(dict.fromkeys(name for name, _ in _policy_names(select)))


def _unknown_metric(name: str, key: str, summary: Iterable[str] = SUMMARY) -> PipelineError:
    return PipelineError(
        f"params.yaml: {key} names unknown metric {name!r}; use one of {', '.join(sorted(summary))}, "
        f"or <{'|'.join(p for p in PER_CLASS if p != 'support')}>/<class>"
    )


def check_policy_metrics(select: SelectConfig | Policy, *, costs: bool = False) -> None:
    """The policy's metric names, before the classes are known: a summary metric (``expected_cost``
    only with ``evaluate.costs``), or a per-class one with a class part (:func:`check_policy`
    checks the class once the data is read)."""
    summary = (*SUMMARY, COST_METRIC) if costs else SUMMARY
    for name, key in _policy_names(select):
        base, slash, cls = name.partition("/")
        if name == COST_METRIC and not costs:
            raise PipelineError(
                f"params.yaml: {key} names {COST_METRIC}, which needs evaluate.costs "
                "(the cost of each decision by class); set it or choose another metric"
            )
        if not (name in summary if not slash else base in PER_CLASS and cls):
            raise _unknown_metric(name, key, summary)


def check_policy(select: SelectConfig | Policy, metric_names: set[str], classes: list[str]) -> list[Constraint]:
    """The constraints of ``select``, with every metric name checked against what was computed."""
    for name, key in _policy_names(select):
        if name in metric_names:
            continue
        base, _, cls = name.partition("/")
        if cls and f"{base}/{classes[0]}" in metric_names:
            raise PipelineError(
                f"params.yaml: {key} names class {cls!r} in {name!r}; classes are: {', '.join(classes)}"
            )
        raise _unknown_metric(name, key, (n for n in metric_names if "/" not in n))
    return _constraints(select)


def reads_probabilities(metric: str) -> bool:
    """True when ``metric`` reads probabilities rather than decisions alone."""
    return metric not in COUNT_METRICS and metric.partition("/")[0] not in PER_CLASS


def metric_value(
    name: str,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray,
    classes: list[str],
    *,
    sample_weight: np.ndarray | None = None,
    cost: np.ndarray | None = None,
    ece_bins: int = 15,
) -> float:
    """One metric of :func:`pipeline.decision.metrics.classification_metrics`, from the class counts
    alone (O(N + C)) when it needs no probabilities (the fast path every search uses)."""
    base, _, cls = name.partition("/")
    if not reads_probabilities(name):
        c = classes.index(cls) if cls else None
        if base == COST_METRIC:
            return float(mean_cost(y_true, y_pred, cost, len(classes), sample_weight))
        tp, support, predicted = class_counts(y_true, y_pred, len(classes), sample_weight)
        fast = _fast_count(base, tp, support, predicted, c)
        if fast is not None:
            return fast
        values = class_count_metrics(tp, support, predicted)
        return float(values[base][c] if cls else values[base])
    return classification_metrics(
        y_true, y_pred, classes, proba=proba, sample_weight=sample_weight, ece_bins=ece_bins, cost=cost
    )[name]


def mean_cost(
    y_true: np.ndarray, y_pred: np.ndarray, cost: np.ndarray, n_classes: int, sample_weight=None
) -> np.ndarray:
    """``expected_cost`` of decisions ``y_pred`` (N,) or (K, N): ``sum_n w_n C[y_n, yhat_n] / sum_n w_n``."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    w = np.ones(len(y_true)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    return safe_ratio((w * cost_of(cost, n_classes)[y_true, y_pred]).sum(-1), w.sum())


def _fast_count(base: str, tp, support, predicted, c: int | None) -> float | None:
    """The metrics a search asks for thousands of times, straight from the class counts (the same
    definitions as :func:`pipeline.decision.metrics.class_count_metrics`, which the tests hold them
    to); None for any other metric."""
    n = support.sum()
    ratio = safe_ratio
    if base == "macro_f1":
        return float(ratio(2 * tp, support + predicted).mean())
    if base in ("accuracy", "micro_f1"):
        return float(tp.sum() / n) if n else 0.0
    if base == "balanced_accuracy":
        present = support > 0
        return float(ratio(tp, support)[present].mean()) if present.any() else 0.0
    if c is not None and base == "recall":
        return float(ratio(tp[c], support[c]))
    if c is not None and base == "precision":
        return float(ratio(tp[c], predicted[c]))
    if c is not None and base == "f1":
        return float(ratio(2 * tp[c], support[c] + predicted[c]))
    if c is not None and base == "fpr":
        return float(ratio(predicted[c] - tp[c], n - support[c]))
    return None


def violation(constraints: Sequence[Constraint], values: dict[str, float]) -> float:
    """How far ``values`` are from meeting every constraint (0 when all hold)."""
    return float(
        sum(
            max(0.0, c.bound - values[c.metric]) if c.op == ">=" else max(0.0, values[c.metric] - c.bound)
            for c in constraints
        )
    )


def policy_objective(
    select: SelectConfig | Policy, classes: list[str], *, cost: np.ndarray | None = None, ece_bins: int = 15
) -> Objective:
    """``objective(y_true, y_pred, proba, sample_weight) -> (violation, score)`` of the policy:
    the constraints' total shortfall and the policy's metric oriented so that higher is better.
    The view is the caller's: ``sample_weight`` (None as held out)."""
    constraints = _constraints(select)
    names = _names(select)
    sign = -1.0 if lower_is_better(select.metric) else 1.0

    def objective(y_true, y_pred, proba, sample_weight=None):
        values = {
            n: metric_value(
                n, y_true, y_pred, proba, classes, sample_weight=sample_weight, cost=cost, ece_bins=ece_bins
            )
            for n in names
        }
        return violation(constraints, values), sign * values[select.metric]

    def batch(y_true, y_preds, sample_weight=None):
        """``(violations (K,), scores (K,))`` of K decisions ``y_preds`` (K, N) of the same rows,
        from their class counts at once (searches try many decisions per step)."""
        y_preds = np.asarray(y_preds, dtype=np.int64)
        k = y_preds.shape[0]
        values = class_count_metrics(
            *class_counts(y_true, y_preds, len(classes), sample_weight),
            expected_cost=None if cost is None else mean_cost(y_true, y_preds, cost, len(classes), sample_weight),
        )

        def get(name):
            base, _, cls = name.partition("/")
            return values[base][:, classes.index(cls)] if cls else values[base]

        shortfall = np.zeros(k)
        for con in constraints:
            v = get(con.metric)
            shortfall += np.maximum(0.0, con.bound - v) if con.op == ">=" else np.maximum(0.0, v - con.bound)
        return shortfall, sign * get(select.metric)

    if not any(reads_probabilities(n) for n in names):  # decisions alone: searches may batch them
        objective.batch = batch
    return objective


def order_key(primary: str, values: dict[str, float], parameters: int, name: str) -> tuple:
    """Sort key of a candidate under the policy: best ``primary`` first, then fewer fitted
    parameters, then by name."""
    v = values[primary]
    return (v if lower_is_better(primary) else -v, parameters, name)


@dataclass(frozen=True)
class Pick:
    pick: str | None  # None when no candidate meets the constraints
    eligible: list[str]
    violations: dict[str, list[str]]  # candidate -> constraints it fails, with its value
    order: list[str]  # every candidate, eligible ones first, each part in the policy's order


def select(
    values: dict[str, dict[str, float]], primary: str, constraints: Sequence[Constraint], parameters: dict[str, int]
) -> Pick:
    """The policy on one split's values: the best ``primary`` among candidates meeting every
    constraint; ties go to fewer fitted parameters, then to the first name."""
    violations = {
        m: [f"{c} (has {v[c.metric]:.4f})" for c in constraints if not c.holds(v[c.metric])] for m, v in values.items()
    }
    order = sorted(values, key=lambda m: (bool(violations[m]), *order_key(primary, values[m], parameters[m], m)))
    eligible = [m for m in order if not violations[m]]
    return Pick(eligible[0] if eligible else None, eligible, {m: v for m, v in violations.items() if v}, order)


def resampled_values(
    names: Sequence[str],
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray,
    classes: list[str],
    *,
    indices: Resamples | np.ndarray,
    sample_weight: np.ndarray | None = None,
    cost: np.ndarray | None = None,
    ece_bins: int = 15,
) -> dict[str, np.ndarray]:
    """``name -> (B,)`` values of each metric on each bootstrap resample ``indices`` (B, N).

    Count metrics and ``log_loss`` are vectorised over resamples; the other probability metrics
    (ROC-AUC, PR-AUC, ECE) are computed resample by resample.
    """
    out: dict[str, np.ndarray] = {}
    counts = None
    w = np.ones(len(y_true)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    for name in names:
        base, _, cls = name.partition("/")
        if not reads_probabilities(name):
            if counts is None:
                counts = bootstrap_distribution(
                    y_true, y_pred, len(classes), indices=indices, sample_weight=w, cost=cost
                )
            out[name] = counts[base][:, classes.index(cls)] if cls else counts[base]
        elif name == "log_loss":
            nll = -np.log(np.clip(proba[np.arange(len(y_true)), y_true], np.finfo(np.float64).eps, 1.0))
            resamples = as_resamples(indices)
            out[name] = resamples.sums(w * nll) / resamples.sums(w)
        else:
            out[name] = np.array(
                [
                    classification_metrics(
                        y_true[i], y_pred[i], classes, proba=proba[i], sample_weight=w[i], ece_bins=ece_bins
                    )[name]
                    for i in indices
                ]
            )
    return out


def p_best(
    resampled: dict[str, dict[str, np.ndarray]],
    primary: str,
    constraints: Sequence[Constraint],
    parameters: dict[str, int],
) -> dict[str, float]:
    """Each candidate's share of the bootstrap resamples in which the policy picks it.

    ``resampled`` is ``candidate -> metric -> (B,)`` (the same resamples for every candidate).
    Candidates tied on ``primary`` in a resample split its mass equally (no tie-break by size:
    a tie is a tie in the data); resamples where no candidate meets the constraints go to
    ``"none"``, listed only when it has mass.
    """
    names = list(resampled)
    sign = 1.0 if lower_is_better(primary) else -1.0
    score = np.stack([sign * resampled[m][primary] for m in names])  # (M, B), lower is better
    ok = np.ones_like(score, dtype=bool)
    for c in constraints:
        v = np.stack([resampled[m][c.metric] for m in names])
        ok &= v >= c.bound if c.op == ">=" else v <= c.bound
    score = np.where(ok, score, np.inf)
    best = score.min(0)  # (B,)
    winners = (score == best) & np.isfinite(best)
    share = winners / np.maximum(winners.sum(0), 1)
    out = {m: float(share[i].mean()) for i, m in enumerate(names)}
    none = float((~np.isfinite(best)).mean())
    if none:
        out["none"] = none
    return out


def kish_ess(weights: np.ndarray) -> float:
    """Kish's effective sample size ``(sum w)^2 / sum w^2`` of per-row weights."""
    w = np.asarray(weights, dtype=np.float64)
    return float(w.sum() ** 2 / (w**2).sum()) if (w**2).sum() > 0 else 0.0


def prior_family(
    val_prior: np.ndarray, train_prior: np.ndarray, deploy_prior: np.ndarray | None = None, *, steps: int = 6
) -> list[dict]:
    """Deployment priors from the validation prior to the training prior (and on to
    ``deploy_prior`` when given): ``(1 - t) * start + t * end`` at ``steps`` points per leg.

    Returns ``[{"label", "t", "prior"}]``; ``t`` runs 0..1 on the first leg and 1..2 on the second.
    """
    legs = [("validation", "training", np.asarray(val_prior, float), np.asarray(train_prior, float))]
    if deploy_prior is not None:
        legs.append(("training", "deployment", np.asarray(train_prior, float), np.asarray(deploy_prior, float)))
    out = []
    for leg, (a_name, b_name, a, b) in enumerate(legs):
        for i, t in enumerate(np.linspace(0, 1, steps)):
            if leg and i == 0:
                continue
            label = a_name if t == 0 else b_name if t == 1 else f"{1 - t:.1f}·{a_name} + {t:.1f}·{b_name}"
            prior = (1 - t) * a + t * b
            out.append({"label": label, "t": float(leg + t), "prior": (prior / prior.sum()).tolist()})
    return out


def shifted_weights(y: np.ndarray, prior: Sequence[float]) -> np.ndarray:
    """Per-row weights giving a split the class prior ``prior`` (:func:`pipeline.decision.metrics.prior_weights`)."""
    return prior_weights(y, np.asarray(prior, dtype=np.float64))
