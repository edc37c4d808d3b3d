"""What to train: each loss's configurations, and exactly what its training reads. No torch here.

A loss's plan (:func:`loss_plan`) holds its runs (one per γ × α × seed), the training set-up (the
shared ``train.*`` keys plus the keys only this loss reads), the class weights it trains with and
the class counts when it reads them. Each ``train@<loss>`` stage depends on its own plan rather
than on the whole ``train`` block, so DVC re-runs only the losses whose plan changed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pipeline.config import TrainConfig, to_dict
from pipeline import PipelineError
from pipeline.loss_specs import EFFECTIVE_NUMBER, SCHEME, loss_only_keys, loss_spec
from pipeline.data.weights import class_weights, power_weights

# Sweep lists are spread into the runs rather than kept in the set-up.
_SWEEP_KEYS = ("losses", "gammas", "seeds", "alphas", "alpha_losses")
POWER = "power"  # a plan's class_weights.scheme when its loss sweeps the weight strength alpha


@dataclass(frozen=True)
class RunSpec:
    """One model to train: a loss, its gamma and its weight strength alpha where the loss sweeps
    them, and a seed."""

    model: str  # e.g. "ce", "focal_g2", "focal_g0.5_s1", "weighted_ce_a0.5"
    loss: str
    gamma: float | None
    seed: int
    alpha: float | None = None


def model_name(loss: str, gamma: float | None, seed: int, n_seeds: int, alpha: float | None = None) -> str:
    """``<loss>``, plus ``_g<gamma>`` for gamma losses, ``_a<alpha>`` for a weight-strength sweep and
    ``_s<seed>`` when several seeds."""
    name = loss if gamma is None else f"{loss}_g{gamma:g}"
    name = name if alpha is None else f"{name}_a{alpha:g}"
    return f"{name}_s{seed}" if n_seeds > 1 else name


def loss_alphas(loss: str, t: TrainConfig) -> tuple[float, ...] | None:
    """The weight strengths ``loss`` trains one model each for (α = 0 left out: that model is
    the loss's ``alpha_zero``, e.g. ``ce``), or None when it trains with ``weights.scheme``."""
    if t.alphas is None or loss not in t.alpha_losses:
        return None
    return tuple(a for a in t.alphas if a > 0)


def plan_runs(
    loss: str, gammas: tuple[float, ...], seeds: tuple[int, ...], alphas: tuple[float, ...] | None = None
) -> list[RunSpec]:
    """Every configuration of one loss: one per seed, times one per gamma for gamma losses,
    times one per alpha when ``alphas`` (:func:`loss_alphas`) is given."""
    grid = gammas if loss_spec(loss).sweeps_gamma else (None,)
    strengths = alphas if alphas is not None else (None,)
    return [
        RunSpec(model_name(loss, g, s, len(seeds), a), loss, g, s, a) for g in grid for a in strengths for s in seeds
    ]


def config_runs(loss: str, t: TrainConfig) -> list[RunSpec]:
    """:func:`plan_runs` of ``loss`` under the ``train`` block ``t``."""
    return plan_runs(loss, t.gammas, t.seeds, loss_alphas(loss, t))


def drw_start(cfg: TrainConfig) -> int:
    """First re-weighted epoch of ``ldam_drw``: ``train.drw_epoch``, else round(2/3 * epochs).

    Cao et al. (2019) re-weight from epoch 160 of 200 on CIFAR; 2/3 leaves the unweighted phase
    most of the budget while keeping a third for the re-weighted one. Early stopping and model
    selection start at this epoch (see :func:`pipeline.training.train.fit`), so the model kept is a
    re-weighted one.
    """
    return cfg.drw_epoch if cfg.drw_epoch is not None else max(1, round(2 * cfg.epochs / 3))


def training_setup(loss: str, t: TrainConfig) -> dict:
    """The ``train`` keys that ``loss`` reads, ``drw_epoch`` resolved to a number."""
    only = loss_only_keys()
    setup = {k: v for k, v in to_dict(t).items() if k not in _SWEEP_KEYS and k not in only}
    setup.update({k: getattr(t, k) for k in loss_spec(loss).params})
    if "drw_epoch" in setup:
        setup["drw_epoch"] = drw_start(t)
    return setup


def loss_weights(loss: str, weights: dict, runs: list[RunSpec] | None = None) -> dict | None:
    """The class weights ``loss`` trains with, from the weights stage's output, or None.

    Runs with a weight strength ``alpha`` (a sweep of ``train.alphas``) get one row of weights
    each, :func:`pipeline.data.weights.power_weights`, in the order of ``runs``: scheme ``power``,
    ``alphas`` and ``weights`` (R, C)."""
    kind = loss_spec(loss).weights
    if runs and runs[0].alpha is not None:
        return {
            "scheme": POWER,
            "beta": None,
            "classes": weights["classes"],
            "counts": weights["counts"],
            "alphas": [r.alpha for r in runs],
            "weights": [[float(x) for x in power_weights(weights["counts"], r.alpha)] for r in runs],
        }
    if kind == SCHEME:
        uses_beta = weights["scheme"] == "effective_number"
        return {**weights, "beta": weights["beta"] if uses_beta else None}
    if kind == EFFECTIVE_NUMBER:
        w = class_weights(weights["counts"], "effective_number", beta=weights["beta"])
        return {
            "scheme": "effective_number",
            "beta": weights["beta"],
            "classes": weights["classes"],
            "counts": weights["counts"],
            "weights": [float(x) for x in w],
        }
    return None


def loss_plan(loss: str, t: TrainConfig, weights: dict) -> dict:
    """The plan of ``loss`` (:class:`pipeline.artifacts.LossPlan`) from the weights stage's output."""
    counts = {"classes": weights["classes"], "counts": weights["counts"]} if loss_spec(loss).counts else None
    runs = config_runs(loss, t)
    return {
        "loss": loss,
        "runs": [dataclasses.asdict(r) for r in runs],
        "train": training_setup(loss, t),
        "class_weights": loss_weights(loss, weights, runs),
        "class_counts": counts,
    }


def trained_names(t: TrainConfig, baselines: tuple[str, ...]) -> list[str]:
    """Every model the parameters will train: each loss's runs, then the baselines."""
    return [r.model for loss in t.losses for r in config_runs(loss, t)] + list(baselines)


def check_decision_models(models: str | tuple[str, ...], t: TrainConfig, baselines: tuple[str, ...]) -> None:
    """``evaluate.decisions.models``: ``best``, ``all`` or names of models the parameters train."""
    if isinstance(models, str):
        return
    known = trained_names(t, baselines)
    for name in models:
        if name not in known:
            raise PipelineError(
                f"params.yaml: evaluate.decisions.models names unknown model {name!r}; "
                f"these parameters train: {', '.join(known)}"
            )
