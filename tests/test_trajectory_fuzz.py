"""A bounded, deterministic fuzz loop over trajectory files (src/trajectory.rs through linpath.Trajectory).

Files of format version 2 are mutated at random (a fixed seed): bits flipped, bytes overwritten, the file
truncated or extended, half of the time in the header. Each mutated file must either raise ValueError or
OSError (on opening, or on reading: the steps, the projection, every checkpoint, each on a freshly opened
trajectory so that each path's own checks run), or give back exactly the original data. A file cut on a
record boundary is a shorter trajectory: the original's first checkpoints. Never a panic (a pyo3
PanicException is no Exception, so it fails the test), never other values or steps.
"""

from __future__ import annotations

import lpt_format
import numpy as np
import pytest
import torch

import linpath
from linpath import _linpath

MUTATIONS = 150  # per file; two files, each opened with and without allow_partial


def original(path, names, shapes, dtype: str, seed: int) -> tuple[list[int], np.ndarray]:
    rng = np.random.default_rng(seed)
    numel = sum(int(np.prod(s)) for s in shapes)
    steps = [0, -(2**63), 2**63 - 1, 12345]
    values = rng.standard_normal((len(steps), numel)).astype(dtype)
    store = _linpath.TrajectoryStore.create(str(path), names, [list(s) for s in shapes], dtype)
    for step, row in zip(steps, values, strict=True):
        store.append(step, torch.from_numpy(row))
    return steps, values


def mutate(raw: bytes, rng: np.random.Generator, data_start: int) -> bytes:
    out = bytearray(raw)
    at = int(rng.integers(data_start) if rng.random() < 0.5 else rng.integers(len(raw)))
    kind = rng.integers(5)
    if kind == 0:
        out[at] ^= 1 << int(rng.integers(8))
    elif kind == 1:
        out[at] = int(rng.integers(256))
    elif kind == 2:
        run = rng.integers(0, 256, int(rng.integers(1, 17)), dtype=np.uint8).tobytes()
        out[at : at + len(run)] = run[: len(out) - at]
    elif kind == 3:
        del out[at:]
    else:
        out += rng.integers(0, 256, int(rng.integers(1, 101)), dtype=np.uint8).tobytes()
    return bytes(out)


def check_mutant(path, allow_partial, names, shapes, dtype, steps, values, line, expected) -> None:
    """Raises ValueError/OSError, or checks that everything read is the original data."""

    def fresh() -> linpath.Trajectory:
        traj = linpath.Trajectory.open(path, allow_partial=allow_partial)
        assert traj.names == names and traj.shapes == shapes, "a changed header was accepted"
        assert traj.dtype == {"float32": torch.float32, "float64": torch.float64}[dtype]
        return traj

    got = fresh().steps
    assert len(got) <= len(steps), "an extra checkpoint was accepted"
    np.testing.assert_array_equal(got, steps[: len(got)])
    proj = linpath.project(fresh(), *line)
    k = len(proj.coordinate)
    for name in ("coordinate", "residual", "displacement"):
        np.testing.assert_array_equal(getattr(proj, name), getattr(expected, name)[:k], err_msg=name)
    traj = fresh()
    for i in range(len(traj)):
        row = traj[i].numpy()
        assert i < len(values), "an extra checkpoint was accepted"
        np.testing.assert_array_equal(row, values[i])


@pytest.mark.parametrize(
    ("names", "shapes", "dtype", "seed"),
    [
        (["w", "b", "s"], [(3, 5), (5,), ()], "float32", 1),  # 21 values: odd, no padding after the CRC
        (["cube", "one"], [(2, 2, 3), (1,)], "float64", 2),
    ],
)
def test_mutated_files_are_errors_or_the_original_data(tmp_path, names, shapes, dtype, seed):
    path = tmp_path / "original.lpt"
    steps, values = original(path, names, shapes, dtype, seed)
    raw = path.read_bytes()
    traj = linpath.Trajectory.open(path)
    data_start = lpt_format.layout(raw).data_start
    line = (traj[0].numpy().astype(np.float64), traj[-1].numpy().astype(np.float64) + 1.0)
    expected = linpath.project(traj, *line)
    rng = np.random.default_rng(2026 + seed)
    mutant = tmp_path / "mutant.lpt"
    outcomes = {"rejected": 0, "accepted": 0}
    for _ in range(MUTATIONS):
        mutant.write_bytes(mutate(raw, rng, data_start))
        for allow_partial in (False, True):
            try:
                check_mutant(mutant, allow_partial, names, shapes, dtype, steps, values, line, expected)
            except (ValueError, OSError) as err:
                assert str(mutant) in str(err), err  # every error names the file
                outcomes["rejected"] += 1
            else:
                outcomes["accepted"] += 1
    assert outcomes["rejected"] > MUTATIONS and outcomes["accepted"] > 0, outcomes
