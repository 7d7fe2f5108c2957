"""linpath.directions: random (filter/layer-normalised) directions, between, plane_through, pca.

References are written the slow obvious way in NumPy float64 (loops over slices); the models'
values are fresh random numbers at every run (the seed is printed, so a failure can be replayed).
"""

import secrets

import numpy as np
import pytest
import torch
from torch import nn

import linpath
from linpath import directions
from linpath._guard import exclusive
from linpath.views import Plane, pca_plane


@pytest.fixture
def rng():
    seed = secrets.randbits(32)
    print(f"rng seed {seed}")
    return np.random.default_rng(seed)


def _fill(model: nn.Module, rng: np.random.Generator) -> nn.Module:
    """Fresh random values in every floating-point parameter and buffer (variances positive)."""
    with torch.no_grad():
        for name, t in [*model.named_parameters(), *model.named_buffers()]:
            if t.is_floating_point():
                values = torch.from_numpy(rng.normal(size=tuple(t.shape)) * rng.uniform(0.1, 3.0))
                t.copy_(values.abs() if name.endswith("running_var") else values)
    return model


MODELS = {
    "conv": lambda: nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.Conv2d(6, 4, (2, 1), bias=False)),
    "linear": lambda: nn.Sequential(nn.Linear(7, 5), nn.Tanh(), nn.Linear(5, 3)),
    "embedding": lambda: nn.Sequential(nn.Embedding(11, 4), nn.Linear(4, 2)),
    "norms": lambda: nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.LayerNorm(8), nn.Linear(8, 3)),
}


def _tensors(model: nn.Module, include_buffers: bool = False) -> list[tuple[str, torch.Tensor]]:
    pairs = list(model.named_parameters())
    if include_buffers:
        pairs += [(n, b) for n, b in model.named_buffers() if b.is_floating_point()]
    return pairs


def _reference(model, seed, normalization, ignore, include_buffers=False) -> np.ndarray:
    """Li et al.'s direction in float64, one slice at a time, from the documented draw."""
    pairs = _tensors(model, include_buffers)
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _, t in pairs:
        w = t.detach().cpu().double().numpy()
        d = torch.randn(w.shape, generator=generator, dtype=torch.float64).numpy()
        if w.ndim <= 1:
            d = np.zeros_like(w) if ignore == "biasbn" else w.copy()
        elif normalization == "layer":
            wn, dn = np.sqrt(np.sum(w**2)), np.sqrt(np.sum(d**2))
            d = d * (wn / dn) if wn > 0 else np.zeros_like(d)
        elif normalization == "filter":
            for i in range(w.shape[0]):
                wn, dn = np.sqrt(np.sum(w[i] ** 2)), np.sqrt(np.sum(d[i] ** 2))
                d[i] = d[i] * (wn / dn) if wn > 0 else 0.0
        out.append(d.ravel())
    return np.concatenate(out)


def _pieces(vec: linpath.ParamVector) -> dict[str, np.ndarray]:
    return {n: t.detach().cpu().double().numpy() for n, t in vec.to_state_dict().items()}


@pytest.mark.parametrize("kind", sorted(MODELS))
@pytest.mark.parametrize("normalization", ["filter", "layer", "none"])
@pytest.mark.parametrize("ignore", ["biasbn", None])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_random_matches_the_slice_by_slice_reference(rng, kind, normalization, ignore, dtype):
    model = _fill(MODELS[kind]().to(dtype), rng)
    seed = int(rng.integers(0, 2**63))
    vec = directions.random(model, seed=seed, normalization=normalization, ignore=ignore)
    assert vec.dtype == dtype and vec.device == torch.device("cpu")
    assert vec.names == [n for n, _ in model.named_parameters()]
    assert vec.shapes == [tuple(p.shape) for p in model.parameters()]
    want = _reference(model, seed, normalization, ignore)
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    np.testing.assert_allclose(vec.numpy(), want, rtol=tol, atol=tol * np.abs(want).max())
    pieces = _pieces(vec)
    for name, p in model.named_parameters():
        w, d = p.detach().double().numpy(), pieces[name]
        if p.dim() <= 1:
            assert np.array_equal(d, np.zeros_like(w) if ignore == "biasbn" else w.astype(d.dtype))
        elif normalization == "filter":
            for i in range(w.shape[0]):
                assert np.linalg.norm(d[i]) == pytest.approx(np.linalg.norm(w[i]), rel=1e-6)
        elif normalization == "layer":
            assert np.linalg.norm(d) == pytest.approx(np.linalg.norm(w), rel=1e-6)


def test_zero_slices_and_zero_tensors_give_zero_directions_without_nan(rng):
    model = _fill(MODELS["conv"]().double(), rng)
    linear = _fill(nn.Linear(5, 4), rng)
    with torch.no_grad():
        model[0].weight[2].zero_()
        model[2].weight.zero_()
        linear.weight[1:3].zero_()
    for m in (model, linear):
        for normalization in ("filter", "layer"):
            seed = int(rng.integers(1000))
            vec = directions.random(m, seed=seed, normalization=normalization)
            assert torch.isfinite(vec.tensor).all()
            want = _reference(m, seed, normalization, "biasbn")
            np.testing.assert_allclose(vec.numpy(), want, rtol=1e-6, atol=1e-7 * np.abs(want).max())
    pieces = _pieces(directions.random(model, seed=3))
    assert not pieces["0.weight"][2].any() and pieces["0.weight"][1].any()
    assert not pieces["2.weight"].any()
    rows = _pieces(directions.random(linear, seed=3))["weight"]
    assert not rows[1:3].any() and rows[0].any() and rows[3].any()
    assert not _pieces(directions.random(model, seed=3, normalization="layer"))["2.weight"].any()


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
def test_empty_tensors_are_fine(rng):
    model = nn.Sequential(nn.Linear(4, 0), nn.Linear(0, 3))
    vec = directions.random(model, seed=1)
    assert vec.shapes == [(0, 4), (0,), (3, 0), (3,)]
    assert torch.isfinite(vec.tensor).all() and not vec.tensor.any()


def test_seeds_are_reproducible_and_leave_the_global_rng_alone(rng):
    model = _fill(MODELS["conv"](), rng)
    seed = int(rng.integers(0, 2**32))
    state = torch.get_rng_state()
    first = directions.random(model, seed=seed)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first.tensor, directions.random(model, seed=seed).tensor)
    assert not torch.equal(first.tensor, directions.random(model, seed=seed + 1).tensor)
    assert torch.equal(directions.random(model).tensor, directions.random(model, seed=0).tensor)


def test_include_buffers_lays_out_parameters_then_float_buffers(rng):
    model = _fill(MODELS["norms"](), rng)
    seed = int(rng.integers(1000))
    plain = directions.random(model, seed=seed)
    for ignore in ("biasbn", None):
        vec = directions.random(model, seed=seed, include_buffers=True, ignore=ignore)
        pairs = _tensors(model, include_buffers=True)
        assert vec.names == [n for n, _ in pairs]
        assert "1.num_batches_tracked" not in vec.names and "1.running_var" in vec.names
        assert vec.shapes == [tuple(t.shape) for _, t in pairs]
        want = _reference(model, seed, "filter", ignore, include_buffers=True)
        np.testing.assert_allclose(vec.numpy(), want, rtol=1e-6, atol=1e-7 * np.abs(want).max())
        if ignore == "biasbn":
            assert torch.equal(vec.tensor[: len(plain)], plain.tensor)
        stats = _pieces(vec)["1.running_mean"]
        want = np.zeros(8) if ignore == "biasbn" else model[1].running_mean.double().numpy()
        np.testing.assert_allclose(stats, want, rtol=1e-7)


def test_dtypes_follow_the_parameters(rng):
    for dtype in (torch.float64, torch.float32, torch.float16, torch.bfloat16):
        model = _fill(MODELS["linear"](), rng).to(dtype)
        assert directions.random(model, seed=5).dtype == dtype
    mixed = _fill(MODELS["linear"](), rng)
    mixed[2].double()
    assert directions.random(mixed, seed=5).dtype == torch.float64


def test_random_refusals(rng):
    model = _fill(MODELS["linear"](), rng)
    with pytest.raises(ValueError, match="normalization must be 'filter', 'layer' or 'none'"):
        directions.random(model, normalization="Filter")
    with pytest.raises(ValueError, match="ignore must be 'biasbn'"):
        directions.random(model, ignore="bias")
    with pytest.raises(TypeError, match="seed must be an integer"):
        directions.random(model, seed=1.5)
    with pytest.raises(ValueError, match="seed"):
        directions.random(model, seed=-1)
    with pytest.raises(TypeError, match="include_buffers must be True or False"):
        directions.random(model, include_buffers="yes")
    with pytest.raises(TypeError, match="nn.Module"):
        directions.random(model.state_dict())
    with torch.no_grad():
        model[0].weight[1, 2] = float("nan")
    with pytest.raises(ValueError, match="'0.weight' holds NaN"):
        directions.random(model)
    with pytest.raises(ValueError, match="'0.weight' holds NaN"):
        directions.random(model, normalization="layer")
    assert torch.isfinite(directions.random(model, normalization="none").tensor).all()
    busy = exclusive(list(model.parameters()), "sweep the model", "sweeping")
    with busy, pytest.raises(RuntimeError, match="cannot draw a random direction"):
        directions.random(model)


def _flat(model: nn.Module) -> np.ndarray:
    return np.concatenate([p.detach().double().numpy().ravel() for p in model.parameters()])


def test_between_matches_numpy(rng):
    a, b = (_fill(MODELS["conv"](), rng) for _ in range(2))
    want = _flat(b) - _flat(a)
    forms = [
        (a, b, None),
        (linpath.flatten(a), b.state_dict(), None),
        (a.state_dict(), _flat(b), a),
        (torch.from_numpy(_flat(a)).float(), linpath.flatten(b), None),
    ]
    for x, y, model in forms:
        vec = directions.between(x, y, model=model)
        assert vec.dtype == torch.float64 and vec.names == [n for n, _ in a.named_parameters()]
        np.testing.assert_allclose(vec.numpy(), want, rtol=1e-6, atol=1e-6)
    exact = directions.between(a.double(), b.double())
    np.testing.assert_array_equal(exact.numpy(), _flat(b) - _flat(a))


def test_between_refusals(rng):
    a, b = (_fill(MODELS["linear"](), rng) for _ in range(2))
    with pytest.raises(TypeError, match="pass model="):
        directions.between(a.state_dict(), _flat(b))
    with pytest.raises(ValueError, match="shape"):
        directions.between(a, _fill(nn.Sequential(nn.Linear(7, 6), nn.Tanh(), nn.Linear(6, 3)), rng))
    with pytest.raises(ValueError, match="1-D vector of"):
        directions.between(a, _flat(b)[:-1])
    with pytest.raises(ValueError, match="named"):
        directions.between(a, nn.Sequential(nn.Linear(7, 5), nn.Linear(5, 3)))
    bad = _flat(b)
    bad[3] = np.inf
    with pytest.raises(ValueError, match=r"b contains NaN or infinite values \('0.weight'\[3\]"):
        directions.between(a, bad)
    with pytest.raises(ValueError, match="a contains NaN"):
        directions.between(np.full(bad.size, np.nan), b)


def _gram_schmidt(a, b, c):
    u = (b - a) / np.linalg.norm(b - a)
    w = (c - a) - np.dot(c - a, u) * u
    return u, w / np.linalg.norm(w)


def test_plane_through_matches_numpy(rng):
    a, b, c = (_fill(MODELS["embedding"]().double(), rng) for _ in range(3))
    fa, fb, fc = _flat(a), _flat(b), _flat(c)
    for args, model in (((a, b, c), None), ((fa, b.state_dict(), torch.from_numpy(fc)), a)):
        plane = directions.plane_through(*args, model=model)
        assert isinstance(plane, directions.PlaneThrough)
        u, v = (d.numpy() for d in plane.directions)
        assert plane.center.dtype == torch.float64 and np.array_equal(plane.center.numpy(), fa)
        assert abs(u @ u - 1) < 1e-12 and abs(v @ v - 1) < 1e-12 and abs(u @ v) < 1e-12
        want_u, want_v = _gram_schmidt(fa, fb, fc)
        np.testing.assert_allclose(u, want_u, atol=1e-10)
        np.testing.assert_allclose(v, want_v, atol=1e-10)
        assert plane.points["a"] == (0.0, 0.0)
        assert plane.points["b"][1] == 0.0
        for name, point in (("a", fa), ("b", fb), ("c", fc)):
            x, y = plane.points[name]
            back = fa + x * u + y * v
            assert np.linalg.norm(back - point) <= 1e-10 * np.linalg.norm(point)
        assert plane.points["b"][0] == pytest.approx(np.linalg.norm(fb - fa), rel=1e-12)


def test_plane_through_grid_covers_the_points_with_a_margin(rng):
    model = MODELS["linear"]()
    n = sum(p.numel() for p in model.parameters())
    plane = directions.plane_through(*(rng.normal(size=n) for _ in range(3)), model=model)
    xs, ys = plane.grid(n=9, margin=0.25)
    coords = np.array(list(plane.points.values()))
    for axis, values in enumerate((xs, ys)):
        low, high = coords[:, axis].min(), coords[:, axis].max()
        span = high - low
        assert values.shape == (9,) and np.all(np.diff(values) > 0)
        assert values[0] == pytest.approx(low - 0.25 * span) and values[-1] == pytest.approx(
            high + 0.25 * span
        )
    xs, ys = plane.grid()
    assert len(xs) == len(ys) == 21
    with pytest.raises(ValueError, match="n must be"):
        plane.grid(n=1)
    with pytest.raises(ValueError, match="margin"):
        plane.grid(margin=-0.1)


def test_plane_through_refusals(rng):
    model = MODELS["linear"]()
    n = sum(p.numel() for p in model.parameters())
    a, b = rng.normal(size=n), rng.normal(size=n)
    with pytest.raises(ValueError, match="a and b are the same point"):
        directions.plane_through(a, a.copy(), b, model=model)
    with pytest.raises(ValueError, match="a and c are the same point"):
        directions.plane_through(a, b, a.copy(), model=model)
    with pytest.raises(ValueError, match="b and c are the same point"):
        directions.plane_through(a, b, b.copy(), model=model)
    with pytest.raises(ValueError, match="collinear"):
        directions.plane_through(a, b, a + 2.5 * (b - a), model=model)
    nearly = a - 0.7 * (b - a) + 1e-12 * np.linalg.norm(b - a) * rng.normal(size=n)
    with pytest.raises(ValueError, match="collinear"):
        directions.plane_through(a, b, nearly, model=model)
    with pytest.raises(TypeError, match="pass model="):
        directions.plane_through(a, b, rng.normal(size=n))
    with pytest.raises(ValueError, match="c contains NaN"):
        directions.plane_through(a, b, np.full(n, np.nan), model=model)
    with pytest.raises(ValueError, match="shape"):
        directions.plane_through(
            a, b, _fill(nn.Sequential(nn.Linear(7, 4), nn.Linear(4, 3)), rng), model=model
        )


def _trajectory(points: np.ndarray) -> linpath.Trajectory:
    model = nn.Linear(points.shape[1], 1, bias=False).double()
    recorder = linpath.TrajectoryRecorder(model)
    for row in points:
        with torch.no_grad():
            model.weight.copy_(torch.from_numpy(row).view(1, -1))
        recorder.record()
    return recorder.trajectory


def test_pca_is_the_views_pca_plane(rng):
    traj = _trajectory(rng.normal(size=(7, 12)) @ np.diag(np.linspace(2.0, 0.1, 12)))
    plane = directions.pca(traj)
    assert Plane is directions.Plane and isinstance(plane, Plane)
    assert linpath.views.pca_plane is pca_plane
    for reference in ("final", "mean"):
        new, old = directions.pca(traj, reference=reference), pca_plane(traj, reference)
        for field in ("reference", "directions", "coords", "residuals", "steps"):
            np.testing.assert_array_equal(getattr(new, field), getattr(old, field))
        assert new.explained == old.explained
    assert plane.center is plane.reference
    u, v = plane.direction_vectors
    assert np.array_equal(u, plane.directions[0]) and np.array_equal(v, plane.directions[1])
    with pytest.raises(ValueError, match="only k=2"):
        directions.pca(traj, k=3)
    with pytest.raises(TypeError, match="k must be an integer"):
        directions.pca(traj, k=2.0)
    with pytest.raises(ValueError, match="reference must be"):
        directions.pca(traj, reference="first")


def test_exported():
    assert linpath.directions is directions and "directions" in linpath.__all__
