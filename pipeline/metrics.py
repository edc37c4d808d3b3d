"""Classification metrics for imbalanced problems, computed from the confusion matrix.

Definitions follow scikit-learn (``zero_division=0``: a ratio with an empty denominator is 0)
and are tested against it. Names are the keys of ``reports/metrics.json``.
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, C) int64 counts; row = true class, column = predicted class."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes
    )


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]
) -> dict[str, float]:
    """Headline and per-class metrics of one model's hard predictions.

    Parameters
    ----------
    y_true, y_pred : (N,) int
        Class indices into ``classes``.
    classes : list of str
        Class names, used in the per-class keys ``recall/<class>`` etc.

    Returns
    -------
    dict: ``accuracy``, ``balanced_accuracy``, ``macro_f1``, ``micro_f1``, ``weighted_f1``,
    ``macro_precision``, ``macro_recall``, and per class ``precision/<c>``, ``recall/<c>``,
    ``f1/<c>``, ``fpr/<c>`` (false-positive rate FP / (FP + TN)) and ``support/<c>``.
    """
    k = len(classes)
    cm = confusion_matrix(y_true, y_pred, k)
    n = cm.sum()
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)  # true count per class
    predicted = cm.sum(axis=0)
    fp, fn = predicted - tp, support - tp
    tn = n - tp - fp - fn
    precision, recall = _ratio(tp, predicted), _ratio(tp, support)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    fpr = _ratio(fp, fp + tn)
    present = support > 0  # balanced accuracy averages recall over classes present in y_true
    out = {
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1.mean()),
        "micro_f1": float(_ratio(2 * tp.sum(), 2 * tp.sum() + fp.sum() + fn.sum())),
        "weighted_f1": float((f1 * support).sum() / support.sum()) if support.sum() else 0.0,
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
    }
    for name, values in (("precision", precision), ("recall", recall), ("f1", f1), ("fpr", fpr)):
        out.update({f"{name}/{c}": float(v) for c, v in zip(classes, values)})
    out.update({f"support/{c}": float(v) for c, v in zip(classes, support)})
    return out


HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1", "micro_f1", "weighted_f1")
