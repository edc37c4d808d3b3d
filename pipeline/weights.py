"""Per-class loss weights computed from training counts."""

from __future__ import annotations

import numpy as np

from pipeline import PipelineError
from pipeline.config import SCHEMES


def class_weights(counts, scheme: str, beta: float = 0.999) -> np.ndarray:
    """Per-class weights for a weighted loss.

    Every scheme is normalised so that the weighted sample count equals the sample count,
    ``sum_c w_c * n_c == n``: the weighted loss stays on the scale of the unweighted one.

    Parameters
    ----------
    counts : (C,) array-like of int
        Training samples per class, each >= 1.
    scheme : {"none", "inverse"}
        ``none``: w_c = 1. ``inverse``: w_c = n / (C * n_c), scikit-learn's
        ``compute_class_weight("balanced")`` (King & Zeng, 2001).
    beta : float
        Reserved for the effective-number scheme; must be in [0, 1).

    Returns
    -------
    (C,) float64 array.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0:
        raise PipelineError(f"counts must be a non-empty 1-D array; got shape {counts.shape}")
    if (counts < 1).any() or not np.isfinite(counts).all():
        raise PipelineError(
            f"counts must all be >= 1 (every class needs a training sample); got {counts.tolist()}"
        )
    if not 0 <= beta < 1:
        raise PipelineError(f"weights.beta must be in [0, 1); got {beta}")
    n, n_classes = counts.sum(), counts.size
    if scheme == "none":
        return np.ones(n_classes)
    if scheme == "inverse":
        return n / (n_classes * counts)
    raise PipelineError(f"weights.scheme must be one of {', '.join(SCHEMES)}; got {scheme!r}")
