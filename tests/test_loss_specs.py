"""The loss table is the one place a loss is described: adding an entry is enough to train it."""

import dataclasses

import numpy as np
import pytest
import torch

from pipeline import PipelineError
from pipeline.config import TrainConfig, parse_params
from pipeline.loss_specs import LOSS_SPECS, SCHEME, LossSpec, loss_only_keys
from pipeline.training.criterion import make_criterion, plan_criterion
from pipeline.training.losses import _log_pt, _reduce, _weighted
from pipeline.training.plan import loss_plan
from pipeline.training.sweep import fit_sweep
from pipeline.training.train import fit
from pipeline.data.weights import class_weights

CPU = torch.device("cpu")


def brier_loss(logits, target, weight=None, reduction="none"):
    """A toy loss for the test: the squared error of the probabilities, ``sum_c (p_c - 1[c=y])^2``."""
    p = torch.softmax(logits, dim=-1)
    per_sample = (p - torch.nn.functional.one_hot(target, p.shape[-1]).to(p.dtype)).pow(2).sum(-1)
    per_sample, w_target = _weighted(per_sample, target, weight)
    return _reduce(per_sample, w_target, reduction)


def _blobs(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = (rng.normal(size=(n, 4)) + 2.0 * np.eye(3, 4)[y]).astype(np.float32)
    return X, y.astype(np.int64)


def test_a_new_spec_trains_through_the_plan_and_the_sweep(monkeypatch):
    monkeypatch.setitem(
        LOSS_SPECS,
        "brier",
        LossSpec(
            "brier",
            f"{__name__}:brier_loss",
            "sum_c (p_c - 1[c=y])^2",
            "Brier, Monthly Weather Review 1950",
            weights=SCHEME,
        ),
    )
    params = parse_params(
        {
            "train": {
                "losses": ["ce", "brier"],
                "hidden": [8],
                "epochs": 6,
                "patience": 2,
                "batch_size": 32,
                "seeds": [0, 1],
            }
        }
    )
    counts = [120, 60, 20]
    weights = {
        "scheme": "inverse",
        "beta": 0.999,
        "classes": ["a", "b", "c"],
        "counts": counts,
        "weights": class_weights(counts, "inverse").tolist(),
    }
    plan = loss_plan("brier", params.train, weights)
    assert [r["model"] for r in plan["runs"]] == ["brier_s0", "brier_s1"]
    assert plan["class_weights"]["weights"] == weights["weights"] and plan["class_counts"] is None

    data = {"train": _blobs(200, 0), "stop": _blobs(40, 2), "val": _blobs(60, 1)}
    from pipeline.training.plan import RunSpec

    runs = [RunSpec(**r) for r in plan["runs"]]
    swept = fit_sweep(runs, plan_criterion(plan), data, 3, params.train, CPU, progress=False)
    criterion = plan_criterion(plan)
    alone = fit(runs[1], criterion, data, 3, params.train, CPU, progress=False)
    assert swept[1].best_epoch == alone.best_epoch
    torch.testing.assert_close(
        swept[1].model.state_dict()["net.0.weight"], alone.model.state_dict()["net.0.weight"], rtol=1e-4, atol=1e-5
    )
    # the criterion is the toy function, weighted by the plan's weights
    logits, target = torch.randn(16, 3), torch.randint(0, 3, (16,))
    w = torch.tensor(weights["weights"], dtype=torch.float32)
    torch.testing.assert_close(criterion(logits, target, epoch=1), brier_loss(logits, target, w, reduction="mean"))


def test_the_table_decides_what_config_accepts(monkeypatch):
    with pytest.raises(PipelineError, match="train.losses must be one of .*; got 'brier'"):
        parse_params({"train": {"losses": ["brier"]}})
    monkeypatch.setitem(LOSS_SPECS, "brier", LossSpec("brier", f"{__name__}:brier_loss", "", sweeps_gamma=True))
    with pytest.raises(PipelineError, match="train.gammas must list at least one value for brier"):
        parse_params({"train": {"losses": ["brier"], "gammas": []}})


def test_specs_name_importable_functions_and_known_train_keys():
    train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    assert loss_only_keys() <= train_keys
    for spec in LOSS_SPECS.values():
        assert spec.weights in (None, "scheme", "effective_number"), spec.name
        counts = [5, 10, 20] if spec.counts else None
        weight = torch.ones(3) if spec.weights else None
        crit = make_criterion(spec.name, gamma=2.0, class_weight=weight, class_counts=counts, drw_epoch=1)
        logits, target = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
        assert torch.isfinite(crit(logits, target, epoch=1)), spec.name


def test_cross_entropy_loss_is_focal_at_gamma_zero_operation_for_operation():
    from pipeline.training.losses import cross_entropy_loss, focal_loss

    logits, target = torch.randn(32, 5, dtype=torch.float64), torch.randint(0, 5, (32,))
    w = torch.rand(5, dtype=torch.float64) + 0.5
    for reduction in ("none", "mean", "sum"):
        assert torch.equal(
            cross_entropy_loss(logits, target, w, reduction=reduction),
            focal_loss(logits, target, gamma=0.0, weight=w, reduction=reduction),
        )
    torch.testing.assert_close(
        cross_entropy_loss(logits, target, w), torch.nn.functional.cross_entropy(logits, target, weight=w)
    )
    torch.testing.assert_close(-_log_pt(logits, target), cross_entropy_loss(logits, target, reduction="none"))


def test_an_unknown_setting_is_named():
    with pytest.raises(TypeError, match="unexpected setting 'margin'"):
        make_criterion("ce", margin=1.0)
