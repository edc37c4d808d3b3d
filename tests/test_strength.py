"""The class-weight strength α: the weights, the plan, the batched α sweep, and the curve with its audit."""

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import f1_score, precision_score, recall_score
from sklearn.utils.class_weight import compute_class_weight

from pipeline import PipelineError
from pipeline.artifacts import ModelRecord, Predictions
from pipeline.config import ConfigError, EvaluateConfig, TrainConfig, parse_params
from pipeline.training.criterion import make_criterion
from pipeline.evaluation.evaluate import evaluate, plot_data
from pipeline.training.losses import focal_loss
from pipeline.training.plan import RunSpec, config_runs, loss_plan, trained_names
from pipeline.evaluation.strength import curve_rows, curve_table, families
from pipeline.training.sweep import fit_sweep
from pipeline.training.train import fit, predict_logits
from pipeline.data.weights import class_weights, power_weights

counts_strategy = st.lists(st.integers(1, 5000), min_size=2, max_size=20)


# --- the weights -------------------------------------------------------------------------------


@given(counts_strategy)
def test_alpha_zero_gives_every_class_weight_one(counts):
    np.testing.assert_array_equal(power_weights(counts, 0.0), np.ones(len(counts)))


@given(counts_strategy)
def test_alpha_one_is_scikit_learns_balanced(counts):
    y = np.repeat(np.arange(len(counts)), counts)
    expected = compute_class_weight("balanced", classes=np.arange(len(counts)), y=y)
    np.testing.assert_allclose(power_weights(counts, 1.0), expected, rtol=1e-12)


@given(counts_strategy)
def test_alpha_half_is_the_inverse_sqrt_scheme(counts):
    np.testing.assert_allclose(power_weights(counts, 0.5), class_weights(counts, "inverse_sqrt"), rtol=1e-12)


@given(counts_strategy, st.floats(0.0, 4.0))
def test_every_alpha_keeps_the_weighted_count_and_favours_rarer_classes(counts, alpha):
    w = power_weights(counts, alpha)
    assert np.dot(w, counts) == pytest.approx(sum(counts), rel=1e-12)
    assert np.isfinite(w).all() and (w > 0).all()
    order = np.argsort(counts, kind="stable")  # rarest first: never lighter than a commoner class
    assert (np.diff(w[order]) <= 1e-12 * w.max()).all()


@given(st.lists(st.integers(1, 10**9), min_size=2, max_size=8), st.floats(4.0, 60.0))
def test_strong_alphas_on_huge_counts_do_not_overflow(counts, alpha):
    w = power_weights(counts, alpha)
    assert np.isfinite(w).all() and np.dot(w, counts) == pytest.approx(sum(counts), rel=1e-9)


@pytest.mark.parametrize("alpha", [-0.5, float("nan"), float("inf")])
def test_a_bad_alpha_is_a_one_line_error(alpha):
    with pytest.raises(PipelineError, match="train.alphas must be finite and >= 0"):
        power_weights([10, 5], alpha)


# --- the parameters and the plan ---------------------------------------------------------------

STAGE_WEIGHTS = {
    "scheme": "inverse",
    "beta": 0.999,
    "classes": ["a", "b", "c"],
    "counts": [300, 60, 12],
    "weights": [float(x) for x in class_weights([300, 60, 12], "inverse")],
}


def _train(**kw):
    return parse_params(
        {"train": {"losses": ["ce", "weighted_ce", "focal", "weighted_focal"], "gammas": [0, 2], **kw}}
    ).train


def test_the_default_sweeps_weighted_ce_over_four_alphas_and_never_trains_alpha_zero_twice():
    t = _train()
    assert t.alphas == (0.25, 0.5, 0.75, 1.0) and t.alpha_losses == ("weighted_ce",)
    assert [r.model for r in config_runs("weighted_ce", t)] == [
        "weighted_ce_a0.25",
        "weighted_ce_a0.5",
        "weighted_ce_a0.75",
        "weighted_ce_a1",
    ]
    with_zero = _train(alphas=[0, 0.5, 1])
    names = trained_names(with_zero, ())
    assert [n for n in names if n.startswith("weighted_ce")] == ["weighted_ce_a0.5", "weighted_ce_a1"]
    assert names.count("ce") == 1  # alpha = 0 is ce itself
    # weighted_focal keeps weights.scheme unless it is listed
    assert [r.model for r in config_runs("weighted_focal", t)] == ["weighted_focal_g0", "weighted_focal_g2"]


def test_a_plan_carries_one_row_of_power_weights_per_run():
    t = _train(alphas=[0.5, 1], seeds=[0, 1])
    plan = loss_plan("weighted_ce", t, STAGE_WEIGHTS)
    assert [r["model"] for r in plan["runs"]] == [
        "weighted_ce_a0.5_s0",
        "weighted_ce_a0.5_s1",
        "weighted_ce_a1_s0",
        "weighted_ce_a1_s1",
    ]
    cw = plan["class_weights"]
    assert cw["scheme"] == "power" and cw["alphas"] == [0.5, 0.5, 1.0, 1.0]
    for alpha, row in zip(cw["alphas"], cw["weights"]):
        np.testing.assert_allclose(row, power_weights(STAGE_WEIGHTS["counts"], alpha))
    np.testing.assert_allclose(cw["weights"][2], STAGE_WEIGHTS["weights"], rtol=1e-12)  # alpha 1 = inverse
    assert "alphas" not in plan["train"] and "alpha_losses" not in plan["train"]


def test_without_alphas_weighted_ce_trains_once_with_weights_scheme():
    t = _train(alphas=None)
    plan = loss_plan("weighted_ce", t, STAGE_WEIGHTS)
    assert [r["model"] for r in plan["runs"]] == ["weighted_ce"] and plan["runs"][0]["alpha"] is None
    assert plan["class_weights"]["scheme"] == "inverse"


def test_a_gamma_by_alpha_grid_for_weighted_focal_when_asked():
    t = _train(alphas=[0.5, 1], alpha_losses=["weighted_ce", "weighted_focal"])
    assert [r.model for r in config_runs("weighted_focal", t)] == [
        "weighted_focal_g0_a0.5",
        "weighted_focal_g0_a1",
        "weighted_focal_g2_a0.5",
        "weighted_focal_g2_a1",
    ]


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"alphas": []}, "train.alphas must list at least one value, or be null"),
        ({"alphas": [0]}, "train.alphas must list a value > 0"),
        ({"alphas": [0.5, -1]}, "train.alphas must be >= 0; got -1.0"),
        ({"alphas": [0.5, 0.5]}, "train.alphas lists a value twice"),
        ({"alpha_losses": ["focal"]}, "train.alpha_losses must be one of weighted_ce, weighted_focal; got 'focal'"),
        (
            {"losses": ["weighted_ce"], "alphas": [0, 1]},
            "train.alphas lists 0, which for weighted_ce is ce itself .*: add ce to train.losses or drop 0",
        ),
    ],
)
def test_bad_alpha_settings_are_one_line_errors(train, message):
    with pytest.raises(ConfigError, match=f"^params.yaml: {message}"):
        parse_params({"train": train})


# --- the criterion and the batched sweep --------------------------------------------------------


def test_per_configuration_weights_give_each_configuration_its_own_weighted_loss():
    g = torch.Generator().manual_seed(0)
    counts = [300, 60, 12]
    alphas = [0.25, 0.5, 1.0]
    w = torch.tensor(np.array([power_weights(counts, a) for a in alphas]), dtype=torch.float64)
    logits = torch.randn(3, 40, 3, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 3, (40,), generator=g)
    crit = make_criterion("weighted_ce", class_weight=w)
    got = crit(logits, target.expand(3, -1))
    grads = torch.autograd.grad(got.sum(), logits)[0]
    for k in range(3):
        x = logits[k].detach().clone().requires_grad_()
        ref = F.cross_entropy(x, target, weight=w[k])
        torch.testing.assert_close(got[k], ref)
        torch.testing.assert_close(grads[k], torch.autograd.grad(ref, x)[0])
    # a gamma x alpha grid: each configuration its gamma and its weights
    gammas = [0.0, 2.0, 2.0]
    crit = make_criterion("weighted_focal", gamma=gammas, class_weight=w)
    got = crit(logits, target.expand(3, -1))
    for k in range(3):
        torch.testing.assert_close(got[k], focal_loss(logits[k], target, gamma=gammas[k], weight=w[k]))
    # dropping configurations keeps each one's own weights
    kept = crit.take(torch.tensor([2, 0]))
    torch.testing.assert_close(kept(logits[[2, 0]], target.expand(2, -1)), got[[2, 0]])


def _blobs(n, seed, counts_share=(0.7, 0.2, 0.1)):
    rng = np.random.default_rng(seed)
    y = rng.choice(3, size=n, p=counts_share)
    X = (rng.normal(size=(n, 6)) + 1.2 * np.eye(3, 6)[y]).astype(np.float32)
    return X, y.astype(np.int64)


def test_the_alpha_sweep_trains_each_strength_as_it_would_train_alone():
    data = {"train": _blobs(400, 0), "stop": _blobs(80, 2), "val": _blobs(120, 1)}
    counts = np.bincount(data["train"][1], minlength=3).tolist()
    cfg = TrainConfig(hidden=(16, 8), epochs=8, batch_size=32, patience=3, lr=1e-2, dropout=0.1)
    specs = [RunSpec(f"weighted_ce_a{a:g}", "weighted_ce", None, 0, a) for a in (0.25, 0.5, 1.0)]
    rows = torch.tensor(np.array([power_weights(counts, s.alpha) for s in specs]), dtype=torch.float32)
    swept = fit_sweep(
        specs, make_criterion("weighted_ce", class_weight=rows), data, 3, cfg, torch.device("cpu"), progress=False
    )
    X_val = torch.as_tensor(data["val"][0])
    finals = []
    for spec, row, batched in zip(specs, rows, swept):
        alone = fit(
            spec, make_criterion("weighted_ce", class_weight=row), data, 3, cfg, torch.device("cpu"), progress=False
        )
        assert (batched.best_epoch, len(batched.history)) == (alone.best_epoch, len(alone.history))
        for h_b, h_a in zip(batched.history, alone.history):
            assert h_b["train_loss"] == pytest.approx(h_a["train_loss"], rel=1e-4, abs=1e-5)
        torch.testing.assert_close(
            predict_logits(batched.model, X_val), predict_logits(alone.model, X_val), rtol=1e-4, atol=1e-4
        )
        finals.append(batched.history[-1]["train_loss"])
    assert len(set(finals)) == 3  # different weights: different training


# --- the curve and what the audit says of it ----------------------------------------------------

CLASSES = ["head", "mid", "rare/1", "rare 2"]  # a class name MLflow would refuse in a key
TRAIN = [400, 100, 40, 10]  # tail: below the median (70), the last two


def _predictions(y, tail_hit, head_hit, seed):
    """Decisions with a given recall on the tail classes and on the head ones (misses go to class 0 or 1)."""
    rng = np.random.default_rng(seed)
    hit = np.where(y >= 2, rng.random(len(y)) < tail_hit, rng.random(len(y)) < head_hit)
    wrong = np.where(y >= 2, rng.integers(0, 2, len(y)), np.where(y == 0, 2, 3))
    y_pred = np.where(hit, y, wrong)
    proba = np.full((len(y), 4), 0.05)
    proba[np.arange(len(y)), y_pred] = 0.85
    return Predictions(y, y_pred, proba)


def _record(name, loss, alpha, tail_hit, head_hit, seed=0, split_seed=0, gamma=None):
    y = np.repeat(np.arange(4), 60)
    val = _predictions(y, tail_hit, head_hit, 100 + split_seed)
    test = _predictions(y, tail_hit, head_hit, 200 + split_seed)
    return ModelRecord(
        name, loss, gamma, seed, "mlp", loss, {"train": {"hidden": [4]}}, {}, "cpu", None, val, test, alpha=alpha
    )


META = {
    "classes": CLASSES,
    "counts": {
        "train": dict(zip(CLASSES, TRAIN)),
        "val": dict.fromkeys(CLASSES, 60),
        "test": dict.fromkeys(CLASSES, 60),
    },
}


def _evaluate(records, **select):
    cfg = EvaluateConfig()
    cfg = dataclasses.replace(
        cfg,
        bootstrap=dataclasses.replace(cfg.bootstrap, resamples=300),
        select=dataclasses.replace(cfg.select, **select),
        costs=None,
    )
    return evaluate(records, META, cfg, reference_loss="ce")


def test_the_curve_starts_at_ce_and_matches_scikit_learn_on_both_splits():
    records = [
        _record("ce", "ce", None, 0.3, 0.95, split_seed=1),
        _record("weighted_ce_a0.5", "weighted_ce", 0.5, 0.7, 0.9, split_seed=2),
        _record("weighted_ce_a1", "weighted_ce", 1.0, 0.9, 0.6, split_seed=3),
    ]
    ev = _evaluate(records)
    curve = ev.audit["weight_strength"]["weighted_ce"]
    assert curve["alphas"] == [0.0, 0.5, 1.0] and [r["models"] for r in curve["rows"]] == [
        ["ce"],
        ["weighted_ce_a0.5"],
        ["weighted_ce_a1"],
    ]
    assert curve["tail_classes"] == ["rare/1", "rare 2"] and curve["metric"] == "macro_f1"
    by_name = {r.name: r for r in records}
    for row in curve["rows"]:
        for split in ("val", "test"):
            p = getattr(by_name[row["models"][0]], split)
            got = row[split]
            for avg in ("macro", "micro", "weighted"):
                assert got[f"{avg}_f1"]["value"] == pytest.approx(f1_score(p.y_true, p.y_pred, average=avg))
            assert got["tail_recall"]["value"] == pytest.approx(
                recall_score(p.y_true, p.y_pred, labels=[2, 3], average="macro")
            )
            assert got["tail_precision"]["value"] == pytest.approx(
                precision_score(p.y_true, p.y_pred, labels=[2, 3], average="macro")
            )
            for v in got.values():
                assert v["low"] <= v["value"] <= v["high"]
    val_f1 = [
        f1_score(by_name[r["models"][0]].val.y_true, by_name[r["models"][0]].val.y_pred, average="macro")
        for r in curve["rows"]
    ]
    assert curve["peak"]["alpha"] == curve["alphas"][int(np.argmax(val_f1))] == 0.5
    assert curve["peak"]["validation"] == pytest.approx(max(val_f1))
    # what the tail gains from ce to the peak, on test, as tail_trade measures it
    ce_test, peak_test = by_name["ce"].test, by_name["weighted_ce_a0.5"].test
    gain = recall_score(peak_test.y_true, peak_test.y_pred, labels=[2, 3], average="macro") - recall_score(
        ce_test.y_true, ce_test.y_pred, labels=[2, 3], average="macro"
    )
    assert curve["trade"]["tail_recall_change"]["value"] == pytest.approx(gain) and gain > 0.2
    assert curve["trade"]["tail_recall_change"]["low"] > 0
    assert "peaks at α = 0.5" in curve["summary"] and "tail recall +" in curve["summary"]
    # DVC's rows and MLflow's steps
    rows = curve_rows(ev.audit["weight_strength"])
    assert len(rows) == 6 and [r["alpha"] for r in rows if r["kept"]] == [0.5]
    assert plot_data(records, ev, CLASSES).rows["alpha"] == rows
    table = curve_table(ev.audit["weight_strength"])  # MLflow's table: alpha as a column, with intervals
    assert [(r["alpha"], r["split"]) for r in table] == [
        (a, s) for a in (0.0, 0.5, 1.0) for s in ("validation", "test")
    ]
    assert table[2]["macro_f1"] == curve["rows"][1]["val"]["macro_f1"]["value"]
    assert table[2]["macro_f1_low"] == curve["rows"][1]["val"]["macro_f1"]["low"]


def test_the_flat_top_holds_every_alpha_within_noise_of_the_peak():
    # a0.5 and a0.75 make the same decisions (within noise, exactly); a1 is clearly worse
    records = [
        _record("ce", "ce", None, 0.2, 0.95, split_seed=1),
        _record("weighted_ce_a0.5", "weighted_ce", 0.5, 0.8, 0.9, split_seed=2),
        _record("weighted_ce_a0.75", "weighted_ce", 0.75, 0.8, 0.9, split_seed=2),
        _record("weighted_ce_a1", "weighted_ce", 1.0, 0.95, 0.3, split_seed=4),
    ]
    curve = _evaluate(records).audit["weight_strength"]["weighted_ce"]
    assert curve["peak"]["alpha"] == 0.5  # a tie goes to the weaker weighting
    assert curve["flat_top"] == {"alphas": [0.5, 0.75], "low": 0.5, "high": 0.75, "contiguous": True}
    for row in curve["rows"]:
        d = row["val_vs_peak"]
        inside = row["alpha"] in curve["flat_top"]["alphas"]
        assert inside == (d["high"] >= 0), row["alpha"]
    assert "α from 0.5 to 0.75" in curve["summary"]


def test_seeds_are_averaged_and_a_lower_is_better_policy_peaks_at_its_minimum():
    records = [
        _record("ce_s0", "ce", None, 0.3, 0.95, seed=0, split_seed=1),
        _record("ce_s1", "ce", None, 0.35, 0.95, seed=1, split_seed=5),
        _record("weighted_ce_a1_s0", "weighted_ce", 1.0, 0.9, 0.85, seed=0, split_seed=3),
        _record("weighted_ce_a1_s1", "weighted_ce", 1.0, 0.85, 0.85, seed=1, split_seed=6),
    ]
    curve = _evaluate(records, metric="log_loss").audit["weight_strength"]["weighted_ce"]
    assert [r["models"] for r in curve["rows"]] == [["ce_s0", "ce_s1"], ["weighted_ce_a1_s0", "weighted_ce_a1_s1"]]
    by_name = {r.name: r for r in records}
    for row in curve["rows"]:
        expected = np.mean(
            [f1_score(by_name[m].test.y_true, by_name[m].test.y_pred, average="macro") for m in row["models"]]
        )
        assert row["test"]["macro_f1"]["value"] == pytest.approx(expected)
    losses = [row["val"]["log_loss"]["value"] for row in curve["rows"]]
    assert curve["peak"]["alpha"] == curve["alphas"][int(np.argmin(losses))]
    assert curve["higher_is_better"] is False
    assert curve["peak"]["at_edge"] == (curve["peak"]["alpha"] == 1.0)


def test_no_alpha_family_no_curve():
    ev = _evaluate([_record("ce", "ce", None, 0.3, 0.95), _record("weighted_ce", "weighted_ce", None, 0.7, 0.9)])
    assert ev.audit["weight_strength"] == {}


def test_a_gamma_by_alpha_grid_gives_one_curve_per_gamma_starting_at_that_gammas_focal():
    records = [
        _record("focal_g2", "focal", None, 0.3, 0.95, gamma=2.0, split_seed=1),
        _record("weighted_focal_g2_a0.5", "weighted_focal", 0.5, 0.7, 0.9, gamma=2.0, split_seed=2),
        _record("weighted_focal_g2_a1", "weighted_focal", 1.0, 0.8, 0.8, gamma=2.0, split_seed=3),
        _record("weighted_focal_g0_a0.5", "weighted_focal", 0.5, 0.6, 0.9, gamma=0.0, split_seed=4),
        _record("weighted_focal_g0_a1", "weighted_focal", 1.0, 0.7, 0.9, gamma=0.0, split_seed=5),
    ]
    families_ = families(records)
    assert set(families_) == {"weighted_focal_g0", "weighted_focal_g2"}
    assert [(a, [m.name for m in ms]) for a, ms in families_["weighted_focal_g2"]] == [
        (0.0, ["focal_g2"]),
        (0.5, ["weighted_focal_g2_a0.5"]),
        (1.0, ["weighted_focal_g2_a1"]),
    ]
    assert [a for a, _ in families_["weighted_focal_g0"]] == [0.5, 1.0]  # focal_g0 was not trained
    curves = _evaluate(records).audit["weight_strength"]
    assert curves["weighted_focal_g0"]["from"] == {"alpha": 0.5, "models": ["weighted_focal_g0_a0.5"]}
