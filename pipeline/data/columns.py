"""What each raw column becomes, decided once, written down, and replayable.

A user's table arrives as text (CSV) or typed (Parquet). :func:`read_table` reads it without
guessing (every CSV cell as text, so ``007`` and ``7`` stay apart and ``n/a`` stays a word) and
refuses what cannot be used: an empty file, a header without rows, a column name given twice.
:func:`class_labels` turns the target into class names and their order. :func:`decide_columns`
then decides, for each feature column and in this order:

1. **date**: at least 95 % of its non-missing cells are ISO dates (``2024-03-01``, optionally
   with a time) → days since 1970-01-01, month and weekday, three numeric features;
2. **identifier** → dropped: unique per row **and** either named like one (``id``, ``*_id``,
   ``key``, ``uuid``, …), or integers forming a nearly consecutive range (and, under 100 rows,
   running in order), or text of one fixed shape (``r00012``, UUIDs). Never a column with fractional numbers: a unique amount is kept;
3. **numeric**: at least 95 % of its non-missing cells read as numbers → numeric, the others
   missing (counted); a column of numbers with leading zeros (``00123``) is a code and stays
   categorical;
4. **categorical**: anything else, one-hot encoded with at most ``data.max_categories`` columns
   (the rarer levels, by training count, share one column).

A column with no value at all is dropped as **empty**.

Every decision is a :class:`Column` (``meta.json``'s ``columns`` entry, one log line each), and
:func:`apply_decisions` replays them on any rows, the training split's or new ones.
"""

from __future__ import annotations

import csv
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import PipelineError

# Feature cells read as missing (the target's cells never are: "n/a" can be a class).
MISSING = frozenset({"", "NA", "N/A", "n/a", "na", "NaN", "nan", "null", "NULL", "Null", "None", "none", "#N/A", "?"})
SHARE = 0.95  # a column is a date / numeric column when this share of its non-missing cells parse
SMALL = 100  # rows under which unique close-packed integers must also run in order to be row numbers
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$")
# named like an identifier: id, key, uuid…, or ending in _id, -key, " uuid"…, or camelCase customerId
_ID_NAME = re.compile(
    r"(?i:^(?:id|key|uuid|guid|index|row|rowid|record)$|[_\- .](?:id|key|uuid|guid)$)|[a-z](?:Id|ID)$"
)
_INTEGER = re.compile(r"^[+-]?\d+$")
_LEADING_ZERO = re.compile(r"^[+-]?0\d")


class DataError(PipelineError):
    """Input data that cannot be used as given."""


@dataclass(frozen=True)
class Column:
    """The decision about one raw column."""

    name: str
    kind: str  # "date" | "identifier" | "empty" | "numeric" | "categorical"
    detail: str  # why, in words: what the log line and the report say
    features: tuple[str, ...]  # the columns it becomes before encoding ((): dropped)

    def as_dict(self) -> dict:
        return {**asdict(self), "features": list(self.features)}


SEPARATORS = ",;\t|"  # what a CSV's separator may be (sniffed from the file's start)


def read_table(
    path: Path,
    target: str | None,
    *,
    what: str = "data.path",
    encoding: str = "utf-8",
    encoding_key: str = "data.encoding",
) -> pd.DataFrame:
    """The table at ``path`` (.csv: every cell as text, its separator sniffed among
    :data:`SEPARATORS`; .parquet: as typed), checked.

    ``target`` names the label column a training file must have (None: rows to predict, which
    may have none); ``what`` is where the path came from, ``encoding`` the CSV's text encoding
    (``encoding_key`` where it is set), for the error messages.
    """
    if not path.is_file():
        raise DataError(f"{what}: {path} is not a file (a .csv or .parquet file is expected)")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise DataError(f"{what}: {path} must end in .csv or .parquet; got {suffix or 'no suffix'!r}")
    encoding = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    sep = ","
    try:
        if suffix == ".csv":
            with open(path, newline="", encoding=encoding) as fh:
                start = fh.read(1 << 16)
            try:
                sep = csv.Sniffer().sniff("\n".join(start.splitlines()[:20]), delimiters=SEPARATORS).delimiter
            except csv.Error:
                sep = ","
            header = next(csv.reader(start.splitlines()[:1], delimiter=sep), None)
            if not header:
                raise DataError(f"{what}: {path} is empty (a header row and data rows are expected)")
            _refuse_duplicates(header, path, what, target)
            frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_filter=False, encoding=encoding)
        else:
            frame = pd.read_parquet(path)
            _refuse_duplicates([str(c) for c in frame.columns], path, what, target)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{what}: {path} is not {encoding.removesuffix('-sig')} text (byte 0x{exc.object[exc.start]:02x} at "
            f"position {exc.start}); set {encoding_key} to its encoding, e.g. latin-1 or cp1252"
        ) from None
    except LookupError:
        raise DataError(
            f"{encoding_key}: {encoding!r} is not an encoding Python knows (e.g. utf-8, latin-1, cp1252)"
        ) from None
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{what}: cannot read {path}: {first}") from None
    frame.columns = [str(c) for c in frame.columns]
    if target is None:
        return frame
    if target not in frame.columns:
        shown = ", ".join(frame.columns[:20]) + (", ..." if frame.shape[1] > 20 else "")
        hint = next(
            (
                f" (one column: is the separator {c!r}? it is sniffed among , ; tab |)"
                for c in ";\t|,"
                if frame.shape[1] == 1 and c in frame.columns[0]
            ),
            "",
        )
        raise DataError(f"data.target: column {target!r} not in {path}; columns: {shown}{hint}")
    if len(frame) == 0:
        raise DataError(f"{what}: {path} has a header but no rows")
    if frame.shape[1] < 2:
        raise DataError(f"{what}: {path} has no feature columns besides {target!r}")
    return frame


def _refuse_duplicates(names: list[str], path: Path, what: str, target: str | None) -> None:
    seen = set()
    for name in names:
        if name in seen:
            why = " (a second copy of the target would leak the label into the features)" if target else ""
            raise DataError(f"{what}: column {name!r} appears twice in {path}; rename or drop one{why}")
        seen.add(name)


def _as_text(values: pd.Series) -> pd.Series:
    """Cells as text, with None/NaN as "" (typed Parquet columns read like CSV cells)."""
    missing = values.isna()
    text = values.astype(str)  # vectorised; a CSV read as text has no missing cell at all
    return text.where(~missing, "") if missing.any() else text


def class_labels(target: pd.Series) -> tuple[pd.Series, list[str], int]:
    """Labels as text, the class names in order, and how many rows had no label.

    Empty cells (and None/NaN in Parquet) are no label; every other text is a class name as
    written (``007`` and ``7`` differ, ``n/a`` is a class). Class order: numeric when every name
    reads as a number (ties, such as ``007`` and ``7``, by text), else order of first appearance.
    """
    labels = _as_text(target).str.strip()
    missing = int((labels == "").sum())
    labels = labels[labels != ""]
    first_seen = list(dict.fromkeys(labels))
    numbers = pd.to_numeric(pd.Series(first_seen, dtype=object), errors="coerce")
    if len(first_seen) and numbers.notna().all():
        order = sorted(range(len(first_seen)), key=lambda i: (float(numbers[i]), first_seen[i]))
        return labels, [first_seen[i] for i in order], missing
    return labels, first_seen, missing


def _numbers(text: pd.Series) -> pd.Series:
    return pd.to_numeric(text.str.strip(), errors="coerce")


def _fixed_shape(text: pd.Series) -> bool:
    """Every cell has one shape, each with digits: letters as 'a' and digits as '9' (``r00012``),
    or hexadecimal digits as 'x' (UUIDs)."""
    if not text.str.contains(r"\d").all():
        return False
    plain = text.str.replace(r"[A-Za-z]", "a", regex=True).str.replace(r"\d", "9", regex=True)
    hexed = text.str.replace(r"[0-9A-Fa-f]", "x", regex=True)
    return plain.nunique() == 1 or hexed.nunique() == 1


def _identifier(name: str, present: pd.Series, numbers: pd.Series) -> str | None:
    """Why a column unique per row is an identifier, or None when it is not one."""
    if numbers.notna().all() and present.str.contains(r"[.eE]").any():
        return None  # fractional numbers (an amount, a measurement) are never identifiers
    if _ID_NAME.search(name):
        return "dropped: unique per row and named like an identifier"
    if present.str.match(_INTEGER).all():
        low, high = numbers.min(), numbers.max()
        # in a short file a measurement can be unique and close-packed by chance (30 distinct
        # ages): there, only a column that also runs in order counts as a row number
        ordered = numbers.is_monotonic_increasing or numbers.is_monotonic_decreasing
        if high - low + 1 <= 1.1 * len(present) and (ordered or len(present) >= SMALL):
            return f"dropped: unique integers forming a nearly consecutive range ({low:.0f} to {high:.0f})"
        return None
    if _fixed_shape(present):
        return f"dropped: unique per row, every value of one shape (e.g. {present.iloc[0]!r})"
    return None


def decide(name: str, values: pd.Series) -> Column:
    """The decision about one feature column (see the module's docstring for the rules)."""
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_float_dtype(values):
        return Column(name, "numeric", "numeric", (name,))
    text = _as_text(values).str.strip()
    present = text[~text.isin(MISSING)]
    if present.empty:
        return Column(name, "empty", "dropped: every cell is missing", ())
    n = len(present)
    dates = present[present.str.match(_ISO_DATE)]
    if len(dates) / n >= SHARE:
        parsed = int(pd.to_datetime(dates, format="ISO8601", errors="coerce", utc=True).notna().sum())
        if parsed / n >= SHARE:
            return Column(
                name,
                "date",
                f"ISO dates ({parsed} of {len(present)} parsed): days since 1970-01-01, month, weekday",
                (f"{name}_days", f"{name}_month", f"{name}_weekday"),
            )
    numbers = _numbers(present)
    if len(present) == len(text) > 1 and present.nunique() == len(present):
        why = _identifier(name, present, numbers)
        if why:
            return Column(name, "identifier", why, ())
    parsed = int(numbers.notna().sum())
    if parsed / n >= SHARE:
        if present[numbers.notna()].str.match(_LEADING_ZERO).any():
            return Column(name, "categorical", "numbers with leading zeros: a code, kept as categories", (name,))
        lost = len(present) - parsed
        detail = "numeric" if not lost else f"numeric; {lost} cell(s) not numbers became missing"
        return Column(name, "numeric", detail, (name,))
    return Column(name, "categorical", f"categorical, {present.nunique()} levels", (name,))


def decide_columns(features: pd.DataFrame) -> list[Column]:
    return [decide(name, features[name]) for name in features.columns]


def apply_decisions(features: pd.DataFrame, columns: list[Column]) -> pd.DataFrame:
    """The feature frame the decisions describe: numeric columns as float64 (NaN for missing),
    dates as their three numbers, categorical columns as text (NaN for missing), identifiers
    gone. Columns absent from ``features`` are an error naming them."""
    out = {}
    for col in columns:
        if not col.features:  # identifiers, empty columns
            continue
        if col.name not in features.columns:
            raise DataError(f"column {col.name!r} is missing")
        values = features[col.name]
        if col.kind == "numeric" and (pd.api.types.is_float_dtype(values) or pd.api.types.is_bool_dtype(values)):
            out[col.name] = values.astype(values.dtype if pd.api.types.is_float_dtype(values) else np.float64)
            continue
        text = _as_text(values).str.strip()
        text = text.where(~text.isin(MISSING))
        if col.kind == "numeric":
            out[col.name] = _numbers(text.fillna("")).astype(np.float64)
        elif col.kind == "date":
            when = pd.to_datetime(
                text.where(text.fillna("").str.match(_ISO_DATE)), format="ISO8601", errors="coerce", utc=True
            )
            days, month, weekday = col.features
            out[days] = (when - pd.Timestamp("1970-01-01", tz="UTC")) / pd.Timedelta(days=1)
            out[month] = when.dt.month.astype(np.float64)
            out[weekday] = when.dt.day_of_week.astype(np.float64)
        else:
            out[col.name] = text.astype(object)
    return pd.DataFrame(out, index=features.index)
