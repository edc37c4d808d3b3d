"""Decision rules: fitted on the validation split on top of one model's probabilities, applied to any split.

A rule turns class probabilities ``p`` (N, C) into (possibly new) probabilities and decisions.
Rules work on ``logp = log(clip(p, 1e-300))``, the logits up to a per-row constant, so
``softmax(logp / T + b) == softmax(logits / T + b)`` exactly. The rules (their table is
:data:`pipeline.rule_specs.RULE_SPECS`; here is their maths):

- ``posthoc_adjust`` (Menon et al., 2021): ``argmax(logp - tau log pi_train)``; tau = 1 is the
  balanced-error Bayes rule for probabilities calibrated to the training prior; tau is searched.
- ``thresholds``: per-class biases, ``argmax(logp + b)``, fitted by coordinate ascent: the
  multi-class analogue of scikit-learn's ``TunedThresholdClassifierCV``.
- ``cost``: bias-corrected temperature scaling (BCTS; Alexandari et al., 2020) calibrates, an
  optional prior shift moves to another class prior (Saerens et al., 2002), and the Bayes
  decision minimises the expected cost (Elkan, 2001).
- ``anomaly``: rows whose outlier score, from an isolation forest fitted on the other classes'
  training rows (Liu et al., 2008), exceeds a threshold are decided as the rarest class.

The searching rules (``posthoc_adjust``, ``thresholds``, ``anomaly``) maximise an
:data:`Objective` lexicographically, ``(-violation, score)``: meet the policy's constraints
first, then score best; exact ties go to the value closest to leaving the argmax alone.

Calibration. What a candidate ships as probabilities is its model's, recalibrated on validation
by vector scaling (Guo et al., 2017): ``softmax(a * logp + b)``, a per-class scale a (C,) and
bias b (C,) minimising the NLL (:func:`fit_calibration`, :func:`calibrate`; temperature scaling,
one scale for all, where validation has too few rows for 2C parameters: :func:`calibration_method`). It changes no
decision: the rule decides on the model's own probabilities, and only the ``cost`` rule, whose
decisions come from its own calibrated posterior, ships that one instead.

Cross-fitting. A rule scored on the rows it was fitted on looks better than it is: its
parameters follow that sample's noise (C biases, on small classes, by a lot). :func:`crossfit`
splits validation into k stratified folds and decides each with the rule fitted on the other
k - 1: no row is decided by parameters that saw it, so the out-of-fold score compares fairly
with the plain argmax's. The test split is decided by the rule fitted on all of validation.

References
----------
C. Guo, G. Pleiss, Y. Sun, K. Q. Weinberger. On Calibration of Modern Neural Networks. ICML 2017.
A. K. Menon, S. Jayasumana, A. S. Rawat, H. Jain, A. Veit, S. Kumar. Long-tail learning via logit
adjustment. ICLR 2021.
A. Alexandari, A. Kundaje, A. Shrikumar. Maximum Likelihood with Bias-Corrected Calibration is
Hard-To-Beat at Label Shift Adaptation. ICML 2020.
M. Saerens, P. Latinne, C. Decaestecker. Adjusting the Outputs of a Classifier to New a Priori
Probabilities: A Simple Procedure. Neural Computation, 2002.
C. Elkan. The Foundations of Cost-Sensitive Learning. IJCAI 2001.
F. T. Liu, K. M. Ting, Z.-H. Zhou. Isolation Forest. ICDM 2008.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from sklearn.ensemble import IsolationForest
from sklearn.model_selection import StratifiedKFold

from pipeline import PipelineError, resolve
from pipeline.rule_specs import rule_spec

# objective(y_true (N,), y_pred (N,), proba (N, C), sample_weight (N,) | None) -> (violation >= 0, score):
# how far the policy's constraints are from holding (0: all hold) and its metric, higher is better
Objective = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None], tuple[float, float]]

_LOG_T = (float(np.log(0.05)), float(np.log(20.0)))  # bounds of log T
_BIAS_BOUND = 30.0  # |b| beyond e^30 only moves rows that are already decided
_TAUS = np.round(np.linspace(-1.0, 2.0, 61), 2)
_PASSES = 3
_LEVELS = np.linspace(0.0, 1.0, 21)  # quantiles of the flip points a bias is searched over
_ANOMALY_LEVELS = np.linspace(0.01, 0.99, 99)


@dataclass(frozen=True)
class RuleContext:
    """What a rule needs besides the probabilities and labels of the rows it fits or decides."""

    classes: list[str]
    log_train_prior: np.ndarray  # (C,) log of the training split's class prior
    cost: np.ndarray | None  # (C, C) cost C[true, predicted], or None
    prior_ratio: np.ndarray | None  # (C,) pi_view / pi_val for a reweighted view, None when held out
    rarest: int  # index of the class with fewest training rows
    anomaly_scores: np.ndarray | None  # (N,) outlier scores of the rows (higher: more anomalous)
    seed: int = 0


def logp_of(proba) -> np.ndarray:
    """(N, C) log-probabilities ``log(clip(proba, 1e-300))``: finite where a probability is 0."""
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[1] < 2:
        raise PipelineError(f"proba must be an (N, C) array with C >= 2; got shape {proba.shape}")
    return np.log(np.clip(proba, 1e-300, None))


def softmax(z) -> np.ndarray:
    """Row-wise ``exp(z) / sum exp(z)``, shifted by the row maximum so that nothing overflows."""
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _unit_weights(n: int, sample_weight) -> np.ndarray:
    w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if w.shape != (n,) or (w < 0).any() or w.sum() <= 0:
        raise PipelineError(f"sample_weight must be {n} non-negative weights with a positive sum")
    return w / w.sum()


def _nll(log_t: float, b: np.ndarray, logp: np.ndarray, y: np.ndarray, w: np.ndarray):
    """Weighted NLL of ``softmax(logp e^-s + b)`` and its gradient in (s = log T, b)."""
    a = np.exp(-log_t)
    z = a * logp + b
    z -= z.max(axis=1, keepdims=True)
    ls = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    rows = np.arange(len(y))
    g = np.exp(ls)  # dNLL/dz = w (q - onehot(y))
    g[rows, y] -= 1.0
    g *= w[:, None]
    return -(w * ls[rows, y]).sum(), -a * (g * logp).sum(), g.sum(axis=0)


def fit_temperature(logp, y, *, sample_weight=None) -> float:
    """Temperature scaling (Guo et al., 2017): ``T = argmin_T NLL(softmax(logp / T))``.

    The NLL is convex in 1/T, hence unimodal in s = log T, which bounded Brent searches over
    T in [0.05, 20]. ``logp`` (N, C), ``y`` (N,) int, ``sample_weight`` (N,) weights the NLL.
    """
    logp, y = np.asarray(logp, dtype=np.float64), np.asarray(y, dtype=np.int64)
    w, b = _unit_weights(len(y), sample_weight), np.zeros(logp.shape[1])
    res = minimize_scalar(lambda s: _nll(s, b, logp, y, w)[0], bounds=_LOG_T, method="bounded", options={"xatol": 1e-7})
    return float(np.exp(res.x))


def fit_bias_corrected_temperature(logp, y, *, sample_weight=None) -> tuple[float, np.ndarray]:
    """BCTS (Alexandari et al., 2020): T and b (C,) minimising the NLL of ``softmax(logp / T + b)``.

    b is defined up to a constant; ``b = u - mean(u)`` fixes ``sum(b) = 0``. L-BFGS-B with the
    analytic gradient over (log T, u), T in [0.05, 20] and |u| <= 30 (a class absent from the rows
    drives its bias to the bound instead of -inf), started from :func:`fit_temperature`.
    """
    logp, y = np.asarray(logp, dtype=np.float64), np.asarray(y, dtype=np.int64)
    w, c = _unit_weights(len(y), sample_weight), logp.shape[1]

    def fun(x):
        nll, g_s, g_b = _nll(x[0], x[1:] - x[1:].mean(), logp, y, w)
        return nll, np.concatenate([[g_s], g_b])  # d/du = g_b - mean(g_b) = g_b: softmax gradients sum to 0

    x0 = np.concatenate([[np.log(fit_temperature(logp, y, sample_weight=sample_weight))], np.zeros(c)])
    bounds = [_LOG_T] + [(-_BIAS_BOUND, _BIAS_BOUND)] * c
    res = minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": 500})
    return float(np.exp(res.x[0])), res.x[1:] - res.x[1:].mean()


def bayes_decision(proba, cost) -> np.ndarray:
    """(N,) ``argmin_j sum_i C[i, j] p(i|x)``: least expected cost; ties go to the lowest index.

    ``proba`` (N, C); ``cost`` (C, C), ``C[true, predicted]``. With ``C = 1 - I`` it is the argmax.
    """
    proba, cost = np.asarray(proba, dtype=np.float64), np.asarray(cost, dtype=np.float64)
    if cost.shape != (proba.shape[1],) * 2:
        raise PipelineError(f"cost must be a ({proba.shape[1]}, {proba.shape[1]}) matrix; got shape {cost.shape}")
    return (proba @ cost).argmin(axis=1)


CALIBRATION_ROWS = 10  # validation rows per fitted parameter that vector scaling's 2C parameters need


def calibration_method(n_rows: int, n_classes: int) -> str:
    """``vector_scaling`` (2C parameters) where the validation split has at least
    :data:`CALIBRATION_ROWS` rows per parameter, else ``temperature_scaling`` (one): 300 classes
    on 600 rows would fit a scale and a bias per two rows, which the NLL overfits (and which
    L-BFGS takes seconds per fit to do)."""
    return "vector_scaling" if n_rows >= CALIBRATION_ROWS * 2 * n_classes else "temperature_scaling"


def fit_calibration(logp, y, method: str = "vector_scaling") -> dict:
    """Vector scaling (Guo et al., 2017): ``a`` (C,) and ``b`` (C,) minimising the NLL of
    ``softmax(a * logp + b)`` on the rows ``logp`` (N, C), ``y`` (N,) int; JSON-able.

    L-BFGS-B with the analytic gradient from ``a = 1 / T`` (:func:`fit_temperature`), ``b = 0``;
    a in [0.05, 20] (T's bounds), |b| <= 30, and b centred (it is defined up to a constant).
    ``method="temperature_scaling"`` (:func:`calibration_method`) stops at ``a = 1 / T`` for
    every class and ``b = 0``.
    """
    logp, y = np.asarray(logp, dtype=np.float64), np.asarray(y, dtype=np.int64)
    n, c = logp.shape
    if method == "temperature_scaling":
        return {"method": method, "scale": [1.0 / fit_temperature(logp, y)] * c, "bias": [0.0] * c}
    if method != "vector_scaling":
        raise PipelineError(f"calibration method must be vector_scaling or temperature_scaling; got {method!r}")
    onehot = np.eye(c)[y]

    def fun(x):
        z = logp * x[:c] + x[c:]
        z -= z.max(axis=1, keepdims=True)
        ls = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        g = (np.exp(ls) - onehot) / n  # dNLL/dz
        return -(onehot * ls).sum() / n, np.concatenate([(g * logp).sum(axis=0), g.sum(axis=0)])

    x0 = np.concatenate([np.full(c, 1.0 / fit_temperature(logp, y)), np.zeros(c)])
    bounds = [(np.exp(-_LOG_T[1]), np.exp(-_LOG_T[0]))] * c + [(-_BIAS_BOUND, _BIAS_BOUND)] * c
    x = minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": 500}).x
    return {"method": "vector_scaling", "scale": x[:c].tolist(), "bias": (x[c:] - x[c:].mean()).tolist()}


def calibrate(proba, calibration: dict) -> np.ndarray:
    """(N, C) ``softmax(a * logp + b)`` of ``proba`` under a :func:`fit_calibration` result."""
    a, b = (np.asarray(calibration[k], dtype=np.float64) for k in ("scale", "bias"))
    return softmax(logp_of(proba) * a + b)


def crossfit_calibration(proba, y, folds, method: str = "vector_scaling") -> np.ndarray:
    """Out-of-fold calibrated probabilities: fold f through the calibration fitted on the others."""
    proba, y, folds = np.asarray(proba, dtype=np.float64), np.asarray(y, dtype=np.int64), np.asarray(folds)
    logp, out = logp_of(proba), np.empty_like(proba)
    for f in np.unique(folds):
        out[folds == f] = calibrate(proba[folds == f], fit_calibration(logp[folds != f], y[folds != f], method))
    return out


def _cost_of(context: RuleContext) -> np.ndarray:
    if context.cost is None:
        raise PipelineError("rule 'cost' needs a cost matrix (context.cost); got None")
    return np.asarray(context.cost, dtype=np.float64)


def _scores_of(context: RuleContext, n: int) -> np.ndarray:
    s = context.anomaly_scores
    if s is None or np.shape(s) != (n,):
        got = None if s is None else np.shape(s)
        raise PipelineError(f"rule 'anomaly' needs context.anomaly_scores of the {n} rows; got {got}")
    return np.asarray(s, dtype=np.float64)


def _flag(proba: np.ndarray, flagged: np.ndarray, rarest: int) -> tuple[np.ndarray, np.ndarray]:
    """The model's decisions and probabilities with ``flagged`` rows set to ``rarest`` (one-hot)."""
    q = proba.copy()
    q[flagged] = np.eye(proba.shape[1])[rarest]
    return q, np.where(flagged, rarest, proba.argmax(axis=1))


def fit_rule(rule: str, proba, y, objective: Objective, context: RuleContext, *, sample_weight=None) -> dict:
    """Fit ``rule`` (a :data:`~pipeline.rule_specs.RULE_SPECS` entry) on the rows of one split
    (validation); returns its JSON-able parameters.

    ``proba`` (N, C), ``y`` (N,) int, ``sample_weight`` (N,) passed to the objective (and to the
    cost rule's NLL).
    """
    spec = rule_spec(rule)
    proba = np.asarray(proba, dtype=np.float64)
    logp, y = logp_of(proba), np.asarray(y, dtype=np.int64)
    if y.shape != (len(logp),) or y.min(initial=0) < 0 or y.max(initial=0) >= logp.shape[1]:
        raise PipelineError(f"y must be {len(logp)} class indices in [0, {logp.shape[1]}); got shape {y.shape}")

    def key(y_pred, q):
        violation, score = objective(y, y_pred, q, sample_weight)
        return -float(violation), float(score)

    batch = getattr(objective, "batch", None)  # the objective reads decisions only: many at once

    def keys(y_preds):
        violations, scores = batch(y, y_preds, sample_weight)
        return [(-float(v), float(s)) for v, s in zip(violations, scores)]

    return resolve(spec.fit, "decision rule function")(
        proba, logp, y, context, key=key, keys=keys if batch is not None else None, sample_weight=sample_weight
    )


def fit_posthoc_adjust(proba, logp, y, context, *, key, keys, sample_weight) -> dict:
    """tau of ``argmax(logp - tau log pi_train)``, searched over [-1, 2]."""
    return {"tau": _fit_tau(logp, np.asarray(context.log_train_prior, dtype=np.float64), key)}


def apply_posthoc_adjust(proba, logp, params, context) -> tuple[np.ndarray, np.ndarray]:
    z = logp - params["tau"] * np.asarray(context.log_train_prior, dtype=np.float64)
    return softmax(z), z.argmax(axis=1)


def fit_thresholds(proba, logp, y, context, *, key, keys, sample_weight) -> dict:
    """Per-class biases b of ``argmax(logp + b)``, by coordinate ascent (:func:`_fit_bias`)."""
    return {"bias": _fit_bias(logp, y, key, keys).tolist()}


def apply_thresholds(proba, logp, params, context) -> tuple[np.ndarray, np.ndarray]:
    z = logp + np.asarray(params["bias"], dtype=np.float64)
    return softmax(z), z.argmax(axis=1)


def fit_cost(proba, logp, y, context, *, key, keys, sample_weight) -> dict:
    """BCTS's temperature and biases by NLL, unweighted when ``context.prior_ratio`` is set (the
    shift to the view's prior is then applied explicitly, and weights would count it twice)."""
    _cost_of(context)
    weights = sample_weight if context.prior_ratio is None else None
    t, b = fit_bias_corrected_temperature(logp, y, sample_weight=weights)
    return {"temperature": t, "bias": b.tolist()}


def apply_cost(proba, logp, params, context) -> tuple[np.ndarray, np.ndarray]:
    cost = _cost_of(context)
    q = softmax(logp / params["temperature"] + np.asarray(params["bias"], dtype=np.float64))
    if context.prior_ratio is not None:  # Saerens et al. (2002): p_view(y|x) ~ p_val(y|x) pi_view / pi_val
        q = q * np.asarray(context.prior_ratio, dtype=np.float64)
        q /= q.sum(axis=1, keepdims=True)
    return q, bayes_decision(q, cost)


def fit_anomaly(proba, logp, y, context, *, key, keys, sample_weight) -> dict:
    """The outlier-score threshold above which rows are decided as the rarest class."""
    return {"threshold": _fit_anomaly(proba, _scores_of(context, len(y)), context.rarest, key)}


def apply_anomaly(proba, logp, params, context) -> tuple[np.ndarray, np.ndarray]:
    t = params["threshold"]
    flagged = np.zeros(len(logp), dtype=bool) if t is None else _scores_of(context, len(logp)) > t
    return _flag(proba, flagged, context.rarest)


def _fit_tau(logp: np.ndarray, log_prior: np.ndarray, key) -> float:
    best_tau, best = 0.0, None
    for tau in sorted(_TAUS, key=abs):  # ties keep the smallest |tau|
        z = logp - tau * log_prior
        k = key(z.argmax(axis=1), softmax(z))
        if best is None or k > best:
            best_tau, best = float(tau), k
    return best_tau


def _fit_bias(logp: np.ndarray, y: np.ndarray, key, keys=None) -> np.ndarray:
    """Coordinate ascent on b; per class, candidate values are where rows' decisions flip.

    Row i is decided k when ``b_k > d_i = max_{j != k}(logp_ij + b_j) - logp_ik``; quantiles of d
    over all rows and over class k's own rows (whose recall a constraint may bound) give coarse
    and fine moves, one per distinct set of rows decided k. ``keys`` (decisions (K, N) -> K keys),
    when the objective reads decisions only, scores a step's candidates at once.
    """
    p0, rows = softmax(logp), np.arange(len(logp))
    b = np.zeros(logp.shape[1])
    for _ in range(_PASSES):
        changed = False
        for k in range(len(b)):
            z = logp + b
            z[:, k] = -np.inf
            other = z.argmax(axis=1)
            m = z[rows, other]
            d = m - logp[:, k]
            own = d[y == k] if (y == k).any() else d
            flips = np.concatenate([np.quantile(d, _LEVELS), np.quantile(own, _LEVELS)])
            flips = np.concatenate([flips + 1e-9 * (1 + np.abs(flips)), [d.min() - 1.0, 0.0, b[k]]])
            candidates = sorted(set(np.clip(flips, -_BIAS_BOUND, _BIAS_BOUND).tolist()), key=abs)
            # one per set of rows decided k, the closest to 0: what a tie would keep
            _, first = np.unique(np.searchsorted(np.sort(d), candidates), return_index=True)
            # softmax(logp + b) as p0 e^b / sum: |b| <= 30 neither overflows nor empties a row
            e = p0 * np.exp(b)
            e[:, k] = 0.0
            rest = e.sum(axis=1)
            old, best_v, best = b[k], b[k], None
            values = [candidates[i] for i in np.sort(first)]  # ties keep the smallest |b_k|

            def decided(v):  # argmax(logp + b) with its lowest-index tie rule, in O(N)
                zk = logp[:, k] + v
                return np.where((zk > m) | ((zk == m) & (k < other)), k, other)

            if keys is not None:
                scored = keys(np.stack([decided(v) for v in values]))
                best_v = values[max(range(len(values)), key=lambda i: (scored[i], -i))]
            for v in values if keys is None else ():
                col = p0[:, k] * np.exp(v)
                q = e / (rest + col)[:, None]
                q[:, k] = col / (rest + col)
                kv = key(decided(v), q)
                if best is None or kv > best:
                    best_v, best = v, kv
            b[k] = best_v
            changed |= bool(best_v != old)
        if not changed:
            break
    return b


def _fit_anomaly(proba: np.ndarray, scores: np.ndarray, rarest: int, key) -> float | None:
    best_t, best = None, key(proba.argmax(axis=1), proba)  # +inf: flag nothing
    for t in np.unique(np.quantile(scores, _ANOMALY_LEVELS))[::-1]:  # ties keep the fewest flagged
        q, y_pred = _flag(proba, scores > t, rarest)
        k = key(y_pred, q)
        if k > best:
            best_t, best = float(t), k
    return best_t


def apply_rule(rule: str, params: dict, proba, context: RuleContext) -> tuple[np.ndarray, np.ndarray]:
    """Apply a fitted rule to the rows of any split: ``(proba (N, C), y_pred (N,))``.

    ``params`` is what :func:`fit_rule` returned; ``context.anomaly_scores`` (``anomaly``) and
    ``context.prior_ratio`` (``cost``) belong to the rows decided here.
    """
    spec = rule_spec(rule)
    proba = np.asarray(proba, dtype=np.float64)
    return resolve(spec.apply, "decision rule function")(proba, logp_of(proba), params, context)


def parameter_count(rule: str, params: dict) -> int:
    """Fitted parameters: the scalars in ``params``, a list counting its length (posthoc_adjust 1,
    thresholds C, cost C + 1, anomaly 1)."""
    rule_spec(rule)
    return sum(len(v) if isinstance(v, list) else 1 for v in params.values())


def crossfit_folds(y, k: int, seed: int) -> np.ndarray:
    """(N,) fold ids in 0..k-1: ``StratifiedKFold(k, shuffle=True, random_state=seed)``.

    A class with fewer than k rows is dealt round-robin over the folds (from a seeded shuffle,
    continuing from fold to fold across such classes) where scikit-learn would warn or fail;
    k is reduced to N when N < k, so every fold has rows.
    """
    y = np.asarray(y, dtype=np.int64)
    if k < 2 or len(y) < 2:
        raise PipelineError(f"crossfit needs k >= 2 folds and at least 2 rows; got k={k}, {len(y)} rows")
    k = min(k, len(y))
    folds = np.empty(len(y), dtype=np.int64)
    labels, counts = np.unique(y, return_counts=True)
    big = np.isin(y, labels[counts >= k])
    if big.any():
        skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        rows = np.flatnonzero(big)
        for f, (_, test) in enumerate(skf.split(np.zeros(len(rows)), y[rows])):
            folds[rows[test]] = f
    small = np.flatnonzero(~big)
    small = small[np.random.default_rng(seed).permutation(len(small))]
    small = small[np.argsort(y[small], kind="stable")]  # class by class, shuffled within
    folds[small] = np.arange(len(small)) % k
    return folds


def crossfit(
    rule: str, proba, y, folds, objective: Objective, context: RuleContext, *, sample_weight=None
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold ``(proba (N, C), y_pred (N,))``: fold f decided by the rule fitted on the others.

    ``folds`` (N,) from :func:`crossfit_folds`; ``sample_weight`` and ``context.anomaly_scores``
    are subset with the rows.
    """
    rule_spec(rule)
    proba, y, folds = np.asarray(proba, dtype=np.float64), np.asarray(y, dtype=np.int64), np.asarray(folds)
    if folds.shape != y.shape or len(np.unique(folds)) < 2:
        raise PipelineError(f"folds must give each of the {len(y)} rows a fold, with at least 2 folds")

    def rows(a, mask):
        return None if a is None else np.asarray(a)[mask]

    out_proba, out_pred = np.empty_like(proba), np.empty(len(y), dtype=np.int64)
    for f in np.unique(folds):
        test, train = folds == f, folds != f
        fit_ctx = replace(context, anomaly_scores=rows(context.anomaly_scores, train))
        params = fit_rule(rule, proba[train], y[train], objective, fit_ctx, sample_weight=rows(sample_weight, train))
        test_ctx = replace(context, anomaly_scores=rows(context.anomaly_scores, test))
        out_proba[test], out_pred[test] = apply_rule(rule, params, proba[test], test_ctx)
    return out_proba, out_pred


def fit_isolation_forest(X_other, *, seed: int) -> IsolationForest:
    """An isolation forest (Liu et al., 2008; 100 trees) fitted on the training rows of the other classes."""
    return IsolationForest(n_estimators=100, random_state=seed).fit(X_other)


def anomaly_scores(forest: IsolationForest, X) -> np.ndarray:
    """(N,) outlier scores ``-score_samples(X)``: higher is more anomalous."""
    return -forest.score_samples(X)


# The forest's file: skops (never pickle), made byte-identical for an identical forest (DVC and the
# model registry hash it): skops names its arrays after object ids, stamps the zip with the time of
# writing and its memo with object ids, and a tree's node array has padding bytes that numpy leaves uninitialised.
_FOREST_TRUSTED = ["sklearn.tree._tree.Tree"]


def _zeroed_padding(npy: bytes) -> bytes:
    import io

    a = np.load(io.BytesIO(npy), allow_pickle=False)
    if a.dtype.names is None:
        return npy
    clean = np.zeros(a.shape, dtype=a.dtype)
    for name in a.dtype.names:
        if name:
            clean[name] = a[name]
    out = io.BytesIO()
    np.save(out, clean, allow_pickle=False)
    return out.getvalue()


def dump_forest(forest: IsolationForest, path) -> None:
    """Write ``forest`` with skops, byte-identical for an identical forest."""
    import io
    import re
    import zipfile

    import skops.io

    with zipfile.ZipFile(io.BytesIO(skops.io.dumps(forest))) as src:
        schema = src.read("schema.json").decode()
        arrays = [n for n in src.namelist() if n != "schema.json"]
        order = sorted(arrays, key=lambda n: schema.find(f'"{n}"'))
        renamed = {n: f"{i:06d}{Path(n).suffix}" for i, n in enumerate(order)}
        schema = re.sub(
            "|".join(re.escape(f'"{n}"') for n in arrays) or "(?!)", lambda m: f'"{renamed[m.group()[1:-1]]}"', schema
        )
        ids: dict[str, str] = {}  # memo ids (object ids too), numbered by first appearance
        schema = re.sub(r'"__id__": (\d+)', lambda m: f'"__id__": {ids.setdefault(m.group(1), str(len(ids)))}', schema)
        files = {
            "schema.json": schema.encode(),
            **{renamed[n]: _zeroed_padding(src.read(n)) if n.endswith(".npy") else src.read(n) for n in arrays},
        }
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as dst:
        for name in sorted(files):
            dst.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), files[name])
    Path(path).write_bytes(packed.getvalue())


def load_forest(path) -> IsolationForest:
    """The forest :func:`dump_forest` wrote; a file holding other types than a forest's is refused."""
    import skops.io

    data = Path(path).read_bytes()
    untrusted = [t for t in skops.io.get_untrusted_types(data=data) if t not in _FOREST_TRUSTED]
    if untrusted:
        raise PipelineError(f"{path}: holds types other than an isolation forest's: {', '.join(untrusted)}")
    forest = skops.io.loads(data, trusted=_FOREST_TRUSTED)
    if not isinstance(forest, IsolationForest):
        raise PipelineError(f"{path}: not an isolation forest")
    return forest
