"""Model checkpoints: one self-describing file per trained MLP, loaded by one function.

A checkpoint holds the weights (``state_dict``), what rebuilds the network (``in_features``,
``hidden``, ``dropout``), the class names in output order and the run it came from; it is read
with ``torch.load(weights_only=True)``, so loading one never runs code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pipeline import PipelineError
from pipeline.artifacts import RunEntry
from pipeline.training.model import MLP

CHECKPOINT_FORMAT = "imbalance-pipeline/mlp"
CHECKPOINT_VERSION = 1


def save_checkpoint(path: str | Path, model: MLP, *, classes: list[str], run: RunEntry) -> None:
    """Write ``model`` as a self-describing checkpoint, readable with ``weights_only=True``.

    It holds ``state_dict`` (CPU tensors), the architecture (``in_features``, ``hidden``,
    ``dropout``), ``classes`` in output order, and the run (model name, loss, gamma, seed).
    """
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
            **model.architecture(),
            "classes": list(classes),
            "run": dict(run),
        },
        path,
    )


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's contents (``torch.load(weights_only=True)``), checked to be one of ours."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: checkpoint not found (run the train stage that writes it first)")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise PipelineError(f"{path}: not a checkpoint written by this pipeline")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise PipelineError(
            f"{path}: checkpoint version {ckpt.get('version')!r}; this code reads version {CHECKPOINT_VERSION}"
        )
    return ckpt


def load_model(path: str | Path) -> MLP:
    """The :class:`~pipeline.training.model.MLP` of a checkpoint, in eval mode, on the CPU.

    Its output columns are the checkpoint's ``classes`` (:func:`read_checkpoint`).
    """
    ckpt = read_checkpoint(path)
    model = MLP(ckpt["in_features"], tuple(ckpt["hidden"]), len(ckpt["classes"]), ckpt["dropout"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()
