"""The one module that talks to MLflow.

Tracking URI: ``MLFLOW_TRACKING_URI`` when set, else ``sqlite:///<repo root>/mlflow.db`` where the
repo root is ``DVC_ROOT`` (set by DVC for every stage, and pointing at the user's repository
even for ``dvc exp run --queue``, which runs in a temporary copy) or the working directory.

One evaluation run (the parent) per pipeline execution holds the cross-model views; one child
run per trained model holds its params, per-epoch curves, test metrics, confusion matrix and
weights.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline import Interrupted
from pipeline.artifacts import FIGURES, Meta, MetricsFile, ModelRecord, confusion_figure_file, flatten, gamma_figure_file
from pipeline.names import safe_name
from pipeline.provenance import git_tags

log = logging.getLogger(__name__)

_BATCH = 900  # MLflow accepts at most 1000 metrics per log_batch call


def repo_root(environ: Mapping[str, str] = os.environ, cwd: str | Path | None = None) -> Path:
    return Path(environ.get("DVC_ROOT") or cwd or Path.cwd()).resolve()


def tracking_uri(environ: Mapping[str, str] = os.environ, cwd: str | Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the SQLite store at the repository root."""
    uri = environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{repo_root(environ, cwd) / 'mlflow.db'}"


@dataclass
class ModelRun:
    """Everything logged to one model's run."""

    name: str
    params: dict[str, Any]
    history: list[dict[str, float]]  # per-epoch curves, keyed by metric name plus "epoch"
    metrics: dict[str, float]  # test metrics, under the metrics.json names
    tags: dict[str, str] = field(default_factory=dict)
    artifacts: list[Path] = field(default_factory=list)


def _params(params: Mapping[str, Any]) -> dict[str, str]:
    """MLflow params: nested keys joined with ``.``, values as text."""
    return {k: str(v) for k, v in flatten(params, sep=".").items()}


def _metric_key(key: str) -> str:
    """A metrics.json name as an MLflow metric key: the class part through :func:`safe_name`."""
    base, slash, cls = key.partition("/")
    return f"{base}/{safe_name(cls)}" if slash else key


def mlflow_metrics(entry: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """One model's metrics.json entry as MLflow metrics: ``ci/<metric>/low``, ``<view>/<metric>``,
    class names made safe (MLflow refuses ``< , " & %`` and more in keys)."""
    out: dict[str, float] = {}
    for key, value in entry.items():
        if isinstance(value, Mapping):
            out.update(mlflow_metrics(value, f"{prefix}{_metric_key(key)}/"))
        else:
            out[prefix + _metric_key(key)] = value
    return out


def _logged_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A candidate's metrics.json entry as its run logs it: the test split whole, the validation
    split's summary metrics only (its per-class ones stay in ``metrics.json``: a run holds
    headline numbers, and every logged value costs the store a row)."""

    def summary(part: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in part.items() if "/" not in k and not isinstance(v, Mapping)}

    out = {k: v for k, v in entry.items() if k != "val"}
    if "val" in entry:
        out["val"] = {**summary(entry["val"]),
                      **{k: summary(v) for k, v in entry["val"].items() if isinstance(v, Mapping)}}
    return out


def model_runs(records: list[ModelRecord], metrics: MetricsFile, meta: Meta, figures_dir: Path) -> list[ModelRun]:
    """What each model's run holds: its parameters, training curves, test metrics and files."""
    return [
        ModelRun(
            name=rec.name,
            params={"model": rec.name, "loss": rec.loss, "gamma": rec.gamma, "seed": rec.seed,
                    "kind": rec.kind, **rec.params, "data": meta["params"]},
            history=rec.training["history"],
            metrics={**mlflow_metrics(_logged_entry(metrics[rec.name])),
                     "best_epoch": rec.training["best_epoch"],
                     **({f"early_stopping_{rec.training['monitor']}": rec.training["best_score"]}
                        if rec.training["monitor"] else {})},
            tags={"dvc_stage": f"train@{rec.group}" if rec.kind == "mlp" else "baselines",
                  "loss": rec.loss, "kind": rec.kind, "device": rec.device},
            artifacts=[p for p in (figures_dir / confusion_figure_file(rec.name), rec.weights) if p is not None],
        )
        for rec in records
    ]


# Makes the MLflow 3 UI open the experiment on its runs table rather than the GenAI views.
_KIND_TAG, _KIND = "mlflow.experimentKind", "custom_model_development"


def artifact_root(uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: ``mlartifacts/`` beside a SQLite store's file.

    For any other store (a tracking server, a database server) None: the store decides. Without
    this, MLflow puts a SQLite store's artifacts under the working directory, whatever the store.
    """
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri[len(prefix):] in ("", ":memory:"):
        return None
    return (Path(uri[len(prefix):]).resolve().parent / "mlartifacts").as_uri()


def _experiment_id(client, name: str, uri: str) -> str:
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is None:
        location = artifact_root(uri)
        try:
            client.create_experiment(name, artifact_location=location, tags={_KIND_TAG: _KIND})
        except MlflowException:  # created meanwhile by a parallel `dvc queue` worker
            pass
        exp = client.get_experiment_by_name(name)
    if _KIND_TAG not in exp.tags:
        client.set_experiment_tag(exp.experiment_id, _KIND_TAG, _KIND)
    return exp.experiment_id


def log_pipeline_run(
    experiment: str,
    *,
    models: list[ModelRun],
    tags: dict[str, str],
    eval_params: dict[str, Any],
    eval_artifacts: list[Path],
    eval_tags: dict[str, str] | None = None,
    tables: dict[str, Any] | None = None,
    environ: Mapping[str, str] = os.environ,
) -> dict[str, Any]:
    """Log one evaluation (parent) run and one child run per model.

    Returns where the runs went: ``tracking_uri``, ``experiment``, ``experiment_id``,
    ``evaluation_run`` and ``models`` (model name -> run id). Runs left unfinished by an error
    are marked FAILED (KILLED when the stage was interrupted), never left RUNNING.
    """
    import mlflow
    from mlflow.entities import Metric, Param
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    uri = tracking_uri(environ)
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp_id = _experiment_id(client, experiment, uri)
    open_runs: list[str] = []

    def batch(run_id: str, *, metrics=(), params=(), tags=()) -> None:
        metrics = list(metrics)
        client.log_batch(run_id, params=list(params), tags=list(tags), metrics=metrics[:_BATCH])
        for i in range(_BATCH, len(metrics), _BATCH):
            client.log_batch(run_id, metrics=metrics[i : i + _BATCH])

    try:
        label = tags.get("dvc_exp_name") or tags.get("git_commit", "unknown")[:7]
        parent = client.create_run(exp_id, run_name=f"evaluate-{label}",
                                   tags={**tags, **(eval_tags or {}), "role": "evaluation"})
        parent_id = parent.info.run_id
        open_runs.append(parent_id)
        batch(parent_id, params=[Param(k, v) for k, v in _params(eval_params).items()])
        for path in eval_artifacts:
            client.log_artifact(parent_id, str(path))
        for name, table in (tables or {}).items():
            client.log_table(parent_id, data=table, artifact_file=name)

        run_ids: dict[str, str] = {}
        for m in models:
            run_tags = {**tags, **m.tags, "role": "model", "model": m.name, MLFLOW_PARENT_RUN_ID: parent_id}
            run = client.create_run(exp_id, run_name=m.name, tags=run_tags)
            run_id = run.info.run_id
            open_runs.append(run_id)
            now = int(time.time() * 1000)
            curves = [
                Metric(key, float(value), now, int(h["epoch"]))
                for h in m.history
                for key, value in h.items()
                if key != "epoch" and isinstance(value, (int, float))  # not the confusion matrices
            ]
            final = [Metric(key, float(value), now, 0) for key, value in m.metrics.items()]
            batch(run_id, params=[Param(k, v) for k, v in _params(m.params).items()],
                  metrics=curves + final)
            for path in m.artifacts:
                client.log_artifact(run_id, str(path))
            client.set_terminated(run_id, "FINISHED")
            open_runs.remove(run_id)
            run_ids[m.name] = run_id
        client.set_terminated(parent_id, "FINISHED")
        open_runs.remove(parent_id)
    except BaseException as exc:
        status = "KILLED" if isinstance(exc, (KeyboardInterrupt, Interrupted)) else "FAILED"
        for run_id in open_runs:
            try:
                client.set_terminated(run_id, status)
            except Exception:  # the store itself may be what failed; the original error matters
                log.warning("could not mark MLflow run %s as %s", run_id, status)
        raise
    log.info("MLflow: %d model runs under evaluation run %s at %s", len(models), parent_id, uri)
    return {"tracking_uri": uri, "experiment": experiment, "experiment_id": exp_id,
            "evaluation_run": parent_id, "models": run_ids}


def log_artifacts_to_run(run_id: str, paths: list[Path], environ: Mapping[str, str] = os.environ) -> None:
    """Add files to an existing run (e.g. the report to its evaluation run)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri(environ))
    for path in paths:
        client.log_artifact(run_id, str(path))


def log_evaluation(experiment: str, records: list[ModelRecord], ev, meta: Meta, cfg, *, figures: Path,
                   reports: list[Path], environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """Log an evaluation (:class:`pipeline.evaluation.Evaluation` ``ev`` of ``records``, under
    :class:`pipeline.config.EvaluateConfig` ``cfg``): one run per model and the evaluation run
    holding ``reports`` (metrics, audit, summary files), the cross-model figures and the
    leaderboard. Returns :func:`log_pipeline_run`'s record of where the runs went."""
    tags = {**git_tags(), "data_digest": meta["digest"], "dvc_stage": environ.get("DVC_STAGE", "evaluate")}
    if environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = environ["DVC_EXP_NAME"]
    leaderboard = pd.DataFrame([{"model": row["model"], **row["values"], **flatten({"rank": row["ranks"]})}
                                for row in ev.audit["leaderboard"]])
    shared = [figures / FIGURES[k] for k in ("ranks", "agreement", "focal_shape")]
    return log_pipeline_run(
        experiment,
        models=model_runs(records, ev.metrics, meta, figures),
        tags=tags,
        eval_params={"data": meta["params"], "evaluate": {"prior": cfg.prior, "view_key": ev.view.key,
                     "select": ev.audit["policy"]["summary"]}, "n_models": len(records)},
        eval_tags={"policy_pick": ev.audit["policy"]["pick"] or "none"},
        eval_artifacts=[*reports, *(f for f in shared if f.is_file()),
                        *(figures / gamma_figure_file(loss) for loss in ev.gammas)],
        tables={"leaderboard.json": leaderboard},
        environ=environ,
    )
