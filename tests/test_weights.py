"""Class-weight schemes: scikit-learn's reference, the shared normalisation, and each scheme's invariants."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.utils.class_weight import compute_class_weight

from pipeline import PipelineError
from pipeline.config import SCHEMES
from pipeline.data.weights import class_weights

counts_strategy = st.lists(st.integers(1, 5000), min_size=2, max_size=20)
betas = st.floats(0.0, 0.9999)


@given(counts_strategy)
def test_inverse_equals_sklearn_balanced(counts):
    y = np.repeat(np.arange(len(counts)), counts)
    expected = compute_class_weight("balanced", classes=np.arange(len(counts)), y=y)
    np.testing.assert_allclose(class_weights(counts, "inverse"), expected, rtol=1e-12)


@given(counts_strategy, st.sampled_from(SCHEMES), betas)
def test_every_scheme_keeps_the_weighted_count_equal_to_the_sample_count(counts, scheme, beta):
    w = class_weights(counts, scheme, beta=beta)
    assert np.dot(w, counts) == pytest.approx(sum(counts), rel=1e-12)
    assert (w > 0).all()


@given(counts_strategy, st.sampled_from(["inverse", "inverse_sqrt", "effective_number"]), st.floats(0.5, 0.9999))
def test_rarer_classes_never_weigh_less(counts, scheme, beta):
    w = class_weights(counts, scheme, beta=beta)
    order = np.argsort(counts, kind="stable")  # rarest first
    assert (np.diff(w[order]) <= 1e-12 * w.max()).all()
    assert w[int(np.argmin(counts))] == pytest.approx(w.max())


@given(counts_strategy)
def test_inverse_sqrt_is_the_square_root_of_inverse_ratios(counts):
    # w ~ 1/sqrt(n): w_i / w_j = sqrt(n_j / n_i) = sqrt of the inverse scheme's ratio
    inv, sq = class_weights(counts, "inverse"), class_weights(counts, "inverse_sqrt")
    np.testing.assert_allclose((sq / sq[0]) ** 2, inv / inv[0], rtol=1e-10)
    np.testing.assert_allclose(sq * np.sqrt(counts), (sq * np.sqrt(counts))[0], rtol=1e-10)


@given(counts_strategy, st.floats(0.01, 0.999))
def test_effective_number_matches_cui_et_al(counts, beta):
    n = np.asarray(counts, dtype=np.float64)
    raw = (1 - beta) / (1 - beta**n)  # Cui et al. (2019), eq. 3-4, before normalisation
    expected = raw * n.sum() / np.dot(raw, n)
    np.testing.assert_allclose(class_weights(counts, "effective_number", beta=beta), expected, rtol=1e-9)


@given(counts_strategy)
def test_effective_number_at_beta_zero_is_equal_weights(counts):
    np.testing.assert_array_equal(class_weights(counts, "effective_number", beta=0.0), np.ones(len(counts)))
    np.testing.assert_allclose(class_weights(counts, "effective_number", beta=1e-9), np.ones(len(counts)), rtol=1e-6)


@given(counts_strategy)
def test_effective_number_tends_to_inverse_as_beta_tends_to_one(counts):
    inv = class_weights(counts, "inverse")
    gaps = [
        np.abs(class_weights(counts, "effective_number", beta=1 - eps) / inv - 1).max()
        for eps in (1e-2, 1e-4, 1e-6, 1e-9)
    ]
    assert gaps[-1] < 1e-5  # ~ (1 - beta) * n_max / 2
    assert all(a >= b - 1e-12 for a, b in zip(gaps, gaps[1:]))  # monotone, up to rounding


def test_none_is_all_ones():
    np.testing.assert_array_equal(class_weights([5, 50, 500], "none"), [1.0, 1.0, 1.0])


@pytest.mark.parametrize(
    ("counts", "scheme", "beta", "message"),
    [
        ([10, 0], "inverse", 0.999, "counts must all be >= 1"),
        ([], "inverse", 0.999, "non-empty 1-D"),
        (
            [10, 5],
            "sqrt",
            0.999,
            "weights.scheme must be one of none, inverse, inverse_sqrt, effective_number; got 'sqrt'",
        ),
        ([10, 5], "inverse", 1.0, r"weights.beta must be in \[0, 1\)"),
        ([10, 5], "effective_number", -0.1, r"weights.beta must be in \[0, 1\); got -0.1"),
    ],
)
def test_bad_input_is_named(counts, scheme, beta, message):
    with pytest.raises(PipelineError, match=message):
        class_weights(counts, scheme, beta=beta)
