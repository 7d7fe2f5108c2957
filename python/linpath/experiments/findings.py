"""Findings computed from the measured curves: the numbers behind each figure's claims."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._checks import integer, real
from ..sweep import Sweep
from ..trajectory import Projection

#: A local minimum shallower than this, relative to its value, is within float32 evaluation noise
#: (the native float32 sweep agrees with float64 to about 1e-7 relative; see bench/sweep.py).
NOISE_FLOOR = 1e-6


#: The zoom's defaults (issue 15): 0, then α log-spaced from 1e-4 to 0.3, about 11 points a decade.
ZOOM_LOW, ZOOM_HIGH, ZOOM_POINTS = 1e-4, 0.3, 40


def line_grid(low: float, high: float, points: int, *, zoom: bool = False) -> np.ndarray:
    """``points`` evenly spaced α in [low, high], with 0 and 1 exact whenever they fall on the grid.

    With ``zoom=True`` the points of :func:`zoom_grid` (its defaults) that lie in [low, high] are
    merged in (sorted, without duplicates), so that one sweep measures both the whole line and
    the region near α = 0 finely; read a verdict about that region from the zoom's points.
    """
    grid = np.linspace(low, high, points)
    for anchor in (0.0, 1.0):
        grid[np.isclose(grid, anchor, rtol=0.0, atol=1e-12)] = anchor
    if zoom:
        fine = zoom_grid()
        grid = np.union1d(grid, fine[(fine >= low) & (fine <= high)])
    return grid


def zoom_grid(low: float = ZOOM_LOW, high: float = ZOOM_HIGH, points: int = ZOOM_POINTS) -> np.ndarray:
    """α = 0 followed by ``points`` log-spaced α from ``low`` to ``high`` (both exact), float64.

    The zoom near θi (α = 0): a barrier a few percent of the way along the line falls between
    the points of an evenly spaced grid. Any sweep takes it as its α grid, e.g.
    ``linpath.interpolate(model, theta_i, theta_f, data, alphas=zoom_grid())``, or merged into
    an even grid with ``line_grid(..., zoom=True)``.

    Returns:
        A strictly increasing float64 array of ``points + 1`` values: ``[0, low, ..., high]``.

    Raises:
        TypeError: If an argument is not a number (``points``: not an integer).
        ValueError: If ``low <= 0``, ``high <= low``, either is not finite, or ``points < 2``.
    """
    low, high = real("low", low), real("high", high)
    points = integer("points", points, 2)
    if not (math.isfinite(low) and math.isfinite(high)) or low <= 0 or high <= low:
        raise ValueError(f"the zoom needs finite 0 < low < high, got low={low!r}, high={high!r}")
    logs = np.geomspace(low, high, points)
    logs[0], logs[-1] = low, high
    if not np.all(np.diff(logs) > 0):  # low and high so close that neighbours round to one float
        raise ValueError(f"{points} points between {low!r} and {high!r} are not distinct floats: use fewer")
    return np.concatenate(([0.0], logs))


def prominence(alphas: np.ndarray, values: np.ndarray, alpha: float) -> float:
    """How far the curve must rise from the local minimum at ``alpha`` before it can go lower.

    The smaller of the two rises: from the minimum to the highest point before the curve next
    drops below it (or reaches the grid's end), on the left and on the right.
    """
    order = np.argsort(alphas, kind="stable")
    a, v = alphas[order], values[order]
    i = int(np.flatnonzero(a == alpha)[0])
    rises = []
    for step in (-1, 1):
        j, peak = i + step, v[i]
        while 0 <= j < len(v) and v[j] >= v[i]:
            peak = max(peak, v[j])
            j += step
        rises.append(peak - v[i])
    return float(min(rises))


def minima_of(
    sweep: Sweep, split: str, metric: str, interval: tuple[float, float] | None, tau: float | None = None
) -> list[dict]:
    """The interior local minima with their prominence and whether it exceeds the noise: the
    bootstrap floor ``tau`` (:mod:`linpath.experiments.noise`) where given, else float32 noise
    (:data:`NOISE_FLOOR` relative to the value)."""
    values = sweep.values[split][metric]
    found = []
    for alpha, value in sweep.local_minima(split, metric, interval):
        depth = prominence(sweep.alphas, values, alpha)
        found.append(
            {
                "alpha": alpha,
                "value": value,
                "prominence": depth,
                "above_noise": _above_noise(depth, value, tau),
            }
        )
    return found


def _above_noise(depth: float, value: float, tau: float | None) -> bool:
    """``depth`` exceeds ``tau`` (a bootstrap floor), or without one float32 noise at ``value``."""
    return bool(depth > (NOISE_FLOOR * max(abs(value), 1e-12) if tau is None else tau))


def line_findings(sweep: Sweep, split: str = "train", metric: str = "loss") -> dict[str, Any]:
    """Shape of one curve: monotone on [0, 1]? local minima? its minimum? (JSON-ready).

    Where the curve is NaN or infinite (``nonfinite_alphas``), the numbers that need those values
    are NaN and ``monotone_on_0_1`` is None (unknown), never a plausible answer.
    """
    alpha_min, value_min = sweep.minimum(split, metric)
    minima = minima_of(sweep, split, metric, None)
    gap = sweep.monotonicity_gap(split, metric)
    findings: dict[str, Any] = {
        "split": split,
        "metric": metric,
        "nonfinite_alphas": sweep.nonfinite(split, metric).tolist(),
        "monotone_on_0_1": None if np.isnan(gap) else gap == 0.0,
        "max_rise_on_0_1": gap,
        "max_rise_relative": _relative_rise(sweep, split, metric, gap),
        "minimum": {"alpha": alpha_min, "value": value_min},
        "local_minima": minima,
        "local_minima_above_noise": sum(m["above_noise"] for m in minima),
    }
    for anchor in (0.0, 1.0):
        hit = np.flatnonzero(sweep.alphas == anchor)
        if hit.size:
            findings[f"value_at_{anchor:g}"] = float(sweep.values[split][metric][hit[0]])
    return findings


def _relative_rise(sweep: Sweep, split: str, metric: str, gap: float) -> float:
    """The largest rise on [0, 1] (``gap``) as a fraction of the curve's range there (0 when flat)."""
    inside = (sweep.alphas >= 0.0) & (sweep.alphas <= 1.0)
    values = sweep.values[split][metric][inside]
    if not np.isfinite(values).all() or np.isnan(gap):
        return float("nan")
    spread = float(values.max() - values.min()) if values.size else 0.0
    return gap / spread if spread > 0 else 0.0


def barrier_findings(sweep: Sweep, split: str = "train") -> dict[str, float]:
    """Barrier heights on [0, 1] (both forms, loss and error, where the sweep has them)."""
    out = {}
    for metric in ("loss", "error"):
        if metric in sweep.values[split]:
            for form in ("midpoint", "linear"):
                out[f"{metric}_{form}"] = sweep.barrier(split, metric, form)
    return out


def projection_findings(proj: Projection) -> dict[str, Any]:
    """Figure 5's numbers: how much of the trajectory the line captures, how far SGD strays."""
    return {
        "checkpoints": len(proj.steps),
        "explained": proj.explained,
        "path_length": proj.path_length,
        "path_length_over_distance": proj.path_length / proj.direction_norm,
        "max_residual": proj.max_residual,
        "max_residual_over_distance": proj.max_residual / proj.direction_norm,
        "distance": proj.direction_norm,
        "coordinate_range": [float(np.min(proj.coordinate)), float(np.max(proj.coordinate))],
    }


def maxima_of(
    sweep: Sweep, split: str, metric: str, interval: tuple[float, float] | None, tau: float | None = None
) -> list[dict]:
    """The interior local maxima (bumps) of a curve on ``interval``, each with its ``height``: the rise
    from the lowest point before it (from the interval's left end) up to it, the height a walk from
    the left must climb; ``prominence``: how far it stands above both sides; and ``above_noise``
    (prominence above ``tau`` where given, as :func:`minima_of`)."""
    values = sweep.values[split][metric]
    flipped = Sweep(sweep.alphas, {split: {metric: -values}}, {})
    alphas, ordered = sweep._sorted(split, metric, interval)
    found = []
    for alpha, negated in flipped.local_minima(split, metric, interval):
        value = -negated
        height = float(value - ordered[alphas <= alpha].min())
        depth = prominence(sweep.alphas, -values, alpha)
        found.append(
            {
                "alpha": alpha,
                "value": value,
                "height": height,
                "height_relative": height / max(abs(value), 1e-12),
                "prominence": depth,
                "above_noise": _above_noise(depth, value, tau),
            }
        )
    return found
