"""pipeline.decision.metrics against scikit-learn and imbalanced-learn, unweighted and weighted."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from imblearn.metrics import geometric_mean_score, specificity_score
from sklearn import metrics as skm

import pipeline.decision.metrics as metrics_module
from pipeline.decision.metrics import (
    COST_METRIC,
    HEADLINE,
    SUMMARY,
    Resamples,
    bootstrap_distribution,
    bootstrap_indices,
    bootstrap_intervals,
    class_count_metrics,
    class_counts,
    classification_metrics,
    confusion_matrix,
    count_metrics,
    expected_calibration_error,
    lower_is_better,
    metric_names,
    prior_weights,
    probability_metrics,
)

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")


@st.composite
def labelings(draw, weighted=False):
    k = draw(st.integers(2, 6))
    n = draw(st.integers(2, 80))
    y_true = np.array(draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    y_pred = np.array(draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    w = None
    if weighted:
        w = np.array(draw(st.lists(st.floats(0.1, 10.0), min_size=n, max_size=n)))
    return y_true, y_pred, [f"c{i}" for i in range(k)], w


def _check_against_sklearn(y_true, y_pred, classes, w):
    labels = list(range(len(classes)))
    m = classification_metrics(y_true, y_pred, classes, sample_weight=w)
    kw = dict(labels=labels, zero_division=0, sample_weight=w)
    approx = lambda v: pytest.approx(v, abs=1e-9)  # noqa: E731
    assert m["accuracy"] == approx(skm.accuracy_score(y_true, y_pred, sample_weight=w))
    for avg in ("macro", "micro", "weighted"):
        assert m[f"{avg}_f1"] == approx(skm.f1_score(y_true, y_pred, average=avg, **kw))
        assert m[f"{avg}_precision"] == approx(skm.precision_score(y_true, y_pred, average=avg, **kw))
        assert m[f"{avg}_recall"] == approx(skm.recall_score(y_true, y_pred, average=avg, **kw))
    for name, fn in (("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score)):
        for c, v in zip(classes, fn(y_true, y_pred, average=None, **kw)):
            assert m[f"{name}/{c}"] == approx(v)
    # specificity from sklearn's per-class (tn, fp); imbalanced-learn's own, unweighted only
    # (with weights it counts true negatives as y_true.size minus weighted sums)
    mcm = skm.multilabel_confusion_matrix(y_true, y_pred, labels=labels, sample_weight=w)
    spec = specificity_score(y_true, y_pred, labels=labels, average=None) if w is None else None
    for i, c in enumerate(classes):
        tn, fp = mcm[i, 0, 0], mcm[i, 0, 1]
        if (y_true != i).any():  # the class has negatives (tn + fp can be 1e-16 instead of 0)
            assert m[f"specificity/{c}"] == approx(tn / (tn + fp))
            assert m[f"fpr/{c}"] == approx(fp / (tn + fp))
            if spec is not None:
                assert m[f"specificity/{c}"] == approx(spec[i])
    present = np.unique(y_true)
    recalls = skm.recall_score(y_true, y_pred, labels=present, average=None, zero_division=0, sample_weight=w)
    assert m["balanced_accuracy"] == approx(recalls.mean())
    assert m["mcc"] == approx(skm.matthews_corrcoef(y_true, y_pred, sample_weight=w))
    kappa = skm.cohen_kappa_score(y_true, y_pred, labels=labels, sample_weight=w)
    if np.isfinite(kappa):
        assert m["cohen_kappa"] == approx(kappa)
    assert m["geometric_mean"] == approx(
        geometric_mean_score(y_true, y_pred, labels=present, sample_weight=w, average="multiclass")
    )
    np.testing.assert_allclose(
        confusion_matrix(y_true, y_pred, len(classes), w),
        skm.confusion_matrix(y_true, y_pred, labels=labels, sample_weight=w),
    )


@settings(max_examples=150, deadline=None)
@given(labelings())
def test_count_metrics_match_sklearn_and_imblearn(case):
    _check_against_sklearn(*case)


@settings(max_examples=100, deadline=None)
@given(labelings(weighted=True))
def test_weighted_count_metrics_match_sklearn_and_imblearn(case):
    _check_against_sklearn(*case)


def test_specificity_is_zero_not_noise_when_a_class_has_no_negatives():
    # every sample is class 0: its specificity is undefined (0/0) and reported as 0, although
    # the weighted true-negative count comes out as +-1e-16 rather than 0
    y = np.zeros(8, dtype=int)
    w = np.array([0.5, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 1.0])
    m = classification_metrics(y, y, ["c0", "c1"], sample_weight=w)
    assert m["specificity/c0"] == 0.0 and m["fpr/c0"] == 0.0
    assert m["specificity/c1"] == 1.0


def test_balanced_accuracy_matches_sklearn_when_all_classes_present():
    rng = np.random.default_rng(0)
    y_true = np.repeat([0, 1, 2], [90, 9, 1])
    y_pred = rng.integers(0, 3, size=100)
    m = classification_metrics(y_true, y_pred, ["a", "b", "c"])
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y_true, y_pred))


def _proba_case(seed, n=300, k=4):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 2.0 * np.eye(k)[y]
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, proba, rng.uniform(0.2, 3.0, n)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_probability_metrics_match_sklearn(seed, weighted):
    y, proba, w = _proba_case(seed)
    w = w if weighted else None
    m = classification_metrics(y, proba.argmax(1), ["a", "b", "c", "d"], proba=proba, sample_weight=w)
    assert m["roc_auc_ovr"] == pytest.approx(
        skm.roc_auc_score(y, proba, multi_class="ovr", average="macro", sample_weight=w)
    )
    ap = np.mean([skm.average_precision_score(y == c, proba[:, c], sample_weight=w) for c in range(4)])
    assert m["pr_auc"] == pytest.approx(ap)
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, proba, labels=range(4), sample_weight=w))


def test_the_kept_sort_follows_the_probabilities_not_the_array():
    """Both views of a candidate reuse one sort; an array changed in place is sorted again."""
    y, proba, w = _proba_case(4)
    for weights in (None, w, None):
        m = probability_metrics(y, proba, sample_weight=weights)
        assert m["roc_auc_ovr"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr", sample_weight=weights))
    proba[:] = proba[::-1]  # the same memory, other values
    m = probability_metrics(y, proba, sample_weight=w)
    assert m["roc_auc_ovr"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr", sample_weight=w))
    ap = np.mean([skm.average_precision_score(y == c, proba[:, c], sample_weight=w) for c in range(4)])
    assert m["pr_auc"] == pytest.approx(ap)


def test_ece_against_a_direct_loop():
    y, proba, w = _proba_case(3)
    conf, pred = proba.max(1), proba.argmax(1)
    total = 0.0
    for b in range(10):
        inside = (conf > b / 10) & (conf <= (b + 1) / 10)
        if inside.any():
            total += (
                w[inside].sum()
                / w.sum()
                * abs(
                    np.average(pred[inside] == y[inside], weights=w[inside])
                    - np.average(conf[inside], weights=w[inside])
                )
            )
    assert expected_calibration_error(proba, y, n_bins=10, sample_weight=w) == pytest.approx(total)


def test_ece_is_zero_for_a_calibrated_constant_forecast():
    # 4 classes, always 0.25 each, and the top label (class 0) right 25% of the time
    y = np.array([0, 1, 2, 3] * 25)
    proba = np.full((100, 4), 0.25)
    assert expected_calibration_error(proba, y) == pytest.approx(0.0)


def test_prior_weights_give_the_split_the_target_prior():
    y = np.repeat([0, 1, 2], [50, 30, 20])
    w = prior_weights(y, np.array([1.0, 1.0, 8.0]))
    counts = np.bincount(y, weights=w)
    np.testing.assert_allclose(counts / counts.sum(), [0.1, 0.1, 0.8])
    assert w.mean() == pytest.approx(1.0)
    m = classification_metrics(y, y * 0, ["a", "b", "c"], sample_weight=w)
    assert m["accuracy"] == pytest.approx(0.1)  # majority-of-the-split looks bad under the new prior


def test_bootstrap_intervals_match_a_loop_over_resamples():
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 3, 120), rng.integers(0, 3, 120)
    classes = ["a", "b", "c"]
    idx = bootstrap_indices(120, 200, seed=1)
    fast = bootstrap_intervals(y_true, y_pred, classes, indices=idx, metrics=["macro_f1", "recall/b"], level=0.9)
    slow_f1 = [skm.f1_score(y_true[i], y_pred[i], average="macro", labels=[0, 1, 2], zero_division=0) for i in idx]
    slow_rec = [skm.recall_score(y_true[i], y_pred[i], labels=[1], average=None, zero_division=0)[0] for i in idx]
    assert fast["macro_f1"] == pytest.approx(tuple(np.quantile(slow_f1, [0.05, 0.95])))
    assert fast["recall/b"] == pytest.approx(tuple(np.quantile(slow_rec, [0.05, 0.95])))
    point = classification_metrics(y_true, y_pred, classes)["macro_f1"]
    assert fast["macro_f1"][0] <= point <= fast["macro_f1"][1]


def test_count_metrics_keep_leading_axes():
    cms = np.stack([skm.confusion_matrix([0, 1, 1, 2], [0, 1, 2, 2]), np.eye(3, dtype=int) * 4])
    out = count_metrics(cms)
    assert out["accuracy"].shape == (2,) and out["recall"].shape == (2, 3)
    assert out["accuracy"].tolist() == [0.75, 1.0]


def test_accuracy_paradox():
    y_true = np.repeat([0, 1], [99, 1])
    m = classification_metrics(y_true, np.zeros(100, dtype=int), ["healthy", "sick"])
    assert m["accuracy"] == pytest.approx(0.99)
    assert m["recall/sick"] == 0.0
    assert m["macro_f1"] < 0.5 and m["mcc"] == 0.0 and m["geometric_mean"] == 0.0


def test_direction_of_metrics():
    assert lower_is_better("log_loss") and lower_is_better("ece") and lower_is_better("fpr/3")
    assert lower_is_better("expected_cost") and COST_METRIC == "expected_cost"
    assert not lower_is_better("macro_f1") and not lower_is_better("recall/3")


@st.composite
def costed_labelings(draw, weighted=False):
    y_true, y_pred, classes, w = draw(labelings(weighted=weighted))
    k = len(classes)
    cost = np.array(draw(st.lists(st.floats(0.0, 50.0), min_size=k * k, max_size=k * k))).reshape(k, k)
    return y_true, y_pred, classes, w, cost


def _brute_force_cost(y_true, y_pred, cost, w=None):
    w = np.ones(len(y_true)) if w is None else w
    return sum(wn * cost[t, d] for t, d, wn in zip(y_true, y_pred, w)) / sum(w)


@settings(max_examples=100, deadline=None)
@given(costed_labelings())
def test_expected_cost_is_the_mean_cost_per_decision(case):
    y_true, y_pred, classes, _, cost = case
    m = classification_metrics(y_true, y_pred, classes, cost=cost)
    assert m["expected_cost"] == pytest.approx(_brute_force_cost(y_true, y_pred, cost), rel=1e-9, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(costed_labelings(weighted=True))
def test_weighted_expected_cost_is_the_weighted_mean_cost_per_decision(case):
    y_true, y_pred, classes, w, cost = case
    m = classification_metrics(y_true, y_pred, classes, sample_weight=w, cost=cost)
    assert m["expected_cost"] == pytest.approx(_brute_force_cost(y_true, y_pred, cost, w), rel=1e-9, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(labelings(weighted=True))
def test_expected_cost_of_the_zero_one_matrix_is_the_error_rate(case):
    y_true, y_pred, classes, w = case
    m = classification_metrics(y_true, y_pred, classes, sample_weight=w, cost=1 - np.eye(len(classes)))
    assert m["expected_cost"] == pytest.approx(1 - m["accuracy"], abs=1e-12)


def test_expected_cost_by_hand_and_only_when_asked():
    # two of class 1 called 0 (cost 5 each), one of class 0 called 1 (cost 1), one right
    y_true, y_pred = np.array([1, 1, 0, 0]), np.array([0, 0, 1, 0])
    cost = np.array([[0.0, 1.0], [5.0, 0.0]])
    m = classification_metrics(y_true, y_pred, ["a", "b"], cost=cost)
    assert m["expected_cost"] == pytest.approx(11 / 4)
    w = np.array([1.0, 1.0, 2.0, 4.0])
    assert classification_metrics(y_true, y_pred, ["a", "b"], cost=cost, sample_weight=w)[
        "expected_cost"
    ] == pytest.approx(12 / 8)
    plain = classification_metrics(y_true, y_pred, ["a", "b"])
    assert "expected_cost" not in plain and "expected_cost" not in count_metrics(np.eye(2))
    assert {k: v for k, v in m.items() if k != "expected_cost"} == plain
    assert list(plain) == [k for k in m if k != "expected_cost"]  # same keys, same order otherwise
    assert "expected_cost" not in SUMMARY and "expected_cost" not in HEADLINE
    assert metric_names(["a", "b"]) | {"expected_cost"} == metric_names(["a", "b"], costs=True)
    assert "expected_cost" not in metric_names(["a", "b"])
    assert set(m) | {"roc_auc_ovr", "pr_auc", "log_loss", "ece"} == metric_names(["a", "b"], costs=True)
    with pytest.raises(ValueError, match="cost matrix of shape"):
        classification_metrics(y_true, y_pred, ["a", "b"], cost=np.ones((3, 3)))


def test_expected_cost_keeps_leading_axes_and_is_zero_for_no_rows():
    cms = np.stack([np.array([[3, 1], [2, 0]]), np.array([[0, 0], [0, 4]]), np.zeros((2, 2))])
    cost = np.array([[0.0, 2.0], [7.0, 0.0]])
    out = count_metrics(cms, cost=cost)
    assert out["expected_cost"].shape == (3,)
    np.testing.assert_allclose(out["expected_cost"], [(2 + 14) / 6, 0.0, 0.0])


@pytest.mark.parametrize("weighted", [False, True])
def test_bootstrap_expected_cost_matches_a_loop_over_resamples(weighted):
    rng = np.random.default_rng(4)
    n, k = 60, 3
    y_true, y_pred = rng.integers(0, k, n), rng.integers(0, k, n)
    w = rng.uniform(0.2, 3.0, n) if weighted else None
    cost = rng.uniform(0, 10, (k, k))
    idx = bootstrap_indices(n, 50, seed=2)
    dist = bootstrap_distribution(y_true, y_pred, k, indices=idx, sample_weight=w, cost=cost)
    slow = [_brute_force_cost(y_true[i], y_pred[i], cost, None if w is None else w[i]) for i in idx]
    np.testing.assert_allclose(dist["expected_cost"], slow, rtol=1e-12)
    assert "expected_cost" not in bootstrap_distribution(y_true, y_pred, k, indices=idx, sample_weight=w)
    ci = bootstrap_intervals(
        y_true,
        y_pred,
        ["a", "b", "c"],
        indices=idx,
        metrics=["expected_cost", "macro_f1"],
        level=0.8,
        sample_weight=w,
        cost=cost,
    )
    assert ci["expected_cost"] == pytest.approx(tuple(np.quantile(slow, [0.1, 0.9])))
    point = classification_metrics(y_true, y_pred, ["a", "b", "c"], sample_weight=w, cost=cost)["expected_cost"]
    assert ci["expected_cost"][0] <= point <= ci["expected_cost"][1]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 100_000), st.booleans(), st.booleans())
def test_ranking_scores_equal_sklearn_with_ties_and_weights(seed, ties, weighted):
    from sklearn.metrics import average_precision_score, roc_auc_score

    from pipeline.decision.metrics import ranking_scores

    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 80))
    positive = rng.random(n) < rng.uniform(0.1, 0.9)
    if positive.all() or not positive.any():
        positive[0] = not positive[0]
    score = rng.integers(0, 5, n) / 4 if ties else rng.random(n)
    w = rng.uniform(0.1, 3, n) if weighted else np.ones(n)
    auc, ap = ranking_scores(positive, score, w)
    assert auc == pytest.approx(roc_auc_score(positive, score, sample_weight=w), abs=1e-12)
    assert ap == pytest.approx(average_precision_score(positive, score, sample_weight=w), abs=1e-12)


@given(st.integers(1, 400), st.integers(1, 60), st.integers(0, 2**32 - 1))
@settings(max_examples=40, deadline=None)
def test_resamples_drawn_in_blocks_are_the_draws_of_one_call(n, b, seed):
    one_call = np.random.default_rng(seed).integers(0, n, size=(b, n), dtype=np.int32)
    held, regenerated = Resamples(n, b, seed), Resamples(n, b, seed, hold=0)
    np.testing.assert_array_equal(np.array(list(held)), one_call)
    np.testing.assert_array_equal(np.array(list(regenerated)), one_call)


def test_resamples_regenerate_the_same_draws_across_block_boundaries(monkeypatch):
    monkeypatch.setattr(metrics_module, "_BLOCK", 7 * 301)  # 7 resamples a block, the last one short
    one_call = np.random.default_rng(5).integers(0, 301, size=(30, 301), dtype=np.int32)
    got = Resamples(301, 30, 5, hold=0)
    np.testing.assert_array_equal(np.array(list(got)), one_call)
    np.testing.assert_array_equal(got._mult, np.stack([np.bincount(r, minlength=301) for r in one_call]))


@given(st.integers(1, 300), st.integers(1, 40), st.integers(1, 12), st.integers(0, 2**32 - 1), st.booleans())
@settings(max_examples=60, deadline=None)
def test_multiplicities_give_the_sums_and_counts_of_the_resampled_rows(n, b, size, seed, weighted):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, size, n)
    values = rng.normal(size=n)
    w = rng.uniform(0.1, 5, n) if weighted else None
    held, mult = Resamples(n, b, seed), Resamples(n, b, seed, hold=0)
    assert mult._indices is None and held._indices is not None
    idx = held._indices
    np.testing.assert_allclose(mult.sums(values), values[idx].sum(1), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(held.sums(values), values[idx].sum(1), rtol=0, atol=0)
    ref = np.stack([np.bincount(codes[i], weights=None if w is None else w[i], minlength=size) for i in idx])
    np.testing.assert_allclose(held.counts(codes, size, w), ref, rtol=1e-12)
    if w is None:
        np.testing.assert_array_equal(mult.counts(codes, size), ref)  # counts: exact
    else:
        np.testing.assert_allclose(mult.counts(codes, size, w), ref, rtol=1e-12)


def test_bootstrap_distribution_is_the_same_either_way_the_resamples_are_held():
    rng = np.random.default_rng(8)
    n, k = 500, 4
    y_true, y_pred = rng.integers(0, k, n), rng.integers(0, k, n)
    w = rng.uniform(0.2, 3.0, n)
    a = bootstrap_distribution(y_true, y_pred, k, indices=Resamples(n, 80, 3), sample_weight=w)
    b = bootstrap_distribution(y_true, y_pred, k, indices=Resamples(n, 80, 3, hold=0), sample_weight=w)
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-12, atol=1e-12)
    slow = [
        skm.f1_score(y_true[i], y_pred[i], average="macro", labels=range(k), zero_division=0, sample_weight=w[i])
        for i in Resamples(n, 80, 3)
    ]
    np.testing.assert_allclose(b["macro_f1"], slow, rtol=1e-10)


def test_multiplicities_widen_when_a_row_is_drawn_more_than_255_times(monkeypatch):
    def skewed(self):  # the second resample draws row 0 every time
        yield 0, np.stack([np.arange(300), np.zeros(300, dtype=np.int64)])

    monkeypatch.setattr(Resamples, "blocks", skewed)
    got = Resamples(300, 2, 0, hold=0)
    assert got._mult.dtype == np.uint16
    assert got._mult[0].tolist() == [1] * 300 and got._mult[1, 0] == 300 and got._mult[1, 1:].sum() == 0
    np.testing.assert_array_equal(got.counts(np.arange(300) % 3, 3), [[100, 100, 100], [300, 0, 0]])


@pytest.mark.parametrize("hold", [None, 0])
def test_counts_are_kept_read_only_and_computed_once_per_codes_and_weights(hold, monkeypatch):
    rng = np.random.default_rng(2)
    codes, w = rng.integers(0, 6, 400), rng.uniform(0.5, 2.0, 400)
    r = Resamples(400, 25, 1, hold=hold)
    calls = []
    compute = Resamples._counts
    monkeypatch.setattr(Resamples, "_counts", lambda self, *a: calls.append(1) or compute(self, *a))
    first = r.counts(codes, 6)
    assert r.counts(codes.copy(), 6) is first and len(calls) == 1  # equal codes, another array: kept
    assert not first.flags.writeable
    with pytest.raises(ValueError):
        first[0, 0] = 1.0
    weighted = r.counts(codes, 6, w)
    assert weighted is not first and len(calls) == 2
    assert r.counts(codes, 6, w * 2) is not weighted and len(calls) == 3  # other weights: counted again
    assert r.counts(codes[::-1], 6) is not first and len(calls) == 4
    np.testing.assert_array_equal(first, np.stack([np.bincount(codes[i], minlength=6) for i in Resamples(400, 25, 1)]))


def test_kept_counts_stay_within_their_budget(monkeypatch):
    r = Resamples(300, 10, 0)
    one = 10 * 4 * 8  # bytes of one (10, 4) float64 result
    monkeypatch.setattr(metrics_module, "COUNTS_CACHE_BYTES", 3 * one)
    codes = [np.random.default_rng(s).integers(0, 4, 300) for s in range(5)]
    kept = [r.counts(c, 4) for c in codes]
    assert sum(a.nbytes for a in r._cache.values()) <= 3 * one and len(r._cache) == 3
    assert r.counts(codes[4], 4) is kept[4]  # the most recent stay
    assert r.counts(codes[0], 4) is not kept[0]  # the oldest went; counted again, the same values
    np.testing.assert_array_equal(r.counts(codes[0], 4), kept[0])


@settings(max_examples=100, deadline=None)
@given(labelings(weighted=True), st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_class_counts_are_the_confusion_matrix_diagonal_and_sums_and_give_its_metrics(case, k, seed):
    y_true, _, classes, w = case
    c = len(classes)
    y_preds = np.random.default_rng(seed).integers(0, c, size=(k, len(y_true)))
    tp, support, predicted = class_counts(y_true, y_preds, c, w)
    assert tp.shape == support.shape == predicted.shape == (k, c)
    for i in range(k):
        cm = skm.confusion_matrix(y_true, y_preds[i], labels=range(c), sample_weight=w)
        np.testing.assert_allclose(tp[i], np.diag(cm), atol=1e-9)
        np.testing.assert_allclose(support[i], cm.sum(1), atol=1e-9)
        np.testing.assert_allclose(predicted[i], cm.sum(0), atol=1e-9)
        dense = count_metrics(cm)
        fast = class_count_metrics(tp[i], support[i], predicted[i])
        assert dense.keys() == fast.keys()
        for name in dense:
            np.testing.assert_allclose(fast[name], dense[name], atol=1e-9, err_msg=name)
    one = class_counts(y_true, y_preds[0], c, w)
    assert [a.shape for a in one] == [(c,)] * 3


def test_bootstrap_counts_grow_with_the_classes_not_their_square(monkeypatch):
    # 300 classes, 1 000 resamples: (B, C, C) cells would be 720 MB; every count asked is (B, 2C) at most
    sizes = []
    counts = Resamples.counts
    monkeypatch.setattr(
        Resamples, "counts", lambda self, codes, size, w=None: sizes.append(size) or counts(self, codes, size, w)
    )
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 300, 3000), rng.integers(0, 300, 3000)
    cost = rng.random((300, 300))
    out = bootstrap_distribution(y_true, y_pred, 300, indices=bootstrap_indices(3000, 1000, seed=0), cost=cost)
    assert max(sizes) <= 2 * 300 and out["recall"].shape == (1000, 300) and out[COST_METRIC].shape == (1000,)
    w = rng.random(3000)
    for few in (
        Resamples(3000, 20, seed=0, hold=10**9),
        Resamples(3000, 20, seed=0, hold=0),
    ):  # indices, multiplicities
        got = bootstrap_distribution(y_true, y_pred, 300, indices=few, cost=cost, sample_weight=w)
        for b, rows in enumerate(few):
            want = count_metrics(confusion_matrix(y_true[rows], y_pred[rows], 300, w[rows]), cost=cost)
            for name in ("macro_f1", "mcc", "balanced_accuracy", COST_METRIC):
                assert got[name][b] == pytest.approx(want[name])
            np.testing.assert_allclose(got["recall"][b], want["recall"], atol=1e-12)


def test_class_counts_of_no_decisions_and_a_cost_matrix_of_the_wrong_shape():
    tp, support, predicted = class_counts(np.array([0, 1]), np.empty((0, 2), dtype=int), 3)
    assert tp.shape == predicted.shape == support.shape == (0, 3)
    with pytest.raises(ValueError, match="cost matrix of shape"):
        count_metrics(np.eye(3), cost=np.ones((2, 2)))
    with pytest.raises(ValueError, match="cost matrix of shape"):
        bootstrap_distribution([0, 1], [1, 0], 3, indices=bootstrap_indices(2, 5, seed=0), cost=np.ones((2, 2)))
