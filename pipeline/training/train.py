"""Training one MLP with early stopping on a slice of the training split, and what every training loop shares.

:func:`fit` trains one configuration, the plain loop a user would write; it is the reference that
:func:`pipeline.training.sweep.fit_sweep` (every configuration of a loss at once) is tested against. Both
use :class:`EarlyStopping`, :func:`make_optimizer`, :class:`Progress` and :func:`predict_logits`
from here.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from pipeline import PipelineError
from pipeline.config import TrainConfig, parse_params, usable_cores
from pipeline.training.criterion import Criterion, to_device
from pipeline.training.model import MLP, StackedMLP
from pipeline.training.plan import RunSpec

log = logging.getLogger(__name__)


def train_config(plan: dict, source: str) -> TrainConfig:
    """The :class:`TrainConfig` of a plan's ``train`` set-up, validated as params.yaml is."""
    return parse_params({"train": plan["train"]}, source=source).train


def resolve_threads(setting: int | str, cwd: str | Path | None = None) -> int:
    """torch's CPU threads for ``train.threads``: a number as given; ``auto`` gives
    :func:`pipeline.config.usable_cores` (1 inside a `dvc queue` worker)."""
    return usable_cores(cwd) if setting == "auto" else int(setting)


def thread_plan(threads: int, n_seeds: int, device: torch.device, dropout: float) -> tuple[int, int]:
    """``(torch's intra-op threads, stacks trained side by side)`` for a sweep given ``threads``.

    One stack uses every thread for its batched products. With dropout and several seeds on the
    CPU, though, one stack per thread (at most one per seed), each with one intra-op thread:
    dropout's random numbers are drawn on one core, so drawing several seeds' masks in parallel
    keeps every core busy. On a GPU there is one stack.
    """
    groups = min(threads, n_seeds) if device.type == "cpu" and dropout > 0 else 1
    return (1, groups) if groups > 1 else (threads, 1)


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise PipelineError("train.device is cuda but no CUDA device is available; use auto or cpu")
    return torch.device(device)


BASE_BATCH = 64  # the batch train.lr is meant for under batch_size: auto
ROWS_PER_STEP = 64  # batch_size auto: about this many steps per epoch ...
MAX_BATCH = 2048  # ... up to this batch on the CPU (beyond it a step on 2 cores is compute-bound already)
GPU_MAX_BATCH = 8192  # ... and on a GPU, where a step costs its launches, not its arithmetic (docs/gpu.md)


def batch_rule(n_rows: int, device: torch.device | str = "cpu") -> int:
    """``train.batch_size: auto`` for ``n_rows`` training rows on ``device``: the power of two
    nearest ``n_rows / 64`` (about 64 steps an epoch), kept within [64, 2048] on the CPU and
    [64, 8192] on a GPU. 64 below about 5 800 rows (the bundled digits, the 10 000-row synthetic
    data), 1024 at 54 000 (100 000 synthetic rows), 2048 from about 93 000; on a GPU 4096 from
    about 186 000 and 8192 from about 371 000 (about 540 000 of 1 000 000 synthetic rows)."""
    cap = GPU_MAX_BATCH if torch.device(device).type == "cuda" else MAX_BATCH
    return int(min(cap, max(BASE_BATCH, 2 ** round(math.log2(max(n_rows, 1) / ROWS_PER_STEP)))))


def resolve_batch(cfg: TrainConfig, n_rows: int, device: torch.device | str = "cpu") -> TrainConfig:
    """``cfg`` with a number for ``batch_size`` and ``warmup_steps``, and the learning rate used.

    Under ``batch_size: auto`` the batch is :func:`batch_rule`'s for ``device`` and ``train.lr``
    (meant for batch 64) is scaled by ``sqrt(batch / 64)``, the square-root rule for Adam-type optimizers
    (the gradient noise scale falls as ``1 / sqrt(batch)``; Malladi et al. 2022), with a linear
    warm-up over the first epoch (``warmup_steps: auto``) so that the larger rate does not throw
    the freshly initialised weights off. At batch 64 nothing changes. A number for
    ``batch_size`` is used as given, with ``train.lr`` as given and no warm-up unless
    ``warmup_steps`` is a number. Resolving a resolved config returns it unchanged.
    """
    batch, lr = cfg.batch_size, cfg.lr
    if batch == "auto":
        batch = batch_rule(n_rows, device)
        lr = cfg.lr * math.sqrt(batch / BASE_BATCH)
    warmup = cfg.warmup_steps
    if warmup == "auto":
        warmup = math.ceil(n_rows / batch) if lr != cfg.lr else 0
    return dataclasses.replace(cfg, batch_size=int(batch), lr=lr, warmup_steps=int(warmup))


def warm_up(opt: torch.optim.Optimizer, cfg: TrainConfig, step: int) -> None:
    """Set the rate of optimizer step ``step`` (0-based): rising linearly to ``cfg.lr`` over
    ``cfg.warmup_steps`` steps, ``cfg.lr`` from there on (an optimizer made after it has it)."""
    if step <= cfg.warmup_steps:
        lr = cfg.lr * (step + 1) / cfg.warmup_steps if step < cfg.warmup_steps else cfg.lr
        for group in opt.param_groups:
            group["lr"] = lr


@dataclass
class FitResult:
    """A trained model (its best epoch on the early-stopping slice restored) and its per-epoch curves."""

    model: MLP
    history: list[dict[str, float]] = field(default_factory=list)  # one dict per epoch
    best_epoch: int = 0
    best_score: float = float("-inf")  # the monitored metric at best_epoch, as named (a loss as a loss)
    seconds: float = 0.0  # wall time of the fit (of the whole sweep for fit_sweep)


def make_optimizer(params: Iterable[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    """``train.optimizer`` at ``train.lr`` with ``train.weight_decay`` (SGD: momentum 0.9), as
    ``torch.optim`` runs it with ``fused=True``: one kernel over every parameter. The update is
    elementwise, so each slice of a stacked model follows its own updates."""
    kind, kw = cfg.optimizer, {"lr": cfg.lr, "weight_decay": cfg.weight_decay, "fused": True}
    if kind == "adam":
        return torch.optim.Adam(params, **kw)
    if kind == "adamw":
        return torch.optim.AdamW(params, **kw)
    if kind == "sgd":
        return torch.optim.SGD(params, momentum=0.9, **kw)
    raise PipelineError(f"train.optimizer must be adam, adamw or sgd; got {kind!r}")


def class_counts(y_true: torch.Tensor, y_pred: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(K, 3, C) int64 on the CPU: per row of ``y_pred`` (N,) or (K, N), the confusion matrix's
    diagonal (true positives), row sums (support) and column sums (predicted), counted in
    O(N + C) without the (C, C) matrix; a leading axis of 1 for (N,)."""
    pred = y_pred if y_pred.dim() == 2 else y_pred.unsqueeze(0)
    k = pred.shape[0]
    offset = torch.arange(k, device=pred.device).unsqueeze(1) * n_classes
    tp = torch.bincount((y_true + offset)[pred == y_true], minlength=k * n_classes).view(k, n_classes)
    predicted = torch.bincount((pred + offset).flatten(), minlength=k * n_classes).view(k, n_classes)
    support = torch.bincount(y_true, minlength=n_classes).expand(k, -1)
    return torch.stack([tp, support, predicted], 1).cpu()


def macro_f1(y_true: torch.Tensor, y_pred: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Macro-averaged F1 over classes 0..C-1, per row of ``y_pred``.

    F1_c = 2 tp_c / (2 tp_c + fp_c + fn_c), 0 where the denominator is 0, as scikit-learn's
    ``f1_score(y_true, y_pred, average="macro", labels=range(C), zero_division=0)``.

    Parameters
    ----------
    y_true : (N,) int64 tensor
    y_pred : (N,) or (K, N) int64 tensor, K predictions of the same samples
    n_classes : int

    Returns
    -------
    () or (K,) float64 tensor, on the CPU.
    """
    tp, support, predicted = class_counts(y_true, y_pred, n_classes).double().unbind(1)  # (K, C) each
    denom = support + predicted  # (tp + fn) + (tp + fp)
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp_min(1), torch.zeros_like(tp)).mean(1)
    return f1 if y_pred.dim() == 2 else f1[0]


# What early stopping can monitor on its slice of the training split (train.early_stopping_metric,
# config.STOPPING_METRICS), each as a score where higher is better: macro-F1 of the argmax; the
# mean negative log-likelihood of the plain softmax; and that NLL averaged per class first.


@torch.no_grad()
def stopping_values(logits: torch.Tensor, y: torch.Tensor, n_classes: int) -> dict[str, list[float]]:
    """Every ``train.early_stopping_metric`` value (as named: losses are not negated) per configuration.

    ``logits`` (N, C) or (K, N, C); ``y`` (N,). Returns lists of length K (1 for (N, C)).
    """
    z = logits if logits.dim() == 3 else logits.unsqueeze(0)  # (K, N, C)
    nll = -torch.log_softmax(z.double(), -1).gather(-1, y.expand(len(z), -1).unsqueeze(-1)).squeeze(-1)  # (K, N)
    counts = torch.bincount(y, minlength=n_classes).double()  # (C,)
    per_class = torch.zeros(len(z), n_classes, dtype=torch.float64, device=z.device)
    per_class.index_add_(1, y, nll)
    present = counts > 0
    balanced = (per_class[:, present] / counts[present]).mean(1)
    return {
        "macro_f1": macro_f1(y, z.argmax(-1), n_classes).tolist(),
        "log_loss": nll.mean(1).tolist(),
        "balanced_log_loss": balanced.tolist(),
    }


def stopping_sign(metric: str) -> float:
    """+1 for macro-F1, -1 for the losses: ``sign * value`` is a score, higher is better, and
    ``sign * score`` the value again."""
    return 1.0 if metric == "macro_f1" else -1.0


def epoch_record(
    epoch: int,
    train_loss: float,
    stop_loss: float,
    stop: dict[str, float],
    val_loss: float,
    val_counts: torch.Tensor,
) -> dict:
    """One epoch of a model's history.

    ``stop_*`` are read on the early-stopping slice (the monitored one decides when to stop);
    ``val_loss`` (the training criterion) and ``val_counts`` (3, C) on the validation split (the
    confusion matrix's diagonal, row and column sums: :func:`class_counts`, all that any count
    metric reads, 3C numbers an epoch, not C²) are recorded for the audit's loss-metric analysis
    only: nothing in training reads them.
    """
    tp, support, predicted = val_counts.tolist()
    return {
        "epoch": epoch,
        "train_loss": train_loss,
        "stop_loss": stop_loss,
        **{f"stop_{k}": v for k, v in stop.items()},
        "val_loss": val_loss,
        "val_counts": {"tp": tp, "support": support, "predicted": predicted},
    }


@torch.no_grad()
def predict_logits(model: torch.nn.Module, X: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
    """Logits in eval mode, in batches of rows: (N, C) for an MLP, (K, N, C) for a StackedMLP."""
    model.eval()
    dim = 1 if isinstance(model, StackedMLP) else 0
    return torch.cat([model(X[i : i + batch_size]) for i in range(0, len(X), batch_size)], dim=dim)


def as_tensors(data, device) -> tuple[torch.Tensor, ...]:
    """``X, y`` of the rows to fit on, the early-stopping slice and the validation split."""
    return tuple(torch.tensor(a, device=device) for split in ("train", "stop", "val") for a in data[split])


LOG_EVERY_S = 30.0  # without a terminal, a progress line at most this often


class Progress:
    """The epoch loop's progress: a tqdm bar on a terminal; else (``progress=None``, output to a
    file or a pipe, as under ``dvc repro > log``) an INFO line at most every ``LOG_EVERY_S``
    seconds, so that only training that takes that long says how far it is (the stage says when
    it ends). ``progress=False`` shows nothing."""

    def __init__(self, desc: str, cfg: TrainConfig, progress: bool | None):
        self.bar = tqdm(
            range(1, cfg.epochs + 1),
            desc=desc,
            unit="epoch",
            leave=False,
            disable=None if progress is None else not progress,
        )
        self.desc, self.epochs = desc, cfg.epochs
        self.lines = progress is None and self.bar.disable
        self.last = time.monotonic()

    def __iter__(self):
        return iter(self.bar)

    def update(self, epoch: int, **fields: str) -> None:
        self.bar.set_postfix(**fields)
        now = time.monotonic()
        if self.lines and now - self.last >= LOG_EVERY_S:
            self.last = now
            log.info(
                "%s: epoch %d/%d, %s", self.desc, epoch, self.epochs, ", ".join(f"{k} {v}" for k, v in fields.items())
            )

    def close(self) -> None:
        self.bar.close()


@dataclass
class EarlyStopping:
    """The best epoch by a score (higher is better), and patience, counted from ``select_from`` on.

    Epochs before ``select_from`` (``ldam_drw``'s unweighted phase) are neither kept nor counted.
    """

    patience: int
    select_from: int = 1
    best: float = float("-inf")
    best_epoch: int = 0
    stale: int = 0  # epochs since the best, from select_from on

    def step(self, epoch: int, score: float) -> bool:
        """Record ``score`` at ``epoch``; True when it is a new best (keep this epoch's weights)."""
        if epoch < self.select_from:
            return False
        if score > self.best:
            self.best, self.best_epoch, self.stale = score, epoch, 0
            return True
        self.stale += 1
        return False

    @property
    def stopped(self) -> bool:
        return self.stale >= self.patience


def best_text(stoppers: list[EarlyStopping], metric: str = "macro_f1") -> str:
    """The best monitored value so far for progress lines (a loss shown as a loss); "none yet"
    before any epoch counts (``ldam_drw`` before its re-weighted phase)."""
    best = max(s.best for s in stoppers)
    if best == float("-inf"):
        return "none yet"
    return f"{stopping_sign(metric) * best:.3f}"


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
    """Train one MLP with ``criterion``; stop when the monitored score on the early-stopping slice
    has not improved for ``patience`` epochs.

    ``data`` maps ``"train"`` (the rows to fit on), ``"stop"`` (the early-stopping slice carved
    from the training split) and ``"val"`` to ``(X (N, F) float32, y (N,) int64)``. The model is
    selected on the slice only, by ``train.early_stopping_metric``, among epochs from
    ``criterion.final_phase_epoch`` on (``ldam_drw``: its re-weighted phase; every epoch
    otherwise), and patience counts from there. The validation split is only recorded (the
    criterion and the class counts per epoch, :func:`epoch_record`), never acted on.
    ``progress=None`` shows the bar on a terminal only. The global RNG is seeded with
    ``spec.seed``, then initialises the model and draws the dropout masks; a generator of its own
    seeded alike shuffles the data.
    """
    torch.manual_seed(spec.seed)
    X_tr, y_tr, X_st, y_st, X_va, y_va = as_tensors(data, device)
    cfg = resolve_batch(cfg, len(X_tr), device)
    model = MLP(X_tr.shape[1], cfg.hidden, n_classes, cfg.dropout).to(device)
    opt = make_optimizer(model.parameters(), cfg)
    criterion = to_device(criterion, device)
    stopper = EarlyStopping(cfg.patience, criterion.final_phase_epoch)
    shuffle = torch.Generator().manual_seed(spec.seed)
    result = FitResult(model=model)
    best_state = None
    start = time.perf_counter()
    bar = Progress(spec.model, cfg, progress)
    metric = cfg.early_stopping_metric
    step = 0
    for epoch in bar:
        model.train()
        order = torch.randperm(len(X_tr), generator=shuffle).to(device)
        total, seen = 0.0, 0
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            loss = criterion(model(X_tr[idx]), y_tr[idx], epoch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            warm_up(opt, cfg, step)
            opt.step()
            step += 1
            total += loss.item() * len(idx)
            seen += len(idx)
        stop_logits, val_logits = predict_logits(model, X_st), predict_logits(model, X_va)
        stop = {k: v[0] for k, v in stopping_values(stop_logits, y_st, n_classes).items()}
        result.history.append(
            epoch_record(
                epoch,
                total / seen,
                criterion(stop_logits, y_st, epoch).item(),
                stop,
                criterion(val_logits, y_va, epoch).item(),
                class_counts(y_va, val_logits.argmax(1), n_classes)[0],
            )
        )
        if stopper.step(epoch, stopping_sign(metric) * stop[metric]):
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        bar.update(epoch, **{metric: f"{stop[metric]:.3f}"}, best=best_text([stopper], metric))
        if stopper.stopped:
            break
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    result.best_epoch, result.best_score = stopper.best_epoch, stopping_sign(metric) * stopper.best
    result.seconds = time.perf_counter() - start
    return result
