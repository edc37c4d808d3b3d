"""predict: apply a registered or logged candidate to a raw CSV or Parquet file.

    python -m stages.predict --input new_rows.csv --output predictions.csv
    python -m stages.predict --input new_rows.parquet --model models:/imbalanced-mlp/3

The input has the training file's columns (identifiers and the label may be there or not;
other extra columns are ignored with a warning). Each column is read with the type the model's
signature gives it (numbers, dates, text: :meth:`pipeline.data.preprocessing.Preprocessing.typed`),
as the served model receives it, and checked as the saved preprocessing says: a missing column,
a value that cannot be read as its column's type, a category never seen in training or an empty
row stops here with one line naming the column (or the row). The output has
one row per input row: ``row`` (its 0-based position in the input), ``prediction`` (the class
name the candidate's decision rule gives) and one ``p_<class>`` probability column per class.

The model is ``models:/<registered model>@champion`` by default (``mlflow.registered_model``,
else ``mlflow.experiment``, in ``params.yaml``), from the pipeline's tracking store
(``MLFLOW_TRACKING_URI``, else ``mlflow.db`` at the repository root); any MLflow model URI works.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

from pipeline import PipelineError
from pipeline.data.columns import read_table
from pipeline.config import load_params
from pipeline.io import write_text
from pipeline.tracking.runs import check_store, load_candidate, tracking_uri
from stages._cli import run

log = logging.getLogger("predict")


def read_rows(path: Path) -> pd.DataFrame:
    """A CSV (every cell as text, as prepare reads one) or Parquet file of raw rows, checked."""
    return read_table(path, None, what="--input").reset_index(drop=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--input", required=True, type=Path, help="raw rows: a .csv or .parquet file")
    ap.add_argument(
        "--output",
        type=Path,
        default=None,
        help="where to write the predictions (.csv or .parquet; default: <input>.predictions.csv)",
    )
    ap.add_argument("--model", default=None, help="MLflow model URI (default: models:/<registered model>@champion)")
    args = ap.parse_args(argv)

    if args.model is None or args.model.startswith(("models:/", "runs:/")):  # read from the store: check it first
        check_store(tracking_uri())
    if args.model is None:
        cfg = load_params(args.params).mlflow
        args.model = f"models:/{cfg.registered_model or cfg.experiment}@champion"
    output = args.output or args.input.with_name(f"{args.input.stem}.predictions.csv")
    if output.suffix.lower() not in (".csv", ".parquet"):
        raise PipelineError(f"--output: {output} must end in .csv or .parquet")
    frame = read_rows(args.input)
    candidate = load_candidate(args.model)
    extra = candidate.preprocessing.unexpected_columns(frame)
    if extra:
        shown = ", ".join(extra[:5]) + (f", … ({len(extra)} in all)" if len(extra) > 5 else "")
        log.warning("ignoring %d column(s) the model does not read: %s", len(extra), shown)
    predicted = candidate.predict(candidate.preprocessing.typed(frame), strict=True)
    predicted.insert(0, "row", range(len(predicted)))
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix.lower() == ".csv":
        write_text(output, predicted.to_csv(index=False))
    else:
        tmp = output.with_name(f".{output.name}.tmp")
        predicted.to_parquet(tmp, index=False)
        tmp.replace(output)
    counts = predicted["prediction"].value_counts()
    log.info(
        "%s (%s): %d rows -> %s; predicted %s",
        args.model,
        candidate.name,
        len(predicted),
        output,
        ", ".join(f"{c}={n}" for c, n in counts.items()),
    )


if __name__ == "__main__":
    run(main)
