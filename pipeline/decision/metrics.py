"""Classification metrics for imbalanced problems, with optional per-sample weights.

Count-based metrics are computed from a (weighted) confusion matrix's diagonal, row and column
sums by :func:`class_count_metrics` (:func:`count_metrics` takes the matrix), in O(C) per
decision, vectorised over leading axes so that the same code gives point estimates and bootstrap
distributions. Definitions follow scikit-learn and imbalanced-learn (a ratio whose denominator is
zero is 0, like ``zero_division=0``) and are tested against them. Names are the keys of
``reports/metrics.json``.
"""

from __future__ import annotations

import numpy as np

# Summary metrics, in the order tables show them.
HEADLINE = (
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "micro_f1",
    "weighted_f1",
    "mcc",
    "cohen_kappa",
    "geometric_mean",
    "roc_auc_ovr",
    "pr_auc",
    "log_loss",
    "ece",
)
# Metrics where lower is better (every other metric: higher is better).
LOWER_IS_BETTER = ("log_loss", "ece", "fpr", "expected_cost")
# Per-class metrics, keyed ``<name>/<class>``.
PER_CLASS = ("precision", "recall", "specificity", "fpr", "f1", "support")
# Every summary metric of classification_metrics (with probabilities), headline ones first.
SUMMARY = (
    *HEADLINE,
    "macro_precision",
    "macro_recall",
    "micro_precision",
    "micro_recall",
    "weighted_precision",
    "weighted_recall",
)
# Mean cost per decision, given only with a cost matrix (``cost=``); not in SUMMARY.
COST_METRIC = "expected_cost"


def metric_names(classes: list[str], *, costs: bool = False) -> set[str]:
    """Every name :func:`classification_metrics` gives for ``classes`` (with probabilities, and
    with a cost matrix when ``costs``)."""
    return {*SUMMARY, *(f"{name}/{c}" for name in PER_CLASS for c in classes), *((COST_METRIC,) if costs else ())}


def lower_is_better(metric: str) -> bool:
    """True for losses, calibration error and false-positive rates."""
    return metric.split("/", 1)[0] in LOWER_IS_BETTER


def confusion_matrix(
    y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, sample_weight: np.ndarray | None = None
) -> np.ndarray:
    """(C, C) counts (float64 when weighted); row = true class, column = predicted class."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    cm = np.bincount(y_true * n_classes + y_pred, weights=sample_weight, minlength=n_classes**2)
    return cm.reshape(n_classes, n_classes)


def safe_ratio(num, den):
    """``num / den`` elementwise, 0 where ``den`` is 0 (scikit-learn's ``zero_division=0``)."""
    num, den = np.broadcast_arrays(np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64))
    return np.divide(num, den, out=np.zeros(num.shape), where=den != 0)


def class_counts(
    y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, sample_weight: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(tp, support, predicted)``: the confusion matrix's diagonal, row sums and column sums,
    counted in O(N + C) without the (C, C) matrix. ``y_pred`` (N,) gives arrays (C,); K decisions
    of the same rows (K, N) give (K, C)."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    k = len(y_pred) if y_pred.ndim == 2 else 1
    w = np.ones(len(y_true)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    offset = (np.arange(k) * n_classes)[:, None]
    size = k * n_classes
    decided = y_pred.reshape(k, len(y_true))
    predicted = np.bincount((decided + offset).ravel(), weights=np.tile(w, k), minlength=size)
    hit = (decided == y_true) * w
    tp = np.bincount((y_true + offset).ravel(), weights=hit.ravel(), minlength=size)
    support = np.broadcast_to(np.bincount(y_true, weights=w, minlength=n_classes), (k, n_classes))
    shape = (k, n_classes) if y_pred.ndim == 2 else (n_classes,)
    return tp.reshape(shape), support.reshape(shape), predicted.reshape(shape)


def cost_of(cost: np.ndarray, n_classes: int) -> np.ndarray:
    """``cost`` as a (C, C) float array; a ``ValueError`` for any other shape."""
    cost = np.asarray(cost, dtype=np.float64)
    if cost.shape != (n_classes, n_classes):
        raise ValueError(f"cost matrix of shape {cost.shape} for {n_classes} classes")
    return cost


def count_metrics(cm: np.ndarray, *, cost: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every metric that depends only on the confusion matrix (:func:`class_count_metrics` of its
    diagonal, row and column sums).

    Parameters
    ----------
    cm : (..., C, C) array
        Confusion matrices, row = true class; leading axes (e.g. bootstrap resamples) are kept.
    cost : (C, C) array, optional
        Cost of each decision, ``cost[true, decided]`` (:func:`pipeline.config.cost_matrix`); adds
        ``expected_cost``, the mean cost per decision ``sum_n w_n C[y_n, yhat_n] / sum_n w_n``.
    """
    cm = np.asarray(cm, dtype=np.float64)
    n = cm.sum(axis=(-2, -1))
    mean_cost = None
    if cost is not None:
        mean_cost = safe_ratio((cm * cost_of(cost, cm.shape[-1])).sum(axis=(-2, -1)), n)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    return class_count_metrics(tp, cm.sum(axis=-1), cm.sum(axis=-2), n=n, expected_cost=mean_cost)


def class_count_metrics(
    tp: np.ndarray,
    support: np.ndarray,
    predicted: np.ndarray,
    *,
    n: np.ndarray | None = None,
    expected_cost: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Every metric of a confusion matrix from its diagonal ``tp``, row sums ``support`` and
    column sums ``predicted`` (each (..., C)), which are all any of them reads: O(C), not O(C²).

    Returns
    -------
    dict of arrays of shape (...) for summary metrics and (..., C) for the per-class ones
    (``precision``, ``recall``, ``specificity``, ``fpr``, ``f1``, ``support``); ``expected_cost``
    (computed by the caller, it needs every cell) among the summary ones when given.

    Notes
    -----
    MCC is Gorodkin's multiclass R_K (scikit-learn's ``matthews_corrcoef``); Cohen's kappa is
    ``(p_o - p_e) / (1 - p_e)`` with 0 where ``p_e = 1``; the geometric mean is that of the
    recalls of the classes present in ``y_true`` (imbalanced-learn's ``geometric_mean_score``);
    balanced accuracy is the mean recall over those classes.
    """
    tp, support, predicted = (np.asarray(a, dtype=np.float64) for a in (tp, support, predicted))
    n = support.sum(axis=-1) if n is None else n
    fp, fn = predicted - tp, support - tp
    tn = n[..., None] - tp - fp - fn
    tn = np.where(tn > 1e-12 * n[..., None], tn, 0.0)  # weighted sums leave +-1e-16 where tn is 0
    precision, recall = safe_ratio(tp, predicted), safe_ratio(tp, support)
    f1 = safe_ratio(2 * tp, 2 * tp + fp + fn)
    present = support > 0
    n_present = present.sum(axis=-1)
    correct = tp.sum(axis=-1)
    chance = (support * predicted).sum(axis=-1)  # sum_c t_c p_c
    # clamp: weighted sums can leave -1e-12 where a factor is exactly 0 (one class predicted)
    mcc_den = np.sqrt(np.maximum(n**2 - (predicted**2).sum(-1), 0) * np.maximum(n**2 - (support**2).sum(-1), 0))
    p_o, p_e = safe_ratio(correct, n), safe_ratio(chance, n**2)
    log_recall = np.log(np.where(present, np.maximum(recall, 1e-300), 1.0))
    gmean = np.exp(safe_ratio(log_recall.sum(-1), n_present))
    gmean = np.where(((recall == 0) & present).any(-1), 0.0, gmean)
    summary = {
        "accuracy": p_o,
        "balanced_accuracy": safe_ratio((recall * present).sum(-1), n_present),
        "macro_precision": precision.mean(-1),
        "macro_recall": recall.mean(-1),
        "macro_f1": f1.mean(-1),
        "micro_precision": safe_ratio(correct, predicted.sum(-1)),
        "micro_recall": safe_ratio(correct, support.sum(-1)),
        "micro_f1": safe_ratio(2 * correct, 2 * correct + fp.sum(-1) + fn.sum(-1)),
        "weighted_precision": safe_ratio((precision * support).sum(-1), support.sum(-1)),
        "weighted_recall": safe_ratio((recall * support).sum(-1), support.sum(-1)),
        "weighted_f1": safe_ratio((f1 * support).sum(-1), support.sum(-1)),
        "mcc": safe_ratio(correct * n - chance, mcc_den),
        "cohen_kappa": safe_ratio(p_o - p_e, 1 - p_e),
        "geometric_mean": gmean,
    }
    if expected_cost is not None:
        summary[COST_METRIC] = expected_cost
    return {
        **summary,
        "precision": precision,
        "recall": recall,
        "specificity": safe_ratio(tn, tn + fp),
        "fpr": safe_ratio(fp, fp + tn),
        "f1": f1,
        "support": support,
    }


def confidence_bins(proba: np.ndarray, y_true: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's top probability, whether its argmax is right, and its bin of ``n_bins``
    equal-width bins (bin b holds confidences in ``(b/n_bins, (b+1)/n_bins]``): the ECE's and
    the reliability diagram's."""
    conf = proba.max(axis=1)
    hit = (proba.argmax(axis=1) == y_true).astype(np.float64)
    return conf, hit, np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)


def expected_calibration_error(
    proba: np.ndarray, y_true: np.ndarray, *, n_bins: int = 15, sample_weight: np.ndarray | None = None
) -> float:
    """Top-label expected calibration error (Guo et al., 2017).

    ``sum_b W_b / W * |acc_b - conf_b|`` over ``n_bins`` equal-width bins of the top predicted
    probability (bin b holds confidences in ``(b/n_bins, (b+1)/n_bins]``); W are sample weights.
    """
    w = np.ones(len(y_true)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    conf, hit, bins = confidence_bins(proba, y_true, n_bins)
    gap = np.bincount(bins, weights=w * hit, minlength=n_bins) - np.bincount(bins, weights=w * conf, minlength=n_bins)
    return float(np.abs(gap).sum() / w.sum()) if w.sum() > 0 else 0.0


def ranking_scores(
    positive: np.ndarray, score: np.ndarray, weight: np.ndarray, order: np.ndarray | None = None
) -> tuple[float, float]:
    """Weighted ROC-AUC and average precision of one binary problem, from one sort.

    ROC-AUC is the trapezoidal area under the ROC curve, i.e. the weighted share of
    (positive, negative) pairs ordered correctly, ties counting half; average precision is
    ``sum_k (R_k - R_{k-1}) P_k`` over the distinct score thresholds, from the highest down.
    Both as scikit-learn's ``roc_auc_score`` and ``average_precision_score`` with
    ``sample_weight`` (tested against them), without their per-call input checks, which cost
    more than the arithmetic when every candidate and view is scored. ``order``: the scores'
    stable descending order, when already known.
    """
    order = np.argsort(-score, kind="mergesort") if order is None else order
    s, pos = score[order], positive[order]
    wp, wn = np.where(pos, weight[order], 0.0), np.where(pos, 0.0, weight[order])
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]  # the end of each group of tied scores
    tps, fps = np.cumsum(wp)[last], np.cumsum(wn)[last]  # weights at or above each threshold
    total_p, total_n = tps[-1], fps[-1]
    if total_p <= 0 or total_n <= 0:
        return 0.0, 0.0
    group_p, group_n = np.diff(tps, prepend=0.0), np.diff(fps, prepend=0.0)
    # negatives strictly below a group, plus half of the tied ones
    auc = float((group_p * (total_n - fps + 0.5 * group_n)).sum() / (total_p * total_n))
    predicted = tps + fps
    precision = np.divide(tps, predicted, out=np.zeros_like(tps), where=predicted > 0)
    ap = float((group_p / total_p * precision).sum())
    return auc, ap


def probability_metrics(
    y_true: np.ndarray, proba: np.ndarray, *, sample_weight: np.ndarray | None = None, ece_bins: int = 15
) -> dict[str, float]:
    """Metrics of the predicted probabilities (N, C).

    ``roc_auc_ovr`` and ``pr_auc`` are macro averages of one-vs-rest ROC-AUC and average
    precision over the classes that have both positives and negatives in ``y_true`` (all of
    them, for scikit-learn's ``roc_auc_score(multi_class="ovr")``); ``log_loss`` clips
    probabilities at float64 eps like scikit-learn; ``ece`` is
    :func:`expected_calibration_error`.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    w = np.ones(len(y_true)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    aucs, aps = [], []
    orders = _descending_orders(proba)
    for c in range(proba.shape[1]):
        positive = y_true == c
        if positive.any() and not positive.all():
            auc, ap = ranking_scores(positive, proba[:, c], w, orders[:, c])
            aucs.append(auc)
            aps.append(ap)
    eps = np.finfo(np.float64).eps
    p_true = np.clip(proba[np.arange(len(y_true)), y_true], eps, 1.0)
    return {
        "roc_auc_ovr": float(np.mean(aucs)) if aucs else 0.0,
        "pr_auc": float(np.mean(aps)) if aps else 0.0,
        "log_loss": float(-(w * np.log(p_true)).sum() / w.sum()),
        "ece": expected_calibration_error(proba, y_true, n_bins=ece_bins, sample_weight=w),
    }


_ORDERS: list = [None, None]  # the last probabilities' digest and their columns' descending orders


def _descending_orders(proba: np.ndarray) -> np.ndarray:
    """(N, C) each column's stable descending order. The views of one candidate score the same
    probabilities with other weights: the sort is kept for the last probabilities seen."""
    proba = np.asarray(proba)
    key = _digest(proba)
    if _ORDERS[0] != key:
        _ORDERS[:] = [key, np.argsort(-proba, axis=0, kind="mergesort")]
    return _ORDERS[1]


def flatten(values: dict[str, np.ndarray], classes: list[str]) -> dict[str, float]:
    """Scalar metrics as floats; per-class arrays spread into ``<name>/<class>`` keys."""
    out: dict[str, float] = {}
    for name, v in values.items():
        if name in PER_CLASS:
            out.update({f"{name}/{c}": float(x) for c, x in zip(classes, v)})
        else:
            out[name] = float(v)
    return out


def classification_metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    classes: list[str],
    *,
    proba: np.ndarray | None = None,
    sample_weight: np.ndarray | None = None,
    ece_bins: int = 15,
    cost: np.ndarray | None = None,
) -> dict[str, float]:
    """Every metric of one model: count-based ones from ``y_pred``, the rest from ``proba``.

    Parameters
    ----------
    y_true, y_pred : (N,) int
        Class indices into ``classes``.
    classes : list of str
        Class names, used in the per-class keys ``recall/<class>`` etc.
    proba : (N, C) float, optional
        Predicted probabilities; adds ``roc_auc_ovr``, ``pr_auc``, ``log_loss``, ``ece``.
    sample_weight : (N,) float, optional
        Per-sample weights, e.g. :func:`prior_weights` to view the split under another prior.
    cost : (C, C) float, optional
        Cost of each decision, ``cost[true, decided]``; adds ``expected_cost``.
    """
    cm = confusion_matrix(y_true, y_pred, len(classes), sample_weight)
    out = flatten(count_metrics(cm, cost=cost), classes)
    if proba is not None:
        out.update(probability_metrics(y_true, proba, sample_weight=sample_weight, ece_bins=ece_bins))
    return out


def prior_weights(y_true: np.ndarray, target_prior: np.ndarray) -> np.ndarray:
    """Per-sample weights ``pi_target(y) / pi_split(y)`` that give the split the target prior.

    Weighted counts per class become ``N * pi_target``; weights average 1 over the split.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    target = np.asarray(target_prior, dtype=np.float64)
    target = target / target.sum()
    empirical = np.bincount(y_true, minlength=len(target)) / len(y_true)
    return safe_ratio(target, empirical)[y_true]


RESAMPLE_HOLD = 4_000_000  # bootstrap row indices held as an array up to this many (16 MB of int32)
_BLOCK = 20_000_000  # resampled rows generated or gathered at once (bounded temporaries at any N)
COUNTS_CACHE_BYTES = 256 * 2**20  # resampled counts kept for reuse (80 KB each at 1 000 resamples, 10 classes)


class Resamples:
    """``B`` bootstrap resamples of ``N`` rows, shared by every candidate so that comparisons are
    paired: the (B, N) row indices that ``default_rng(seed).integers(0, N, size=(B, N))`` draws.

    Up to :data:`RESAMPLE_HOLD` indices (the bundled data's splits) they are held as that array
    and every sum is taken over the resampled rows. Above, memory and time would grow as B × N
    per candidate, so they are held as each row's multiplicity in each resample, (B, N) uint8 (a
    quarter of the indices' int32; 200 MB for 1 000 resamples of 200 000 rows), computed from
    the same draws regenerated block by block (numpy draws bounded integers row after row, so
    blocks give the draws of one call: ``tests/test_metrics.py`` checks it). A resample's sum is
    then its multiplicities times the values, and its class counts the multiplicities summed by
    class (one ``bincount`` over the rows): no (B, N) gather per candidate, 3x faster at
    200 000 rows. Both ways give the same resamples; sums agree to float rounding (tested).
    Iterating gives each resample's row indices (regenerated above the limit).

    The evaluation asks for the same candidate's resampled class counts several times (its
    intervals, P(best), the tail trade, the weight curve): :meth:`counts` keeps what it computed,
    up to :data:`COUNTS_CACHE_BYTES`, keyed by a digest of the codes and weights, and returns it
    read-only.
    """

    def __init__(self, n: int, resamples: int, seed: int, *, hold: int | None = None):
        self.n, self.resamples, self.seed = int(n), int(resamples), seed
        self.dtype = np.int32 if n < 2**31 else np.int64
        self._block = max(1, _BLOCK // max(self.n, 1))  # resamples per block
        limit = RESAMPLE_HOLD if hold is None else hold
        self._indices = self._draw_all() if self.n * self.resamples <= limit else None
        self._mult = None if self._indices is not None else self._multiplicities()
        self._cache: dict = {}

    @classmethod
    def of(cls, indices: np.ndarray) -> Resamples:
        """Given (B, N) row indices, held as they are."""
        out = cls.__new__(cls)
        out._indices = np.asarray(indices)
        out.resamples, out.n = out._indices.shape
        out.seed, out.dtype, out._mult = None, out._indices.dtype, None
        out._block = max(1, _BLOCK // max(out.n, 1))
        out._cache = {}
        return out

    @property
    def shape(self) -> tuple[int, int]:
        return self.resamples, self.n

    def __len__(self) -> int:
        return self.resamples

    def _draw_all(self) -> np.ndarray:
        return np.random.default_rng(self.seed).integers(0, self.n, size=(self.resamples, self.n), dtype=self.dtype)

    def blocks(self):
        """``(start, indices (b, N))`` over all resamples, in order."""
        if self._indices is not None:
            for start in range(0, self.resamples, self._block):
                yield start, self._indices[start : start + self._block]
            return
        rng = np.random.default_rng(self.seed)
        for start in range(0, self.resamples, self._block):
            b = min(self._block, self.resamples - start)
            yield start, rng.integers(0, self.n, size=(b, self.n), dtype=self.dtype)

    def __iter__(self):
        for _, block in self.blocks():
            yield from block

    def _multiplicities(self) -> np.ndarray:
        mult = np.empty((self.resamples, self.n), dtype=np.uint8)  # a row drawn over 255 times: uint16
        for start, block in self.blocks():
            for j, row in enumerate(block):
                counts = np.bincount(row, minlength=self.n)
                if mult.dtype == np.uint8 and counts.max(initial=0) > np.iinfo(np.uint8).max:
                    mult = mult.astype(np.uint16)
                mult[start + j] = counts
        return mult

    def _mult_blocks(self):
        rows = max(1, _BLOCK // max(self.n, 1))  # (rows, N) float64 temporaries: 160 MB at most
        for start in range(0, self.resamples, rows):
            yield start, self._mult[start : start + rows]

    def sums(self, values: np.ndarray) -> np.ndarray:
        """(B,) each resample's sum of ``values`` (N,) over its rows (a row drawn twice counts twice)."""
        values = np.asarray(values, dtype=np.float64)
        out = np.empty(self.resamples)
        if self._mult is None:
            for start, idx in self.blocks():
                out[start : start + len(idx)] = values[idx].sum(1)
            return out
        for start, m in self._mult_blocks():
            out[start : start + len(m)] = m @ values
        return out

    def counts(self, codes: np.ndarray, size: int, weights: np.ndarray | None = None) -> np.ndarray:
        """(B, size) float64, read-only: each resample's (weighted) count of each code, ``codes`` (N,)
        in [0, size). Asked again for the same codes and weights, the same array."""
        codes = np.asarray(codes, dtype=np.int64)
        w = None if weights is None else np.asarray(weights, dtype=np.float64)
        key = (size, _digest(codes), None if w is None else _digest(w))
        out = self._cache.pop(key, None)
        if out is None:
            out = self._counts(codes, size, np.ones(self.n) if w is None else w)
            out.flags.writeable = False
        self._cache[key] = out  # the most recently used last
        while sum(a.nbytes for a in self._cache.values()) > COUNTS_CACHE_BYTES and len(self._cache) > 1:
            del self._cache[next(iter(self._cache))]
        return out

    def _counts(self, codes: np.ndarray, size: int, w: np.ndarray) -> np.ndarray:
        out = np.zeros((self.resamples, size))
        if self._mult is None:
            for start, idx in self.blocks():
                offset = (np.arange(len(idx)) * size)[:, None]
                counts = np.bincount((codes[idx] + offset).ravel(), weights=w[idx].ravel(), minlength=len(idx) * size)
                out[start : start + len(idx)] = counts.reshape(len(idx), size)
            return out
        for b, m in enumerate(self._mult):  # one pass over the rows per resample, no (B, N) temporary
            out[b] = np.bincount(codes, weights=m * w, minlength=size)
        return out


def _digest(a: np.ndarray) -> bytes:
    import hashlib

    content = hashlib.blake2b(np.ascontiguousarray(a).view(np.uint8), digest_size=16).digest()
    return content + repr(a.shape).encode() + a.dtype.str.encode()


def as_resamples(indices) -> Resamples:
    """``indices`` as :class:`Resamples`: given as such, or (B, N) row indices."""
    return indices if isinstance(indices, Resamples) else Resamples.of(indices)


def bootstrap_distribution(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    n_classes: int,
    *,
    indices: Resamples | np.ndarray,
    sample_weight: np.ndarray | None = None,
    cost: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """:func:`class_count_metrics` of every resample: arrays of shape (B,) or (B, C).

    ``indices`` are the resamples (:class:`Resamples`, or (B, N) row indices), shared across
    models so that comparisons between models are paired. ``cost`` (C, C) adds ``expected_cost``.
    """
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    resamples = as_resamples(indices)
    w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)  # None: no digest to take
    # (B, C) each: a confusion matrix's diagonal, row and column sums, never its (B, C, C) cells
    support = resamples.counts(y_true, n_classes, w)  # the same for every candidate: counted once
    tp, predicted = decided_counts(resamples, y_true, y_pred, n_classes, w)
    n = support.sum(axis=-1)
    mean_cost = None
    if cost is not None:  # each resample's total cost: a weighted count of one code, kept like the counts
        cell_cost = cost_of(cost, n_classes)[y_true, y_pred] * (1.0 if w is None else w)
        mean_cost = safe_ratio(resamples.counts(np.zeros(len(y_true), dtype=np.int64), 1, cell_cost)[:, 0], n)
    return class_count_metrics(tp, support, predicted, n=n, expected_cost=mean_cost)


def decided_counts(
    resamples: Resamples, y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, w: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(B, C) each: every resample's (weighted by ``w``, None for none) count of right decisions
    per class and of decisions per class, in one pass over the rows (code ``y_pred``, plus C
    where right)."""
    codes = np.asarray(y_pred, dtype=np.int64) + n_classes * (np.asarray(y_true) == np.asarray(y_pred))
    both = resamples.counts(codes, 2 * n_classes, w)
    return both[:, n_classes:], both[:, :n_classes] + both[:, n_classes:]


def bootstrap_intervals(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    classes: list[str],
    *,
    indices: Resamples | np.ndarray,
    metrics: list[str],
    level: float = 0.95,
    sample_weight: np.ndarray | None = None,
    cost: np.ndarray | None = None,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of count-based metrics (:func:`bootstrap_distribution`).

    ``metrics`` are summary metrics of :func:`count_metrics`, or per-class ones as
    ``<name>/<class>``; ``expected_cost`` needs ``cost``.
    """
    values = bootstrap_distribution(
        y_true, y_pred, len(classes), indices=indices, sample_weight=sample_weight, cost=cost
    )
    out = {}
    for name in metrics:
        base, _, cls = name.partition("/")
        dist = values[base][:, classes.index(cls)] if cls else values[base]
        out[name] = percentile_interval(dist, level)
    return out


def percentile_interval(dist: np.ndarray, level: float) -> tuple[float, float]:
    """The central ``level`` interval of a bootstrap distribution."""
    alpha = (1 - level) / 2
    lo, hi = np.quantile(dist, [alpha, 1 - alpha])
    return float(lo), float(hi)


def bootstrap_indices(n: int, resamples: int, seed: int) -> Resamples:
    """``resamples`` resamples of ``n`` rows drawn with replacement from ``seed`` (:class:`Resamples`:
    int32 row indices below 2**31 rows, held as multiplicities when large)."""
    return Resamples(n, resamples, seed)
