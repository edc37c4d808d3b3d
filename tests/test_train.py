import numpy as np
import pytest
import torch

from pipeline import PipelineError
from pipeline.config import TrainConfig
from pipeline.losses import make_criterion
from pipeline.train import RunSpec, fit, model_name, plan_runs, resolve_device


def test_model_names():
    assert model_name("ce", None, 0, 1) == "ce"
    assert model_name("focal", 2.0, 0, 1) == "focal_g2"
    assert model_name("focal", 0.5, 3, 2) == "focal_g0.5_s3"


def test_plan_runs_sweeps_gamma_only_for_focal():
    assert [r.model for r in plan_runs("ce", (0.0, 2.0), (0,))] == ["ce"]
    runs = plan_runs("focal", (0.0, 2.0), (1, 2))
    assert [r.model for r in runs] == ["focal_g0_s1", "focal_g0_s2", "focal_g2_s1", "focal_g2_s2"]
    assert {(r.gamma, r.seed) for r in runs} == {(0.0, 1), (0.0, 2), (2.0, 1), (2.0, 2)}


def test_cuda_without_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(PipelineError, match="train.device is cuda but no CUDA device"):
        resolve_device("cuda")


def _blobs(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.normal(size=(n, 4)).astype(np.float32) + np.eye(3, 4, dtype=np.float32)[y] * 3
    return X, y.astype(np.int64)


@pytest.fixture
def data():
    return {"train": _blobs(300, 0), "val": _blobs(90, 1)}


CFG = TrainConfig(hidden=(16,), epochs=12, batch_size=32, patience=4, lr=1e-2, dropout=0.1)


def test_training_is_deterministic_for_a_seed(data):
    spec = RunSpec("focal_g2", "focal", 2.0, 0)
    crit = make_criterion("focal", gamma=2.0)
    a = fit(spec, crit, data, 3, CFG, torch.device("cpu"), progress=False)
    b = fit(spec, crit, data, 3, CFG, torch.device("cpu"), progress=False)
    for key, value in a.model.state_dict().items():
        torch.testing.assert_close(value, b.model.state_dict()[key], rtol=0, atol=0)
    assert a.history == b.history


def test_early_stopping_restores_the_best_validation_epoch(data):
    spec = RunSpec("ce", "ce", None, 0)
    result = fit(spec, make_criterion("ce"), data, 3, CFG, torch.device("cpu"), progress=False)
    best = max(h["val_macro_f1"] for h in result.history)
    assert result.best_val_macro_f1 == best
    assert result.history[result.best_epoch - 1]["val_macro_f1"] == best
    assert len(result.history) <= CFG.epochs
    # the returned model is the best epoch's: recompute its val macro-F1
    from sklearn.metrics import f1_score

    with torch.no_grad():
        pred = result.model(torch.as_tensor(data["val"][0])).argmax(1).numpy()
    assert f1_score(data["val"][1], pred, average="macro") == pytest.approx(best)
    assert best > 0.8  # separable blobs are learned
