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
from . import noise
from .common import pyplot, run_facts, write_figure
from .findings import ZOOM_HIGH, line_findings, line_grid, maxima_of, minima_of
from .runs import Context, Run
from .seeded import NoisyLine, eval_data, overlay, run_line, seed_runs

#: Figure 6: the global line (with the log-spaced zoom near θi merged in: findings.zoom_grid).
FIG6_RANGE = (-0.25, 1.25)
#: Figure 7: the paper's α range for the MP-DBM.
FIG7_RANGE = (0.0, 2.0)
#: Figure 8: the global line of the LSTM.
FIG8_RANGE = (-0.5, 1.5)
#: Where Figure 6's barrier "near θi" is looked for: the zoom's range, α in (0, 0.3].
NEAR_INIT = (0.0, ZOOM_HIGH)


def _line(ctx: Context, run: Run, interval: tuple[float, float], data: datasets.Dataset) -> Sweep:
    grid = line_grid(*interval, ctx.scale.net_points)
    return ctx.line(ctx.model_of(run), run.initial, run.final, grid, data=data)


def _line_pair(sweep: Any, axes: Any, title: str, names: tuple[str, str] = ("J", "error")) -> None:
    """The line's loss (top) and error (bottom), titled ``"<title>: <name>"``."""
    for ax, metric, name in zip(axes, ("loss", "error"), names, strict=True):
        sweep.plot(ax, metric=metric)
        ax.set_title(f"{title}: {name}", fontsize=9)


def _bumps_above(sweep: Sweep, boot: noise.Bootstrap, interval: tuple[float, float]) -> list[dict[str, Any]]:
    """The train loss's bumps on ``interval``, each with the bootstrap floor ``tau`` over the grid
    points of ``interval``, ``above_floor`` (its height, the climb from the lowest point before it,
    exceeds ``tau``) and ``persistence`` (the fraction of resamples in which that climb remains)."""
    alphas, curve = sweep.alphas, sweep.values["train"]["loss"]
    inside = (alphas >= interval[0]) & (alphas <= interval[1])
    tau = boot.floor(points=inside)
    found = []
    for bump in maxima_of(sweep, "train", "loss", interval, tau):
        peak = int(np.flatnonzero(alphas == bump["alpha"])[0])
        before = np.flatnonzero(inside & (alphas <= bump["alpha"]))
        low = int(before[np.argmin(curve[before])])
        persists = boot.rise_persistence(low, peak)
        found.append(bump | {"tau": tau, "above_floor": bool(bump["height"] > tau), "persistence": persists})
    return found


def _noise(line: NoisyLine, boot: noise.Bootstrap, interval: tuple[float, float]) -> dict[str, Any]:
    return noise.noise_findings(line.sweep.alphas, boot, interval, examples=line.examples)


def _fig6_seed(ctx: Context, run: Run, grid: np.ndarray) -> tuple[Sweep, dict[str, Any]]:
    """One seed of Figure 6: its line (global and zoom in one grid) and what it shows above noise."""
    line = run_line(ctx, run, grid)
    sweep, boot = line.sweep, line.bootstrap()
    findings = {
        "seed": run.spec.seed,
        "train_line": line_findings(sweep, "train"),
        "valid_line": line_findings(sweep, "valid"),
        "noise": _noise(line, boot, (0.0, 1.0)),
        "barriers_on_0_1": _bumps_above(sweep, boot, (0.0, 1.0)),
        "barriers_near_init": _bumps_above(sweep, boot, NEAR_INIT),
        "test_error": run.test_error,
        "run": run_facts(run),
    }
    return sweep, findings


def fig6(ctx: Context) -> dict[str, Any]:
    """Conv maxout on CIFAR-10, every seed of the scale: the line (left), the log-spaced zoom near θi
    (middle) and seed 0's learning curve (right), loss and error."""
    runs = seed_runs(ctx, "conv_maxout")
    grid = line_grid(*FIG6_RANGE, ctx.scale.net_points, zoom=True)
    sweeps, per_seed = zip(*(_fig6_seed(ctx, run, grid) for run in runs), strict=True)
    plt = pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(15, 8), layout="constrained")
    for row, metric in enumerate(("loss", "error")):
        overlay(list(sweeps), axes[row, 0], metric, f"global scale: {metric}")
        overlay(list(sweeps), axes[row, 1], metric, f"zoom near θi (log α): {metric}", log_alpha=True)
        plot_learning_curve(runs[0].history, axes[row, 2], metric)
    fig.suptitle(f"Figure 6: {runs[0].spec.describe()} on CIFAR-10, {len(runs)} seed(s)", fontsize=10)
    first = per_seed[0]
    findings = {
        "train_line": first["train_line"],
        "valid_line": first["valid_line"],
        "barriers_on_0_1": first["barriers_on_0_1"],
        "barriers_near_init": first["barriers_near_init"],
        "seeds": list(per_seed),
        "test_error": runs[0].test_error,
    }
    record = {
        "run": run_facts(runs[0]),
        "sweeps": {f"seed{f['seed']}": s.to_dict() for s, f in zip(sweeps, per_seed, strict=True)},
        "findings": findings,
    }
    return write_figure(ctx, "fig6", fig, record)


def _secondary_minimum(sweep: Sweep, boot: noise.Bootstrap) -> dict[str, Any] | None:
    """The deepest local minimum of the train J other than the line's global minimum whose
    prominence exceeds the bootstrap floor over the whole grid, if any, with its ``persistence``
    (the fraction of resamples in which it stays a local minimum) and the train error there."""
    low_alpha, _ = sweep.minimum("train", "loss")
    minima = minima_of(sweep, "train", "loss", None, boot.tau)
    others = [m for m in minima if m["above_noise"] and m["alpha"] != low_alpha]
    if not others:
        return None
    best = max(others, key=lambda m: m["prominence"])
    index = int(np.flatnonzero(sweep.alphas == best["alpha"])[0])
    error = float(sweep.values["train"]["error"][index])
    return best | {"tau": boot.tau, "persistence": boot.minimum_persistence(index), "error": error}


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


def _fig7_seed(ctx: Context, run: Run, grid: np.ndarray) -> tuple[Sweep, dict[str, Any]]:
    """One seed of Figure 7: its line over [0, 2], a secondary minimum above noise and SGD's approach."""
    line = run_line(ctx, run, grid)
    sweep, boot = line.sweep, line.bootstrap()
    secondary = _secondary_minimum(sweep, boot)
    findings = {
        "seed": run.spec.seed,
        "train_line": line_findings(sweep, "train"),
        "valid_line": line_findings(sweep, "valid"),
        "noise": _noise(line, boot, FIG7_RANGE),
        "secondary_minimum": secondary,
        "train_error_at_minimum": _error_at_minimum(sweep),
        "sgd_closest_approach": None if secondary is None else _closest_approach(run, secondary["alpha"]),
        "barriers_on_0_2": _bumps_above(sweep, boot, FIG7_RANGE),
        "test_error": run.test_error,
        "run": run_facts(run),
    }
    return sweep, findings


def _fig7_views(ctx: Context, run: Run, sweep: Sweep, fig: Any, grid: Any) -> dict[str, Any]:
    """The paper's view of ``run`` (iterates in the two widest-ranging coordinates, J up) beside the
    top-two PCA plane and the iterates' residuals off it."""
    objective = evaluate_checkpoints(ctx.model_of(run), run.trajectory, eval_data(ctx, run).train)["loss"]
    plane = pca_plane(run.trajectory)
    extrema = _extrema_view(ctx, run, sweep, objective, fig.add_subplot(grid[:, 1], projection="3d"))
    pca_ax = fig.add_subplot(grid[0, 2], projection="3d")
    plot_iterates_3d(plane.coords, objective, pca_ax, labels=("PC 1", "PC 2"))
    pca_ax.set_title(f"seed {run.spec.seed}: the iterates on the top-two PCA plane", fontsize=9)
    plot_plane_residuals(plane, fig.add_subplot(grid[1, 2]))
    return {
        "seed": run.spec.seed,
        "extreme_coordinates": extrema,
        "pca_plane": {"explained": plane.explained, "max_residual": plane.max_residual},
        "checkpoint_objective": objective.tolist(),
        "plane": plane.to_dict(),
    }


def fig7(ctx: Context) -> dict[str, Any]:
    """MP-DBM on MNIST, every seed of the scale: the line over [0, 2]; SGD's iterates in extreme
    coordinates and on the PCA plane (of the first seed with a secondary minimum, else seed 0)."""
    runs = seed_runs(ctx, "mpdbm")
    grid = line_grid(*FIG7_RANGE, ctx.scale.net_points)
    sweeps, per_seed = zip(*(_fig7_seed(ctx, run, grid) for run in runs), strict=True)
    shown = next((i for i, f in enumerate(per_seed) if f["secondary_minimum"]), 0)
    plt = pyplot()
    fig = plt.figure(figsize=(16, 8), layout="constrained")
    grid_spec = fig.add_gridspec(2, 3)
    for row, (metric, name) in enumerate((("loss", "multi-prediction J"), ("error", "classification error"))):
        overlay(list(sweeps), fig.add_subplot(grid_spec[row, 0]), metric, f"the line θi → θf: {name}")
    views = _fig7_views(ctx, runs[shown], sweeps[shown], fig, grid_spec)
    fig.suptitle(f"Figure 7: {runs[0].spec.describe()} on MNIST, {len(runs)} seed(s)", fontsize=10)
    plane = views.pop("plane")
    first = per_seed[0]
    findings = {key: first[key] for key in ("train_line", "valid_line", "secondary_minimum")}
    findings |= {
        "train_error_at_minimum": first["train_error_at_minimum"],
        "sgd_closest_approach": first["sgd_closest_approach"],
        "barriers_on_0_2": first["barriers_on_0_2"],
        "seeds": list(per_seed),
        "views": views,
        "test_error": runs[0].test_error,
    }
    record = {
        "run": run_facts(runs[0]),
        "sweeps": {f"seed{f['seed']}": s.to_dict() for s, f in zip(sweeps, per_seed, strict=True)},
        "plane": plane,
        "findings": findings,
    }
    return write_figure(ctx, "fig7", fig, record)


def fig8(ctx: Context) -> dict[str, Any]:
    """LSTM language model on Penn Treebank: the line from θi to θf (per-word cross-entropy, error)."""
    run = ctx.run("lstm")
    data = eval_data(ctx, run)
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
