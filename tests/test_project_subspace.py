"""Tests of the projection of a trajectory onto an affine subspace (src/project.rs's
``project_subspace``, ``linpath.trajectory.project_onto``, ``SubspaceProjection``).

The reference is plain float64 NumPy least squares: with x_t = θ_t − θ0 and D the [n, k] matrix of
directions, c_t = lstsq(D, x_t) and r_t = ‖x_t − D c_t‖, from the values the trajectory stores.
"""

from __future__ import annotations

import json
import math
import secrets
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import linpath
from linpath.trajectory import SubspaceProjection, project_onto
from linpath.views import pca_plane

SHAPES = [(3, 5, 7), (11,), (), (2, 1, 13), (97, 91)]  # 8,970 values: more than one 8,192-element chunk
N = sum(math.prod(s) for s in SHAPES)


class Params(nn.Module):
    def __init__(self, dtype=torch.float64) -> None:
        super().__init__()
        for i, shape in enumerate(SHAPES):
            self.register_parameter(f"p{i}", nn.Parameter(torch.zeros(shape, dtype=dtype)))


def vector_to_model(model: nn.Module, vec: np.ndarray) -> None:
    offset = 0
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.from_numpy(vec[offset : offset + p.numel()]).view(p.shape))
            offset += p.numel()


def make_trajectory(rng, vectors, path=None, dtype=torch.float64):
    """(trajectory, the float64 values it stores)."""
    model = Params(dtype)
    recorder = linpath.TrajectoryRecorder(model, path, dtype=dtype)
    for v in vectors:
        vector_to_model(model, v)
        recorder.record()
    cast = (lambda v: v.astype(np.float32).astype(np.float64)) if dtype == torch.float32 else np.copy
    return recorder.trajectory, [cast(v) for v in vectors]


def reference(values, theta0, directions):
    d = np.asarray(directions, dtype=np.float64).T
    x = np.stack(values) - theta0
    coords = np.linalg.lstsq(d, x.T, rcond=None)[0].T
    return coords, np.linalg.norm(x - coords @ d.T, axis=1), np.linalg.norm(x, axis=1)


def random_case(rng, k, orthonormal):
    theta0 = rng.standard_normal(N)
    directions = rng.standard_normal((k, N)) * rng.uniform(0.01, 10, size=(k, 1))
    if orthonormal:
        directions = np.linalg.qr(directions.T)[0].T.copy()
    else:
        directions[1:] += 0.9 * directions[0]  # far from orthogonal
    coeffs = rng.uniform(-2, 2, size=(6, k))
    vectors = [theta0 + 0.5 * rng.standard_normal(N) for _ in range(4)]
    vectors += [theta0 + c @ directions for c in coeffs]  # on the subspace
    vectors += [theta0 + coeffs[0] @ directions + 1e-7 * rng.standard_normal(N)]  # a hair off it
    return theta0, directions, vectors


@pytest.mark.parametrize("on_disk", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("k", "orthonormal"), [(1, False), (2, True), (2, False), (5, False), (8, True)])
def test_matches_numpy_least_squares(tmp_path, on_disk, dtype, k, orthonormal):
    rng = np.random.default_rng(secrets.randbits(64))
    theta0, directions, vectors = random_case(rng, k, orthonormal)
    traj, values = make_trajectory(rng, vectors, tmp_path / "t.lpt" if on_disk else None, dtype)
    got = project_onto(traj, theta0, directions)
    coords, residuals, displacements = reference(values, theta0, directions)
    assert got.coords.shape == (len(vectors), k) and got.coords.dtype == np.float64
    scale = np.abs(coords).max()
    np.testing.assert_allclose(got.coords, coords, rtol=1e-9, atol=1e-12 * scale)
    np.testing.assert_allclose(got.displacements, displacements, rtol=1e-12)
    # On the subspace the residual is the data's own rounding noise (~1e-16 of ‖θ_t‖): the floor.
    floor = 1e-14 * np.linalg.norm(np.stack(values), axis=1)
    # There both residuals are rounding noise, and NumPy's least squares' grows with the condition
    # number of the directions (scaled from 0.01 to 10 and far from orthogonal: up to ~1e3).
    noise = floor * max(1.0, np.linalg.cond(np.asarray(directions).T))
    assert (np.abs(got.residuals - residuals) <= 1e-9 * residuals + noise).all(), (got.residuals, residuals)
    if dtype == torch.float64:
        assert (got.residuals[4:10] <= floor[4:10]).all(), got.residuals[4:10]
    np.testing.assert_array_equal(got.steps, np.arange(len(vectors)))
    along = displacements**2 - residuals**2
    assert got.explained == pytest.approx(along.sum() / (displacements**2).sum(), rel=1e-10)
    assert got.max_residual == got.residuals.max()


def test_one_direction_agrees_with_project():
    rng = np.random.default_rng(secrets.randbits(64))
    theta0, directions, vectors = random_case(rng, 1, False)
    traj, _ = make_trajectory(rng, vectors)
    line = linpath.project(traj, theta0, theta0 + directions[0])
    sub = project_onto(traj, theta0, directions)
    np.testing.assert_allclose(sub.coords[:, 0], line.coordinate, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(sub.residuals, line.residual, rtol=1e-9, atol=1e-13 * line.displacement.max())
    np.testing.assert_array_equal(sub.displacements, line.displacement)


@pytest.mark.parametrize("reference_point", ["final", "mean"])
def test_pca_plane_gives_pca_planes_own_numbers(tmp_path, reference_point):
    rng = np.random.default_rng(secrets.randbits(64))
    start = rng.standard_normal(N)
    steps = np.cumsum(rng.standard_normal((12, N)) * np.linspace(1, 0.1, 12)[:, None], axis=0)
    traj, _ = make_trajectory(rng, [start + s for s in steps], tmp_path / "pca.lpt")
    plane = pca_plane(traj, reference_point)
    got = project_onto(traj, plane.reference, plane.directions)
    np.testing.assert_allclose(got.coords, plane.coords, rtol=1e-9, atol=1e-9 * np.abs(plane.coords).max())
    np.testing.assert_allclose(got.residuals, plane.residuals, rtol=1e-9)
    assert got.explained == pytest.approx(plane.explained, rel=1e-9)
    # The same plane through non-orthonormal directions: same residuals, coords in the new basis.
    mix = np.array([[2.0, 0.5], [-1.0, 3.0]])
    skew = project_onto(traj, plane.reference, list(mix @ plane.directions))
    np.testing.assert_allclose(skew.residuals, plane.residuals, rtol=1e-9)
    np.testing.assert_allclose(
        skew.coords @ mix, plane.coords, rtol=1e-9, atol=1e-9 * np.abs(plane.coords).max()
    )


def test_origin_and_direction_forms_agree():
    rng = np.random.default_rng(secrets.randbits(64))
    theta0, directions, vectors = random_case(rng, 2, False)
    traj, _ = make_trajectory(rng, vectors)
    recorder_like = Params()
    vector_to_model(recorder_like, theta0)
    expected = project_onto(traj, theta0, directions)
    as_param_vector = linpath.params.ParamVector(torch.from_numpy(directions[0]), traj.names, traj.shapes)
    forms = [
        (recorder_like, directions),
        (recorder_like.state_dict(), torch.from_numpy(directions)),
        (torch.from_numpy(theta0), [as_param_vector, torch.from_numpy(directions[1])]),
        (theta0, (directions[0], directions[1])),
    ]
    for origin, dirs in forms:
        got = project_onto(traj, origin, dirs)
        np.testing.assert_array_equal(got.coords, expected.coords)
        np.testing.assert_array_equal(got.residuals, expected.residuals)
    # float32 directions are widened, not refused.
    got = project_onto(traj, theta0, directions.astype(np.float32))
    np.testing.assert_allclose(got.displacements, expected.displacements, rtol=0)


def test_to_dict_and_frozen():
    rng = np.random.default_rng(secrets.randbits(64))
    theta0, directions, vectors = random_case(rng, 2, True)
    traj, _ = make_trajectory(rng, vectors)
    got = project_onto(traj, theta0, directions)
    assert isinstance(got, SubspaceProjection)
    d = json.loads(json.dumps(got.to_dict()))
    assert d["coords"] == got.coords.tolist() and d["explained"] == got.explained
    assert set(d) == {"steps", "coords", "residuals", "displacements", "explained", "max_residual"}
    with pytest.raises(AttributeError):
        got.coords = None  # type: ignore[misc]


def test_non_finite_checkpoints_are_nan_with_a_warning():
    rng = np.random.default_rng(secrets.randbits(64))
    theta0, directions, vectors = random_case(rng, 2, False)
    vectors[2] = vectors[2].copy()
    vectors[2][7] = np.nan
    traj, _ = make_trajectory(rng, vectors)
    with pytest.warns(RuntimeWarning, match=r"1 checkpoint \(indices 2; steps 2\).*coords, residual"):
        got = project_onto(traj, theta0, directions)
    assert np.isnan(got.coords[2]).all() and np.isnan(got.residuals[2]) and np.isnan(got.displacements[2])
    assert np.isfinite(np.delete(got.residuals, 2)).all()
    assert math.isnan(got.explained) and math.isnan(got.max_residual)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        project_onto(make_trajectory(rng, vectors[:2])[0], theta0, directions)  # finite: no warning


@pytest.fixture
def small():
    rng = np.random.default_rng(secrets.randbits(64))
    theta0, directions, vectors = random_case(rng, 2, False)
    traj, _ = make_trajectory(rng, vectors)
    return traj, theta0, directions


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda d: [d[0], -3.0 * d[0]], ValueError, r"parallel \(linearly dependent\)"),
        (lambda d: [d[0], d[1], 2 * d[0] - d[1]], ValueError, r"parallel \(linearly dependent\)"),
        (lambda d: [d[0], np.zeros(N)], ValueError, r"directions\[1\] is zero"),
        (
            lambda d: [d[0], np.where(np.arange(N) == 5, np.nan, d[1])],
            ValueError,
            r"directions\[1\] contains NaN.*'p0'\[5\]",
        ),
        (lambda d: [d[0], np.full(N, np.inf)], ValueError, r"directions\[1\] contains NaN"),
        (lambda d: [d[0], d[1][:-1]], ValueError, r"directions\[1\] has shape \(8969,\)"),
        (lambda d: [], ValueError, "got 0 directions; a subspace needs 1 to 8"),
        (lambda d: np.empty((0, N)), ValueError, "got 0 directions"),
        (lambda d: np.tile(d[0], (9, 1)), ValueError, "got 9 directions; a subspace needs 1 to 8"),
        (lambda d: d[0], ValueError, r"a \[k, n\] array"),
        (lambda d: {"p0": d[0]}, TypeError, "sequence of vectors"),
        (lambda d: [d[0].astype(np.int64)], TypeError, "int64"),
    ],
)
def test_refusals(small, make, error, match):
    traj, theta0, directions = small
    with pytest.raises(error, match=match):
        project_onto(traj, theta0, make(directions))


def test_origin_refusals(small):
    traj, theta0, directions = small
    with pytest.raises(ValueError, match=r"origin contains NaN.*subspace through it is undefined"):
        project_onto(traj, np.where(np.arange(N) == 0, np.nan, theta0), directions)
    with pytest.raises(ValueError, match=r"origin has shape"):
        project_onto(traj, theta0[:-1], directions)
    wrong = {f"q{i}": torch.zeros(s) for i, s in enumerate(SHAPES)}
    with pytest.raises(ValueError, match="origin .*lacks"):
        project_onto(traj, wrong, directions)
    with pytest.raises(TypeError, match="expected a linpath.Trajectory"):
        project_onto(theta0, theta0, directions)
    empty = linpath.TrajectoryRecorder(Params()).trajectory
    with pytest.raises(ValueError, match="no checkpoints"):
        project_onto(empty, theta0, directions)
