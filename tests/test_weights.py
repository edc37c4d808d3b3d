import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.utils.class_weight import compute_class_weight

from pipeline import PipelineError
from pipeline.weights import class_weights

counts_strategy = st.lists(st.integers(1, 5000), min_size=2, max_size=20)


@given(counts_strategy)
def test_inverse_equals_sklearn_balanced(counts):
    y = np.repeat(np.arange(len(counts)), counts)
    expected = compute_class_weight("balanced", classes=np.arange(len(counts)), y=y)
    np.testing.assert_allclose(class_weights(counts, "inverse"), expected, rtol=1e-12)


@given(counts_strategy, st.sampled_from(["none", "inverse"]))
def test_weighted_count_equals_sample_count(counts, scheme):
    w = class_weights(counts, scheme)
    assert np.dot(w, counts) == pytest.approx(sum(counts), rel=1e-12)


@given(counts_strategy)
def test_inverse_gives_the_rarest_class_the_largest_weight(counts):
    w = class_weights(counts, "inverse")
    assert w[int(np.argmin(counts))] == pytest.approx(w.max())
    assert w[int(np.argmax(counts))] == pytest.approx(w.min())


def test_none_is_all_ones():
    np.testing.assert_array_equal(class_weights([5, 50, 500], "none"), [1.0, 1.0, 1.0])


@pytest.mark.parametrize(
    ("counts", "scheme", "beta", "message"),
    [
        ([10, 0], "inverse", 0.999, "counts must all be >= 1"),
        ([], "inverse", 0.999, "non-empty 1-D"),
        ([10, 5], "sqrt", 0.999, "weights.scheme must be one of none, inverse; got 'sqrt'"),
        ([10, 5], "inverse", 1.0, r"weights.beta must be in \[0, 1\)"),
    ],
)
def test_bad_input_is_named(counts, scheme, beta, message):
    with pytest.raises(PipelineError, match=message):
        class_weights(counts, scheme, beta=beta)
