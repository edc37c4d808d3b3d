"""The batched sweep: every configuration of one loss (each γ × seed) trained at once.

:func:`fit_sweep` trains the configurations as one :class:`~pipeline.training.model.StackedMLP` and
returns, for each, what :func:`pipeline.training.train.fit` returns for it alone: the same
initialisation, data order and dropout masks, its own optimizer state, its own early-stopping
point (tested to float tolerance on the CPU).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.config import TrainConfig
from pipeline.training.criterion import Criterion, to_device
from pipeline.training.model import MLP, StackedMLP
from pipeline.training.plan import RunSpec
from pipeline.training.train import (
    EarlyStopping,
    FitResult,
    Progress,
    as_tensors,
    best_text,
    class_counts,
    epoch_record,
    make_optimizer,
    predict_logits,
    resolve_batch,
    stopping_sign,
    stopping_values,
    warm_up,
)


def _dropout_generator(seed: int, rng_state: torch.Tensor, device: torch.device) -> torch.Generator:
    """The generator :func:`~pipeline.training.train.fit` draws dropout masks from, right after initialising the MLP.

    On the CPU that is the global generator in ``rng_state``, its state after
    ``manual_seed(seed)`` and the MLP's initialisation. On CUDA the MLP is initialised on the
    CPU, so :func:`~pipeline.training.train.fit`'s CUDA generator is in its ``manual_seed(seed)`` state; :func:`~pipeline.training.train.fit`'s
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
    new_opt = make_optimizer(new.parameters(), cfg)
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

    Configurations that share a seed share their data order and dropout masks (as :func:`~pipeline.training.train.fit`
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
    on_epoch: Callable[[int, dict], None] | None = None,
) -> list[FitResult]:
    """Train every configuration in ``specs`` at once; return what :func:`~pipeline.training.train.fit` gives for each.

    The configurations form a :class:`~pipeline.training.model.StackedMLP` trained by one optimizer on
    ``sum_k loss_k``. Their gradients do not mix, and Adam, AdamW and SGD with momentum update
    elementwise (weight decay too), so slice k follows exactly the updates it would alone.
    Configuration k is initialised as ``torch.manual_seed(seed); MLP(...)``, shuffles with its
    own ``Generator(seed)`` and draws its dropout masks from its own generator in the state
    :func:`~pipeline.training.train.fit`'s global one would have (see :func:`_dropout_generator`).

    ``criterion`` holds one gamma per configuration where the loss takes one (a (K, 1) tensor,
    see :func:`pipeline.training.criterion.make_criterion`), in the order of ``specs``.

    Configurations that share a seed share their data order and dropout masks in :func:`~pipeline.training.train.fit`,
    so here those are drawn once per seed and step, and a batch shared by all is one matrix
    product for the first layer: a gamma sweep at one seed draws its random numbers once.

    The configurations may be split into ``groups`` stacks, each trained start to finish in a
    thread of its own: the configurations are independent, so this changes no result. How many,
    and torch's thread count to go with them, is :func:`pipeline.training.train.thread_plan`'s to say
    and the caller's to set; nothing here changes torch's threads.

    Early stopping per configuration, as in :func:`~pipeline.training.train.fit` (the monitored score on
    the early-stopping slice): once one has gone ``patience`` epochs without a better score it
    leaves its stack (its slice and its optimizer state are dropped), so
    it is never updated again and costs nothing after; the others go on. Each result holds the
    weights of that configuration's best epoch on the slice and its own history.

    ``on_epoch(i, record)``, when given, is called with each epoch's history record of
    ``specs[i]`` as it is made (from the stacks' threads when ``groups`` > 1).
    """
    X_tr, y_tr, X_st, y_st, X_va, y_va = as_tensors(data, device)
    cfg = resolve_batch(cfg, len(X_tr), device)
    groups = max(1, min(groups or 1, len(specs)))
    # Initialisation reads the global RNG, so it happens here, in order, before any thread.
    mlps, rng_states = [], {}
    for spec in specs:
        torch.manual_seed(spec.seed)
        mlps.append(MLP(X_tr.shape[1], cfg.hidden, n_classes, cfg.dropout))
        rng_states.setdefault(spec.seed, torch.get_rng_state())
    work = []
    for part in _partition(specs, groups):
        seeds = [specs[i].seed for i in part]
        work.append(
            _Group(
                part,
                [mlps[i] for i in part],
                seeds,
                {s: _dropout_generator(s, rng_states[s], device) for s in dict.fromkeys(seeds)},
                {s: torch.Generator().manual_seed(s) for s in dict.fromkeys(seeds)},
            )
        )
    tensors = (X_tr, y_tr, X_st, y_st, X_va, y_va)
    start = time.perf_counter()
    if groups == 1:
        outcome = [_fit_stack(work[0], criterion, tensors, n_classes, cfg, device, progress, desc, on_epoch)]
    else:
        with ThreadPoolExecutor(groups) as pool:
            futures = [
                pool.submit(
                    _fit_stack,
                    group,
                    criterion.take(torch.tensor(group.slots)),
                    tensors,
                    n_classes,
                    cfg,
                    device,
                    progress,
                    f"{desc} {g + 1}/{groups}",
                    on_epoch,
                )
                for g, group in enumerate(work)
            ]
            outcome = [f.result() for f in futures]
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
    on_epoch: Callable[[int, dict], None] | None = None,
) -> list[FitResult]:
    """Train one group's configurations as one stack; see :func:`fit_sweep`."""
    X_tr, y_tr, X_st, y_st, X_va, y_va = tensors
    metric = cfg.early_stopping_metric
    k_all, n, batch = len(group.mlps), len(X_tr), cfg.batch_size
    stack = StackedMLP(group.mlps).to(device)
    opt = make_optimizer(stack.parameters(), cfg)
    criterion = to_device(criterion, device)
    stoppers = [EarlyStopping(cfg.patience, criterion.final_phase_epoch) for _ in group.mlps]
    results = [FitResult(model=m) for m in group.mlps]
    best_states: list[dict | None] = [None] * k_all
    active = list(range(k_all))  # the configuration in each slot of the stack
    bar = Progress(desc, cfg, progress)
    step = 0
    for epoch in bar:
        stack.train()
        # one data order and one dropout generator per seed still training; which one each slot reads
        seeds = list(dict.fromkeys(group.seeds[k] for k in active))
        gens = [group.dropout_gens[s] for s in seeds]
        order = torch.stack([torch.randperm(n, generator=group.shuffle_gens[s]) for s in seeds]).to(device)
        shared = len(seeds) == 1
        # slot -> its seed's row of order and masks; None where that is the identity (one seed each)
        of_seed = (
            None
            if len(seeds) == len(active)
            else torch.tensor([seeds.index(group.seeds[k]) for k in active], device=device)
        )
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
            warm_up(opt, cfg, step)
            opt.step()
            step += 1
            total += losses.detach().double() * yb.shape[1]
        stop_logits, val_logits = predict_logits(stack, X_st), predict_logits(stack, X_va)  # (A, N, C)
        stop = stopping_values(stop_logits, y_st, n_classes)
        score = [stopping_sign(metric) * v for v in stop[metric]]
        stop_loss = criterion(stop_logits, y_st.expand(len(active), -1), epoch).tolist()
        val_loss = criterion(val_logits, y_va.expand(len(active), -1), epoch).tolist()
        val_counts = class_counts(y_va, val_logits.argmax(-1), n_classes)
        train_loss = (total / n).tolist()
        keep = []
        for slot, k in enumerate(active):
            r = results[k]
            r.history.append(
                epoch_record(
                    epoch,
                    train_loss[slot],
                    stop_loss[slot],
                    {key: v[slot] for key, v in stop.items()},
                    val_loss[slot],
                    val_counts[slot],
                )
            )
            if on_epoch is not None:
                on_epoch(group.slots[k], r.history[-1])
            if stoppers[k].step(epoch, score[slot]):
                best_states[k] = stack.state_of(slot)
            if not stoppers[k].stopped:
                keep.append(slot)
        bar.update(epoch, training=f"{len(keep)}/{k_all}", best=best_text(stoppers, metric))
        if not keep:
            break
        if len(keep) < len(active):
            index = torch.tensor(keep, device=device)
            stack, opt = _take(stack, opt, index, cfg)
            criterion = criterion.take(index)
            active = [active[s] for s in keep]
    bar.close()
    for r, state, stopper in zip(results, best_states, stoppers):
        r.best_epoch, r.best_score = stopper.best_epoch, stopping_sign(metric) * stopper.best
        r.model.load_state_dict(state)
        r.model.to(device).eval()
    return results
