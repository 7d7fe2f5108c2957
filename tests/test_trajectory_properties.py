"""Property-based tests (hypothesis) of the trajectory format and of the projection.

Random layouts (one-element and multi-dimensional tensors, 0-d scalars), float32/float64, random steps
(negative and extreme int64 included) and random values (NaN, infinities and subnormals included): in
memory and in files, every checkpoint and step comes back bit for bit, the file's bytes are exactly those
of an independent writer of the documented format (tests/lpt_format.py), and a version-1 file of the same
data reads the same. The projection of random trajectories (checkpoints on and off the line) matches the
float64 NumPy reference of test_project.py within its tolerances. Example counts stay small (the suite
runs on 2 cores); derandomize=True makes every run (and CI) try the same examples.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import lpt_format
import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from test_project import assert_matches, reference

import linpath
from linpath import _linpath

SETTINGS = settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
DTYPES = {"float32": np.float32, "float64": np.float64}

shapes_st = st.lists(
    st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple), min_size=1, max_size=4
).filter(lambda shapes: sum(math.prod(s) for s in shapes) <= 200)
steps_st = st.lists(st.integers(-(2**63), 2**63 - 1), min_size=0, max_size=5)


@st.composite
def trajectories(draw):
    """(names, shapes, dtype name, steps, values[count, numel])."""
    shapes = draw(shapes_st)
    dtype = draw(st.sampled_from(sorted(DTYPES)))
    steps = draw(steps_st)
    numel = sum(math.prod(s) for s in shapes)
    width = 32 if dtype == "float32" else 64
    values = draw(hnp.arrays(DTYPES[dtype], (len(steps), numel), elements=st.floats(width=width)))
    names = [f"layer{i}.p" for i in range(len(shapes))]
    return names, shapes, dtype, steps, values


def bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def store_of(path: Path | None, names, shapes, dtype) -> _linpath.TrajectoryStore:
    shapes = [list(s) for s in shapes]
    if path is None:
        return _linpath.TrajectoryStore.in_memory(names, shapes, dtype)
    return _linpath.TrajectoryStore.create(str(path), names, shapes, dtype)


def assert_reads_back(traj: linpath.Trajectory, names, shapes, steps, values) -> None:
    assert traj.names == names and traj.shapes == [tuple(s) for s in shapes] and len(traj) == len(steps)
    assert traj.steps.dtype == np.int64 and traj.steps.tolist() == steps
    for i in range(len(steps)):
        np.testing.assert_array_equal(bits(traj[i].numpy()), bits(values[i]))
        np.testing.assert_array_equal(bits(traj[i - len(steps)].numpy()), bits(values[i]))


@SETTINGS
@given(trajectories(), st.booleans())
def test_round_trip_is_bit_exact(case, on_disk):
    names, shapes, dtype, steps, values = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.lpt" if on_disk else None
        store = store_of(path, names, shapes, dtype)
        for step, row in zip(steps, values, strict=True):
            store.append(step, torch.from_numpy(row.copy()))
        assert_reads_back(linpath.Trajectory(store), names, shapes, steps, values)
        if not on_disk:
            return
        header = {
            "numel": values.shape[1],
            "dtype": dtype,
            "names": names,
            "shapes": [list(s) for s in shapes],
        }
        raw = path.read_bytes()
        assert raw == lpt_format.encode(header, steps, values, version=2)
        assert_reads_back(linpath.Trajectory.open(path), names, shapes, steps, values)
        old = Path(tmp) / "v1.lpt"
        lpt_format.write(old, names, shapes, dtype, steps, values, version=1)
        v1 = linpath.Trajectory.open(old)
        assert v1.format_version == 1
        assert_reads_back(v1, names, shapes, steps, values)


@st.composite
def projection_cases(draw):
    """(shapes, dtype, checkpoints [count, n] float64, θ0, θ1) around a random line."""
    # Small layouts, or one tensor spanning several of the projection's 8,192-element chunks.
    shapes = draw(st.one_of(shapes_st, st.integers(8_000, 30_000).map(lambda n: [(n,)])))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    n = sum(math.prod(s) for s in shapes)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = 10.0 ** draw(st.integers(-3, 3))
    theta0 = rng.standard_normal(n) * scale
    d = rng.standard_normal(n) * scale * 10.0 ** draw(st.integers(-2, 1))
    kinds = draw(st.lists(st.sampled_from(["on", "hair", "off", "far"]), min_size=1, max_size=6))
    rows = []
    for kind in kinds:
        a = draw(st.floats(-2.0, 3.0, allow_nan=False))
        noise = rng.standard_normal(n) * np.linalg.norm(d) / math.sqrt(n)
        off = {"on": 0.0, "hair": 1e-9, "off": 0.3, "far": 30.0}[kind]
        rows.append(theta0 + a * d + off * noise)
    return shapes, dtype, np.array(rows), theta0, theta0 + d


@settings(SETTINGS, max_examples=60)
@given(projection_cases(), st.booleans())
def test_projection_matches_the_float64_reference(case, on_disk):
    shapes, dtype, rows, theta0, theta1 = case
    name = "float32" if dtype == torch.float32 else "float64"
    with tempfile.TemporaryDirectory() as tmp:
        store = store_of(
            Path(tmp) / "p.lpt" if on_disk else None, [f"p{i}" for i in range(len(shapes))], shapes, name
        )
        for t, row in enumerate(rows):
            store.append(t, torch.from_numpy(row))
        traj = linpath.Trajectory(store)
        stored = rows.astype(DTYPES[name]).astype(np.float64)
        proj = linpath.project(traj, theta0, theta1)
        assert_matches(proj, reference(list(stored), theta0, theta1))
        np.testing.assert_array_equal(proj.steps, np.arange(len(rows)))
        # Between two stored checkpoints, the second lies exactly at coordinate 1, residual 0.
        if len(rows) >= 2 and not np.array_equal(stored[0], stored[-1]):
            ends = linpath.project(traj, traj[0], traj[-1])
            assert (ends.coordinate[0], ends.residual[0]) == (0.0, 0.0)
            assert (ends.coordinate[-1], ends.residual[-1]) == (1.0, 0.0)
