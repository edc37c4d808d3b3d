"""The fitted preprocessing as a saved, replayable artefact: ``preprocessing.json``.

prepare fits scikit-learn's ColumnTransformer (:func:`pipeline.data.prepare._preprocessor`) on the
training split; :func:`from_fitted` exports every number it learned into a :class:`Preprocessing`
(the column decisions, the class names, the output feature names, per numeric feature its median
and the scaler's mean and scale, per categorical column its most frequent level, its kept levels
and the levels grouped as infrequent). :meth:`Preprocessing.transform` replays it with numpy and
pandas alone, on the training rows (prepare's split features come from it) and on new raw rows
alike, giving the same float32 features as scikit-learn, byte for byte. The file is JSON (floats
round-trip exactly), with a ``format`` and a ``version``; :func:`load_preprocessing` reads it.

New rows are coerced as follows:

- columns the preprocessing does not need (identifiers, empty columns, anything extra) are
  ignored; :meth:`Preprocessing.unexpected_columns` names the ones training never saw;
- :func:`pipeline.data.columns.apply_decisions` turns CSV text, integers and floats into the decided
  types; numbers are computed in float32 when every numeric input arrives as float32, else in
  float64, as scikit-learn does;
- a categorical column that arrives as numbers (a CSV reader turned ``007`` into 7) maps each
  number to the one known level with that numeric value, when exactly one exists;
- a missing cell is imputed (median, most frequent level).

A required column that is missing is an error. With ``strict=True`` each of these is a one-line
:class:`~pipeline.data.columns.DataError` naming the column and the first offending value with its
row position (0-based): a numeric cell that is not missing yet not a number, a date cell that does
not parse, a categorical level never seen in training; and a row whose every needed cell is missing. Without it they behave as scikit-learn
does: an unreadable number or date is missing, so imputed; an unseen level goes to the infrequent
column where there is one, else to no column at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipeline import PipelineError
from pipeline.data.columns import MISSING, Column, DataError, _as_text, apply_decisions
from pipeline.io import read_json, write_json

if TYPE_CHECKING:
    from sklearn.compose import ColumnTransformer

PREPROCESSING_FILE = "preprocessing.json"
PREPROCESSING_FORMAT = "imbalance-pipeline/preprocessing"
PREPROCESSING_VERSION = 1
SHOWN = 5  # names or levels quoted in an error at most


@dataclass(frozen=True)
class NumericFeature:
    """One numeric feature (after the column decisions: a date gives three)."""

    name: str
    impute: float  # the training median, for missing cells
    mean: float  # the scaler's
    scale: float  # the scaler's standard deviation; 1.0 where the training variance is zero


@dataclass(frozen=True)
class CategoricalFeature:
    """One categorical column, one-hot encoded."""

    name: str
    impute: str  # the most frequent training level, for missing cells
    levels: tuple[str, ...]  # the levels with a column of their own, in output order
    infrequent: tuple[str, ...]  # the levels sharing one column (after the others)
    infrequent_feature: str | None  # that column's output name; None when nothing is grouped

    @property
    def known(self) -> tuple[str, ...]:
        return self.levels + self.infrequent


CHECK_ROWS = 10_000  # rows of raw cells read as text at once (fixed-width text: its widest cell sets the size)


def _blank(cells: pd.DataFrame) -> np.ndarray:
    """(N, columns) True where a cell says nothing (None, NaN, or text in MISSING once stripped)."""
    text = cells.astype(str).to_numpy(dtype=str)
    return np.isin(np.char.strip(np.where(cells.isna().to_numpy(), "", text)), list(MISSING))


@dataclass(frozen=True)
class Preprocessing:
    """Everything the fitted preprocessing learned on the training split."""

    columns: tuple[Column, ...]  # the decision about every raw feature column, in the file's order
    classes: tuple[str, ...]  # class names in the model's output order
    feature_names: tuple[str, ...]  # output columns, in order: numeric features, then one-hot
    numeric: tuple[NumericFeature, ...]
    categorical: tuple[CategoricalFeature, ...]

    @property
    def raw_columns(self) -> list[str]:
        """The raw columns a prediction needs, in the training file's order."""
        used = {f.name for f in self.numeric} | {f.name for f in self.categorical}
        return [c.name for c in self.columns if used.intersection(c.features)]

    def input_types(self) -> dict[str, str]:
        """The raw columns a prediction needs, each with its MLflow type, the served model's
        signature: ``double`` for a numeric column, ``string`` for a categorical one and for a
        date (ISO text: MLflow's CSV reader cannot read a ``datetime`` column)."""
        kinds = {c.name: c.kind for c in self.columns}
        return {name: "double" if kinds[name] == "numeric" else "string" for name in self.raw_columns}

    def typed(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` (CSV cells as text, or typed) with its needed columns as :meth:`input_types`
        says, as the served model receives them: numbers as float64, levels and dates as text. A
        missing column, or a cell that is not missing yet not of its column's type, is a
        one-line :class:`~pipeline.data.columns.DataError` naming the column (the value and its row)."""
        self._require(frame)
        decisions = [c for c in self.columns if c.name in self.raw_columns]
        applied = apply_decisions(frame[self.raw_columns], decisions)
        self._check(frame, applied, decisions, types_only=True)
        out = frame.copy()
        for name, kind in self.input_types().items():
            text = _as_text(frame[name]).str.strip()
            text = text.where(~text.isin(MISSING))
            out[name] = applied[name] if kind == "double" else text.astype(object)
        return out

    def _require(self, frame: pd.DataFrame) -> None:
        needed = self.raw_columns
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            more = f" and {len(missing) - SHOWN} more" if len(missing) > SHOWN else ""
            raise DataError(
                f"missing column(s) {', '.join(map(repr, missing[:SHOWN]))}{more}; "
                f"the preprocessing needs {len(needed)}: {', '.join(needed[:SHOWN])}"
                + (", …" if len(needed) > SHOWN else "")
            )

    @staticmethod
    def _refuse(name: str, values: pd.Series, bad: pd.Series, why: str) -> None:
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"column {name!r}: {values.iloc[row]!r} in row {row} is {why}")

    def example(self) -> pd.DataFrame:
        """One typical raw row, made of what was learned and no training row: each numeric
        column's median, each date column's median day, each categorical column's most frequent
        level (MLflow's input example), typed as :meth:`input_types` says."""
        numeric = {f.name: f.impute for f in self.numeric}
        categorical = {f.name: f.impute for f in self.categorical}
        row: dict[str, Any] = {}
        for c in self.columns:
            if c.name not in self.raw_columns:
                continue
            if c.kind == "date":
                days = numeric.get(c.features[0], 0.0)
                row[c.name] = (pd.Timestamp("1970-01-01") + pd.Timedelta(days=float(days))).date().isoformat()
            elif c.kind == "numeric":
                row[c.name] = numeric[c.name]
            else:
                row[c.name] = categorical[c.name]
        return pd.DataFrame([row])

    def unexpected_columns(self, frame: pd.DataFrame) -> list[str]:
        """Columns of ``frame`` that the training file's features did not have (ignored)."""
        known = {c.name for c in self.columns}
        return [str(c) for c in frame.columns if c not in known]

    def transform(self, frame: pd.DataFrame, *, strict: bool = False) -> np.ndarray:
        """(N, F) float32 features of raw rows (the module's docstring gives the rules)."""
        self._require(frame)
        needed = self.raw_columns
        raw = frame[needed].copy()
        for cat in self.categorical:
            raw[cat.name] = _numbers_as_levels(raw[cat.name], cat.known)
        decisions = [c for c in self.columns if c.name in needed]
        applied = apply_decisions(raw, decisions)
        if strict:
            self._check(raw, applied, decisions)

        out = np.zeros((len(frame), len(self.feature_names)), dtype=np.float32)
        if self.numeric:
            out[:, : len(self.numeric)] = self._numeric(applied)
        at = len(self.numeric)
        for cat in self.categorical:
            values = applied[cat.name].fillna(cat.impute)
            codes = pd.Index(cat.levels, dtype=object).get_indexer(values)
            rows = np.arange(len(values))
            hit = codes >= 0
            out[rows[hit], at + codes[hit]] = 1.0
            if cat.infrequent_feature is not None:  # known infrequent and unseen levels alike
                out[rows[~hit], at + len(cat.levels)] = 1.0
            at += len(cat.levels) + (cat.infrequent_feature is not None)
        return out

    def _numeric(self, applied: pd.DataFrame) -> np.ndarray:
        """Imputed and standardised, in the precision the numbers arrive in (scikit-learn's)."""
        names = [f.name for f in self.numeric]
        dtype = np.float32 if all(applied[n].dtype == np.float32 for n in names) else np.float64
        x = applied[names].to_numpy(dtype=dtype, na_value=np.nan)
        impute = np.array([f.impute for f in self.numeric], dtype=dtype)
        x = np.where(np.isnan(x), impute, x)
        mean = np.array([f.mean for f in self.numeric], dtype=dtype)
        scale = np.array([f.scale for f in self.numeric], dtype=dtype)
        return (x - mean) / scale

    def _check(
        self, raw: pd.DataFrame, applied: pd.DataFrame, decisions: list[Column], *, types_only: bool = False
    ) -> None:
        """The first cell :meth:`transform` would have to guess about, as a one-line error: a row
        with nothing in it, a level never seen (unless ``types_only``), a number or a date that
        does not read."""
        cells = raw[[c.name for c in decisions]]
        blank = np.concatenate(  # (N, columns): read a block of rows at once (a column at a time is 1 ms a column)
            [_blank(cells.iloc[i : i + CHECK_ROWS]) for i in range(0, max(len(cells), 1), CHECK_ROWS)]
        )
        if not types_only:
            empty = np.flatnonzero(blank.all(axis=1))
            if len(empty):
                raise DataError(
                    f"row {int(empty[0])} is empty: none of the {len(decisions)} columns the model reads has a value"
                )
        known = {c.name: c.known for c in self.categorical}
        for j, col in enumerate(decisions):
            if col.kind == "categorical" and types_only:
                continue
            if col.kind == "categorical":
                values = applied[col.name]
                bad = values.notna() & ~values.isin(known[col.name])
                levels = known[col.name]
                why = f"a level never seen in training; known: {', '.join(map(repr, levels[:SHOWN]))}" + (
                    f", … ({len(levels)} in all)" if len(levels) > SHOWN else ""
                )
            else:
                bad = pd.Series(~blank[:, j], index=raw.index) & applied[col.features[0]].isna()
                why = "not a number" if col.kind == "numeric" else "not an ISO date (YYYY-MM-DD)"
            self._refuse(col.name, raw[col.name], bad, why)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``preprocessing.json``)."""
        return {
            "format": PREPROCESSING_FORMAT,
            "version": PREPROCESSING_VERSION,
            "classes": list(self.classes),
            "features": list(self.feature_names),
            "columns": [c.as_dict() for c in self.columns],
            "numeric": [{"name": f.name, "impute": f.impute, "mean": f.mean, "scale": f.scale} for f in self.numeric],
            "categorical": [
                {
                    "name": f.name,
                    "impute": f.impute,
                    "levels": list(f.levels),
                    "infrequent": list(f.infrequent),
                    "infrequent_feature": f.infrequent_feature,
                }
                for f in self.categorical
            ],
        }

    @classmethod
    def from_dict(cls, d: Any) -> Preprocessing:
        """The inverse of :meth:`to_dict`; another format or version, or a malformed dict, is a
        :class:`~pipeline.PipelineError`."""
        if not isinstance(d, dict) or d.get("format") != PREPROCESSING_FORMAT:
            raise PipelineError("not a preprocessing file written by this pipeline")
        if d.get("version") != PREPROCESSING_VERSION:
            raise PipelineError(
                f"preprocessing version {d.get('version')!r}; this code reads version {PREPROCESSING_VERSION}"
            )
        try:
            pre = cls(
                columns=tuple(Column(c["name"], c["kind"], c["detail"], tuple(c["features"])) for c in d["columns"]),
                classes=tuple(d["classes"]),
                feature_names=tuple(d["features"]),
                numeric=tuple(
                    NumericFeature(f["name"], float(f["impute"]), float(f["mean"]), float(f["scale"]))
                    for f in d["numeric"]
                ),
                categorical=tuple(
                    CategoricalFeature(
                        f["name"], f["impute"], tuple(f["levels"]), tuple(f["infrequent"]), f["infrequent_feature"]
                    )
                    for f in d["categorical"]
                ),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PipelineError(f"malformed preprocessing ({type(exc).__name__}: {exc})") from None
        width = len(pre.numeric) + sum(len(f.levels) + (f.infrequent_feature is not None) for f in pre.categorical)
        if width != len(pre.feature_names):
            raise PipelineError(
                f"malformed preprocessing: {len(pre.feature_names)} feature names for {width} output columns"
            )
        return pre


def _numbers_as_levels(values: pd.Series, levels: tuple[str, ...]) -> pd.Series:
    """A categorical column that arrived as numbers: each number as the one level with that
    numeric value, where exactly one exists; other cells as they are."""
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        return values
    numbers = pd.to_numeric(pd.Series(levels, dtype=object), errors="coerce")
    unique = numbers.drop_duplicates(keep=False).dropna()
    by_number = dict(zip(unique.to_numpy(np.float64), (levels[i] for i in unique.index)))
    mapped = pd.Series(values.to_numpy(dtype=np.float64, na_value=np.nan), index=values.index).map(by_number)
    return values.astype(object).where(mapped.isna(), mapped)


def from_fitted(column_transformer: ColumnTransformer, columns: list[Column], classes: list[str]) -> Preprocessing:
    """Export a ColumnTransformer fitted by :func:`pipeline.data.prepare._preprocessor`.

    Inputs the imputer dropped (no value in the training rows) have no output, as in
    scikit-learn, and are left out.
    """
    ct = column_transformer
    names = [str(n) for n in ct.get_feature_names_out()]
    numeric: list[NumericFeature] = []
    categorical: list[CategoricalFeature] = []
    for kind, pipe, inputs in ct.transformers_:
        if kind not in ("num", "cat") or len(inputs) == 0:
            continue
        imputer, last = pipe[0], pipe[-1]
        stats = imputer.statistics_
        kept = [(name, stat) for name, stat in zip(inputs, stats) if not pd.isna(stat)]
        if kind == "num":
            numeric += [
                NumericFeature(str(name), float(stat), float(mean), float(scale))
                for (name, stat), mean, scale in zip(kept, last.mean_, last.scale_)
            ]
            continue
        out = names[ct.output_indices_["cat"]]
        at = 0
        for (name, stat), levels, infrequent in zip(kept, last.categories_, last.infrequent_categories_):
            grouped = [str(v) for v in (infrequent if infrequent is not None else ())]
            own = [str(v) for v in levels if str(v) not in grouped]
            at += len(own) + bool(grouped)
            categorical.append(
                CategoricalFeature(str(name), str(stat), tuple(own), tuple(grouped), out[at - 1] if grouped else None)
            )
    return Preprocessing(tuple(columns), tuple(classes), tuple(names), tuple(numeric), tuple(categorical))


def save_preprocessing(path: str | Path, pre: Preprocessing) -> None:
    """Write ``pre`` as JSON to ``path`` atomically."""
    write_json(path, pre.to_dict())


def load_preprocessing(path: str | Path) -> Preprocessing:
    """The :class:`Preprocessing` in ``path``; anything else is a one-line error naming the file."""
    d = read_json(path, what="preprocessing")
    try:
        return Preprocessing.from_dict(d)
    except PipelineError as exc:
        raise PipelineError(f"{path}: {exc}") from None
