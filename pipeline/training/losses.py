"""Classification losses, as pure functions with ``torch.nn.functional`` conventions.

``logits`` are (N, C) unnormalised scores, ``target`` (N,) int64 class indices, ``weight`` an
optional (C,) per-class weight (or (K, C), one row per stacked configuration, with logits
(K, N, C) and target (K, N)). ``reduction="mean"`` divides by the summed weights of the
targets, exactly like :func:`torch.nn.functional.cross_entropy`. Every function also accepts
leading batch dimensions, logits (..., N, C) and target (..., N), which is how K configurations
are trained together (see :class:`pipeline.training.criterion.Criterion`). Which loss reads what is in the
spec table (:mod:`pipeline.loss_specs`), not here; the ``*_inputs`` hooks derive a loss's tensors
from the training class counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

REDUCTIONS = ("none", "mean", "sum")


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}; got {reduction!r}")


def _reduce(per_sample: torch.Tensor, w_target: torch.Tensor | None, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return per_sample
    if reduction == "sum":
        return per_sample.sum()
    return per_sample.sum() / (w_target.sum() if w_target is not None else per_sample.numel())


def _log_pt(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """log p_y from ``log_softmax``: (..., N, C), (..., N) -> (..., N)."""
    return F.log_softmax(logits, dim=-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)


def target_weights(weight: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Each sample's class weight w_{y_i}: (..., N) from ``weight`` (C,), or from (K, C), one row
    per stacked configuration (a weight-strength sweep), with ``target`` (K, N)."""
    if weight.dim() == 1:
        return weight[target]
    return weight.gather(-1, target)


def _weighted(
    per_sample: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    if weight is None:
        return per_sample, None
    w_target = target_weights(weight.to(per_sample.dtype), target)  # (..., N)
    return w_target * per_sample, w_target


def cross_entropy_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy, ``-w_y log p_y`` per sample, from ``log_softmax``.

    :func:`torch.nn.functional.cross_entropy` in value and gradient (weighted or not, every
    reduction), written with this module's primitives so that it also takes leading batch
    dimensions; it is :func:`focal_loss` at ``gamma=0``, operation for operation.
    """
    _check_reduction(reduction)
    per_sample, w_target = _weighted(-_log_pt(logits, target), target, weight)
    return _reduce(per_sample, w_target, reduction)


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    gamma: float | torch.Tensor = 2.0,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Focal loss, ``-w_y (1 - p_y)^gamma log p_y`` per sample (Lin et al., 2017).

    Down-weights well-classified samples (p_y near 1) so training focuses on hard ones; at
    ``gamma=0`` it is cross-entropy, in value and gradient, for every reduction. With ``weight``
    it is the alpha-balanced variant: ``weighted_focal`` passes the class weights of
    ``weights.scheme``, ``cb_focal`` the effective-number weights of Cui et al. (2019), whose
    class-balanced softmax focal loss this then is.

    Parameters
    ----------
    logits : (N, C) float tensor
    target : (N,) int64 tensor of class indices
    gamma : float >= 0, or a tensor of them broadcastable to (N,)
        Focusing parameter; a (K, 1) tensor gives each of K stacked configurations its own.
    weight : (C,) float tensor, optional
        Per-class weight w_c.
    reduction : {"none", "mean", "sum"}
        ``mean`` divides by ``sum_i w_{y_i}`` (by N without weights), as ``F.cross_entropy``.

    Returns
    -------
    (N,) tensor for ``reduction="none"``, else a scalar.

    References
    ----------
    T.-Y. Lin, P. Goyal, R. Girshick, K. He, P. Dollar. Focal Loss for Dense Object Detection.
    ICCV 2017.
    Y. Cui, M. Jia, T.-Y. Lin, Y. Song, S. Belongie. Class-Balanced Loss Based on Effective
    Number of Samples. CVPR 2019.
    """
    _check_reduction(reduction)
    tensor_gamma = isinstance(gamma, torch.Tensor)
    if not tensor_gamma and gamma < 0:
        raise ValueError(f"gamma must be >= 0; got {gamma}")
    log_pt = _log_pt(logits, target)  # (N,)
    per_sample = -log_pt
    if tensor_gamma or gamma > 0:
        # 1 - p_t from log p_t without cancellation; the floor keeps (1-p_t)^gamma's gradient
        # finite where p_t rounds to 1 (0 < gamma < 1 would give 0 * inf otherwise).
        one_minus_pt = (-torch.expm1(log_pt)).clamp_min(torch.finfo(log_pt.dtype).tiny)
        per_sample = one_minus_pt.pow(gamma) * per_sample
    per_sample, w_target = _weighted(per_sample, target, weight)
    return _reduce(per_sample, w_target, reduction)


def logit_adjusted_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    log_prior: torch.Tensor,
    tau: float = 1.0,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Logit-adjusted cross-entropy, ``-log softmax(z + tau * log pi)_y`` (Menon et al., 2021).

    Cross-entropy on logits shifted by the scaled log prior, in training only: predicting with
    the plain logits then approximates the balanced-error-optimal classifier
    ``argmax_y p(y|x) / pi_y^tau``. At ``tau=0`` it is cross-entropy.

    Parameters
    ----------
    logits : (N, C) float tensor
    target : (N,) int64 tensor of class indices
    log_prior : (C,) float tensor
        log pi_c, the training class frequencies (:func:`log_prior`); a constant added to every
        entry changes nothing (softmax is shift-invariant).
    tau : float >= 0
        Strength of the adjustment; 1 is the Bayes-consistent choice.
    weight : (C,) float tensor, optional
    reduction : {"none", "mean", "sum"}
        As :func:`torch.nn.functional.cross_entropy`.

    References
    ----------
    A. K. Menon, S. Jayasumana, A. S. Rawat, H. Jain, A. Veit, S. Kumar. Long-tail learning via
    logit adjustment. ICLR 2021.
    """
    _check_reduction(reduction)
    if tau < 0:
        raise ValueError(f"tau must be >= 0; got {tau}")
    per_sample = -_log_pt(logits + tau * log_prior.to(logits.dtype), target)
    per_sample, w_target = _weighted(per_sample, target, weight)
    return _reduce(per_sample, w_target, reduction)


def ldam_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    margins: torch.Tensor,
    scale: float = 30.0,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Label-distribution-aware margin loss, ``-log softmax(s (z - m_y e_y))_y`` (Cao et al., 2019).

    The target logit is lowered by its class's margin before the softmax, so a sample counts as
    well classified only once ``z_y - z_j > m_y`` for every other class j; rare classes get
    larger margins (:func:`ldam_margins`). ``scale`` s sharpens the softmax: Cao et al. use a
    cosine classifier, whose logits lie in [-1, 1]; the MLP's logits are unnormalised, so here s
    acts as an inverse temperature and m is in logit units. Prediction uses the plain logits.

    Parameters
    ----------
    logits : (N, C) float tensor
    target : (N,) int64 tensor of class indices
    margins : (C,) float tensor
        Per-class margin m_c >= 0.
    scale : float > 0
    weight : (C,) float tensor, optional
        The deferred re-weighting (DRW) phase passes effective-number weights.
    reduction : {"none", "mean", "sum"}
        As :func:`torch.nn.functional.cross_entropy`.

    References
    ----------
    K. Cao, C. Wei, A. Gaidon, N. Arechiga, T. Ma. Learning Imbalanced Datasets with
    Label-Distribution-Aware Margin Loss. NeurIPS 2019.
    """
    _check_reduction(reduction)
    if scale <= 0:
        raise ValueError(f"scale must be > 0; got {scale}")
    m_target = margins.to(logits.dtype)[target].unsqueeze(-1)  # (N, 1)
    one_hot = F.one_hot(target, logits.shape[-1]).to(logits.dtype)  # (N, C)
    per_sample = -_log_pt(scale * (logits - one_hot * m_target), target)
    per_sample, w_target = _weighted(per_sample, target, weight)
    return _reduce(per_sample, w_target, reduction)


def log_prior(counts: Sequence[float]) -> torch.Tensor:
    """(C,) float64 ``log(n_c / n)``, the log class frequencies of the training split."""
    counts = torch.as_tensor(counts, dtype=torch.float64)
    return torch.log(counts / counts.sum())


def ldam_margins(counts: Sequence[float], max_margin: float = 0.5) -> torch.Tensor:
    """(C,) float64 margins ``m_c = K / n_c^(1/4)``, K such that the largest is ``max_margin``.

    That is ``m_c = max_margin * (n_min / n_c)^(1/4)`` (Cao et al., 2019, eq. 12): the rarest
    class gets ``max_margin``, a class 16 times as frequent half of it.
    """
    counts = torch.as_tensor(counts, dtype=torch.float64)
    return max_margin * (counts.min() / counts) ** 0.25


def logit_adjusted_inputs(counts: Sequence[float], tau: float = 1.0) -> dict[str, Any]:
    """Keyword arguments of :func:`logit_adjusted_loss` from the training counts."""
    return {"log_prior": log_prior(counts).float(), "tau": tau}


def ldam_inputs(counts: Sequence[float], max_margin: float = 0.5, scale: float = 30.0) -> dict[str, Any]:
    """Keyword arguments of :func:`ldam_loss` from the training counts."""
    return {"margins": ldam_margins(counts, max_margin).float(), "scale": scale}
