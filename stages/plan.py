"""plan: one file per loss listing its configurations and everything its training reads.

Each ``train@<loss>`` stage depends on its own plan file instead of the whole ``train`` block,
so DVC re-runs only the losses whose plan changed: a new ``train.gammas`` re-trains the focal
family but not ``ce``; a new ``weights.scheme`` re-trains ``weighted_ce`` and ``weighted_focal``;
``weights.beta`` re-trains ``cb_focal`` and ``ldam_drw`` (and the weighted losses only under the
``effective_number`` scheme); ``train.tau`` re-trains ``logit_adjusted`` alone.

A plan holds ``loss``, ``runs`` (model, loss, gamma, seed), ``train`` (the training set-up: the
shared keys plus the keys only this loss reads), ``class_weights`` (``scheme``, ``beta``,
``classes``, ``counts``, ``weights``; null for unweighted losses) and ``class_counts``
(``classes``, ``counts`` of the training split; for ``logit_adjusted`` and ``ldam_drw`` only).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging

from pipeline.config import TrainConfig, load_params, to_dict
from pipeline.io import atomic_dirs, read_json, write_json
from pipeline.losses import COUNT_LOSSES, EFFECTIVE_NUMBER_LOSSES, LOSS_KEYS, WEIGHTED_LOSSES
from pipeline.train import drw_start, plan_runs
from pipeline.weights import class_weights
from stages._cli import run

log = logging.getLogger("plan")

# Sweep lists are spread into the runs; loss-specific keys go to their loss's plan only.
_SWEEP_KEYS = ("losses", "gammas", "seeds")
_LOSS_ONLY = {key for keys in LOSS_KEYS.values() for key in keys}


def training_setup(loss: str, t: TrainConfig) -> dict:
    """The ``train`` keys that ``loss`` reads, ``drw_epoch`` resolved to a number."""
    setup = {k: v for k, v in to_dict(t).items() if k not in _SWEEP_KEYS and k not in _LOSS_ONLY}
    setup.update({k: getattr(t, k) for k in LOSS_KEYS.get(loss, ())})
    if "drw_epoch" in setup:
        setup["drw_epoch"] = drw_start(t)
    return setup


def loss_weights(loss: str, weights: dict) -> dict | None:
    """The class weights ``loss`` trains with, from the weights stage's output, or None."""
    if loss in WEIGHTED_LOSSES:
        uses_beta = weights["scheme"] == "effective_number"
        return {**weights, "beta": weights["beta"] if uses_beta else None}
    if loss in EFFECTIVE_NUMBER_LOSSES:
        w = class_weights(weights["counts"], "effective_number", beta=weights["beta"])
        return {"scheme": "effective_number", "beta": weights["beta"], "classes": weights["classes"],
                "counts": weights["counts"], "weights": [float(x) for x in w]}
    return None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--weights", required=True, help="class_weights.json written by weights")
    ap.add_argument("--out", required=True, help="directory for <loss>.json plans")
    args = ap.parse_args(argv)

    params = load_params(args.params)
    t = params.train
    weights = read_json(args.weights, what="class weights")
    with atomic_dirs(args.out) as (tmp,):
        for loss in t.losses:
            runs = plan_runs(loss, t.gammas, t.seeds)
            counts = ({"classes": weights["classes"], "counts": weights["counts"]}
                      if loss in COUNT_LOSSES else None)
            write_json(tmp / f"{loss}.json", {
                "loss": loss,
                "runs": [dataclasses.asdict(r) for r in runs],
                "train": training_setup(loss, t),
                "class_weights": loss_weights(loss, weights),
                "class_counts": counts,
            })
            log.info("%s: %s", loss, ", ".join(r.model for r in runs))


if __name__ == "__main__":
    run(main)
