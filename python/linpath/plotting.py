"""Figures in the style of Goodfellow, Vinyals & Saxe (2015): the line (Fig. 1), the projection (Fig. 5)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .sweep import Sweep
    from .trajectory import Projection

_SPLIT_STYLE = {
    "train": ("tab:blue", "-"),
    "valid": ("tab:orange", "--"),
    "validation": ("tab:orange", "--"),
    "test": ("tab:green", ":"),
}
_METRIC_LABEL = {"loss": r"$J(\theta)$", "error": "error rate"}


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=(5.5, 4))
    return ax


def _mark_endpoints(ax: Any, alphas: np.ndarray) -> None:
    for alpha, label in ((0.0, r"$\theta_0$"), (1.0, r"$\theta_1$")):
        if alphas.min() <= alpha <= alphas.max():
            ax.axvline(alpha, color="0.6", lw=0.8, ls=":", zorder=0)
            ax.annotate(
                label,
                (alpha, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(2, -12),
                textcoords="offset points",
                color="0.35",
                fontsize=9,
            )


def plot_sweep(
    sweep: Sweep, ax: Any = None, metric: str = "loss", splits: Sequence[str] | None = None
) -> Any:
    """Metric against α for each split: train solid, validation dashed (the paper's Fig. 1, left)."""
    ax = _axes(ax)
    splits = sweep.splits if splits is None else list(splits)
    for i, split in enumerate(splits):
        color, style = _SPLIT_STYLE.get(split, (f"C{i + 3}", "-."))
        values = sweep.values[split].get(metric)
        if values is None:
            continue
        ax.plot(sweep.alphas, values, color=color, ls=style, lw=1.6, label=split)
    _mark_endpoints(ax, sweep.alphas)
    ax.set_xlabel(r"$\alpha$")
    ax.set_ylabel(_METRIC_LABEL.get(metric, metric))
    ax.set_title(r"$J$ along $\theta = (1-\alpha)\,\theta_0 + \alpha\,\theta_1$", fontsize=10)
    ax.legend(frameon=False)
    ax.grid(alpha=0.25)
    return ax


def plot_projection(projection: Projection, ax: Any = None) -> Any:
    """Residual norm against the coordinate along the line, coloured by step (the paper's Fig. 5)."""
    ax = _axes(ax)
    a, r = projection.coordinate, projection.residual
    ax.plot(a, r, color="0.55", lw=1.0, zorder=1)
    points = ax.scatter(a, r, c=projection.steps, cmap="viridis", s=14, zorder=2)
    ax.figure.colorbar(points, ax=ax, label="step")
    ax.scatter([0.0, 1.0], [0.0, 0.0], marker="*", s=90, color="tab:red", zorder=3)
    for x, label in ((0.0, r"$\theta_0$"), (1.0, r"$\theta_1$")):
        ax.annotate(label, (x, 0.0), xytext=(4, 6), textcoords="offset points", color="tab:red")
    ax.set_xlabel(r"coordinate along the line $\theta_0 \to \theta_1$")
    ax.set_ylabel("norm of the residual off the line")
    ax.set_title(f"line captures {projection.explained:.0%} of the squared displacement", fontsize=10)
    ax.set_ylim(bottom=0.0)
    ax.grid(alpha=0.25)
    return ax


def plot_learning_curve(history: Mapping[str, Sequence[float]], ax: Any = None, metric: str = "loss") -> Any:
    """Per-epoch train and validation curves (the paper's Fig. 1, right).

    ``history`` maps ``"epoch"`` and ``"<split>_<metric>"`` keys (e.g. ``"train_loss"``) to lists.
    """
    ax = _axes(ax)
    epochs = history["epoch"]
    for split in ("train", "valid"):
        key = f"{split}_{metric}"
        if key in history:
            color, style = _SPLIT_STYLE[split]
            ax.plot(epochs, history[key], color=color, ls=style, marker="o", ms=3, label=split)
    ax.set_xlabel("epoch")
    ax.set_ylabel(_METRIC_LABEL.get(metric, metric))
    ax.set_title("learning curve", fontsize=10)
    ax.legend(frameon=False)
    ax.grid(alpha=0.25)
    return ax


def save_figure(fig: Any, path: str | os.PathLike[str], dpi: int = 120) -> None:
    """Writes ``fig`` as a PNG atomically (never a half-written file under ``path``) and closes it."""
    import matplotlib.pyplot as plt

    from ._io import atomic_write

    try:
        with atomic_write(path) as f:
            fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
