"""Tests of the projection of a trajectory onto a line (src/project.rs, linpath.project, Projection).

The reference is the obvious two-pass computation in float64 NumPy: with d = θ1 − θ0 and x_t = θ_t − θ0,
a_t = ⟨x_t, d⟩ / ‖d‖² and r_t = ‖x_t − a_t d‖, from the values the trajectory stores (float32 values
widened to float64).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import matplotlib
import matplotlib.axes
import numpy as np
import pytest
import torch
from torch import nn

import linpath
from linpath import _linpath

matplotlib.use("Agg")

PROBE = Path(__file__).with_name("rss_probe.py")
SEGMENT = 1 << 20  # elements per checkpoint segment in src/project.rs

SMALL_SHAPES = [(3, 5, 7), (11,), (), (2, 1, 13), (97, 91)]  # 8,970 values: > one 8,192-element chunk
LARGE_SHAPES = [(1301, 1693), (2021,), (3, 5, 7), (), (5,)]  # 2,204,725 values: three segments


class Params(nn.Module):
    """A module holding parameters of the given shapes (named p0, p1, ...)."""

    def __init__(self, shapes, dtype=torch.float64) -> None:
        super().__init__()
        for i, shape in enumerate(shapes):
            self.register_parameter(f"p{i}", nn.Parameter(torch.ones(shape, dtype=dtype)))


def numel(shapes) -> int:
    return sum(math.prod(s) for s in shapes)


def set_params(model: nn.Module, vec: np.ndarray) -> None:
    """Writes a flat float64 vector into the model (each tensor cast to its dtype), without linpath."""
    offset = 0
    with torch.no_grad():
        for p in model.parameters():
            n = p.numel()
            p.copy_(torch.from_numpy(vec[offset : offset + n]).view(p.shape))
            offset += n
    assert offset == vec.size


def stored(vec: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    """The float64 values a checkpoint of `dtype` holds for `vec` (float32 values widened)."""
    return vec.astype(np.float32).astype(np.float64) if dtype == torch.float32 else vec.copy()


def reference(checkpoints, theta0: np.ndarray, theta1: np.ndarray) -> dict[str, np.ndarray]:
    """The two-pass float64 reference for each checkpoint (float64 vectors)."""
    theta0, theta1 = theta0.astype(np.float64), theta1.astype(np.float64)
    d = theta1 - theta0
    dd = np.dot(d, d)
    out = {"coordinate": [], "residual": [], "displacement": []}
    for x in checkpoints:
        v = x - theta0
        a = np.dot(v, d) / dd
        out["coordinate"].append(a)
        out["residual"].append(np.linalg.norm(v - a * d))
        out["displacement"].append(np.linalg.norm(v))
    ref = {k: np.array(v) for k, v in out.items()}
    ref["direction_norm"] = np.sqrt(dd)
    return ref


def assert_matches(proj: linpath.Projection, ref: dict[str, np.ndarray]) -> None:
    """Relative 1e-9, plus rounding noise in absolute terms: 1e-13 of the displacement.

    The noise term matters only where the exact answer is (nearly) zero: a checkpoint on the line, whose
    residual is pure rounding noise, or a coordinate near 0. That noise is the rounding of the stored
    values plus that of float64 sums over up to millions of terms taken in different orders here and in
    the package (observed up to ~1.1e-14 of the displacement; see test_end_points_project_exactly).
    """
    disp, dnorm = ref["displacement"], ref["direction_norm"]
    assert proj.coordinate.dtype == np.float64 and proj.residual.dtype == np.float64
    assert proj.coordinate.shape == proj.residual.shape == proj.displacement.shape == disp.shape
    np.testing.assert_allclose(proj.direction_norm, dnorm, rtol=1e-12, atol=0)
    err_a = np.abs(proj.coordinate - ref["coordinate"])
    assert np.all(err_a <= 1e-9 * np.abs(ref["coordinate"]) + 1e-13 * disp / dnorm), (
        proj.coordinate,
        ref["coordinate"],
    )
    err_r = np.abs(proj.residual - ref["residual"])
    assert np.all(err_r <= 1e-9 * ref["residual"] + 1e-13 * disp), (proj.residual, ref["residual"])
    err_x = np.abs(proj.displacement - disp)
    assert np.all(err_x <= 1e-9 * disp), (proj.displacement, disp)


def assert_same_projection(p: linpath.Projection, q: linpath.Projection) -> None:
    """Bit-identical results (the projection is deterministic: sums are combined in a fixed order)."""
    for name in ("coordinate", "residual", "displacement", "steps"):
        np.testing.assert_array_equal(getattr(p, name), getattr(q, name), err_msg=name)
    assert p.direction_norm == q.direction_norm
    assert (p.path_length, p.max_residual, p.explained) == (q.path_length, q.max_residual, q.explained)


def orthogonal_noise(rng: np.random.Generator, d: np.ndarray, norm: float) -> np.ndarray:
    """A random vector orthogonal to d with the given norm."""
    u = rng.standard_normal(d.size)
    u -= np.dot(u, d) / np.dot(d, d) * d
    return u * (norm / np.linalg.norm(u))


def line_points(rng: np.random.Generator, theta0: np.ndarray, theta1: np.ndarray) -> list[np.ndarray]:
    """Checkpoints around the line θ0 → θ1: on it, a hair off it, either side of the residual
    formula's cancellation threshold (r²/‖x‖² = 1e-4), beyond both ends, and far away."""
    d = theta1 - theta0
    dn = np.linalg.norm(d)
    n = d.size
    return [
        theta0.copy(),
        theta0 + 0.25 * d + 0.3 * dn / np.sqrt(n) * rng.standard_normal(n),
        theta0 + 0.3 * d,  # exactly on the line (up to the rounding of the stored values)
        theta0 + 0.3 * d + 1e-9 * dn / np.sqrt(n) * rng.standard_normal(n),  # residual ~1e-9 ‖d‖
        theta0 + 0.5 * d + orthogonal_noise(rng, d, 0.0099 * 0.5 * dn),  # r²/‖x‖² just below 1e-4
        theta0 + 0.5 * d + orthogonal_noise(rng, d, 0.0101 * 0.5 * dn),  # r²/‖x‖² just above 1e-4
        theta0 - 0.4 * d + 0.2 * dn / np.sqrt(n) * rng.standard_normal(n),
        theta0 + 1.7 * d + 0.05 * dn / np.sqrt(n) * rng.standard_normal(n),
        3.0 * rng.standard_normal(n),
        theta1.copy(),
    ]


def record(model: nn.Module, vectors, path=None, dtype=None, steps=None) -> linpath.TrajectoryRecorder:
    recorder = linpath.TrajectoryRecorder(model, path, dtype=dtype)
    for i, vec in enumerate(vectors):
        set_params(model, vec)
        recorder.record(None if steps is None else steps[i])
    return recorder


def make_case(shapes, dtype, seed, path=None, steps=None):
    """(trajectory, float64 values it stores, θ0, θ1) for checkpoints around a random line."""
    rng = np.random.default_rng(seed)
    n = numel(shapes)
    theta0 = rng.standard_normal(n)
    theta1 = theta0 + 0.7 * rng.standard_normal(n)
    vectors = line_points(rng, theta0, theta1)
    model = Params(shapes, dtype)
    recorder = record(model, vectors, path, steps=steps)
    values = [stored(v, dtype) for v in vectors]
    return recorder.trajectory, values, values[0], values[-1]


# --- accuracy -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("on_disk", [False, True])
def test_matches_the_two_pass_reference(tmp_path, dtype, on_disk):
    steps = [0, 3, 7, 8, 20, 21, 50, 51, 90, 100]
    traj, values, theta0, theta1 = make_case(
        SMALL_SHAPES, dtype, 1, tmp_path / "t.lpt" if on_disk else None, steps
    )
    assert (traj.path is not None) == on_disk
    proj = linpath.project(traj, traj[0], traj[-1])
    ref = reference(values, theta0, theta1)
    assert_matches(proj, ref)
    np.testing.assert_array_equal(proj.steps, steps)
    assert proj.coordinate[0] == 0 and proj.residual[0] == 0 and proj.displacement[0] == 0
    # The hard cases are really hard: on the line, a hair off it, and either side of the threshold.
    rel = ref["residual"] / np.maximum(ref["displacement"], 1e-300)  # 0 / 0 at θ0
    if dtype == torch.float64:
        assert rel[2] < 1e-15 and 1e-11 < rel[3] < 1e-8
    else:  # float32 storage rounds both to about 1e-7 off the line
        assert rel[2] < 1e-6 and rel[3] < 1e-6
    assert rel[4] ** 2 < 1e-4 < rel[5] ** 2 < 1.1e-4


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("on_disk", [False, True])
def test_end_points_project_exactly(tmp_path, dtype, on_disk):
    """The line from trajectory[0] to trajectory[-1]: the last checkpoint is at coordinate 1, residual 0.

    The docstrings promise "0 at θ0, 1 at θ1". For these endpoints it is exactly attainable: the stored
    last checkpoint minus θ0 is d itself, bit for bit, so ⟨x, d⟩ and ‖d‖² are the same sum.
    """
    for seed, shapes in ((20, SMALL_SHAPES), (21, [(40_000,), (7,)])):
        path = tmp_path / f"{seed}.lpt" if on_disk else None
        traj, values, theta0, theta1 = make_case(shapes, dtype, seed, path)
        proj = linpath.project(traj, traj[0], traj[-1])
        ref = reference(values, theta0, theta1)
        assert ref["coordinate"][-1] == 1.0 and ref["residual"][-1] == 0.0  # NumPy manages it
        assert (proj.coordinate[0], proj.residual[0]) == (0.0, 0.0)
        assert (proj.coordinate[-1], proj.residual[-1]) == (1.0, 0.0), (
            proj.coordinate[-1],
            proj.residual[-1],
        )


@pytest.mark.parametrize("on_disk", [False, True])
def test_line_through_no_checkpoint(tmp_path, on_disk):
    """Endpoints that are not checkpoints: random θ0, θ1 given as float64 arrays."""
    rng = np.random.default_rng(2)
    n = numel(SMALL_SHAPES)
    vectors = [rng.standard_normal(n) * (1 + 0.1 * i) for i in range(6)]
    traj = record(Params(SMALL_SHAPES), vectors, tmp_path / "t.lpt" if on_disk else None).trajectory
    theta0, theta1 = rng.standard_normal(n), rng.standard_normal(n)
    proj = linpath.project(traj, theta0, theta1)
    assert_matches(proj, reference(vectors, theta0, theta1))


def test_endpoint_forms_agree(tmp_path):
    """ParamVector, nn.Module, state_dict, 1-D tensors (also strided) and NumPy arrays give one result."""
    traj, values, theta0, theta1 = make_case(SMALL_SHAPES, torch.float32, 3, tmp_path / "t.lpt")
    ref = reference(values, theta0, theta1)
    start_model, end_model = Params(SMALL_SHAPES, torch.float32), Params(SMALL_SHAPES, torch.float32)
    set_params(start_model, theta0)
    set_params(end_model, theta1)
    strided0 = torch.from_numpy(np.stack([theta0, -theta0], axis=1))[:, 0]
    assert not strided0.is_contiguous()
    forms = [
        (traj[0], traj[-1]),
        (start_model, end_model),
        (start_model.state_dict(), end_model.state_dict()),
        (traj[0].tensor, traj[-1].tensor),
        (torch.from_numpy(theta0), torch.from_numpy(theta1)),
        (strided0, torch.from_numpy(theta1)),
        (theta0, theta1),
        (theta0.astype(np.float32), theta1.astype(np.float32)),
        (traj[0], theta1),
    ]
    first = linpath.project(traj, *forms[0])
    assert_matches(first, ref)
    for start, end in forms[1:]:
        assert_same_projection(linpath.project(traj, start, end), first)


def test_recorder_is_accepted_in_place_of_its_trajectory():
    traj, values, theta0, theta1 = make_case(SMALL_SHAPES, torch.float64, 4)
    recorder = record(Params(SMALL_SHAPES), values)
    assert_same_projection(linpath.project(recorder, theta0, theta1), linpath.project(traj, theta0, theta1))
    assert_matches(linpath.project(recorder, theta0, theta1), reference(values, theta0, theta1))


@pytest.mark.parametrize(
    ("dtype", "count", "on_disk"), [(torch.float64, 9, True), (torch.float32, 17, False)]
)
def test_large_checkpoints_span_several_segments_and_groups(tmp_path, dtype, count, on_disk):
    """> 2M values per checkpoint (three 1,048,576-element segments, the last partial), and more
    checkpoints than one read group holds (8 of float64 or 16 of float32 at 64 MiB per group)."""
    n = numel(LARGE_SHAPES)
    assert n > 2 * SEGMENT and n % SEGMENT and n % 8192 and n % 4
    rng = np.random.default_rng(5)
    theta0 = rng.standard_normal(n).astype(np.float32).astype(np.float64)
    theta1 = theta0 + rng.standard_normal(n).astype(np.float32)
    d = theta1 - theta0
    noise = rng.standard_normal(n)
    vectors = [theta0]
    for t in range(1, count - 1):
        # A cheap distinct perturbation for each checkpoint: the noise rolled by a different amount.
        vectors.append(theta0 + (t / count) * d + (0.05 * t) * np.roll(noise, 7919 * t))
    vectors[3] = theta0 + 0.3 * d  # on the line
    vectors[4] = theta0 + 0.6 * d + 1e-10 * noise  # a hair off it
    vectors.append(theta1)
    model = Params(LARGE_SHAPES, dtype)
    traj = record(model, vectors, tmp_path / "big.lpt" if on_disk else None).trajectory
    assert traj.numel == n
    values = [stored(v, dtype) for v in vectors]
    proj = linpath.project(traj, traj[0], traj[-1])
    ref = reference(values, values[0], values[-1])
    assert_matches(proj, ref)
    assert ref["residual"][3] < 1e-6 * ref["displacement"][3]
    assert ref["residual"][4] < 1e-6 * ref["displacement"][4]
    np.testing.assert_array_equal(proj.steps, np.arange(count))
    if on_disk:
        traj.path.unlink()  # pytest keeps recent tmp_path folders; this file is large


def test_a_damaged_value_in_a_later_segment_stops_the_file_reader(tmp_path):
    """The file is read one segment ahead by a second thread; a checkpoint whose CRC fails in its third
    segment (after earlier segments were summed) is still an error that names the file."""
    n, count = numel(LARGE_SHAPES), 3
    rng = np.random.default_rng(8)
    vectors = [rng.standard_normal(n) for _ in range(count)]
    path = tmp_path / "damaged.lpt"
    traj = record(Params(LARGE_SHAPES, torch.float32), vectors, path).trajectory
    del traj
    record_bytes = 16 + 4 * n  # step, values, CRC32 and 4 zero bytes (format version 2)
    header = path.stat().st_size - count * record_bytes
    at = header + 1 * record_bytes + 8 + 4 * (2 * SEGMENT + 17)  # checkpoint 1, third segment
    with open(path, "r+b") as f:
        f.seek(at)
        value = f.read(4)
        f.seek(at)
        f.write(bytes([value[0] ^ 0x10]) + value[1:])
    traj = linpath.Trajectory.open(path)
    with pytest.raises(ValueError, match="checksum|damaged|CRC"):
        linpath.project(traj, vectors[0], vectors[-1])
    path.unlink()


def test_more_checkpoints_than_a_read_group(tmp_path):
    """Small checkpoints are read 4,096 at a time; 4,500 of them need two groups."""
    shapes = [(3, 4), (5,), ()]
    n = numel(shapes)
    rng = np.random.default_rng(6)
    theta0, theta1 = rng.standard_normal(n), rng.standard_normal(n)
    walk = np.cumsum(rng.standard_normal((4500, n)) * 0.05, axis=0) + theta0
    walk[0], walk[-1], walk[2222] = theta0, theta1, theta0 + 0.4 * (theta1 - theta0)
    traj = record(Params(shapes, torch.float32), walk, tmp_path / "many.lpt").trajectory
    values = walk.astype(np.float32).astype(np.float64)
    proj = linpath.project(traj, traj[0], traj[-1])
    assert_matches(proj, reference(values, values[0], values[-1]))


def test_result_does_not_depend_on_the_thread_count(tmp_path):
    """A probe process limited to one worker thread gives bit-identical numbers."""
    path = tmp_path / "threads.lpt"
    traj, values, theta0, theta1 = make_case([(300_007,), (3, 7)], torch.float64, 7, path)
    proj = linpath.project(traj, traj[0], traj[-1])
    assert_matches(proj, reference(values, theta0, theta1))
    env = dict(os.environ, RAYON_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, str(PROBE), str(path)], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    probe = json.loads(out.stdout)
    assert probe["threads"] == "1"
    for key in ("coordinate", "residual", "displacement", "steps"):
        np.testing.assert_array_equal(np.array(probe[key]), getattr(proj, key), err_msg=key)
    assert (probe["path_length"], probe["max_residual"], probe["explained"]) == (
        proj.path_length,
        proj.max_residual,
        proj.explained,
    )


# --- summary numbers, plot, dict ----------------------------------------------------------------------


def test_summary_numbers_follow_their_formulas(tmp_path):
    steps = [0, 10, 20, 30, 45, 60, 61, 62, 80, 99]
    traj, values, theta0, theta1 = make_case(SMALL_SHAPES, torch.float64, 8, tmp_path / "s.lpt", steps)
    proj = linpath.project(traj, theta0, theta1)
    ref = reference(values, theta0, theta1)
    a, r, x, dn = ref["coordinate"], ref["residual"], ref["displacement"], ref["direction_norm"]
    path_length = sum(abs(a[t + 1] - a[t]) for t in range(len(a) - 1)) * dn
    explained = sum((a_t * dn) ** 2 for a_t in a) / sum(x_t**2 for x_t in x)
    np.testing.assert_allclose(proj.path_length, path_length, rtol=1e-9)
    np.testing.assert_allclose(proj.max_residual, max(r), rtol=1e-9)
    np.testing.assert_allclose(proj.explained, explained, rtol=1e-9)
    assert 0 < proj.explained < 1 and proj.path_length > dn  # the path doubles back: longer than ‖d‖
    np.testing.assert_array_equal(proj.steps, steps)
    assert proj.steps.dtype == np.int64


def test_summary_of_a_straight_run_along_the_line():
    """Checkpoints at a = 0, 0.5, 1, 0.75 exactly on the line: path 1.25‖d‖, residual 0, explained 1."""
    rng = np.random.default_rng(9)
    n = 1001
    theta0 = rng.standard_normal(n)
    d = rng.standard_normal(n)
    vectors = [theta0 + a * d for a in (0.0, 0.5, 1.0, 0.75)]
    traj = record(Params([(n,)]), vectors).trajectory
    proj = linpath.project(traj, vectors[0], vectors[2])
    ref = reference(vectors, vectors[0], vectors[2])
    assert_matches(proj, ref)
    np.testing.assert_allclose(proj.path_length, 1.25 * ref["direction_norm"], rtol=1e-12)
    assert proj.max_residual <= 1e-14 * ref["displacement"].max()
    np.testing.assert_allclose(proj.explained, 1.0, rtol=1e-12)


def test_plot_returns_axes_drawing_the_projection():
    traj, values, theta0, theta1 = make_case(SMALL_SHAPES, torch.float32, 10)
    proj = linpath.project(traj, traj[0], traj[-1])
    import matplotlib.pyplot as plt

    ax = proj.plot()
    try:
        assert isinstance(ax, matplotlib.axes.Axes)
        np.testing.assert_array_equal(ax.lines[0].get_xdata(), proj.coordinate)
        np.testing.assert_array_equal(ax.lines[0].get_ydata(), proj.residual)
        np.testing.assert_array_equal(ax.collections[0].get_offsets(), np.c_[proj.coordinate, proj.residual])
    finally:
        plt.close(ax.figure)
    fig, given = plt.subplots()
    try:
        assert proj.plot(ax=given) is given
    finally:
        plt.close(fig)


def test_plot_says_which_checkpoints_are_not_finite():
    """NaN points cannot be drawn; the plot must not drop them silently: a note gives their number and
    steps, and the title does not print a share of nan%."""
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(25)
    n = 33
    vectors = [rng.standard_normal(n) for _ in range(5)]
    vectors[1][3] = np.nan
    vectors[3][0] = np.inf
    traj = record(Params([(n,)]), vectors, steps=[0, 100, 200, 300, 400]).trajectory
    with pytest.warns(RuntimeWarning):
        proj = linpath.project(traj, vectors[0], vectors[-1])
    ax = proj.plot()
    try:
        notes = [t.get_text() for t in ax.texts]
        assert any("2 checkpoints" in t and "steps 100, 300" in t and "NaN/inf" in t for t in notes), notes
        assert "nan" not in ax.get_title().lower()
    finally:
        plt.close(ax.figure)
    finite = linpath.project(
        record(Params([(n,)]), [vectors[0], vectors[2], vectors[4]]).trajectory, vectors[0], vectors[-1]
    )
    ax = finite.plot()
    try:
        assert not ax.texts or all("not drawn" not in t.get_text() for t in ax.texts)
    finally:
        plt.close(ax.figure)


def test_to_dict_is_json_serialisable():
    steps = [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
    traj, values, theta0, theta1 = make_case(SMALL_SHAPES, torch.float64, 11, steps=steps)
    proj = linpath.project(traj, theta0, theta1)
    back = json.loads(json.dumps(proj.to_dict()))
    assert back["steps"] == steps
    for key in ("coordinate", "residual", "displacement"):
        assert back[key] == getattr(proj, key).tolist()
    assert back["direction_norm"] == proj.direction_norm
    assert back["path_length"] == proj.path_length
    assert back["max_residual"] == proj.max_residual
    assert back["explained"] == proj.explained
    ref = reference(values, theta0, theta1)
    np.testing.assert_allclose(back["coordinate"], ref["coordinate"], rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("on_disk", [False, True])
def test_checkpoints_with_nan_or_inf_are_nan_and_so_is_the_summary(tmp_path, dtype, on_disk):
    """A diverged checkpoint (NaN or ±inf values) has no place relative to the line: its coordinate,
    residual and displacement are NaN (the reference's residual is NaN too), the summary numbers that
    depend on it are NaN rather than a plausible number (the explained share used to read 1.0), and a
    RuntimeWarning names the checkpoints by index and step."""
    rng = np.random.default_rng(12)
    n = 257
    theta0, theta1 = rng.standard_normal(n), rng.standard_normal(n)
    mid = theta0 + 0.5 * (theta1 - theta0)
    bad_nan, bad_inf, bad_ninf = mid.copy(), mid.copy(), mid + 0.1
    bad_nan[17] = np.nan
    bad_inf[200] = np.inf
    bad_ninf[0] = -np.inf
    vectors = [theta0, bad_nan, mid, bad_inf, bad_ninf, theta1]
    steps = [0, 10, 20, 30, 40, 50]
    path = tmp_path / "diverged.lpt" if on_disk else None
    traj = record(Params([(n,)], dtype), vectors, path, steps=steps).trajectory
    with pytest.warns(
        RuntimeWarning, match=r"3 checkpoints \(indices 1, 3, 4; steps 10, 30, 40\) of 6 contain NaN"
    ):
        proj = linpath.project(traj, theta0, theta1)
    with np.errstate(invalid="ignore"):
        ref = reference([stored(v, dtype) for v in vectors], theta0, theta1)
    assert np.isnan(ref["residual"][[1, 3, 4]]).all()
    for name in ("coordinate", "residual", "displacement"):
        assert np.isnan(getattr(proj, name)[[1, 3, 4]]).all(), (name, getattr(proj, name))
    assert np.isnan(proj.path_length) and np.isnan(proj.max_residual) and np.isnan(proj.explained)
    # The finite checkpoints are unaffected.
    finite = reference([stored(v, dtype) for v in (theta0, mid, theta1)], theta0, theta1)
    np.testing.assert_allclose(proj.coordinate[[0, 2, 5]], finite["coordinate"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(proj.residual[[0, 2, 5]], finite["residual"], rtol=1e-9, atol=1e-13)
    np.testing.assert_array_equal(proj.steps, steps)
    json.dumps(proj.to_dict())  # NaN goes out as NaN, not as a number
    assert all(math.isnan(proj.to_dict()[k]) for k in ("path_length", "max_residual", "explained"))


def test_finite_trajectory_projects_without_a_warning(recwarn):
    traj, values, theta0, theta1 = make_case(SMALL_SHAPES, torch.float32, 24)
    proj = linpath.project(traj, theta0, theta1)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
    assert np.isfinite([proj.path_length, proj.max_residual, proj.explained]).all()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_summary_of_points_that_are_not_finite_is_nan(bad):
    """A Projection built from arrays holding a non-finite value (here an infinite coordinate, whose
    path length would otherwise read inf and whose explained share 0 or 1) summarises to NaN."""
    a, r, x = np.array([0.0, 0.5, 1.0]), np.array([0.0, 0.1, 0.0]), np.array([0.0, 1.0, 2.0])
    for column in (a, r, x):
        broken = column.copy()
        broken[1] = bad
        cols = [broken if c is column else c for c in (a, r, x)]
        proj = linpath.Projection(cols[0], cols[1], np.arange(3), cols[2], 2.0)
        assert np.isnan([proj.path_length, proj.max_residual, proj.explained]).all()


# --- bad input ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_traj():
    traj, values, theta0, theta1 = make_case(SMALL_SHAPES, torch.float32, 14)
    return traj, theta0, theta1


def test_start_equal_to_end(small_traj):
    traj, theta0, _ = small_traj
    with pytest.raises(ValueError, match="same point"):
        linpath.project(traj, traj[0], traj[0])
    with pytest.raises(ValueError, match="same point"):
        linpath.project(traj, theta0, theta0.copy())
    # Equal once widened to float64: a float32 and a float64 copy of the same values.
    with pytest.raises(ValueError, match="same point"):
        linpath.project(traj, theta0.astype(np.float32), theta0)


def test_wrong_length_or_layout(small_traj):
    traj, theta0, theta1 = small_traj
    n = traj.numel
    rng = np.random.default_rng(15)
    with pytest.raises(ValueError, match=f"expected a 1-D vector of {n} values"):
        linpath.project(traj, rng.standard_normal(n - 1), theta1)
    with pytest.raises(ValueError, match=f"expected a 1-D vector of {n} values"):
        linpath.project(traj, theta0, torch.from_numpy(rng.standard_normal(n + 1)))
    with pytest.raises(ValueError, match="expected a 1-D vector"):
        linpath.project(traj, theta0.reshape(2, -1), theta1)
    # A model whose tensors have other shapes, or other names.
    other = Params([(5, 3, 7), (11,), (), (2, 1, 13), (97, 91)])
    with pytest.raises(ValueError, match="shape"):
        linpath.project(traj, other, theta1)
    renamed = nn.Module()
    for i, shape in enumerate(SMALL_SHAPES):
        renamed.register_parameter(f"q{i}", nn.Parameter(torch.ones(shape)))
    with pytest.raises(ValueError, match="named"):
        linpath.project(traj, theta0, renamed)
    with pytest.raises(ValueError, match="state_dict"):
        linpath.project(traj, renamed.state_dict(), theta1)
    fewer = Params(SMALL_SHAPES[:-1])
    with pytest.raises(ValueError, match="tensors"):
        linpath.project(traj, fewer, theta1)
    vec_other = linpath.flatten(other)
    with pytest.raises(ValueError):
        linpath.project(traj, vec_other, theta1)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_endpoints(small_traj, bad):
    traj, theta0, theta1 = small_traj
    start = theta0.copy()
    start[123] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        linpath.project(traj, start, theta1)
    end = theta1.copy()
    end[-1] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        linpath.project(traj, theta0, end)


@pytest.mark.parametrize(
    "values, found",
    [
        ([1e308, 1e308, -1e308], None),  # finite, though its sum overflows: the full check runs
        ([1e308, 1e308, np.nan], "'w'[2] = nan"),
        ([1.0, np.inf, -np.inf], "'w'[1] = inf"),  # the sum is NaN
        ([-np.inf, 2.0, 3.0], "'w'[0] = -inf"),
        ([0.5, 2.0, 3.0], None),
    ],
)
def test_endpoint_check_finds_nan_and_inf_whatever_the_sum(values, found):
    from linpath._validate import _first_non_finite

    vec = torch.tensor(values, dtype=torch.float64)
    assert _first_non_finite(vec, ["w"], [(3,)]) == found


def test_first_argument_must_be_a_trajectory(small_traj, tmp_path):
    traj, theta0, theta1 = small_traj
    for bad in (list(traj), str(tmp_path / "t.lpt"), traj._store, None):
        with pytest.raises(TypeError, match="expected a linpath.Trajectory"):
            linpath.project(bad, theta0, theta1)


def test_integer_endpoints_are_type_errors(small_traj):
    traj, theta0, theta1 = small_traj
    ints = np.arange(traj.numel)
    with pytest.raises(TypeError, match="floating-point"):
        linpath.project(traj, ints, theta1)
    with pytest.raises(TypeError, match="floating-point"):
        linpath.project(traj, theta0, torch.from_numpy(ints))
    # A string is the path of a checkpoint (issue 12): one that names no file says so.
    with pytest.raises(FileNotFoundError, match="no file or directory"):
        linpath.project(traj, "start", theta1)


# --- the GIL --------------------------------------------------------------------------------------------


class Flat(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(n, dtype=torch.float64))


def test_project_releases_the_gil():
    """A Python thread keeps running while linpath.project works, and concurrent calls agree.

    The ticker thread increments a counter; it gives up the GIL now and then (time.sleep) but is never
    forced to (the switch interval is set far beyond the test), so it can only run while the main thread
    has released the GIL. A profile hook reads the counter at the exact entry and exit of the native
    call. A control, math.fsum (which holds the GIL), must show no progress at all.
    """
    n, count = 1_500_000, 40
    gen = torch.Generator().manual_seed(16)
    model = Flat(n)
    recorder = linpath.TrajectoryRecorder(model)
    with torch.no_grad():
        model.w.copy_(torch.randn(n, generator=gen, dtype=torch.float64))
        step = torch.randn(n, generator=gen, dtype=torch.float64)
        for i in range(count):
            recorder.record()
            model.w.add_(step.roll(977 * i), alpha=0.01 * (1 + i % 3))
    traj = recorder.trajectory
    start, end = traj[0], traj[-1]
    expected = linpath.project(traj, start, end)
    # The reference, checkpoint by checkpoint (stored values: float64, exact).
    ref = reference((traj[i].numpy() for i in range(count)), start.numpy(), end.numpy())
    assert_matches(expected, ref)

    counter, done, watched, marks = [0], [False], [None], {}

    def tick():
        while not done[0]:
            counter[0] += 1
            if counter[0] % 32 == 0:
                time.sleep(1e-5)

    def profiler(frame, event, arg):
        # No call between reading the counter and storing it: the hook itself cannot give up the GIL.
        if event == "c_call" and arg is watched[0]:
            marks["entry"] = counter[0]
        elif event == "c_return" and arg is watched[0]:
            marks["exit"] = counter[0]

    values = np.random.default_rng(17).standard_normal(2_000_000).tolist()
    control = []
    interval = sys.getswitchinterval()
    ticker = threading.Thread(target=tick, daemon=True)
    sys.setswitchinterval(30.0)
    try:
        ticker.start()
        while counter[0] < 1000:
            time.sleep(1e-3)
        watched[0] = math.fsum
        for _ in range(3):
            marks.clear()
            sys.setprofile(profiler)
            math.fsum(values)
            sys.setprofile(None)
            control.append(marks["exit"] - marks["entry"])
        watched[0] = _linpath.project_store
        marks.clear()
        before = counter[0]
        sys.setprofile(profiler)
        got = linpath.project(traj, start, end)
        sys.setprofile(None)
        after = counter[0]
    finally:
        sys.setprofile(None)
        done[0] = True
        ticker.join(timeout=60)
        sys.setswitchinterval(interval)
    assert not ticker.is_alive()
    assert control == [0, 0, 0], "the measurement cannot see a held GIL"
    during = marks["exit"] - marks["entry"]
    assert during >= 100, f"the ticker advanced only {during} times during the native call"
    assert after - before >= during
    assert_same_projection(got, expected)

    # Two calls at once, from two threads: both finish, with the same numbers.
    results: list = [None, None]

    def worker(k: int) -> None:
        results[k] = linpath.project(traj, start, end)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    for res in results:
        assert res is not None
        assert_same_projection(res, expected)


# --- a 2 GB trajectory file in bounded memory ---------------------------------------------------------


class Big(nn.Module):
    """4,000,000 float32 values: block A = a (3,000,000), block B = b and c (1,000,000)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.zeros(2000, 1500))
        self.b = nn.Parameter(torch.zeros(1000, 999))
        self.c = nn.Parameter(torch.zeros(1000))


def test_two_gigabyte_file_projects_in_bounded_memory(tmp_path):
    """130 checkpoints of 4M float32 values (2.08 GB), projected by a fresh process.

    The parameters start at random multiples of 1/1024 in [-1, 1], and checkpoint t adds c_t to every
    value of block A and e_t to every value of block B (multiples of 1/64 in [-1, 1]), so every stored
    value is exact and the projection has a closed form: with x_t = c_t·1_A + e_t·1_B and the line to
    the last checkpoint, ⟨x_t, d⟩ = c_t c_T n_A + e_t e_T n_B, and so on.

    The probe's peak resident memory while projecting must stay under 500 MB above what the import of
    linpath (torch included, about 0.5 GB by itself) takes. (The probe measures VmHWM, not ru_maxrss,
    which Linux inherits from the large pytest parent across fork+exec.)
    """
    t_start = time.perf_counter()
    count, n_a, n_b = 130, 3_000_000, 1_000_000
    rng = np.random.default_rng(18)
    c = rng.integers(-64, 65, count) / 64
    e = rng.integers(-64, 65, count) / 64
    c[0] = e[0] = 0.0
    c[-1], e[-1] = 1.0, -0.75
    c[50], e[50] = 0.5, -0.375  # exactly on the line, a = 0.5
    c[100], e[100] = -0.25, 0.1875  # exactly on the line, a = -0.25
    path = tmp_path / "two_gigabytes.lpt"
    try:
        model = Big()
        gen = torch.Generator().manual_seed(19)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randint(-1024, 1025, p.shape, generator=gen).float() / 1024)
        recorder = linpath.TrajectoryRecorder(model, path)
        assert recorder.trajectory.numel == n_a + n_b
        prev_c = prev_e = 0.0
        with torch.no_grad():
            for t in range(count):
                model.a.add_(c[t] - prev_c)
                model.b.add_(e[t] - prev_e)
                model.c.add_(e[t] - prev_e)
                prev_c, prev_e = c[t], e[t]
                recorder.record(1000 * t)
        del recorder, model
        size = path.stat().st_size
        record_bytes = 16 + 4 * (n_a + n_b)  # step, values, CRC32 and 4 zero bytes (format version 2)
        assert size > 2_000_000_000
        assert (size - count * record_bytes) % 64 == 0 and 0 < size - count * record_bytes <= 4096
        t_written = time.perf_counter()

        out = subprocess.run(
            [sys.executable, str(PROBE), str(path)], capture_output=True, text=True, timeout=300
        )
        assert out.returncode == 0, out.stderr
        probe = json.loads(out.stdout)
    finally:
        path.unlink(missing_ok=True)
    t_end = time.perf_counter()

    # Closed-form reference.
    dd = c[-1] ** 2 * n_a + e[-1] ** 2 * n_b
    dot = c * c[-1] * n_a + e * e[-1] * n_b
    a = dot / dd
    r = np.sqrt((c - a * c[-1]) ** 2 * n_a + (e - a * e[-1]) ** 2 * n_b)
    disp = np.sqrt(c**2 * n_a + e**2 * n_b)
    ref = {"coordinate": a, "residual": r, "displacement": disp, "direction_norm": np.sqrt(dd)}
    proj_like = linpath.Projection(
        np.array(probe["coordinate"]),
        np.array(probe["residual"]),
        np.array(probe["steps"]),
        np.array(probe["displacement"]),
        probe["direction_norm"],
    )
    assert_matches(proj_like, ref)
    assert probe["steps"] == [1000 * t for t in range(count)]
    assert probe["coordinate"][0] == 0 and probe["residual"][0] == 0
    assert probe["coordinate"][-1] == 1.0 and probe["residual"][-1] <= 1e-14 * disp[-1]
    assert probe["coordinate"][50] == 0.5 and probe["coordinate"][100] == -0.25
    np.testing.assert_allclose(probe["path_length"], np.abs(np.diff(a)).sum() * np.sqrt(dd), rtol=1e-9)

    baseline = probe["rss_after_import_kib"] * 1024
    peak = probe["peak_rss_kib"] * 1024
    # The peak while opening and projecting (or, where VmHWM cannot be reset, the whole probe's peak).
    during = (probe["peak_project_kib"] or probe["peak_rss_kib"]) * 1024
    print(
        f"\n2 GB projection: file {size:,} bytes; probe peak RSS {peak / 1e6:.0f} MB (VmHWM; ru_maxrss "
        f"{probe['ru_maxrss_kib'] * 1024 / 1e6:.0f} MB), RSS after import {baseline / 1e6:.0f} MB, "
        f"peak while projecting {during / 1e6:.0f} MB; open+project {probe['seconds']:.1f} s; "
        f"write {t_written - t_start:.1f} s, whole test {t_end - t_start:.1f} s"
    )
    # import linpath (i.e. torch) alone takes about 0.5 GB; the projection must add less than 500 MB
    # (it streams: a fully loaded file would add 2 GB, or 4 GB as float64).
    assert during - baseline < 500e6, f"projecting took {(during - baseline) / 1e6:.0f} MB over the import"


def test_an_empty_trajectory_is_refused_and_one_checkpoint_travels_zero():
    model = nn.Linear(3, 2)
    recorder = linpath.TrajectoryRecorder(model)
    ends = (linpath.flatten(model), linpath.flatten(nn.Linear(3, 2)))
    with pytest.raises(ValueError, match="no checkpoints to project"):
        linpath.project(recorder, *ends)
    recorder.record()
    proj = linpath.project(recorder, *ends)
    assert proj.path_length == 0.0 and math.copysign(1.0, proj.path_length) == 1.0


def test_project_refuses_the_endpoints_every_sweep_refuses():
    model = nn.Linear(3, 2)
    recorder = linpath.TrajectoryRecorder(model)
    recorder.record()
    bad = linpath.flatten(model).tensor.clone()
    bad[4] = float("nan")
    with pytest.raises(ValueError, match=r"end contains NaN or infinite values \('weight'\[4\]"):
        linpath.project(recorder, model, bad)
    with pytest.raises(ValueError, match="meta device"):
        linpath.project(recorder, model, nn.Linear(3, 2, device="meta"))


def test_a_direction_too_long_for_float64_is_named_as_such():
    model = nn.Linear(3, 2)
    recorder = linpath.TrajectoryRecorder(model)
    recorder.record()
    ones = torch.ones(linpath.flatten(model).tensor.numel(), dtype=torch.float64)
    with pytest.raises(ValueError, match="its squared norm overflows float64"):
        linpath.project(recorder, ones * 1e300, ones * -1e300)
