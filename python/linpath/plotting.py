"""Figures in the style of Goodfellow, Vinyals & Saxe (2015): the line (Fig. 1), the projection (Fig. 5);
and the objective on a plane (:func:`plot_surface`)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .surfaces import Surface
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


SURFACE_KINDS = ("contour", "filled", "3d", "heatmap")


def plot_surface(
    surface: Surface,
    kind: str = "contour",
    *,
    split: str | None = None,
    metric: str = "loss",
    trajectory: Any = None,
    ax: Any = None,
    levels: Any = 20,
    log: bool = False,
) -> Any:
    """Draws a :class:`linpath.Surface`: contours, filled contours, a heatmap or a 3-D surface.

    NaN and infinite cells are left out (masked) and marked with red crosses. A trajectory is
    drawn as its path projected on the plane, each checkpoint coloured by its distance off the
    plane, start (circle) and end (star) marked; the points of ``surface.meta["points"]``
    (``{"a": [x, y], ...}``, e.g. the solutions a plane was drawn through) are marked and named.

    Args:
        surface: The surface.
        kind: ``"contour"``, ``"filled"``, ``"heatmap"`` or ``"3d"``.
        split: The split (the first by default).
        metric: The metric, e.g. ``"loss"``.
        trajectory: A :class:`linpath.surfaces.TrajectoryOnSurface`, or a trajectory (or recorder)
            that is then projected with :meth:`Surface.project`.
        ax: The Axes to draw on (a 3-D one for ``"3d"``), or None for a new figure.
        levels: Number of contour levels, or their values (in log10 units when ``log``).
        log: Draw log10 of the metric (its finite values must be positive).

    Returns:
        The matplotlib Axes drawn on.
    """
    if kind not in SURFACE_KINDS:
        raise ValueError(f"unknown kind {kind!r}; use one of {SURFACE_KINDS}")
    _check_levels(levels)
    if len(surface.xs) < 2 or len(surface.ys) < 2:
        raise ValueError(
            f"a plot needs at least 2 grid points along x and y, got {len(surface.xs)}x{len(surface.ys)}"
        )
    z, label = _surface_field(surface, split, metric, log)
    ax = _axes3d(ax) if kind == "3d" else _axes(ax)
    field = _draw_field(ax, kind, surface.xs, surface.ys, z, levels)
    ax.figure.colorbar(field, ax=ax, label=label, **({"shrink": 0.6, "pad": 0.1} if kind == "3d" else {}))
    _mark_nonfinite_cells(ax, surface, z, kind == "3d")
    names = _axis_names(surface.meta)
    ax.set_xlabel(f"coordinate along {names[0]}")
    ax.set_ylabel(f"coordinate along {names[1]}")
    if kind == "3d":
        ax.set_zlabel(label)
    title = f"{metric} on split {split or surface.splits[0]!r}"
    if trajectory is not None:
        on_plane = _on_surface(surface, trajectory, split)
        _draw_path(ax, surface, on_plane, z if kind == "3d" else None)
        title += f"; the plane holds {on_plane.explained:.1%} of the squared displacement"
    _mark_points(ax, surface, z if kind == "3d" else None)
    ax.set_title(title, fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper right")
    return ax


def _surface_field(
    surface: Surface, split: str | None, metric: str, log: bool
) -> tuple[np.ma.MaskedArray, str]:
    """The grid of ``metric`` (log10 of it when ``log``), non-finite cells masked, and its label."""
    z = surface.grid(split, metric)
    label = _METRIC_LABEL.get(metric, metric)
    if log:
        finite = z[np.isfinite(z)]
        if (finite <= 0).any():
            raise ValueError(f"log=True needs positive values, but {metric} reaches {finite.min():g}")
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.log10(z)
        label = f"log10 {label}"
    if not np.isfinite(z).any():
        raise ValueError(f"{metric} on split {split or surface.splits[0]!r} has no finite value to draw")
    return np.ma.masked_invalid(z), label


def _check_levels(levels: Any) -> None:
    """ValueError unless ``levels`` is a positive number of levels or strictly increasing finite values."""
    if isinstance(levels, int | np.integer) and not isinstance(levels, bool):
        if levels < 1:
            raise ValueError(f"levels must be a positive number of contour levels, got {levels}")
        return
    try:
        values = np.asarray(levels, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"levels must be a number of levels or a sequence of values, got {levels!r}"
        ) from None
    if values.ndim != 1 or len(values) == 0 or not np.isfinite(values).all() or (np.diff(values) <= 0).any():
        raise ValueError(f"levels must be finite values in strictly increasing order, got {levels!r}")


def _draw_field(ax: Any, kind: str, xs: np.ndarray, ys: np.ndarray, z: np.ma.MaskedArray, levels: Any) -> Any:
    """The surface itself, as ``kind``; returns the mappable for the colourbar."""
    if kind == "contour":
        field = ax.contour(xs, ys, z, levels=levels, cmap="viridis", linewidths=1.0)
        ax.clabel(field, fontsize=7, fmt="%.3g")
        return field
    if kind == "filled":
        return ax.contourf(xs, ys, z, levels=levels, cmap="viridis")
    if kind == "heatmap":
        return _heatmap(ax, xs, ys, z)
    gx, gy = np.meshgrid(xs, ys)
    # plot_surface ignores masks: NaN cells are left out as gaps (and marked).
    filled = z.filled(np.nan)
    return ax.plot_surface(gx, gy, filled, cmap="viridis", linewidth=0, antialiased=True, alpha=0.85)


def _heatmap(ax: Any, xs: np.ndarray, ys: np.ndarray, z: np.ma.MaskedArray) -> Any:
    """Cells centred on the grid points: ``imshow`` with the grid's extent when the grid is evenly
    spaced, ``pcolormesh`` (which places uneven cells correctly) otherwise."""
    dx, dy = np.diff(xs), np.diff(ys)
    if np.allclose(dx, dx[0], rtol=1e-9, atol=0) and np.allclose(dy, dy[0], rtol=1e-9, atol=0):
        extent = (xs[0] - dx[0] / 2, xs[-1] + dx[0] / 2, ys[0] - dy[0] / 2, ys[-1] + dy[0] / 2)
        return ax.imshow(
            z, origin="lower", extent=extent, aspect="auto", cmap="viridis", interpolation="nearest"
        )
    return ax.pcolormesh(xs, ys, z, shading="nearest", cmap="viridis")


def _mark_nonfinite_cells(ax: Any, surface: Surface, z: np.ma.MaskedArray, three_d: bool) -> None:
    """Red crosses at the grid points whose value is NaN or infinite (left out of the drawing)."""
    rows, cols = np.nonzero(np.ma.getmaskarray(z))
    if rows.size == 0:
        return
    style = {"ls": "none", "marker": "x", "ms": 6, "mew": 1.5, "color": "tab:red"}
    label = f"NaN/inf at {rows.size} grid point{'s' if rows.size != 1 else ''}"
    if three_d:
        ax.plot(surface.xs[cols], surface.ys[rows], np.full(rows.size, z.min()), label=label, **style)
    else:
        ax.plot(surface.xs[cols], surface.ys[rows], label=label, **style)


def _axis_names(meta: Mapping[str, Any]) -> tuple[str, str]:
    """The axes' names from ``meta["axes"]`` (two strings), else ``d1`` and ``d2``."""
    names = meta.get("axes")
    if isinstance(names, (list, tuple)) and len(names) == 2 and all(isinstance(n, str) for n in names):
        return names[0], names[1]
    return "d1", "d2"


def _on_surface(surface: Surface, trajectory: Any, split: str | None) -> Any:
    """``trajectory`` on the surface's plane: as given, or projected now."""
    from .surfaces import TrajectoryOnSurface

    if isinstance(trajectory, TrajectoryOnSurface):
        return trajectory
    return surface.project(trajectory, split=split)


def _draw_path(ax: Any, surface: Surface, path: Any, z: np.ma.MaskedArray | None) -> None:
    """The projected trajectory: a line through the checkpoints, each coloured by its distance off
    the plane (with a colourbar), start and end marked. On a 3-D axes it runs on the surface."""
    from .surfaces import bilinear

    x, y = path.x, path.y
    xyz: tuple[Any, ...] = (x, y)
    if z is not None:
        xyz = (x, y, bilinear(surface.xs, surface.ys, z.filled(np.nan), x, y, outside=np.nan))
    ax.plot(*xyz, color="0.2", lw=1.0, zorder=4, label="trajectory (projected)")
    dots = ax.scatter(*xyz, c=path.residuals, cmap="autumn_r", s=18, edgecolors="k", linewidths=0.4, zorder=5)
    ax.figure.colorbar(
        dots, ax=ax, label="distance off the plane", **({"shrink": 0.6} if z is not None else {})
    )
    ends = [(0, "o", "start"), (len(x) - 1, "*", "end")]
    for t, marker, name in ends:
        point = [c[t : t + 1] for c in xyz]
        ax.plot(*point, ls="none", marker=marker, ms=11, mfc="none", mec="k", mew=1.5, zorder=6, label=name)


def _mark_points(ax: Any, surface: Surface, z: np.ma.MaskedArray | None) -> None:
    """The named points of ``surface.meta["points"]`` (``{"a": [x, y], ...}``), if any."""
    from .surfaces import bilinear

    points = surface.meta.get("points")
    if points is None:
        return
    if not isinstance(points, Mapping) or not all(
        isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(c, (int, float)) for c in p)
        for p in points.values()
    ):
        raise ValueError(f'meta["points"] must map names to [x, y] pairs of numbers, got {points!r}')
    for name, (px, py) in points.items():
        where: tuple[Any, ...] = (px, py)
        if z is not None:
            where = (
                px,
                py,
                float(bilinear(surface.xs, surface.ys, z.filled(np.nan), px, py, outside=np.nan)),
            )
        ax.plot(*([c] for c in where), ls="none", marker="D", ms=7, color="tab:red", mec="w", zorder=7)
        ax.text(*where, f" {name}", color="tab:red", fontsize=9, fontweight="bold", zorder=7)
