"""Figures. Each function returns a matplotlib Figure; the caller decides where it goes."""

from __future__ import annotations

import io
from collections.abc import Callable

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from pipeline import in_parallel  # noqa: E402
from pipeline.artifacts import FIGURES, alpha_figure_file, confusion_figure_file, gamma_figure_file  # noqa: E402
from pipeline.evaluation.evaluate import GAMMA_METRICS  # noqa: E402

DPI = 110
RANKED = 20  # candidates in the rank figure (the policy's top ones; the appendix lists all)


READABLE = 30  # classes a class-by-class figure shows at most


def readable_classes(classes: list[str], train_counts: dict[str, int], recall: dict[str, float]) -> list[str]:
    """The classes the per-class figures show, in the data's order: every class up to
    :data:`READABLE`; beyond, the ``READABLE / 2`` rarest in training and then the lowest
    ``recall`` (the pick's, on test) up to :data:`READABLE` (ties in class order). 300 classes
    drawn side by side would be 300 unreadable ticks and a confusion matrix of 90 000 cells."""
    if len(classes) <= READABLE:
        return list(classes)
    rarest = sorted(classes, key=lambda c: train_counts[c])[: READABLE // 2]
    worst = [c for c in sorted(classes, key=lambda c: recall.get(c, 1.0)) if c not in rarest]
    chosen = {*rarest, *worst[: READABLE - len(rarest)]}
    return [c for c in classes if c in chosen]


def _reduced(cm: np.ndarray, classes: list[str], shown: list[str]) -> tuple[np.ndarray, list[str]]:
    """``cm`` on the ``shown`` classes, the others summed into one last row and column ``other``."""
    cm = np.asarray(cm, dtype=np.float64)
    if len(shown) == len(classes):
        return cm, classes
    idx = np.array([classes.index(c) for c in shown])
    rest = np.setdiff1d(np.arange(len(classes)), idx)
    k = len(idx)
    out = np.zeros((k + 1, k + 1))
    out[:k, :k] = cm[np.ix_(idx, idx)]
    out[:k, k] = cm[np.ix_(idx, rest)].sum(1)
    out[k, :k] = cm[np.ix_(rest, idx)].sum(0)
    out[k, k] = cm[np.ix_(rest, rest)].sum()
    return out, [*shown, f"other {len(rest)}"]


def _row_normalised(cm: np.ndarray) -> np.ndarray:
    rows = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)


def _matrix(
    ax, values: np.ndarray, classes: list[str], title: str, fmt: str, vmax: float, labels: np.ndarray | None = None
):
    """One annotated class-by-class heatmap (true classes as rows, predictions as columns); each
    cell shows ``labels`` (text, (C, C)) when given, else its value in ``fmt``."""
    k = len(classes)
    im = ax.imshow(values, cmap="Blues", vmin=0, vmax=vmax if vmax > 0 else 1)
    ax.set_title(title)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_xticks(range(k), classes, rotation=90 if k > 12 else 0)
    ax.set_yticks(range(k), classes)
    if k <= 20:
        for i in range(k):
            for j in range(k):
                text = labels[i, j] if labels is not None else format(values[i, j], fmt)
                if not text:
                    continue
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if values[i, j] > vmax / 2 else "black",
                )
    return im


def confusion_figure(cm: np.ndarray, classes: list[str], title: str, shown: list[str] | None = None) -> Figure:
    """One model's confusion matrix: each cell's number is its count (blank for none), its colour its
    share of the true class (row-normalised: the diagonal is each class's recall); on the
    ``shown`` classes only when given (:func:`readable_classes`), the rest as ``other``."""
    cm, classes = _reduced(cm, classes, shown or classes)
    size = max(4.0, 0.45 * len(classes) + 2.0)
    fig, ax = plt.subplots(figsize=(size + 1.4, size), layout="constrained")
    labels = np.where(cm != 0, cm.astype(np.int64).astype(str), "")
    im = _matrix(ax, _row_normalised(cm), classes, title, "", 1.0, labels=labels)
    fig.colorbar(im, ax=ax, shrink=0.8, label="share of the true class (colour); numbers are counts")
    return fig


def png(fig: Figure) -> bytes:
    """``fig`` as PNG bytes with no metadata that could vary between runs; closes it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def render(jobs: list[tuple[str, Callable[..., Figure], tuple]], workers: int | None = None) -> list[tuple[str, bytes]]:
    """``(name, PNG bytes)`` of each job ``(name, figure function, its arguments)``, in order.

    Drawing is CPU-bound Python (text layout above all), so the jobs run in ``workers`` forked
    processes (:func:`pipeline.in_parallel`).
    """
    return in_parallel(_render, jobs, workers)


def _render(name: str, draw: Callable[..., Figure], args: tuple) -> tuple[str, bytes]:
    return name, png(draw(*args))


def rank_figure(models: list[str], metrics: list[str], ranks: dict[str, dict[str, int]], pick: str | None) -> Figure:
    """Models (rows) x metrics (columns), coloured and annotated by rank; 1 is best."""
    grid = np.array([[ranks[m][k] for k in metrics] for m in models], dtype=float)
    fig, ax = plt.subplots(figsize=(0.75 * len(metrics) + 3, 0.42 * len(models) + 2), layout="constrained")
    ax.imshow(grid, cmap="RdYlGn_r", vmin=1, vmax=max(len(models), 2), aspect="auto")
    ax.set_xticks(range(len(metrics)), metrics, rotation=45, ha="right")
    ax.set_yticks(range(len(models)), [f"{m}  (policy pick)" if m == pick else m for m in models])
    for i in range(len(models)):
        for j in range(len(metrics)):
            ax.text(j, i, int(grid[i, j]), ha="center", va="center", fontsize=8)
    ax.set_title("Rank of each model under each metric (1 = best)")
    return fig


def agreement_figure(metrics: list[str], tau: dict[str, dict[str, float | None]]) -> Figure:
    """Kendall's tau between the model rankings of every pair of metrics."""
    grid = np.array([[np.nan if tau[a][b] is None else tau[a][b] for b in metrics] for a in metrics])
    fig, ax = plt.subplots(figsize=(0.6 * len(metrics) + 3, 0.6 * len(metrics) + 2), layout="constrained")
    im = ax.imshow(grid, cmap="coolwarm_r", vmin=-1, vmax=1)
    ax.set_xticks(range(len(metrics)), metrics, rotation=45, ha="right")
    ax.set_yticks(range(len(metrics)), metrics)
    for i in range(len(metrics)):
        for j in range(len(metrics)):
            if not np.isnan(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax, shrink=0.8, label="Kendall tau")
    ax.set_title("Do the metrics agree on the ranking?")
    return fig


def focal_shape_figure(gammas: list[float]) -> Figure:
    """The focal loss -(1 - p_t)^gamma log p_t against p_t, one curve per gamma."""
    p = np.linspace(1e-3, 1.0, 500)
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    for g in sorted(gammas):
        ax.plot(p, -((1 - p) ** g) * np.log(p), label=f"gamma = {g:g}" + ("  (cross-entropy)" if g == 0 else ""))
    ax.set_xlabel("p_t, probability of the true class")
    ax.set_ylabel("loss")
    ax.set_ylim(0, 5)
    ax.legend()
    ax.set_title("Focal loss: larger gamma down-weights easy samples")
    return fig


def gamma_curves_figure(rows: list[dict], metrics: list[str], title: str) -> Figure:
    """Metrics against gamma with error bars; ``rows`` hold ``gamma``, ``<metric>``,
    ``<metric>_low`` and ``<metric>_high`` per gamma, sorted by gamma."""
    n = len(metrics)
    cols = min(3, n)
    fig, axes = plt.subplots(
        (n + cols - 1) // cols,
        cols,
        figsize=(4.2 * cols, 3.2 * ((n + cols - 1) // cols)),
        layout="constrained",
        squeeze=False,
    )
    g = np.array([r["gamma"] for r in rows])
    for ax, name in zip(axes.ravel(), metrics):
        y = np.array([r[name] for r in rows])
        err = np.array([[r[name] - r[f"{name}_low"] for r in rows], [r[f"{name}_high"] - r[name] for r in rows]])
        ax.errorbar(g, y, yerr=np.clip(err, 0, None), marker="o", capsize=3)
        ax.set_xlabel("gamma")
        ax.set_title(name)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    fig.suptitle(title)
    return fig


def alpha_curves_figure(family: str, curve: dict) -> Figure:
    """A weight-strength family's metrics against alpha (:mod:`pipeline.evaluation.strength`): validation
    (what choosing reads) and test (the estimate), each with its bootstrap interval; the peak on
    validation marked, the alphas within noise of it shaded."""
    rows = curve["rows"]
    names = list(rows[0]["val"])
    cols = min(3, len(names))
    n_rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(n_rows, cols, figsize=(4.2 * cols, 3.2 * n_rows), layout="constrained", squeeze=False)
    a = np.array([r["alpha"] for r in rows])
    flat, peak = curve["flat_top"], curve["peak"]["alpha"]
    for ax, name in zip(axes.ravel(), names):
        for split, label, offset, color in (
            ("val", "validation", -0.006, "tab:blue"),
            ("test", "test", 0.006, "tab:orange"),
        ):
            pts = [r[split][name] for r in rows]
            y = np.array([np.nan if p["value"] is None else p["value"] for p in pts])
            lo = np.array([np.nan if p["low"] is None else p["low"] for p in pts])
            hi = np.array([np.nan if p["high"] is None else p["high"] for p in pts])
            err = np.nan_to_num(np.clip(np.array([y - lo, hi - y]), 0, None))
            ax.errorbar(a + offset * (a.max() or 1), y, yerr=err, marker="o", capsize=3, color=color, label=label)
        ax.axvspan(flat["low"] - 0.02, flat["high"] + 0.02, color="tab:green", alpha=0.12, lw=0)
        ax.axvline(peak, color="tab:green", lw=0.8, ls="--")
        ax.set_xlabel("alpha (weights ~ n_c^-alpha; 0 = unweighted)")
        ax.set_title(name + ("  (the policy's)" if name == curve["metric"] else ""), fontsize=10)
    axes.ravel()[0].legend(fontsize=8)
    for ax in axes.ravel()[len(names) :]:
        ax.set_visible(False)
    fig.suptitle(
        f"{family}: metrics against the class-weight strength alpha (dashed: the peak on validation; "
        f"shaded: within noise of it)\ntail classes: {', '.join(curve['tail_classes'])}",
        fontsize=10,
    )
    return fig


def class_distribution_figure(counts: dict[str, dict[str, int]], classes: list[str], of: str = "") -> Figure:
    """Samples per class in each split (``counts[split][class]``), training split long-tailed;
    ``of`` says which classes are shown when not all."""
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(classes) + 2), 3.4), layout="constrained")
    splits = list(counts)
    width = 0.8 / len(splits)
    x = np.arange(len(classes))
    for i, split in enumerate(splits):
        ax.bar(x + (i - (len(splits) - 1) / 2) * width, [counts[split][c] for c in classes], width, label=split)
    ax.set_xticks(x, classes, rotation=90 if len(classes) > 12 else 0)
    ax.set_xlabel("class")
    ax.set_ylabel("samples")
    ax.legend()
    ax.set_title(f"Class distribution per split{of}")
    return fig


def per_class_figure(values: dict[str, dict[str, float]], classes: list[str], order: list[str]) -> Figure:
    """Recall and precision per class for a few models; the classes in ``order`` (the data's order, or
    the :func:`readable_classes`)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), layout="constrained", sharey=True)
    x = np.arange(len(order))
    for ax, metric in zip(axes, ("recall", "precision")):
        for model, v in values.items():
            ax.plot(x, [v[f"{metric}/{c}"] for c in order], marker="o", label=model)
        ax.set_xticks(x, order)
        ax.set_xlabel("class")
        ax.set_title(metric)
        ax.set_ylim(-0.02, 1.02)
    axes[0].legend()
    return fig


def reliability_figure(calibration: dict) -> Figure:
    """The shipped candidate's reliability diagram on test (``audit.json``'s ``calibration``): each
    bin's accuracy against its mean top probability, the diagonal being perfect calibration, and
    how many rows each bin holds."""
    bins = calibration["reliability"]
    fig, (ax, counts) = plt.subplots(
        2, 1, figsize=(5.2, 5.6), layout="constrained", sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    ax.plot(
        [b["confidence"] for b in bins],
        [b["accuracy"] for b in bins],
        marker="o",
        label=f"{calibration['candidate']} (ECE {calibration['test_ece']:.3f})",
    )
    ax.set_ylabel("accuracy in the bin")
    ax.set_title(f"Reliability on the test split ({calibration['bins']} bins)")
    ax.legend(loc="upper left")
    ax.set_xlim(0, 1.0)
    ax.set_ylim(0, 1.02)
    counts.bar(
        [(b["low"] + b["high"]) / 2 for b in bins],
        [b["rows"] for b in bins],
        width=1 / calibration["bins"] * 0.9,
        color="tab:blue",
    )
    counts.set_xlabel("top probability (confidence)")
    counts.set_ylabel("rows")
    return fig


def confusion_pair_figure(cms: dict[str, np.ndarray], classes: list[str], shown: list[str] | None = None) -> Figure:
    """Row-normalised confusion matrices of a few models side by side (recall on the diagonal), on
    the ``shown`` classes when given."""
    reduced = {name: _reduced(cm, classes, shown or classes) for name, cm in cms.items()}
    labels = next(iter(reduced.values()))[1]
    size = max(4.0, 0.42 * len(labels) + 1.5)
    fig, axes = plt.subplots(1, len(cms), figsize=(size * len(cms) + 0.8, size), layout="constrained", squeeze=False)
    for ax, (name, (cm, labels)) in zip(axes[0], reduced.items()):
        im = _matrix(ax, _row_normalised(cm), labels, name, ".2f", 1.0)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="share of the true class")
    return fig


def prior_shift_figure(shift: dict, pick: str | None) -> Figure:
    """The top candidates' test score under each deployment prior (x: from the validation prior,
    0, to the training prior, 1, and on to the deployment prior, 2), with the Kish effective
    sample size of the test weights on a second axis; where the validation pick changes, marked."""
    points = shift["points"]
    t = np.array([p["t"] for p in points])
    fig, ax = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
    for name in shift["top"]:
        ax.plot(
            t,
            [p["test"][name] for p in points],
            marker="o",
            lw=2.2 if name == pick else 1.2,
            label=f"{name} (pick)" if name == pick else name,
        )
    for p in points:
        if p["pick"] != pick:
            ax.axvline(p["t"], color="grey", ls=":", lw=1)
    ax.set_xlabel("deployment prior: 0 = validation's, 1 = training's" + (", 2 = yours" if t.max() > 1 else ""))
    ax.set_ylabel(f"test {shift['metric']}")
    ess = ax.twinx()
    ess.plot(t, [p["test_ess"] for p in points], color="grey", ls="--", lw=1, label="effective test rows")
    ess.set_ylabel("Kish effective sample size (dashed)")
    ess.set_ylim(0, None)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title("Under shifted class priors (dotted: the validation pick changes)")
    return fig


def agreement_curves_figure(agreement: dict, models: list[str]) -> Figure:
    """Per model: validation loss (left axis) and the metric (right axis) per epoch, with the epoch
    early stopping chose (solid), the one the loss would choose (dashed) and the metric's (dotted)."""
    n = len(models)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.3 * cols, 2.9 * rows), layout="constrained", squeeze=False)
    for ax, name in zip(axes.ravel(), models):
        a = agreement["models"][name]
        epochs = np.arange(1, len(a["loss_curve"]) + 1)
        ax.plot(epochs, a["loss_curve"], color="tab:red", lw=1)
        ax.set_ylabel("val loss", color="tab:red", fontsize=8)
        other = ax.twinx()
        other.plot(epochs, a["metric_curve"], color="tab:blue", lw=1)
        other.set_ylabel(f"val {agreement['metric']}", color="tab:blue", fontsize=8)
        for epoch, style in ((a["epoch_chosen"], "-"), (a["epoch_by_loss"], "--"), (a["epoch_by_metric"], ":")):
            ax.axvline(epoch, color="black", ls=style, lw=0.8)
        rho = a["spearman"]
        ax.set_title(f"{name}: rho {rho:+.2f}" if rho is not None else name, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    fig.suptitle(
        "Does lowering the loss raise the metric? (rho: Spearman of epoch-to-epoch changes)\n"
        "solid: the epoch early stopping kept; dashed: lowest validation loss; dotted: best metric"
    )
    return fig


def evaluation_figures(ev, data, meta: dict) -> list[tuple[str, Callable[..., Figure], tuple]]:
    """Every figure of an evaluation, as :func:`render` jobs ``(file name, function, arguments)``.

    ``ev`` is a :class:`pipeline.evaluation.evaluate.Evaluation`, ``data`` its
    :class:`pipeline.evaluation.evaluate.PlotData`, ``meta`` the prepared data's ``meta.json``. The file
    names are :mod:`pipeline.artifacts`'; the report embeds these same files.
    """
    classes, audit, metrics = meta["classes"], ev.audit, ev.metrics
    pick = audit["policy"]["pick"]
    focus = pick or audit["reference"]["model"]
    shown = readable_classes(
        classes, meta["counts"]["train"], {c: metrics[focus][f"recall/{c}"] for c in classes} if focus else {}
    )
    of = (
        ""
        if len(shown) == len(classes)
        else f" ({len(shown)} of {len(classes)} classes: the rarest, the lowest recall)"
    )
    jobs = [
        (confusion_figure_file(name), confusion_figure, (cm, classes, f"{name} - test split{of}", shown))
        for name, cm in data.cm.items()
    ]
    jobs += [
        (
            gamma_figure_file(loss),
            gamma_curves_figure,
            (rows, list(GAMMA_METRICS), f"{loss}: test metrics against gamma (rarest class: {ev.rarest})"),
        )
        for loss, rows in ev.gammas.items()
    ]
    jobs += [
        (alpha_figure_file(family), alpha_curves_figure, (family, curve))
        for family, curve in (audit.get("weight_strength") or {}).items()
    ]
    gammas = sorted({r["gamma"] for rows in ev.gammas.values() for r in rows})
    if gammas:
        jobs.append((FIGURES["focal_shape"], focal_shape_figure, (gammas,)))
    ordered = [row["model"] for row in audit["leaderboard"]][:RANKED]
    ranked = {row["model"]: row["ranks"] for row in audit["leaderboard"]}
    jobs.append((FIGURES["ranks"], rank_figure, (ordered, audit["metrics"], ranked, pick)))
    jobs.append((FIGURES["agreement"], agreement_figure, (audit["metrics"], audit["kendall_tau"])))
    jobs.append((FIGURES["distribution"], class_distribution_figure, (meta["counts"], shown, of)))
    ref = audit["reference"]["model"]
    pair = {
        f"{m} (chosen)" if m == pick else m: data.cm[m]
        for m in dict.fromkeys(m for m in (pick, ref) if m and m in data.cm)
    }
    if pair:
        jobs.append((FIGURES["pick_vs_ce_confusion"], confusion_pair_figure, (pair, classes, shown)))
    if audit.get("calibration"):
        jobs.append((FIGURES["reliability"], reliability_figure, (audit["calibration"],)))
    weighted = (audit.get("weight_strength") or {}).get("weighted_ce")  # its alpha sweep's peak, when swept
    models = list(
        dict.fromkeys(
            m for m in (ref, weighted["peak"]["models"][0] if weighted else "weighted_ce", pick) if m and m in metrics
        )
    )
    if models:
        jobs.append((FIGURES["per_class"], per_class_figure, ({m: metrics[m] for m in models}, classes, shown)))
    if audit.get("prior_shift"):
        jobs.append((FIGURES["prior_shift"], prior_shift_figure, (audit["prior_shift"], pick)))
    agreement = audit.get("loss_metric_agreement") or {}
    if agreement.get("models"):
        order = {m: i for i, row in enumerate(audit["leaderboard"]) for m in row["members"]}
        ranked = sorted(agreement["models"], key=lambda m: order.get(m, len(order)))
        per_loss = list({agreement["models"][m]["loss"]: m for m in reversed(ranked)}.values())[::-1]
        jobs.append((FIGURES["agreement_curves"], agreement_curves_figure, (agreement, per_loss)))
    return jobs
