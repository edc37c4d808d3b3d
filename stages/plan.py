"""plan: one file per loss listing its configurations and everything its training reads.

Each ``train@<loss>`` stage depends on its own plan file instead of the whole ``train`` block,
so DVC re-runs only the losses whose plan changed: a new ``train.gammas`` re-trains ``focal``
but not ``ce``; a new ``weights.scheme`` re-trains ``weighted_ce`` only.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging

from pipeline.config import load_params, to_dict
from pipeline.io import atomic_dirs, read_json, write_json
from pipeline.losses import WEIGHTED_LOSSES
from pipeline.train import plan_runs
from stages._cli import run

log = logging.getLogger("plan")

# Sweep lists are spread into the runs; the rest is every loss's training set-up.
_SWEEP_KEYS = ("losses", "gammas", "seeds")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--weights", required=True, help="class_weights.json written by weights")
    ap.add_argument("--out", required=True, help="directory for <loss>.json plans")
    args = ap.parse_args(argv)

    params = load_params(args.params)
    t = params.train
    weights = read_json(args.weights, what="class weights")
    setup = {k: v for k, v in to_dict(t).items() if k not in _SWEEP_KEYS}
    with atomic_dirs(args.out) as (tmp,):
        for loss in t.losses:
            runs = plan_runs(loss, t.gammas, t.seeds)
            write_json(tmp / f"{loss}.json", {
                "loss": loss,
                "runs": [dataclasses.asdict(r) for r in runs],
                "train": setup,
                "class_weights": weights if loss in WEIGHTED_LOSSES else None,
            })
            log.info("%s: %s", loss, ", ".join(r.model for r in runs))


if __name__ == "__main__":
    run(main)
