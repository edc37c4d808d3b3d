"""The one table of losses: what each is, where it comes from, and what it reads. No torch here.

Config validation (:mod:`pipeline.config`), the plan (:mod:`pipeline.training.plan`) and the training
criterion (:func:`pipeline.training.criterion.make_criterion`) all read :data:`LOSS_SPECS`, so adding a loss
is one entry here, its function (in :mod:`pipeline.training.losses` or any importable module) and its
test. A loss function follows ``torch.nn.functional``'s conventions::

    function(logits (..., N, C), target (..., N), *, weight=None, reduction="none", **inputs)

and gets ``gamma`` when the loss sweeps γ, ``weight`` when it reads class weights (a (K, C)
tensor, one row per stacked configuration, when it sweeps the weight strength α), and the
keyword arguments its ``inputs`` hook derives from the training class counts and its own
``train.*`` settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pipeline import PipelineError

# Which class weights a loss reads (LossSpec.weights).
SCHEME = "scheme"  # the weights stage's: weights.scheme (and weights.beta under effective_number)
EFFECTIVE_NUMBER = "effective_number"  # effective-number weights with weights.beta, whatever the scheme


@dataclass(frozen=True)
class LossSpec:
    """One value of ``train.losses``."""

    name: str  # the train.losses value, the DVC stage train@<name>, the model-name prefix
    function: str  # "<module>:<function>", the per-sample loss
    formula: str  # per sample, p = softmax(z)
    paper: str = ""  # where it comes from
    sweeps_gamma: bool = False  # one model per train.gammas value, passed as gamma=
    weights: str | None = None  # None | SCHEME | EFFECTIVE_NUMBER
    counts: bool = False  # reads the training class counts (the prior, margins)
    # train.* keys this loss alone reads -> the keyword its inputs hook (or its function) takes;
    # only its plan holds them, so changing one re-trains this loss only
    params: Mapping[str, str] = field(default_factory=dict)
    inputs: str | None = None  # "<module>:<function>" (counts, **settings) -> extra keyword args
    deferred_weights: bool = False  # weights apply from train.drw_epoch on; selection starts there
    # the loss this one is with every class weight 1: the α = 0 point of its weight-strength curve
    # (train.alphas, for the losses of train.alpha_losses); None: it cannot sweep α
    alpha_zero: str | None = None
    words: str = ""  # what a stakeholder reads (the report's first screen); "" : the name

    @property
    def keywords(self) -> tuple[str, ...]:
        """The settings :func:`pipeline.training.criterion.make_criterion` takes for this loss."""
        return tuple(self.params.values())


LOSS_SPECS: dict[str, LossSpec] = {
    spec.name: spec
    for spec in (
        LossSpec("ce", "pipeline.training.losses:cross_entropy_loss", "−log p_y", words="plain cross-entropy"),
        LossSpec(
            "weighted_ce",
            "pipeline.training.losses:cross_entropy_loss",
            "−w_y log p_y",
            "King & Zeng, Political Analysis 2001 (inverse-frequency weights)",
            weights=SCHEME,
            alpha_zero="ce",
            words="class-weighted cross-entropy",
        ),
        LossSpec(
            "focal",
            "pipeline.training.losses:focal_loss",
            "−(1 − p_y)^γ log p_y",
            "Lin et al., ICCV 2017",
            sweeps_gamma=True,
            words="focal loss",
        ),
        LossSpec(
            "weighted_focal",
            "pipeline.training.losses:focal_loss",
            "−w_y (1 − p_y)^γ log p_y",
            "Lin et al., ICCV 2017",
            sweeps_gamma=True,
            weights=SCHEME,
            alpha_zero="focal",
            words="class-weighted focal loss",
        ),
        LossSpec(
            "cb_focal",
            "pipeline.training.losses:focal_loss",
            "−w_y (1 − p_y)^γ log p_y, w = (1 − β)/(1 − β^n_c)",
            "Cui et al., CVPR 2019",
            sweeps_gamma=True,
            weights=EFFECTIVE_NUMBER,
            words="class-balanced focal loss",
        ),
        LossSpec(
            "logit_adjusted",
            "pipeline.training.losses:logit_adjusted_loss",
            "−log softmax(z + τ log π)_y",
            "Menon et al., ICLR 2021",
            counts=True,
            params={"tau": "tau"},
            inputs="pipeline.training.losses:logit_adjusted_inputs",
            words="logit-adjusted cross-entropy",
        ),
        LossSpec(
            "ldam_drw",
            "pipeline.training.losses:ldam_loss",
            "−w_y log softmax(s (z − m_y e_y))_y",
            "Cao et al., NeurIPS 2019",
            weights=EFFECTIVE_NUMBER,
            counts=True,
            params={"ldam_max_margin": "max_margin", "ldam_scale": "scale", "drw_epoch": "drw_epoch"},
            inputs="pipeline.training.losses:ldam_inputs",
            deferred_weights=True,
            words="LDAM loss with deferred re-weighting",
        ),
    )
}

# The default table's names, for code that lists them (read the table itself to see additions).
LOSSES = tuple(LOSS_SPECS)
GAMMA_LOSSES = tuple(name for name, spec in LOSS_SPECS.items() if spec.sweeps_gamma)
ALPHA_LOSSES = tuple(name for name, spec in LOSS_SPECS.items() if spec.alpha_zero is not None)


def loss_names() -> tuple[str, ...]:
    """Every loss of the table as it is now."""
    return tuple(LOSS_SPECS)


def loss_spec(name: str) -> LossSpec:
    """The spec of ``name``; an unknown name is a one-line error listing the known ones."""
    try:
        return LOSS_SPECS[name]
    except KeyError:
        raise PipelineError(f"train.losses must be one of {', '.join(LOSS_SPECS)}; got {name!r}") from None


def loss_only_keys() -> set[str]:
    """``train.*`` keys that one loss alone reads (they go to that loss's plan only)."""
    return {key for spec in LOSS_SPECS.values() for key in spec.params}
