"""Reference models trained and evaluated by the same pipeline as the MLPs.

- ``majority``: predicts the most frequent training class, with the training prior as its
  probabilities (scikit-learn's ``DummyClassifier(strategy="prior")``). The accuracy paradox in
  one row: its accuracy is the majority's share, its macro-F1 near zero.
- ``logreg_balanced``: multinomial logistic regression with ``class_weight="balanced"``.
- ``xgboost``: gradient-boosted trees (XGBoost, ``hist``) with per-sample weights taken from the
  weights stage's class weights, early-stopped on the log-loss of the early-stopping slice of
  the training split (the MLPs' slice). None of them reads the validation split.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from pipeline import PipelineError
from pipeline.config import BASELINES, BaselinesConfig


@dataclass
class BaselineResult:
    """A fitted baseline: its probabilities, a JSON-able description, and its curves."""

    name: str
    stop_macro_f1: float  # macro-F1 on the early-stopping slice (for the log; nothing acts on it)
    saved: dict[str, Any]  # written as <name>.json
    predict_proba: Any  # (N, F) -> (N, C)
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0


def _macro_f1(y, proba, n_classes) -> float:
    return float(f1_score(y, proba.argmax(1), average="macro", labels=range(n_classes), zero_division=0))


def fit_baseline(
    name: str,
    data: dict[str, tuple[np.ndarray, np.ndarray]],
    n_classes: int,
    class_weight: np.ndarray,
    cfg: BaselinesConfig,
) -> BaselineResult:
    """Fit baseline ``name`` on ``data["train"]``; ``xgboost`` stops early on ``data["stop"]``.

    ``class_weight`` (C,) are the weights stage's per-class weights (used by ``xgboost``).
    """
    X_tr, y_tr = data["train"]
    X_st, y_st = data["stop"]
    if name == "majority":
        prior = np.bincount(y_tr, minlength=n_classes) / len(y_tr)

        def proba(X, prior=prior):
            return np.tile(prior, (len(X), 1))

        return BaselineResult(
            name, _macro_f1(y_st, proba(X_st), n_classes), {"kind": name, "prior": prior.tolist()}, proba
        )
    if name == "logreg_balanced":
        model = LogisticRegression(class_weight="balanced", max_iter=5000, random_state=cfg.seed)
        model.fit(X_tr, y_tr)
        if list(model.classes_) != list(range(n_classes)):
            raise PipelineError("logreg_balanced: every class needs a training sample")
        saved = {
            "kind": name,
            "coef": model.coef_.tolist(),
            "intercept": model.intercept_.tolist(),
            "n_iter": int(model.n_iter_.max()),
        }
        return BaselineResult(name, _macro_f1(y_st, model.predict_proba(X_st), n_classes), saved, model.predict_proba)
    if name == "xgboost":
        from xgboost import XGBClassifier

        model = XGBClassifier(
            n_estimators=cfg.xgb_n_estimators,
            max_depth=cfg.xgb_max_depth,
            learning_rate=cfg.xgb_learning_rate,
            tree_method="hist",
            n_jobs=2,
            random_state=cfg.seed,
            early_stopping_rounds=cfg.xgb_early_stopping,
            eval_metric="mlogloss",
        )
        model.fit(X_tr, y_tr, sample_weight=np.asarray(class_weight)[y_tr], eval_set=[(X_st, y_st)], verbose=False)
        curve = model.evals_result()["validation_0"]["mlogloss"]
        history = [{"epoch": i + 1, "stop_log_loss": float(v)} for i, v in enumerate(curve)]
        with tempfile.TemporaryDirectory() as tmp:  # XGBoost's own JSON model format
            path = Path(tmp) / "model.json"
            model.save_model(path)
            saved = {"kind": name, "best_iteration": int(model.best_iteration), "booster": json.loads(path.read_text())}
        return BaselineResult(
            name,
            _macro_f1(y_st, model.predict_proba(X_st), n_classes),
            saved,
            model.predict_proba,
            history,
            int(model.best_iteration) + 1,
        )
    raise PipelineError(f"baselines.models must be one of {', '.join(BASELINES)}; got {name!r}")
