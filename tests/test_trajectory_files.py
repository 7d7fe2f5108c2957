"""TrajectoryRecorder on an existing trajectory file: refused with what to do, or overwrite=/append=."""

import os

import numpy as np
import pytest
import torch
from torch import nn

import linpath


def _model(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))


def _record(model, path, steps, **kw):
    recorder = linpath.TrajectoryRecorder(model, path, **kw)
    want = []
    for step in steps:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        recorder.record(step)
        want.append(linpath.flatten(model).numpy())
    return want


def test_an_existing_file_is_refused_with_the_options(tmp_path):
    path = tmp_path / "run.lpt"
    _record(_model(0), path, [0, 1])
    before = path.read_bytes()
    with pytest.raises(ValueError, match="already exists; .*overwrite=True to replace it or append=True"):
        linpath.TrajectoryRecorder(_model(0), path)
    with pytest.raises(ValueError, match="not both"):
        linpath.TrajectoryRecorder(_model(0), path, overwrite=True, append=True)
    assert path.read_bytes() == before


def test_append_continues_the_file(tmp_path):
    model, path = _model(1), tmp_path / "run.lpt"
    first = _record(model, path, [0, 10])
    more = _record(model, path, [20, 30], append=True)
    trajectory = linpath.Trajectory.open(path)
    np.testing.assert_array_equal(trajectory.steps, [0, 10, 20, 30])
    for got, want in zip(trajectory, first + more, strict=True):
        np.testing.assert_array_equal(got.numpy(), want)
    fresh = _record(model, tmp_path / "new.lpt", [5], append=True)  # a missing file is created
    np.testing.assert_array_equal(linpath.Trajectory.open(tmp_path / "new.lpt")[0].numpy(), fresh[0])


def test_append_refuses_another_layout_or_dtype(tmp_path):
    path = tmp_path / "run.lpt"
    _record(_model(2), path, [0])
    before = path.read_bytes()
    with pytest.raises(
        ValueError, match=r"the trajectory file .*run.lpt: tensor '0.weight' has shape \(6, 4\)"
    ):
        linpath.TrajectoryRecorder(
            nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)), path, append=True
        )
    with pytest.raises(ValueError, match="stores float32 values, not float64"):
        linpath.TrajectoryRecorder(_model(2), path, append=True, dtype=torch.float64)
    assert path.read_bytes() == before


def test_overwrite_replaces_the_file_in_one_step(tmp_path):
    model, path = _model(3), tmp_path / "run.lpt"
    _record(model, path, [0, 1, 2])
    os.chmod(path, 0o600)
    recorder = linpath.TrajectoryRecorder(model, path, overwrite=True)
    assert len(linpath.Trajectory.open(path)) == 0  # the old checkpoints are gone, the file is whole
    assert recorder.trajectory.path == path
    recorder.record(7)
    trajectory = linpath.Trajectory.open(path)
    np.testing.assert_array_equal(trajectory.steps, [7])
    np.testing.assert_array_equal(trajectory[0].numpy(), linpath.flatten(model).numpy())
    assert sorted(os.listdir(tmp_path)) == ["run.lpt"]  # no temporary file left


def test_overwrite_never_replaces_a_directory(tmp_path):
    (tmp_path / "run.lpt").mkdir()
    with pytest.raises(ValueError, match="not a regular file"):
        linpath.TrajectoryRecorder(_model(4), tmp_path / "run.lpt", overwrite=True)
    assert (tmp_path / "run.lpt").is_dir() and sorted(os.listdir(tmp_path)) == ["run.lpt"]
