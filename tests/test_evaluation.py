import numpy as np
import pytest

from pipeline import PipelineError

from pipeline.config import BaselinesConfig
from pipeline.training.baselines import fit_baseline
from pipeline.evaluation.evidence import tail_trade
import pipeline.artifacts as artifacts_module
import pipeline.evaluation.evaluate as evaluation_module
from pipeline.artifacts import predictions_frame, read_predictions
from pipeline.evaluation.evaluate import confusion_plot_rows, gamma_table, summary, thin_curve
from pipeline.decision.selection import second_view
from pipeline.decision.metrics import bootstrap_distribution, bootstrap_indices


def test_second_view_follows_the_validation_split_balance():
    balanced = second_view([100, 10], [50, 48], "auto")
    assert balanced.key == "train_prior" and balanced.prior == pytest.approx([100 / 110, 10 / 110])
    skewed = second_view([100, 10], [90, 9], "auto")
    assert skewed.key == "uniform_prior" and skewed.prior == [0.5, 0.5]
    assert second_view([100, 10], [90, 9], "train").key == "train_prior"


def _entry(v, lo, hi):
    names = ["macro_f1", "micro_f1", "accuracy", "balanced_accuracy", "recall/r", "precision/r"]
    return {**{n: v for n in names}, "ci": {n: {"low": lo, "high": hi} for n in names}}


def test_gamma_table_uses_bootstrap_with_one_seed_and_spread_with_several():
    models = [
        {"name": "f0", "loss": "focal", "gamma": 0.0, "seed": 0},
        {"name": "f2a", "loss": "focal", "gamma": 2.0, "seed": 0},
        {"name": "f2b", "loss": "focal", "gamma": 2.0, "seed": 1},
        {"name": "ce", "loss": "ce", "gamma": None, "seed": 0},
    ]
    metrics = {"f0": _entry(0.5, 0.4, 0.6), "f2a": _entry(0.6, 0, 1), "f2b": _entry(0.8, 0, 1), "ce": _entry(0.1, 0, 1)}
    rows = gamma_table(models, metrics, "r")["focal"]
    assert [r["gamma"] for r in rows] == [0.0, 2.0]
    assert rows[0]["macro_f1"] == 0.5 and (rows[0]["macro_f1_low"], rows[0]["macro_f1_high"]) == (0.4, 0.6)
    sd = np.std([0.6, 0.8], ddof=1)
    assert rows[1]["rarest_recall"] == pytest.approx(0.7)
    assert rows[1]["rarest_recall_low"] == pytest.approx(0.7 - sd)


def _audit(pick="cb_focal_g0.5+thresholds", shift=0.0):
    board = [
        {
            "model": "cb_focal_g0.5+thresholds",
            "members": ["cb_focal_g0.5+thresholds"],
            "validation": 0.9072205591055582 + shift,
            "test": 0.9032810007810074 + shift,
        },
        {
            "model": "ce",
            "members": ["ce", "focal_g0"],
            "validation": 0.8505304531553481 + shift,
            "test": 0.8712052721160608 + shift,
        },
    ]
    return {
        "policy": {"pick": pick, "metric": "macro_f1", "p_best": 0.358},
        "estimate": {
            "metric": "macro_f1",
            "validation": board[0]["validation"],
            "test": board[0]["test"],
            "low": 0.8708300152491827 + shift,
            "high": 0.9299964662243098 + shift,
        }
        if pick
        else None,
        "reference": {"model": "ce"},
        "leaderboard": board,
    }


def test_summary_is_flat_rounded_and_names_the_pick_and_the_reference():
    out = summary(_audit())
    assert out == {
        "policy_metric": "macro_f1",
        "pick": "cb_focal_g0.5+thresholds",
        "pick_val": 0.9072,
        "pick_test": 0.9033,
        "pick_test_low": 0.8708,
        "pick_test_high": 0.93,
        "pick_p_best": 0.358,
        "ref": "ce",
        "ref_val": 0.8505,
        "ref_test": 0.8712,
    }
    # DVC reads "." in a key as nesting: names are values, and no key holds one
    assert not any("." in k for k in out) and not any(isinstance(v, dict) for v in out.values())
    # a re-run on another CPU moves torch's results in the last digits: the summary stays the same
    assert summary(_audit(shift=3e-9)) == out and summary(_audit(shift=-3e-9)) == out


def test_summary_without_a_pick_keeps_the_reference():
    out = summary(_audit(pick=None))
    assert out == {"policy_metric": "macro_f1", "pick": "none", "ref": "ce", "ref_val": 0.8505, "ref_test": 0.8712}


def test_tail_trade_verdicts():
    y = np.repeat([0, 1, 2], [60, 30, 10])
    ref = y.copy()
    ref[60:75] = 0  # reference misses half of class 1
    ref[90:100] = 0  # and all of class 2
    better = y.copy()
    preds = {"ce": ref, "same": ref.copy(), "better": better}
    out = tail_trade(
        y,
        preds,
        ["a", "b", "c"],
        [100, 30, 10],
        reference="ce",
        models=["same", "better"],
        indices=bootstrap_indices(len(y), 300, 0),
        level=0.95,
    )
    assert out["tail_classes"] == ["c"]
    assert out["models"]["same"]["tail_recall_change"] == {"value": 0.0, "low": 0.0, "high": 0.0}
    assert out["models"]["same"]["verdict"].startswith("no clear change in tail recall")
    assert out["models"]["better"]["tail_recall_change"]["value"] == pytest.approx(1.0)
    assert out["models"]["better"]["verdict"].startswith("gains tail recall")


def test_tail_trade_says_undefined_precision_where_the_reference_never_predicts_a_class():
    """A reference that never predicts a tail class has no precision there (not 0): a model that
    predicts it gains no measurable tail precision, and the head side shows what it pays."""
    y = np.repeat([0, 1, 2], [60, 30, 10])
    ref = y.copy()
    ref[90:100] = 0  # the reference never predicts class 2
    trade = y.copy()
    trade[0:20] = 2  # recalls class 2, at the head's expense
    out = tail_trade(
        y,
        {"ce": ref, "m": trade},
        ["a", "b", "c"],
        [100, 30, 10],
        reference="ce",
        models=["m"],
        indices=bootstrap_indices(len(y), 300, 0),
        level=0.95,
    )
    entry = out["models"]["m"]
    assert out["reference_undefined_precision"] == ["c"]
    assert entry["tail_precision_change"]["value"] is None
    assert "gains tail precision" not in entry["verdict"] and "tail precision undefined" in entry["verdict"]
    assert entry["head_recall_change"]["value"] == pytest.approx(-1 / 6)  # class a loses 20 of 60: (-1/3 + 0) / 2
    assert "loses head recall" in entry["verdict"]


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(0)

    def make(n):
        y = rng.choice(3, n, p=[0.7, 0.2, 0.1])
        return (rng.normal(size=(n, 5)) + 2 * np.eye(3, 5)[y]).astype(np.float32), y

    return {"train": make(400), "stop": make(60), "val": make(150)}


def test_majority_baseline_predicts_the_training_prior(blobs):
    res = fit_baseline("majority", blobs, 3, np.ones(3), BaselinesConfig())
    prior = np.bincount(blobs["train"][1], minlength=3) / 400
    np.testing.assert_allclose(res.predict_proba(np.zeros((4, 5))), np.tile(prior, (4, 1)))
    assert res.saved["prior"] == pytest.approx(prior.tolist())


@pytest.mark.parametrize("name", ["logreg_balanced", "xgboost"])
def test_learned_baselines_beat_the_majority(blobs, name):
    cfg = BaselinesConfig(xgb_n_estimators=40)
    res = fit_baseline(name, blobs, 3, np.array([0.5, 1.7, 3.3]), cfg)
    assert res.stop_macro_f1 > 0.7
    proba = res.predict_proba(blobs["val"][0])
    assert proba.shape == (150, 3) and np.allclose(proba.sum(1), 1, atol=1e-5)
    if name == "xgboost":
        assert res.history and 1 <= res.best_epoch <= 40


def test_large_predictions_are_read_again_when_used_not_held(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    classes = ["a", "b", "c"]
    proba = rng.dirichlet(np.ones(3), 50)
    y = rng.integers(0, 3, 50)
    path = tmp_path / "p.parquet"
    predictions_frame(proba, y, classes).to_parquet(path, index=False)
    held = read_predictions(path, classes, what="x")
    monkeypatch.setattr(artifacts_module, "PROBA_HOLD", 149)  # 50 x 3 = 150 values: above
    lazy = read_predictions(path, classes, what="x")
    assert held._proba is not None and lazy._proba is None
    np.testing.assert_array_equal(lazy.proba, held.proba)
    np.testing.assert_array_equal(lazy.y_pred, held.y_pred)
    np.testing.assert_array_equal(lazy.y_true, y)


def test_a_predictions_file_of_300_classes_is_built_without_a_warning():
    import warnings

    rng = np.random.default_rng(0)
    classes = [f"c{i}" for i in range(300)]
    proba = rng.dirichlet(np.ones(300), 40)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pandas warns once per column inserted one by one past 100
        frame = predictions_frame(proba, rng.integers(0, 300, 40), classes)
    assert list(frame.columns) == ["y_true", "y_pred", *(f"p_{c}" for c in classes)]
    np.testing.assert_array_equal(frame[[f"p_{c}" for c in classes]].to_numpy(), proba)


def test_confusion_plot_rows_count_every_sample_per_row_or_per_cell(monkeypatch):
    rng = np.random.default_rng(1)
    classes = ["x<1", "y", "z"]
    y_true, y_pred = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    per_sample = confusion_plot_rows("pick: m", y_true, y_pred, classes)
    monkeypatch.setattr(evaluation_module, "CONFUSION_ROWS", 199)
    per_cell = confusion_plot_rows("pick: m", y_true, y_pred, classes)
    assert len(per_sample) == 200 and "rows" not in per_sample[0]
    assert len(per_cell) <= 9 and sum(r["rows"] for r in per_cell) == 200

    def cells(rows):
        out = {}
        for r in rows:
            key = (r["actual"], r["predicted"])
            out[key] = out.get(key, 0) + r.get("rows", 1)
        return out

    assert cells(per_sample) == cells(per_cell)


def test_thin_curve_keeps_short_curves_whole_and_both_ends_of_long_ones():
    np.testing.assert_array_equal(thin_curve(7, points=10), np.arange(7))
    keep = thin_curve(100_001, points=1000)
    assert len(keep) == 1000 and keep[0] == 0 and keep[-1] == 100_000 and np.all(np.diff(keep) > 0)


@pytest.mark.parametrize("hold", [None, 0])
def test_predicted_counts_are_the_confusion_matrices_column_sums(hold):
    from pipeline.evaluation.evidence import _predicted_counts
    from pipeline.decision.metrics import Resamples

    rng = np.random.default_rng(4)
    y_true, y_pred = rng.integers(0, 5, 700), rng.integers(0, 5, 700)
    r = Resamples(700, 40, 9, hold=hold)
    want = np.stack([np.bincount(y_pred[i], minlength=5) for i in Resamples(700, 40, 9)])
    np.testing.assert_array_equal(_predicted_counts(y_true, y_pred, 5, r), want)
    # after the bootstrap of the same decisions: its counts, kept, not counted again
    counted = []
    r = Resamples(700, 40, 9, hold=hold)
    original = r._counts
    r._counts = lambda *a: counted.append(a[1]) or original(*a)
    bootstrap_distribution(y_true, y_pred, 5, indices=r)
    before = len(counted)
    np.testing.assert_array_equal(_predicted_counts(y_true, y_pred, 5, r), want)
    assert before == 2 and len(counted) == before


def test_an_xgboost_bundle_holds_its_booster_in_binary_and_a_version_1_bundle_still_loads(tmp_path):
    import json

    from pipeline.config import DataConfig, SyntheticConfig
    from pipeline.data.prepare import prepare
    from pipeline.io import write_json
    from pipeline.data.preprocessing import save_preprocessing
    from pipeline.tracking.serving import BUNDLE_VERSION, CANDIDATE_FILE, Candidate, write_bundle

    prepared = prepare(
        DataConfig(
            source="synthetic", synthetic=SyntheticConfig(n_samples=900, n_features=6, n_informative=4, n_classes=3)
        )
    )
    data = {"train": prepared.arrays("train"), "stop": prepared.arrays("val"), "val": prepared.arrays("test")}
    res = fit_baseline("xgboost", data, 3, np.ones(3), BaselinesConfig(xgb_n_estimators=30))
    write_json(tmp_path / "xgboost.json", res.saved)
    save_preprocessing(tmp_path / "preprocessing.json", prepared.preprocessing)
    kwargs = dict(
        name="xgboost",
        model="xgboost",
        kind="xgboost",
        classes=prepared.classes,
        model_file=tmp_path / "xgboost.json",
        preprocessing_file=tmp_path / "preprocessing.json",
    )
    digest = write_bundle(tmp_path / "v2", **kwargs)
    assert write_bundle(tmp_path / "again", **kwargs) == digest  # the conversion is deterministic
    assert "booster" not in json.loads((tmp_path / "v2/model.json").read_text())
    assert (tmp_path / "v2/booster.ubj").stat().st_size > 0
    X = data["val"][0]
    v2 = Candidate.load(tmp_path / "v2")
    np.testing.assert_allclose(v2.decide(X)[0], res.predict_proba(X), rtol=1e-6, atol=1e-7)
    # a bundle written before the binary booster: model.json holds it, version 1
    v1 = tmp_path / "v1"
    v1.mkdir()
    (v1 / "preprocessing.json").write_bytes((tmp_path / "preprocessing.json").read_bytes())
    (v1 / "model.json").write_bytes((tmp_path / "xgboost.json").read_bytes())
    spec = json.loads((tmp_path / "v2" / CANDIDATE_FILE).read_text())
    assert spec["version"] == BUNDLE_VERSION == 3
    (v1 / CANDIDATE_FILE).write_text(json.dumps({**spec, "version": 1}))
    np.testing.assert_array_equal(Candidate.load(v1).decide(X)[0], v2.decide(X)[0])
    (v1 / CANDIDATE_FILE).write_text(json.dumps({**spec, "version": 4}))
    with pytest.raises(PipelineError, match="versions 1, 2, 3 are read"):
        Candidate.load(v1)


def test_figures_of_many_classes_show_the_rarest_and_the_worst_and_sum_the_rest():
    from pipeline.evaluation.plots import READABLE, _reduced, confusion_figure, readable_classes

    classes = [str(i) for i in range(300)]
    counts = {c: 1000 - i for i, c in enumerate(classes)}  # the later, the rarer
    recall = {**dict.fromkeys(classes, 1.0), "3": 0.1, "7": 0.0}
    shown = readable_classes(classes, counts, recall)
    assert len(shown) == READABLE and {"3", "7"} <= set(shown) and set(classes[-READABLE // 2 :]) <= set(shown)
    assert shown == [c for c in classes if c in shown]  # in the data's order
    assert readable_classes(classes[:READABLE], counts, recall) == classes[:READABLE]
    cm = np.random.default_rng(0).integers(0, 5, (300, 300))
    reduced, labels = _reduced(cm, classes, shown)
    idx = [classes.index(c) for c in shown]
    assert reduced.shape == (READABLE + 1, READABLE + 1) and labels == [*shown, "other 270"]
    np.testing.assert_array_equal(reduced[:READABLE, :READABLE], cm[np.ix_(idx, idx)])
    np.testing.assert_array_equal(reduced[:READABLE].sum(1), cm[idx].sum(1))  # every row of a shown class
    assert reduced.sum() == cm.sum()
    assert max(confusion_figure(cm, classes, "many", shown).get_size_inches()) < 20
