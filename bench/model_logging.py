"""What logging every candidate as an MLflow model costs, on this checkout's default-run outputs.

    python -m bench.model_logging [--limit N]

Builds each candidate's bundle (every trained model and every ``<model>+<rule>`` in
``outputs/``), then logs them the way evaluate does (:func:`pipeline.tracking.runs.log_candidates`)
into a new temporary store, two ways side by side: as evaluate does, and without the input
example (which MLflow checks by loading each model back). Then logs them again into the same
store, as a re-run of evaluate does (every model already there: linked, not logged). Prints
seconds in all and per model. Needs ``dvc repro`` first. A benchmark: it asserts nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd

from pipeline.artifacts import load_decision_records, load_model_records
from pipeline.io import read_json
from pipeline.data.preprocessing import load_preprocessing
from pipeline.artifacts import probability_column
from pipeline.tracking.serving import PREDICTION, write_candidate_bundle
from pipeline.tracking.runs import Candidate, experiment_id, log_candidates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--limit", type=int, default=None, help="log only the first N candidates")
    args = ap.parse_args()
    logging.disable(logging.INFO)
    warnings.filterwarnings("ignore", message=".*input example was not provided")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    import mlflow

    meta = read_json("data/prepared/meta.json")
    pre = load_preprocessing("data/prepared/preprocessing.json")
    models = load_model_records("outputs/plans", "outputs/models", "reports/predictions", "baselines", meta)
    records = load_decision_records(models, "reports/decisions", "outputs/decisions", meta["classes"])
    records = records[: args.limit]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        candidates = []
        for i, rec in enumerate(records):
            bundle = tmp / "bundles" / str(i) / "bundle"
            digest = write_candidate_bundle(
                bundle,
                rec,
                classes=meta["classes"],
                preprocessing_file=Path("data/prepared/preprocessing.json"),
                decisions_dir=Path("outputs/decisions"),
            )
            candidates.append(
                Candidate(
                    rec.name,
                    bundle,
                    digest,
                    {"validation": {"val_macro_f1": 0.5}},
                    pd.DataFrame({"metric": ["macro_f1"], "value": [0.5]}),
                    {},
                    {"rule": rec.rule} if rec.rule else {},
                )
            )
        print(f"{len(candidates)} candidates ({sum(c.trained for c in candidates)} trained models)")
        for i, (label, example) in enumerate(
            (("as evaluate logs them", pre.example()), ("without the input example", None))
        ):
            uri = f"sqlite:///{tmp / f'{i}.db'}"
            mlflow.set_tracking_uri(uri)
            client = mlflow.MlflowClient(uri)
            exp = experiment_id(client, "bench", uri)
            kw = dict(
                run_tags={"data_digest": "d"},
                datasets={"validation": "v"},
                input_example=example,
                input_types=pre.input_types(),
                outputs=[PREDICTION, *(probability_column(c) for c in meta["classes"])],
                open_runs=[],
                box=tmp / "outbox",
            )
            start = time.perf_counter()
            log_candidates(client, exp, candidates, execution=client.create_run(exp).info.run_id, **kw)
            first = time.perf_counter() - start
            start = time.perf_counter()
            again = log_candidates(client, exp, candidates, execution=client.create_run(exp).info.run_id, **kw)
            second = time.perf_counter() - start
            assert all(v.reused for v in again.values())
            print(
                f"{label}: {first:.1f} s, {first / len(candidates):.3f} s per model; "
                f"logged again (all already there): {second:.2f} s"
            )


if __name__ == "__main__":
    main()
