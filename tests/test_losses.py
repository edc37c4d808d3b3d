"""Losses against torch.nn.functional and against their defining formulas."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import PipelineError
from pipeline.losses import focal_loss, make_criterion

REDUCTIONS = ["none", "mean", "sum"]


def _batch(seed, n=32, c=5, dtype=torch.float64, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, c, generator=g, dtype=dtype) * scale).requires_grad_()
    target = torch.randint(0, c, (n,), generator=g)
    weight = torch.rand(c, generator=g, dtype=dtype) + 0.1
    return logits, target, weight


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_focal_gamma0_equals_cross_entropy_in_value_and_gradient(reduction, weighted, dtype, seed):
    logits, target, weight = _batch(seed, dtype=dtype)
    w = weight if weighted else None
    ours = focal_loss(logits, target, gamma=0.0, weight=w, reduction=reduction)
    ref = F.cross_entropy(logits, target, weight=w, reduction=reduction)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours, ref, **tol)
    upstream = torch.rand_like(ours)  # a generic vector-Jacobian product, not just d(sum)
    (g_ours,) = torch.autograd.grad(ours, logits, upstream)
    (g_ref,) = torch.autograd.grad(ref, logits, upstream)
    torch.testing.assert_close(g_ours, g_ref, **tol)


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0, 5.0])
@pytest.mark.parametrize("weighted", [False, True])
def test_focal_matches_its_formula(gamma, weighted):
    logits, target, weight = _batch(7)
    p = torch.softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
    w = weight[target] if weighted else torch.ones_like(p)
    expected = -w * (1 - p) ** gamma * torch.log(p)
    ours = focal_loss(logits, target, gamma=gamma, weight=weight if weighted else None, reduction="none")
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-12)
    mean = focal_loss(logits, target, gamma=gamma, weight=weight if weighted else None)
    torch.testing.assert_close(mean, expected.sum() / w.sum(), rtol=1e-10, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    gamma=st.floats(0.0, 10.0),
    scale=st.floats(0.01, 30.0),
)
def test_focal_never_exceeds_cross_entropy_elementwise(seed, gamma, scale):
    logits, target, weight = _batch(seed, scale=scale)
    focal = focal_loss(logits, target, gamma=gamma, weight=weight, reduction="none")
    ce = F.cross_entropy(logits, target, weight=weight, reduction="none")
    assert (focal >= 0).all()
    assert (focal <= ce + 1e-12).all()


def test_focal_gradient_is_finite_when_confident():
    # p_y rounds to 1 in float32: (1 - p)^0.5 has an infinite derivative there
    logits = torch.tensor([[60.0, 0.0, 0.0], [0.0, 0.0, 0.0]], requires_grad=True)
    target = torch.tensor([0, 1])
    for gamma in (0.25, 0.5, 2.0):
        (grad,) = torch.autograd.grad(focal_loss(logits, target, gamma=gamma), logits)
        assert torch.isfinite(grad).all()
        assert grad[1].abs().sum() > 0


def test_focal_rejects_bad_arguments():
    logits, target, _ = _batch(0)
    with pytest.raises(ValueError, match="reduction must be one of none, mean, sum; got 'avg'"):
        focal_loss(logits, target, reduction="avg")
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        focal_loss(logits, target, gamma=-1.0)


def test_criteria_match_their_definitions():
    logits, target, weight = _batch(3, dtype=torch.float32)
    weight = weight.float()
    torch.testing.assert_close(make_criterion("ce")(logits, target), F.cross_entropy(logits, target))
    torch.testing.assert_close(
        make_criterion("weighted_ce", class_weight=weight)(logits, target),
        F.cross_entropy(logits, target, weight=weight),
    )
    torch.testing.assert_close(
        make_criterion("focal", gamma=2.0)(logits, target), focal_loss(logits, target, gamma=2.0)
    )
    with pytest.raises(PipelineError, match="train.losses must be one of"):
        make_criterion("hinge")
    with pytest.raises(PipelineError, match="needs class weights"):
        make_criterion("weighted_ce")
