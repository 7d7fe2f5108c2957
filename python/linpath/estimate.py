"""How long a line sweep will take, predicted from a few short timed sweeps before running it.

A sweep's time grows linearly with its number of points P: t(P) = a + b·P, where ``a`` is the work
done once per sweep or once per batch whatever the number of points (staging the data, the native
engine's first layer, reading a DataLoader's batches when they are read once for every point) and
``b`` the work of one point. :func:`estimate` times :func:`linpath.interpolate` on two small
sub-grids of the requested α, fits ``a`` and ``b`` (:func:`fit_cost`) and predicts t(P)::

    guess = linpath.estimate(model, start, end, data, alphas=np.linspace(-1, 2, 301))
    print(guess)  # about 40.9 s for 301 α (0.13 s per α + 1.8 s fixed; from timed runs of 4 and 12 α)
    sweep = linpath.interpolate(model, start, end, data, alphas=np.linspace(-1, 2, 301), progress=guess)

Passed as ``progress=``, an estimate makes the sweep's progress bar show the predicted time and what
is left of it beside tqdm's measured rate.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

#: Points of the two timed sub-grids. Four or more points time the same code as a long sweep: the
#: module engine caches the input layers only for more than two points, and a bf16 sweep re-evaluates
#: four α in float32 (fewer on a shorter grid).
SMALL, LARGE = 4, 12

#: The smallest per-point cost :func:`fit_cost` returns (seconds).
MIN_PER_POINT = 1e-9


@dataclass(frozen=True)
class Estimate:
    """The predicted time of a line sweep (see :func:`estimate`).

    Attributes:
        seconds: The predicted time of the whole sweep, ``fixed + per_point * points``.
        points: The number of α of the sweep.
        per_point: ``b``, the seconds each α adds.
        fixed: ``a``, the seconds that do not grow with the number of α.
        timed: The ``(points, seconds)`` of the timed sub-sweeps the fit used.
        engine: The engine that ran them (``"native"`` or ``"module"``).
    """

    seconds: float
    points: int
    per_point: float
    fixed: float
    timed: tuple[tuple[int, float], ...]
    engine: str | None = None

    def predict(self, points: int) -> float:
        """The predicted seconds of the same sweep on ``points`` α: ``fixed + per_point * points``."""
        return self.fixed + self.per_point * points

    def __str__(self) -> str:
        head = f"about {_duration(self.seconds)} for {self.points} α"
        if len(self.timed) == 1:
            return f"{head} (the whole grid was timed)"
        sizes = " and ".join(str(p) for p, _ in self.timed)
        return (
            f"{head} ({_duration(self.per_point)} per α + {_duration(self.fixed)} fixed; "
            f"from timed runs of {sizes} α)"
        )


def estimate(
    model: nn.Module,
    start: Any,
    end: Any,
    data: Any,
    *,
    alphas: Sequence[float] | np.ndarray | None = None,
    **kwargs: Any,
) -> Estimate:
    """Predicts how long ``interpolate(model, start, end, data, alphas=alphas, **kwargs)`` will take.

    Runs :func:`linpath.interpolate` with the same arguments (no progress bar) first on one α to
    warm up, then on ``SMALL`` α (best of two) and on ``LARGE`` α taken evenly from the grid, and
    fits t(P) = a + b·P to those two timings (:func:`fit_cost`). A grid of at most ``LARGE`` α is
    timed whole instead, and that time is the estimate. The sweeps run in this process alone
    (``distributed=False``). The model comes back exactly as it was, as from ``interpolate``.

    Args:
        model: As for :func:`linpath.interpolate`.
        start: As for :func:`linpath.interpolate`.
        end: As for :func:`linpath.interpolate`.
        data: As for :func:`linpath.interpolate`.
        alphas: The α grid of the sweep to estimate, checked as ``interpolate`` checks it.
        **kwargs: ``interpolate``'s other keywords (``batch_size``, ``precision``, ``engine``,
            ``metrics``, ``loss``, ``step``, ...); ``progress`` is ignored.

    Returns:
        An :class:`Estimate`; ``str()`` of it reads like "about 12.3 s for 101 α (...)".

    Raises:
        ValueError: For ``checkpoint=`` or ``distributed=True``, and whatever ``interpolate``
            raises for these arguments (an empty or non-finite grid too).
    """
    from .sweep import _check_alphas, interpolate  # here: sweep imports Estimate from this module

    _refuse(kwargs)
    grid = _check_alphas(alphas)
    kwargs |= {"progress": False, "distributed": False}

    def timed(points: np.ndarray) -> tuple[float, dict[str, Any]]:
        t0 = time.perf_counter()
        sweep = interpolate(model, start, end, data, alphas=points, **kwargs)
        return time.perf_counter() - t0, sweep.meta

    meta = timed(sub_grid(grid, 1))[1]  # warm-up: first-call costs, and interpolate's warnings once
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if len(grid) <= LARGE:
            timings = [(len(grid), timed(grid)[0])]
        else:
            small = min(timed(sub_grid(grid, SMALL))[0] for _ in range(2))
            timings = [(SMALL, small), (LARGE, timed(sub_grid(grid, LARGE))[0])]
    fixed, per_point = fit_cost(timings)
    seconds = fixed + per_point * len(grid)
    return Estimate(seconds, len(grid), per_point, fixed, tuple(timings), meta.get("engine"))


def fit_cost(timed: Sequence[tuple[int, float]]) -> tuple[float, float]:
    """The cost model t(P) = a + b·P fitted to ``(points, seconds)`` timings: ``(a, b)``.

    The least-squares line through the timings, with two rules that keep it physical (a ≥ 0,
    b > 0): when its slope is below :data:`MIN_PER_POINT` (the larger runs were no slower, so the
    timing noise hides the per-point cost), b is :data:`MIN_PER_POINT` and a the mean time left
    over; when its intercept is negative, a is 0 and b the least-squares slope through the origin.
    A single timing, or timings all of one size, are read the second way (a = 0).

    Raises:
        ValueError: For no timings, a number of points below 1, or seconds that are negative or
            not finite.
    """
    points, seconds = np.array(timed, dtype=float).reshape(-1, 2).T
    if not len(timed) or not (points >= 1).all() or not (np.isfinite(seconds) & (seconds >= 0)).all():
        raise ValueError(f"timings must be (points >= 1, finite seconds >= 0) pairs, got {list(timed)!r}")
    if np.ptp(points) > 0:
        b, a = np.polyfit(points, seconds, 1)
        if b < MIN_PER_POINT:
            return max(float(np.mean(seconds - MIN_PER_POINT * points)), 0.0), MIN_PER_POINT
        if a >= 0:
            return float(a), float(b)
    return 0.0, max(float(points @ seconds / (points @ points)), MIN_PER_POINT)


def sub_grid(grid: np.ndarray, size: int) -> np.ndarray:
    """``size`` α taken evenly (by position, ends included) from ``grid``; all of it if it is shorter."""
    if size >= len(grid):
        return grid
    return grid[np.round(np.linspace(0, len(grid) - 1, size)).astype(int)]


def _refuse(kwargs: dict[str, Any]) -> None:
    """ValueError for the arguments an estimate cannot take: ``checkpoint=``, ``distributed=True``."""
    if kwargs.get("checkpoint") is not None:
        raise ValueError(
            "estimate does not take checkpoint=: it times short sweeps of its own, which must not be "
            "written to (or read from) a resumable result file; call it without checkpoint="
        )
    if kwargs.get("distributed") is True:
        raise ValueError(
            "estimate does not take distributed=True: it times short sweeps in this process alone "
            "(distributed=False); call it on one rank and plan the distributed run from that"
        )


def _duration(seconds: float) -> str:
    """``"12.3 s"``, ``"0.11 s"``, ``"4.2 ms"``, ``"1234 s"``: seconds for a message."""
    if seconds >= 100:
        return f"{seconds:.0f} s"
    return f"{seconds:.3g} s" if seconds >= 0.01 or seconds == 0 else f"{seconds * 1e3:.3g} ms"
