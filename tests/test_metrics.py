"""pipeline.metrics against scikit-learn and imbalanced-learn."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from imblearn.metrics import specificity_score
from sklearn import metrics as skm

from pipeline.metrics import classification_metrics, confusion_matrix


@st.composite
def labelings(draw):
    k = draw(st.integers(2, 7))
    n = draw(st.integers(1, 120))
    y_true = np.array(draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    y_pred = np.array(draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    return y_true, y_pred, [f"c{i}" for i in range(k)]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
@settings(max_examples=150, deadline=None)
@given(labelings())
def test_metrics_match_sklearn(case):
    y_true, y_pred, classes = case
    labels = list(range(len(classes)))
    m = classification_metrics(y_true, y_pred, classes)
    kw = dict(labels=labels, zero_division=0)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    for avg in ("macro", "micro", "weighted"):
        assert m[f"{avg}_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average=avg, **kw))
    assert m["macro_precision"] == pytest.approx(skm.precision_score(y_true, y_pred, average="macro", **kw))
    assert m["macro_recall"] == pytest.approx(skm.recall_score(y_true, y_pred, average="macro", **kw))
    for name, fn in (("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score)):
        per_class = fn(y_true, y_pred, average=None, **kw)
        for c, v in zip(classes, per_class):
            assert m[f"{name}/{c}"] == pytest.approx(v)
    # FPR = 1 - specificity, where the class has any negatives in y_true
    spec = specificity_score(y_true, y_pred, labels=labels, average=None)
    negatives = len(y_true) - np.bincount(y_true, minlength=len(classes))
    for c, s, neg in zip(classes, spec, negatives):
        if neg > 0:
            assert m[f"fpr/{c}"] == pytest.approx(1 - s)
    present = np.unique(y_true)
    recalls = skm.recall_score(y_true, y_pred, labels=present, average=None, zero_division=0)
    assert m["balanced_accuracy"] == pytest.approx(recalls.mean())
    np.testing.assert_array_equal(
        confusion_matrix(y_true, y_pred, len(classes)), skm.confusion_matrix(y_true, y_pred, labels=labels)
    )


def test_balanced_accuracy_matches_sklearn_when_all_classes_present():
    rng = np.random.default_rng(0)
    y_true = np.repeat([0, 1, 2], [90, 9, 1])
    y_pred = rng.integers(0, 3, size=100)
    m = classification_metrics(y_true, y_pred, ["a", "b", "c"])
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y_true, y_pred))


def test_accuracy_paradox():
    # always predicting the majority: high accuracy, macro-F1 far lower
    y_true = np.repeat([0, 1], [99, 1])
    m = classification_metrics(y_true, np.zeros(100, dtype=int), ["healthy", "sick"])
    assert m["accuracy"] == pytest.approx(0.99)
    assert m["recall/sick"] == 0.0
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y_true, np.zeros(100), average="macro", zero_division=0))
    assert m["macro_f1"] < 0.5
