"""Real user tables: what each column becomes, class names as written, one line for what cannot work."""

import numpy as np
import pandas as pd
import pytest

from pipeline.data.columns import DataError, apply_decisions, class_labels, decide, decide_columns, read_table
from pipeline.config import DataConfig
from pipeline.data.prepare import prepare


def _csv(tmp_path, text, name="t.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_column_named_twice_is_refused_naming_it(tmp_path):
    # pandas would read the second copy as "label.1": a feature that is the label
    path = _csv(tmp_path, "x,label,label\n1,a,a\n2,b,b\n")
    with pytest.raises(DataError, match=r"column 'label' appears twice in .*t.csv; rename or drop one"):
        read_table(path, "label")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("x,label\n", "has a header but no rows"),
    ],
)
def test_empty_and_header_only_files_are_one_line(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        read_table(_csv(tmp_path, text), "label")


def test_the_target_is_text_as_written(tmp_path):
    frame = read_table(_csv(tmp_path, "x,label\n1,007\n2,7\n3,n/a\n4,NA\n5,null\n6,\n7,7\n"), "label")
    labels, classes, missing = class_labels(frame["label"])
    assert classes == ["007", "7", "n/a", "NA", "null"]  # first appearance: not every name is a number
    assert missing == 1 and len(labels) == 6


def test_numeric_class_names_are_in_numeric_order_ties_by_text():
    _, classes, _ = class_labels(pd.Series(["10", "9", "007", "7", "-1", "2.5"]))
    assert classes == ["-1", "2.5", "007", "7", "9", "10"]


def test_parquet_labels_read_as_text_too():
    _, classes, missing = class_labels(pd.Series([3, 1, None, 2, 1], dtype="Int64"))
    assert classes == ["1", "2", "3"] and missing == 1


def _mixed(n=200, seed=0):
    rng = np.random.default_rng(seed)
    amounts = rng.normal(100, 30, n).round(2) + np.arange(n) * 1e-4  # unique, fractional
    numbers = rng.integers(0, 50, n).astype(str).astype(object)
    numbers[[3, 17]] = "unknown"  # a few text cells in a numeric column
    return pd.DataFrame(
        {
            "customer_id": [f"{i + 1000}" for i in range(n)],  # unique, named like an identifier
            "row": np.arange(n).astype(str),  # unique, nearly consecutive integers
            "ref": [f"r{i:05d}" for i in range(n)],  # unique, one fixed shape
            "uuid_like": [f"{rng.integers(16**8):08x}-{rng.integers(16**4):04x}" for _ in range(n)],
            "amount": amounts.astype(str),  # unique but fractional: kept
            "when": pd.date_range("2024-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
            "zip": [f"{rng.integers(0, 5):05d}" for _ in range(n)],  # numbers with leading zeros: a code
            "count": numbers,
            "colour": rng.choice(["red", "green", "blue"], n),
            "city": [f"city {rng.integers(0, 40)}" for _ in range(n)],  # many levels
            "label": rng.choice(["a", "b"], n),
        }
    )


def test_each_column_gets_the_decision_its_rules_give():
    frame = _mixed()
    decided = {c.name: c for c in decide_columns(frame.drop(columns=["label"]))}
    kinds = {name: c.kind for name, c in decided.items()}
    assert kinds == {
        "customer_id": "identifier",
        "row": "identifier",
        "ref": "identifier",
        "uuid_like": "identifier",
        "amount": "numeric",
        "when": "date",
        "zip": "categorical",
        "count": "numeric",
        "colour": "categorical",
        "city": "categorical",
    }
    assert "2 cell(s) not numbers became missing" in decided["count"].detail
    assert decided["when"].features == ("when_days", "when_month", "when_weekday")
    applied = apply_decisions(frame, list(decided.values()))
    assert list(applied.columns) == [
        "amount",
        "when_days",
        "when_month",
        "when_weekday",
        "zip",
        "count",
        "colour",
        "city",
    ]
    assert applied["when_days"].iloc[0] == (pd.Timestamp("2024-01-01") - pd.Timestamp("1970-01-01")).days
    assert applied["count"].isna().sum() == 2 and applied["zip"].iloc[0].startswith("0000")


def test_a_unique_float_or_a_unique_timestamp_is_never_an_identifier():
    assert decide("id", pd.Series(np.linspace(0.5, 99.5, 100))).kind == "numeric"
    assert decide("price", pd.Series([f"{x:.2f}" for x in np.linspace(1, 50, 100)])).kind == "numeric"
    stamps = pd.Series([str(1_700_000_000 + 3_600 * i + i * i) for i in range(100)])
    assert decide("created", stamps).kind == "numeric"  # unique integers, far from consecutive


def test_prepare_replays_the_rules_and_caps_one_hot_width(tmp_path, caplog):
    path = tmp_path / "mixed.csv"
    _mixed(300).to_csv(path, index=False)
    with caplog.at_level("INFO", logger="pipeline.data.prepare"):
        prepared = prepare(
            DataConfig(source="csv", path=str(path), target="label", imbalance_ratio=1.0, max_categories=5)
        )
    lines = [r.getMessage() for r in caplog.records]
    for c in prepared.columns:  # one line per decision (plain numeric columns share one)
        assert sum(m.startswith(f"column {c.name!r}: ") for m in lines) == (c.detail != "numeric"), c.name
    names = prepared.feature_names
    assert not [n for n in names if any(k in n for k in ("customer_id", "row", "ref", "uuid_like"))]
    assert {"num__amount", "num__when_days", "num__when_month", "num__when_weekday", "num__count"} <= set(names)
    assert len([n for n in names if n.startswith("cat__city")]) <= 5  # 40 levels, capped
    assert len([n for n in names if n.startswith("cat__colour")]) == 3
    # 5 numeric + colour 3 + zip (5 levels, capped at 5) + city (capped at 5)
    assert len(names) == 5 + 3 + 5 + 5
    assert {c.name: c.kind for c in prepared.columns}["when"] == "date"


@pytest.mark.parametrize(
    ("name", "named_like_an_id"),
    [
        ("id", True),
        ("customer_id", True),
        ("Customer ID", True),
        ("customerId", True),
        ("orderID", True),
        ("key", True),
        ("api-key", True),
        ("user.uuid", True),
        ("paid", False),
        ("valid", False),
        ("grid", False),
    ],
)
def test_identifier_names(name, named_like_an_id):
    values = pd.Series([f"v{i}x{i * 7 % 13}" for i in range(50)])  # unique, no fixed shape
    assert (decide(name, values).kind == "identifier") == named_like_an_id


def test_an_empty_column_is_dropped_and_said_so(tmp_path):
    frame = pd.DataFrame({"x": np.arange(60) * 0.5, "blank": [""] * 60, "label": ["a", "b", "c"] * 20})
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    prepared = prepare(DataConfig(source="csv", path=str(path), target="label", imbalance_ratio=1.0))
    assert {c.name: c.kind for c in prepared.columns} == {"x": "numeric", "blank": "empty"}
    assert prepared.feature_names == ["num__x"]


def test_a_short_column_of_distinct_close_integers_is_a_measurement_unless_it_runs_in_order():
    rng = np.random.default_rng(3)
    ages = pd.Series(rng.permutation(np.arange(20, 50)).astype(str))  # 30 distinct, close-packed, shuffled
    assert decide("age", ages).kind == "numeric"
    assert decide("n", pd.Series(np.arange(1, 31).astype(str))).kind == "identifier"  # a row number
    assert decide("n", pd.Series(rng.permutation(np.arange(1000)).astype(str))).kind == "identifier"


def test_typed_parquet_columns_get_the_same_rules(tmp_path):
    n = 120
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(
        {
            "record_id": np.arange(n, dtype=np.int64),  # typed integers, unique, named like an id
            "when": pd.date_range("2023-05-01", periods=n, freq="h"),  # a typed timestamp column
            "flag": rng.random(n) > 0.5,
            "size": pd.Categorical(rng.choice(["S", "M", "L"], n)),
            "count": rng.integers(0, 9, n),  # typed integers, not unique
            "weight": rng.normal(70, 10, n),
            "label": rng.choice([0, 1, 2], n),
        }
    )
    path = tmp_path / "typed.parquet"
    frame.to_parquet(path)
    prepared = prepare(DataConfig(source="csv", path=str(path), target="label", imbalance_ratio=1.0))
    kinds = {c.name: c.kind for c in prepared.columns}
    assert kinds == {
        "record_id": "identifier",
        "when": "date",
        "flag": "numeric",
        "size": "categorical",
        "count": "numeric",
        "weight": "numeric",
    }
    assert prepared.classes == ["0", "1", "2"]
    assert not prepared.splits["train"].drop(columns=["y"]).isna().any().any()
