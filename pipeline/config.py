"""``params.yaml`` parsed once into frozen, typed, validated config objects.

Every stage calls :func:`load_params`, which checks the whole file, so a mistake in any block
stops the pipeline at its first stage, before anything is written.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from pipeline import PipelineError
from pipeline.loss_specs import ALPHA_LOSSES, GAMMA_LOSSES, LOSSES, loss_names, loss_spec  # noqa: F401 (re-exported)
from pipeline.rule_specs import RULE_SPECS, RULES

SOURCES = ("digits", "synthetic", "csv")
SCHEMES = ("none", "inverse", "inverse_sqrt", "effective_number")
OPTIMIZERS = ("adam", "adamw", "sgd")
DEVICES = ("auto", "cpu", "cuda")
BASELINES = ("majority", "logreg_balanced", "xgboost")
PRIORS = ("auto", "train", "uniform")
VIEWS = ("held_out", "reweighted")
STOPPING_METRICS = ("macro_f1", "log_loss", "balanced_log_loss")
DECISION_MODELS = ("best", "all")
_COST_METRIC = "expected_cost"  # pipeline.decision.metrics.COST_METRIC (not imported: no scikit-learn here)


class ConfigError(PipelineError):
    """A value in params.yaml that is missing, of the wrong type or out of range."""


@dataclass(frozen=True)
class SyntheticConfig:
    n_samples: int = 20_000  # rows generated, before any split
    n_features: int = 32
    n_informative: int = 16
    n_classes: int = 10
    class_sep: float = 1.0  # larger is easier (sklearn's make_classification)
    imbalance_ratio: float = 10.0  # n_max / n_min of the generated classes, in every split


@dataclass(frozen=True)
class DataConfig:
    source: str = "digits"  # digits | synthetic | csv
    path: str = "data/raw"  # source=csv: the CSV or Parquet file (e.g. data/raw/claims.csv)
    target: str | None = None  # label column in that file, for source=csv
    encoding: str = "utf-8"  # source=csv: the file's text encoding (latin-1, cp1252...)
    imbalance_ratio: float = 10.0  # rho = n_max / n_min imposed on the training split; 1 keeps it
    val_size: float = 0.2  # fractions of all rows, stratified
    test_size: float = 0.2
    seed: int = 0  # split and subsampling seed
    max_categories: int = 20  # one-hot columns per categorical feature at most; rarer levels share one
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass(frozen=True)
class WeightsConfig:
    scheme: str = "inverse"  # none | inverse | inverse_sqrt | effective_number
    beta: float = 0.999  # effective number of samples: that scheme, cb_focal and ldam_drw


@dataclass(frozen=True)
class TrainConfig:
    losses: tuple[str, ...] = ("ce", "weighted_ce", "focal")
    gammas: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 5.0)  # focal-family sweep
    seeds: tuple[int, ...] = (0,)  # one model per seed (and per gamma)
    # class-weight strength: w_c ~ n_c^(-alpha); one model per alpha for the losses of alpha_losses,
    # named <loss>_a<alpha> (alpha = 0 is the unweighted loss itself, never trained twice);
    # None: those losses train once with the weights of weights.scheme
    alphas: tuple[float, ...] | None = (0.25, 0.5, 0.75, 1.0)
    alpha_losses: tuple[str, ...] = ("weighted_ce",)  # which losses sweep alphas: weighted_ce, weighted_focal
    hidden: tuple[int, ...] = (128, 64)  # MLP hidden layer widths
    dropout: float = 0.1
    optimizer: str = "adam"  # adam | adamw | sgd
    lr: float = 1e-3
    weight_decay: float = 0.0
    epochs: int = 100  # upper bound; early stopping usually ends sooner
    batch_size: int | str = (
        "auto"  # rows per step, or auto: grows with the training rows (pipeline.training.train.batch_rule),
    )
    #                              the learning rate scaled with it and warmed up
    warmup_steps: int | str = "auto"  # linear learning-rate warm-up over this many steps; auto: one epoch's
    #                                   steps where batch_size auto scaled the rate, else none
    patience: int = 15  # epochs without a better early_stopping_metric (on the slice below) before stopping
    early_stopping_fraction: float = 0.1  # share of the training split carved out (stratified) for
    #                                       early stopping, in (0, 0.5]; validation is left alone
    early_stopping_metric: str = "balanced_log_loss"  # what early stopping watches on that slice:
    #                                          macro_f1 | log_loss | balanced_log_loss
    device: str = "auto"  # auto (a GPU when present) | cpu | cuda
    threads: int | str = "auto"  # torch's CPU threads: auto (the cores this process may use; 1 in a
    #                              `dvc queue` worker) or a number
    tau: float = 1.0  # logit_adjusted: logits + tau * log prior in training only
    ldam_max_margin: float = 0.5  # ldam_drw: the rarest class's margin (m_c ~ n_c^(-1/4))
    ldam_scale: float = 30.0  # ldam_drw: scale s of the margin-adjusted logits
    drw_epoch: int | None = None  # ldam_drw: first re-weighted epoch; None: round(2/3 * epochs)


@dataclass(frozen=True)
class BaselinesConfig:
    models: tuple[str, ...] = BASELINES  # trained and evaluated beside the MLPs
    seed: int = 0
    xgb_n_estimators: int = 400  # upper bound; early stopping on the log-loss on the early-stopping
    #                              slice (of the training split) ends sooner
    xgb_max_depth: int = 4
    xgb_learning_rate: float = 0.1
    xgb_early_stopping: int = 20  # rounds without a better log-loss on the early-stopping slice


@dataclass(frozen=True)
class BootstrapConfig:
    resamples: int = 1000  # test-split resamples, shared by all models (paired)
    seed: int = 0
    level: float = 0.95  # interval coverage


@dataclass(frozen=True)
class SelectConfig:
    metric: str = "macro_f1"  # primary metric the chosen model maximises (minimises for losses and
    #                           expected_cost, which needs evaluate.costs)
    view: str = "held_out"  # held_out | reweighted (the test split under the other prior)
    constraints: tuple[str, ...] = ()  # e.g. "recall/8 >= 0.6", "fpr/0 <= 0.05"


@dataclass(frozen=True)
class DecisionsConfig:
    rules: tuple[str, ...] = RULES  # post-hoc decision rules, any of pipeline.rule_specs.RULE_SPECS; () for none
    models: str | tuple[str, ...] = "best"  # best (each loss's best model on validation) | all | names


@dataclass(frozen=True)
class CostsConfig:
    """The cost of deciding class j when the truth is class i, by class name (see :func:`cost_matrix`).

    Precedence, lowest first: default < false_alarm < missed < matrix.
    """

    default: float = 1.0  # cost of any wrong decision (off the diagonal)
    missed: dict[str, float] = field(default_factory=dict)  # {true class: cost of deciding anything else}
    false_alarm: dict[str, float] = field(default_factory=dict)  # {decided class: cost when the truth is another}
    matrix: dict[str, dict[str, float]] = field(default_factory=dict)  # {true class: {decided class: cost}}
    allow_diagonal: bool = False  # True: matrix may give a correct decision a non-zero cost


@dataclass(frozen=True)
class EvaluateConfig:
    prior: str = "auto"  # second view's class prior: train | uniform | auto (docs/experiments.md, "Views")
    ece_bins: int = 15
    max_ece: float = 0.05  # above this ECE on validation, the pick's probabilities are called poorly calibrated
    min_recall: float = 0.1  # a class the pick recalls less often than this is a warning
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    decisions: DecisionsConfig = field(default_factory=DecisionsConfig)
    crossfit_folds: int = 5  # cross-fitting folds of the validation split for the decision rules (>= 2)
    costs: CostsConfig | None = None  # None: no cost rule and no expected_cost metric
    deploy_prior: dict[str, float] | None = None  # expected class prior at deployment, by class name
    #                                               (normalised; classes left out get 0); None: none


@dataclass(frozen=True)
class ReportConfig:
    title: str = "Which loss, judged by which metric"
    mlflow_url: str | None = None  # MLflow UI address, e.g. http://127.0.0.1:5000: run ids become links


@dataclass(frozen=True)
class MlflowConfig:
    experiment: str = "imbalanced-mlp"
    registered_model: str | None = None  # the Model Registry's name for the pick (None: the experiment's)


@dataclass(frozen=True)
class Params:
    data: DataConfig = field(default_factory=DataConfig)
    weights: WeightsConfig = field(default_factory=WeightsConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    baselines: BaselinesConfig = field(default_factory=BaselinesConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)


QUEUE_WORKDIR = ".dvc/tmp/exps/"  # where `dvc queue` workers run their copies of the repository


def usable_cores(cwd: str | Path | None = None) -> int:
    """The cores this process may use, or 1 inside a `dvc queue` worker (its working copy lies
    under ``.dvc/tmp/exps/``; ``DVC_EXP_NAME`` is set by every ``dvc exp run``, so it cannot
    tell), where several jobs share the cores and more threads or processes each only make them
    wait on one another."""
    if QUEUE_WORKDIR in f"{Path(cwd or Path.cwd()).resolve().as_posix()}/":
        return 1
    return len(os.sched_getaffinity(0))


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``path``; raise :class:`ConfigError` with a one-line message."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    return parse_params(raw or {}, source=str(path))


def parse_params(raw: dict[str, Any], source: str = "params.yaml") -> Params:
    """Build :class:`Params` from a plain dict (as loaded from YAML) and validate it."""
    params = _build(Params, raw, prefix="", source=source)
    _validate(params, source)
    return params


def to_dict(obj: Any) -> dict[str, Any]:
    """Plain, JSON-ready dict of a config object (tuples become lists)."""
    return dataclasses.asdict(obj, dict_factory=lambda kv: {k: _plain(v) for k, v in kv})


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def _build(cls: type, raw: Any, prefix: str, source: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'top level'} must be a mapping")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names), key=str)
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), names, n=1, cutoff=0.6)
        hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
        raise ConfigError(f"{source}: unknown key {prefix}{unknown[0]}; allowed: {', '.join(names)}{hint}")
    kwargs = {}
    for name in names:
        if name not in raw:
            continue
        key, hint, value = prefix + name, hints[name], raw[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, key + ".", source)
        else:
            kwargs[name] = _coerce(value, hint, key, source)
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str, source: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):  # Optional[X], or X | Y tried in order
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        for option in inner[:-1]:
            try:
                return _coerce(value, option, key, source)
            except ConfigError:
                pass
        return _coerce(value, inner[-1], key, source)
    if dataclasses.is_dataclass(hint):  # a nested block, e.g. behind Optional
        return _build(hint, value, key + ".", source)
    if origin is tuple:
        if not isinstance(value, list):
            value = [value]
        return tuple(_coerce(v, args[0], f"{key}[{i}]", source) for i, v in enumerate(value))
    if origin is dict:  # keys are class names: YAML reads `8:` as an int, so they are kept as text
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key} must be a mapping; got {value!r}")
        out = {}
        for k, v in value.items():
            _check(str(k) not in out, source, f"{key} names {str(k)!r} twice")
            out[str(k)] = _coerce(v, args[1], f"{key}.{k}", source)
        return out
    if hint is bool and isinstance(value, bool):
        return value
    if hint is float and isinstance(value, str):
        # PyYAML reads 1e-3 (no dot) as a string; DVC's -S writes it that way.
        try:
            value = float(value)
        except ValueError:
            pass
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is str and isinstance(value, str):
        return value
    raise ConfigError(f"{source}: {key} must be {hint.__name__}; got {value!r}")


def _known_encoding(name: str) -> bool:
    import codecs

    try:
        codecs.lookup(name)
    except LookupError:
        return False
    return True


def _check(ok: bool, source: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{source}: {message}")


def _one_of(value: str, allowed: tuple[str, ...], key: str, source: str) -> None:
    _check(value in allowed, source, f"{key} must be one of {', '.join(allowed)}; got {value!r}")


def _validate(p: Params, source: str) -> None:
    d, s, w, t = p.data, p.data.synthetic, p.weights, p.train
    _one_of(d.source, SOURCES, "data.source", source)
    if d.source == "csv":
        _check(bool(d.path), source, "data.path must name a CSV or Parquet file when data.source is csv")
        _check(bool(d.target), source, "data.target must name the label column when data.source is csv")
        _check(
            _known_encoding(d.encoding),
            source,
            f"data.encoding: {d.encoding!r} is not an encoding Python knows (e.g. utf-8, latin-1, cp1252)",
        )
    _check(
        math.isfinite(d.imbalance_ratio) and d.imbalance_ratio >= 1,
        source,
        f"data.imbalance_ratio must be >= 1 (1 keeps the split as is); got {d.imbalance_ratio}",
    )
    for key, v in (("data.val_size", d.val_size), ("data.test_size", d.test_size)):
        _check(0 < v < 1, source, f"{key} must be in (0, 1); got {v}")
    _check(
        d.val_size + d.test_size < 1,
        source,
        f"data.val_size + data.test_size must be < 1; got {d.val_size + d.test_size}",
    )
    _check(d.max_categories >= 2, source, f"data.max_categories must be >= 2; got {d.max_categories}")
    _check(s.n_classes >= 2, source, f"data.synthetic.n_classes must be >= 2; got {s.n_classes}")
    _check(
        s.n_samples >= 10 * s.n_classes,
        source,
        f"data.synthetic.n_samples must be >= 10 * n_classes; got {s.n_samples}",
    )
    _check(
        1 <= s.n_informative <= s.n_features,
        source,
        "data.synthetic.n_informative must be in [1, n_features]; "
        f"got {s.n_informative} with n_features={s.n_features}",
    )
    _check(s.imbalance_ratio >= 1, source, f"data.synthetic.imbalance_ratio must be >= 1; got {s.imbalance_ratio}")

    _one_of(w.scheme, SCHEMES, "weights.scheme", source)
    _check(0 <= w.beta < 1, source, f"weights.beta must be in [0, 1); got {w.beta}")

    _check(len(t.losses) > 0, source, "train.losses must list at least one loss")
    for loss in t.losses:
        _one_of(loss, loss_names(), "train.losses", source)
    _check(len(set(t.losses)) == len(t.losses), source, "train.losses lists a loss twice")
    focal_family = [loss for loss in t.losses if loss_spec(loss).sweeps_gamma]
    if focal_family:
        _check(len(t.gammas) > 0, source, f"train.gammas must list at least one value for {', '.join(focal_family)}")
    for g in t.gammas:
        _check(math.isfinite(g) and g >= 0, source, f"train.gammas must be >= 0; got {g}")
    _check(len(set(t.gammas)) == len(t.gammas), source, "train.gammas lists a value twice")
    for loss in t.alpha_losses:
        _one_of(loss, ALPHA_LOSSES, "train.alpha_losses", source)
    _check(len(set(t.alpha_losses)) == len(t.alpha_losses), source, "train.alpha_losses lists a loss twice")
    if t.alphas is not None:
        _check(len(t.alphas) > 0, source, "train.alphas must list at least one value, or be null (no sweep)")
        for a in t.alphas:
            _check(math.isfinite(a) and a >= 0, source, f"train.alphas must be >= 0; got {a}")
        _check(len(set(t.alphas)) == len(t.alphas), source, "train.alphas lists a value twice")
        _check(
            any(a > 0 for a in t.alphas),
            source,
            "train.alphas must list a value > 0 (alpha = 0 is the unweighted loss itself), or be null",
        )
        for loss in (x for x in t.alpha_losses if x in t.losses and 0 in t.alphas):
            zero = loss_spec(loss).alpha_zero
            _check(
                zero in t.losses,
                source,
                f"train.alphas lists 0, which for {loss} is {zero} itself (never trained twice): "
                f"add {zero} to train.losses or drop 0 from train.alphas",
            )
    _check(len(t.seeds) > 0, source, "train.seeds must list at least one seed")
    _check(len(set(t.seeds)) == len(t.seeds), source, "train.seeds lists a seed twice")
    _check(all(h > 0 for h in t.hidden), source, f"train.hidden sizes must be > 0; got {list(t.hidden)}")
    _check(0 <= t.dropout < 1, source, f"train.dropout must be in [0, 1); got {t.dropout}")
    _one_of(t.optimizer, OPTIMIZERS, "train.optimizer", source)
    _check(t.lr > 0, source, f"train.lr must be > 0; got {t.lr}")
    _check(t.weight_decay >= 0, source, f"train.weight_decay must be >= 0; got {t.weight_decay}")
    _check(t.epochs >= 1, source, f"train.epochs must be >= 1; got {t.epochs}")
    _check(
        t.batch_size == "auto"
        or (isinstance(t.batch_size, int) and not isinstance(t.batch_size, bool) and t.batch_size >= 1),
        source,
        f"train.batch_size must be auto or a number >= 1; got {t.batch_size!r}",
    )
    _check(
        t.warmup_steps == "auto"
        or (isinstance(t.warmup_steps, int) and not isinstance(t.warmup_steps, bool) and t.warmup_steps >= 0),
        source,
        f"train.warmup_steps must be auto or a number >= 0; got {t.warmup_steps!r}",
    )
    _check(t.patience >= 1, source, f"train.patience must be >= 1; got {t.patience}")
    _check(
        0 < t.early_stopping_fraction <= 0.5,
        source,
        f"train.early_stopping_fraction must be in (0, 0.5]; got {t.early_stopping_fraction}",
    )
    _one_of(t.early_stopping_metric, STOPPING_METRICS, "train.early_stopping_metric", source)
    _one_of(t.device, DEVICES, "train.device", source)
    _check(
        t.threads == "auto" or (isinstance(t.threads, int) and t.threads >= 1),
        source,
        f"train.threads must be auto or a number >= 1; got {t.threads!r}",
    )
    _check(math.isfinite(t.tau) and t.tau >= 0, source, f"train.tau must be >= 0; got {t.tau}")
    _check(
        math.isfinite(t.ldam_max_margin) and t.ldam_max_margin >= 0,
        source,
        f"train.ldam_max_margin must be >= 0; got {t.ldam_max_margin}",
    )
    _check(
        math.isfinite(t.ldam_scale) and t.ldam_scale > 0, source, f"train.ldam_scale must be > 0; got {t.ldam_scale}"
    )
    if t.drw_epoch is not None:
        _check(
            1 <= t.drw_epoch <= t.epochs,
            source,
            f"train.drw_epoch must be in [1, train.epochs] ({t.epochs}) or null; got {t.drw_epoch}",
        )
    _check(bool(p.mlflow.experiment.strip()), source, "mlflow.experiment must not be empty")
    reg = p.mlflow.registered_model
    _check(
        reg is None or (bool(reg.strip()) and not set(reg) & set("/:%.'\"")),
        source,
        f"mlflow.registered_model must be null or a name without / : % . or quotes; got {reg!r}",
    )
    _validate_evaluation(p, source)


def _validate_evaluation(p: Params, source: str) -> None:
    b, e = p.baselines, p.evaluate
    for name in b.models:
        _one_of(name, BASELINES, "baselines.models", source)
    _check(len(set(b.models)) == len(b.models), source, "baselines.models lists a model twice")
    _check(b.xgb_n_estimators >= 1, source, f"baselines.xgb_n_estimators must be >= 1; got {b.xgb_n_estimators}")
    _check(b.xgb_max_depth >= 1, source, f"baselines.xgb_max_depth must be >= 1; got {b.xgb_max_depth}")
    _check(b.xgb_learning_rate > 0, source, f"baselines.xgb_learning_rate must be > 0; got {b.xgb_learning_rate}")
    _check(b.xgb_early_stopping >= 1, source, f"baselines.xgb_early_stopping must be >= 1; got {b.xgb_early_stopping}")
    _one_of(e.prior, PRIORS, "evaluate.prior", source)
    _check(e.ece_bins >= 1, source, f"evaluate.ece_bins must be >= 1; got {e.ece_bins}")
    _check(0 < e.max_ece < 1, source, f"evaluate.max_ece must be in (0, 1); got {e.max_ece}")
    _check(0 <= e.min_recall <= 1, source, f"evaluate.min_recall must be in [0, 1]; got {e.min_recall}")
    _check(
        e.bootstrap.resamples >= 10, source, f"evaluate.bootstrap.resamples must be >= 10; got {e.bootstrap.resamples}"
    )
    _check(0 < e.bootstrap.level < 1, source, f"evaluate.bootstrap.level must be in (0, 1); got {e.bootstrap.level}")
    _one_of(e.select.view, VIEWS, "evaluate.select.view", source)
    constraints = [parse_constraint(text, source) for text in e.select.constraints]
    if e.costs is None:
        _check(
            e.select.metric != _COST_METRIC,
            source,
            f"evaluate.select.metric {_COST_METRIC} needs evaluate.costs; it is null",
        )
        for c in constraints:
            _check(
                c.metric != _COST_METRIC,
                source,
                f"evaluate.select.constraints entry '{c}' needs evaluate.costs; it is null",
            )
    _validate_decisions(e, source)


def _validate_decisions(e: EvaluateConfig, source: str) -> None:
    d = e.decisions
    for rule in d.rules:
        _check(
            rule != "temperature",
            source,
            "evaluate.decisions.rules: temperature is no longer a rule (every "
            "candidate's probabilities are now calibrated on validation); remove it from the list",
        )
        _one_of(rule, tuple(RULE_SPECS), "evaluate.decisions.rules", source)
    _check(len(set(d.rules)) == len(d.rules), source, "evaluate.decisions.rules lists a rule twice")
    if isinstance(d.models, str):
        _check(
            d.models in DECISION_MODELS,
            source,
            f"evaluate.decisions.models must be best, all or a list of model names; got {d.models!r}",
        )
    else:
        _check(
            len(d.models) > 0, source, "evaluate.decisions.models must be best, all or a list of model names; got []"
        )
        for name in d.models:
            _check(bool(name.strip()), source, f"evaluate.decisions.models names an empty model; got {name!r}")
        _check(len(set(d.models)) == len(d.models), source, "evaluate.decisions.models lists a model twice")
    _check(e.crossfit_folds >= 2, source, f"evaluate.crossfit_folds must be >= 2; got {e.crossfit_folds}")
    if e.costs is not None:
        c = e.costs
        cells = [("evaluate.costs.default", c.default)]
        cells += [
            (f"evaluate.costs.{block}.{k}", v)
            for block in ("missed", "false_alarm")
            for k, v in getattr(c, block).items()
        ]
        cells += [(f"evaluate.costs.matrix.{t}.{j}", v) for t, row in c.matrix.items() for j, v in row.items()]
        for key, v in cells:
            _check(math.isfinite(v) and v >= 0, source, f"{key} must be finite and >= 0; got {v}")
        if not c.allow_diagonal:
            for t, row in c.matrix.items():
                _check(
                    row.get(t, 0.0) == 0,
                    source,
                    f"evaluate.costs.matrix.{t}.{t} is a correct decision and must cost 0; got {row.get(t)} "
                    "(set evaluate.costs.allow_diagonal: true to allow it)",
                )
        _check(any(v > 0 for _, v in cells), source, "evaluate.costs must give some decision a cost > 0; all are 0")
    if e.deploy_prior is not None:
        for k, v in e.deploy_prior.items():
            _check(math.isfinite(v) and v >= 0, source, f"evaluate.deploy_prior.{k} must be finite and >= 0; got {v}")
        _check(
            sum(e.deploy_prior.values()) > 0,
            source,
            "evaluate.deploy_prior must give some class a share > 0; all are 0",
        )


RAREST = "rarest"  # in evaluate.costs: the class with the fewest training rows (unless a class has that name)


def _class_index(name: str, classes: list[str], key: str, source: str, rarest: int | None = None) -> int:
    if name == RAREST and name not in classes and rarest is not None:
        return rarest
    _check(
        name in classes,
        source,
        f"{key} names class {name!r}, not one of the classes: {', '.join(map(str, classes))}"
        + (f" (or {RAREST!r}, the class with the fewest training rows)" if rarest is not None else ""),
    )
    return classes.index(name)


def cost_matrix(
    costs: CostsConfig, classes: list[str], train_counts: list[int] | None = None, source: str = "params.yaml"
) -> np.ndarray:
    """(C, C) float64 costs, ``C[true, decided]``, of ``evaluate.costs`` for ``classes``
    (``train_counts``, in their order, resolve :data:`RAREST`: the first class with the fewest).

    Off the diagonal: ``default``, overridden by ``false_alarm`` (by decided class), then by
    ``missed`` (by true class), then by single ``matrix`` cells; the diagonal is 0 unless
    ``matrix`` sets it. A class name not in ``classes`` is a :class:`ConfigError`.
    """
    classes = [str(c) for c in classes]
    k = len(classes)
    rarest = None if train_counts is None else int(np.argmin(train_counts))
    off = ~np.eye(k, dtype=bool)
    out = np.where(off, float(costs.default), 0.0)
    for name, v in costs.false_alarm.items():
        j = _class_index(name, classes, "evaluate.costs.false_alarm", source, rarest)
        out[off[:, j], j] = v
    for name, v in costs.missed.items():
        i = _class_index(name, classes, "evaluate.costs.missed", source, rarest)
        out[i, off[i]] = v
    for name, row in costs.matrix.items():
        i = _class_index(name, classes, "evaluate.costs.matrix", source, rarest)
        for decided, v in row.items():
            out[i, _class_index(decided, classes, f"evaluate.costs.matrix.{name}", source, rarest)] = v
    return out


def deploy_prior_vector(
    prior: dict[str, float] | None, classes: list[str], source: str = "params.yaml"
) -> np.ndarray | None:
    """``evaluate.deploy_prior`` as a normalised (C,) vector over ``classes`` (classes it leaves
    out get 0), or None; a class name not in ``classes`` is a :class:`ConfigError`."""
    if prior is None:
        return None
    classes = [str(c) for c in classes]
    out = np.zeros(len(classes))
    for name, v in prior.items():
        out[_class_index(name, classes, "evaluate.deploy_prior", source)] = v
    _check(out.sum() > 0, source, "evaluate.deploy_prior must give some class a share > 0; all are 0")
    return out / out.sum()


@dataclass(frozen=True)
class Constraint:
    """``<metric> >= <bound>`` or ``<metric> <= <bound>`` from ``evaluate.select.constraints``."""

    metric: str
    op: str  # ">=" or "<="
    bound: float

    def holds(self, value: float) -> bool:
        return value >= self.bound if self.op == ">=" else value <= self.bound

    def __str__(self) -> str:
        base, slash, cls = self.metric.partition("/")
        if slash and not re.fullmatch(r"[^\s'\"<>=]+", cls):
            cls = '"' + cls.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{base}{slash}{cls} {self.op} {self.bound:g}"


_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
# <metric>, or <metric>/<class> with the class quoted ("..." or '...', backslash escapes) when it
# holds spaces, quotes or comparison signs
_CONSTRAINT = re.compile(
    r"""^\s*(?P<base>\w+)(?:/(?P<cls>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|\S+?))?"""
    rf"\s*(?P<op>>=|<=)\s*(?P<bound>{_NUMBER})\s*$"
)


def parse_constraint(text: str, source: str = "params.yaml") -> Constraint:
    """Parse ``"recall/8 >= 0.6"`` or ``'recall/"high risk" >= 0.6'``; the metric and class names
    are checked later against the metrics and the classes."""
    m = _CONSTRAINT.match(text)
    if not m:
        raise ConfigError(
            f"{source}: evaluate.select.constraints entry {text!r} must read '<metric> >= <number>' "
            "or '<metric> <= <number>', e.g. 'recall/8 >= 0.6' (quote a class name with spaces: "
            "'recall/\"high risk\" >= 0.6')"
        )
    metric, cls = m.group("base"), m.group("cls")
    if cls is not None:
        if cls[0] in "'\"":
            cls = re.sub(r"\\(.)", r"\1", cls[1:-1])
        metric = f"{metric}/{cls}"
    return Constraint(metric, m.group("op"), float(m.group("bound")))
