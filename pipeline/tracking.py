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


def _candidates(records: list[ModelRecord], ev, meta: Meta, bundles: Mapping[str, tuple[Path, str]],
                figures_dir: Path) -> list:
    """What each candidate's run and logged model hold (:class:`pipeline.registry.Candidate`)."""
    from pipeline.registry import Candidate, datasets, logged_metrics

    out = []
    for rec in records:
        entry = ev.metrics[rec.name]
        table = pd.DataFrame([
            {"dataset": ds, "metric": k, "value": v}
            for ds, path in datasets(ev.view.key).items()
            for k, v in flatten(_part(entry, path)).items()
            if isinstance(v, (int, float)) and not k.startswith(("val/", f"{ev.view.key}/"))
        ])
        params = {"model": rec.model, "loss": rec.loss, "gamma": _gamma(rec.gamma), "seed": rec.seed, "kind": rec.kind,
                  **({"rule": rec.rule, **flatten({"rule": rec.decision["params"]}, sep=".")} if rec.rule else
                     {**rec.params, "data": meta["params"]})}
        trained = rec.rule is None
        out.append(Candidate(
            name=rec.name, bundle=bundles[rec.name][0], digest=bundles[rec.name][1],
            metrics=logged_metrics(entry, ev.view.key), table=table,
            params={k: str(v)[:6000] for k, v in flatten(params, sep=".").items()},
            tags={"dvc_stage": ("baselines" if rec.kind == "baseline" else f"train@{rec.group}") if trained else "decide",
                  "loss": rec.loss, "kind": rec.kind, "device": rec.device, "role": "model" if trained else "decision",
                  **({"rule": rec.rule, "model": rec.model} if rec.rule else {"model": rec.name})},
            parent=None if trained else rec.model,
            curves=rec.training["history"] if trained else [],
            artifacts=[p for p in [figures_dir / confusion_figure_file(rec.name)] if p.is_file()],
        ))
    return out


def _part(entry: Mapping[str, Any], path: tuple[str, ...]) -> Mapping[str, Any]:
    for key in path:
        entry = entry.get(key, {})
    return entry


def _gamma(gamma: float | None) -> str:
    """γ as the run names write it: 2, not 2.0."""
    return "none" if gamma is None else f"{gamma:g}"


def log_evaluation(experiment: str, records: list[ModelRecord], ev, meta: Meta, cfg, *, figures: Path,
                   reports: list[Path], bundles: Mapping[str, tuple[Path, str]], raw_columns: list[str],
                   input_example: pd.DataFrame | None, registered_model: str,
                   lock_hashes: Mapping[str, str] | None = None,
                   environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """Log an evaluation (:class:`pipeline.evaluation.Evaluation` ``ev`` of ``records``, every
    candidate, under :class:`pipeline.config.EvaluateConfig` ``cfg``).

    Every candidate becomes an MLflow model from a run of its own (:func:`pipeline.registry.log_candidates`,
    ``bundles``: name -> (bundle directory, content digest)); one evaluation run holds ``reports``,
    the cross-model figures, the leaderboard and the pick's headline metrics; the pick is
    registered as a version of ``registered_model`` with its decision record. In a plain run the
    alias ``champion`` moves to it (``challenger`` to the closest candidate when none meets the
    constraints); under ``dvc exp run`` (``DVC_EXP_NAME``) no alias moves. Returns where it all
    went. Runs left unfinished by an error are marked FAILED (KILLED when interrupted).
    """
    import mlflow
    from mlflow.entities import Metric, Param

    from pipeline.registry import datasets, decision_record, log_candidates, logged_metrics, register

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per model otherwise
    uri = tracking_uri(environ)
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp_id = _experiment_id(client, experiment, uri)
    exp_name = environ.get("DVC_EXP_NAME")
    tags = {**git_tags(), "data_digest": meta["digest"]}
    if exp_name:
        tags["dvc_exp_name"] = exp_name
    open_runs: list[str] = []
    policy = ev.audit["policy"]
    try:
        label = exp_name or tags.get("git_commit", "unknown")[:7]
        parent = client.create_run(exp_id, run_name=f"evaluate-{label}",
                                   tags={**tags, "role": "evaluation", "dvc_stage": environ.get("DVC_STAGE", "evaluate"),
                                         "policy_pick": policy["pick"] or "none"})
        parent_id = parent.info.run_id
        open_runs.append(parent_id)
        started = time.perf_counter()
        logged = log_candidates(client, exp_id, _candidates(records, ev, meta, bundles, figures),
                                data_digest=meta["digest"], data_tag=meta["digest"][:12],
                                input_example=input_example, raw_columns=raw_columns, classes=meta["classes"],
                                run_tags={**tags, "execution": parent_id}, open_runs=open_runs)
        new = sum(not v.reused for v in logged.values())
        log.info("MLflow: %d candidate models logged, %d already there, in %.1fs", new, len(logged) - new,
                 time.perf_counter() - started)

        chosen = policy["pick"] or policy.get("closest")
        metrics = []
        if chosen:
            now = int(time.time() * 1000)
            for i, (ds, values) in enumerate(logged_metrics(ev.metrics[chosen], ev.view.key).items()):
                metrics += [Metric(f"{ds}/{k}", v, now + i, 0) for k, v in values.items() if "/" not in k]
        leaderboard = pd.DataFrame([{"model": row["model"], **row["values"], **flatten({"rank": row["ranks"]})}
                                    for row in ev.audit["leaderboard"]])
        client.log_batch(parent_id, metrics=metrics, params=[Param(k, v) for k, v in _params({
            "data": meta["params"], "evaluate": {"prior": cfg.prior, "view_key": ev.view.key, "select": policy["summary"]},
            "n_candidates": len(records), "registered_model": registered_model}).items()])
        shared = [figures / FIGURES[k] for k in ("ranks", "agreement", "focal_shape")]
        for path in [*reports, *(f for f in shared if f.is_file()), *(figures / gamma_figure_file(loss) for loss in ev.gammas)]:
            client.log_artifact(parent_id, str(path))
        client.log_table(parent_id, data=leaderboard, artifact_file="leaderboard.json")

        registered = None
        if chosen:
            alias = None if exp_name else ("champion" if policy["pick"] else "challenger")
            record_tags, description = decision_record(ev.audit, ev.summary, chosen, commit=tags.get("git_commit", "unknown"),
                                                       data_digest=meta["digest"], lock_hashes=lock_hashes or {})
            version, created = register(client, registered_model, logged[chosen], content_digest=bundles[chosen][1],
                                        tags=record_tags, description=description, alias=alias,
                                        experiment_name=exp_name)
            registered = {"name": registered_model, "version": version, "alias": alias, "new_version": created,
                          "candidate": chosen}
            client.set_tag(parent_id, "registered_version", f"{registered_model}/{version}")
            log.info("registry: %s version %s (%s)%s", registered_model, version,
                     "new" if created else "same content as before: no new version",
                     f", alias {alias}" if alias else f", tagged {exp_name} (dvc exp run: no alias moves)")
            if not policy["pick"]:
                log.warning("nothing promoted to champion: no candidate meets the policy's constraints on validation; "
                            "%s, the closest, is the challenger", chosen)
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
    return {"tracking_uri": uri, "experiment": experiment, "experiment_id": exp_id, "evaluation_run": parent_id,
            "models": {name: v.run_id for name, v in logged.items()},
            "logged_models": {name: v.model_id for name, v in logged.items()}, "registered": registered}
