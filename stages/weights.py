"""weights: per-class loss weights from the training counts, ``weights.scheme`` in params."""

from __future__ import annotations

import argparse
import logging

from pipeline.config import load_params
from pipeline.io import read_json, write_json
from pipeline.data.weights import class_weights
from stages._cli import run

log = logging.getLogger("weights")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--meta", required=True, help="meta.json written by prepare")
    ap.add_argument("--out", required=True, help="class_weights.json to write")
    args = ap.parse_args(argv)

    params = load_params(args.params)
    meta = read_json(args.meta, what="prepared-data metadata")
    classes = meta["classes"]
    counts = [meta["counts"]["train"][c] for c in classes]
    w = class_weights(counts, params.weights.scheme, beta=params.weights.beta)
    write_json(
        args.out,
        {
            "scheme": params.weights.scheme,
            "beta": params.weights.beta,
            "classes": classes,
            "counts": counts,
            "weights": [float(x) for x in w],
        },
    )
    log.info("%s weights: %s", params.weights.scheme, ", ".join(f"{c}={x:.3g}" for c, x in zip(classes, w)))


if __name__ == "__main__":
    run(main)
