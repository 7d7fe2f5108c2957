"""linpath.views: extreme coordinates, the PCA plane of a trajectory, J at every checkpoint."""

import matplotlib
import numpy as np
import pytest
import torch
from torch import nn

import linpath
from linpath.plotting import plot_iterates_3d, plot_plane_residuals
from linpath.views import coordinates, evaluate_checkpoints, extreme_coordinates, pca_plane

matplotlib.use("Agg")


def _trajectory(points: np.ndarray) -> linpath.Trajectory:
    """A trajectory of a one-parameter-tensor module visiting the rows of ``points``."""
    model = nn.Linear(points.shape[1], 1, bias=False).double()
    recorder = linpath.TrajectoryRecorder(model)
    for row in points:
        with torch.no_grad():
            model.weight.copy_(torch.from_numpy(row).view(1, -1))
        recorder.record()
    return recorder.trajectory


def test_extreme_coordinates_are_those_of_widest_range():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(9, 40))
    points[:, 7] *= 30.0
    points[:, 21] *= 10.0
    traj = _trajectory(points)
    index = extreme_coordinates(traj, 2)
    spread = points.max(axis=0) - points.min(axis=0)
    assert index.tolist() == list(np.argsort(-spread)[:2]) == [7, 21]
    assert np.array_equal(coordinates(traj, index), points[:, index])


def test_pca_plane_matches_numpy_svd():
    rng = np.random.default_rng(1)
    points = rng.normal(size=(12, 30)) @ np.diag(np.linspace(3.0, 0.1, 30))
    plane = pca_plane(_trajectory(points))
    displacements = points - points[-1]
    _, sing, vt = np.linalg.svd(displacements, full_matrices=False)
    for k in range(2):  # the same directions up to sign
        assert abs(abs(plane.directions[k] @ vt[k]) - 1.0) < 1e-9
    coords = displacements @ plane.directions.T
    np.testing.assert_allclose(plane.coords, coords, rtol=1e-9, atol=1e-9)
    off = displacements - coords @ plane.directions
    np.testing.assert_allclose(plane.residuals, np.linalg.norm(off, axis=1), rtol=1e-7, atol=1e-9)
    assert plane.explained == pytest.approx((sing[:2] ** 2).sum() / (sing**2).sum(), rel=1e-9)
    assert plane.residuals[-1] == 0.0 and plane.max_residual == pytest.approx(plane.residuals.max())


def test_pca_plane_centred_on_the_mean():
    rng = np.random.default_rng(2)
    points = rng.normal(size=(8, 10))
    plane = pca_plane(_trajectory(points), reference="mean")
    np.testing.assert_allclose(plane.reference, points.mean(axis=0), atol=1e-12)
    _, sing, _ = np.linalg.svd(points - points.mean(axis=0), full_matrices=False)
    assert plane.explained == pytest.approx((sing[:2] ** 2).sum() / (sing**2).sum(), rel=1e-9)


def test_bad_trajectories_and_arguments():
    traj = _trajectory(np.random.default_rng(3).normal(size=(3, 4)))
    with pytest.raises(ValueError, match="count must be"):
        extreme_coordinates(traj, 5)
    with pytest.raises(ValueError, match="reference must be"):
        pca_plane(traj, reference="first")
    with pytest.raises(ValueError, match="at least 2 checkpoints"):
        pca_plane(_trajectory(np.ones((1, 4))))
    with pytest.raises(ValueError, match="fewer than two directions"):
        pca_plane(_trajectory(np.outer(np.arange(4.0), np.ones(4))))
    direction = np.random.default_rng(4).normal(size=50)  # on a line, up to rounding
    with pytest.raises(ValueError, match="fewer than two directions"):
        pca_plane(_trajectory(np.outer(np.linspace(0.0, 3.0, 9), direction)))
    with pytest.raises(TypeError, match="Trajectory"):
        extreme_coordinates([1, 2, 3])
    with pytest.raises(ValueError, match="indices"):
        coordinates(traj, [4])


def test_evaluate_checkpoints_matches_direct_evaluation_and_restores_the_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))
    x, y = torch.randn(64, 5), torch.randint(0, 3, (64,))
    recorder = linpath.TrajectoryRecorder(model)
    snapshots = []
    for _ in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.3 * torch.randn_like(p))
        recorder.record()
        snapshots.append([p.detach().clone() for p in model.parameters()])
    before = [p.detach().clone() for p in model.parameters()]
    model.train()
    values = evaluate_checkpoints(model, recorder, (x, y))
    for k, params in enumerate(snapshots):
        twin = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()
        with torch.no_grad():
            for p, v in zip(twin.parameters(), params, strict=True):
                p.copy_(v)
        out = twin(x.double())
        loss = torch.nn.functional.cross_entropy(out, y).item()
        assert values["loss"][k] == pytest.approx(loss, rel=1e-5)
        assert values["error"][k] == pytest.approx((out.argmax(1) != y).double().mean().item())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert model.training


def test_the_3d_plots_draw():
    rng = np.random.default_rng(4)
    traj = _trajectory(rng.normal(size=(6, 8)))
    plane = pca_plane(traj)
    import matplotlib.pyplot as plt

    fig = plt.figure()
    ax = fig.add_subplot(projection="3d")
    line = (rng.normal(size=(5, 2)), rng.normal(size=5))
    assert plot_iterates_3d(plane.coords, rng.normal(size=6), ax, line=line) is ax
    assert plot_plane_residuals(plane) is not None
    with pytest.raises(ValueError, match="3-D axes"):
        plot_iterates_3d(plane.coords, rng.normal(size=6), fig.add_subplot(2, 2, 4))
    with pytest.raises(ValueError, match="coords must be"):
        plot_iterates_3d(plane.coords, rng.normal(size=5), ax)
    plt.close("all")


@pytest.mark.parametrize("scale", [1e-200, 1.0, 1e200])
def test_pca_plane_is_accurate_at_any_scale(scale):
    rng = np.random.default_rng(5)
    basis = np.linalg.qr(rng.normal(size=(30, 2)))[0].T  # an orthonormal plane
    on_plane = rng.normal(size=(6, 2)) @ basis  # every checkpoint lies on it
    off = rng.normal(size=(6, 30)) * 1e-3
    points = on_plane + off
    plane = pca_plane(_trajectory(points * scale))
    reference = pca_plane(_trajectory(points))
    np.testing.assert_allclose(plane.residuals, reference.residuals * scale, rtol=1e-9)
    np.testing.assert_allclose(plane.explained, reference.explained, rtol=1e-12)
    # The reference against NumPy's SVD of the same displacements, residuals computed directly.
    d = points - points[-1]
    _, _, vt = np.linalg.svd(d, full_matrices=False)
    residual = np.linalg.norm(d - d @ vt[:2].T @ vt[:2], axis=1)
    np.testing.assert_allclose(reference.residuals, residual, rtol=1e-9, atol=1e-15)
    exact = pca_plane(_trajectory(on_plane))  # exactly coplanar: residuals are rounding noise only
    assert exact.residuals.max() < 1e-13 * np.abs(on_plane).max()


def test_coordinates_take_integer_indices_only():
    traj = _trajectory(np.random.default_rng(3).normal(size=(3, 4)))
    with pytest.raises(TypeError, match="indices must be integers"):
        coordinates(traj, [0.7])
    with pytest.raises(TypeError, match="indices must be integers"):
        coordinates(traj, [True])
