"""prepare: load the source, split it, make the training split long-tailed, preprocess.

Writes ``<out>/{train,val,test}.parquet`` and ``<out>/meta.json``.
"""

from __future__ import annotations

import argparse
import logging

from pipeline.config import load_params, to_dict
from pipeline.data import SPLITS, class_counts, digest, prepare
from pipeline.io import atomic_dirs, write_json
from stages._cli import run

log = logging.getLogger("prepare")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", required=True, help="directory for the prepared splits")
    args = ap.parse_args(argv)

    params = load_params(args.params)
    prepared = prepare(params.data)
    counts = {s: class_counts(prepared.splits[s], prepared.classes) for s in SPLITS}
    train = counts["train"].values()
    meta = {
        "source": params.data.source,
        "classes": prepared.classes,
        "n_features": len(prepared.feature_names),
        "counts": counts,
        "sizes": {s: len(prepared.splits[s]) for s in SPLITS},
        "train_imbalance_ratio": max(train) / min(train),
        "digest": digest(prepared),
        "params": to_dict(params.data),
    }
    with atomic_dirs(args.out) as (tmp,):
        for split in SPLITS:
            prepared.splits[split].to_parquet(tmp / f"{split}.parquet", index=False)
        write_json(tmp / "meta.json", meta)
    log.info(
        "%s: %d classes, %d features; train %d (n_max/n_min = %.1f), val %d, test %d -> %s",
        params.data.source, len(prepared.classes), meta["n_features"], meta["sizes"]["train"],
        meta["train_imbalance_ratio"], meta["sizes"]["val"], meta["sizes"]["test"], args.out,
    )
    log.info("training counts: %s", ", ".join(f"{c}={n}" for c, n in counts["train"].items()))


if __name__ == "__main__":
    run(main)
