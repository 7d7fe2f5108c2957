"""Figures 6 to 8 of the paper: the advanced networks (Section 4).

* Figure 6: a convolutional maxout network on CIFAR-10: the line from θi to θf, and a zoom near
  α = 0 where the paper finds one shallow barrier.
* Figure 7: an MP-DBM on MNIST: the line over α in [0, 2] (a secondary local minimum in the paper),
  and the SGD iterates in two coordinates of θ that capture its extrema, with J on the vertical
  axis, shown beside the top-two PCA plane of the trajectory and the iterates' residuals off it.
* Figure 8: an LSTM language model on Penn Treebank: the line (no obstacle in the paper).

As for Figures 1 to 5, each ``figN(ctx)`` writes ``figN.png`` and ``figN.json`` and returns its
findings. J is each model's own objective: cross-entropy for the conv net, the multi-prediction
loss (with masks fixed per example, the same at every α) for the MP-DBM, and per-word
cross-entropy for the LSTM. The training split is evaluated on its first ``eval_examples`` rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import datasets
from ..plotting import plot_iterates_3d, plot_learning_curve, plot_plane_residuals
from ..sweep import Sweep
from ..trajectory import project
from ..views import coordinates, evaluate_checkpoints, extreme_coordinates, pca_plane
from .common import pyplot, run_facts, write_figure
from .findings import line_findings, line_grid, maxima_of, minima_of
from .runs import Context, Run

#: Figure 6: the global line and the zoom near θi.
FIG6_RANGE, FIG6_ZOOM = (-0.25, 1.25), (0.0, 0.2)
#: Figure 7: the paper's α range for the MP-DBM.
FIG7_RANGE = (0.0, 2.0)
#: Figure 8: the global line of the LSTM.
FIG8_RANGE = (-0.5, 1.5)


def _eval_data(ctx: Context, run: Run) -> datasets.Dataset:
    """The run's data with the training split cut to the validation split's size (for sweeps)."""
    data = ctx.data_for(run.spec)
    m = len(data.valid[1])
    return datasets.Dataset(datasets.head(data.train, m), data.valid, data.test)


def _line(ctx: Context, run: Run, interval: tuple[float, float], data: datasets.Dataset) -> Sweep:
    grid = line_grid(*interval, ctx.scale.net_points)
    return ctx.line(ctx.model_of(run), run.initial, run.final, grid, data=data)


def _line_pair(sweep: Sweep, axes: Any, title: str, names: tuple[str, str] = ("J", "error")) -> None:
    """The line's loss (top) and error (bottom), titled ``"<title>: <name>"``."""
    for ax, metric, name in zip(axes, ("loss", "error"), names, strict=True):
        sweep.plot(ax, metric=metric)
        ax.set_title(f"{title}: {name}", fontsize=9)


def fig6(ctx: Context) -> dict[str, Any]:
    """Conv maxout on CIFAR-10: the line (left) and a zoom near θi (right), loss and error."""
    run = ctx.run("conv_maxout")
    data = _eval_data(ctx, run)
    whole, zoom = _line(ctx, run, FIG6_RANGE, data), _line(ctx, run, FIG6_ZOOM, data)
    plt = pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(15, 8), layout="constrained")
    _line_pair(whole, axes[:, 0], "global scale")
    _line_pair(zoom, axes[:, 1], f"zoom: α in [{FIG6_ZOOM[0]:g}, {FIG6_ZOOM[1]:g}]")
    plot_learning_curve(run.history, axes[0, 2], "loss")
    plot_learning_curve(run.history, axes[1, 2], "error")
    fig.suptitle(f"Figure 6: {run.spec.describe()} on CIFAR-10 (JPEG-re-encoded images)", fontsize=10)
    findings = {
        "train_line": line_findings(whole, "train"),
        "valid_line": line_findings(whole, "valid"),
        "zoom_train_line": line_findings(zoom, "train"),
        "barriers_on_0_1": maxima_of(whole, "train", "loss", (0.0, 1.0)),
        "barriers_in_zoom": maxima_of(zoom, "train", "loss", FIG6_ZOOM),
        "test_error": run.test_error,
    }
    record = {
        "run": run_facts(run),
        "sweeps": {"global": whole.to_dict(), "zoom": zoom.to_dict()},
        "findings": findings,
    }
    return write_figure(ctx, "fig6", fig, record)


def _secondary_minimum(sweep: Sweep) -> dict[str, Any] | None:
    """The deepest local minimum of the train J other than the line's global minimum, if any."""
    low_alpha, _ = sweep.minimum("train", "loss")
    others = [
        m for m in minima_of(sweep, "train", "loss", None) if m["above_noise"] and m["alpha"] != low_alpha
    ]
    if not others:
        return None
    best = max(others, key=lambda m: m["prominence"])
    index = int(np.flatnonzero(sweep.alphas == best["alpha"])[0])
    return {**best, "error": float(sweep.values["train"]["error"][index])}


def _error_at_minimum(sweep: Sweep) -> float:
    """The train error where the train J is lowest on the line."""
    alpha, _ = sweep.minimum("train", "loss")
    return float(sweep.values["train"]["error"][np.flatnonzero(sweep.alphas == alpha)[0]])


def _closest_approach(run: Run, alpha: float) -> dict[str, float]:
    """How near the SGD iterates come to θ(α) = θi + α·(θf − θi), from their projection onto the line."""
    proj = project(run.trajectory, run.initial, run.final)
    norm = proj.direction_norm
    distances = np.sqrt(((proj.coordinate - alpha) * norm) ** 2 + proj.residual**2)
    nearest = int(np.argmin(distances))
    return {
        "distance": float(distances[nearest]),
        "distance_over_line_length": float(distances[nearest] / norm),
        "step": int(proj.steps[nearest]),
        "coordinate_there": float(proj.coordinate[nearest]),
        "residual_there": float(proj.residual[nearest]),
        "line_length": float(norm),
    }


def _extrema_view(ctx: Context, run: Run, sweep: Sweep, objective: np.ndarray, ax: Any) -> dict[str, Any]:
    index = extreme_coordinates(run.trajectory, 2)
    coords = coordinates(run.trajectory, index)
    start, end = run.initial.numpy()[index], run.final.numpy()[index]
    line_coords = start[None, :] + sweep.alphas[:, None] * (end - start)[None, :]
    plot_iterates_3d(
        coords,
        objective,
        ax,
        line=(line_coords, sweep.values["train"]["loss"]),
        labels=(f"θ[{index[0]}]", f"θ[{index[1]}]"),
    )
    ax.set_title("SGD iterates in the two coordinates of widest range", fontsize=9)
    return {"indices": index.tolist(), "names": _names_of(run, index)}


def _names_of(run: Run, index: np.ndarray) -> list[str]:
    """``"name[i, j]"`` of each flat index (which parameter tensor, which entry)."""
    names, shapes = run.trajectory.names, run.trajectory.shapes
    sizes = np.cumsum([0] + [int(np.prod(s)) for s in shapes])
    out = []
    for flat in index:
        k = int(np.searchsorted(sizes, flat, side="right") - 1)
        entry = np.unravel_index(int(flat - sizes[k]), shapes[k]) if shapes[k] else ()
        out.append(f"{names[k]}[{', '.join(str(int(e)) for e in entry)}]")
    return out


def fig7(ctx: Context) -> dict[str, Any]:
    """MP-DBM on MNIST: the line over [0, 2]; SGD's iterates in extreme coordinates and on the PCA plane."""
    run = ctx.run("mpdbm")
    data = _eval_data(ctx, run)
    sweep = _line(ctx, run, FIG7_RANGE, data)
    objective = evaluate_checkpoints(ctx.model_of(run), run.trajectory, data.train)["loss"]
    plane = pca_plane(run.trajectory)
    plt = pyplot()
    fig = plt.figure(figsize=(16, 8), layout="constrained")
    grid = fig.add_gridspec(2, 3)
    lines = [fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[1, 0])]
    _line_pair(sweep, lines, "the line θi → θf", ("multi-prediction J", "classification error"))
    extrema = _extrema_view(ctx, run, sweep, objective, fig.add_subplot(grid[:, 1], projection="3d"))
    pca_ax = fig.add_subplot(grid[0, 2], projection="3d")
    plot_iterates_3d(plane.coords, objective, pca_ax, labels=("PC 1", "PC 2"))
    pca_ax.set_title("the same iterates on the top-two PCA plane", fontsize=9)
    plot_plane_residuals(plane, fig.add_subplot(grid[1, 2]))
    fig.suptitle(f"Figure 7: {run.spec.describe()} on MNIST", fontsize=10)
    secondary = _secondary_minimum(sweep)
    findings = {
        "train_line": line_findings(sweep, "train"),
        "valid_line": line_findings(sweep, "valid"),
        "secondary_minimum": secondary,
        "train_error_at_minimum": _error_at_minimum(sweep),
        "sgd_closest_approach": None if secondary is None else _closest_approach(run, secondary["alpha"]),
        "barriers_on_0_2": maxima_of(sweep, "train", "loss", FIG7_RANGE),
        "extreme_coordinates": extrema,
        "pca_plane": {"explained": plane.explained, "max_residual": plane.max_residual},
        "checkpoint_objective": objective.tolist(),
        "test_error": run.test_error,
    }
    record = {"run": run_facts(run), "sweep": sweep.to_dict(), "plane": plane.to_dict(), "findings": findings}
    return write_figure(ctx, "fig7", fig, record)


def fig8(ctx: Context) -> dict[str, Any]:
    """LSTM language model on Penn Treebank: the line from θi to θf (per-word cross-entropy, error)."""
    run = ctx.run("lstm")
    data = _eval_data(ctx, run)
    sweep = _line(ctx, run, FIG8_RANGE, data)
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), layout="constrained")
    _line_pair(sweep, axes[:, 0], "the line θi → θf", ("per-word cross-entropy", "next-word error"))
    plot_learning_curve(run.history, axes[0, 1], "loss")
    plot_learning_curve(run.history, axes[1, 1], "error")
    fig.suptitle(f"Figure 8: {run.spec.describe()} on Penn Treebank", fontsize=10)
    valid = line_findings(sweep, "valid")
    findings = {
        "train_line": line_findings(sweep, "train"),
        "valid_line": valid,
        "barriers_on_0_1": maxima_of(sweep, "train", "loss", (0.0, 1.0)),
        "valid_perplexity_at_1": float(np.exp(valid["value_at_1"])),
        "test_perplexity": None if run.test_loss is None else float(np.exp(run.test_loss)),
        "test_error": run.test_error,
    }
    return write_figure(
        ctx, "fig8", fig, {"run": run_facts(run), "sweep": sweep.to_dict(), "findings": findings}
    )


FIGURES = {"fig6": fig6, "fig7": fig7, "fig8": fig8}
