"""A candidate as one self-contained bundle that predicts on raw rows.

A bundle is a directory holding everything that turns a raw row into a decision, and nothing
that runs code when read:

- ``candidate.json``: format and version, the candidate's name, its trained model and rule, the
  model's kind, the class names in output order, the rule's fitted parameters file
  (``outputs/decisions/<model>+<rule>.json``: tau, biases, cost matrix, and the ``context`` that
  applies it), and the model's calibration (``outputs/decisions/calibration/<model>.json``: the
  vector or temperature scaling that makes its probabilities the ``p_<class>`` a candidate returns);
- ``preprocessing.json``: the fitted preprocessing (:mod:`pipeline.data.preprocessing`);
- ``model.pt`` (an MLP checkpoint, read with ``weights_only=True``) or ``model.json`` (a
  baseline's own description: a prior, logistic-regression coefficients; for XGBoost its best
  iteration, the booster itself in ``booster.ubj``, XGBoost's binary format, which loads 10-20x
  faster than its JSON: version 1 bundles held it in ``model.json``, and still load);
- ``forest.skops``: the ``anomaly`` rule's isolation forest (skops, never pickle).

:func:`write_bundle` makes one from the pipeline's outputs and returns its content digest (the
sha256 of its files, by name); :class:`Candidate` loads one and predicts. The MLflow model of a
candidate (:mod:`pipeline.tracking.mlflow_model`) is a bundle plus this code.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipeline import PipelineError
from pipeline.artifacts import probability_column
from pipeline.io import dumps, read_json, write_json
from pipeline.data.preprocessing import Preprocessing, load_preprocessing

if TYPE_CHECKING:
    from pipeline.artifacts import ModelRecord

BUNDLE_FORMAT = "imbalance-pipeline/candidate"
BUNDLE_VERSION = 3  # 3: calibrated probabilities; 2: an XGBoost booster in booster.ubj (1: inside model.json)
READ_VERSIONS = (1, 2, 3)
CANDIDATE_FILE = "candidate.json"
PREDICTION = "prediction"  # the decided class name; then one p_<class> column per class


def bundle_digest(bundle: str | Path) -> str:
    """sha256 over the bundle's files (names and bytes, in name order): what it holds."""
    h = hashlib.sha256()
    for path in sorted(p for p in Path(bundle).rglob("*") if p.is_file()):
        h.update(path.relative_to(bundle).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def write_bundle(
    out: str | Path,
    *,
    name: str,
    model: str,
    kind: str,
    classes: list[str],
    model_file: Path | None,
    preprocessing_file: Path,
    decision: dict[str, Any] | None = None,
    decisions_dir: Path | None = None,
    calibration: dict[str, Any] | None = None,
) -> str:
    """Write candidate ``name``'s bundle into the new directory ``out``; returns its digest.

    ``kind`` is ``mlp`` or a baseline's name; ``model_file`` its checkpoint or description;
    ``decision`` the rule's fitted parameters file's contents (None: the model's argmax), whose
    forest (anomaly) lies in ``decisions_dir``; ``calibration`` the model's
    (:func:`pipeline.decision.rules.fit_calibration`; None: its probabilities as they are).
    """
    out = Path(out)
    out.mkdir(parents=True)
    if model_file is None:
        raise PipelineError(f"{name}: no model file to bundle (re-run the pipeline: dvc repro)")
    if kind == "xgboost":
        described, booster = _split_booster(Path(model_file), *_stamp(Path(model_file)))
        (out / "model.json").write_bytes(described)
        (out / "booster.ubj").write_bytes(booster)
    else:
        shutil.copyfile(model_file, out / ("model.pt" if kind == "mlp" else "model.json"))
    shutil.copyfile(preprocessing_file, out / "preprocessing.json")
    forest = (decision or {}).get("context", {}).get("forest")
    if forest:
        shutil.copyfile(Path(decisions_dir) / forest, out / "forest.skops")
    write_json(
        out / CANDIDATE_FILE,
        {
            "format": BUNDLE_FORMAT,
            "version": BUNDLE_VERSION,
            "name": name,
            "model": model,
            "rule": None if decision is None else decision["rule"],
            "kind": kind,
            "classes": list(classes),
            "decision": decision,
            "calibration": calibration,
        },
    )
    return bundle_digest(out)


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=4)
def _split_booster(path: Path, mtime_ns: int, size: int) -> tuple[bytes, bytes]:
    """The baselines stage's XGBoost description as ``(model.json without the booster, the booster
    in UBJSON)``: converted once per file (keyed by its time and size), not per candidate."""
    saved = read_json(path, what="baseline model")
    booster = _booster(json.dumps(saved.pop("booster")).encode())
    return dumps(saved).encode(), bytes(booster.save_raw("ubj"))


def _booster(raw: bytes):
    """An XGBoost booster from its saved bytes (its JSON or UBJSON format)."""
    import xgboost

    booster = xgboost.Booster()
    booster.load_model(bytearray(raw))
    return booster


def write_candidate_bundle(
    out: str | Path, rec: ModelRecord, *, classes: list[str], preprocessing_file: Path, decisions_dir: Path
) -> str:
    """:func:`write_bundle` of the candidate ``rec`` evaluate reads (a trained model or a rule on one)."""
    return write_bundle(
        out,
        name=rec.name,
        model=rec.model,
        kind="mlp" if rec.kind == "mlp" else rec.loss,
        classes=classes,
        model_file=rec.weights,
        preprocessing_file=preprocessing_file,
        decision=rec.decision,
        decisions_dir=decisions_dir,
        calibration=rec.calibration,
    )


@dataclass
class Candidate:
    """A loaded bundle: ``predict`` on raw rows, ``decide`` on prepared features."""

    name: str
    classes: list[str]
    kind: str
    preprocessing: Preprocessing
    decision: dict[str, Any] | None
    _proba: Any  # (N, F) float32 features -> (N, C) float64 probabilities
    _forest: Any = None
    calibration: dict[str, Any] | None = None

    @classmethod
    def load(cls, bundle: str | Path) -> Candidate:
        bundle = Path(bundle)
        spec = read_json(bundle / CANDIDATE_FILE, what="candidate bundle")
        if spec.get("format") != BUNDLE_FORMAT or spec.get("version") not in READ_VERSIONS:
            raise PipelineError(
                f"{bundle}: not a candidate bundle of this pipeline (versions "
                f"{', '.join(map(str, READ_VERSIONS))} are read)"
            )
        forest = None
        if (bundle / "forest.skops").is_file():
            from pipeline.decision.rules import load_forest

            forest = load_forest(bundle / "forest.skops")
        return cls(
            spec["name"],
            spec["classes"],
            spec["kind"],
            load_preprocessing(bundle / "preprocessing.json"),
            spec["decision"],
            _base_proba(spec["kind"], bundle, len(spec["classes"])),
            forest,
            spec.get("calibration"),
        )

    def decide(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(proba (N, C), y_pred (N,))`` of prepared features ``X`` (N, F), as the pipeline's
        prediction files hold them: the rule decides on the model's probabilities, and the
        probabilities returned are the model's calibrated ones (those of a rule with a posterior of
        its own, as the cost rule has: :data:`pipeline.rule_specs.RULE_SPECS`)."""
        from pipeline.decision.rules import calibrate

        proba = self._proba(np.asarray(X, dtype=np.float32))
        shipped = proba if self.calibration is None else calibrate(proba, self.calibration)
        if self.decision is None:
            return shipped, proba.argmax(axis=1)
        from pipeline.decision.candidates import rule_context
        from pipeline.decision.rules import anomaly_scores, apply_rule
        from pipeline.rule_specs import rule_spec

        scores = None if self._forest is None else anomaly_scores(self._forest, X)
        q, y_pred = apply_rule(
            self.decision["rule"], self.decision["params"], proba, rule_context(self.decision, scores)
        )
        return (q if rule_spec(self.decision["rule"]).posterior else shipped), y_pred

    def predict(self, frame: pd.DataFrame, *, strict: bool = False) -> pd.DataFrame:
        """The decided class name (``prediction``) and one ``p_<class>`` column per class for
        each raw row of ``frame`` (index kept); ``strict``: see
        :meth:`pipeline.data.preprocessing.Preprocessing.transform`."""
        proba, y_pred = self.decide(self.preprocessing.transform(frame, strict=strict))
        columns = {probability_column(c): proba[:, j] for j, c in enumerate(self.classes)}
        decided = np.asarray(self.classes, dtype=object)[y_pred]
        return pd.DataFrame({PREDICTION: decided, **columns}, index=frame.index)


def _base_proba(kind: str, bundle: Path, n_classes: int):
    """The trained model's ``features -> probabilities``, computed as the train and baselines
    stages computed their prediction files."""
    if kind == "mlp":
        import torch

        from pipeline.training.checkpoint import load_model

        net = load_model(bundle / "model.pt")

        def mlp(X):
            with torch.no_grad():
                return torch.softmax(net(torch.from_numpy(X)).double(), dim=1).numpy()

        return mlp
    saved = read_json(bundle / "model.json", what="baseline model")
    if kind == "majority":
        prior = np.asarray(saved["prior"], dtype=np.float64)
        return lambda X: np.tile(prior, (len(X), 1))
    if kind == "logreg_balanced":
        from pipeline.decision.rules import softmax

        coef, intercept = np.asarray(saved["coef"]), np.asarray(saved["intercept"])
        return lambda X: softmax(X.astype(np.float64) @ coef.T + intercept)
    if kind == "xgboost":
        import xgboost

        booster = _booster(
            json.dumps(saved["booster"]).encode()
            if "booster" in saved  # a version-1 bundle
            else (bundle / "booster.ubj").read_bytes()
        )
        rounds = int(saved["best_iteration"]) + 1

        def boosted(X):
            p = booster.predict(xgboost.DMatrix(X), iteration_range=(0, rounds)).astype(np.float64)
            p = p.reshape(len(X), n_classes)
            return p / p.sum(axis=1, keepdims=True)

        return boosted
    raise PipelineError(f"{bundle}: unknown model kind {kind!r}")
