"""evaluate: every model under every metric, under two class priors, with intervals; the audit.

Reads which models exist from the plans and the baselines' ``training.json``, and their test
predictions. Writes ``reports/metrics.json`` (model -> metric -> value), ``reports/audit.json``
(ranks, winners, rank agreement, the selection policy's pick), DVC plot data under
``reports/plots/`` and figures under ``reports/figures/``, then logs it all to MLflow.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve

from pipeline import PipelineError
from pipeline.config import load_params
from pipeline.evaluation import (
    CI_METRICS,
    build_audit,
    gamma_table,
    model_metrics,
    rarest_class,
    second_view,
)
from pipeline.io import atomic_dirs, read_json, read_parquet, write_json
from pipeline.metrics import bootstrap_indices, confusion_matrix
from pipeline.plots import (
    agreement_figure,
    confusion_figure,
    focal_shape_figure,
    gamma_curves_figure,
    rank_figure,
    save,
)
from pipeline.provenance import git_tags
from pipeline.tracking import ModelRun, log_pipeline_run
from stages._cli import run
from stages.show import table

log = logging.getLogger("evaluate")


def load_models(plans_dir: Path, models_dir: Path, preds_dir: Path, baselines_dir: Path | None) -> list[dict]:
    """One record per model: name, loss, gamma, seed, kind, params, training summary, predictions."""
    plan_files = sorted(plans_dir.glob("*.json"))
    if not plan_files:
        raise PipelineError(f"{plans_dir}: no training plans found (run the plan stage first)")
    groups = []
    for plan_file in plan_files:
        plan = read_json(plan_file, what="training plan")
        params = {"train": plan["train"],
                  "weights": {k: plan["class_weights"][k] for k in ("scheme", "beta")}
                  if plan.get("class_weights") else {"scheme": "unweighted"}}
        groups.append((plan["loss"], "mlp", [r["model"] for r in plan["runs"]], params))
    if baselines_dir is not None:
        summary = read_json(baselines_dir / "training.json", what="baselines summary")
        groups.append((baselines_dir.name, "baseline", list(summary["runs"]), summary["params"]))
    records = []
    for group, kind, names, params in groups:
        training = read_json(models_dir / group / "training.json", what=f"training summary of {group}")
        for name in names:
            if name not in training["runs"]:
                raise PipelineError(f"{models_dir / group / 'training.json'}: no entry for model {name}")
            t = training["runs"][name]
            weights_file = next((models_dir / group / f"{name}{ext}" for ext in (".pt", ".json")
                                 if (models_dir / group / f"{name}{ext}").is_file()), None)
            records.append({
                "name": name, "loss": t["loss"], "gamma": t["gamma"], "seed": t["seed"], "kind": kind,
                "group": group, "params": params, "training": t, "device": training["device"],
                "weights": weights_file,
                "predictions": read_parquet(preds_dir / group / f"{name}.parquet", what=f"predictions of {name}"),
            })
    return records


def _codes(values: pd.Series, classes: list[str], what: str) -> np.ndarray:
    codes = pd.Categorical(values.astype(str), categories=classes).codes
    if (codes < 0).any():
        raise PipelineError(f"{what}: value {values[codes < 0].iloc[0]!r} is not a class of meta.json")
    return codes.astype(np.int64)


def _flat(prefix: str, d: dict) -> dict[str, float]:
    """``{"ci": {"macro_f1": {"low": a}}}`` -> ``{"<prefix>ci/macro_f1/low": a}`` (MLflow names)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(f"{prefix}{k}/", v))
        else:
            out[f"{prefix}{k}"] = v
    return out


def summary(metrics: dict[str, dict], audit: dict, view_key: str) -> dict:
    """The few numbers worth a column in ``dvc exp show``: the policy's pick and every macro-F1."""
    pick = audit["policy"]["pick"]
    out: dict = {"pick": pick or "none"}
    if pick:
        m = metrics[pick]
        out.update({f"pick_{k}": m[k] for k in ("macro_f1", "balanced_accuracy", "accuracy")})
        out.update({f"pick_{view_key}_{k}": m[view_key][k] for k in ("accuracy", "macro_f1")})
    out["macro_f1"] = {name: m["macro_f1"] for name, m in metrics.items()}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--meta", required=True, help="meta.json written by prepare")
    ap.add_argument("--plans", required=True, help="directory written by plan")
    ap.add_argument("--models", required=True, help="parent of the train@<loss> and baselines model directories")
    ap.add_argument("--predictions", required=True, help="parent of the per-loss prediction directories")
    ap.add_argument("--baselines", default=None, help="name of the baselines' directory under --models")
    ap.add_argument("--metrics", required=True, help="metrics.json to write")
    ap.add_argument("--audit", required=True, help="audit.json to write")
    ap.add_argument("--summary", required=True, help="summary.json to write (what `dvc exp show` compares)")
    ap.add_argument("--runs", required=True, help="mlflow_runs.json to write: where the MLflow runs went")
    ap.add_argument("--plots", required=True, help="directory for DVC plot data")
    ap.add_argument("--figures", required=True, help="directory for PNG figures")
    args = ap.parse_args(argv)

    params = load_params(args.params)
    cfg = params.evaluate
    meta = read_json(args.meta, what="prepared-data metadata")
    classes = meta["classes"]
    train_counts = [meta["counts"]["train"][c] for c in classes]
    models_dir = Path(args.models)
    records = load_models(Path(args.plans), models_dir, Path(args.predictions),
                          models_dir / args.baselines if args.baselines else None)

    y_true = _codes(records[0]["predictions"]["y_true"], classes, f"predictions of {records[0]['name']}")
    for rec in records:
        if not np.array_equal(_codes(rec["predictions"]["y_true"], classes, rec["name"]), y_true):
            raise PipelineError(f"predictions of {rec['name']}: y_true differs from {records[0]['name']}'s; "
                                "re-run the pipeline so every model sees the same test split")
    view = second_view(train_counts, np.bincount(y_true, minlength=len(classes)).tolist(), cfg.prior)
    rarest = rarest_class(train_counts, classes)
    indices = bootstrap_indices(len(y_true), cfg.bootstrap.resamples, cfg.bootstrap.seed)
    ci_metrics = [*CI_METRICS, f"recall/{rarest}", f"precision/{rarest}"]
    prob_cols = [f"p_{c}" for c in classes]

    metrics: dict[str, dict] = {}
    for rec in records:
        preds = rec["predictions"]
        missing = [c for c in prob_cols if c not in preds.columns]
        if missing:
            raise PipelineError(f"predictions of {rec['name']}: missing column {missing[0]!r}")
        rec["y_pred"] = _codes(preds["y_pred"], classes, f"predictions of {rec['name']}, y_pred")
        rec["proba"] = preds[prob_cols].to_numpy(np.float64)
        metrics[rec["name"]] = model_metrics(y_true, rec["y_pred"], rec["proba"], classes, view=view,
                                             indices=indices, ci_metrics=ci_metrics, cfg=cfg)
    models = [{k: rec[k] for k in ("name", "loss", "gamma", "seed", "kind")} for rec in records]
    # The policy is checked here, before any file is written.
    audit = build_audit(metrics, view=view, cfg=cfg, classes=classes, train_counts=train_counts, models=models,
                        y_true=y_true, predictions={r["name"]: r["y_pred"] for r in records}, indices=indices)
    gammas = gamma_table(models, metrics, rarest)

    figures_dir = Path(args.figures)
    with atomic_dirs(args.plots, args.figures) as (plots_tmp, figures_tmp):
        for sub in ("confusion", "pr", "gamma"):
            (plots_tmp / sub).mkdir()
        r = classes.index(rarest)
        for rec in records:
            name, preds = rec["name"], rec["predictions"]
            pd.DataFrame({"actual": preds["y_true"].astype(str), "predicted": preds["y_pred"].astype(str)}).to_csv(
                plots_tmp / "confusion" / f"{name}.csv", index=False)
            precision, recall, _ = precision_recall_curve(y_true == r, rec["proba"][:, r])
            pd.DataFrame({"recall": recall, "precision": precision}).to_csv(plots_tmp / "pr" / f"{name}.csv", index=False)
            cm = confusion_matrix(y_true, rec["y_pred"], len(classes))
            save(confusion_figure(cm, classes, f"{name} - test split"), figures_tmp / f"confusion_{name}.png")
            rec["figure"] = figures_dir / f"confusion_{name}.png"
        for loss, rows in gammas.items():
            write_json(plots_tmp / "gamma" / f"{loss}.json", rows)
            save(gamma_curves_figure(rows, ["macro_f1", "micro_f1", "accuracy", "balanced_accuracy",
                                            "rarest_recall", "rarest_precision"],
                                     f"{loss}: test metrics against gamma (rarest class: {rarest})"),
                 figures_tmp / f"gamma_{loss}.png")
        swept = sorted({m["gamma"] for m in models if m["gamma"] is not None})
        if swept:
            save(focal_shape_figure(swept), figures_tmp / "focal_loss_shape.png")
        ordered = [row["model"] for row in audit["leaderboard"]]
        ranked = {row["model"]: row["ranks"] for row in audit["leaderboard"]}
        save(rank_figure(ordered, audit["metrics"], ranked, audit["policy"]["pick"]), figures_tmp / "leaderboard_ranks.png")
        save(agreement_figure(audit["metrics"], audit["kendall_tau"]), figures_tmp / "metric_agreement.png")
        write_json(args.audit, audit)
        write_json(args.summary, summary(metrics, audit, view.key))
        write_json(args.metrics, metrics)

    headline = {n: {k: v for k, v in m.items() if not isinstance(v, dict)} for n, m in metrics.items()}
    log.info("test split as held out, %d models:\n%s", len(metrics), table(headline))
    log.info("policy: %s", audit["policy"]["summary"])
    for d in audit["disagreements"]:
        log.info("  %s would pick %s: %s", d["metric"], d["winner"], d["reason"])

    tags = {**git_tags(), "data_digest": meta["digest"]}
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    runs = [
        ModelRun(
            name=rec["name"],
            params={"model": rec["name"], "loss": rec["loss"], "gamma": rec["gamma"], "seed": rec["seed"],
                    "kind": rec["kind"], **rec["params"], "data": meta["params"]},
            history=rec["training"]["history"],
            metrics={**_flat("", metrics[rec["name"]]),
                     "best_epoch": rec["training"]["best_epoch"],
                     "best_val_macro_f1": rec["training"]["best_val_macro_f1"]},
            tags={"dvc_stage": f"train@{rec['group']}" if rec["kind"] == "mlp" else "baselines",
                  "loss": rec["loss"], "kind": rec["kind"], "device": rec["device"]},
            artifacts=[p for p in (rec["figure"], rec["weights"]) if p is not None],
        )
        for rec in records
    ]
    leaderboard = pd.DataFrame([{"model": row["model"], **row["values"],
                                 **{f"rank/{k}": v for k, v in row["ranks"].items()}}
                                for row in audit["leaderboard"]])
    where = log_pipeline_run(
        params.mlflow.experiment,
        models=runs,
        tags={**tags, "dvc_stage": os.environ.get("DVC_STAGE", "evaluate")},
        eval_params={"data": meta["params"], "evaluate": {"prior": cfg.prior, "view_key": view.key,
                     "select": audit["policy"]["summary"]}, "n_models": len(runs)},
        eval_tags={"policy_pick": audit["policy"]["pick"] or "none"},
        eval_artifacts=[Path(args.metrics), Path(args.audit), Path(args.summary),
                        figures_dir / "leaderboard_ranks.png", figures_dir / "metric_agreement.png",
                        *[figures_dir / f"gamma_{loss}.png" for loss in gammas],
                        *([figures_dir / "focal_loss_shape.png"] if swept else [])],
        tables={"leaderboard.json": leaderboard},
    )
    write_json(args.runs, where)


if __name__ == "__main__":
    run(main)
