"""prepare: check every parameter, load the source, decide what each column becomes, split it,
make the training split long-tailed, preprocess.

Writes ``<out>/{train,val,test}.parquet``, ``<out>/meta.json`` (with every column decision) and
``<out>/preprocessing.json`` (the fitted preprocessing, replayable on new raw rows).
Depends on the whole ``params.yaml`` and validates all of it, the selection policy included, so
a mistake anywhere stops the pipeline before anything trains; its outputs hold only the data
block, so a change elsewhere leaves them byte-identical and re-runs nothing downstream.
"""

from __future__ import annotations

import argparse
import logging

from pipeline.artifacts import SPLITS
from pipeline.config import cost_matrix, deploy_prior_vector, load_params
from pipeline.data.prepare import prepare, prepared_meta
from pipeline.decision.metrics import metric_names
from pipeline.decision.selection import check_policy, check_policy_metrics
from pipeline.tracking.names import check_distinct, key_part
from pipeline.training.plan import check_decision_models
from pipeline.data.preprocessing import PREPROCESSING_FILE, save_preprocessing
from pipeline.io import atomic_dirs, write_json
from stages._cli import run

log = logging.getLogger("prepare")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", required=True, help="directory for the prepared splits")
    args = ap.parse_args(argv)

    params = load_params(args.params)  # the whole file: a mistake anywhere stops the pipeline here
    e = params.evaluate
    check_policy_metrics(e.select, costs=e.costs is not None)
    check_decision_models(e.decisions.models, params.train, params.baselines.models)
    prepared = prepare(params.data)
    where = f"{params.data.path}: column {params.data.target!r}: classes" if params.data.source == "csv" else "classes"
    check_distinct(prepared.classes, key_part, where)  # MLflow metric keys name them (recall/<class>)
    # the policy, the costs and the deployment prior name classes: checked now that the classes
    # are known, before anything trains
    check_policy(e.select, metric_names(prepared.classes, costs=e.costs is not None), prepared.classes)
    meta = prepared_meta(prepared, params.data)
    if e.costs is not None:
        cost_matrix(e.costs, prepared.classes, [meta["counts"]["train"][c] for c in prepared.classes])
    deploy_prior_vector(e.deploy_prior, prepared.classes)
    with atomic_dirs(args.out) as (tmp,):
        for split in SPLITS:
            prepared.splits[split].to_parquet(tmp / f"{split}.parquet", index=False)
        write_json(tmp / "meta.json", meta)
        save_preprocessing(tmp / PREPROCESSING_FILE, prepared.preprocessing)
    log.info(
        "%s: %d classes, %d features; train %d (n_max/n_min = %.1f), val %d, test %d -> %s",
        params.data.source,
        len(prepared.classes),
        meta["n_features"],
        meta["sizes"]["train"],
        meta["train_imbalance_ratio"],
        meta["sizes"]["val"],
        meta["sizes"]["test"],
        args.out,
    )
    log.debug("training counts: %s", ", ".join(f"{c}={n}" for c, n in meta["counts"]["train"].items()))


if __name__ == "__main__":
    run(main)
