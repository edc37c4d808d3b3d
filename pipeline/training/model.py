"""The classifier, a plain multi-layer perceptron, and K of them stacked for a batched sweep."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class MLP(nn.Module):
    """``Linear -> ReLU -> Dropout`` per hidden layer, then a linear layer to C logits."""

    def __init__(self, in_features: int, hidden: tuple[int, ...], n_classes: int, dropout: float = 0.0):
        super().__init__()
        self.in_features, self.hidden, self.dropout = in_features, tuple(hidden), dropout
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, F) -> (N, C)
        return self.net(x)

    def architecture(self) -> dict:
        """What rebuilds this MLP: ``in_features``, ``hidden``, ``dropout`` (plain JSON values)."""
        return {"in_features": int(self.in_features), "hidden": list(self.hidden), "dropout": float(self.dropout)}


def _linears(mlp: MLP) -> list[nn.Linear]:
    return [m for m in mlp.net if isinstance(m, nn.Linear)]


class StackedOutput(torch.autograd.Function):
    """K output layers ``h_k W_k^T + b_k``: h (K, B, in), W (K, C, in), b (K, 1, C) -> (K, B, C).

    With few outputs C, batched GEMMs whose result has C columns are slow on MKL, so every
    product here has C as a row count or the inner size: logits^T = W h^T, dL/dh = g W,
    dL/dW = g^T h. Autograd's own backward of that forward would hand ``h`` a transposed,
    non-contiguous gradient, which makes the ReLU and dropout backward several times slower.
    """

    @staticmethod
    def forward(ctx, h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(h, w)
        return torch.baddbmm(b.transpose(1, 2), w, h.transpose(1, 2)).transpose(1, 2)

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # g: (K, B, C)
        h, w = ctx.saved_tensors
        grad_h = torch.bmm(g, w) if ctx.needs_input_grad[0] else None  # (K, B, in), contiguous
        grad_w = torch.bmm(g.transpose(1, 2), h) if ctx.needs_input_grad[1] else None  # (K, C, in)
        grad_b = g.sum(1, keepdim=True) if ctx.needs_input_grad[2] else None  # (K, 1, C)
        return grad_h, grad_w, grad_b


class BiasReluDropout(torch.autograd.Function):
    """``relu(z + b) * mask`` computed in place on ``z``; backward needs only the result.

    ``z`` (K, B, width) is a fresh matmul result whose own backward does not need it, ``b``
    (K, 1, width). ``mask`` holds 0 or ``scale`` = 1 / (1 - p) (``None``: no dropout, scale 1).
    Where the result is positive the mask was ``scale``, so the gradient with respect to
    ``z`` is ``threshold_backward(g, out, 0) * scale``: bit for bit what autograd gives for
    ``nn.Dropout(nn.ReLU(z + b))``. The work stays in place on tensors still in cache, with no
    (K, B, width) mask kept for backward: on a 2-core CPU the stack's elementwise work is bound
    by memory traffic, not arithmetic.
    """

    @staticmethod
    def forward(ctx, z: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None, scale: float) -> torch.Tensor:
        out = z.add_(b).relu_()
        if mask is not None:
            out.mul_(mask)
        ctx.mark_dirty(z)
        ctx.save_for_backward(out)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        (out,) = ctx.saved_tensors
        grad = torch.ops.aten.threshold_backward(g, out, 0)
        if ctx.scale != 1.0:
            grad.mul_(ctx.scale)
        grad_b = grad.sum(1, keepdim=True) if ctx.needs_input_grad[1] else None
        return grad, grad_b, None, None


class StackedMLP(nn.Module):
    """K independent MLPs of one architecture, run together with batched matmuls.

    Hidden layer l holds ``weight[l]`` (K, in, out), each MLP's ``Linear.weight`` transposed,
    and ``bias[l]`` (K, 1, out): one ``baddbmm`` computes the layer for all K models. The output
    layer's weight is kept as (K, C, in), ``Linear``'s own layout, and computed transposed,
    logits^T = W h^T: with C ~ 10 outputs, (K, B, in) @ (K, in, C) runs about 4x slower on
    MKL than (K, C, in) @ (K, in, B), forward and backward. The K models share no parameter and
    no computation that mixes them: the gradient of ``sum_k loss_k`` with respect to model k's
    slice is the gradient of ``loss_k`` alone.

    Dropout masks come from :meth:`dropout_masks`, drawn from one generator per model, or from
    one for all when the models would draw the same masks, with the calls ``nn.Dropout`` makes
    (``bernoulli_(1 - p)`` on a tensor of the layer's shape, then ``div_(1 - p)``): a generator
    in the state of the global one reproduces a lone MLP's masks bit for bit on the CPU.
    """

    def __init__(self, mlps: Sequence[MLP]):
        super().__init__()
        layers = list(zip(*(_linears(m) for m in mlps)))  # per layer: K Linear modules
        self.weight = nn.ParameterList(
            nn.Parameter(
                torch.stack(
                    [lin.weight.detach() if i == len(layers) - 1 else lin.weight.detach().T for lin in layer]
                ).contiguous()
            )
            for i, layer in enumerate(layers)
        )
        self.bias = nn.ParameterList(
            nn.Parameter(torch.stack([lin.bias.detach() for lin in layer]).unsqueeze(1)) for layer in layers
        )
        self.dropout = mlps[0].dropout

    def __len__(self) -> int:
        return self.weight[0].shape[0]

    def dropout_masks(self, batch: int, generators: Sequence[torch.Generator]) -> list[torch.Tensor]:
        """One (G, batch, width) mask per hidden layer for G generators, already divided by 1 - p.

        Mask g is drawn layer after layer from ``generators[g]``, as a lone MLP's own
        ``nn.Dropout`` modules would draw them in a forward pass from a generator in that state.
        :meth:`forward` takes one mask per model, or one shared by all (G = 1).
        """
        keep = 1 - self.dropout
        device = self.weight[0].device
        masks = [torch.empty(len(generators), batch, w.shape[2], device=device) for w in self.weight[:-1]]
        for g, generator in enumerate(generators):
            for m in masks:
                m[g].bernoulli_(keep, generator=generator)
        return [m.div_(keep) for m in masks]

    def forward(self, x: torch.Tensor, masks: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """(K, B, F) per-model batches, or (B, F) shared by all models -> (K, B, C) logits.

        ``masks`` (from :meth:`dropout_masks`) are required in training mode when dropout > 0.
        """
        drop = self.training and self.dropout > 0
        if drop and masks is None:
            raise ValueError("StackedMLP needs dropout masks in training mode (see dropout_masks)")
        if drop and any(m.shape[0] not in (1, len(self)) for m in masks):
            raise ValueError(
                f"StackedMLP needs one dropout mask per model or one for all; "
                f"got {[m.shape[0] for m in masks]} for {len(self)}"
            )
        # the masks' nonzero value, 1 / (1 - p) rounded as their own div_ rounds it
        scale = torch.ones(()).div_(1 - self.dropout).item() if drop else 1.0
        h = x
        for i, (w, b) in enumerate(zip(self.weight[:-1], self.bias[:-1])):
            z = torch.bmm(h, w) if h.dim() == 3 else torch.matmul(h, w)  # (K, B, out)
            h = BiasReluDropout.apply(z, b, masks[i] if drop else None, scale)
        if h.dim() == 2:
            h = h.expand(len(self), *h.shape)
        return StackedOutput.apply(h, self.weight[-1], self.bias[-1])

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
        state, last = {}, len(self.weight) - 1
        for i, (w, b) in enumerate(zip(self.weight, self.bias)):
            weight = w.detach()[k] if i == last else w.detach()[k].T  # Linear.weight is (out, in)
            state[f"net.{3 * i}.weight"] = weight.clone(memory_format=torch.contiguous_format)
            state[f"net.{3 * i}.bias"] = b.detach()[k, 0].clone()  # MLP: Linear, ReLU, Dropout
        return state
