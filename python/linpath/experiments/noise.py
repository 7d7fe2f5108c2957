"""Noise floors for the verdicts read off a line: a paired bootstrap over evaluation examples.

A curve J(α) measured on N evaluation examples is itself an estimate: another sample of examples
(or, for the MP-DBM, another draw of its evaluation masks) gives a slightly different curve, with
its own small rises and local minima. This module says how large such spurious features can be,
so that "monotone" and "a local minimum" are called against that noise instead of a fixed number.

The input is a matrix ``losses[i, k]``: the loss of evaluation unit ``i`` at grid point ``k`` (all
units on the same α grid). A unit is one example or one block of examples of equal size
(:func:`block_losses` gets block means from one sweep). :func:`paired_bootstrap` resamples the
units with replacement, the same units at every α (paired: the curve's shape is kept, only its
sample changes), which gives resampled curves J*_b; the observed curve is J = losses.mean(0).

The noise floor τ (:attr:`Bootstrap.tau`): each resample's deviation e_b = J*_b − J creates
apparent rises; the largest, r_b = max over k < k′ of [e_b(k′) − e_b(k)]⁺, is how much sampling
noise alone lifts the curve between some pair of points. τ is the ``level`` quantile (95%) of
r_b: with that confidence, noise creates no rise larger than τ anywhere on the curve at once
(simultaneous over all pairs, hence conservative for any one pair).

Claims: Δ (Lucas et al. 2021, :func:`delta`) ≤ τ is "monotone within noise"; a local minimum is
"above noise" when its prominence exceeds τ; and each feature carries the fraction of resamples in
which it persists (:meth:`Bootstrap.rise_persistence`, :meth:`Bootstrap.minimum_persistence`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._checks import integer, real
from ..sweep import Sweep, interpolate
from .findings import NOISE_FLOOR, prominence

#: Defaults: resamples, quantile of the spurious rise, units of :func:`block_losses`.
N_BOOT, LEVEL, BLOCKS = 1000, 0.95, 50
_SPLIT, _METRIC = "curve", "loss"


def block_losses(
    model: Any,
    start: Any,
    end: Any,
    alphas: Sequence[float] | np.ndarray,
    X: Any,
    Y: Any,
    blocks: int = BLOCKS,
    metric: str = "loss",
    **interpolate_kwargs: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """The mean loss of ``blocks`` contiguous equal-size blocks of (X, Y) along a line, in one sweep.

    The blocks go to :func:`linpath.interpolate` as named splits ``"block0"``, ``"block1"``, ...
    of one ``data`` mapping, so every block is measured at every α in one pass (natively for
    linpath's own models with the default loss). Each block holds ``len(X) // blocks`` rows; the
    last ``len(X) % blocks`` rows are dropped, so that the mean of the block means is exactly the
    mean over the rows used.

    The MP-DBM: its evaluation masks are a fixed function of (``eval_seed``, the row's index in its
    split), and each block is its own split, so row r of every block gets the mask of row r (the
    masks restart at row 0 in each block). The block means are then not those of one sweep over
    the rows together (masks differ), and the mask noise is shared by all blocks, not resampled
    over them: measure several ``eval_seed`` draws and pass ``losses`` of shape
    [draws, blocks, K] to :func:`paired_bootstrap`.

    Args:
        model, start, end: As for :func:`linpath.interpolate`.
        alphas: The α grid.
        X, Y: The evaluation examples (first dimension: rows).
        blocks: How many blocks (units of the bootstrap), at least 2.
        metric: The metric to return (``"loss"`` by default; ``"error"`` where the model has it).
        **interpolate_kwargs: Passed on to :func:`linpath.interpolate` (not ``alphas``).

    Returns:
        ``(alphas, losses)``: the sweep's grid and a float64 array of shape ``[blocks, len(alphas)]``.

    Raises:
        ValueError: If ``blocks < 2`` or X has fewer rows than ``blocks``, X and Y differ in rows.
    """
    data = block_splits(X, Y, blocks)
    sweep = interpolate(model, start, end, data, alphas=alphas, **interpolate_kwargs)
    losses = np.stack([np.asarray(sweep.values[name][metric], dtype=np.float64) for name in data])
    return sweep.alphas, losses


def block_splits(X: Any, Y: Any, blocks: int = BLOCKS, prefix: str = "block") -> dict[str, tuple[Any, Any]]:
    """``blocks`` contiguous equal-size blocks of (X, Y), named ``"<prefix>0"``, ``"<prefix>1"``, ...
    (``len(X) // blocks`` rows each; the last ``len(X) % blocks`` rows are dropped).

    Raises:
        ValueError: If ``blocks < 2``, X and Y differ in rows, or X has fewer rows than ``blocks``.
    """
    blocks = integer("blocks", blocks, 2)
    rows = len(X)
    if len(Y) != rows:
        raise ValueError(f"X has {rows} rows but Y has {len(Y)}; pass matching examples and targets")
    size = rows // blocks
    if size < 1:
        raise ValueError(f"{blocks} blocks need at least {blocks} rows, X has {rows}; use fewer blocks")
    cuts = [slice(b * size, (b + 1) * size) for b in range(blocks)]
    return {f"{prefix}{b}": (X[rows_b], Y[rows_b]) for b, rows_b in enumerate(cuts)}


def mask_draw_losses(
    model: Any,
    start: Any,
    end: Any,
    alphas: Sequence[float] | np.ndarray,
    X: Any,
    Y: Any,
    seeds: Sequence[int],
    blocks: int = BLOCKS,
    **interpolate_kwargs: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`block_losses` of an MP-DBM under several draws of its evaluation masks: one sweep per
    ``eval_seed`` in ``seeds`` (a copy of ``model``'s configuration with that seed; the line's
    parameters come from ``start`` and ``end``). Returns ``(alphas, losses)`` with ``losses`` of
    shape [draws, blocks, K], for :func:`paired_bootstrap`.

    Raises:
        TypeError: If ``model`` is not a :class:`linpath.models.MPDBM`.
        ValueError: If ``seeds`` is empty (and as :func:`block_losses`).
    """
    from ..models import MPDBM

    if not isinstance(model, MPDBM):
        raise TypeError(f"mask draws are the MP-DBM's; got a {type(model).__name__}")
    if len(seeds) < 1:
        raise ValueError("seeds must name at least one eval_seed")
    curves, grid = [], np.asarray(alphas)
    for seed in seeds:
        config: dict[str, Any] = {**model._config, "eval_seed": integer("seed", seed, 0)}
        draw = MPDBM(**config)
        grid, losses = block_losses(draw, start, end, alphas, X, Y, blocks, **interpolate_kwargs)
        curves.append(losses)
    return grid, np.stack(curves)


@dataclass(frozen=True)
class Bootstrap:
    """A paired bootstrap of a curve (see the module docstring); made by :func:`paired_bootstrap`.

    Attributes:
        curve: The observed curve J[k], the mean over all units (and draws).
        resampled: The resampled curves J*_b[k], shape [n_boot, K].
        units: Units (blocks or examples) per draw.
        draws: Mask draws (1 for a 2-D ``losses``).
        seed: The resampling seed.
        level: The quantile of the spurious rise that :attr:`tau` takes.
    """

    curve: np.ndarray
    resampled: np.ndarray
    units: int
    draws: int
    seed: int
    level: float
    tau: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tau", self.floor(self.level))

    @property
    def n_boot(self) -> int:
        """The number of resamples."""
        return int(self.resampled.shape[0])

    def spurious_rises(self, points: np.ndarray | None = None) -> np.ndarray:
        """r_b = max over k < k′ of [e_b(k′) − e_b(k)]⁺ for each resample, e_b = J*_b − J, over the
        grid points selected by the boolean mask ``points`` (in the grid's order; default all)."""
        errors = self.resampled - self.curve
        if points is not None:
            errors = errors[:, points]
        low = np.minimum.accumulate(errors[:, :-1], axis=1)
        return np.maximum((errors[:, 1:] - low).max(axis=1), 0.0)

    def floor(self, level: float | None = None, points: np.ndarray | None = None) -> float:
        """τ: the ``level`` quantile (default: :attr:`level`) of :meth:`spurious_rises` over the
        grid points selected by ``points`` (a boolean mask; default all), and never below float32
        evaluation noise, :data:`~linpath.experiments.findings.NOISE_FLOOR` times the largest |J|
        there: resampling cannot see rounding, and on a flat curve (a model that predicts the same
        for every example) the resampled curves all agree, so the quantile alone would call a
        rounding-sized wiggle real.

        Raises:
            ValueError: If ``points`` selects fewer than 2 grid points, or ``level`` is outside (0, 1).
        """
        if points is not None and int(np.count_nonzero(points)) < 2:
            raise ValueError("the noise floor needs at least 2 grid points; the selection holds fewer")
        level = self.level if level is None else _level(level)
        read = self.curve if points is None else self.curve[points]
        rounding = NOISE_FLOOR * float(np.max(np.abs(read)))
        return max(float(np.quantile(self.spurious_rises(points), level)), rounding)

    def rise_persistence(self, first: int, second: int) -> float:
        """The fraction of resamples in which the curve still rises from grid point ``first`` to
        ``second`` (J*_b[second] − J*_b[first] > 0)."""
        return float(np.mean(self.resampled[:, second] - self.resampled[:, first] > 0))

    def minimum_persistence(self, index: int) -> float:
        """The fraction of resamples in which grid point ``index`` stays strictly below both of its
        neighbours (a local minimum at the same point)."""
        r = self.resampled
        below = (r[:, index] < r[:, index - 1]) & (r[:, index] < r[:, index + 1])
        return float(np.mean(below))


def paired_bootstrap(losses: Any, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> Bootstrap:
    """Resamples the evaluation units of ``losses`` with replacement, the same units at every α.

    ``losses`` is ``[units, K]`` (unit i's loss at grid point k) or ``[draws, units, K]`` (one
    ``[units, K]`` matrix per draw of the MP-DBM's evaluation masks, the same units in each). Each
    resample draws ``draws`` mask draws with replacement and, independently, ``units`` units with
    replacement, and averages every selected (draw, unit) cell: J*_b[k] = mean over the selected
    draws d and units i of losses[d, i, k] (a two-way bootstrap of a crossed design, the right
    one when every unit is measured under every draw). The indices come from
    ``rng = numpy.random.default_rng(seed)``: first ``rng.integers(0, draws, (n_boot, draws))``
    (only for 3-D input), then ``rng.integers(0, units, (n_boot, units))``; same seed, same result.
    Sums are float64.

    Args:
        losses: Array-like of finite numbers, 2-D or 3-D as above, at least 2 units.
        n_boot: Resamples (at least 1).
        seed: Seed of the resampling (a non-negative integer).
        level: Quantile of the spurious rise for :attr:`Bootstrap.tau`, in (0, 1).

    Raises:
        TypeError: If ``n_boot``, ``seed`` or ``level`` is not a number of the right kind.
        ValueError: If ``losses`` is not 2-D or 3-D, has fewer than 2 units or 2 grid points,
            holds NaN or infinite values (the message names the draw, unit and grid point), or
            ``n_boot < 1``, ``seed < 0``, ``level`` outside (0, 1).
    """
    cube = _checked_losses(losses)
    n_boot, seed, level = integer("n_boot", n_boot, 1), integer("seed", seed, 0), _level(level)
    draws, units, _ = cube.shape
    rng = np.random.default_rng(seed)
    three = np.ndim(losses) == 3
    draw_counts = _counts(rng.integers(0, draws, (n_boot, draws)), draws) if three else None
    unit_counts = _counts(rng.integers(0, units, (n_boot, units)), units)
    resampled = np.zeros((n_boot, cube.shape[2]))
    for d in range(draws):
        weight = 1.0 if draw_counts is None else draw_counts[:, d : d + 1]
        resampled += weight * (unit_counts @ cube[d])
    resampled /= draws * units
    return Bootstrap(cube.mean(axis=(0, 1)), resampled, units, draws, seed, level)


def _counts(indices: np.ndarray, n: int) -> np.ndarray:
    """How often each of ``n`` values occurs in each row of ``indices``, as float64 [rows, n]."""
    counts = np.zeros((indices.shape[0], n))
    np.add.at(counts, (np.arange(indices.shape[0])[:, None], indices), 1.0)
    return counts


def _level(level: Any) -> float:
    level = real("level", level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level is a quantile and must lie in (0, 1), e.g. 0.95; got {level!r}")
    return level


def _checked_losses(losses: Any) -> np.ndarray:
    """``losses`` as a float64 [draws, units, K] array, checked (see :func:`paired_bootstrap`)."""
    array = np.asarray(losses, dtype=np.float64)
    if array.ndim not in (2, 3):
        raise ValueError(f"losses must be [units, K] or [draws, units, K], got shape {array.shape}")
    cube = array if array.ndim == 3 else array[None]
    if cube.shape[0] < 1 or cube.shape[1] < 2 or cube.shape[2] < 2:
        raise ValueError(
            "the bootstrap needs at least 2 units, 1 draw and 2 grid points, "
            f"got losses of shape {array.shape}"
        )
    bad = np.argwhere(~np.isfinite(cube))
    if bad.size:
        d, i, k = (int(x) for x in bad[0])
        where = f"unit {i}, grid point {k}" + (f", draw {d}" if array.ndim == 3 else "")
        raise ValueError(
            f"losses holds {len(bad)} NaN or infinite value(s), first at {where}; a curve with "
            "non-finite values has no noise floor (find out why that point diverged)"
        )
    return cube


def _checked_curve(alphas: Any, curve: Any) -> tuple[np.ndarray, np.ndarray]:
    """``alphas`` and ``curve`` as float64 1-D arrays of equal length, finite (NaN named by its α)."""
    a, j = np.asarray(alphas, dtype=np.float64), np.asarray(curve, dtype=np.float64)
    if a.ndim != 1 or j.shape != a.shape:
        raise ValueError(
            f"alphas and the curve must be 1-D of the same length, got shapes {a.shape} and {j.shape}"
        )
    if not np.isfinite(a).all():
        raise ValueError("alphas must be finite numbers")
    bad = np.flatnonzero(~np.isfinite(j))
    if bad.size:
        where = ", ".join(f"α={a[k]:.4g}" for k in bad[:4])
        raise ValueError(f"the curve is NaN or infinite at {where}: it has no shape to judge there")
    return a, j


def _sweep(alphas: np.ndarray, curve: np.ndarray) -> Sweep:
    return Sweep(alphas, {_SPLIT: {_METRIC: curve}}, {})


def delta(alphas: Any, curve: Any, interval: tuple[float, float] = (0.0, 1.0)) -> float:
    """Δ of Lucas et al. (2021): the largest rise max over α < α′ of [J(α′) − J(α)]⁺ on ``interval``
    (:meth:`linpath.Sweep.monotonicity_gap`, over every pair of grid points there).

    Raises:
        ValueError: If the shapes differ, a value is NaN or infinite (named by its α), or fewer
            than 2 grid points lie in ``interval``.
    """
    a, j = _checked_curve(alphas, curve)
    return _sweep(a, j).monotonicity_gap(_SPLIT, _METRIC, interval)


def monotone_within_noise(
    alphas: Any, curve: Any, tau: float, interval: tuple[float, float] = (0.0, 1.0)
) -> bool:
    """Whether the curve's Δ on ``interval`` is at most the noise floor ``tau``."""
    return delta(alphas, curve, interval) <= _tau(tau)


def local_minima_above_noise(
    alphas: Any, curve: Any, tau: float, interval: tuple[float, float] | None = None
) -> list[dict[str, float]]:
    """The interior local minima (on ``interval``; default the whole grid) whose prominence
    (:func:`linpath.experiments.findings.prominence`) exceeds ``tau``: ``[{"alpha", "value",
    "prominence"}, ...]``."""
    a, j = _checked_curve(alphas, curve)
    tau = _tau(tau)
    found = []
    for alpha, value in _sweep(a, j).local_minima(_SPLIT, _METRIC, interval):
        depth = prominence(a, j, alpha)
        if depth > tau:
            found.append({"alpha": alpha, "value": value, "prominence": depth})
    return found


def _tau(tau: Any) -> float:
    tau = real("tau", tau)
    if not (np.isfinite(tau) and tau >= 0):
        raise ValueError(f"tau is a noise floor and must be finite and >= 0, got {tau!r}")
    return tau


def noise_findings(
    alphas: Any, boot: Bootstrap, interval: tuple[float, float] = (0.0, 1.0), examples: int | None = None
) -> dict[str, Any]:
    """The shape of a bootstrapped curve (e.g. the train loss along a line) against its noise floor
    (JSON-ready): ``delta`` (Δ on ``interval``); ``tau``, the floor over the grid points in
    ``interval`` (:meth:`Bootstrap.floor`), which Δ is judged against: noise at points Δ never
    looks at (the extrapolation, where losses and their spread are large) must not raise it;
    ``monotone`` (Δ ≤ τ); the rise's ``rise_start``/``rise_peak`` α and its ``rise_persistence``
    (the fraction of resamples in which it still rises); ``tau_grid`` (:attr:`Bootstrap.tau`, the
    floor over the whole grid); ``minima_above_noise`` (local minima anywhere on the grid with
    prominence > ``tau_grid``, each with its ``persistence``); ``n_boot``, ``units``, ``draws``,
    ``examples`` (as given), ``level``; and ``text``, a one-line summary for a claim row.

    Raises:
        TypeError: If ``boot`` is not a :class:`Bootstrap`.
        ValueError: If ``alphas`` does not match the bootstrap's grid, or fewer than 2 of its
            points lie in ``interval``.
    """
    if not isinstance(boot, Bootstrap):
        raise TypeError(f"boot must be a Bootstrap from paired_bootstrap, got {type(boot).__name__}")
    a, j = _checked_curve(alphas, boot.curve)
    height, start, peak = _sweep(a, j).bump(_SPLIT, _METRIC, interval)
    tau = boot.floor(points=(a >= interval[0]) & (a <= interval[1]))
    minima = local_minima_above_noise(a, j, boot.tau)
    for m in minima:
        m["persistence"] = boot.minimum_persistence(_index(a, m["alpha"]))
    rises = height > 0
    found: dict[str, Any] = {
        "delta": height,
        "tau": tau,
        "monotone": bool(height <= tau),
        "rise_start": start if rises else None,
        "rise_peak": peak if rises else None,
        "rise_persistence": boot.rise_persistence(_index(a, start), _index(a, peak)) if rises else None,
        "tau_grid": boot.tau,
        "minima_above_noise": minima,
        "n_boot": boot.n_boot,
        "units": boot.units,
        "draws": boot.draws,
        "examples": examples,
        "level": boot.level,
    }
    found["text"] = claim_text(found)
    return found


def _index(alphas: np.ndarray, alpha: float) -> int:
    return int(np.flatnonzero(alphas == alpha)[0])


def claim_text(found: dict[str, Any]) -> str:
    """The summary of :func:`noise_findings` for a claim row, e.g. "Δ = 0.012 > τ = 0.003 (95%
    bootstrap floor, 1000 resamples over 2,000 examples in 50 blocks); rise persists in 99% of
    resamples; local minima above noise: 0"."""
    sign = "≤" if found["monotone"] else ">"
    units = f"{found['units']} units"
    if found.get("examples"):
        units = f"{found['examples']:,} examples in {found['units']} blocks"
    draws = f" × {found['draws']} mask draws" if found.get("draws", 1) > 1 else ""
    text = (
        f"Δ = {found['delta']:.3g} {sign} τ = {found['tau']:.3g} ({found['level']:.0%} bootstrap floor, "
        f"{found['n_boot']} resamples over {units}{draws})"
    )
    if found["rise_persistence"] is not None:
        text += f"; the rise persists in {found['rise_persistence']:.0%} of resamples"
    minima = found["minima_above_noise"]
    where = ", ".join(f"α={m['alpha']:.3g}" for m in minima[:4])
    return text + f"; local minima above noise: {len(minima)}" + (f" ({where})" if where else "")
