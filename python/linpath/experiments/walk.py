"""How much of a training trajectory the line θi → θf captures, and what a random walk gives.

The paper (Section 3, Figure 5) says the line captures "about 2/3" of the variation of the
parameters without defining the quantity. Two candidate measures, for checkpoints θ_0 … θ_n, the
line's origin θi and direction u = (θf − θi)/‖θf − θi‖:

* ``explained`` (:attr:`linpath.Projection.explained`): the line's share of the squared
  displacement from θi, Σ_t ((θ_t − θi)·u)² / Σ_t ‖θ_t − θi‖²;
* ``variance_share`` (:func:`variance_share`): the share of the trajectory's variance about its
  own mean point θ̄ along u, Σ_t ((θ_t − θ̄)·u)² / Σ_t ‖θ_t − θ̄‖² (what PCA would report for u).

A structureless walk already scores well on both, so each comes with its random-walk baseline
(:func:`random_walk_baseline`): a Gaussian random walk with as many checkpoints (at the same
steps) in the same dimension P, its line drawn from its first to its last point. Both measures
depend on a walk only through the Gram matrix G[s, t] = ⟨x_s, x_t⟩ of its displacements
x_t = θ_t − θ_0 (:func:`gram_measures`). For increments N(0, (τ_t − τ_{t−1})·I_P) at times τ,
G / P → min(τ_s, τ_t) − τ_0 as P → ∞ (law of large numbers, coordinate by coordinate), so the
measures converge to those of that matrix (:func:`walk_gram_limit`); with n evenly spaced steps
they are exactly ``explained`` = Σ t² / (n Σ t) = (2n + 1)/(3n) → 2/3 and ``variance_share`` =
(n + 1)/(2n) → 1/2, within O(1/√P) of a single walk's value.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .._checks import integer
from .._validate import line_endpoints
from ..trajectory import Trajectory

#: A walk is simulated when checkpoints × dimension is at most this (else its large-P limit).
SIMULATE_BUDGET = 20_000_000
#: Coordinates of a simulated walk drawn at once (bounds its memory).
CHUNK = 65_536


def variance_share(trajectory: Trajectory, start: Any, end: Any) -> float:
    """Σ_t ((θ_t − θ̄)·u)² / Σ_t ‖θ_t − θ̄‖²: the share of the trajectory's variance about its mean
    point θ̄ that lies along the line's direction u = (end − start)/‖end − start‖.

    One pass over the checkpoints in float64 (Welford's update of the mean and of the scatter of
    θ_t − start; no [checkpoints, P] matrix). NaN when a checkpoint is NaN or infinite, or all
    checkpoints are one point (no variance to share).

    Args:
        trajectory: A :class:`linpath.Trajectory` with at least one checkpoint.
        start, end: The line's endpoints, in any form :func:`linpath.project` takes.

    Raises:
        ValueError: As :func:`linpath.project` (layouts, non-finite endpoints, start equal to end).
    """
    theta0, theta1 = line_endpoints(trajectory.names, trajectory.shapes, start, end, "cpu")
    direction = theta1 - theta0
    norm = float(torch.linalg.vector_norm(direction))
    if not norm > 0:
        raise ValueError("start and end are the same point: the line has no direction")
    unit = direction / norm
    mean, scatter, along = torch.zeros_like(theta0), 0.0, []
    for count, index in enumerate(range(len(trajectory)), start=1):
        x = trajectory[index].tensor.to(torch.float64) - theta0
        if not bool(torch.isfinite(x).all()):
            return math.nan
        along.append(float(x @ unit))
        step = x - mean
        mean += step / count
        scatter += float(step @ (x - mean))
    coords = np.asarray(along)
    spread = float(np.sum((coords - coords.mean()) ** 2))
    return spread / scatter if scatter > 0 else math.nan


def gram_measures(gram: np.ndarray) -> tuple[float, float]:
    """``(explained, variance_share)`` of a path given by the Gram matrix of its displacements from
    its first point, G[s, t] = ⟨x_s, x_t⟩, with the line from the first point to the last."""
    g = np.asarray(gram, dtype=np.float64)
    last = g[:, -1]
    length2 = last[-1]
    explained = float(np.sum(last**2) / length2 / np.trace(g))
    centred = np.sum((last - last.mean()) ** 2) / length2
    scatter = np.trace(g) - g.sum() / len(g)
    return explained, float(centred / scatter)


def walk_gram_limit(times: Any) -> np.ndarray:
    """min(τ_s, τ_t) − τ_0: the Gram matrix per dimension of a Gaussian walk at times τ as P → ∞."""
    tau = _times(times)
    tau = tau - tau[0]
    return np.minimum.outer(tau, tau)


def _times(times: Any) -> np.ndarray:
    tau = np.asarray(times, dtype=np.float64)
    if tau.ndim != 1 or len(tau) < 2 or not np.isfinite(tau).all() or not np.all(np.diff(tau) > 0):
        raise ValueError(f"times must be at least 2 finite, strictly increasing steps, got {times!r}")
    return tau


def simulated_walk_gram(times: Any, dim: int, seed: int = 0) -> np.ndarray:
    """The Gram matrix of displacements of one seeded Gaussian walk in ``dim`` dimensions observed at
    ``times``: increments N(0, (τ_t − τ_{t−1})·I), drawn by ``numpy.random.default_rng(seed)`` in
    chunks of :data:`CHUNK` coordinates (float64; memory ~ checkpoints × CHUNK)."""
    tau = _times(times)
    dim = integer("dim", dim, 1)
    rng = np.random.default_rng(integer("seed", seed, 0))
    scale = np.sqrt(np.diff(tau))[:, None]
    gram = np.zeros((len(tau), len(tau)))
    for first in range(0, dim, CHUNK):
        width = min(CHUNK, dim - first)
        walk = np.cumsum(rng.standard_normal((len(tau) - 1, width)) * scale, axis=0)
        gram[1:, 1:] += walk @ walk.T
    return gram


def random_walk_baseline(
    times: Any, dim: int, seed: int = 0, budget: int = SIMULATE_BUDGET
) -> dict[str, Any]:
    """Both measures for a Gaussian random walk with checkpoints at ``times`` in ``dim`` dimensions.

    Returns (JSON-ready): ``explained`` and ``variance_share`` of one seeded walk
    (:func:`simulated_walk_gram`) when ``len(times) × dim ≤ budget``, else of the P → ∞ limit
    (:func:`walk_gram_limit`; a single walk differs from it by O(1/√dim)); ``method``
    ("simulation" or "large-P limit"); the limit's values as ``explained_limit`` and
    ``variance_share_limit``; ``checkpoints``, ``dim`` and ``seed``.

    Raises:
        ValueError: If ``times`` has fewer than 2 points or is not strictly increasing, ``dim < 1``.
    """
    tau = _times(times)
    dim = integer("dim", dim, 1)
    limit = gram_measures(walk_gram_limit(tau))
    simulate = len(tau) * dim <= budget
    measured = gram_measures(simulated_walk_gram(tau, dim, seed)) if simulate else limit
    return {
        "explained": measured[0],
        "variance_share": measured[1],
        "method": "simulation" if simulate else "large-P limit",
        "explained_limit": limit[0],
        "variance_share_limit": limit[1],
        "checkpoints": len(tau),
        "dim": dim,
        "seed": seed,
    }
