"""The one module that talks to MLflow.

Tracking URI: ``MLFLOW_TRACKING_URI`` when set, else ``sqlite:///<repo root>/mlflow.db`` where the
repo root is ``DVC_ROOT`` (set by DVC for every stage, and pointing at the user's repository
even for ``dvc exp run --queue``, which runs in a temporary copy) or the working directory.

One evaluation run per pipeline execution holds the cross-model views and the pick's headline
metrics; every candidate has a run and a logged model of its own (:mod:`pipeline.registry`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline import Interrupted
from pipeline.artifacts import (
    FIGURES,
    Meta,
    ModelRecord,
    confusion_figure_file,
    flatten,
    gamma_figure_file,
)
from pipeline.provenance import file_digest, git_tags

log = logging.getLogger(__name__)

def repo_root(environ: Mapping[str, str] = os.environ, cwd: str | Path | None = None) -> Path:
    return Path(environ.get("DVC_ROOT") or cwd or Path.cwd()).resolve()


def tracking_uri(environ: Mapping[str, str] = os.environ, cwd: str | Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the SQLite store at the repository root."""
    uri = environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{repo_root(environ, cwd) / 'mlflow.db'}"


def _params(params: Mapping[str, Any]) -> dict[str, str]:
    """MLflow params: nested keys joined with ``.``, values as text."""
    return {k: str(v) for k, v in flatten(params, sep=".").items()}


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


@contextmanager
def closing_runs(client) -> Iterator[list[str]]:
    """A list to put the ids of runs being written in (and take them out when finished): on an
    error they are marked FAILED (KILLED when the stage was interrupted), never left RUNNING."""
    open_runs: list[str] = []
    try:
        yield open_runs
    except BaseException as exc:
        status = "KILLED" if isinstance(exc, (KeyboardInterrupt, Interrupted)) else "FAILED"
        for run_id in open_runs:
            try:
                client.set_terminated(run_id, status)
            except Exception:  # the store itself may be what failed; the original error matters
                log.warning("could not mark MLflow run %s as %s", run_id, status)
        raise


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
        params = {"model": rec.model, "loss": rec.loss, "gamma": gamma_text(rec.gamma), "seed": rec.seed, "kind": rec.kind,
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
            weights_digest=file_digest(rec.weights) if trained and rec.weights else "",
            curves=rec.training["history"] if trained else [],
            artifacts=[p for p in [figures_dir / confusion_figure_file(rec.name)] if p.is_file()],
        ))
    return out


def _part(entry: Mapping[str, Any], path: tuple[str, ...]) -> Mapping[str, Any]:
    for key in path:
        entry = entry.get(key, {})
    return entry


def gamma_text(gamma: float | None) -> str:
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

    from pipeline.outbox import outbox_dir, send_pending
    from pipeline.registry import (
        decision_record,
        log_candidates,
        logged_metrics,
        register,
    )

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per model otherwise
    uri = tracking_uri(environ)
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp_id = _experiment_id(client, experiment, uri)
    pending = send_pending(client, lambda name: _experiment_id(client, name, uri), outbox_dir(repo_root(environ), environ))
    if pending:
        log.info("MLflow: %d run(s) from earlier stages sent from the outbox", pending)
    exp_name = environ.get("DVC_EXP_NAME")
    tags = run_tags(meta, environ)
    policy = ev.audit["policy"]
    with closing_runs(client) as open_runs:
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
                                run_tags={**tags, "execution": parent_id}, open_runs=open_runs,
                                box=outbox_dir(repo_root(environ), environ))
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
            val = ev.metrics[chosen]["val"]
            score = (val if cfg.select.view == "held_out" else val.get(ev.view.key, {})).get(cfg.select.metric)
            record_tags, description = decision_record(ev.audit, score, chosen, commit=tags.get("git_commit", "unknown"),
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
    return {"tracking_uri": uri, "experiment": experiment, "experiment_id": exp_id, "evaluation_run": parent_id,
            "models": {name: v.run_id for name, v in logged.items()},
            "logged_models": {name: v.model_id for name, v in logged.items()}, "registered": registered}


def _ms() -> int:
    return int(time.time() * 1000)


def run_tags(meta: Meta, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Tags every run of an execution carries: git commit (MLflow's own tag too), the data
    digest, and the experiment's name inside ``dvc exp run``."""
    git = git_tags()
    tags = {**git, "mlflow.source.git.commit": git["git_commit"], "data_digest": meta["digest"]}
    if environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = environ["DVC_EXP_NAME"]
    return tags


class StageRuns:
    """A training stage's MLflow runs, logged while it trains.

    One run for the stage (``role=stage``, started with ``mlflow.start_run`` so that it carries
    the process's system metrics, sampled each second) and, as its children, one run per model
    (``role=model``): real start and end times, per-epoch curves sent as they come (at most once
    a second, with each epoch's own timestamp), and at the end the tags ``weights_sha256`` and
    ``best_epoch`` by which evaluate finds the run again. Everything goes through the outbox
    (:mod:`pipeline.outbox`) first: when the store cannot be reached the stage trains on, says so
    once, and a later stage sends what is missing. On an error the runs end FAILED (KILLED when
    the stage was interrupted).
    """

    def __init__(self, experiment: str, stage: str, models: Mapping[str, Mapping[str, Any]],
                 model_tags: Mapping[str, Mapping[str, str]], tags: Mapping[str, str],
                 environ: Mapping[str, str] = os.environ):
        import threading
        import uuid

        from pipeline.outbox import RunRecord

        from pipeline.outbox import outbox_dir

        self.box, self.uri, self.experiment = outbox_dir(repo_root(environ), environ), tracking_uri(environ), experiment
        self.key = f"{stage}/{uuid.uuid4().hex}"
        now = _ms()
        self.stage = RunRecord(self.key, experiment, stage, tags={**tags, "role": "stage", "dvc_stage": stage},
                               start_time=now)
        self.models = {m: RunRecord(f"{self.key}/{m}", experiment, m, parent=self.key, start_time=now,
                                    tags={**tags, **model_tags.get(m, {}), "role": "model", "candidate": m,
                                          "model": m, "dvc_stage": stage},
                                    params=_params(models[m]))
                       for m in models}
        self._sent = dict.fromkeys(self.models, 0)
        self._ids: dict[str, str] = {}
        self._lock = threading.Lock()
        self._last = 0
        self.client = None

    def _records(self):
        return [self.stage, *self.models.values()]

    def _offline(self, exc: BaseException) -> None:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log.warning("MLflow store %s not reachable (%s): training goes on, its runs wait in %s and the next "
                    "stage that logs sends them", self.uri, first, self.box)
        self.client = None

    def __enter__(self) -> StageRuns:
        import mlflow

        from pipeline.outbox import KEY_TAG, send, send_pending, write_record

        try:  # first what earlier stages left waiting, then this stage's records
            mlflow.set_tracking_uri(self.uri)
            self.client = mlflow.MlflowClient(self.uri)
            self.exp_id = _experiment_id(self.client, self.experiment, self.uri)
            send_pending(self.client, lambda name: _experiment_id(self.client, name, self.uri), self.box)
        except Exception as exc:  # a store that cannot be reached must not stop training
            self._offline(exc)
        for r in self._records():
            write_record(self.box, r)
        if self.client is None:
            return self
        try:
            mlflow.set_system_metrics_sampling_interval(1)
            mlflow.set_system_metrics_samples_before_logging(1)
            active = mlflow.start_run(experiment_id=self.exp_id, run_name=self.stage.name, log_system_metrics=True,
                                      tags={**self.stage.tags, KEY_TAG: self.key})
            self._ids[self.key] = active.info.run_id
            for r in self.models.values():
                self._ids[r.key] = send(self.client, self.exp_id, r, parent_run_id=active.info.run_id)
        except Exception as exc:
            self._offline(exc)
        return self

    def epoch(self, model: str, record: Mapping[str, Any]) -> None:
        """One epoch of ``model``'s history (scalars; the confusion matrices stay in training.json)."""
        now = _ms()
        with self._lock:
            self.models[model].metrics += [(k, float(v), now, int(record["epoch"])) for k, v in record.items()
                                           if k != "epoch" and isinstance(v, (int, float))]
            if now - self._last >= 1000:
                self._flush()

    def _flush(self) -> None:
        from mlflow.entities import Metric

        from pipeline.outbox import write_record

        self._last = _ms()
        for m, r in self.models.items():
            new = r.metrics[self._sent[m]:]
            if not new:
                continue
            write_record(self.box, r)
            if self.client is not None:
                try:
                    self.client.log_batch(self._ids[r.key], metrics=[Metric(*x) for x in new])
                except Exception as exc:
                    self._offline(exc)
            self._sent[m] = len(r.metrics)

    def finish(self, tags: Mapping[str, Mapping[str, str]]) -> None:
        """The models are saved: add each one's ``tags`` (weights_sha256, best_epoch...)."""
        for m, t in tags.items():
            self.models[m].tags.update(t)

    def __exit__(self, exc_type, exc, tb) -> bool:
        from pipeline.outbox import mark_sent, send, write_record

        status = ("FINISHED" if exc is None else
                  "KILLED" if isinstance(exc, (KeyboardInterrupt, Interrupted)) else "FAILED")
        with self._lock:
            end = _ms()
            for r in self._records():
                r.status, r.end_time = status, end
                write_record(self.box, r)
            if self.client is not None:
                try:
                    for r in self.models.values():
                        send(self.client, self.exp_id, r, parent_run_id=self._ids[self.key])
                        mark_sent(self.box, r)
                except Exception as err:
                    self._offline(err)
            try:
                import mlflow

                if self.client is not None and mlflow.active_run() is not None:
                    mlflow.end_run(status)
                    mark_sent(self.box, self.stage)
            except Exception as err:
                self._offline(err)
        return False
