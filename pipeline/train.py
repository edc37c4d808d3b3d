"""Training MLPs with early stopping on validation macro-F1: one at a time, or a loss's whole sweep.

:func:`fit` trains one configuration, the plain loop a user would write; it is the reference.
:func:`fit_sweep` trains every configuration of one loss (each gamma x seed) at once as one
:class:`~pipeline.model.StackedMLP` and returns, for each, what :func:`fit` returns for it alone:
the same initialisation, data order and dropout masks, its own optimizer state, its own
early-stopping point (tested to float tolerance on the CPU).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from pipeline import PipelineError
from pipeline.config import GAMMA_LOSSES, TrainConfig
from pipeline.losses import Criterion, to_device
from pipeline.model import MLP, StackedMLP

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


def drw_start(cfg: TrainConfig) -> int:
    """First re-weighted epoch of ``ldam_drw``: ``train.drw_epoch``, else round(2/3 * epochs).

    Cao et al. (2019) re-weight from epoch 160 of 200 on CIFAR; 2/3 leaves the unweighted phase
    most of the budget while keeping a third for the re-weighted one. Early stopping and model
    selection start at this epoch (see :func:`fit`), so the model kept is a re-weighted one.
    """
    return cfg.drw_epoch if cfg.drw_epoch is not None else max(1, round(2 * cfg.epochs / 3))


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
    seconds: float = 0.0  # wall time of the fit (of the whole sweep for fit_sweep)


def _optimizer(params: Iterable[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    # fused: one kernel per parameter tensor instead of about ten; the same update rule
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay, fused=True)
    raise PipelineError(f"train.optimizer must be adam, adamw or sgd; got {cfg.optimizer!r}")


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
    pred = y_pred if y_pred.dim() == 2 else y_pred.unsqueeze(0)
    k = pred.shape[0]
    cell = (torch.arange(k, device=pred.device).unsqueeze(1) * n_classes + y_true) * n_classes + pred
    cm = torch.bincount(cell.flatten(), minlength=k * n_classes**2).view(k, n_classes, n_classes)
    cm = cm.cpu().double()  # (K, true, predicted)
    tp = cm.diagonal(dim1=1, dim2=2)
    denom = cm.sum(2) + cm.sum(1)  # (tp + fn) + (tp + fp)
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp_min(1), torch.zeros_like(tp)).mean(1)
    return f1 if y_pred.dim() == 2 else f1[0]


@torch.no_grad()
def predict_logits(model: torch.nn.Module, X: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
    """Logits in eval mode, in batches of rows: (N, C) for an MLP, (K, N, C) for a StackedMLP."""
    model.eval()
    dim = 1 if isinstance(model, StackedMLP) else 0
    return torch.cat([model(X[i : i + batch_size]) for i in range(0, len(X), batch_size)], dim=dim)


def _tensors(data, device) -> tuple[torch.Tensor, ...]:
    return tuple(torch.tensor(a, device=device) for split in ("train", "val") for a in data[split])


LOG_EVERY_S = 30.0  # without a terminal, a progress line at most this often


class _Progress:
    """The epoch loop's progress: a tqdm bar on a terminal; else (``progress=None``, output to a
    file or a pipe, as under ``dvc repro > log``) an INFO line at most every ``LOG_EVERY_S``
    seconds and at the last epoch. ``progress=False`` shows nothing."""

    def __init__(self, desc: str, cfg: TrainConfig, progress: bool | None):
        self.bar = tqdm(range(1, cfg.epochs + 1), desc=desc, unit="epoch", leave=False,
                        disable=None if progress is None else not progress)
        self.desc, self.epochs = desc, cfg.epochs
        self.lines = progress is None and self.bar.disable
        self.last = time.monotonic()

    def __iter__(self):
        return iter(self.bar)

    def update(self, epoch: int, done: bool = False, **fields: str) -> None:
        self.bar.set_postfix(**fields)
        now = time.monotonic()
        if self.lines and (done or now - self.last >= LOG_EVERY_S):
            self.last = now
            log.info("%s: epoch %d/%d, %s", self.desc, epoch, self.epochs,
                     ", ".join(f"{k} {v}" for k, v in fields.items()))

    def close(self) -> None:
        self.bar.close()


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
    selected on the validation split only, among epochs from ``criterion.final_phase_epoch`` on
    (``ldam_drw``: its re-weighted phase; every epoch otherwise), and patience counts from there.
    ``val_loss`` is the training criterion on the validation split. ``progress=None`` shows the
    bar on a terminal only. The global RNG is seeded with ``spec.seed``, then initialises the
    model and draws the dropout masks; a generator of its own seeded alike shuffles the data.
    """
    torch.manual_seed(spec.seed)
    X_tr, y_tr, X_va, y_va = _tensors(data, device)
    model = MLP(X_tr.shape[1], cfg.hidden, n_classes, cfg.dropout).to(device)
    opt = _optimizer(model.parameters(), cfg)
    criterion = to_device(criterion, device)
    select_from = criterion.final_phase_epoch
    shuffle = torch.Generator().manual_seed(spec.seed)
    result = FitResult(model=model)
    best_state, stale = None, 0
    start = time.perf_counter()
    bar = _Progress(spec.model, cfg, progress)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(X_tr), generator=shuffle).to(device)
        total, seen = 0.0, 0
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            loss = criterion(model(X_tr[idx]), y_tr[idx], epoch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            seen += len(idx)
        logits = predict_logits(model, X_va)
        val_loss = criterion(logits, y_va, epoch).item()
        val_f1 = macro_f1(y_va, logits.argmax(1), n_classes).item()
        result.history.append(
            {"epoch": epoch, "train_loss": total / seen, "val_loss": val_loss, "val_macro_f1": val_f1}
        )
        if epoch >= select_from:
            if val_f1 > result.best_val_macro_f1:
                result.best_val_macro_f1, result.best_epoch, stale = val_f1, epoch, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                stale += 1
        stop = stale >= cfg.patience
        bar.update(epoch, stop or epoch == cfg.epochs, val_f1=f"{val_f1:.3f}", best=f"{result.best_val_macro_f1:.3f}")
        if stop:
            break
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    result.seconds = time.perf_counter() - start
    return result


def _dropout_generator(seed: int, rng_state: torch.Tensor, device: torch.device) -> torch.Generator:
    """The generator :func:`fit` draws dropout masks from, right after initialising the MLP.

    On the CPU that is the global generator in ``rng_state``, its state after
    ``manual_seed(seed)`` and the MLP's initialisation. On CUDA the MLP is initialised on the
    CPU, so :func:`fit`'s CUDA generator is in its ``manual_seed(seed)`` state; :func:`fit`'s
    masks then come from the fused dropout kernel, whose bits no generator call reproduces:
    the sweep's are independent per seed but not the same bits as a lone run.
    """
    if device.type == "cpu":
        g = torch.Generator()
        g.set_state(rng_state)
        return g
    return torch.Generator(device=device).manual_seed(seed)


def _take(stack: StackedMLP, opt: torch.optim.Optimizer, keep: torch.Tensor, cfg: TrainConfig):
    """The stack and optimizer of configurations ``keep`` only, optimizer state included."""
    new = stack.take(keep)
    new_opt = _optimizer(new.parameters(), cfg)
    for old_p, new_p in zip(stack.parameters(), new.parameters()):
        state = opt.state.get(old_p)
        if not state:
            continue
        # per-element moments (K, ...) are sliced; Adam's step count is one scalar for all
        new_opt.state[new_p] = {
            key: (v[keep].clone() if v.shape == old_p.shape else v.clone()) if torch.is_tensor(v) else v
            for key, v in state.items()
        }
    return new, new_opt


@dataclass
class _Group:
    """Configurations trained together as one stack, with what each brings from the main thread.

    Configurations that share a seed share their data order and dropout masks (as :func:`fit`
    draws them), so the group holds one shuffle and one dropout generator per seed, not per
    configuration: those are drawn once per seed and step.
    """

    slots: list[int]  # indices into the sweep's specs
    mlps: list[MLP]  # initialised as fit would initialise them
    seeds: list[int]  # each configuration's seed
    dropout_gens: dict[int, torch.Generator]  # per seed
    shuffle_gens: dict[int, torch.Generator]  # per seed


def _partition(specs: Sequence[RunSpec], groups: int) -> list[list[int]]:
    """Split configurations into ``groups`` near-equal parts, configurations of a seed together."""
    by_seed = sorted(range(len(specs)), key=lambda i: (specs[i].seed, i))
    size, extra = divmod(len(specs), groups)
    parts, start = [], 0
    for g in range(groups):
        end = start + size + (g < extra)
        parts.append(sorted(by_seed[start:end]))
        start = end
    return parts


def fit_sweep(
    specs: Sequence[RunSpec],
    criterion: Criterion,
    data: dict[str, tuple[np.ndarray, np.ndarray]],
    n_classes: int,
    cfg: TrainConfig,
    device: torch.device,
    *,
    progress: bool | None = None,
    desc: str = "sweep",
    groups: int | None = None,
) -> list[FitResult]:
    """Train every configuration in ``specs`` at once; return what :func:`fit` gives for each.

    The configurations form a :class:`~pipeline.model.StackedMLP` trained by one optimizer on
    ``sum_k loss_k``. Their gradients do not mix, and Adam, AdamW and SGD with momentum update
    elementwise (weight decay too), so slice k follows exactly the updates it would alone.
    Configuration k is initialised as ``torch.manual_seed(seed); MLP(...)``, shuffles with its
    own ``Generator(seed)`` and draws its dropout masks from its own generator in the state
    :func:`fit`'s global one would have (see :func:`_dropout_generator`).

    ``criterion`` holds one gamma per configuration where the loss takes one (a (K, 1) tensor,
    see :func:`pipeline.losses.make_criterion`), in the order of ``specs``.

    Configurations that share a seed share their data order and dropout masks in :func:`fit`,
    so here those are drawn once per seed and step, and a batch shared by all is one matrix
    product for the first layer: a gamma sweep at one seed draws its random numbers once.

    On the CPU the configurations may be split into ``groups`` stacks, each trained start to
    finish in a thread of its own with one intra-op thread: the configurations are
    independent, so this changes no result. The default is one stack (torch parallelises its
    batched products over the intra-op threads), but with dropout and several seeds one stack
    per thread (at most one per seed): dropout's random numbers are drawn on one core, so
    drawing several seeds' masks in parallel keeps both cores busy. On a GPU there is one stack.

    Early stopping per configuration: once one has gone ``patience`` epochs without a better
    validation macro-F1 it leaves its stack (its slice and its optimizer state are dropped), so
    it is never updated again and costs nothing after; the others go on. Each result holds the
    weights of that configuration's best validation epoch and its own history.
    """
    X_tr, y_tr, X_va, y_va = _tensors(data, device)
    threads = torch.get_num_threads()
    n_seeds = len({spec.seed for spec in specs})
    if groups is None:
        groups = min(threads, n_seeds) if device.type == "cpu" and cfg.dropout > 0 else 1
    groups = max(1, min(groups, len(specs)))
    # Initialisation reads the global RNG, so it happens here, in order, before any thread.
    mlps, rng_states = [], {}
    for spec in specs:
        torch.manual_seed(spec.seed)
        mlps.append(MLP(X_tr.shape[1], cfg.hidden, n_classes, cfg.dropout))
        rng_states.setdefault(spec.seed, torch.get_rng_state())
    work = []
    for part in _partition(specs, groups):
        seeds = [specs[i].seed for i in part]
        work.append(_Group(
            part, [mlps[i] for i in part], seeds,
            {s: _dropout_generator(s, rng_states[s], device) for s in dict.fromkeys(seeds)},
            {s: torch.Generator().manual_seed(s) for s in dict.fromkeys(seeds)},
        ))
    tensors = (X_tr, y_tr, X_va, y_va)
    start = time.perf_counter()
    if groups == 1:
        outcome = [_fit_stack(work[0], criterion, tensors, n_classes, cfg, device, progress, desc)]
    else:
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(groups) as pool:
                futures = [
                    pool.submit(_fit_stack, group, criterion.take(torch.tensor(group.slots)), tensors,
                                n_classes, cfg, device, progress, f"{desc} {g + 1}/{groups}")
                    for g, group in enumerate(work)
                ]
                outcome = [f.result() for f in futures]
        finally:
            torch.set_num_threads(threads)
    seconds = time.perf_counter() - start
    results: list[FitResult | None] = [None] * len(specs)
    for group, group_results in zip(work, outcome):
        for slot, r in zip(group.slots, group_results):
            r.seconds = seconds
            results[slot] = r
    return results


def _fit_stack(
    group: _Group,
    criterion: Criterion,
    tensors: tuple[torch.Tensor, ...],
    n_classes: int,
    cfg: TrainConfig,
    device: torch.device,
    progress: bool | None,
    desc: str,
) -> list[FitResult]:
    """Train one group's configurations as one stack; see :func:`fit_sweep`."""
    X_tr, y_tr, X_va, y_va = tensors
    k_all, n, batch = len(group.mlps), len(X_tr), cfg.batch_size
    stack = StackedMLP(group.mlps).to(device)
    opt = _optimizer(stack.parameters(), cfg)
    criterion = to_device(criterion, device)
    select_from = criterion.final_phase_epoch
    results = [FitResult(model=m) for m in group.mlps]
    best_states: list[dict | None] = [None] * k_all
    stale = [0] * k_all
    active = list(range(k_all))  # the configuration in each slot of the stack
    bar = _Progress(desc, cfg, progress)
    for epoch in bar:
        stack.train()
        # one data order and one dropout generator per seed still training; which one each slot reads
        seeds = list(dict.fromkeys(group.seeds[k] for k in active))
        gens = [group.dropout_gens[s] for s in seeds]
        order = torch.stack([torch.randperm(n, generator=group.shuffle_gens[s]) for s in seeds]).to(device)
        shared = len(seeds) == 1
        # slot -> its seed's row of order and masks; None where that is the identity (one seed each)
        of_seed = None if len(seeds) == len(active) else torch.tensor(
            [seeds.index(group.seeds[k]) for k in active], device=device)
        total = torch.zeros(len(active), dtype=torch.float64, device=device)
        for i in range(0, n, batch):
            if shared:  # one batch for every configuration: (B, F), targets (A, B)
                rows = order[0, i : i + batch]
                xb = X_tr.index_select(0, rows)
                yb = y_tr.index_select(0, rows).expand(len(active), -1)
            else:  # each configuration its seed's batch: (A, B, F)
                idx = order[:, i : i + batch]
                idx = idx if of_seed is None else idx.index_select(0, of_seed)
                xb = X_tr.index_select(0, idx.reshape(-1)).view(*idx.shape, -1)
                yb = y_tr.index_select(0, idx.reshape(-1)).view(idx.shape)
            masks = None
            if cfg.dropout > 0:  # (S, B, width) per hidden layer; (1, B, width) broadcasts
                masks = stack.dropout_masks(len(yb[0]), gens)
                if not shared and of_seed is not None:
                    masks = [m.index_select(0, of_seed) for m in masks]
            losses = criterion(stack(xb, masks), yb, epoch)  # (A,)
            opt.zero_grad(set_to_none=True)
            losses.sum().backward()
            opt.step()
            total += losses.detach().double() * yb.shape[1]
        logits = predict_logits(stack, X_va)  # (A, N_val, C)
        val_loss = criterion(logits, y_va.expand(len(active), -1), epoch).tolist()
        val_f1 = macro_f1(y_va, logits.argmax(-1), n_classes).tolist()
        train_loss = (total / n).tolist()
        keep = []
        for slot, k in enumerate(active):
            r = results[k]
            r.history.append({"epoch": epoch, "train_loss": train_loss[slot],
                              "val_loss": val_loss[slot], "val_macro_f1": val_f1[slot]})
            if epoch >= select_from:
                if val_f1[slot] > r.best_val_macro_f1:
                    r.best_val_macro_f1, r.best_epoch, stale[k] = val_f1[slot], epoch, 0
                    best_states[k] = stack.state_of(slot)
                else:
                    stale[k] += 1
            if stale[k] < cfg.patience:
                keep.append(slot)
        bar.update(epoch, not keep or epoch == cfg.epochs, training=f"{len(keep)}/{k_all}",
                   best=f"{max(r.best_val_macro_f1 for r in results):.3f}")
        if not keep:
            break
        if len(keep) < len(active):
            index = torch.tensor(keep, device=device)
            stack, opt = _take(stack, opt, index, cfg)
            criterion = criterion.take(index)
            active = [active[s] for s in keep]
    bar.close()
    for r, state in zip(results, best_states):
        r.model.load_state_dict(state)
        r.model.to(device).eval()
    return results
