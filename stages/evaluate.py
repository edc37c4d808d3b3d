"""evaluate: every candidate under every metric, on validation and test, under two class priors;
the pick made on validation; the audit.

Reads which models exist from the plans and the baselines' ``training.json``, their validation
and test predictions, and the decide stage's ``<model>+<rule>`` candidates. Writes ``reports/metrics.json`` (model -> metric -> value), ``reports/audit.json``
(ranks, winners, rank agreement, the selection policy's pick), ``reports/summary.json`` (the pick
and the reference, rounded: DVC's metrics file), the data of DVC's plots under ``reports/plots/``
(``pipeline.evaluation.evaluate.PLOT_FILES``) and every figure under ``reports/figures/``, then logs it all
to MLflow.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

from pipeline import Interrupted, PipelineError, interruption

from pipeline.artifacts import check_labels, load_decision_records, load_model_records
from pipeline.config import load_params
from pipeline.evaluation.evaluate import PLOT_FILES, evaluate, gamma_rows, plot_data
from pipeline.io import atomic_dirs, read_json, write_json
from pipeline.evaluation.plots import evaluation_figures, render
from pipeline.data.preprocessing import load_preprocessing
from pipeline.tracking.provenance import lock_hashes, read_lock
from pipeline.artifacts import probability_column
from pipeline.tracking.serving import PREDICTION, write_candidate_bundle
from pipeline.evaluation.strength import curve_table
from pipeline.tracking.outbox import clear_task, outbox_dir, write_task
from pipeline.tracking.runs import EXP_ENV, error_line, log_evaluation, preflight, repo_root, tracking_uri
from stages._cli import run
from stages.show import table

log = logging.getLogger("evaluate")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--meta", required=True, help="meta.json written by prepare")
    ap.add_argument("--plans", required=True, help="directory written by plan")
    ap.add_argument("--models", required=True, help="parent of the train@<loss> and baselines model directories")
    ap.add_argument("--predictions", required=True, help="parent of the per-loss prediction directories")
    ap.add_argument("--baselines", default=None, help="name of the baselines' directory under --models")
    ap.add_argument("--decision-predictions", required=True, help="the decide stage's predictions")
    ap.add_argument("--decision-params", required=True, help="the decide stage's fitted parameters")
    ap.add_argument("--metrics", required=True, help="metrics.json to write")
    ap.add_argument("--audit", required=True, help="audit.json to write")
    ap.add_argument("--summary", required=True, help="summary.json to write (what `dvc exp show` compares)")
    ap.add_argument("--runs", required=True, help="mlflow_runs.json to write: where the MLflow runs went")
    ap.add_argument("--plots", required=True, help="directory for DVC plot data")
    ap.add_argument("--figures", required=True, help="directory for PNG figures")
    ap.add_argument("--preprocessing", required=True, help="preprocessing.json written by prepare")
    ap.add_argument("--lock", default="dvc.lock", help="DVC lock file: its stage hashes go into the decision record")
    ap.add_argument(
        "--log-only",
        action="store_true",
        help="log an evaluation already written to MLflow (what `make send` does when the store was "
        "lost): the same computation, no file written",
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    args = ap.parse_args(argv)

    online = preflight() is not None  # a malformed or unreachable store: one line, before the work
    _evaluate(args, argv, online)


def _evaluate(args: argparse.Namespace, argv: list[str], online: bool) -> None:
    params = load_params(args.params)
    meta = read_json(args.meta, what="prepared-data metadata")
    models = load_model_records(args.plans, args.models, args.predictions, args.baselines, meta)
    records = load_decision_records(models, args.decision_predictions, args.decision_params, meta["classes"])
    check_labels(records, Path(args.preprocessing).parent, meta["classes"])
    losses = params.train.losses
    reference = "ce" if "ce" in losses else losses[0]
    ev = evaluate(records, meta, params.evaluate, reference_loss=reference)  # checks the policy first
    data = plot_data(records, ev, meta["classes"])

    if not args.log_only:
        with atomic_dirs(args.plots, args.figures) as (plots_tmp, figures_tmp):
            for key, filename in PLOT_FILES.items():
                write_json(plots_tmp / filename, data.rows[key])
            for filename, image in render(evaluation_figures(ev, data, meta)):
                (figures_tmp / filename).write_bytes(image)
            write_json(args.audit, ev.audit)
            write_json(args.summary, ev.summary)
            write_json(args.metrics, ev.metrics)

    shown = [row["model"] for row in ev.audit["leaderboard"]][:15]
    headline = {n: {k: v for k, v in ev.metrics[n].items() if not isinstance(v, dict)} for n in shown}
    log.debug(
        "test split as held out, the policy's top %d of %d candidates:\n%s",
        len(shown),
        len(ev.metrics),
        table(headline),
    )
    est = ev.audit["estimate"]
    log.info(
        "%d candidates; policy: %s%s",
        len(ev.metrics),
        ev.audit["policy"]["summary"],
        ""
        if not est
        else f"; on test {est['metric']} {est['test']:.4f}"
        + ("" if est["low"] is None else f" [{est['low']:.4f}, {est['high']:.4f}]"),
    )
    for w in ev.audit["warnings"]:
        log.warning("%s", w)
    for d in ev.audit["disagreements"]:
        log.debug("  %s would pick %s: %s", d["metric"], d["winner"], d["reason"])

    box, task = outbox_dir(repo_root()), f"evaluate-{os.environ.get('DVC_EXP_NAME') or 'workspace'}"
    pending = {
        "kind": "evaluate",
        "argv": [a for a in argv if a != "--log-only"],
        "cwd": os.getcwd(),
        "runs": args.runs,
        "env": {k: os.environ[k] for k in EXP_ENV if k in os.environ},
    }
    if not online:
        Path(args.runs).unlink(missing_ok=True)  # no MLflow links in the report until it is sent
        write_task(box, task, pending)
        log.warning("the evaluation waits in %s: `make send` logs it to MLflow", box)
        return
    pre = load_preprocessing(args.preprocessing)
    with tempfile.TemporaryDirectory() as tmp:
        bundles = {}
        for rec in records:
            out = Path(tmp) / str(len(bundles)) / "bundle"
            bundles[rec.name] = (
                out,
                write_candidate_bundle(
                    out,
                    rec,
                    classes=meta["classes"],
                    preprocessing_file=Path(args.preprocessing),
                    decisions_dir=Path(args.decision_params),
                ),
            )
        registered = params.mlflow.registered_model or params.mlflow.experiment
        try:
            where = log_evaluation(
                params.mlflow.experiment,
                records,
                ev,
                meta,
                params.evaluate,
                figures=Path(args.figures),
                reports=[Path(args.metrics), Path(args.audit), Path(args.summary)],
                bundles=bundles,
                input_types=pre.input_types(),
                input_example=pre.example(),
                registered_model=registered,
                outputs=[PREDICTION, *(probability_column(c) for c in meta["classes"])],
                tables={
                    "gamma_curves.json": [{"loss": r.pop("name"), **r} for r in gamma_rows(ev)],
                    "alpha_curves.json": curve_table(ev.audit.get("weight_strength") or {}),
                },
                lock_hashes=lock_hashes(read_lock(args.lock), skip=("evaluate", "report")),
                splits={
                    "validation": Path(args.preprocessing).parent / "val.parquet",
                    "test": Path(args.preprocessing).parent / "test.parquet",
                },
            )
        except (PipelineError, Interrupted, KeyboardInterrupt):
            raise
        except Exception as exc:  # the store was lost while logging: the outputs stand, the logging waits
            if (stop := interruption(exc)) is not None:  # not the store: a signal, turned into this on its way out
                raise stop
            if args.log_only:
                raise
            Path(args.runs).unlink(missing_ok=True)
            write_task(box, task, pending)
            first = error_line(exc)
            log.warning(
                "MLflow store %s lost while logging the evaluation (%s): reports/ are written, the logging "
                "waits in %s; `make send` (or the next evaluate) logs it, nothing twice",
                tracking_uri(),
                first[:200],
                box,
            )
            return
    write_json(args.runs, where)
    clear_task(box, task)


if __name__ == "__main__":
    run(main)
