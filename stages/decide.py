"""decide: calibrate every trained model and fit decision rules on top of them, on the validation
split; write their predictions and fitted parameters.

Each model's probabilities are recalibrated by vector scaling, or temperature scaling where validation
has too few rows per class (:func:`pipeline.decision.rules.fit_calibration`):
what every candidate ships. For each model ``evaluate.decisions.models`` names (default ``best``: each loss's best model on
validation under the policy) and each rule of ``evaluate.decisions.rules``: the rule's
validation predictions come from cross-fitting (refitted on k-1 folds of the validation split,
``evaluate.crossfit_folds``, predicting the held-out fold), its test predictions from one fit on
the whole validation split, the calibration likewise. Writes ``<predictions>/<split>/<group>/<name>.parquet``
for each model (its calibrated probabilities, its own decisions) and each ``<model>+<rule>``,
``<params>/calibration/<model>.json`` and ``<params>/<model>+<rule>.json``; nothing else (evaluate
does the MLflow logging).
"""

from __future__ import annotations

import argparse
import logging

from pipeline.artifacts import CALIBRATION_DIR, check_labels, load_model_records, read_prepared
from pipeline.config import load_params
from pipeline.decision.rules import dump_forest
from pipeline.decision.candidates import ANOMALY_FOREST, decide_all
from pipeline.io import atomic_dirs, read_json, write_json
from pipeline.rule_specs import ANOMALY_SCORES, rule_spec
from stages._cli import run

log = logging.getLogger("decide")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", required=True, help="directory written by prepare (anomaly: training rows)")
    ap.add_argument("--plans", required=True, help="directory written by plan")
    ap.add_argument("--models", required=True, help="parent of the train@<loss> and baselines model directories")
    ap.add_argument("--predictions", required=True, help="the models' predictions: <split>/<group>/<model>.parquet")
    ap.add_argument("--baselines", default=None, help="name of the baselines' directory under --models")
    ap.add_argument("--out-predictions", required=True, help="directory for the rules' predictions")
    ap.add_argument("--out-params", required=True, help="directory for the rules' fitted parameters")
    args = ap.parse_args(argv)

    params = load_params(args.params)
    meta = read_json(f"{args.data}/meta.json", what="prepared-data metadata")
    records = load_model_records(args.plans, args.models, args.predictions, args.baselines, meta)
    check_labels(records, args.data, meta["classes"])
    features = None
    if any(rule_spec(r).needs == ANOMALY_SCORES for r in params.evaluate.decisions.rules):
        _, data = read_prepared(args.data)
        features = {split: data[split][0] for split in ("train", "val", "test")} | {"y_train": data["train"][1]}

    with atomic_dirs(args.out_predictions, args.out_params) as (preds_tmp, params_tmp):

        def write(d):  # as each rule is fitted: the rules' predictions are never all in memory
            for split, frame in d.frames.items():
                (preds_tmp / split / d.group).mkdir(parents=True, exist_ok=True)
                frame.to_parquet(preds_tmp / split / d.group / f"{d.name}.parquet", index=False)
            write_json(params_tmp / ("" if d.is_rule else CALIBRATION_DIR) / f"{d.name}.json", d.fitted)

        (params_tmp / CALIBRATION_DIR).mkdir(exist_ok=True)
        decisions, forest = decide_all(records, meta, params.evaluate, features=features, write=write)
        if forest is not None:
            dump_forest(forest, params_tmp / ANOMALY_FOREST)
    rules = [d for d in decisions if d.is_rule]
    log.info(
        "%d model(s) calibrated and %d decision rule(s) fitted over %d of them, on validation",
        len(decisions) - len(rules),
        len(rules),
        len({d.fitted["model"] for d in rules}),
    )


if __name__ == "__main__":
    run(main)
