"""Data sources, the stratified split, the long-tailed training profile and preprocessing.

The training split is made long-tailed with the exponential profile of Cao et al. (2019) and
Cui et al. (2019): ranking classes by training count (ties by class order), class i keeps

    n_i = floor(n_max * rho ** (-i / (C - 1)))

samples (at least one, at most what it has), so that n_max / n_min ~= rho. Validation and test
splits are left as split. Preprocessing is fitted on the final training split only, exported as a
:class:`~pipeline.data.preprocessing.Preprocessing`, and every split's features come from replaying it.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_digits, make_classification
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from pipeline.artifacts import LABEL, SOURCE_ROW, SPLITS, decode_labels, split_arrays
from pipeline.data.columns import Column, DataError, apply_decisions, class_labels, decide_columns, read_table
from pipeline.config import DataConfig, SyntheticConfig, to_dict
from pipeline.data.preprocessing import Preprocessing, from_fitted

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    """The three prepared splits: float32 features, the label column :data:`LABEL` and each row's
    position in the source, :data:`SOURCE_ROW`."""

    splits: dict[str, pd.DataFrame]
    preprocessing: Preprocessing  # fitted on the training split; gives every split's features
    unlabelled: int = 0  # rows dropped for an empty label

    @property
    def classes(self) -> list[str]:
        """Class names, in the order used for indices and p_<class> columns."""
        return list(self.preprocessing.classes)

    @property
    def feature_names(self) -> list[str]:
        """Output feature names, in column order."""
        return list(self.preprocessing.feature_names)

    @property
    def columns(self) -> list[Column]:
        """What each raw feature column became."""
        return list(self.preprocessing.columns)

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """``X`` (N, F) float32 and ``y`` (N,) int64 class indices of one split."""
        return split_arrays(self.splits[split], self.classes)


def long_tail_profile(n_classes: int, ratio: float) -> np.ndarray:
    """Relative class sizes ``rho ** (-i / (C - 1))`` for i = 0..C-1, head first."""
    if n_classes < 2:
        return np.ones(n_classes)
    return ratio ** (-np.arange(n_classes) / (n_classes - 1))


def long_tail_counts(counts: np.ndarray, ratio: float) -> np.ndarray:
    """Per-class counts to keep so the training split follows the long-tailed profile.

    Parameters
    ----------
    counts : (C,) int
        Available samples per class, in class order.
    ratio : float
        rho >= 1, the wanted n_max / n_min; 1 keeps ``counts`` unchanged.

    Returns
    -------
    (C,) int, in class order: ``min(counts, max(1, floor(n_max * profile[rank])))`` where rank
    orders classes by count, largest first, ties by class order.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if ratio == 1:
        return counts.copy()
    rank = np.empty(len(counts), dtype=np.int64)
    rank[np.argsort(-counts, kind="stable")] = np.arange(len(counts))
    target = np.floor(counts.max() * long_tail_profile(len(counts), ratio)[rank]).astype(np.int64)
    return np.minimum(counts, np.maximum(target, 1))


def subsample_long_tail(y: np.ndarray, n_classes: int, ratio: float, seed: int) -> np.ndarray:
    """Sorted row indices of ``y`` (class indices) that keep :func:`long_tail_counts` per class."""
    counts = np.bincount(y, minlength=n_classes)
    keep = long_tail_counts(counts, ratio)
    rng = np.random.default_rng(seed)
    rows = [rng.choice(np.flatnonzero(y == c), size=k, replace=False) for c, k in enumerate(keep)]
    return np.sort(np.concatenate(rows))


def load_source(cfg: DataConfig) -> tuple[pd.DataFrame, pd.Series]:
    """Raw features and labels of ``cfg.source``, before any split."""
    if cfg.source == "digits":
        bunch = load_digits(as_frame=True)
        return bunch.data, bunch.target.rename("digit")
    if cfg.source == "synthetic":
        return _synthetic(cfg.synthetic, cfg.seed)
    if cfg.source == "csv":
        return _read_csv_source(Path(cfg.path), cfg.target, cfg.encoding)
    raise DataError(f"data.source must be one of digits, synthetic, csv; got {cfg.source!r}")


def _synthetic(cfg: SyntheticConfig, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    weights = long_tail_profile(cfg.n_classes, cfg.imbalance_ratio)
    X, y = make_classification(
        n_samples=cfg.n_samples,
        n_features=cfg.n_features,
        n_informative=cfg.n_informative,
        n_redundant=0,
        n_classes=cfg.n_classes,
        n_clusters_per_class=1,
        weights=list(weights / weights.sum()),
        class_sep=cfg.class_sep,
        flip_y=0.0,
        random_state=seed,
    )
    columns = [f"x{i}" for i in range(cfg.n_features)]
    return pd.DataFrame(X.astype(np.float32), columns=columns), pd.Series(y, name="class")


def _read_csv_source(path: Path, target: str, encoding: str) -> tuple[pd.DataFrame, pd.Series]:
    frame = read_table(path, target, encoding=encoding)
    return frame.drop(columns=[target]), frame[target]


def _preprocessor(X: pd.DataFrame, max_categories: int) -> ColumnTransformer:
    """Numeric columns: median imputation, standardisation; text columns: most frequent level for
    missing cells, one-hot with at most ``max_categories`` columns (rarer levels share one)."""
    numeric = X.select_dtypes(include=["number", "bool"]).columns.tolist()
    categorical = [c for c in X.columns if c not in numeric]
    return ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"),
                    OneHotEncoder(
                        handle_unknown="infrequent_if_exist", max_categories=max_categories, sparse_output=False
                    ),
                ),
                categorical,
            ),
        ],
        sparse_threshold=0.0,
    )


def _log_columns(columns: list[Column]) -> None:
    plain = [c.name for c in columns if c.kind == "numeric" and c.detail == "numeric"]
    if plain:
        shown = ", ".join(plain[:5]) + (f", … ({len(plain)} in all)" if len(plain) > 5 else "")
        log.debug("%d numeric column(s) kept as they are: %s", len(plain), shown)
    for c in columns:
        if not (c.kind == "numeric" and c.detail == "numeric"):
            log.info("column %r: %s", c.name, c.detail)


def prepare(cfg: DataConfig) -> Prepared:
    """Load the source, decide what each column becomes, split, make the training split
    long-tailed, fit preprocessing on it and replay it on every split."""
    X, y = load_source(cfg)
    X, y = X.reset_index(drop=True), y.reset_index(drop=True)  # the index is the source row
    labels, classes, unlabelled = class_labels(y)
    if unlabelled:
        log.warning("dropping %d row(s) without a label (empty %r cell)", unlabelled, y.name)
    X = X.loc[labels.index]
    source_rows = labels.index.to_numpy(np.int64)
    labels = labels.to_numpy()
    counts = pd.Series(labels).value_counts()
    too_small = counts[counts < 3].sort_values(kind="stable")
    if len(too_small):
        said = ", ".join(f"{c!r} ({n} row{'s' if n > 1 else ''})" for c, n in too_small.items())
        raise DataError(
            f"class{'es' if len(too_small) > 1 else ''} {said}: each class needs at least 3 rows "
            "(one per split); merge or drop the smaller classes"
        )
    if len(classes) < 2:
        raise DataError(f"the label has a single class {classes[0]!r}; at least 2 are needed")
    columns = decide_columns(X)
    _log_columns(columns)
    features = apply_decisions(X, columns)
    if features.shape[1] == 0:
        raise DataError(
            "no feature columns are left once identifiers are dropped: "
            + "; ".join(f"{c.name}: {c.detail}" for c in columns)
        )

    idx = np.arange(len(labels))
    holdout = cfg.val_size + cfg.test_size
    try:
        train_idx, rest = train_test_split(idx, test_size=holdout, stratify=labels, random_state=cfg.seed)
        val_idx, test_idx = train_test_split(
            rest, test_size=cfg.test_size / holdout, stratify=labels[rest], random_state=cfg.seed
        )
    except ValueError as exc:
        raise DataError(f"cannot split {len(labels)} rows into train/val/test: {exc}") from None

    y_train = decode_labels(labels[train_idx], classes, what="label")
    keep = subsample_long_tail(y_train, len(classes), cfg.imbalance_ratio, cfg.seed)
    train_idx = train_idx[keep]

    fitted = _preprocessor(features, cfg.max_categories).fit(features.iloc[train_idx])
    pre = from_fitted(fitted, columns, classes)
    splits = {}
    for split, rows in zip(SPLITS, (train_idx, val_idx, test_idx)):
        frame = pd.DataFrame(pre.transform(X.iloc[rows]), columns=list(pre.feature_names))
        frame[LABEL] = labels[rows]
        frame[SOURCE_ROW] = source_rows[rows]
        splits[split] = frame
    return Prepared(splits=splits, preprocessing=pre, unlabelled=unlabelled)


def prepared_meta(prepared: Prepared, cfg: DataConfig) -> dict:
    """``meta.json`` (:class:`pipeline.artifacts.Meta`) of the prepared splits."""
    counts = {s: class_counts(prepared.splits[s], prepared.classes) for s in SPLITS}
    train = counts["train"].values()
    return {
        "source": cfg.source,
        "classes": prepared.classes,
        "n_features": len(prepared.feature_names),
        "counts": counts,
        "sizes": {s: len(prepared.splits[s]) for s in SPLITS},
        "train_imbalance_ratio": max(train) / min(train),
        "digest": digest(prepared),
        "params": to_dict(cfg),
        "rows_without_label": prepared.unlabelled,
        "columns": [c.as_dict() for c in prepared.columns],
    }


def class_counts(frame: pd.DataFrame, classes: list[str]) -> dict[str, int]:
    """Rows per class of one split, every class listed."""
    counts = frame[LABEL].value_counts()
    return {c: int(counts.get(c, 0)) for c in classes}


def digest(prepared: Prepared) -> str:
    """sha256 of the prepared content (features, labels, class order), stable across writers."""
    h = hashlib.sha256()
    h.update("\x1f".join(prepared.classes).encode())
    for split in SPLITS:
        X, y = prepared.arrays(split)
        h.update(split.encode())
        h.update(np.ascontiguousarray(X).tobytes())
        h.update(y.tobytes())
    return h.hexdigest()
