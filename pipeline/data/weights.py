"""Per-class loss weights computed from training counts.

Every scheme gives raw weights ``r_c`` and is then normalised the same way,

    w_c = r_c * n / sum_k r_k n_k,   so that   sum_c w_c n_c = n,

i.e. the weighted sample count equals the sample count and a weighted loss summed over the
training set stays on the scale of the unweighted one. (``reduction="mean"`` with weights divides
by the summed target weights, which makes the mean loss independent of this normalisation.)
"""

from __future__ import annotations

import numpy as np

from pipeline import PipelineError
from pipeline.config import SCHEMES


def class_weights(counts, scheme: str, beta: float = 0.999) -> np.ndarray:
    """Per-class weights for a weighted loss, normalised so that ``sum_c w_c * n_c == n``.

    Parameters
    ----------
    counts : (C,) array-like of int
        Training samples per class, each >= 1.
    scheme : {"none", "inverse", "inverse_sqrt", "effective_number"}
        Raw weight r_c before normalisation:

        - ``none``: r_c = 1 (every w_c = 1).
        - ``inverse``: r_c = 1 / n_c, giving w_c = n / (C * n_c), scikit-learn's
          ``compute_class_weight("balanced")`` (King & Zeng, 2001).
        - ``inverse_sqrt``: r_c = 1 / sqrt(n_c), a milder re-balancing (Mahajan et al., 2018).
        - ``effective_number``: r_c = (1 - beta) / (1 - beta^n_c), the inverse of the effective
          number of samples (Cui et al., 2019). beta = 0 gives equal weights; beta -> 1 tends to
          ``inverse``.
    beta : float
        In [0, 1); read by ``effective_number`` only.

    Returns
    -------
    (C,) float64 array.

    References
    ----------
    G. King, L. Zeng. Logistic Regression in Rare Events Data. Political Analysis, 2001.
    D. Mahajan et al. Exploring the Limits of Weakly Supervised Pretraining. ECCV 2018.
    Y. Cui, M. Jia, T.-Y. Lin, Y. Song, S. Belongie. Class-Balanced Loss Based on Effective
    Number of Samples. CVPR 2019.
    """
    counts = _checked_counts(counts)
    if not 0 <= beta < 1:
        raise PipelineError(f"weights.beta must be in [0, 1); got {beta}")
    n, n_classes = counts.sum(), counts.size
    if scheme == "none":
        return np.ones(n_classes)
    if scheme == "inverse":
        return n / (n_classes * counts)  # the closed form, bit-identical to scikit-learn's
    if scheme == "inverse_sqrt":
        raw = 1.0 / np.sqrt(counts)
    elif scheme == "effective_number":
        raw = _inverse_effective_number(counts, beta)
    else:
        raise PipelineError(f"weights.scheme must be one of {', '.join(SCHEMES)}; got {scheme!r}")
    return raw * (n / np.dot(raw, counts))


def _checked_counts(counts) -> np.ndarray:
    """``counts`` as a float64 array: non-empty, 1-D, every class with a training sample."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0:
        raise PipelineError(f"counts must be a non-empty 1-D array; got shape {counts.shape}")
    if (counts < 1).any() or not np.isfinite(counts).all():
        raise PipelineError(f"counts must all be >= 1 (every class needs a training sample); got {counts.tolist()}")
    return counts


def _inverse_effective_number(counts: np.ndarray, beta: float) -> np.ndarray:
    """``1 / (1 - beta^n_c)`` (the constant 1 - beta cancels in the normalisation)."""
    if beta == 0:
        return np.ones_like(counts)
    # 1 - beta^n without cancellation when beta is close to 1
    return 1.0 / -np.expm1(counts * np.log(beta))


def power_weights(counts, alpha: float) -> np.ndarray:
    """Class weights of strength ``alpha``: ``w_c ∝ n_c^(-alpha)``, normalised so that ``sum_c w_c * n_c == n``.

    The weight-strength curve (``train.alphas``) sweeps ``alpha`` from no re-weighting to full
    re-weighting: ``alpha = 0`` gives every w_c = 1 (plain cross-entropy), ``alpha = 0.5`` the
    ``inverse_sqrt`` scheme, ``alpha = 1`` the ``inverse`` scheme (scikit-learn's
    ``compute_class_weight("balanced")``), and ``alpha > 1`` over-weights the rare classes beyond
    balance.

    Parameters
    ----------
    counts : (C,) array-like of int
        Training samples per class, each >= 1.
    alpha : float
        Finite and >= 0.

    Returns
    -------
    (C,) float64 array.
    """
    counts = _checked_counts(counts)
    if not (np.isfinite(alpha) and alpha >= 0):
        raise PipelineError(f"train.alphas must be finite and >= 0; got {alpha}")
    # n_c^(-alpha) relative to the rarest class: in (0, 1], no overflow for large counts or alpha
    raw = np.exp(-alpha * (np.log(counts) - np.log(counts.min())))
    return raw * (counts.sum() / np.dot(raw, counts))
