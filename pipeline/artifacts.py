"""Every file the stages hand each other: where it lies, what it holds, how to read and write it.

The stages agree on these layouts through this module only:

- ``<plans>/<loss>.json``: a :class:`LossPlan`;
- ``<models>/<group>/training.json``: a :class:`TrainingSummary`, group being a loss or
  ``baselines``; ``<models>/<loss>/<model>.pt``: a checkpoint (:mod:`pipeline.training.checkpoint`:
  ``save_checkpoint``, ``load_model``); ``<models>/baselines/<name>.json``: a baseline's own
  description;
- ``<predictions>/<group>/<model>.parquet``: ``y_true``, ``y_pred`` (class names) and one
  ``p_<class>`` column per class (:func:`predictions_frame`, :func:`read_predictions`);
- ``meta.json`` (:class:`Meta`), ``class_weights.json`` (:class:`ClassWeights`),
  ``metrics.json`` (:data:`MetricsFile`), ``audit.json`` (:class:`Audit`) and
  ``mlflow_runs.json`` (:class:`RunsRecord`).

Nothing here imports torch (the checkpoints are :mod:`pipeline.training.checkpoint`'s), so the stages
that never touch weights do not pay for it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import numpy as np
import pandas as pd

from pipeline import PipelineError
from pipeline.io import read_json, read_parquet

TRAINING_SUMMARY = "training.json"


# --- typed JSON files ---------------------------------------------------------------------------


class Meta(TypedDict):
    """``data/prepared/meta.json``."""

    source: str
    classes: list[str]  # class names in the order of indices and p_<class> columns
    n_features: int
    counts: dict[str, dict[str, int]]  # split -> class -> rows
    sizes: dict[str, int]  # split -> rows
    train_imbalance_ratio: float
    digest: str  # sha256 of the prepared content
    params: dict[str, Any]  # the data block as used
    rows_without_label: int  # dropped for an empty label cell
    columns: list[dict[str, Any]]  # per raw feature column: name, kind, detail, features


class ClassWeights(TypedDict):
    """``outputs/class_weights.json``, and a plan's ``class_weights``."""

    scheme: str  # a weights.scheme, or "power" in the plan of a weight-strength sweep
    beta: float | None
    classes: list[str]
    counts: list[int]
    weights: list[float] | list[list[float]]  # (C,); "power": (R, C), one row per run
    alphas: NotRequired[list[float]]  # "power": each run's alpha


class ClassCounts(TypedDict):
    classes: list[str]
    counts: list[int]


class RunEntry(TypedDict):
    model: str
    loss: str
    gamma: float | None
    seed: int
    alpha: float | None  # the class-weight strength of a train.alphas sweep, else None


class LossPlan(TypedDict):
    """``outputs/plans/<loss>.json``: everything one train@<loss> stage reads."""

    loss: str
    runs: list[RunEntry]
    train: dict[str, Any]  # the TrainConfig keys this loss reads
    class_weights: ClassWeights | None
    class_counts: ClassCounts | None


class ModelSummary(TypedDict):
    """One model's entry in a ``training.json``: its early stopping and per-epoch curves."""

    loss: str
    gamma: float | None
    seed: int
    alpha: NotRequired[float | None]  # the class-weight strength of a train.alphas sweep
    best_epoch: int
    epochs_run: int
    monitor: str | None  # what early stopping read on its slice of the training split (None: no stopping)
    best_score: float | None  # that value at best_epoch
    history: list[dict[str, Any]]  # per epoch: scalars, and the validation class counts (MLPs)


class TrainingSummary(TypedDict):
    """``outputs/models/<group>/training.json``."""

    loss: str
    device: str
    runs: dict[str, ModelSummary]
    batch_size: NotRequired[int]  # MLPs: the batch, learning rate and warm-up steps used
    lr: NotRequired[float]  # (train.batch_size: auto resolved; pipeline.training.train.resolve_batch)
    warmup_steps: NotRequired[int]
    params: NotRequired[dict[str, Any]]  # baselines: their parameters


# metrics.json: model -> metric name -> value, plus "ci" (metric -> {low, high}) and the
# reweighted view under its key (train_prior or uniform_prior), with metrics and "ci" of its own.
MetricsFile = dict[str, dict[str, Any]]


class Policy(TypedDict):
    metric: str
    view: str
    constraints: list[str]
    pick: str | None
    eligible: list[str]
    violations: dict[str, list[str]]
    closest: str | None  # no pick: the candidate that violates the fewest constraints
    summary: str


class Audit(TypedDict):
    """``reports/audit.json``."""

    views: dict[str, Any]
    rarest_class: str
    metrics: list[str]  # the leaderboard's columns
    policy: Policy
    winners: dict[str, str]
    disagreements: list[dict[str, str]]
    leaderboard: list[dict[str, Any]]  # {model, values, ranks}, in the policy's order
    kendall_tau: dict[str, dict[str, float | None]]
    across_seeds: dict[str, Any]
    accuracy_paradox: NotRequired[dict[str, Any]]
    tail_trade: NotRequired[dict[str, Any]]
    weight_strength: NotRequired[dict[str, Any]]  # family -> its curve against alpha (pipeline.evaluation.strength)


class RunsRecord(TypedDict):
    """``reports/mlflow_runs.json``: where one execution's MLflow runs went."""

    tracking_uri: str
    experiment: str
    experiment_id: str
    evaluation_run: str
    models: dict[str, str]  # model -> run id


def flatten(nested: Mapping[str, Any], sep: str = "/", prefix: str = "") -> dict[str, Any]:
    """``{"ci": {"macro_f1": {"low": a}}}`` -> ``{"ci/macro_f1/low": a}`` (with ``sep``)."""
    out: dict[str, Any] = {}
    for key, value in nested.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, sep, f"{prefix}{key}{sep}"))
        else:
            out[f"{prefix}{key}"] = value
    return out


# --- the prepared splits -----------------------------------------------------------------------

LABEL = "y"  # label column of the prepared splits (class names as strings)
SOURCE_ROW = "source_row"  # int64 column of the prepared splits: the row's 0-based data row in the source
SPLITS = ("train", "val", "test")


def split_arrays(frame: pd.DataFrame, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``X`` (N, F) float32 (every column but :data:`LABEL` and :data:`SOURCE_ROW`) and ``y``
    (N,) int64 class indices from a prepared split."""
    X = frame.drop(columns=[LABEL, SOURCE_ROW]).to_numpy(dtype=np.float32)
    return X, decode_labels(frame[LABEL], classes, what="label")


def early_stopping_mask(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """(N,) bool: the rows of the training split carved out for early stopping (True).

    Stratified: class c gives ``min(n_c - 1, floor(fraction * n_c + 1/2))`` of its ``n_c`` rows,
    drawn at random with ``seed``, so every class keeps at least one row to fit on and a class
    with fewer than ``1 / (2 * fraction)`` rows gives none. The same rows for every model (MLPs and
    XGBoost alike), whatever reads them.
    """
    y = np.asarray(y, dtype=np.int64)
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        take = min(len(rows) - 1, int(np.floor(fraction * len(rows) + 0.5)))
        mask[rng.permutation(rows)[:take]] = True
    return mask


def check_stopping_slice(data: dict[str, tuple[np.ndarray, np.ndarray]], classes: list[str]) -> None:
    """A one-line error when the early-stopping slice is empty (every class too small for it)."""
    if len(data["stop"][1]) == 0:
        smallest = int(np.bincount(data["train"][1], minlength=len(classes)).max())
        raise PipelineError(
            f"train.early_stopping_fraction leaves no rows for early stopping (the largest class has "
            f"{smallest} training rows); raise it so that fraction * rows >= 0.5 for some class"
        )


def read_prepared(
    data_dir: str | Path, *, early_stopping_fraction: float | None = None
) -> tuple[Meta, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """``meta.json`` and every split as ``(X, y)`` arrays from prepare's directory.

    With ``early_stopping_fraction``, ``"train"`` holds the rows to fit on and ``"stop"`` the
    early-stopping slice (:func:`early_stopping_mask`, seeded with the data seed).
    """
    data_dir = Path(data_dir)
    meta: Meta = read_json(data_dir / "meta.json", what="prepared-data metadata")
    data = {
        s: split_arrays(read_parquet(data_dir / f"{s}.parquet", what=f"{s} split"), meta["classes"]) for s in SPLITS
    }
    if early_stopping_fraction is not None:
        X, y = data["train"]
        stop = early_stopping_mask(y, early_stopping_fraction, int(meta["params"]["seed"]))
        data["train"], data["stop"] = (X[~stop], y[~stop]), (X[stop], y[stop])
    return meta, data


# --- labels and predictions --------------------------------------------------------------------


def decode_labels(values: pd.Series | np.ndarray, classes: list[str], *, what: str) -> np.ndarray:
    """(N,) int64 class indices of class names; a name not in ``classes`` is a one-line error."""
    values = pd.Series(values).astype(str)
    codes = pd.Categorical(values, categories=classes).codes.astype(np.int64)
    if (codes < 0).any():
        raise PipelineError(f"{what}: value {values[codes < 0].iloc[0]!r} is not one of the classes {classes}")
    return codes


def probability_column(cls: str) -> str:
    """The column of class ``cls``'s probability, in a predictions file and in a served prediction."""
    return f"p_{cls}"


def predictions_frame(
    proba: np.ndarray, y_true: np.ndarray, classes: list[str], y_pred: np.ndarray | None = None
) -> pd.DataFrame:
    """``y_true``, ``y_pred`` (class names) and one ``p_<class>`` column per class.

    ``proba`` (N, C) rows sum to 1; ``y_true`` (N,) class indices; ``y_pred`` (N,) the decisions,
    the argmax of ``proba`` when not given (a cost rule's decisions are not).
    """
    decided = proba.argmax(1) if y_pred is None else y_pred
    columns = {"y_true": [classes[i] for i in y_true], "y_pred": [classes[i] for i in decided]}
    return pd.DataFrame({**columns, **{probability_column(c): proba[:, j] for j, c in enumerate(classes)}})


PROBA_HOLD = 1_000_000  # probabilities held per predictions file up to this many values (8 MB)


class Predictions:
    """One model's predictions of one split, decoded: ``y_true`` and ``y_pred`` (N,) int64 class
    indices, ``proba`` (N, C) float64.

    Probabilities of more than :data:`PROBA_HOLD` values (a split of 100 000 rows and 10 classes)
    are not held: each use of ``proba`` reads them from their file again, so that evaluate holds
    one candidate's at a time however many candidates there are, not all of them.
    """

    __slots__ = ("y_true", "y_pred", "_proba", "_source")

    def __init__(
        self,
        y_true: np.ndarray,
        y_pred: np.ndarray,
        proba: np.ndarray | None = None,
        *,
        source: tuple[Path, list[str]] | None = None,
    ):
        if proba is None and source is None:
            raise ValueError("Predictions need proba or the file to read it from")
        self.y_true, self.y_pred, self._proba, self._source = y_true, y_pred, proba, source

    @property
    def proba(self) -> np.ndarray:
        if self._proba is not None:
            return self._proba
        path, columns = self._source
        return read_parquet(path, what="predictions", columns=columns).to_numpy(np.float64)


def read_predictions(path: str | Path, classes: list[str], *, what: str) -> Predictions:
    """Read and check a predictions file (every ``p_<class>`` column, known class names)."""
    frame = read_parquet(path, what=what)
    columns = [probability_column(c) for c in classes]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise PipelineError(f"{what}: missing column {missing[0]!r}")
    y_true = decode_labels(frame["y_true"], classes, what=f"{what}, y_true")
    y_pred = decode_labels(frame["y_pred"], classes, what=f"{what}, y_pred")
    if len(frame) * len(columns) > PROBA_HOLD:
        return Predictions(y_true, y_pred, source=(Path(path), columns))
    return Predictions(y_true, y_pred, frame[columns].to_numpy(np.float64))


def checkpoint_path(models_dir: str | Path, model: str) -> Path:
    """``<models_dir>/<model>.pt``, models_dir being one loss's directory (:mod:`pipeline.training.checkpoint`)."""
    return Path(models_dir) / f"{model}.pt"


def predictions_file(group_dir: str | Path, model: str) -> Path:
    """``<group_dir>/<model>.parquet``, group_dir being one loss's (or the baselines') directory."""
    return Path(group_dir) / f"{model}.parquet"


PREDICTED_SPLITS = ("val", "test")  # every model's and every decision rule's predictions


def predictions_path(root: str | Path, split: str, group: str, name: str) -> Path:
    """``<root>/<split>/<group>/<name>.parquet``; split is ``val`` or ``test``, group the loss or
    ``baselines``, name a model or a ``<model>+<rule>`` candidate."""
    return predictions_file(Path(root) / split / group, name)


def predictions_by_model(root: str | Path, names: list[str]) -> dict[str, Path]:
    """``<split>/<name> -> <root>/<split>/<group>/<name>.parquet`` for each of ``names`` and each
    split; a missing one is an error."""
    root = Path(root)
    out = {}
    for split in PREDICTED_SPLITS:
        found = {p.stem: p for p in sorted((root / split).glob("*/*.parquet"))}
        for name in names:
            if name not in found:
                raise PipelineError(
                    f"{root}/{split}/*/{name}.parquet: predictions of {name} not found (re-run the pipeline: dvc repro)"
                )
            out[f"{split}/{name}"] = found[name]
    return out


def candidate_name(model: str, rule: str | None) -> str:
    """``<model>`` (argmax as trained) or ``<model>+<rule>``."""
    return model if rule is None else f"{model}+{rule}"


# --- figures -----------------------------------------------------------------------------------

# reports/figures/: evaluate draws every figure once; the report embeds these files.
FIGURES = {
    "ranks": "leaderboard_ranks.png",
    "agreement": "metric_agreement.png",
    "focal_shape": "focal_loss_shape.png",
    "distribution": "class_distribution.png",
    "pick_vs_ce_confusion": "pick_vs_ce_confusion.png",
    "per_class": "pick_vs_ce_per_class.png",
    "prior_shift": "prior_shift.png",
    "agreement_curves": "loss_metric_agreement.png",
    "reliability": "reliability.png",
}


def confusion_figure_file(model: str) -> str:
    return f"confusion_{model}.png"


def gamma_figure_file(loss: str) -> str:
    return f"gamma_{loss}.png"


def alpha_figure_file(family: str) -> str:
    return f"alpha_{family}.png"


def read_figures(figures_dir: str | Path) -> dict[str, bytes]:
    """PNG bytes of the figures the report shows: :data:`FIGURES`' keys, ``gamma_<loss>`` and
    ``alpha_<family>``."""
    figures_dir = Path(figures_dir)
    if not figures_dir.is_dir():
        raise PipelineError(f"{figures_dir}: figures not found (run the evaluate stage first)")
    images = {key: (figures_dir / name).read_bytes() for key, name in FIGURES.items() if (figures_dir / name).is_file()}
    images.update({p.stem: p.read_bytes() for p in sorted(figures_dir.glob(gamma_figure_file("*")))})
    images.update({p.stem: p.read_bytes() for p in sorted(figures_dir.glob(alpha_figure_file("*")))})
    return images


# --- what evaluate reads -----------------------------------------------------------------------


@dataclass
class ModelRecord:
    """One candidate as decide and evaluate see it: a trained model (``rule`` None), or a decision
    rule fitted on validation on top of one (``<model>+<rule>``)."""

    name: str  # the candidate's name
    loss: str
    gamma: float | None
    seed: int
    kind: str  # "mlp" or "baseline"
    group: str  # the loss, or "baselines": its directory under models/, predictions/, decisions/
    params: dict[str, Any]  # what it was trained with (the plan's set-up and weights)
    training: ModelSummary
    device: str
    weights: Path | None  # its checkpoint or baseline file
    val: Predictions
    test: Predictions
    model: str = ""  # the trained model ("" : the name)
    rule: str | None = None
    decision: dict[str, Any] | None = None  # the rule's fitted parameters file
    fitted_parameters: int = 0  # the model's and the rule's, for tie-breaks
    alpha: float | None = None  # the class-weight strength of a train.alphas sweep
    calibration: dict[str, Any] | None = None  # what recalibrates its model's probabilities (decide's)

    def __post_init__(self):
        self.model = self.model or self.name


def read_split_predictions(root: str | Path, group: str, name: str, classes: list[str]) -> dict[str, Predictions]:
    """``{"val": ..., "test": ...}`` of one candidate under ``root``."""
    return {
        split: read_predictions(
            predictions_path(root, split, group, name), classes, what=f"{split} predictions of {name}"
        )
        for split in PREDICTED_SPLITS
    }


def load_model_records(
    plans_dir: str | Path, models_dir: str | Path, preds_dir: str | Path, baselines: str | None, meta: Meta
) -> list[ModelRecord]:
    """Every model the plans (and the baselines' ``training.json``) name, with its predictions."""
    classes = meta["classes"]
    plans_dir, models_dir = Path(plans_dir), Path(models_dir)
    plan_files = sorted(plans_dir.glob("*.json"))
    if not plan_files:
        raise PipelineError(f"{plans_dir}: no training plans found (run the plan stage first)")
    groups = []
    for plan_file in plan_files:
        plan: LossPlan = read_json(plan_file, what="training plan")
        weights = plan.get("class_weights")
        params = {
            "train": plan["train"],
            "weights": {k: weights[k] for k in ("scheme", "beta")} if weights else {"scheme": "unweighted"},
        }
        groups.append((plan["loss"], "mlp", [r["model"] for r in plan["runs"]], params))
    if baselines is not None:
        summary: TrainingSummary = read_json(models_dir / baselines / TRAINING_SUMMARY, what="baselines summary")
        groups.append((baselines, "baseline", list(summary["runs"]), summary["params"]))
    records = []
    for group, kind, names, params in groups:
        path = models_dir / group / TRAINING_SUMMARY
        training: TrainingSummary = read_json(path, what=f"training summary of {group}")
        for name in names:
            if name not in training["runs"]:
                raise PipelineError(f"{path}: no entry for model {name}")
            t = training["runs"][name]
            weights_file = next(
                (
                    p
                    for p in (checkpoint_path(models_dir / group, name), models_dir / group / f"{name}.json")
                    if p.is_file()
                ),
                None,
            )
            preds = read_split_predictions(preds_dir, group, name, classes)
            records.append(
                ModelRecord(
                    name,
                    t["loss"],
                    t["gamma"],
                    t["seed"],
                    kind,
                    group,
                    params,
                    t,
                    training["device"],
                    weights_file,
                    preds["val"],
                    preds["test"],
                    fitted_parameters=model_parameters(kind, params, weights_file, meta["n_features"], len(classes)),
                    alpha=t.get("alpha"),
                )
            )
    return records


def check_labels(records: list[ModelRecord], data_dir: str | Path, classes: list[str]) -> None:
    """A one-line error when a prediction file's ``y_true`` no longer matches the prepared split
    it claims (prepare ran again after the models predicted): no score is computed on stale labels."""
    for split in PREDICTED_SPLITS:
        path = Path(data_dir) / f"{split}.parquet"
        truth = pd.Categorical(pd.read_parquet(path, columns=[LABEL])[LABEL].astype(str), categories=classes).codes
        for rec in records:
            got = getattr(rec, split).y_true
            if len(got) != len(truth) or (got != truth).any():
                where = (
                    "its row count differs"
                    if len(got) != len(truth)
                    else f"row {int(np.flatnonzero(got != truth)[0])} differs"
                )
                raise PipelineError(
                    f"{split} predictions of {rec.name}: y_true no longer matches {path} ({where}); "
                    "the split changed after the models predicted: re-run the pipeline (dvc repro)"
                )


CALIBRATION_DIR = "calibration"  # the models' calibrations, beside the rules' fitted parameters


def load_decision_records(
    records: list[ModelRecord], decisions_preds: str | Path, decisions_params: str | Path, classes: list[str]
) -> list[ModelRecord]:
    """Every candidate as the decide stage left it: each model of ``records`` with its calibrated
    probabilities and its calibration, then every ``<model>+<rule>``."""
    params_dir = Path(decisions_params)
    models = []
    for base in records:
        path = params_dir / CALIBRATION_DIR / f"{base.name}.json"
        if not path.is_file():
            raise PipelineError(
                f"{path}: missing: model {base.name} was not calibrated (re-run the pipeline: dvc repro)"
            )
        preds = read_split_predictions(decisions_preds, base.group, base.name, classes)
        models.append(
            dataclasses.replace(
                base,
                val=preds["val"],
                test=preds["test"],
                calibration=read_json(path, what="calibration")["calibration"],
            )
        )
    by_name = {r.name: r for r in models}
    out = []
    for path in sorted(params_dir.glob("*.json")):
        fitted = read_json(path, what="decision rule")
        base = by_name.get(fitted["model"])
        if base is None:
            raise PipelineError(
                f"{path}: model {fitted['model']!r} is not among the trained models (re-run the pipeline: dvc repro)"
            )
        preds = read_split_predictions(decisions_preds, base.group, path.stem, classes)
        out.append(
            dataclasses.replace(
                base,
                name=path.stem,
                val=preds["val"],
                test=preds["test"],
                model=base.name,
                rule=fitted["rule"],
                decision=fitted,
                fitted_parameters=base.fitted_parameters + int(fitted["parameters"]),
            )
        )
    return models + out


def model_parameters(kind: str, params: dict[str, Any], weights: Path | None, n_features: int, n_classes: int) -> int:
    """Fitted parameters of a trained model (for the policy's tie-breaks): an MLP's weights and
    biases; a baseline's from its saved description (XGBoost: its trees' nodes)."""
    if kind == "mlp":
        widths = [n_features, *params["train"]["hidden"], n_classes]
        return int(sum(a * b + b for a, b in zip(widths, widths[1:])))
    if weights is None:
        return 0
    saved = read_json(weights, what="baseline model")
    if saved.get("kind") == "majority":
        return len(saved["prior"]) - 1
    if saved.get("kind") == "logreg_balanced":
        return int(np.size(saved["coef"]) + np.size(saved["intercept"]))
    if saved.get("kind") == "xgboost":
        trees = saved["booster"]["learner"]["gradient_booster"]["model"]["trees"]
        return int(sum(int(t["tree_param"]["num_nodes"]) for t in trees))
    return 0
