"""Selection on validation: the objective, P(best), resampled metrics and prior shift, against
brute force and scikit-learn."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import f1_score, log_loss, recall_score

from pipeline.config import Constraint, SelectConfig
from pipeline.decision.metrics import bootstrap_indices, classification_metrics
from pipeline.decision.selection import (
    kish_ess,
    p_best,
    policy_objective,
    prior_family,
    resampled_values,
    second_view,
    shifted_weights,
)

CLASSES = ["a", "b", "c"]


def _split(n, seed, noise=0.3):
    rng = np.random.default_rng(seed)
    y = rng.choice(3, n, p=[0.6, 0.3, 0.1])
    logits = 2.0 * np.eye(3)[y] + rng.normal(scale=1 / noise, size=(n, 3)) * noise * 3
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, proba.argmax(1), proba


def test_objective_is_the_policy_metric_with_its_constraints_shortfall():
    y, pred, proba = _split(300, 0)
    obj = policy_objective(SelectConfig(metric="macro_f1", constraints=("recall/c >= 0.99",)), CLASSES)
    violation, score = obj(y, pred, proba, None)
    assert score == pytest.approx(f1_score(y, pred, average="macro"))
    assert violation == pytest.approx(0.99 - recall_score(y, pred, labels=[2], average="macro"))
    loss_obj = policy_objective(SelectConfig(metric="log_loss"), CLASSES)
    assert loss_obj(y, pred, proba, None) == (0.0, pytest.approx(-log_loss(y, proba)))  # lower is better: negated


def test_resampled_values_match_each_resample_computed_alone():
    y, pred, proba = _split(120, 1)
    idx = bootstrap_indices(len(y), 25, seed=3)
    w = shifted_weights(y, [1 / 3] * 3)
    names = ["macro_f1", "recall/c", "log_loss", "roc_auc_ovr"]
    got = resampled_values(names, y, pred, proba, CLASSES, indices=idx, sample_weight=w)
    for b, rows in enumerate(idx):
        ref = classification_metrics(y[rows], pred[rows], CLASSES, proba=proba[rows], sample_weight=w[rows])
        for name in names:
            assert got[name][b] == pytest.approx(ref[name], abs=1e-12), (name, b)


def test_p_best_counts_the_resamples_each_candidate_wins_and_splits_ties():
    resampled = {
        "x": {"m": np.array([0.9, 0.5, 0.7, 0.6]), "recall/c": np.array([1.0, 1.0, 1.0, 0.0])},
        "y": {"m": np.array([0.8, 0.6, 0.7, 0.9]), "recall/c": np.array([1.0, 1.0, 1.0, 0.0])},
    }
    assert p_best(resampled, "m", [], {"x": 1, "y": 2}) == {"x": 0.375, "y": 0.625}
    constrained = p_best(resampled, "m", [Constraint("recall/c", ">=", 0.5)], {"x": 1, "y": 2})
    assert constrained == {"x": 0.375, "y": 0.375, "none": 0.25}


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 6))
def test_p_best_sums_to_one(seed, m):
    rng = np.random.default_rng(seed)
    resampled = {f"c{i}": {"m": rng.integers(0, 4, 50) / 4} for i in range(m)}
    assert sum(p_best(resampled, "m", [], {k: 0 for k in resampled}).values()) == pytest.approx(1.0)


def test_prior_shift_reweighting_equals_a_split_resampled_to_that_prior():
    """Reweighting rows to prior pi gives the metrics of a split whose classes come in the
    proportions pi (here built exactly, by repeating rows)."""
    rng = np.random.default_rng(5)
    y = np.repeat([0, 1, 2], [40, 40, 40])
    proba = rng.dirichlet(np.ones(3), size=len(y)) + 0.8 * np.eye(3)[y]
    proba /= proba.sum(1, keepdims=True)
    pred = proba.argmax(1)
    prior = np.array([4, 2, 1]) / 7
    weighted = classification_metrics(y, pred, CLASSES, proba=proba, sample_weight=shifted_weights(y, prior))
    rows = np.concatenate([np.repeat(np.flatnonzero(y == c), k) for c, k in zip(range(3), (4, 2, 1))])
    resampled = classification_metrics(y[rows], pred[rows], CLASSES, proba=proba[rows])
    for name in ("accuracy", "macro_f1", "micro_f1", "weighted_f1", "precision/a", "recall/c", "log_loss", "mcc"):
        assert weighted[name] == pytest.approx(resampled[name], abs=1e-12), name


def test_prior_family_runs_from_validation_to_training_and_on_to_deployment():
    val, train = np.array([1, 1, 1]) / 3, np.array([0.7, 0.2, 0.1])
    points = prior_family(val, train, np.array([0.1, 0.1, 0.8]), steps=3)
    assert [p["t"] for p in points] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert points[0]["prior"] == pytest.approx(val.tolist()) and points[2]["prior"] == pytest.approx(train.tolist())
    assert points[-1]["prior"] == pytest.approx([0.1, 0.1, 0.8])
    assert [p["label"] for p in points][::2] == ["validation", "training", "deployment"]


def test_kish_effective_sample_size():
    assert kish_ess(np.ones(50)) == pytest.approx(50)
    assert kish_ess(np.r_[np.ones(10), np.zeros(40)]) == pytest.approx(10)
    assert kish_ess(np.r_[3.0, np.ones(3)]) == pytest.approx(36 / 12)


def test_second_view_is_decided_without_the_test_split():
    assert second_view([100, 10], [50, 48], "auto").key == "train_prior"
    assert second_view([100, 10], [90, 9], "auto").key == "uniform_prior"


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000))
def test_fast_metric_values_equal_the_full_computation(seed):
    from pipeline.decision.selection import COUNT_METRICS, metric_value

    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    y, pred = rng.integers(0, 3, n), rng.integers(0, 3, n)
    w = rng.random(n) if seed % 2 else None
    cost = rng.random((3, 3)) * (1 - np.eye(3))
    full = classification_metrics(y, pred, CLASSES, sample_weight=w, cost=cost)
    names = [*(m for m in COUNT_METRICS), *(f"{b}/{c}" for b in ("recall", "precision", "f1", "fpr") for c in CLASSES)]
    for name in names:
        assert metric_value(name, y, pred, None, CLASSES, sample_weight=w, cost=cost) == pytest.approx(
            full[name], abs=1e-12
        ), name


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.booleans())
def test_the_batched_objective_equals_the_objective_row_by_row(seed, weighted):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 80))
    y, preds = rng.integers(0, 3, n), rng.integers(0, 3, (6, n))
    w = rng.random(n) if weighted else None
    cost = 1 - np.eye(3)
    obj = policy_objective(
        SelectConfig(metric="macro_f1", constraints=("recall/c >= 0.7", "fpr/a <= 0.2")), CLASSES, cost=cost
    )
    violations, scores = obj.batch(y, preds, w)
    for k in range(len(preds)):
        assert (violations[k], scores[k]) == pytest.approx(obj(y, preds[k], None, w), abs=1e-12)
    assert not hasattr(policy_objective(SelectConfig(metric="log_loss"), CLASSES), "batch")  # reads probabilities
