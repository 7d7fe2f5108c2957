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


def _mark_nonfinite(ax: Any, alphas: np.ndarray, values: np.ndarray, color: str, split: str) -> None:
    """Crosses along the bottom edge where a curve is NaN or infinite (a line plot would just leave
    a gap there, easy to miss), with a legend entry saying how many."""
    bad = ~np.isfinite(values)
    if not bad.any():
        return
    ax.plot(
        alphas[bad],
        np.full(int(bad.sum()), 0.02),
        ls="none",
        marker="x",
        ms=6,
        mew=1.5,
        color=color,
        transform=ax.get_xaxis_transform(),
        clip_on=False,
        label=f"{split}: NaN/inf at {int(bad.sum())} α",
    )


def plot_sweep(
    sweep: Sweep, ax: Any = None, metric: str = "loss", splits: Sequence[str] | None = None
) -> Any:
    """Metric against α for each split: train solid, validation dashed (the paper's Fig. 1, left)."""
    splits = sweep.splits if splits is None else list(splits)
    unknown = [s for s in splits if s not in sweep.values]
    if unknown:
        raise KeyError(f"no split {unknown[0]!r}; this sweep has {sweep.splits}")
    if not any(metric in sweep.values[s] for s in splits):
        have = sorted({m for s in splits for m in sweep.values[s]})
        raise KeyError(f"no split of {splits} has metric {metric!r}; they have {have}")
    ax = _axes(ax)
    for i, split in enumerate(splits):
        color, style = _SPLIT_STYLE.get(split, (f"C{i + 3}", "-."))
        values = sweep.values[split].get(metric)
        if values is None:
            continue
        ax.plot(sweep.alphas, values, color=color, ls=style, lw=1.6, label=split)
        _mark_nonfinite(ax, sweep.alphas, values, color, split)
    _mark_endpoints(ax, sweep.alphas)
    ax.set_xlabel(r"$\alpha$")
    ax.set_ylabel(_METRIC_LABEL.get(metric, metric))
    ax.set_title(r"$J$ along $\theta = (1-\alpha)\,\theta_0 + \alpha\,\theta_1$", fontsize=10)
    ax.legend(frameon=False)
    ax.grid(alpha=0.25)
    return ax


def plot_projection(projection: Projection, ax: Any = None) -> Any:
    """Residual norm against the coordinate along the line, coloured by step (the paper's Fig. 5).

    Checkpoints that are not finite (NaN or infinite values) have no place in the plane: a note in
    the axes says how many there are and at which steps, and the title says the share is undefined.
    """
    from .trajectory import non_finite_summary

    ax = _axes(ax)
    a, r = projection.coordinate, projection.residual
    bad = ~(np.isfinite(a) & np.isfinite(r))
    ax.plot(a, r, color="0.55", lw=1.0, zorder=1)
    points = ax.scatter(a, r, c=projection.steps, cmap="viridis", s=14, zorder=2)
    ax.figure.colorbar(points, ax=ax, label="step")
    ax.scatter([0.0, 1.0], [0.0, 0.0], marker="*", s=90, color="tab:red", zorder=3)
    for x, label in ((0.0, r"$\theta_0$"), (1.0, r"$\theta_1$")):
        ax.annotate(label, (x, 0.0), xytext=(4, 6), textcoords="offset points", color="tab:red")
    ax.set_xlabel(r"coordinate along the line $\theta_0 \to \theta_1$")
    ax.set_ylabel("norm of the residual off the line")
    if bad.any():
        ax.text(
            0.02,
            0.98,
            f"not drawn: {non_finite_summary(bad, projection.steps)} with NaN/inf values",
            transform=ax.transAxes,
            va="top",
            fontsize=8,
            color="tab:red",
            wrap=True,
        )
        ax.set_title("share along the line undefined: non-finite checkpoints", fontsize=10)
    else:
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


def _axes3d(ax: Any) -> Any:
    if ax is not None:
        if getattr(ax, "name", "") != "3d":
            raise ValueError("ax must be a 3-D axes (fig.add_subplot(projection='3d'))")
        return ax
    import matplotlib.pyplot as plt

    return plt.figure(figsize=(6, 4.8)).add_subplot(projection="3d")


def plot_iterates_3d(
    coords: np.ndarray,
    objective: np.ndarray,
    ax: Any = None,
    line: tuple[np.ndarray, np.ndarray] | None = None,
    labels: tuple[str, str] = (r"$\theta_i$", r"$\theta_j$"),
) -> Any:
    """SGD iterates in two coordinates with J on the vertical axis (the paper's Fig. 7, right).

    Args:
        coords: ``[checkpoints, 2]`` horizontal coordinates of the iterates.
        objective: ``[checkpoints]`` J at each iterate.
        ax: A 3-D axes, or None for a new figure.
        line: Optional ``(line_coords [points, 2], line_objective [points])``: the straight path in
            the same coordinates, drawn for comparison.
        labels: Names of the two horizontal axes.
    """
    ax = _axes3d(ax)
    coords, objective = np.asarray(coords), np.asarray(objective)
    if coords.ndim != 2 or coords.shape[1] != 2 or len(coords) != len(objective):
        raise ValueError(f"coords must be [n, 2] and objective [n]; got {coords.shape} and {objective.shape}")
    if line is not None:
        line_coords, line_objective = (np.asarray(a) for a in line)
        ax.plot(
            line_coords[:, 0], line_coords[:, 1], line_objective, color="0.45", lw=1.2, label="linear path"
        )
    ax.plot(coords[:, 0], coords[:, 1], objective, color="tab:blue", lw=0.8, alpha=0.6)
    points = ax.scatter(coords[:, 0], coords[:, 1], objective, c=np.arange(len(coords)), cmap="viridis", s=14)
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_zlabel(_METRIC_LABEL["loss"])
    ax.figure.colorbar(points, ax=ax, shrink=0.6, pad=0.12, label="checkpoint")
    if line is not None:
        ax.legend(loc="upper right", fontsize=8)
    return ax


def plot_plane_residuals(plane: Any, ax: Any = None) -> Any:
    """Distance of each iterate from a PCA plane (see :func:`linpath.views.pca_plane`) against its step."""
    ax = _axes(ax)
    ax.plot(plane.steps, plane.residuals, color="tab:red", lw=1.4, marker=".", ms=4)
    ax.set_xlabel("step")
    ax.set_ylabel("residual norm off the PCA plane")
    ax.set_title(f"the plane captures {plane.explained:.1%} of Σ‖θ_t − θ_ref‖²", fontsize=9)
    ax.grid(alpha=0.3)
    return ax
