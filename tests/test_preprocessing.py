"""The saved preprocessing replays scikit-learn's fitted ColumnTransformer byte for byte, on the
prepared splits and on new raw rows, and says in one line what it cannot use."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import PipelineError
from pipeline.artifacts import LABEL, SOURCE_ROW, SPLITS, split_arrays
from pipeline.data.columns import DataError, apply_decisions, decide_columns, read_table
from pipeline.config import DataConfig
from pipeline.data.prepare import _preprocessor, load_source, prepare
from pipeline.io import dumps
from pipeline.data.preprocessing import (
    PREPROCESSING_FILE,
    Preprocessing,
    from_fitted,
    load_preprocessing,
    save_preprocessing,
)

CITIES = [f"city {i}" for i in range(30)]
CODES = ["001", "007", "042", "100"]


def _user_table(n=300, seed=0) -> pd.DataFrame:
    """A user's CSV as read: an identifier, numbers with missing and unreadable cells, ISO dates,
    a city with more levels than max_categories, ``007``-style codes, a yes/no flag, a label."""
    rng = np.random.default_rng(seed)
    amount = rng.normal(100, 30, n).round(2).astype(str).astype(object)
    amount[::9], amount[4] = "", "n/a"
    when = pd.date_range("2023-01-01", periods=n, freq="37h").strftime("%Y-%m-%d").to_numpy(object)
    when[::11] = ""
    city = np.array([CITIES[min(int(k), 29)] for k in rng.exponential(6, n)], dtype=object)
    city[::13] = ""
    label = rng.choice(["no", "yes", "maybe"], n, p=[0.6, 0.3, 0.1]).astype(object)
    label[[5, 50]] = ""  # no label: dropped before the split, so source rows skip them
    return pd.DataFrame(
        {
            "customer_id": [str(1000 + i) for i in range(n)],
            "amount": amount,
            "when": when,
            "city": city,
            "code": rng.choice(CODES, n),
            "flag": rng.choice(["yes", "no"], n),
            "label": label,
        }
    )


def _bytes_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype == np.float32 and a.shape == b.shape and a.tobytes() == b.tobytes()


def _sklearn_splits(prepared, raw: pd.DataFrame, max_categories: int) -> dict[str, np.ndarray]:
    """Each split's features from scikit-learn, fitted on the training split's source rows."""
    applied = apply_decisions(raw, prepared.columns)
    train = prepared.splits["train"][SOURCE_ROW].to_numpy()
    ct = _preprocessor(applied, max_categories).fit(applied.iloc[train])
    return {s: ct.transform(applied.iloc[prepared.splits[s][SOURCE_ROW].to_numpy()]).astype(np.float32) for s in SPLITS}


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    """The user table prepared from its CSV, with the raw features as read_table gives them."""
    path = tmp_path_factory.mktemp("user") / "claims.csv"
    _user_table().to_csv(path, index=False)
    cfg = DataConfig(source="csv", path=str(path), target="label", imbalance_ratio=2.0, max_categories=5)
    frame = read_table(path, "label")
    return prepare(cfg), frame.drop(columns=["label"]), frame["label"], cfg


def test_digits_splits_are_sklearns_features_byte_for_byte():
    cfg = DataConfig(source="digits", imbalance_ratio=10.0, seed=0)
    prepared = prepare(cfg)
    X, _ = load_source(cfg)
    expected = _sklearn_splits(prepared, X, cfg.max_categories)
    for split in SPLITS:
        assert _bytes_equal(prepared.arrays(split)[0], expected[split]), split


def test_user_table_splits_are_sklearns_features_byte_for_byte(user):
    prepared, raw, _, cfg = user
    assert {c.name: c.kind for c in prepared.columns} == {
        "customer_id": "identifier",
        "amount": "numeric",
        "when": "date",
        "city": "categorical",
        "code": "categorical",
        "flag": "categorical",
    }
    pre = prepared.preprocessing
    assert "cat__city_infrequent_sklearn" in pre.feature_names
    assert {f.name: f.infrequent_feature for f in pre.categorical}["flag"] is None
    expected = _sklearn_splits(prepared, raw, cfg.max_categories)
    for split in SPLITS:
        assert _bytes_equal(prepared.arrays(split)[0], expected[split]), split


def test_source_rows_point_at_the_raw_rows(user):
    prepared, raw, labels, _ = user
    rows = np.concatenate([prepared.splits[s][SOURCE_ROW].to_numpy() for s in SPLITS])
    assert prepared.splits["train"][SOURCE_ROW].dtype == np.int64
    assert 5 not in rows and 50 not in rows and len(set(rows)) == len(rows)
    for split in SPLITS:
        frame = prepared.splits[split]
        at = frame[SOURCE_ROW].to_numpy()
        assert (frame[LABEL].to_numpy() == labels.iloc[at].to_numpy()).all()
        assert _bytes_equal(prepared.preprocessing.transform(raw.iloc[at]), prepared.arrays(split)[0])


def test_prepare_stage_writes_the_preprocessing_beside_meta(tmp_path):
    from stages import prepare as stage
    from tests.test_stages import TINY, write_params

    out = tmp_path / "prepared"
    stage.main(["--params", str(write_params(tmp_path / "params.yaml")), "--out", str(out)])
    pre = load_preprocessing(out / PREPROCESSING_FILE)
    meta = json.loads((out / "meta.json").read_text())
    assert list(pre.classes) == meta["classes"] and len(pre.feature_names) == meta["n_features"]
    X, _ = load_source(DataConfig(source=TINY["data"]["source"]))
    for split in SPLITS:
        frame = pd.read_parquet(out / f"{split}.parquet")
        assert frame[SOURCE_ROW].dtype == np.int64
        features, _ = split_arrays(frame, meta["classes"])
        assert _bytes_equal(pre.transform(X.iloc[frame[SOURCE_ROW].to_numpy()]), features)


def test_json_round_trip_is_exact(user, tmp_path):
    pre = user[0].preprocessing
    path = tmp_path / PREPROCESSING_FILE
    save_preprocessing(path, pre)
    loaded = load_preprocessing(path)
    assert loaded == pre and loaded.to_dict() == pre.to_dict()
    for old, new in zip(pre.numeric, loaded.numeric):
        for field in ("impute", "mean", "scale"):
            assert np.float64(getattr(old, field)).tobytes() == np.float64(getattr(new, field)).tobytes()
    assert list(json.loads(path.read_text())) == [
        "format",
        "version",
        "classes",
        "features",
        "columns",
        "numeric",
        "categorical",
    ]
    raw = user[1]
    assert _bytes_equal(loaded.transform(raw), pre.transform(raw))


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_a_float_survives_the_json_writer_bit_for_bit(x):
    back = json.loads(dumps({"x": x}))["x"]
    assert np.float64(back).tobytes() == np.float64(x).tobytes()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "something-else"}, "not a preprocessing file written by this pipeline"),
        ({"version": 2}, "preprocessing version 2; this code reads version 1"),
        ({"features": ["one"]}, "malformed preprocessing: 1 feature names for"),
        ({"numeric": [{"name": "x"}]}, "malformed preprocessing (KeyError"),
    ],
)
def test_another_file_is_a_one_line_error_naming_it(user, tmp_path, change, message):
    path = tmp_path / PREPROCESSING_FILE
    path.write_text(dumps({**user[0].preprocessing.to_dict(), **change}))
    with pytest.raises(PipelineError, match=r"^\S*preprocessing.json: .*") as err:
        load_preprocessing(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def _row(raw: pd.DataFrame, **cells) -> pd.DataFrame:
    """The first complete raw row with some cells changed."""
    complete = raw[(raw != "").all(axis=1) & (raw["amount"] != "n/a")].iloc[[0]].reset_index(drop=True)
    return complete.assign(**cells)


def _feature(pre: Preprocessing, X: np.ndarray, name: str) -> np.ndarray:
    return X[:, pre.feature_names.index(name)]


def test_a_missing_cell_gets_the_imputed_value(user):
    pre, raw = user[0].preprocessing, user[1]
    X = pre.transform(_row(raw, amount="", city="", when="NA"))
    amount = next(f for f in pre.numeric if f.name == "amount")
    assert _feature(pre, X, "num__amount")[0] == np.float32((amount.impute - amount.mean) / amount.scale)
    city = next(f for f in pre.categorical if f.name == "city")
    assert city.impute in city.levels
    assert _feature(pre, X, f"cat__city_{city.impute}")[0] == 1.0
    assert X[0, [i for i, n in enumerate(pre.feature_names) if n.startswith("cat__city_")]].sum() == 1.0
    for part in ("days", "month", "weekday"):
        when = next(f for f in pre.numeric if f.name == f"when_{part}")
        assert _feature(pre, X, f"num__when_{part}")[0] == np.float32((when.impute - when.mean) / when.scale)


def test_codes_read_as_numbers_map_back_to_their_levels(user, tmp_path):
    pre, raw = user[0].preprocessing, user[1]
    path = tmp_path / "new.csv"
    raw.to_csv(path, index=False)
    guessed = pd.read_csv(path)  # pandas' own guesses: 007 becomes 7, missing cells NaN
    assert guessed["code"].dtype.kind in "iu" and 7 in set(guessed["code"])
    assert _bytes_equal(pre.transform(guessed), pre.transform(raw))
    seen = raw["city"].isin(["", *next(f for f in pre.categorical if f.name == "city").known]).to_numpy()
    assert _bytes_equal(pre.transform(guessed[seen], strict=True), pre.transform(raw[seen]))
    floats = guessed.assign(code=guessed["code"].astype(np.float64))  # 7.0, as a column with a gap reads
    assert _bytes_equal(pre.transform(floats.iloc[:3]), pre.transform(raw.iloc[:3]))


def test_extra_columns_are_ignored_and_named(user):
    pre, raw = user[0].preprocessing, user[1]
    extra = raw.assign(extra=1.5, label="yes")[["extra", *raw.columns[::-1], "label"]]
    assert pre.unexpected_columns(extra) == ["extra", "label"]
    assert pre.unexpected_columns(raw) == []
    assert _bytes_equal(pre.transform(extra), pre.transform(raw))
    assert pre.raw_columns == ["amount", "when", "city", "code", "flag"]  # not the identifier
    assert _bytes_equal(pre.transform(raw[pre.raw_columns]), pre.transform(raw))


@pytest.mark.parametrize("strict", [False, True])
def test_a_missing_column_is_named(user, strict):
    pre, raw = user[0].preprocessing, user[1]
    with pytest.raises(DataError, match=r"^missing column\(s\) 'amount', 'city'; the preprocessing needs 5"):
        pre.transform(raw.drop(columns=["city", "amount", "customer_id"]), strict=strict)


def test_an_unreadable_number_is_an_error_when_strict_else_imputed(user):
    pre, raw = user[0].preprocessing, user[1]
    frame = pd.concat([_row(raw), _row(raw, amount="12,5"), _row(raw, amount="")], ignore_index=True)
    with pytest.raises(DataError, match=r"^column 'amount': '12,5' in row 1 is not a number$"):
        pre.transform(frame, strict=True)
    X = pre.transform(frame)
    assert _bytes_equal(X[1], X[2])


def test_an_unparsed_date_is_an_error_when_strict_else_imputed(user):
    pre, raw = user[0].preprocessing, user[1]
    frame = pd.concat([_row(raw, when="01/03/2024"), _row(raw, when="")], ignore_index=True)
    with pytest.raises(DataError, match=r"^column 'when': '01/03/2024' in row 0 is not an ISO date"):
        pre.transform(frame, strict=True)
    X = pre.transform(frame)
    assert _bytes_equal(X[0], X[1])


def test_an_unseen_level_is_an_error_when_strict_else_infrequent_or_nothing(user):
    pre, raw = user[0].preprocessing, user[1]
    with pytest.raises(
        DataError,
        match=r"^column 'city': 'atlantis' in row 0 is a level never seen in "
        r"training; known: 'city 0', .* \(\d+ in all\)$",
    ):
        pre.transform(_row(raw, city="atlantis"), strict=True)
    with pytest.raises(
        DataError,
        match=r"^column 'flag': 'maybe' in row 0 is a level never seen in "
        r"training; known: '(yes|no)', '(yes|no)'$",
    ):
        pre.transform(_row(raw, flag="maybe"), strict=True)
    X = pre.transform(_row(raw, city="atlantis", flag="maybe"))
    city = [n for n in pre.feature_names if n.startswith("cat__city_")]
    assert [_feature(pre, X, n)[0] for n in city] == [0.0] * (len(city) - 1) + [1.0]  # the infrequent column
    assert [_feature(pre, X, n)[0] for n in pre.feature_names if n.startswith("cat__flag_")] == [0.0, 0.0]
    assert pre.transform(raw, strict=False).shape == (len(raw), len(pre.feature_names))


LEVELS = ["red", "green", "blue", "cyan", "pink", "gold", None]


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_random_frames_with_gaps_match_sklearn_byte_for_byte(data):
    n = data.draw(st.integers(3, 25), label="rows")
    fit = data.draw(st.integers(2, n), label="training rows")
    values = st.floats(-1e6, 1e6, allow_nan=False)
    cells = st.one_of(st.just(np.nan), values)
    frame = pd.DataFrame({"x0": data.draw(st.lists(values, min_size=n, max_size=n))})
    for i in range(1, data.draw(st.integers(1, 4))):
        frame[f"x{i}"] = data.draw(st.lists(cells, min_size=n, max_size=n))
    for name in ("c", "d")[: data.draw(st.integers(0, 2))]:  # a level in the first row: one to fit on
        cats = [data.draw(st.sampled_from(LEVELS[:-1]))] + data.draw(
            st.lists(st.sampled_from(LEVELS), min_size=n - 1, max_size=n - 1)
        )
        frame[name] = pd.Series(cats, dtype=object)
    if data.draw(st.booleans(), label="float32"):
        frame = frame.astype({c: np.float32 for c in frame.columns if c.startswith("x")})
    columns = decide_columns(frame)
    applied = apply_decisions(frame, columns)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a column without a training value, an unseen level
        ct = _preprocessor(applied, data.draw(st.integers(2, 4))).fit(applied.iloc[:fit])
        expected = ct.transform(applied).astype(np.float32)
        pre = from_fitted(ct, columns, ["a", "b"])  # an overflow to inf below is scikit-learn's too
        assert _bytes_equal(pre.transform(frame), expected)
        assert _bytes_equal(Preprocessing.from_dict(json.loads(dumps(pre.to_dict()))).transform(frame), expected)
