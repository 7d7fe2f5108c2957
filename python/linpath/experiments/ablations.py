"""The ablations behind Figures 6 and 7 (issue 15): is the phenomenon the recipe's doing?

* ``fig6_init``: the paper suspects the conv maxout net's barrier near θi comes from the initial
  weights' scale. The recipe is trained with every weight uniform in ±irange for irange in
  {0.0005, 0.005, 0.05} and with PyTorch's default initialisation; each line is read near θi on the
  log-spaced zoom. A cheap pre-check on Figure 6's own run (seed 0) needs no training: the lines to θf
  from s·θi for s in {0, 0.1, 1}.
* ``fig7_init``: the MP-DBM's "very large, sparse" initial weights only stand out against the max-norm
  limits SGD then enforces: its sparse weights scaled by {0.25, 1, 4}, each with and without the
  max-norms, and the line over [0, 2] searched for a secondary minimum.

Every verdict is read against the line's paired-bootstrap floor (:mod:`linpath.experiments.noise`).
Neither is part of ``reproduce all``; name them: ``python -m linpath reproduce fig6_init --scale medium``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .advanced import FIG6_RANGE, FIG7_RANGE, NEAR_INIT, _bumps_above, _secondary_minimum
from .common import parameter_norms, pyplot, write_figure
from .findings import line_findings, line_grid
from .runs import Context, Run
from .seeded import NoisyLine, overlay, run_line

#: The pre-check's starting points: s·θi for these s (s = 1 is Figure 6's own line).
START_SCALES = (0.0, 0.1, 1.0)


def _grid(ctx: Context, interval: tuple[float, float], zoom: bool) -> np.ndarray:
    """About half of the scale's points on ``interval`` (n − 1 a multiple of 12), with the zoom if asked."""
    points = (ctx.scale.net_points - 1) // 24 * 12 + 1
    return line_grid(*interval, max(points, 13), zoom=zoom)


def _diverged(line: NoisyLine, label: str) -> dict[str, Any] | None:
    """For a line with NaN or infinite losses (a run that diverged), what to report instead of a
    verdict (no floor can be computed from it); None for a finite line."""
    if np.isfinite(line.block_losses).all():
        return None
    bad = ~np.isfinite(line.block_losses).all(axis=tuple(range(line.block_losses.ndim - 1)))
    nonfinite = line.sweep.alphas[bad].tolist()
    return {
        "label": label,
        "tau": None,
        "nonfinite_alphas": nonfinite,
        "train_line": line_findings(line.sweep),
    }


def _near_init(line: NoisyLine, label: str) -> dict[str, Any]:
    """What a line shows near θi: its bumps above the bootstrap floor on the zoom's range."""
    diverged = _diverged(line, label)
    if diverged is not None:
        return diverged | {"barriers_near_init": [], "barrier": None}
    boot = line.bootstrap()
    found = _bumps_above(line.sweep, boot, NEAR_INIT)
    bumps = [b for b in found if b["above_floor"]]
    return {
        "label": label,
        "tau": boot.floor(points=(line.sweep.alphas >= NEAR_INIT[0]) & (line.sweep.alphas <= NEAR_INIT[1])),
        "barriers_near_init": bumps,
        "barrier": max(bumps, key=lambda b: b["height"]) if bumps else None,
        "train_line": line_findings(line.sweep, "train"),
    }


def _init_run(ctx: Context, name: str, grid: np.ndarray) -> tuple[Any, dict[str, Any]]:
    run = ctx.run(name)
    line = run_line(ctx, run, grid)
    facts = _near_init(line, name.removeprefix("conv_"))
    facts |= {"test_error": run.test_error, "epochs": run.spec.epochs}
    return line.sweep, facts | parameter_norms(run)


def _pre_check(ctx: Context, run: Run, grid: np.ndarray) -> tuple[list[Any], list[dict[str, Any]]]:
    """The lines to θf from s·θi (s in :data:`START_SCALES`) of ``run``."""
    sweeps, found = [], []
    for s in START_SCALES:
        line = run_line(ctx, run, grid, start=run.initial.tensor * s)
        sweeps.append(line.sweep)
        found.append(_near_init(line, f"s={s:g}") | {"start_scale": s})
    return sweeps, found


def fig6_init(ctx: Context) -> dict[str, Any]:
    """Figure 6's initialisation-scale ablation and the s·θi pre-check (see the module)."""
    grid = _grid(ctx, FIG6_RANGE, zoom=True)
    sweeps, runs = zip(*(_init_run(ctx, name, grid) for name in ctx.scale.conv_ablation), strict=True)
    main = ctx.run("conv_maxout")
    starts, checks = _pre_check(ctx, main, _grid(ctx, (0.0, 1.0), zoom=True))
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8), layout="constrained")
    labels = [r["label"] for r in runs]
    overlay(list(sweeps), axes[0], "loss", "zoom near θi, by initialisation", True, labels)
    overlay(list(sweeps), axes[1], "loss", "global scale, by initialisation", False, labels)
    overlay(starts, axes[2], "loss", "Figure 6's run: the line from s·θi", True, [c["label"] for c in checks])
    fig.suptitle("Figure 6 ablation: the initial weights' scale and the barrier near θi", fontsize=10)
    findings = {"runs": list(runs), "pre_check": checks}
    record = {
        "sweeps": {r["label"]: s.to_dict() for s, r in zip(sweeps, runs, strict=True)},
        "pre_check_sweeps": {c["label"]: s.to_dict() for s, c in zip(starts, checks, strict=True)},
        "findings": findings,
    }
    return write_figure(ctx, "fig6_init", fig, record)


def _mpdbm_run(ctx: Context, name: str, grid: np.ndarray) -> tuple[Any, dict[str, Any]]:
    run = ctx.run(name)
    line = run_line(ctx, run, grid)
    label = name.removeprefix("mpdbm_")
    facts = _diverged(line, label)
    if facts is None:
        boot = line.bootstrap()
        facts = {"label": label, "tau": boot.tau, "train_line": line_findings(line.sweep, "train")}
        facts["secondary_minimum"] = _secondary_minimum(line.sweep, boot)
    facts.setdefault("secondary_minimum", None)
    facts |= {"test_error": run.test_error, "epochs": run.spec.epochs}
    return line.sweep, facts | parameter_norms(run)


def fig7_init(ctx: Context) -> dict[str, Any]:
    """Figure 7's ablation: the sparse weights' scale, with and without max-norm (see the module)."""
    grid = _grid(ctx, FIG7_RANGE, zoom=False)
    sweeps, runs = zip(*(_mpdbm_run(ctx, name, grid) for name in ctx.scale.mpdbm_ablation), strict=True)
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained", sharey=True)
    for ax, kind in zip(axes, ("maxnorm", "free"), strict=True):
        chosen = [(s, r) for s, r in zip(sweeps, runs, strict=True) if r["label"].endswith(kind)]
        title = "with the max-norms" if kind == "maxnorm" else "without max-norm"
        overlay([s for s, _ in chosen], ax, "loss", title, False, [r["label"] for _, r in chosen])
    fig.suptitle("Figure 7 ablation: the MP-DBM's sparse initial weights and its max-norms", fontsize=10)
    record = {
        "sweeps": {r["label"]: s.to_dict() for s, r in zip(sweeps, runs, strict=True)},
        "findings": {"runs": list(runs)},
    }
    return write_figure(ctx, "fig7_init", fig, record)


FIGURES = {"fig6_init": fig6_init, "fig7_init": fig7_init}
