"""The main job (`make demo`) at smoke size: it trains, sweeps, projects and writes every file."""

import json

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


def test_demo_rerun_replaces_its_own_results(tmp_path):
    out = tmp_path / "demo"
    main(["demo", "--smoke", "--out", str(out)])
    main(["demo", "--smoke", "--out", str(out), "--seed", "1"])
    assert not list(out.glob(".*"))  # no temporary files left behind
    assert json.loads((out / "summary.json").read_text())["config"]["seed"] == 1
