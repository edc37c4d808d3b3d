import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.config import DataConfig, SyntheticConfig
from pipeline.data.prepare import (
    LABEL,
    SOURCE_ROW,
    DataError,
    class_counts,
    digest,
    long_tail_counts,
    prepare,
    subsample_long_tail,
)


def test_long_tail_counts_follow_the_exponential_profile():
    counts = np.full(10, 100)
    kept = long_tail_counts(counts, 10.0)
    expected = [int(np.floor(100 * 10.0 ** (-i / 9))) for i in range(10)]
    assert kept.tolist() == expected
    assert kept[0] == 100 and kept[-1] == 10


def test_ratio_one_keeps_counts():
    counts = np.array([7, 30, 12])
    assert long_tail_counts(counts, 1.0).tolist() == [7, 30, 12]


def test_classes_are_ranked_by_count_and_capped_by_availability():
    # class 1 is the largest, so it is the head; class 0 (second largest) gets rank 1
    kept = long_tail_counts(np.array([50, 100, 3]), 4.0)
    assert kept.tolist() == [50, 100, 3]  # class 0 -> floor(100/2) = 50, class 2 -> min(3, 25)


@given(
    st.lists(st.integers(1, 400), min_size=2, max_size=12),
    st.floats(1.0, 200.0),
)
def test_long_tail_never_invents_samples_and_keeps_every_class(counts, ratio):
    counts = np.array(counts)
    kept = long_tail_counts(counts, ratio)
    assert (kept >= 1).all() and (kept <= counts).all()
    assert kept.max() == counts.max()


def test_subsample_keeps_the_planned_counts():
    y = np.repeat(np.arange(4), 50)
    rows = subsample_long_tail(y, 4, 8.0, seed=0)
    assert np.bincount(y[rows], minlength=4).tolist() == long_tail_counts(np.full(4, 50), 8.0).tolist()
    assert np.all(np.diff(rows) > 0)


def test_prepare_digits_long_tails_the_training_split_only():
    p = prepare(DataConfig(source="digits", imbalance_ratio=10.0, seed=0))
    train = np.array(list(class_counts(p.splits["train"], p.classes).values()))
    test = np.array(list(class_counts(p.splits["test"], p.classes).values()))
    assert p.classes == [str(i) for i in range(10)]
    assert train.max() / train.min() == pytest.approx(10.0, rel=0.15)
    assert test.max() / test.min() < 1.2  # stratified split of a balanced source stays balanced
    X, _ = p.arrays("train")
    np.testing.assert_allclose(X.mean(axis=0), 0, atol=1e-5)  # scaler fitted on train


def test_prepare_is_deterministic_and_seed_dependent():
    cfg = DataConfig(source="digits", imbalance_ratio=5.0, seed=3)
    assert digest(prepare(cfg)) == digest(prepare(cfg))
    assert digest(prepare(cfg)) != digest(prepare(DataConfig(source="digits", imbalance_ratio=5.0, seed=4)))


def test_synthetic_source_is_long_tailed_in_every_split():
    cfg = DataConfig(
        source="synthetic",
        imbalance_ratio=1.0,
        synthetic=SyntheticConfig(n_samples=3000, n_features=8, n_informative=6, n_classes=4, imbalance_ratio=20.0),
    )
    p = prepare(cfg)
    for split in ("train", "test"):
        c = np.array(list(class_counts(p.splits[split], p.classes).values()))
        assert c[0] > c[-1] * 10


def _write_csv(tmp_path, n=240):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "age": rng.normal(50, 10, n),
            "colour": rng.choice(["red", "green", "blue"], n),
            "score": rng.normal(0, 1, n),
            "label": rng.choice(["no", "yes", "maybe"], n, p=[0.6, 0.3, 0.1]),
        }
    )
    frame.loc[::7, "age"] = np.nan
    frame.loc[::11, "colour"] = None
    path = tmp_path / "claims.csv"
    frame.to_csv(path, index=False)
    return path


def test_csv_source_imputes_encodes_and_scales(tmp_path):
    path = _write_csv(tmp_path)
    p = prepare(DataConfig(source="csv", path=str(path), target="label", imbalance_ratio=1.0))
    # not numbers: the order of first appearance in the file (the data-checks rule)
    assert p.classes == list(dict.fromkeys(pd.read_csv(path)["label"]))
    frame = p.splits["train"]
    assert not frame.drop(columns=[LABEL]).isna().any().any()
    onehot = [c for c in p.feature_names if c.startswith("cat__colour_")]
    assert sorted(onehot) == ["cat__colour_blue", "cat__colour_green", "cat__colour_red"]
    assert frame["num__age"].mean() == pytest.approx(0, abs=1e-5)


def test_each_row_records_its_data_row_in_the_file(tmp_path):
    path = _write_csv(tmp_path)
    frame = pd.read_csv(path)
    frame.loc[[3, 100], "label"] = None  # dropped before the split; the rows after them keep their number
    frame.to_csv(path, index=False)
    p = prepare(DataConfig(source="csv", path=str(path), target="label", imbalance_ratio=1.0))
    rows = np.concatenate([p.splits[s][SOURCE_ROW].to_numpy() for s in ("train", "val", "test")])
    assert p.splits["train"][SOURCE_ROW].dtype == np.int64
    assert sorted(rows) == [i for i in range(240) if i not in (3, 100)]
    for split in ("train", "val", "test"):
        at = p.splits[split][SOURCE_ROW].to_numpy()
        assert (p.splits[split][LABEL].to_numpy() == frame["label"].iloc[at].to_numpy()).all()
        assert p.arrays(split)[0].shape[1] == len(p.feature_names)


def test_parquet_source(tmp_path):
    csv = _write_csv(tmp_path)
    pq = tmp_path / "claims.parquet"
    pd.read_csv(csv).to_parquet(pq)
    p = prepare(DataConfig(source="csv", path=str(pq), target="label", imbalance_ratio=1.0))
    assert len(p.splits["train"]) + len(p.splits["val"]) + len(p.splits["test"]) == 240


def test_csv_without_the_target_column_names_it(tmp_path):
    path = _write_csv(tmp_path)
    with pytest.raises(
        DataError, match=r"data.target: column 'outcome' not in .*claims.csv; columns: age, colour, score, label"
    ):
        prepare(DataConfig(source="csv", path=str(path), target="outcome"))


def test_csv_path_errors(tmp_path):
    with pytest.raises(DataError, match="is not a file"):
        prepare(DataConfig(source="csv", path=str(tmp_path / "missing.csv"), target="y"))
    odd = tmp_path / "data.xlsx"
    odd.write_text("x")
    with pytest.raises(DataError, match=r"must end in .csv or .parquet"):
        prepare(DataConfig(source="csv", path=str(odd), target="y"))


def test_every_too_rare_class_is_named(tmp_path):
    frame = pd.DataFrame({"x": range(40), "y": ["a"] * 37 + ["b"] * 2 + ["c"]})
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError) as err:
        prepare(DataConfig(source="csv", path=str(path), target="y"))
    assert str(err.value) == (
        "classes 'c' (1 row), 'b' (2 rows): each class needs at least 3 rows (one per split); "
        "merge or drop the smaller classes"
    )


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_the_separator_is_read_from_the_file(tmp_path, sep):
    path = _write_csv(tmp_path)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.to_csv(path, sep=sep, index=False)
    p = prepare(DataConfig(source="csv", path=str(path), target="label", imbalance_ratio=1.0))
    assert [c.name for c in p.preprocessing.columns] == ["age", "colour", "score"]


def test_a_file_in_another_encoding_names_the_parameter_and_reads_once_set(tmp_path):
    frame = pd.DataFrame({"x": range(30), "city": ["Montréal", "Zürich", "Lyon"] * 10, "y": ["é", "a", "b"] * 10})
    path = tmp_path / "latin.csv"
    frame.to_csv(path, index=False, encoding="latin-1")
    with pytest.raises(DataError) as err:
        prepare(DataConfig(source="csv", path=str(path), target="y"))
    assert "is not utf-8 text (byte 0xe9 at position" in str(err.value)
    assert "set data.encoding to its encoding, e.g. latin-1 or cp1252" in str(err.value)
    p = prepare(DataConfig(source="csv", path=str(path), target="y", encoding="latin-1", imbalance_ratio=1.0))
    assert set(p.classes) == {"é", "a", "b"}
