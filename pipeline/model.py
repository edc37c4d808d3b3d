"""The classifier, a plain multi-layer perceptron, and K of them stacked for a batched sweep."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class MLP(nn.Module):
    """``Linear -> ReLU -> Dropout`` per hidden layer, then a linear layer to C logits."""

    def __init__(self, in_features: int, hidden: tuple[int, ...], n_classes: int, dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, F) -> (N, C)
        return self.net(x)


def _linears(mlp: MLP) -> list[nn.Linear]:
    return [m for m in mlp.net if isinstance(m, nn.Linear)]


def _dropout_p(mlp: MLP) -> float:
    return next((m.p for m in mlp.net if isinstance(m, nn.Dropout)), 0.0)


class StackedMLP(nn.Module):
    """K independent MLPs of one architecture, run together with batched matmuls.

    Layer l holds ``weight`` (K, in, out) (each MLP's ``Linear.weight`` transposed) and ``bias``
    (K, 1, out), so a forward pass is one ``baddbmm`` per layer for all K models. The K models
    share no parameter and no computation that mixes them: the gradient of ``sum_k loss_k``
    with respect to model k's slice is the gradient of ``loss_k`` alone.

    Dropout draws model k's mask from ``generators[k]`` with the same call ``nn.Dropout`` makes
    (``bernoulli_(1 - p)`` on a tensor of the layer's shape, then ``/ (1 - p)``), so a generator
    in the state of the global one reproduces a lone MLP's masks bit for bit on the CPU.
    """

    def __init__(self, mlps: Sequence[MLP]):
        super().__init__()
        layers = list(zip(*(_linears(m) for m in mlps)))  # per layer: K Linear modules
        self.weight = nn.ParameterList(
            nn.Parameter(torch.stack([lin.weight.detach().T for lin in layer]).contiguous())
            for layer in layers
        )
        self.bias = nn.ParameterList(
            nn.Parameter(torch.stack([lin.bias.detach() for lin in layer]).unsqueeze(1))
            for layer in layers
        )
        self.dropout = _dropout_p(mlps[0])

    def __len__(self) -> int:
        return self.weight[0].shape[0]

    def forward(
        self, x: torch.Tensor, generators: Sequence[torch.Generator] | None = None
    ) -> torch.Tensor:
        """(K, B, F) per-model batches, or (B, F) shared by all models -> (K, B, C) logits.

        ``generators`` (one per model) are required in training mode when dropout > 0.
        """
        h = x
        last = len(self.weight) - 1
        for i, (w, b) in enumerate(zip(self.weight, self.bias)):
            h = torch.baddbmm(b, h, w) if h.dim() == 3 else torch.matmul(h, w) + b  # (K, B, out)
            if i == last:
                break
            h = torch.relu(h)
            if self.training and self.dropout > 0:
                if generators is None or len(generators) != len(self):
                    raise ValueError("StackedMLP needs one generator per model for dropout")
                keep = 1 - self.dropout
                mask = torch.empty_like(h)
                for k, g in enumerate(generators):
                    mask[k].bernoulli_(keep, generator=g)
                h = h * mask.div_(keep)
        return h

    def take(self, index: torch.Tensor) -> StackedMLP:
        """A new stack of models ``index`` (copies, detached from this one)."""
        new = StackedMLP.__new__(StackedMLP)
        nn.Module.__init__(new)
        new.weight = nn.ParameterList(nn.Parameter(w.detach()[index].clone()) for w in self.weight)
        new.bias = nn.ParameterList(nn.Parameter(b.detach()[index].clone()) for b in self.bias)
        new.dropout = self.dropout
        new.train(self.training)
        return new

    def state_of(self, k: int) -> dict[str, torch.Tensor]:
        """Model k's weights as an :class:`MLP` ``state_dict`` (copies)."""
        state = {}
        for i, (w, b) in enumerate(zip(self.weight, self.bias)):
            state[f"net.{3 * i}.weight"] = w.detach()[k].T.clone(memory_format=torch.contiguous_format)
            state[f"net.{3 * i}.bias"] = b.detach()[k, 0].clone()
        return state
