"""Figures. Each function returns a matplotlib Figure; the caller decides where it goes."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def confusion_figure(cm: np.ndarray, classes: list[str], title: str) -> Figure:
    """Counts and row-normalised (recall per true class) confusion matrices side by side."""
    cm = np.asarray(cm)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    k = len(classes)
    size = max(4.0, 0.45 * k + 2.0)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1, size), layout="constrained")
    for ax, values, label, fmt in (
        (axes[0], cm, "counts", "d"),
        (axes[1], norm, "row-normalised (recall)", ".2f"),
    ):
        im = ax.imshow(values, cmap="Blues", vmin=0, vmax=values.max() if values.max() > 0 else 1)
        ax.set_title(label)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_xticks(range(k), classes, rotation=90 if k > 12 else 0)
        ax.set_yticks(range(k), classes)
        if k <= 20:
            thresh = values.max() / 2
            for i in range(k):
                for j in range(k):
                    ax.text(j, i, format(values[i, j], fmt), ha="center", va="center", fontsize=7,
                            color="white" if values[i, j] > thresh else "black")
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(title)
    return fig


def save(fig: Figure, path) -> None:
    """Write ``fig`` as PNG with no timestamp metadata, then close it."""
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
