"""Figure 5's measures (experiments/walk.py) against slow float64 NumPy references, and the
random-walk baseline's closed form against simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import linpath
from linpath.experiments import walk


def record(points: np.ndarray, steps=None) -> linpath.Trajectory:
    """An in-memory float64 trajectory of the rows of ``points`` (a model of two tensors)."""
    model = torch.nn.Linear(3, 2).double()
    recorder = linpath.TrajectoryRecorder(model)
    for t, row in enumerate(points):
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(torch.from_numpy(row), model.parameters())
        recorder.record(t if steps is None else int(steps[t]))
    return recorder.trajectory


def slow_measures(points: np.ndarray, start: np.ndarray, end: np.ndarray) -> tuple[float, float]:
    """(explained, variance share) by explicit loops over checkpoints and coordinates."""
    u = (end - start) / math.sqrt(sum(float(v) ** 2 for v in end - start))
    mean = [sum(float(p[j]) for p in points) / len(points) for j in range(points.shape[1])]
    on_line = sum(sum(float((p[j] - start[j]) * u[j]) for j in range(len(u))) ** 2 for p in points)
    squared = sum(sum(float(p[j] - start[j]) ** 2 for j in range(len(u))) for p in points)
    along = [sum(float((p[j] - mean[j]) * u[j]) for j in range(len(u))) for p in points]
    total = sum(sum(float(p[j] - mean[j]) ** 2 for j in range(len(u))) for p in points)
    return on_line / squared, sum(a * a for a in along) / total


def test_variance_share_matches_the_slow_reference():
    rng = np.random.default_rng()
    points = np.cumsum(rng.standard_normal((int(rng.integers(3, 12)), 8)), axis=0) + rng.standard_normal(8)
    traj = record(points)
    explained, share = slow_measures(points, points[0], points[-1])
    assert walk.variance_share(traj, traj[0], traj[-1]) == pytest.approx(share, rel=1e-10)
    assert linpath.project(traj, traj[0], traj[-1]).explained == pytest.approx(explained, rel=1e-10)
    start, end = rng.standard_normal(8), rng.standard_normal(8)  # any line, not only first → last
    _, other = slow_measures(points, start, end)
    assert walk.variance_share(traj, start, end) == pytest.approx(other, rel=1e-10)


def test_variance_share_is_nan_for_a_diverged_or_still_trajectory():
    points = np.random.default_rng().standard_normal((4, 8))
    points[2, 3] = np.nan
    assert math.isnan(walk.variance_share(record(points), points[0], points[1]))
    still = np.repeat(points[:1], 3, axis=0)
    assert math.isnan(walk.variance_share(record(still), points[0], points[1]))
    with pytest.raises(ValueError, match="same point"):
        walk.variance_share(record(points[:2]), points[0], points[0])


def test_gram_measures_match_the_slow_reference():
    rng = np.random.default_rng()
    points = np.cumsum(rng.standard_normal((9, 5)), axis=0)
    disp = points - points[0]
    expected = slow_measures(points, points[0], points[-1])
    np.testing.assert_allclose(walk.gram_measures(disp @ disp.T), expected, rtol=1e-10)


@pytest.mark.parametrize("n", [1, 2, 7, 50])
def test_the_limit_has_the_closed_form(n):
    """With n evenly spaced steps: explained (2n + 1)/(3n), variance share (n + 1)/(2n)."""
    explained, share = walk.gram_measures(walk.walk_gram_limit(np.arange(n + 1) * 5 + 3))
    assert explained == pytest.approx((2 * n + 1) / (3 * n), rel=1e-12)
    assert share == pytest.approx((n + 1) / (2 * n), rel=1e-12)


def test_the_limit_matches_simulated_walks():
    """Uneven steps too: the mean over seeded walks in 3,000 dimensions is within a few 1/√P of the
    limit, and one walk is the same for the same seed."""
    times = np.array([0, 1, 2, 4, 8, 9, 15, 16, 30])
    limit = walk.gram_measures(walk.walk_gram_limit(times))
    sims = np.array([walk.gram_measures(walk.simulated_walk_gram(times, 3000, seed)) for seed in range(8)])
    np.testing.assert_allclose(sims.mean(axis=0), limit, atol=0.02)
    assert np.all(np.abs(sims - limit).max(axis=0) < 0.06)
    assert np.array_equal(walk.simulated_walk_gram(times, 50, 4), walk.simulated_walk_gram(times, 50, 4))


def test_simulated_gram_is_an_explicit_walk():
    """The chunked Gram equals the Gram of the walk drawn explicitly by the documented protocol."""
    times = np.array([2.0, 3.0, 5.0, 6.0])
    rng = np.random.default_rng(11)
    walk_rows = np.cumsum(rng.standard_normal((3, 40)) * np.sqrt(np.diff(times))[:, None], axis=0)
    disp = np.vstack([np.zeros(40), walk_rows])
    np.testing.assert_allclose(walk.simulated_walk_gram(times, 40, 11), disp @ disp.T, rtol=1e-12)


def test_random_walk_baseline_chooses_simulation_or_limit():
    small = walk.random_walk_baseline(np.arange(6), 200, seed=3)
    assert small["method"] == "simulation" and small["checkpoints"] == 6
    assert (small["explained"], small["variance_share"]) == walk.gram_measures(
        walk.simulated_walk_gram(np.arange(6), 200, 3)
    )
    big = walk.random_walk_baseline(np.arange(6), 10**9)
    assert big["method"] == "large-P limit"
    assert big["explained"] == big["explained_limit"] == pytest.approx(11 / 15)
    assert big["variance_share"] == pytest.approx(6 / 10)
    for bad in ([0], [0, 0, 1], [0, np.nan]):
        with pytest.raises(ValueError, match="strictly increasing"):
            walk.random_walk_baseline(bad, 10)
    with pytest.raises(ValueError, match="dim must be at least 1"):
        walk.random_walk_baseline([0, 1], 0)
