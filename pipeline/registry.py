"""Every candidate as an MLflow model, and the policy's pick in the Model Registry.

Each candidate (``<model>`` or ``<model>+<rule>``) is an MLflow 3 ``LoggedModel``: a
:mod:`pipeline.serving` bundle logged as a model from code (:mod:`pipeline.mlflow_model`), with
the ``pipeline`` package in ``code_paths``, explicit pip requirements, a signature on the raw
input columns and an input example. A trained model is logged into the run its training stage
made (found again by the sha256 of its weights and the data digest), a ``<model>+<rule>`` into a
child run of that one. Logging a model neither copies a run's metrics into it nor changes the
run's times (an evaluation with other metrics adds a second model to the same run, each with its
own). Its metrics are linked to the model and to the dataset they were computed on:
:func:`datasets` names the validation and test splits, held out and reweighted to the second
view's prior, so

    mlflow.search_logged_models(order_by=[{"field_name": "metrics.macro_f1", "ascending": False,
                                           "dataset_name": "validation"}])

ranks the candidates as the policy reads them. A run holds the headline metrics and per-class
recall and precision (:func:`logged_metrics`); the full table is its ``metrics.json`` table
artifact and ``reports/metrics.json``.

Names: runs carry a candidate's own name. MLflow refuses ``.`` in a logged model's name and
``+`` and more in metric keys; only those characters are replaced, by ``_``
(:mod:`pipeline.names`: ``focal_g0.5+cost`` -> model ``focal_g0_5+cost``), and the name as
written is the ``candidate`` tag.

Nothing is logged twice: a candidate's bundle has a content digest (its weights, preprocessing
and rule parameters); a logged model with the same digest and the same metrics is reused, and a
registry version holding that digest is reused rather than registered again.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.artifacts import (
    FIGURES,
    Meta,
    ModelRecord,
    alpha_figure_file,
    confusion_figure_file,
    flatten,
    gamma_figure_file,
)
from pipeline.evaluation import gamma_rows
from pipeline.names import check_distinct, key_part, model_name
from pipeline.outbox import RunRecord, log_batches, outbox_dir, read_records, send, send_pending
from pipeline.provenance import file_digest
from pipeline.strength import curve_table
from pipeline.tracking import (
    _experiment_id,
    _ms,
    _params,
    closing_runs,
    dataset_inputs,
    ensure_store,
    gamma_text,
    let_go,
    repo_root,
    run_tags,
    start_module,
    tracking_uri,
)

log = logging.getLogger(__name__)

MODEL_CODE = Path(__file__).with_name("mlflow_model.py")
PACKAGE = Path(__file__).parent
# what the model needs at load time, pinned to the versions it was logged with
REQUIREMENTS = ("mlflow", "numpy", "pandas", "scikit-learn", "scipy", "skops", "torch", "xgboost-cpu", "pyarrow")
HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1", "macro_precision", "macro_recall", "mcc",
            "geometric_mean", "roc_auc_ovr", "pr_auc", "log_loss", "ece", "expected_cost")
PER_CLASS = ("recall", "precision")
TABLE = "metrics.json"  # each run's full metrics table (mlflow.log_table)
GAMMA_TABLE, ALPHA_TABLE = "gamma_curves.json", "alpha_curves.json"  # the evaluation run's curves, as tables


def datasets(view_key: str) -> dict[str, tuple[str, ...]]:
    """Dataset name -> where its metrics lie in a metrics.json entry (``()``: the entry's top)."""
    return {f"test_{view_key}": (view_key,), "test": (), f"validation_{view_key}": ("val", view_key),
            "validation": ("val",)}


def logged_metrics(entry: Mapping[str, Any], view_key: str) -> dict[str, dict[str, float]]:
    """Dataset -> MLflow metric key -> value: :data:`HEADLINE` and per-class :data:`PER_CLASS`,
    class names through :func:`pipeline.names.key_part`; held-out validation last (a run's table shows a key's
    latest value: there, the one selection reads by default)."""
    out = {}
    for dataset, path in datasets(view_key).items():
        part = entry
        for key in path:
            part = part.get(key, {})
        values = {k: float(part[k]) for k in HEADLINE if isinstance(part.get(k), (int, float))}
        for base in PER_CLASS:
            values.update({f"{base}/{key_part(k.partition('/')[2])}": float(v) for k, v in part.items()
                           if k.startswith(f"{base}/") and isinstance(v, (int, float))})
        if values:
            out[dataset] = values
    return out


def metrics_digest(metrics: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(metrics, sort_keys=True).encode()).hexdigest()


def pip_requirements() -> list[str]:
    """The model's requirements, pinned to this environment's versions (torch without ``+cpu``)."""
    out = []
    for name in REQUIREMENTS:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        out.append(f"{name}=={version.split('+')[0]}")
    return out


def signature(raw_columns: list[str], classes: list[str]):
    """Inputs: the raw columns, typed loosely (``AnyType``: the model coerces and checks each one
    itself from the saved preprocessing, where MLflow would refuse integers for doubles);
    outputs: ``prediction`` (text) and one ``p_<class>`` double per class."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    from pipeline.serving import PREDICTION, probability_column

    return ModelSignature(
        inputs=Schema([ColSpec(AnyType(), c, required=False) for c in raw_columns]),
        outputs=Schema([ColSpec("string", PREDICTION), *(ColSpec("double", probability_column(c)) for c in classes)]),
    )


@dataclass
class Candidate:
    """What one candidate's run and logged model hold."""

    name: str
    bundle: Path  # a pipeline.serving bundle
    digest: str  # the bundle's content digest
    metrics: dict[str, dict[str, float]]  # dataset -> key -> value (logged_metrics)
    table: pd.DataFrame  # every metric of metrics.json, one row per (dataset, metric)
    params: dict[str, str]
    tags: dict[str, str]
    parent: str | None = None  # the trained model of a <model>+<rule> candidate
    weights_digest: str = ""  # a trained model's: sha256 of its checkpoint or description file
    curves: list[dict[str, Any]] = field(default_factory=list)  # per-epoch history (trained models)
    artifacts: list[Path] = field(default_factory=list)


@dataclass(frozen=True)
class Logged:
    run_id: str
    model_id: str
    reused: bool


def _existing(client, exp_id: str, data_digest: str) -> dict[tuple[str, str], Any]:
    """(content digest, metrics digest) -> FINISHED logged model of this data, the earliest."""
    found: dict[tuple[str, str], Any] = {}
    token = None
    while True:
        page = client.search_logged_models([exp_id], filter_string=f"tags.data_digest = '{data_digest}'",
                                           max_results=50, page_token=token)
        for m in page:
            key = (m.tags.get("content_digest"), m.tags.get("metrics_digest"))
            if str(m.status).endswith("READY") and (key not in found or m.creation_timestamp < found[key].creation_timestamp):
                found[key] = m
        token = page.token
        if not token:
            return found


def _earliest_finished(client, exp_id: str, tags: Mapping[str, str]):
    """The earliest FINISHED run carrying every one of ``tags``, or None."""
    where = " AND ".join([*(f"tags.{k} = '{v}'" for k, v in tags.items()), "attributes.status = 'FINISHED'"])
    runs = client.search_runs([exp_id], filter_string=where, order_by=["attributes.start_time ASC"], max_results=1)
    return runs[0] if runs else None


def training_run(client, exp_id: str, weights_digest: str, data_digest: str):
    """The earliest FINISHED run that trained these weights on this data (deterministic training
    makes repeats share a digest), or None."""
    return _earliest_finished(client, exp_id, {"weights_sha256": weights_digest, "data_digest": data_digest})


def _restore(client, exp_id: str, c: Candidate, tags: dict[str, str], box: Path | None,
             open_runs: list[str]) -> str:
    """A training run absent from the store (a fresh clone with DVC's cache, another store): sent
    again from the outbox when its record is there, else recreated from ``training.json``,
    tagged ``restored`` (its times are those of now, its curves the recorded ones)."""
    if box is not None:
        for record in read_records(box, sent=True):
            if record.tags.get("weights_sha256") == c.weights_digest and record.tags.get("data_digest") == tags["data_digest"]:
                return send(client, exp_id, record, open_runs=open_runs)
    now = _ms()
    record = RunRecord(
        f"restored/{tags['data_digest']}/{c.weights_digest}", client.get_experiment(exp_id).name, c.name,
        tags={**tags, "restored": "true", "role": "model", "weights_sha256": c.weights_digest}, params=c.params,
        metrics=[(k, float(v), now, int(h["epoch"])) for h in c.curves for k, v in h.items()
                 if k != "epoch" and isinstance(v, (int, float))],
        start_time=now, end_time=now, status="FINISHED")
    log.info("%s: its training run is not in the store: recreated from training.json, tagged restored", c.name)
    return send(client, exp_id, record, open_runs=open_runs)


def log_candidates(client, exp_id: str, candidates: list[Candidate], *, data_digest: str,
                   dataset_digests: Mapping[str, str],
                   input_example: pd.DataFrame | None, raw_columns: list[str], classes: list[str],
                   run_tags: dict[str, str], open_runs: list[str], box: Path | None = None,
                   helper: subprocess.Popen | None = None) -> dict[str, Logged]:
    """Log each candidate as a model, unless the same model (content and metrics) is already in
    the experiment.

    A trained model is logged into its training run (:func:`training_run`, restored when
    absent); a ``<model>+<rule>`` into a run of its own, a child of its model's run, found again
    by its content digest or created. Logging a model changes neither the run's status nor its
    times. Runs being written are kept in ``open_runs`` (the caller marks them FAILED on an error).

    With a ``helper`` (:func:`start_helper`), about half the families with a model not yet in the
    store (a trained model with its ``<model>+<rule>``) are logged by it while this process logs
    the rest: the same models, runs and metrics, on two cores. The helper marks its own
    unfinished runs. When every model is there already, it is given nothing.
    """
    check_distinct([c.name for c in candidates], model_name, "candidates")
    kw = dict(data_digest=data_digest, dataset_digests=dict(dataset_digests), input_example=input_example,
              raw_columns=raw_columns, classes=classes, run_tags=run_tags, box=box)
    existing = _existing(client, exp_id, data_digest)
    theirs = _halves(_to_log(candidates, existing))[0] if helper is not None else []
    if not theirs:
        return _log_part(client, exp_id, candidates, open_runs=open_runs, existing=existing, **kw)
    mine = [c for c in candidates if c.name not in {t.name for t in theirs}]  # logged already or not
    if not _send_job(helper, {"uri": client.tracking_uri, "exp_id": exp_id, "candidates": theirs, "kw": kw}):
        log.warning("the helper process logging candidate models ended early (status %s): this process logs "
                    "them all", helper.wait())
        return _log_part(client, exp_id, candidates, open_runs=open_runs, existing=existing, **kw)
    try:
        out = _log_part(client, exp_id, mine, open_runs=open_runs, existing=existing, **kw)
        out.update(_helper_result(helper, len(theirs)))
    except BaseException as exc:  # while the bundles are still there: see stop_helper
        let_go(exc)  # no read lock of ours left to keep the helper from marking its runs
        stop_helper(helper, interrupted=not isinstance(exc, Exception))
        raise
    log.debug("MLflow: %d of the candidates logged by the helper process, beside this one", len(theirs))
    return {c.name: out[c.name] for c in candidates}


def _to_log(candidates: list[Candidate], existing: Mapping[tuple[str, str], Any]) -> list[Candidate]:
    """The candidates of every family with a model not yet in the store (:func:`_existing`; a
    family's models go together)."""
    new = {c.parent or c.name for c in candidates if (c.digest, metrics_digest(c.metrics)) not in existing}
    return [c for c in candidates if (c.parent or c.name) in new]


def _halves(candidates: list[Candidate]) -> tuple[list[Candidate], list[Candidate]]:
    """Two near-equal parts of whole families (a trained model and its ``<model>+<rule>``, which
    is logged into a child of the model's run): the helper's and this process's."""
    families: dict[str, list[Candidate]] = {}
    for c in candidates:
        families.setdefault(c.parent or c.name, []).append(c)
    parts: tuple[list[Candidate], list[Candidate]] = ([], [])
    for family in sorted(families.values(), key=len, reverse=True):
        min(parts, key=len).extend(family)
    return parts if parts[1] else ([], parts[0])


def _log_part(client, exp_id: str, candidates: list[Candidate], *, data_digest: str,
              dataset_digests: Mapping[str, str], input_example: pd.DataFrame | None, raw_columns: list[str],
              classes: list[str], run_tags: dict[str, str], open_runs: list[str],
              box: Path | None, existing: Mapping[tuple[str, str], Any] | None = None) -> dict[str, Logged]:
    """:func:`log_candidates` in this process (``existing``: :func:`_existing`, found again when not given)."""
    import mlflow
    from mlflow.entities import Metric, Param
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    existing = _existing(client, exp_id, data_digest) if existing is None else existing
    sig = signature(raw_columns, classes)
    reqs = pip_requirements()
    out: dict[str, Logged] = {}
    for c in candidates:
        mdigest = metrics_digest(c.metrics)
        found = existing.get((c.digest, mdigest))
        if found is not None:
            out[c.name] = Logged(found.source_run_id, found.model_id, True)
            continue
        tags = {**run_tags, **c.tags, "candidate": c.name, "data_digest": data_digest}
        created = False
        if c.parent is None:
            run = training_run(client, exp_id, c.weights_digest, data_digest)
            run_id = run.info.run_id if run else _restore(client, exp_id, c, tags, box, open_runs)
        else:
            run = _earliest_finished(client, exp_id, {"content_digest": c.digest, "data_digest": data_digest,
                                                      "role": "decision"})
            if run is None:
                run = client.create_run(exp_id, run_name=c.name, tags={
                    **tags, "content_digest": c.digest, MLFLOW_PARENT_RUN_ID: out[c.parent].run_id})
                created = True
                open_runs.append(run.info.run_id)
                client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in c.params.items()])
            run_id = run.info.run_id
        model = mlflow.initialize_logged_model(
            name=model_name(c.name), source_run_id=run_id, experiment_id=exp_id,
            tags={"candidate": c.name, "content_digest": c.digest, "metrics_digest": mdigest,
                  "data_digest": data_digest, **c.tags,
                  **({"execution": run_tags["execution"]} if "execution" in run_tags else {})})
        info = mlflow.pyfunc.log_model(
            name=model_name(c.name), python_model=str(MODEL_CODE), artifacts={"bundle": str(c.bundle)},
            code_paths=[str(PACKAGE)], pip_requirements=reqs, signature=sig, input_example=input_example,
            model_id=model.model_id)
        now = _ms()
        log_batches(client, run_id, metrics=[
            Metric(k, v, now + i, 0, model_id=info.model_id, dataset_name=dataset,
                   dataset_digest=dataset_digests[dataset.partition("_")[0]])
            for i, (dataset, values) in enumerate(c.metrics.items()) for k, v in values.items()])
        client.log_table(run_id, data=c.table, artifact_file=TABLE)
        for path in c.artifacts:
            client.log_artifact(run_id, str(path))
        if created:
            client.set_terminated(run_id, "FINISHED")
            open_runs.remove(run_id)
        out[c.name] = Logged(run_id, info.model_id, False)
    return out


def start_helper(environ: Mapping[str, str] = os.environ) -> subprocess.Popen | None:
    """Start a process that logs part of the candidates (:func:`log_candidates`) and return it,
    or None where it would not pay: one usable core, or a `dvc queue` worker
    (:func:`pipeline.config.usable_cores`).

    evaluate starts it first, so that its imports (MLflow, its store, this package: about 4 s)
    happen beside the evaluation's computation; it then waits on its stdin for its candidates,
    and exits at once when stdin closes without any."""
    from pipeline.config import usable_cores

    if usable_cores() < 2:
        return None
    return start_module("pipeline.registry", environ=environ, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                        env={"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR":
                             environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")})


def stop_helper(helper: subprocess.Popen, interrupted: bool) -> None:
    """Wait for ``helper`` to end: after an error it finishes the candidates it has (its models are
    whole, and a re-run reuses them), after Ctrl-C or SIGTERM it is stopped (its unfinished runs
    end KILLED), and one never given candidates exits as its stdin closes."""
    if helper.returncode is not None:
        return
    if interrupted:
        helper.send_signal(signal.SIGTERM)
    _close_stdin(helper)
    helper.stdout.read()
    helper.wait()


class candidate_helper:
    """:func:`start_helper` around a stage's work (a context manager giving the helper or None),
    which never leaves the helper behind (:func:`stop_helper`)."""

    def __init__(self, enabled: bool = True, environ: Mapping[str, str] = os.environ):
        self.helper = start_helper(environ) if enabled else None

    def __enter__(self) -> subprocess.Popen | None:
        return self.helper

    def __exit__(self, kind, exc, tb) -> None:
        if self.helper is not None:
            stop_helper(self.helper, interrupted=kind is not None and not issubclass(kind, Exception))


def _send_job(helper: subprocess.Popen, job: dict[str, Any]) -> bool:
    """Give the helper its job; False when it is no longer there to take it."""
    try:
        helper.stdin.write(pickle.dumps(job))
        helper.stdin.close()
    except BrokenPipeError:
        _close_stdin(helper)
        return False
    return True


def _close_stdin(helper: subprocess.Popen) -> None:
    try:
        helper.stdin.close()  # closed even when its flush fails
    except BrokenPipeError:
        pass


def _helper_result(helper: subprocess.Popen, n: int) -> dict[str, Logged]:
    """What the helper logged; its failure raised here as this process's (a :class:`PipelineError`
    stays one, anything else, a lost store say, is a RuntimeError with the helper's first line)."""
    from pipeline import PipelineError

    data = helper.stdout.read()
    status = helper.wait()
    if not data:
        raise RuntimeError(f"the process logging {n} of the candidates as MLflow models ended with status {status}")
    result = pickle.loads(data)
    if "error" in result:
        raise (PipelineError if result["pipeline_error"] else RuntimeError)(result["error"])
    return {name: Logged(*v) for name, v in result["logged"].items()}


def _helper_main() -> None:
    """``python -m pipeline.registry``: the helper of :func:`start_helper`. Its one job (pickled
    on stdin: the tracking URI, the experiment and its candidates) is logged as
    :func:`log_candidates` logs; the result (name -> run id, model id, reused) or the error's
    first line goes back pickled on stdout, which nothing else writes to."""
    from pipeline import Interrupted, PipelineError, exit_interrupted
    from pipeline.tracking import error_line

    result_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to stderr
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    def interrupted(signum, frame):  # once: a second signal (Ctrl-C, then the stage's SIGTERM) waits
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Interrupted(signum)

    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    try:
        import mlflow

        try:  # open the store now, beside the computation (safely: ensure_store); the job may name another
            ensure_store(tracking_uri())
            mlflow.MlflowClient(tracking_uri=tracking_uri()).search_experiments(max_results=1)
        except Exception:  # said when the job uses the store, if it is still so
            pass
        data = sys.stdin.buffer.read()
        if not data:
            return
        job = pickle.loads(data)
        mlflow.set_tracking_uri(job["uri"])
        client = mlflow.MlflowClient(tracking_uri=job["uri"])
        try:
            with closing_runs(client) as open_runs:
                logged = _log_part(client, job["exp_id"], job["candidates"], open_runs=open_runs, **job["kw"])
            result = {"logged": {name: (v.run_id, v.model_id, v.reused) for name, v in logged.items()}}
        except Exception as exc:
            log.debug("logging candidates failed", exc_info=True)
            result = {"error": error_line(exc), "pipeline_error": isinstance(exc, PipelineError)}
        result_out.write(pickle.dumps(result))
        result_out.flush()
        gc.freeze()  # exit without the collector's last passes (stages._cli.run)
    except Interrupted as exc:  # its runs are marked KILLED; the stage says so
        exit_interrupted(exc.signum)


def decision_record(audit: Mapping[str, Any], validation_score: float | None, candidate: str, *, commit: str,
                    data_digest: str, lock_hashes: Mapping[str, str]) -> tuple[dict[str, str], str]:
    """The registry version's tags and description: the policy, the pick's validation score and
    P(best), its test estimate with interval, the paired difference against the reference,
    the git commit, ``dvc.lock``'s stage hashes and the data digest."""
    policy, est, ref = audit["policy"], audit.get("estimate") or {}, audit.get("vs_reference")
    versus = "none" if not ref else (f"{ref['metric']} {ref['value']:+.4f} [{ref['low']:+.4f}, {ref['high']:+.4f}]: "
                                     f"{ref['words']}" if ref.get("low") is not None else ref["words"])
    tags = {
        "policy": policy["summary"],
        "pick": str(candidate),
        "validation_score": _num(validation_score),
        "p_best": _num(policy.get("p_best")),
        "test_estimate": _num(est.get("test")),
        "test_interval": f"[{_num(est.get('low'))}, {_num(est.get('high'))}]",
        "difference_vs_reference": versus,
        "git_commit": commit,
        "data_digest": data_digest,
        **{f"dvc_lock/{stage.replace('@', ':')}": h for stage, h in lock_hashes.items()},  # MLflow refuses @
    }
    head = (f"Picked by the policy on the validation split: {policy['summary']}." if policy["pick"] == candidate else
            f"Not promoted: no candidate meets the policy's constraints on validation; {candidate} comes closest "
            f"(violates {', '.join(policy['violations'].get(candidate, [])) or 'none'}).")
    description = "\n".join([
        head,
        f"Validation {policy.get('metric', '')}: {tags['validation_score']}; P(best) {tags['p_best']}.",
        f"Test estimate (unbiased; never used to choose): {tags['test_estimate']} {tags['test_interval']}.",
        f"Against the reference: {tags['difference_vs_reference']}.",
        f"Git commit {commit}; data digest {data_digest}.",
    ])
    return tags, description


def _num(x) -> str:
    return "none" if x is None else f"{float(x):.4f}"


def register(client, name: str, logged: Logged, *, content_digest: str, tags: dict[str, str], description: str,
             alias: str | None, experiment_name: str | None) -> tuple[str, bool]:
    """Register ``logged`` as a version of ``name`` (once per content digest) and move ``alias``
    to it; returns (version, created). ``experiment_name`` (a ``dvc exp run``) tags the version."""
    same = [v for v in client.search_model_versions(f"name = '{name}'")
            if v.tags.get("content_digest") == content_digest]
    created = not same
    if same:
        version = min(same, key=lambda v: int(v.version))
    else:  # register_model links the logged model and the version both ways
        import mlflow

        version = mlflow.register_model(f"models:/{logged.model_id}", name,  # creates the model the first time
                                        tags={**tags, "content_digest": content_digest})
        client.update_model_version(name, version.version, description=description)
        if not client.get_registered_model(name).description:
            client.update_registered_model(name, description="Picked by the selection policy on validation; "
                                           "each version carries its decision record.")
    if experiment_name:
        client.set_model_version_tag(name, version.version, "dvc_exp_name", experiment_name)
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return str(version.version), created


# --- an evaluation, logged -------------------------------------------------------------------

def _candidates(records: list[ModelRecord], ev, meta: Meta, bundles: Mapping[str, tuple[Path, str]],
                figures_dir: Path) -> list:
    """What each candidate's run and logged model hold (:class:`Candidate`)."""
    out = []
    for rec in records:
        entry = ev.metrics[rec.name]
        table = pd.DataFrame([
            {"dataset": ds, "metric": k, "value": v}
            for ds, path in datasets(ev.view.key).items()
            for k, v in flatten(_part(entry, path)).items()
            if isinstance(v, (int, float)) and not k.startswith(("val/", f"{ev.view.key}/"))
        ])
        params = {"model": rec.model, "loss": rec.loss, "gamma": gamma_text(rec.gamma), "alpha": gamma_text(rec.alpha),
                  "seed": rec.seed, "kind": rec.kind,
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


def log_evaluation(experiment: str, records: list[ModelRecord], ev, meta: Meta, cfg, *, figures: Path,
                   reports: list[Path], bundles: Mapping[str, tuple[Path, str]], raw_columns: list[str],
                   input_example: pd.DataFrame | None, registered_model: str,
                   lock_hashes: Mapping[str, str] | None = None, splits: Mapping[str, Path] | None = None,
                   environ: Mapping[str, str] = os.environ, helper: subprocess.Popen | None = None) -> dict[str, Any]:
    """Log an evaluation (:class:`pipeline.evaluation.Evaluation` ``ev`` of ``records``, every
    candidate, under :class:`pipeline.config.EvaluateConfig` ``cfg``).

    Every candidate becomes an MLflow model (:func:`log_candidates`, ``bundles``: name -> (bundle
    directory, content digest)), in its training run or a decision run; one evaluation run holds ``reports``,
    the cross-model figures, the leaderboard and the pick's headline metrics; the pick is
    registered as a version of ``registered_model`` with its decision record. In a plain run the
    alias ``champion`` moves to it (``challenger`` to the closest candidate when none meets the
    constraints); under ``dvc exp run`` (``DVC_EXP_NAME``) no alias moves. Returns where it all
    went. Runs left unfinished by an error are marked FAILED (KILLED when interrupted). A
    ``helper`` (:func:`start_helper`) logs about half the candidates beside this process.
    """
    import mlflow
    from mlflow.entities import Metric, Param

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per model otherwise
    uri = tracking_uri(environ)
    ensure_store(uri)
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
        digests = {"validation": meta["digest"][:12], "test": meta["digest"][:12]}
        if splits:  # the splits the metrics were computed on, as the evaluation run's inputs
            inputs, digests = dataset_inputs(splits)
            client.log_inputs(parent_id, datasets=inputs)
        started = time.perf_counter()
        log.info("MLflow: logging %d candidates as models in %s ...", len(records), uri)
        logged = log_candidates(client, exp_id, _candidates(records, ev, meta, bundles, figures),
                                data_digest=meta["digest"], dataset_digests=digests,
                                input_example=input_example, raw_columns=raw_columns, classes=meta["classes"],
                                run_tags={**tags, "execution": parent_id}, open_runs=open_runs,
                                box=outbox_dir(repo_root(environ), environ), helper=helper)
        new = sum(not v.reused for v in logged.values())
        log.info("MLflow: %d candidate models logged, %d already there, in %.1fs", new, len(logged) - new,
                 time.perf_counter() - started)

        chosen = policy["pick"] or policy.get("closest")
        metrics = []
        if chosen:
            now = _ms()
            for i, (ds, values) in enumerate(logged_metrics(ev.metrics[chosen], ev.view.key).items()):
                metrics += [Metric(f"{ds}/{k}", v, now + i, 0) for k, v in values.items() if "/" not in k]
        leaderboard = pd.DataFrame([{"model": row["model"], **row["values"], **flatten({"rank": row["ranks"]})}
                                    for row in ev.audit["leaderboard"]])
        client.log_batch(parent_id, metrics=metrics, params=[Param(k, v) for k, v in _params({
            "data": meta["params"], "evaluate": {"prior": cfg.prior, "view_key": ev.view.key, "select": policy["summary"]},
            "n_candidates": len(records), "registered_model": registered_model}).items()])
        shared = [figures / FIGURES[k] for k in ("ranks", "agreement", "focal_shape")]
        for path in [*reports, *(f for f in shared if f.is_file()), *(figures / gamma_figure_file(loss) for loss in ev.gammas),
                     *(figures / alpha_figure_file(f) for f in ev.audit.get("weight_strength") or {})]:
            client.log_artifact(parent_id, str(path))
        client.log_table(parent_id, data=leaderboard, artifact_file="leaderboard.json")
        # the gamma and alpha curves: their figures (above) and tables with gamma or alpha as a column
        if ev.gammas:
            client.log_table(parent_id, data=pd.DataFrame(gamma_rows(ev)).rename(columns={"name": "loss"}),
                             artifact_file=GAMMA_TABLE)
        if ev.audit.get("weight_strength"):
            client.log_table(parent_id, data=pd.DataFrame(curve_table(ev.audit["weight_strength"])),
                             artifact_file=ALPHA_TABLE)

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


if __name__ == "__main__":
    from pipeline.registry import _helper_main as main  # the module's classes, not __main__'s

    main()
