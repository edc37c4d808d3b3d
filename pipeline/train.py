"""Training one MLP per configuration, with early stopping on validation macro-F1."""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.metrics import f1_score
from tqdm.auto import tqdm

from pipeline import PipelineError
from pipeline.config import GAMMA_LOSSES, TrainConfig
from pipeline.losses import Criterion
from pipeline.model import MLP

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSpec:
    """One model to train: a loss, its gamma where the loss takes one, and a seed."""

    model: str  # e.g. "ce", "focal_g2", "focal_g0.5_s1"
    loss: str
    gamma: float | None
    seed: int


def model_name(loss: str, gamma: float | None, seed: int, n_seeds: int) -> str:
    """``<loss>``, ``<loss>_g<gamma>`` for gamma losses, plus ``_s<seed>`` when several seeds."""
    name = loss if gamma is None else f"{loss}_g{gamma:g}"
    return f"{name}_s{seed}" if n_seeds > 1 else name


def plan_runs(loss: str, gammas: tuple[float, ...], seeds: tuple[int, ...]) -> list[RunSpec]:
    """Every configuration of one loss: one per seed, times one per gamma for gamma losses."""
    grid = gammas if loss in GAMMA_LOSSES else (None,)
    return [
        RunSpec(model_name(loss, g, s, len(seeds)), loss, g, s) for g in grid for s in seeds
    ]


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise PipelineError("train.device is cuda but no CUDA device is available; use auto or cpu")
    return torch.device(device)


@dataclass
class FitResult:
    """A trained model (best validation epoch restored) and its per-epoch curves."""

    model: MLP
    history: list[dict[str, float]] = field(default_factory=list)  # one dict per epoch
    best_epoch: int = 0
    best_val_macro_f1: float = float("-inf")
    seconds: float = 0.0


def _optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay
        )
    raise PipelineError(f"train.optimizer must be adam, adamw or sgd; got {cfg.optimizer!r}")


@torch.no_grad()
def predict_logits(model: torch.nn.Module, X: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
    """(N, C) logits in eval mode, in batches."""
    model.eval()
    return torch.cat([model(X[i : i + batch_size]) for i in range(0, len(X), batch_size)])


def fit(
    spec: RunSpec,
    criterion: Criterion,
    data: dict[str, tuple[np.ndarray, np.ndarray]],
    n_classes: int,
    cfg: TrainConfig,
    device: torch.device,
    *,
    progress: bool | None = None,
) -> FitResult:
    """Train one MLP with ``criterion``; stop when val macro-F1 has not improved for ``patience``.

    ``data`` maps ``"train"`` and ``"val"`` to ``(X (N, F) float32, y (N,) int64)``. The model is
    selected on the validation split only. ``progress=None`` shows the bar on a terminal only.
    """
    torch.manual_seed(spec.seed)
    X_tr, y_tr = (torch.tensor(a, device=device) for a in data["train"])
    X_va, y_va = (torch.tensor(a, device=device) for a in data["val"])
    y_va_np = data["val"][1]
    model = MLP(X_tr.shape[1], cfg.hidden, n_classes, cfg.dropout).to(device)
    opt = _optimizer(model, cfg)
    shuffle = torch.Generator().manual_seed(spec.seed)
    result = FitResult(model=model)
    best_state, stale = None, 0
    start = time.perf_counter()
    bar = tqdm(
        range(1, cfg.epochs + 1),
        desc=spec.model,
        unit="epoch",
        leave=False,
        disable=None if progress is None else not progress,
    )
    for epoch in bar:
        model.train()
        order = torch.randperm(len(X_tr), generator=shuffle).to(device)
        total, seen = 0.0, 0
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            loss = criterion(model(X_tr[idx]), y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            seen += len(idx)
        logits = predict_logits(model, X_va)
        val_loss = criterion(logits, y_va).item()
        pred = logits.argmax(1).cpu().numpy()
        val_f1 = float(f1_score(y_va_np, pred, average="macro", labels=range(n_classes), zero_division=0))
        result.history.append(
            {"epoch": epoch, "train_loss": total / seen, "val_loss": val_loss, "val_macro_f1": val_f1}
        )
        if val_f1 > result.best_val_macro_f1:
            result.best_val_macro_f1, result.best_epoch, stale = val_f1, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
        bar.set_postfix(val_f1=f"{val_f1:.3f}", best=f"{result.best_val_macro_f1:.3f}")
        if stale >= cfg.patience:
            break
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    result.seconds = time.perf_counter() - start
    return result
