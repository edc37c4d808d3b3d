"""The training criterion: a loss of :data:`pipeline.loss_specs.LOSS_SPECS`, ready for training.

:func:`make_criterion` reads the loss's spec (which function, whether it sweeps γ, which
weights, counts and settings it reads) and returns a :class:`Criterion`, the mean loss per
configuration of one model or of a stacked sweep; :func:`plan_criterion` does the same from a
loss's plan file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from pipeline import PipelineError, resolve
from pipeline.loss_specs import LOSS_SPECS, LossSpec, loss_spec
from pipeline.training.losses import target_weights


@dataclass(frozen=True)
class Criterion:
    """The training loss of one loss's configurations, reduced to a mean per configuration.

    Called as ``criterion(logits, target, epoch)``: logits (N, C) and target (N,) give a scalar,
    the ``reduction="mean"`` value of the loss; logits (K, N, C) and target (K, N), the K
    configurations of a batched sweep, give (K,) means, each divided by its own summed target
    weights, so that summing them and back-propagating gives each configuration exactly its
    own gradient. ``gamma`` is then a (K, 1) tensor, and ``weight`` may be (K, C): one row of
    class weights per configuration (a sweep of the weight strength α). ``epoch`` (1-based) matters only to a loss
    with deferred weights (``ldam_drw``), unweighted before ``weight_from`` and weighted by
    ``weight`` from it on. Build it with :func:`make_criterion`.
    """

    loss: str
    function: Callable[..., torch.Tensor]  # the spec's per-sample loss
    gamma: float | torch.Tensor | None = None  # losses that sweep gamma: a float, or (K, 1)
    weight: torch.Tensor | None = None  # (C,) class weights, or (K, C) per configuration, for losses that read them
    inputs: Mapping[str, Any] = field(default_factory=dict)  # the spec's further keyword arguments
    weight_from: int | None = None  # deferred weights: the first weighted epoch

    def __call__(self, logits: torch.Tensor, target: torch.Tensor, epoch: int | None = None) -> torch.Tensor:
        per_sample = self.per_sample(logits, target, epoch)
        weight = self._weight_at(epoch)
        if weight is None:
            return per_sample.mean(-1)
        return per_sample.sum(-1) / target_weights(weight.to(per_sample.dtype), target).sum(-1)

    def per_sample(self, logits: torch.Tensor, target: torch.Tensor, epoch: int | None = None) -> torch.Tensor:
        """(..., N) per-sample losses (``reduction="none"``) at ``epoch``."""
        kwargs = dict(self.inputs)
        if self.gamma is not None:
            kwargs["gamma"] = self.gamma
        return self.function(logits, target, weight=self._weight_at(epoch), reduction="none", **kwargs)

    @property
    def final_phase_epoch(self) -> int:
        """First epoch of the loss's final form: ``weight_from`` for deferred weights, else 1.

        Training selects the model, and counts patience, from this epoch on.
        """
        return self.weight_from if self.weight_from is not None else 1

    def _weight_at(self, epoch: int | None) -> torch.Tensor | None:
        if self.weight_from is None:
            return self.weight
        if epoch is None:
            raise ValueError(f"{self.loss} needs the epoch: its weights start at train.drw_epoch")
        return self.weight if epoch >= self.weight_from else None

    def take(self, index: torch.Tensor) -> Criterion:
        """The criterion of configurations ``index`` of a stacked sweep (per-configuration gamma
        and, in a weight-strength sweep, per-configuration class weights)."""
        out = self
        if isinstance(self.gamma, torch.Tensor):
            out = dataclasses.replace(out, gamma=self.gamma[index.to(self.gamma.device)])
        if self.weight is not None and self.weight.dim() == 2:
            out = dataclasses.replace(out, weight=self.weight[index.to(self.weight.device)])
        return out


def _settings(spec: LossSpec, settings: Mapping[str, Any]) -> dict[str, Any]:
    known = {kw for s in LOSS_SPECS.values() for kw in s.keywords}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise TypeError(f"make_criterion got an unexpected setting {unknown[0]!r}; known: {', '.join(sorted(known))}")
    return {kw: settings[kw] for kw in spec.keywords if kw in settings and settings[kw] is not None}


def make_criterion(
    loss: str,
    *,
    gamma: float | Sequence[float] | None = None,
    class_weight: torch.Tensor | None = None,
    class_counts: Sequence[float] | None = None,
    drw_epoch: int | None = None,
    **settings: Any,
) -> Criterion:
    """The training criterion of one loss, for one configuration or a stacked sweep.

    Parameters
    ----------
    loss : a name in :data:`pipeline.loss_specs.LOSS_SPECS`
    gamma : float, or a sequence of K floats (one per stacked configuration)
        Required by losses that sweep gamma, ignored otherwise.
    class_weight : (C,) float tensor, or (K, C): one row per stacked configuration
        The weights the loss's spec names: those of ``weights.scheme`` or effective-number
        weights (``class_weights(counts, "effective_number", beta)``), or one row of
        ``power_weights(counts, alpha)`` per configuration of a weight-strength sweep. Ignored
        by the others.
    class_counts : (C,) training samples per class, for losses that read them.
    drw_epoch : int
        The first weighted epoch of a loss with deferred weights (``ldam_drw``).
    **settings
        The loss's own settings by keyword (the spec's ``params`` values: ``tau``;
        ``max_margin``, ``scale``); settings of other losses are ignored.

    Its tensors are on the CPU, float32; :func:`to_device` moves them.
    """
    spec = loss_spec(loss)
    own = _settings(spec, {**settings, "drw_epoch": drw_epoch})
    if spec.weights is not None and class_weight is None:
        raise PipelineError(f"loss {loss} needs class weights")
    if spec.counts and class_counts is None:
        raise PipelineError(f"loss {loss} needs the training class counts")
    if spec.sweeps_gamma:
        if gamma is None:
            raise PipelineError(f"loss {loss} needs a gamma (train.gammas)")
        if isinstance(gamma, Sequence):
            if any(g is None or g < 0 for g in gamma):
                raise PipelineError(f"loss {loss} needs gammas >= 0; got {list(gamma)}")
            gamma = torch.tensor(gamma, dtype=torch.float32).unsqueeze(1)  # (K, 1)
        elif gamma < 0:
            raise PipelineError(f"loss {loss} needs a gamma >= 0; got {gamma}")
    weight_from = own.pop("drw_epoch", None)
    if spec.deferred_weights and weight_from is None:
        raise PipelineError(f"loss {loss} needs drw_epoch")
    inputs = resolve(spec.inputs, "loss function")(class_counts, **own) if spec.inputs else own
    return Criterion(
        loss,
        resolve(spec.function, "loss function"),
        gamma=gamma if spec.sweeps_gamma else None,
        weight=class_weight if spec.weights is not None else None,
        inputs=inputs,
        weight_from=weight_from if spec.deferred_weights else None,
    )


def to_device(criterion: Criterion, device: torch.device) -> Criterion:
    """``criterion`` with its tensors on ``device``."""
    move = lambda v: v.to(device) if isinstance(v, torch.Tensor) else v  # noqa: E731
    return dataclasses.replace(
        criterion,
        gamma=move(criterion.gamma),
        weight=move(criterion.weight),
        inputs={k: move(v) for k, v in criterion.inputs.items()},
    )


def plan_criterion(plan: Mapping[str, Any]) -> Criterion:
    """The criterion of a plan (:class:`pipeline.artifacts.LossPlan`): its loss, its runs'
    gammas (one per run, in order, for a loss that sweeps gamma), weights (one row per run for a
    weight-strength sweep), counts and settings."""
    spec = loss_spec(plan["loss"])
    weights, counts, setup = plan["class_weights"], plan.get("class_counts"), plan["train"]
    return make_criterion(
        spec.name,
        gamma=[r["gamma"] for r in plan["runs"]] if spec.sweeps_gamma else None,
        class_weight=torch.tensor(weights["weights"], dtype=torch.float32) if weights else None,
        class_counts=counts["counts"] if counts else None,
        **{keyword: setup[key] for key, keyword in spec.params.items()},
    )
