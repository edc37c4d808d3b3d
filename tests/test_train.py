"""Training: the sequential reference, and the batched sweep against it configuration by configuration."""

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.metrics import f1_score, log_loss

from pipeline import PipelineError
from pipeline.config import GAMMA_LOSSES, LOSSES, TrainConfig
from pipeline.training.criterion import make_criterion
from pipeline.training.model import MLP, BiasReluDropout, StackedMLP, StackedOutput
from pipeline.training.plan import RunSpec, drw_start, model_name, plan_runs
from pipeline.training.sweep import fit_sweep
from pipeline.training.train import (
    batch_rule,
    fit,
    macro_f1,
    make_optimizer,
    predict_logits,
    resolve_batch,
    resolve_device,
    warm_up,
)
from pipeline.data.weights import class_weights

CPU = torch.device("cpu")
# Where a GPU is at hand (bench/device_check.sh runs this file there), the device-parametrised
# tests run on it too; elsewhere their cuda case skips: no CUDA device can exist there.
ON_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
DEVICES = [pytest.param(CPU, id="cpu"), pytest.param(torch.device("cuda"), id="cuda", marks=ON_CUDA)]


def test_model_names():
    assert model_name("ce", None, 0, 1) == "ce"
    assert model_name("focal", 2.0, 0, 1) == "focal_g2"
    assert model_name("focal", 0.5, 3, 2) == "focal_g0.5_s3"
    assert model_name("cb_focal", 1.0, 0, 1) == "cb_focal_g1"
    assert model_name("ldam_drw", None, 1, 2) == "ldam_drw_s1"


def test_plan_runs_sweeps_gamma_only_for_the_focal_family():
    assert [r.model for r in plan_runs("ce", (0.0, 2.0), (0,))] == ["ce"]
    assert [r.model for r in plan_runs("logit_adjusted", (0.0, 2.0), (0,))] == ["logit_adjusted"]
    runs = plan_runs("focal", (0.0, 2.0), (1, 2))
    assert [r.model for r in runs] == ["focal_g0_s1", "focal_g0_s2", "focal_g2_s1", "focal_g2_s2"]
    assert {(r.gamma, r.seed) for r in runs} == {(0.0, 1), (0.0, 2), (2.0, 1), (2.0, 2)}
    for loss in ("weighted_focal", "cb_focal"):
        assert [r.model for r in plan_runs(loss, (0.5, 2.0), (0,))] == [f"{loss}_g0.5", f"{loss}_g2"]


def test_drw_starts_two_thirds_in_unless_set():
    assert drw_start(TrainConfig(epochs=100)) == 67
    assert drw_start(TrainConfig(epochs=3)) == 2
    assert drw_start(TrainConfig(epochs=1)) == 1
    assert drw_start(TrainConfig(epochs=100, drw_epoch=10)) == 10


def test_cuda_without_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(PipelineError, match="train.device is cuda but no CUDA device"):
        resolve_device("cuda")


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 6), st.integers(1, 4), st.integers(1, 60), st.integers(0, 10_000))
def test_macro_f1_equals_sklearn(n_classes, k, n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    pred = rng.integers(0, n_classes, (k, n))
    ours = macro_f1(torch.tensor(y), torch.tensor(pred), n_classes)
    for row in range(k):
        ref = f1_score(y, pred[row], average="macro", labels=range(n_classes), zero_division=0)
        assert ours[row].item() == pytest.approx(ref, abs=1e-12)
    assert macro_f1(torch.tensor(y), torch.tensor(pred[0]), n_classes).item() == pytest.approx(ours[0].item())


def _blobs(n, seed, sep=3.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.normal(size=(n, 4)).astype(np.float32) + np.eye(3, 4, dtype=np.float32)[y] * sep
    return X, y.astype(np.int64)


@pytest.fixture
def data():
    return {"train": _blobs(300, 0), "stop": _blobs(60, 2), "val": _blobs(90, 1)}


CFG = TrainConfig(hidden=(16,), epochs=12, batch_size=32, patience=4, lr=1e-2, dropout=0.1)


def test_training_is_deterministic_for_a_seed(data):
    spec = RunSpec("focal_g2", "focal", 2.0, 0)
    crit = make_criterion("focal", gamma=2.0)
    a = fit(spec, crit, data, 3, CFG, CPU, progress=False)
    b = fit(spec, crit, data, 3, CFG, CPU, progress=False)
    for key, value in a.model.state_dict().items():
        torch.testing.assert_close(value, b.model.state_dict()[key], rtol=0, atol=0)
    assert a.history == b.history


def test_without_a_terminal_progress_is_logged_with_the_epoch(data, caplog, monkeypatch):
    import pipeline.training.train as train_module

    monkeypatch.setattr(train_module, "LOG_EVERY_S", 0.0)
    cfg = dataclasses.replace(CFG, epochs=3, patience=5)
    with caplog.at_level("INFO", logger="pipeline.training.train"):
        fit(RunSpec("ce", "ce", None, 0), make_criterion("ce"), data, 3, cfg, CPU, progress=None)
        fit_sweep(
            [RunSpec("focal_g0", "focal", 0.0, 0), RunSpec("focal_g2", "focal", 2.0, 0)],
            make_criterion("focal", gamma=[0.0, 2.0]),
            data,
            3,
            cfg,
            CPU,
            progress=None,
            desc="focal",
        )
    lines = [r.getMessage() for r in caplog.records]
    assert [m.split(",")[0] for m in lines if m.startswith("ce:")] == [
        "ce: epoch 1/3",
        "ce: epoch 2/3",
        "ce: epoch 3/3",
    ]
    assert "focal: epoch 3/3, training 2/2, best " in [m[: len("focal: epoch 3/3, training 2/2, best ")] for m in lines]
    caplog.clear()
    with caplog.at_level("INFO", logger="pipeline.training.train"):
        fit(RunSpec("ce", "ce", None, 0), make_criterion("ce"), data, 3, cfg, CPU, progress=False)
    assert not caplog.records  # progress=False: silent


@pytest.mark.parametrize("metric", ["macro_f1", "log_loss", "balanced_log_loss"])
def test_early_stopping_reads_the_slice_and_restores_its_best_epoch(data, metric):
    spec = RunSpec("ce", "ce", None, 0)
    cfg = dataclasses.replace(CFG, early_stopping_metric=metric)
    result = fit(spec, make_criterion("ce"), data, 3, cfg, CPU, progress=False)
    curve = [h[f"stop_{metric}"] for h in result.history]
    best = max(curve) if metric == "macro_f1" else min(curve)
    assert result.best_score == best
    assert result.history[result.best_epoch - 1][f"stop_{metric}"] == best
    assert len(result.history) <= CFG.epochs
    # the returned model is the best epoch's: recompute its monitored value on the slice with sklearn
    X, y = data["stop"]
    with torch.no_grad():
        proba = torch.softmax(result.model(torch.as_tensor(X)).double(), 1).numpy()
    if metric == "macro_f1":
        assert f1_score(y, proba.argmax(1), average="macro") == pytest.approx(best)
    elif metric == "log_loss":
        assert log_loss(y, proba, labels=range(3)) == pytest.approx(best, rel=1e-9)
    else:
        per_class = [log_loss(y[y == c], proba[y == c], labels=range(3)) for c in range(3)]
        assert np.mean(per_class) == pytest.approx(best, rel=1e-9)
    # validation is recorded (criterion and confusion matrix per epoch) and never decides
    with torch.no_grad():
        pred = result.model(torch.as_tensor(data["val"][0])).argmax(1).numpy()
    counts = result.history[result.best_epoch - 1]["val_counts"]
    cm = sk_confusion_matrix(data["val"][1], pred, labels=range(3))
    assert counts == {"tp": np.diag(cm).tolist(), "support": cm.sum(1).tolist(), "predicted": cm.sum(0).tolist()}
    assert f1_score(data["val"][1], pred, average="macro") > 0.8  # separable blobs are learned


def test_validation_never_changes_training(data):
    """Training reads validation only to record it: other validation labels, the same model."""
    spec = RunSpec("ce", "ce", None, 0)
    a = fit(spec, make_criterion("ce"), data, 3, CFG, CPU, progress=False)
    X_val, y_val = data["val"]
    shuffled = {**data, "val": (X_val, np.random.default_rng(0).permutation(y_val))}
    b = fit(spec, make_criterion("ce"), shuffled, 3, CFG, CPU, progress=False)
    assert a.best_epoch == b.best_epoch and len(a.history) == len(b.history)
    for key, value in a.model.state_dict().items():
        torch.testing.assert_close(value, b.model.state_dict()[key], rtol=0, atol=0)


def test_early_stopping_slice_is_stratified_and_keeps_every_class_to_fit():
    from pipeline.artifacts import early_stopping_mask

    y = np.repeat(np.arange(4), [100, 20, 4, 1])
    mask = early_stopping_mask(y, 0.1, seed=0)
    assert np.bincount(y[mask], minlength=4).tolist() == [10, 2, 0, 0]
    assert (np.bincount(y[~mask], minlength=4) >= 1).all()
    np.testing.assert_array_equal(mask, early_stopping_mask(y, 0.1, seed=0))
    assert not np.array_equal(mask, early_stopping_mask(y, 0.1, seed=1))
    half = early_stopping_mask(np.array([0, 0, 1, 1]), 0.5, seed=0)
    assert half.sum() == 2 and set(np.array([0, 0, 1, 1])[~half]) == {0, 1}


# --- the stacked model --------------------------------------------------------------------------


def _mlps(seeds, hidden=(8, 6), dropout=0.3):
    out = []
    for s in seeds:
        torch.manual_seed(s)
        out.append(MLP(4, hidden, 3, dropout))
    return out


def test_stacked_mlp_computes_each_mlp_and_returns_its_weights():
    mlps = _mlps([0, 1, 2])
    stack = StackedMLP(mlps).eval()
    x = torch.randn(2, 4)
    for k, m in enumerate(mlps):
        m.eval()
        torch.testing.assert_close(stack(x)[k], m(x))  # one input shared by all models
        torch.testing.assert_close(stack(x.expand(3, 2, 4))[k], m(x))  # (K, B, F) per-model batches
        state = stack.state_of(k)
        assert state.keys() == m.state_dict().keys()
        for key, value in m.state_dict().items():
            torch.testing.assert_close(state[key], value, rtol=0, atol=0)
    sub = stack.take(torch.tensor([2, 0]))
    torch.testing.assert_close(sub(x), stack(x)[[2, 0]])


def test_stacked_output_layer_gradients_are_those_of_its_formula():
    g = torch.Generator().manual_seed(0)
    h, w, b = (
        torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
        for shape in [(3, 5, 4), (3, 2, 4), (3, 1, 2)]
    )
    assert torch.autograd.gradcheck(StackedOutput.apply, (h, w, b))
    torch.testing.assert_close(StackedOutput.apply(h, w, b), h @ w.transpose(1, 2) + b)


def test_stacked_dropout_draws_each_models_masks_as_nn_dropout_would():
    seeds = [0, 1, 2]
    mlps = _mlps(seeds)
    x = torch.randn(5, 4)
    expected, gens = [], []
    for s, m in zip(seeds, mlps):
        torch.manual_seed(100 + s)
        gens.append(torch.Generator().set_state(torch.get_rng_state()))
        expected.append([m.train()(x), m(x)])  # two steps, drawn from the global generator
    stack = StackedMLP(mlps).train()
    for step in range(2):
        got = stack(x, stack.dropout_masks(5, gens))
        for k in range(3):
            torch.testing.assert_close(got[k], expected[k][step], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="needs dropout masks in training mode"):
        stack(x)
    with pytest.raises(ValueError, match=r"one dropout mask per model or one for all; got \[2, 2\] for 3"):
        stack(x, stack.dropout_masks(5, gens[:2]))


def test_one_generator_gives_every_model_the_masks_a_lone_mlp_draws():
    mlps = _mlps([0, 1, 2])
    x = torch.randn(5, 4)
    torch.manual_seed(7)
    gen = torch.Generator().set_state(torch.get_rng_state())
    stack = StackedMLP(mlps).train()
    masks = stack.dropout_masks(5, [gen])
    assert [m.shape for m in masks] == [(1, 5, 8), (1, 5, 6)]
    got = stack(x, masks)
    for k, m in enumerate(mlps):
        torch.manual_seed(7)
        torch.testing.assert_close(got[k], m.train()(x), rtol=0, atol=1e-6)


def test_fused_bias_relu_dropout_gradients_are_those_of_relu_then_dropout():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    b = torch.randn(3, 1, 4, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.empty(1, 5, 4, dtype=torch.float64).bernoulli_(0.7, generator=g).div_(0.7)
    up = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    for m, scale in [(mask, 1 / 0.7), (None, 1.0)]:
        zz = z.clone().requires_grad_()
        ref = torch.relu(zz + b) * (1 if m is None else m)
        grads = torch.autograd.grad((ref * up).sum(), (zz, b))
        zf = zz.detach().clone().requires_grad_()
        out = BiasReluDropout.apply(zf * 1, b, m, scale)  # a fresh non-leaf, as a matmul gives
        torch.testing.assert_close(out, ref)
        got = torch.autograd.grad((out * up).sum(), (zf, b))
        for a, r in zip(got, grads):
            torch.testing.assert_close(a, r)


# --- the batched sweep against the sequential reference ---------------------------------------

COUNTS = [150, 100, 50]


def _criterion(loss, gamma):
    """One gamma (a lone run, as a user writes it) or a list of them (a sweep)."""
    scheme = "effective_number" if loss in ("cb_focal", "ldam_drw") else "inverse"
    weight = torch.tensor(class_weights(COUNTS, scheme, beta=0.99), dtype=torch.float32)
    return make_criterion(
        loss, gamma=gamma, class_weight=weight, class_counts=COUNTS, tau=1.0, max_margin=0.5, scale=5.0, drw_epoch=4
    )


def _assert_sweep_equals_sequential(specs, loss, data, cfg, groups=None, device=CPU):
    gammas = [s.gamma for s in specs] if loss in GAMMA_LOSSES else None
    swept = fit_sweep(specs, _criterion(loss, gammas), data, 3, cfg, device, progress=False, groups=groups)
    threads = torch.get_num_threads()
    X_val = torch.as_tensor(data["val"][0], device=device)
    for spec, batched in zip(specs, swept):
        alone = fit(spec, _criterion(loss, spec.gamma), data, 3, cfg, device, progress=False)
        assert (batched.best_epoch, len(batched.history)) == (alone.best_epoch, len(alone.history)), spec
        assert batched.best_score == pytest.approx(alone.best_score, rel=1e-5, abs=1e-7)
        for h_b, h_a in zip(batched.history, alone.history):
            assert h_b.keys() == h_a.keys()
            for key in h_b:
                if key == "val_counts":  # counts of argmax decisions: equal unless a logit tie moved
                    moved = sum(np.abs(np.subtract(h_b[key][k], h_a[key][k])).sum() for k in h_b[key])
                    assert moved <= 3, (spec, key)  # one row decided otherwise: 3 counts at most
                else:
                    assert h_b[key] == pytest.approx(h_a[key], rel=1e-4, abs=1e-5), (spec, key)
        state = alone.model.state_dict()
        for key, value in batched.model.state_dict().items():
            torch.testing.assert_close(value, state[key], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(
            predict_logits(batched.model, X_val), predict_logits(alone.model, X_val), rtol=1e-4, atol=1e-4
        )
    assert torch.get_num_threads() == threads  # restored after the threaded groups
    return swept


@pytest.mark.parametrize("loss", LOSSES)
def test_sweep_trains_each_configuration_as_it_would_train_alone(loss, data):
    gammas = (0.0, 2.0) if loss in GAMMA_LOSSES else (None,)
    specs = [RunSpec(model_name(loss, g, s, 2), loss, g, s) for g in gammas for s in (0, 1)]
    cfg = dataclasses.replace(CFG, hidden=(16, 8), epochs=8, patience=2)
    swept = _assert_sweep_equals_sequential(specs, loss, data, cfg)
    if loss == "ldam_drw":  # the model kept is a re-weighted one
        assert all(r.best_epoch >= 4 for r in swept)


@ON_CUDA
@pytest.mark.parametrize("loss", LOSSES)
def test_on_a_gpu_the_sweep_trains_each_configuration_as_it_would_train_alone(loss, data):
    """The sweep against the loop on CUDA, within the CPU test's tolerance (relative 1e-4). Without
    dropout: there a lone run draws its masks in the fused dropout kernel, whose bits no generator
    reproduces (pipeline.training.sweep._dropout_generator)."""
    gammas = (0.0, 2.0) if loss in GAMMA_LOSSES else (None,)
    specs = [RunSpec(model_name(loss, g, s, 2), loss, g, s) for g in gammas for s in (0, 1)]
    cfg = dataclasses.replace(CFG, hidden=(16, 8), epochs=8, patience=2, dropout=0.0)
    _assert_sweep_equals_sequential(specs, loss, data, cfg, device=torch.device("cuda"))


@pytest.mark.parametrize(("optimizer", "weight_decay"), [("adam", 1e-3), ("adamw", 1e-2), ("sgd", 1e-3)])
def test_sweep_equivalence_holds_for_every_optimizer_and_weight_decay(optimizer, weight_decay, data):
    specs = [RunSpec("focal_g0_s0", "focal", 0.0, 0), RunSpec("focal_g1_s3", "focal", 1.0, 3)]
    cfg = dataclasses.replace(CFG, optimizer=optimizer, weight_decay=weight_decay, epochs=6, lr=0.05)
    _assert_sweep_equals_sequential(specs, "focal", data, cfg)


@pytest.mark.parametrize("groups", [1, 2])
def test_early_stopped_configurations_leave_the_sweep_and_keep_their_best_epoch(groups):
    # hard, overlapping blobs: the configurations stop at different epochs
    data = {"train": _blobs(300, 0, sep=1.0), "stop": _blobs(60, 2, sep=1.0), "val": _blobs(90, 1, sep=1.0)}
    specs = [RunSpec(f"focal_g{g:g}_s{s}", "focal", g, s) for g, s in [(0.0, 0), (2.0, 1), (1.0, 2)]]
    cfg = TrainConfig(hidden=(16, 8), epochs=20, batch_size=32, patience=3, lr=1e-2, dropout=0.1)
    swept = _assert_sweep_equals_sequential(specs, "focal", data, cfg, groups=groups)
    lengths = [len(r.history) for r in swept]
    assert len(set(lengths)) > 1  # somebody stopped while others went on
    for r in swept:
        assert r.best_epoch == len(r.history) - cfg.patience or len(r.history) == cfg.epochs


@pytest.mark.parametrize("groups", [None, 1, 2])
def test_configurations_sharing_a_seed_share_order_and_masks_and_still_stop_on_their_own(groups):
    # a gamma sweep at one seed (one draw of order and masks for all), then two seeds mixed
    data = {"train": _blobs(300, 0, sep=1.0), "stop": _blobs(60, 2, sep=1.0), "val": _blobs(90, 1, sep=1.0)}
    cfg = TrainConfig(hidden=(16, 8), epochs=20, batch_size=32, patience=3, lr=1e-2, dropout=0.2)
    one_seed = [RunSpec(f"focal_g{g:g}", "focal", g, 0) for g in (0.0, 1.0, 3.0, 8.0)]
    swept = _assert_sweep_equals_sequential(one_seed, "focal", data, cfg, groups=groups)
    assert len({len(r.history) for r in swept}) > 1  # they stopped at different epochs
    mixed = [
        RunSpec(f"focal_g{g:g}_s{s}", "focal", g, s) for g, s in [(0.0, 0), (0.0, 1), (3.0, 0), (8.0, 1), (1.0, 0)]
    ]
    _assert_sweep_equals_sequential(mixed, "focal", data, cfg, groups=groups)
    for r in swept:
        assert r.best_epoch == len(r.history) - cfg.patience or len(r.history) == cfg.epochs


# --- plans: each loss's plan holds exactly what it reads ------------------------------------


def test_plans_give_each_loss_only_the_keys_it_reads():
    from pipeline.training.plan import training_setup

    t = TrainConfig(epochs=30, tau=2.0, drw_epoch=None)
    shared = training_setup("ce", t)
    assert not {"losses", "gammas", "seeds", "tau", "ldam_max_margin", "ldam_scale", "drw_epoch"} & set(shared)
    for loss in LOSSES:
        setup = training_setup(loss, t)
        assert {k: v for k, v in setup.items() if k in shared} == shared
    assert set(training_setup("logit_adjusted", t)) - set(shared) == {"tau"}
    ldam = training_setup("ldam_drw", t)
    assert set(ldam) - set(shared) == {"ldam_max_margin", "ldam_scale", "drw_epoch"}
    assert ldam["drw_epoch"] == 20  # null resolved: 2/3 of 30 epochs


def test_plans_carry_the_weights_each_loss_trains_with():
    from pipeline.training.plan import loss_weights

    counts = [500, 50, 5]
    stage = {
        "scheme": "inverse",
        "beta": 0.99,
        "classes": ["a", "b", "c"],
        "counts": counts,
        "weights": class_weights(counts, "inverse").tolist(),
    }
    assert loss_weights("ce", stage) is None and loss_weights("logit_adjusted", stage) is None
    for loss in ("weighted_ce", "weighted_focal"):
        assert loss_weights(loss, stage) == {**stage, "beta": None}  # beta unused: not a dependency
    assert loss_weights("weighted_ce", {**stage, "scheme": "effective_number"})["beta"] == 0.99
    for loss in ("cb_focal", "ldam_drw"):
        w = loss_weights(loss, stage)
        assert (w["scheme"], w["beta"]) == ("effective_number", 0.99)
        np.testing.assert_allclose(w["weights"], class_weights(counts, "effective_number", 0.99))


# --- the optimizer: torch.optim's own, fused --------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "expected"), [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)]
)
def test_the_optimizer_is_torch_optims_fused_one_with_the_configured_settings(kind, expected):
    p = torch.nn.Parameter(torch.zeros(3))
    opt = make_optimizer([p], TrainConfig(optimizer=kind, lr=0.01, weight_decay=1e-3))
    group = opt.param_groups[0]
    assert type(opt) is expected and group["fused"] and (group["lr"], group["weight_decay"]) == (0.01, 1e-3)
    assert group.get("momentum", 0.9) == 0.9


def test_decide_and_evaluate_fork_no_workers_in_a_queue_worker(tmp_path, monkeypatch):
    """decide's searches and evaluate's figures run in forked processes, one per usable core:
    none inside a `dvc queue` worker, where the jobs already share the cores."""
    import concurrent.futures
    import os

    import pipeline.evaluation.plots
    from pipeline import in_parallel

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one core: nothing is forked anywhere")
    assert set(in_parallel(os.getpid, [()] * 4)) - {os.getpid()}  # here: other processes
    worker = tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "tmpabc123"
    worker.mkdir(parents=True)
    monkeypatch.chdir(worker)
    assert in_parallel(os.getpid, [()] * 4) == [os.getpid()] * 4

    def no_pool(*a, **k):
        raise AssertionError("a process pool in a queue worker")

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", no_pool)
    import matplotlib.figure

    names = [
        name for name, _ in pipeline.evaluation.plots.render([(str(i), matplotlib.figure.Figure, ()) for i in range(3)])
    ]
    assert names == ["0", "1", "2"]


def test_threads_auto_gives_the_cores_or_one_in_a_queue_worker(tmp_path):
    import os

    from pipeline.config import parse_params
    from pipeline.training.train import resolve_threads

    assert resolve_threads("auto", cwd=tmp_path) == len(os.sched_getaffinity(0))
    worker = tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "tmpabc123"
    worker.mkdir(parents=True)
    assert resolve_threads("auto", cwd=worker) == 1
    assert resolve_threads(3, cwd=worker) == 3
    assert parse_params({"train": {"threads": 2}}).train.threads == 2
    assert parse_params({"train": {}}).train.threads == "auto"
    with pytest.raises(PipelineError, match="train.threads must be auto or a number >= 1; got 'many'"):
        parse_params({"train": {"threads": "many"}})
    with pytest.raises(PipelineError, match="train.threads must be auto or a number >= 1; got 0"):
        parse_params({"train": {"threads": 0}})


def test_progress_before_the_reweighted_phase_says_none_yet(data, caplog, monkeypatch):
    import pipeline.training.train as train_module

    monkeypatch.setattr(train_module, "LOG_EVERY_S", 0.0)
    cfg = dataclasses.replace(CFG, epochs=4, patience=5)
    crit = make_criterion("ldam_drw", class_weight=torch.ones(3), class_counts=[50, 30, 20], drw_epoch=3)
    with caplog.at_level("INFO", logger="pipeline.training.train"):
        fit(RunSpec("ldam_drw", "ldam_drw", None, 0), crit, data, 3, cfg, CPU, progress=None)
    lines = [r.getMessage() for r in caplog.records]
    assert not [m for m in lines if "-inf" in m]
    assert "best none yet" in lines[0] and "best none yet" not in lines[-1]


def test_the_thread_plan_stacks_seeds_side_by_side_only_with_dropout_on_the_cpu():
    from pipeline.training.train import thread_plan

    cuda = torch.device("cuda")
    assert thread_plan(2, 1, CPU, 0.1) == (2, 1)  # one seed: one stack, every thread
    assert thread_plan(2, 3, CPU, 0.1) == (1, 2)  # seeds with dropout: a stack per thread
    assert thread_plan(4, 3, CPU, 0.1) == (1, 3)
    assert thread_plan(2, 3, CPU, 0.0) == (2, 1)
    assert thread_plan(1, 3, CPU, 0.1) == (1, 1)
    assert thread_plan(8, 3, cuda, 0.1) == (8, 1)


@pytest.mark.parametrize(
    ("rows", "batch"),
    [
        (1, 64),
        (600, 64),
        (5_400, 64),
        (5_800, 128),
        (54_000, 1024),
        (92_000, 1024),
        (93_000, 2048),
        (540_000, 2048),
        (10**8, 2048),
    ],
)
def test_batch_auto_grows_with_the_training_rows_within_its_bounds(rows, batch):
    assert batch_rule(rows) == batch == batch_rule(rows, torch.device("cpu"))


@pytest.mark.parametrize(
    ("rows", "batch"),
    [
        (5_400, 64),
        (93_000, 2048),
        (185_000, 2048),
        (186_000, 4096),
        (370_000, 4096),
        (371_000, 8192),
        (540_000, 8192),
        (10**8, 8192),
    ],
)
def test_batch_auto_on_a_gpu_grows_further(rows, batch):
    assert batch_rule(rows, "cuda") == batch  # a rule, not a device: no GPU needed to check it
    cfg = resolve_batch(TrainConfig(batch_size="auto", lr=1e-3), rows, torch.device("cuda"))
    assert (cfg.batch_size, cfg.warmup_steps) == (batch, 0 if batch == 64 else -(-rows // batch))


@given(st.integers(1, 10**7), st.floats(1e-5, 1.0))
@settings(max_examples=60, deadline=None)
def test_batch_auto_scales_the_rate_by_the_square_root_and_warms_up_one_epoch(rows, lr):
    cfg = resolve_batch(TrainConfig(batch_size="auto", lr=lr), rows)
    b = batch_rule(rows)
    assert cfg.batch_size == b and cfg.lr == pytest.approx(lr * (b / 64) ** 0.5, rel=1e-12)
    assert cfg.warmup_steps == (0 if b == 64 else -(-rows // b))  # one epoch's steps; none at the base batch
    assert resolve_batch(cfg, rows) == cfg  # resolving twice changes nothing


def test_a_number_for_batch_size_keeps_the_rate_and_warms_up_only_when_asked():
    cfg = resolve_batch(TrainConfig(batch_size=512, lr=1e-3), 10**6)
    assert (cfg.batch_size, cfg.lr, cfg.warmup_steps) == (512, 1e-3, 0)
    cfg = resolve_batch(TrainConfig(batch_size="auto", lr=1e-3, warmup_steps=7), 10**6)
    assert (cfg.batch_size, cfg.warmup_steps) == (2048, 7)


def test_warm_up_rises_linearly_to_the_rate_then_holds_it():
    p = torch.nn.Parameter(torch.zeros(3))
    cfg = TrainConfig(batch_size=64, lr=0.8, warmup_steps=4)
    opt = make_optimizer([p], cfg)
    seen = []
    for step in range(7):
        warm_up(opt, cfg, step)
        seen.append(opt.param_groups[0]["lr"])
    assert seen == pytest.approx([0.2, 0.4, 0.6, 0.8, 0.8, 0.8, 0.8])


def test_warm_up_changes_the_first_updates_only_and_the_sweep_still_equals_fit(data):
    # 300 rows, batch 32: 10 steps an epoch; a warm-up over 15 steps spans into the second epoch
    cfg = dataclasses.replace(CFG, hidden=(16, 8), epochs=6, patience=2, warmup_steps=15)
    spec = RunSpec("focal_g1", "focal", 1.0, 0)
    warm = fit(spec, _criterion("focal", 1.0), data, 3, cfg, CPU, progress=False)
    cold = fit(spec, _criterion("focal", 1.0), data, 3, dataclasses.replace(cfg, warmup_steps=0), CPU, progress=False)
    assert warm.history[0]["train_loss"] != cold.history[0]["train_loss"]
    specs = [RunSpec("focal_g0_s0", "focal", 0.0, 0), RunSpec("focal_g1_s0", "focal", 1.0, 0)]
    _assert_sweep_equals_sequential(specs, "focal", data, cfg)
    auto = dataclasses.replace(cfg, batch_size="auto", warmup_steps="auto")  # 300 rows: batch 64, no warm-up
    a = fit(spec, _criterion("focal", 1.0), data, 3, auto, CPU, progress=False)
    b = fit(
        spec,
        _criterion("focal", 1.0),
        data,
        3,
        dataclasses.replace(cfg, batch_size=64, warmup_steps=0),
        CPU,
        progress=False,
    )
    assert a.history == b.history


def _promises_kept(results, data, metric="balanced_log_loss"):
    """What training promises on any device: the kept epoch is the slice's best one, the restored
    weights give that value again, every epoch's validation confusion matrix counts every row."""
    from pipeline.training.train import stopping_values

    X_st, y_st = (torch.as_tensor(a) for a in data["stop"])
    for r in results:
        values = [h[f"stop_{metric}"] for h in r.history]
        assert r.best_epoch == 1 + int(np.argmin(values))
        device = next(r.model.parameters()).device
        again = stopping_values(predict_logits(r.model, X_st.to(device)), y_st.to(device), 3)[metric][0]
        assert again == pytest.approx(r.best_score, rel=1e-5)
        assert all(sum(h["val_counts"]["predicted"]) == len(data["val"][1]) for h in r.history)


def test_batch_auto_with_warm_up_keeps_the_promises_of_training_on_the_cpu(data, monkeypatch):
    import pipeline.training.train as train_module

    monkeypatch.setattr(train_module, "ROWS_PER_STEP", 4)  # 300 rows: 64 would be the floor; make it grow
    monkeypatch.setattr(train_module, "BASE_BATCH", 16)
    cfg = dataclasses.replace(CFG, hidden=(16, 8), epochs=10, patience=3, batch_size="auto", warmup_steps="auto")
    resolved = train_module.resolve_batch(cfg, 300)
    assert resolved.batch_size == 64 and resolved.warmup_steps == 5 and resolved.lr == pytest.approx(2 * CFG.lr)
    specs = [RunSpec("focal_g0", "focal", 0.0, 0), RunSpec("focal_g2", "focal", 2.0, 0)]
    _promises_kept(_assert_sweep_equals_sequential(specs, "focal", data, cfg), data)


@ON_CUDA
def test_the_sweep_on_a_gpu_keeps_the_promises_of_training_and_repeats_itself(data):
    cuda = torch.device("cuda")
    cfg = dataclasses.replace(CFG, hidden=(16, 8), epochs=10, patience=3, batch_size="auto")
    specs = [RunSpec(f"focal_g{g:g}", "focal", g, 0) for g in (0.0, 2.0)]
    crit = _criterion("focal", [0.0, 2.0])
    first = fit_sweep(specs, crit, data, 3, cfg, cuda, progress=False)
    again = fit_sweep(specs, crit, data, 3, cfg, cuda, progress=False)
    _promises_kept(first, data)
    for a, b in zip(first, again):
        assert (a.best_epoch, len(a.history)) == (b.best_epoch, len(b.history))
        assert a.best_score == pytest.approx(b.best_score, rel=1e-6)
