"""plan: one file per loss listing its configurations and everything its training reads.

Each ``train@<loss>`` stage depends on its own plan file instead of the whole ``train`` block,
so DVC re-runs only the losses whose plan changed: a new ``train.gammas`` re-trains the focal
family but not ``ce``; a new ``train.alphas`` re-trains ``weighted_ce`` (the losses of
``train.alpha_losses``); a new ``weights.scheme`` re-trains ``weighted_focal`` (and
``weighted_ce`` when ``train.alphas`` is null);
``weights.beta`` re-trains ``cb_focal`` and ``ldam_drw`` (and the weighted losses only under the
``effective_number`` scheme); ``train.tau`` re-trains ``logit_adjusted`` alone. What a plan holds:
:class:`pipeline.artifacts.LossPlan`, built by :func:`pipeline.training.plan.loss_plan`.
"""

from __future__ import annotations

import argparse
import logging

from pipeline.config import load_params
from pipeline.io import atomic_dirs, read_json, write_json
from pipeline.training.plan import loss_plan
from stages._cli import run

log = logging.getLogger("plan")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--weights", required=True, help="class_weights.json written by weights")
    ap.add_argument("--out", required=True, help="directory for <loss>.json plans")
    args = ap.parse_args(argv)

    t = load_params(args.params).train
    weights = read_json(args.weights, what="class weights")
    n_models = 0
    with atomic_dirs(args.out) as (tmp,):
        for loss in t.losses:
            plan = loss_plan(loss, t, weights)
            write_json(tmp / f"{loss}.json", plan)
            log.debug("%s: %s", loss, ", ".join(r["model"] for r in plan["runs"]))
            n_models += len(plan["runs"])
    log.info("%d model(s) over %d loss(es) -> %s", n_models, len(t.losses), args.out)


if __name__ == "__main__":
    run(main)
