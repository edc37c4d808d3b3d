"""Classification losses, as pure functions with ``torch.nn.functional`` conventions.

``logits`` are (N, C) unnormalised scores, ``target`` (N,) int64 class indices, ``weight`` an
optional (C,) per-class weight. ``reduction="mean"`` divides by the summed weights of the
targets, exactly like :func:`torch.nn.functional.cross_entropy`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from pipeline import PipelineError
from pipeline.config import LOSSES

REDUCTIONS = ("none", "mean", "sum")
# Losses that take the per-class weights of the weights stage.
WEIGHTED_LOSSES = ("weighted_ce",)

Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}; got {reduction!r}")


def _reduce(per_sample: torch.Tensor, w_target: torch.Tensor | None, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return per_sample
    if reduction == "sum":
        return per_sample.sum()
    return per_sample.sum() / (w_target.sum() if w_target is not None else per_sample.numel())


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    gamma: float = 2.0,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Focal loss, ``-w_y (1 - p_y)^gamma log p_y`` per sample (Lin et al., 2017).

    Down-weights well-classified samples (p_y near 1) so training focuses on hard ones; at
    ``gamma=0`` it is cross-entropy, in value and gradient, for every reduction.

    Parameters
    ----------
    logits : (N, C) float tensor
    target : (N,) int64 tensor of class indices
    gamma : float >= 0
        Focusing parameter.
    weight : (C,) float tensor, optional
        Per-class weight w_c (the alpha-balanced variant when given).
    reduction : {"none", "mean", "sum"}
        ``mean`` divides by ``sum_i w_{y_i}`` (by N without weights), as ``F.cross_entropy``.

    Returns
    -------
    (N,) tensor for ``reduction="none"``, else a scalar.

    References
    ----------
    T.-Y. Lin, P. Goyal, R. Girshick, K. He, P. Dollar. Focal Loss for Dense Object Detection.
    ICCV 2017.
    """
    _check_reduction(reduction)
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0; got {gamma}")
    log_pt = F.log_softmax(logits, dim=-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)  # (N,)
    per_sample = -log_pt
    if gamma > 0:
        # 1 - p_t from log p_t without cancellation; the floor keeps (1-p_t)^gamma's gradient
        # finite where p_t rounds to 1 (0 < gamma < 1 would give 0 * inf otherwise).
        one_minus_pt = (-torch.expm1(log_pt)).clamp_min(torch.finfo(log_pt.dtype).tiny)
        per_sample = one_minus_pt.pow(gamma) * per_sample
    w_target = None
    if weight is not None:
        w_target = weight.to(per_sample.dtype)[target]  # (N,)
        per_sample = w_target * per_sample
    return _reduce(per_sample, w_target, reduction)


def make_criterion(
    loss: str, *, gamma: float | None = None, class_weight: torch.Tensor | None = None
) -> Criterion:
    """The training criterion ``(logits, target) -> scalar`` of one configuration.

    ``ce`` ignores ``class_weight``; ``weighted_ce`` requires it; ``focal`` requires ``gamma``.
    """
    if loss == "ce":
        return lambda logits, target: F.cross_entropy(logits, target)
    if loss == "weighted_ce":
        if class_weight is None:
            raise PipelineError("loss weighted_ce needs class weights")
        return lambda logits, target: F.cross_entropy(logits, target, weight=class_weight)
    if loss == "focal":
        if gamma is None:
            raise PipelineError("loss focal needs a gamma (train.gammas)")
        return lambda logits, target: focal_loss(logits, target, gamma=gamma)
    raise PipelineError(f"train.losses must be one of {', '.join(LOSSES)}; got {loss!r}")
