"""Losses against torch.nn.functional and against their defining formulas."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import PipelineError
from pipeline.config import LOSSES
from pipeline.training.criterion import make_criterion
from pipeline.training.losses import focal_loss, ldam_loss, ldam_margins, log_prior, logit_adjusted_loss
from pipeline.data.weights import class_weights

REDUCTIONS = ["none", "mean", "sum"]
COUNTS = [500, 200, 80, 30, 12]


def _batch(seed, n=32, c=5, dtype=torch.float64, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, c, generator=g, dtype=dtype) * scale).requires_grad_()
    target = torch.randint(0, c, (n,), generator=g)
    weight = torch.rand(c, generator=g, dtype=dtype) + 0.1
    return logits, target, weight


def _tol(dtype):
    return dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)


def _assert_same_value_and_gradient(ours, ref, logits, **tol):
    torch.testing.assert_close(ours, ref, **tol)
    upstream = torch.rand_like(ours)  # a generic vector-Jacobian product, not just d(sum)
    (g_ours,) = torch.autograd.grad(ours, logits, upstream, retain_graph=True)
    (g_ref,) = torch.autograd.grad(ref, logits, upstream, retain_graph=True)
    torch.testing.assert_close(g_ours, g_ref, **tol)


# --- focal --------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_focal_gamma0_equals_cross_entropy_in_value_and_gradient(reduction, weighted, dtype, seed):
    logits, target, weight = _batch(seed, dtype=dtype)
    w = weight if weighted else None
    ours = focal_loss(logits, target, gamma=0.0, weight=w, reduction=reduction)
    ref = F.cross_entropy(logits, target, weight=w, reduction=reduction)
    _assert_same_value_and_gradient(ours, ref, logits, **_tol(dtype))


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
    for gamma in (0.25, 0.5, 2.0, torch.tensor(0.5), torch.tensor(0.0)):
        (grad,) = torch.autograd.grad(focal_loss(logits, target, gamma=gamma), logits)
        assert torch.isfinite(grad).all()
        assert grad[1].abs().sum() > 0


def test_focal_with_one_gamma_per_stacked_configuration_is_each_focal_alone():
    gammas = [0.0, 0.5, 2.0]
    stacked = torch.stack([_batch(s)[0].detach() for s in range(3)]).requires_grad_()  # (K, N, C)
    target = torch.stack([_batch(s)[1] for s in range(3)])  # (K, N)
    ours = focal_loss(stacked, target, gamma=torch.tensor(gammas, dtype=torch.float64)[:, None], reduction="none")
    for k, g in enumerate(gammas):
        torch.testing.assert_close(
            ours[k], focal_loss(stacked[k], target[k], gamma=g, reduction="none"), rtol=1e-12, atol=1e-12
        )


# --- logit adjustment ---------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("tau", [0.0, 0.5, 1.0, 2.0])
def test_logit_adjusted_is_cross_entropy_on_shifted_logits(reduction, weighted, tau):
    logits, target, weight = _batch(4)
    w = weight if weighted else None
    prior = log_prior(COUNTS)
    ours = logit_adjusted_loss(logits, target, prior, tau=tau, weight=w, reduction=reduction)
    ref = F.cross_entropy(
        logits + tau * torch.log(torch.tensor(COUNTS, dtype=torch.float64) / sum(COUNTS)),
        target,
        weight=w,
        reduction=reduction,
    )
    _assert_same_value_and_gradient(ours, ref, logits, **_tol(torch.float64))
    if tau == 0:
        torch.testing.assert_close(ours, F.cross_entropy(logits, target, weight=w, reduction=reduction))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), tau=st.floats(0.0, 3.0), shift=st.floats(-5, 5))
def test_logit_adjustment_penalises_rare_targets_and_ignores_the_prior_normalisation(seed, tau, shift):
    logits, _, _ = _batch(seed)
    prior = log_prior(COUNTS)
    rare = torch.full((len(logits),), int(np.argmin(COUNTS)))
    common = torch.full((len(logits),), int(np.argmax(COUNTS)))
    ce = lambda t: F.cross_entropy(logits, t, reduction="none")  # noqa: E731
    la = lambda t, p=prior: logit_adjusted_loss(logits, t, p, tau=tau, reduction="none")  # noqa: E731
    assert (la(rare) >= ce(rare) - 1e-12).all()  # the rarest class's logit is pushed down most
    assert (la(common) <= ce(common) + 1e-12).all()
    torch.testing.assert_close(la(rare, prior + shift), la(rare), rtol=1e-10, atol=1e-10)


# --- LDAM ---------------------------------------------------------------------------------------


def test_ldam_margins_follow_the_quarter_power_law():
    m = ldam_margins(COUNTS, max_margin=0.5)
    assert m.max().item() == pytest.approx(0.5)
    assert m[int(np.argmin(COUNTS))].item() == pytest.approx(0.5)
    c = m * torch.tensor(COUNTS, dtype=torch.float64) ** 0.25  # m_c = C / n_c^(1/4)
    torch.testing.assert_close(c, torch.full_like(c, c[0].item()))
    assert ldam_margins([16, 1], 1.0).tolist() == pytest.approx([0.5, 1.0])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_ldam_is_cross_entropy_of_scaled_logits_with_the_target_margin_subtracted(reduction, weighted, scale):
    logits, target, weight = _batch(5)
    w = weight if weighted else None
    margins = ldam_margins(COUNTS, 0.5)
    shifted = logits.clone()
    shifted[torch.arange(len(target)), target] -= margins[target]  # z_y - m_y, other logits as they are
    ref = F.cross_entropy(scale * shifted, target, weight=w, reduction=reduction)
    ours = ldam_loss(logits, target, margins, scale=scale, weight=w, reduction=reduction)
    _assert_same_value_and_gradient(ours, ref, logits, **_tol(torch.float64))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.5, 30.0), max_margin=st.floats(0.01, 2.0))
def test_ldam_margin_only_raises_the_loss_and_most_for_rare_classes(seed, scale, max_margin):
    logits, target, _ = _batch(seed)
    margins = ldam_margins(COUNTS, max_margin)
    ldam = ldam_loss(logits, target, margins, scale=scale, reduction="none")
    assert (ldam >= F.cross_entropy(scale * logits, target, reduction="none") - 1e-12).all()
    torch.testing.assert_close(ldam_loss(logits, target, torch.zeros(5), scale=1.0), F.cross_entropy(logits, target))
    # the same logits row as a rare-class target and as a common-class target, with the target
    # logit placed identically: the rare class, with the larger margin, loses more
    row = logits[:1].detach().clone()
    rare, common = int(np.argmin(COUNTS)), int(np.argmax(COUNTS))
    as_rare, as_common = row.clone(), row.clone()
    as_common[0, [rare, common]] = as_common[0, [common, rare]]
    l_rare = ldam_loss(as_rare, torch.tensor([rare]), margins, scale=scale)
    l_common = ldam_loss(as_common, torch.tensor([common]), margins, scale=scale)
    assert l_rare >= l_common - 1e-12


# --- the criteria -------------------------------------------------------------------------------


def _criterion(loss, gamma=2.0, beta=0.99, scheme_weights=None, **kw):
    eff = torch.tensor(class_weights(COUNTS, "effective_number", beta), dtype=torch.float32)
    inv = torch.tensor(class_weights(COUNTS, "inverse"), dtype=torch.float32)
    weight = eff if loss in ("cb_focal", "ldam_drw") else inv
    return make_criterion(loss, gamma=gamma, class_weight=weight, class_counts=COUNTS, **kw), inv, eff


def test_criteria_match_their_definitions():
    logits, target, _ = _batch(3, dtype=torch.float32)
    logits = logits.detach()
    crit = lambda loss, **kw: _criterion(loss, **kw)[0](logits, target, epoch=1)  # noqa: E731
    _, inv, eff = _criterion("ce")
    torch.testing.assert_close(crit("ce"), F.cross_entropy(logits, target))
    torch.testing.assert_close(crit("weighted_ce"), F.cross_entropy(logits, target, weight=inv))
    torch.testing.assert_close(crit("focal"), focal_loss(logits, target, gamma=2.0))
    torch.testing.assert_close(crit("weighted_focal"), focal_loss(logits, target, gamma=2.0, weight=inv))
    torch.testing.assert_close(crit("cb_focal"), focal_loss(logits, target, gamma=2.0, weight=eff))
    torch.testing.assert_close(
        crit("logit_adjusted", tau=1.5), logit_adjusted_loss(logits, target, log_prior(COUNTS), tau=1.5)
    )
    # weighted focal at gamma 0 is weighted cross-entropy; cb focal at beta 0 is plain focal
    torch.testing.assert_close(crit("weighted_focal", gamma=0.0), F.cross_entropy(logits, target, weight=inv))
    torch.testing.assert_close(crit("cb_focal", beta=0.0), focal_loss(logits, target, gamma=2.0))


def test_ldam_drw_is_unweighted_before_drw_epoch_and_effective_number_weighted_from_it():
    logits, target, _ = _batch(6, dtype=torch.float32)
    crit, _, eff = _criterion("ldam_drw", max_margin=0.4, scale=10.0, drw_epoch=5)
    margins = ldam_margins(COUNTS, 0.4).float()
    for epoch in (1, 4):
        torch.testing.assert_close(crit(logits, target, epoch), ldam_loss(logits, target, margins, scale=10.0))
    for epoch in (5, 9):
        torch.testing.assert_close(
            crit(logits, target, epoch), ldam_loss(logits, target, margins, scale=10.0, weight=eff)
        )
    assert crit.final_phase_epoch == 5 and _criterion("ce")[0].final_phase_epoch == 1
    with pytest.raises(ValueError, match="ldam_drw needs the epoch"):
        crit(logits, target)


@pytest.mark.parametrize("loss", LOSSES)
def test_stacked_criterion_gives_each_configuration_its_own_mean_and_gradient(loss):
    gammas = [0.0, 1.0, 3.0]
    stacked = torch.stack([_batch(s, dtype=torch.float32)[0].detach() for s in range(3)]).requires_grad_()
    target = torch.stack([_batch(s)[1] for s in range(3)])
    batched, _, _ = _criterion(loss, gamma=gammas, drw_epoch=2)
    means = batched(stacked, target, epoch=3)  # (K,)
    (grad,) = torch.autograd.grad(means.sum(), stacked)
    for k, g in enumerate(gammas):
        alone, _, _ = _criterion(loss, gamma=g, drw_epoch=2)
        x = stacked[k].detach().clone().requires_grad_()
        value = alone(x, target[k], epoch=3)
        torch.testing.assert_close(means[k], value)
        torch.testing.assert_close(grad[k], torch.autograd.grad(value, x)[0])  # no mixing
    subset = batched.take(torch.tensor([2, 0]))
    torch.testing.assert_close(subset(stacked[[2, 0]], target[[2, 0]], epoch=3), means[[2, 0]])


@pytest.mark.parametrize("fn", [focal_loss, logit_adjusted_loss, ldam_loss])
def test_losses_reject_an_unknown_reduction(fn):
    logits, target, _ = _batch(0)
    extra = {"logit_adjusted_loss": (log_prior(COUNTS),), "ldam_loss": (ldam_margins(COUNTS),)}.get(fn.__name__, ())
    with pytest.raises(ValueError, match="reduction must be one of none, mean, sum; got 'avg'"):
        fn(logits, target, *extra, reduction="avg")


def test_bad_arguments_are_named():
    logits, target, _ = _batch(0)
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        focal_loss(logits, target, gamma=-1.0)
    with pytest.raises(ValueError, match="tau must be >= 0"):
        logit_adjusted_loss(logits, target, log_prior(COUNTS), tau=-1.0)
    with pytest.raises(ValueError, match="scale must be > 0"):
        ldam_loss(logits, target, ldam_margins(COUNTS), scale=0.0)
    with pytest.raises(PipelineError, match="train.losses must be one of ce, weighted_ce, focal, .*; got 'hinge'"):
        make_criterion("hinge")
    with pytest.raises(PipelineError, match="loss weighted_ce needs class weights"):
        make_criterion("weighted_ce")
    with pytest.raises(PipelineError, match="loss cb_focal needs a gamma"):
        make_criterion("cb_focal", class_weight=torch.ones(5))
    with pytest.raises(PipelineError, match="loss focal needs gammas >= 0"):
        make_criterion("focal", gamma=[1.0, -1.0])
    with pytest.raises(PipelineError, match="loss logit_adjusted needs the training class counts"):
        make_criterion("logit_adjusted")
