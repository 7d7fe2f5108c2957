"""The main job (`make demo`) at smoke size: it trains, sweeps, projects and writes every file."""

import json
import os

import numpy as np

import linpath
from linpath.__main__ import main


def test_demo_smoke_writes_plots_numbers_and_sweep(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--smoke", "--out", str(out)]) == 0
    for name in (
        "line.png",
        "projection.png",
        "learning_curve.png",
        "sweep.npz",
        "summary.json",
        "trajectory.lpt",
        "plane.png",
        "plane.lps",
    ):
        assert (out / name).stat().st_size > 0, name
    assert (out / "line.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    sweep = linpath.Sweep.load(out / "sweep.npz")
    assert sweep.splits == ["train", "valid"]
    assert sweep.alphas[0] == -0.5 and sweep.alphas[-1] == 1.5
    alpha, value = sweep.minimum("train")
    assert summary["line"]["train_min_alpha"] == alpha and summary["line"]["train_min_loss"] == value
    traj = linpath.Trajectory.open(out / "trajectory.lpt")
    assert len(traj) == summary["projection"]["checkpoints"] >= 3
    np.testing.assert_allclose(summary["projection_points"]["coordinate"][-1], 1.0, rtol=1e-12)
    assert 0.0 < summary["final"]["valid_error"] < 0.9
    printed = capsys.readouterr().out
    assert "validation error" in printed and "monotone on [0, 1]" in printed
    # The PCA plane of the run's own trajectory: the path on it, its distance off the plane.
    plane = linpath.Surface.load(out / "plane.lps")
    pca = linpath.directions.pca(traj)
    np.testing.assert_array_equal(plane.origin, pca.reference)
    on_plane = plane.project(traj)
    np.testing.assert_allclose(on_plane.coords, pca.coords, rtol=1e-7, atol=1e-9 * np.abs(pca.coords).max())
    assert summary["plane"]["explained"] == on_plane.explained
    np.testing.assert_allclose(summary["plane"]["max_residual"], pca.max_residual, rtol=1e-6)
    assert "PCA plane of the trajectory" in printed


def test_demo_rerun_replaces_its_own_results(tmp_path):
    out = tmp_path / "demo"
    main(["demo", "--smoke", "--out", str(out)])
    main(["demo", "--smoke", "--out", str(out), "--seed", "1"])
    assert not list(out.glob(".*"))  # no temporary files left behind
    assert json.loads((out / "summary.json").read_text())["config"]["seed"] == 1


def test_demo_never_writes_through_symlinks_planted_in_its_folder(tmp_path):
    """Symlinks planted (say, by another user of a shared folder) at every file the demo writes and at
    the names its trajectory used to be written under are replaced or left alone, never followed."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    out = tmp_path / "demo"
    out.mkdir()
    pid = os.getpid()
    finals = ["line.png", "projection.png", "learning_curve.png", "sweep.npz", "summary.json"]
    finals.append("trajectory.lpt")
    planted = [f".trajectory.{pid}.lpt", f"..trajectory.{pid}.lpt.{pid}.tmp"]
    for name in finals + planted:
        (out / name).symlink_to(victim)
    assert main(["demo", "--smoke", "--out", str(out)]) == 0
    assert victim.read_bytes() == b"precious"
    for name in finals:
        assert not (out / name).is_symlink() and (out / name).stat().st_size > 0, name
    assert all((out / name).is_symlink() for name in planted)
    assert len(linpath.Trajectory.open(out / "trajectory.lpt")) >= 3
