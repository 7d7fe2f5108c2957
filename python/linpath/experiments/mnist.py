"""Figures 1 to 5 of the paper: fully connected networks on MNIST (Section 3).

Each ``figN(ctx)`` trains (or reuses) the runs it needs, measures its curves, writes
``figN.png`` (laid out like the paper's figure) and ``figN.json`` (the numbers, the findings and
the settings) to ``ctx.out``, and returns the findings.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..plotting import plot_learning_curve
from ..sweep import Sweep
from ..trajectory import project
from .common import pyplot, run_facts, write_figure
from .findings import barrier_findings, line_findings, line_grid, minima_of, projection_findings
from .runs import Context, Run, new_model
from .walk import random_walk_baseline, variance_share

#: The α range of the global lines (Figures 1, 2 and 4), as in the paper's plots.
LINE_RANGE = (-0.5, 1.5)
#: Seed of Figure 4's random point (an initialisation that no training run started from).
RANDOM_POINT_SEED = 12345


def _global_line(ctx: Context, run: Run, start: Any = None, end: Any = None) -> Sweep:
    grid = line_grid(*LINE_RANGE, ctx.scale.line_points)
    start = run.initial if start is None else start
    return ctx.line(ctx.model_of(run), start, run.final if end is None else end, grid)


def fig1(ctx: Context) -> dict[str, Any]:
    """Maxout network with dropout: the line from θi to θf (train and validation) and the learning curve."""
    run = ctx.run("maxout")
    sweep = _global_line(ctx, run)
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), layout="constrained")
    for row, metric in enumerate(("loss", "error")):
        sweep.plot(axes[row, 0], metric=metric)
        plot_learning_curve(run.history, axes[row, 1], metric)
    fig.suptitle(f"Figure 1: {run.spec.describe()} on MNIST")
    findings = {
        "train_line": line_findings(sweep, "train"),
        "valid_line": line_findings(sweep, "valid"),
        "test_error": run.test_error,
        "test_mistakes": run.test_mistakes,
        "learning_curve_valid_error": run.history.get("valid_error"),
    }
    record = {"run": run_facts(run), "sweep": sweep.to_dict(), "findings": findings}
    return write_figure(ctx, "fig1", fig, record)


def fig2(ctx: Context) -> dict[str, Any]:
    """The same line for a sigmoid and a ReLU network (both with dropout)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    runs, sweeps, findings = {}, {}, {}
    for ax, name in zip(axes, ("sigmoid", "relu_dropout"), strict=True):
        run = ctx.run(name)
        sweep = _global_line(ctx, run)
        sweep.plot(ax)
        ax.set_title(run.spec.describe(), fontsize=9)
        runs[name], sweeps[name] = run_facts(run), sweep.to_dict()
        findings[name] = {
            "train_line": line_findings(sweep, "train"),
            "valid_line": line_findings(sweep, "valid"),
            "test_error": run.test_error,
        }
    fig.suptitle("Figure 2: the line for a sigmoid (left) and a ReLU (right) network on MNIST")
    return write_figure(ctx, "fig2", fig, {"runs": runs, "sweeps": sweeps, "findings": findings})


#: Figure 3's panels: the α interval of each (b re-plots a's points at α ≥ 0.5).
ZOOM_PANELS = {"a": (0.0, 1.0), "c": (0.0, 0.01), "d": (0.99, 1.0)}


def fig3(ctx: Context) -> dict[str, Any]:
    """ReLU network without dropout: 200 α on [0, 1], a zoom, 200 on [0, 0.01], 200 on [0.99, 1] (train)."""
    run = ctx.run("relu")
    model = ctx.model_of(run)
    sweeps = {
        key: ctx.line(model, run.initial, run.final, np.linspace(lo, hi, ctx.scale.zoom_points), ("train",))
        for key, (lo, hi) in ZOOM_PANELS.items()
    }
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), layout="constrained")
    for ax, key in zip(axes.flat, ("a", "b", "c", "d"), strict=True):
        sweep = sweeps["a" if key == "b" else key]
        alphas, loss = sweep.alphas, sweep.values["train"]["loss"]
        keep = alphas >= 0.5 if key == "b" else np.ones(alphas.shape, dtype=bool)
        ax.plot(alphas[keep], loss[keep], color="tab:blue", lw=1.4, marker=".", ms=2.5)
        span = "zoom of a) on α ≥ 0.5" if key == "b" else f"α in [{alphas.min():g}, {alphas.max():g}]"
        ax.set_title(f"{key}) {span}, {keep.sum()} points", fontsize=10)
        ax.set_xlabel(r"$\alpha$")
        ax.set_ylabel(r"$J(\theta)$ (train)")
        ax.grid(alpha=0.25)
    fig.suptitle(f"Figure 3: higher-resolution lines, {run.spec.describe()}")
    findings: dict[str, Any] = {
        key: {
            "interval": list(ZOOM_PANELS[key]),
            "points": len(sweep.alphas),
            "monotone": sweep.is_monotone("train", "loss", ZOOM_PANELS[key]),
            "max_rise": sweep.monotonicity_gap("train", "loss", ZOOM_PANELS[key]),
            "local_minima": minima_of(sweep, "train", "loss", None),
        }
        for key, sweep in sweeps.items()
    }
    findings["local_minima_above_noise"] = sum(
        m["above_noise"] for key in ZOOM_PANELS for m in findings[key]["local_minima"]
    )
    findings["test_error"] = run.test_error
    record = {
        "run": run_facts(run),
        "sweeps": {k: s.to_dict() for k, s in sweeps.items()},
        "findings": findings,
    }
    return write_figure(ctx, "fig3", fig, record)


def fig4(ctx: Context) -> dict[str, Any]:
    """Between two solutions from different seeds (a barrier), and from a random point to a solution."""
    first, second = ctx.run("relu"), ctx.run("relu_seed1")
    random_point = new_model(dataclasses.replace(first.spec, seed=RANDOM_POINT_SEED))
    between = _global_line(ctx, first, start=first.final, end=second.final)
    from_random = _global_line(ctx, first, start=random_point, end=first.final)
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    between.plot(axes[0])
    axes[0].set_title(r"$\theta_0$: solution (seed 0), $\theta_1$: solution (seed 1)", fontsize=10)
    from_random.plot(axes[1])
    axes[1].set_title(r"$\theta_0$: random point, $\theta_1$: solution (seed 0)", fontsize=10)
    fig.suptitle(f"Figure 4: searching for local minima, {first.spec.describe()}")
    findings = {
        "two_solutions": {
            "barrier_train": barrier_findings(between, "train"),
            "barrier_valid": barrier_findings(between, "valid"),
            "train_line": line_findings(between, "train"),
            "test_errors": [first.test_error, second.test_error],
        },
        "random_to_solution": {
            "barrier_train": barrier_findings(from_random, "train"),
            "train_line": line_findings(from_random, "train"),
        },
    }
    record = {
        "runs": {"seed0": run_facts(first), "seed1": run_facts(second)},
        "random_point_seed": RANDOM_POINT_SEED,
        "sweeps": {"two_solutions": between.to_dict(), "random_to_solution": from_random.to_dict()},
        "findings": findings,
    }
    return write_figure(ctx, "fig4", fig, record)


def fig5(ctx: Context) -> dict[str, Any]:
    """The maxout run's trajectory projected onto the line θi → θf: coordinate against residual norm.

    The findings give the paper's undefined "2/3" in two readings (``explained``: share of the
    squared displacement from θi; ``variance_share``: share of the variance about the mean point,
    :mod:`linpath.experiments.walk`) and both for a Gaussian random walk with checkpoints at the
    same steps in the same dimension (``random_walk``)."""
    run = ctx.run("maxout")
    proj = project(run.trajectory, run.initial, run.final)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5), layout="constrained")
    proj.plot(ax)
    fig.suptitle(f"Figure 5: how far SGD strays from the line ({run.spec.describe()})", fontsize=10)
    findings = {
        **projection_findings(proj),
        "variance_share": variance_share(run.trajectory, run.initial, run.final),
        "random_walk": random_walk_baseline(proj.steps, run.trajectory.numel),
        "test_error": run.test_error,
    }
    record = {"run": run_facts(run), "projection": proj.to_dict(), "findings": findings}
    return write_figure(ctx, "fig5", fig, record)


FIGURES = {"fig1": fig1, "fig2": fig2, "fig3": fig3, "fig4": fig4, "fig5": fig5}
