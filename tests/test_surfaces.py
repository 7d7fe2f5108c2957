"""Surface (python/linpath/surfaces.py) and plot_surface (python/linpath/plotting.py): construction, the
saved file, reading values off the grid, a trajectory on the plane, and the plots."""

import importlib
import json
import os
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch import nn

import linpath
from linpath import Surface, TrajectoryRecorder
from linpath.plotting import save_figure
from linpath.surfaces import TrajectoryOnSurface


@pytest.fixture
def rng():
    """Fresh random inputs every run (the seed is printed, so a failure can be replayed)."""
    seed = np.random.SeedSequence().entropy
    print(f"seed {seed}")
    return np.random.default_rng(seed)


def random_grid(rng, n):
    """A strictly increasing, unevenly spaced grid of ``n`` points."""
    return np.cumsum(rng.uniform(0.05, 1.0, n)) - rng.uniform(0, 3)


def random_surface(rng, nx=6, ny=4, n=9, plane=True, nan=False):
    xs, ys = random_grid(rng, nx), random_grid(rng, ny)
    values = {
        "train": {"loss": rng.normal(size=(ny, nx)), "error": rng.random((ny, nx))},
        "vä lid": {"loss": rng.normal(size=(ny, nx))},
    }
    if nan:
        values["train"]["loss"][rng.integers(ny), rng.integers(nx)] = np.nan
        values["vä lid"]["loss"][0, 0] = -np.inf
    meta = {"axes": ["u", "v"], "x": float(rng.normal()), "ü": [1, None, "z"]}
    kw = {"origin": rng.normal(size=n), "directions": rng.normal(size=(2, n))} if plane else {}
    return Surface(xs, ys, values, meta, **kw)


# --- construction ---------------------------------------------------------------------------------------

GOOD_X, GOOD_Y = np.array([0.0, 1.0, 2.0]), np.array([-1.0, 1.0])
BAD_GRIDS = {
    "empty": ([], r"xs must be a non-empty 1-D grid, got shape \(0,\)"),
    "2-D": ([[0.0, 1.0]], r"xs must be a non-empty 1-D grid, got shape \(1, 2\)"),
    "NaN": ([0.0, np.nan, 2.0], "xs must be finite, got NaN or infinite values at"),
    "inf": ([0.0, 1.0, np.inf], "xs must be finite"),
    "unsorted": ([0.0, 2.0, 1.0], r"xs must be strictly increasing \(no duplicates\), but xs\[1\] = 2.0"),
    "duplicate": (
        [0.0, 1.0, 1.0],
        r"strictly increasing \(no duplicates\), but xs\[1\] = 1.0 and xs\[2\] = 1.0",
    ),
    "text": (["a", "b", "c"], "xs must be a 1-D sequence of finite numbers"),
}


@pytest.mark.parametrize("case", list(BAD_GRIDS))
def test_bad_grids_are_refused(case):
    xs, match = BAD_GRIDS[case]
    with pytest.raises(ValueError, match=match):
        Surface(xs, GOOD_Y, {"t": {"loss": np.zeros((2, 3))}})
    with pytest.raises(ValueError, match=match.replace("xs", "ys")):
        Surface(GOOD_Y, xs, {"t": {"loss": np.zeros((3, 2))}})


def test_values_must_have_the_grids_shape_rows_along_y():
    with pytest.raises(ValueError, match=r"values\['t'\]\['loss'\] has shape \(3, 2\); expected .* \(2, 3\)"):
        Surface(GOOD_X, GOOD_Y, {"t": {"loss": np.zeros((3, 2))}})  # transposed
    with pytest.raises(TypeError, match="split and metric names must be strings"):
        Surface(GOOD_X, GOOD_Y, {"t": {1: np.zeros((2, 3))}})


def test_a_plane_must_be_a_plane(rng):
    z = {"t": {"loss": np.zeros((2, 3))}}
    o, d = rng.normal(size=5), rng.normal(size=(2, 5))
    cases = [
        ({"origin": o}, "give both origin and directions"),
        ({"directions": d}, "give both origin and directions"),
        ({"origin": o, "directions": d[:, :4]}, r"directions must have shape \(2, 5\)"),
        ({"origin": o, "directions": d[:1]}, r"directions must have shape \(2, 5\)"),
        ({"origin": o[None], "directions": d}, "origin must be a flat vector"),
        ({"origin": np.where(np.arange(5) == 2, np.nan, o), "directions": d}, "must be finite"),
        ({"origin": o, "directions": np.stack([d[0], np.zeros(5)])}, "direction 1 is zero"),
        ({"origin": o, "directions": np.stack([d[0], -3 * d[0]])}, "parallel"),
        ({"origin": o, "directions": [d[0], d[1, :4]]}, "vectors of one length"),
        ({"origin": o, "directions": []}, "vectors of one length"),
        ({"origin": o, "directions": (v for v in [d[0]])}, r"shape \(2, 5\) like the origin, got \(1, 5\)"),
    ]
    for kw, match in cases:
        with pytest.raises(ValueError, match=match):
            Surface(GOOD_X, GOOD_Y, z, **kw)
    # A sequence of vectors (tensors, ParamVectors) works as well as an array.
    s = Surface(GOOD_X, GOOD_Y, z, origin=torch.from_numpy(o), directions=[torch.from_numpy(v) for v in d])
    assert s.origin.dtype == np.float64 and np.array_equal(s.directions, d) and s.has_plane


def test_attributes_repr_and_to_dict(rng):
    s = random_surface(rng, nx=5, ny=3, n=7)
    assert s.splits == ["train", "vä lid"]
    assert repr(s).startswith("Surface(5x3 grid") and "plane of 7 parameters" in repr(s)
    d = json.loads(json.dumps(s.to_dict()))
    assert d["plane"] is True and "origin" not in d and np.array_equal(d["values"]["train"]["loss"], s.grid())
    assert d["xs"] == s.xs.tolist() and d["meta"] == s.meta
    with pytest.raises(KeyError, match="no split 'nope'"):
        s.grid("nope")
    with pytest.raises(KeyError, match="has no metric 'acc'"):
        s.grid("train", "acc")


# --- values off the grid ----------------------------------------------------------------------------------


def reference_bilinear(xs, ys, z, x, y):
    """Bilinear interpolation the slow way: find the cell by scanning, weigh its four corners."""
    i = max(k for k in range(len(xs) - 1) if xs[k] <= x) if x < xs[-1] else len(xs) - 2
    j = max(k for k in range(len(ys) - 1) if ys[k] <= y) if y < ys[-1] else len(ys) - 2
    tx, ty = (x - xs[i]) / (xs[i + 1] - xs[i]), (y - ys[j]) / (ys[j + 1] - ys[j])
    return (
        (1 - tx) * (1 - ty) * z[j, i]
        + tx * (1 - ty) * z[j, i + 1]
        + (1 - tx) * ty * z[j + 1, i]
        + tx * ty * z[j + 1, i + 1]
    )


def test_at_matches_a_reference_on_random_grids(rng):
    for _ in range(20):
        s = random_surface(rng, nx=int(rng.integers(2, 9)), ny=int(rng.integers(2, 9)), plane=False)
        z = s.grid("vä lid")
        px = rng.uniform(s.xs[0], s.xs[-1], 30)
        py = rng.uniform(s.ys[0], s.ys[-1], 30)
        want = [reference_bilinear(s.xs, s.ys, z, x, y) for x, y in zip(px, py, strict=True)]
        np.testing.assert_allclose(s.at(px, py, "vä lid"), want, rtol=1e-12, atol=1e-12)
        got = s.at(float(px[0]), float(py[0]), split="vä lid")
        assert isinstance(got, float) and got == pytest.approx(want[0], rel=1e-12, abs=1e-12)
        # At the grid points (the corners included) exactly the values.
        gx, gy = np.meshgrid(s.xs, s.ys)
        assert np.array_equal(s.at(gx, gy, "vä lid"), z)


def test_at_refuses_points_outside_and_keeps_nan(rng):
    s = random_surface(rng, nx=4, ny=4, plane=False)
    for x, y in [(s.xs[0] - 1e-9, s.ys[0]), (s.xs[0], s.ys[-1] + 1e-9), (np.nan, s.ys[0])]:
        with pytest.raises(ValueError, match="is outside the grid"):
            s.at(x, y)
    z = s.grid().copy()
    z[1, 1] = np.nan
    s = Surface(s.xs, s.ys, {"t": {"loss": z}})
    mid = lambda g, k: 0.5 * (g[k] + g[k + 1])  # noqa: E731
    for i, j in [(0, 0), (1, 0), (0, 1), (1, 1)]:  # the four cells around the NaN
        assert np.isnan(s.at(mid(s.xs, i), mid(s.ys, j)))
    assert np.isnan(s.at(s.xs[1], s.ys[1]))
    # Beside it, a grid point and an edge that do not use the NaN corner stay finite.
    assert s.at(s.xs[2], s.ys[1]) == z[1, 2]
    assert s.at(s.xs[0], s.ys[0]) == z[0, 0]  # its cell has the NaN corner, with weight zero
    assert np.isfinite(s.at(mid(s.xs, 0), s.ys[0]))  # on the cell's lower edge
    assert np.isfinite(s.at(mid(s.xs, 1), s.ys[2]))
    assert np.isfinite(s.at(mid(s.xs, 2), mid(s.ys, 2)))


def test_minimum_and_nonfinite(rng):
    s = random_surface(rng, plane=False)
    z = s.grid("train")
    j, i = divmod(int(np.argmin(z)), z.shape[1])
    assert s.minimum() == (s.xs[i], s.ys[j], z[j, i])
    assert s.nonfinite() == [] and s.nonfinite("vä lid") == []
    s = random_surface(rng, plane=False, nan=True)
    bad = np.argwhere(np.isnan(s.grid("train")))[0]
    assert s.nonfinite() == [(s.xs[bad[1]], s.ys[bad[0]])]
    assert s.nonfinite("vä lid") == [(s.xs[0], s.ys[0])]
    with pytest.warns(
        RuntimeWarning, match=r"the minimum of loss on split 'vä lid' is unknown.*NaN or infinite"
    ):
        assert np.isnan(s.minimum("vä lid")).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isfinite(s.minimum("train", "error")).all()


# --- saving and loading -----------------------------------------------------------------------------------


@pytest.mark.parametrize("plane", [True, False])
def test_round_trip(rng, tmp_path, plane):
    s = random_surface(rng, nx=int(rng.integers(1, 8)), ny=int(rng.integers(1, 8)), nan=True)
    s.values["train"]["error"] = np.asfortranarray(s.values["train"]["error"])  # Fortran order survives
    s.save(tmp_path / "s.npz", plane=plane)
    loaded = Surface.load(tmp_path / "s.npz")
    assert loaded.has_plane is plane
    if plane:
        assert loaded == s and loaded.origin.tobytes() == s.origin.tobytes()
    else:
        assert loaded != s and loaded.origin is None and loaded.directions is None
        assert loaded == Surface(s.xs, s.ys, s.values, s.meta)
    for split, mv in s.values.items():
        for metric, v in mv.items():
            assert loaded.values[split][metric].tobytes() == np.ascontiguousarray(v).tobytes()


def test_truncated_and_damaged_files_are_value_errors_naming_the_file(rng, tmp_path):
    s = random_surface(rng, nan=True)
    good = tmp_path / "good.npz"
    s.save(good)
    raw = good.read_bytes()
    bad = tmp_path / "bad.npz"
    for cut in range(0, len(raw), 7):
        bad.write_bytes(raw[:cut])
        with pytest.raises(ValueError, match=f"{bad} is not a readable linpath Surface file"):
            Surface.load(bad)
    outcomes = {"ValueError": 0, "equal": 0}
    for _ in range(300):
        damaged = bytearray(raw)
        i = int(rng.integers(len(raw)))
        damaged[i] ^= 1 << int(rng.integers(8))
        bad.write_bytes(bytes(damaged))
        try:
            loaded = Surface.load(bad)
        except ValueError as e:
            assert str(bad) in str(e)
            outcomes["ValueError"] += 1
            continue
        assert loaded == s, f"a flip at byte {i} loaded different content"
        outcomes["equal"] += 1
    assert outcomes["ValueError"] > 100


def test_other_files_are_refused(rng, tmp_path):
    sweep = linpath.Sweep(np.linspace(0, 1, 3), {"t": {"loss": np.zeros(3)}})
    sweep.save(tmp_path / "sweep.npz")
    with pytest.raises(ValueError, match="not a readable linpath Surface file .*unknown format or version"):
        Surface.load(tmp_path / "sweep.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(ValueError, match="not a readable linpath Surface file"):
        Surface.load(tmp_path / "text.npz")
    with pytest.raises(FileNotFoundError):
        Surface.load(tmp_path / "missing.npz")


def test_a_header_without_the_plane_flag_or_its_vectors_is_refused(rng, tmp_path, monkeypatch):
    # By the module object (linpath.surfaces).
    surface_module = importlib.import_module("linpath.surfaces")
    s = random_surface(rng)
    original = surface_module.write_archive
    for change, match in [
        (lambda h, a: h.pop("plane"), "does not say whether the plane is kept"),
        (lambda h, a: h.update(plane=1), "does not say whether the plane is kept"),
        (lambda h, a: a.pop("directions"), "directions.npy"),
    ]:

        def edited(path, header, arrays, change=change):
            header, arrays = dict(header), dict(arrays)
            change(header, arrays)
            original(path, header, arrays)

        monkeypatch.setattr(surface_module, "write_archive", edited)
        s.save(tmp_path / "s.npz")
        with pytest.raises(ValueError, match=match):
            Surface.load(tmp_path / "s.npz")


def test_non_regular_paths_are_refused(rng, tmp_path):
    s = random_surface(rng)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (fifo, "/dev/zero", tmp_path):  # a pipe would block forever, /dev/zero never ends
        with pytest.raises(ValueError, match="not a regular file"):
            Surface.load(path)
    for path in (fifo, tmp_path):
        with pytest.raises(ValueError, match="not a regular file"):
            s.save(path)


# --- a trajectory on the plane ----------------------------------------------------------------------------


def reference_plane_coords(thetas, origin, directions):
    """Coordinates and distances off the plane through an orthonormal basis (QR), in float64."""
    q, r = np.linalg.qr(directions.T)  # directions.T = q r
    rel = thetas - origin
    inplane = rel @ q
    coords = np.linalg.solve(r, inplane.T).T
    return coords, np.linalg.norm(rel - inplane @ q.T, axis=1), np.linalg.norm(rel, axis=1)


def tiny_model(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()


def train_recorded(model, x, y, steps, rng):
    recorder = TrajectoryRecorder(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    for step in range(steps):
        if step % 2 == 0:
            recorder.record(step * 10)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return recorder.trajectory


def flat_params(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy().astype(np.float64)


def slow_loss(model, theta, x, y):
    """Mean cross-entropy at θ in float64, written into a copy of the model."""
    copy = tiny_model(0)
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(torch.from_numpy(theta), copy.parameters())
        return float(nn.functional.cross_entropy(copy(x), y))


def test_project_matches_a_numpy_reference(rng):
    seed = int(rng.integers(2**31))
    model = tiny_model(seed)
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(40, 3, generator=g, dtype=torch.float64), torch.randint(0, 2, (40,), generator=g)
    trajectory = train_recorded(model, x, y, 16, rng)
    n = trajectory.numel
    origin, directions = flat_params(model) + rng.normal(size=n), rng.normal(size=(2, n))
    s = Surface(
        np.linspace(-2, 2, 9),
        np.linspace(-2, 2, 7),
        {"train": {"loss": rng.random((7, 9))}},
        origin=origin,
        directions=directions,
    )
    got = s.project(trajectory)
    assert isinstance(got, TrajectoryOnSurface)
    thetas = np.stack([c.tensor.numpy() for c in trajectory])
    coords, residuals, displacements = reference_plane_coords(thetas, origin, directions)
    np.testing.assert_allclose(got.coords, coords, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got.residuals, residuals, rtol=0, atol=1e-9)
    assert np.array_equal(got.steps, np.arange(0, 160, 20)) and got.true is None and got.split == "train"
    inside = (np.abs(coords) <= 2).all(axis=1)
    want = [
        reference_bilinear(s.xs, s.ys, s.grid(), a, b) if ok else np.nan
        for (a, b), ok in zip(coords, inside, strict=True)
    ]
    np.testing.assert_allclose(got.interpolated, want, rtol=1e-9, atol=1e-12)
    assert got.max_residual == pytest.approx(residuals.max(), rel=1e-12)
    assert got.explained == pytest.approx(1 - (residuals**2).sum() / (displacements**2).sum(), rel=1e-9)
    d = json.loads(json.dumps(got.to_dict()))
    assert d["true"] is None and np.allclose(d["coords"], coords, atol=1e-9)
    lines = got.table().splitlines()
    assert len(lines) == 1 + len(trajectory) and lines[0].split()[:4] == ["step", "x", "y", "residual"]
    assert lines[1].split()[-3:-1] == ["-", f"{got.interpolated[0]:.6g}"] and lines[1].split()[-1] == "-"


def test_true_loss_against_the_grid_for_a_trajectory_in_the_plane(rng):
    """A surface computed the slow way; the checkpoints lie in the plane, so J there and J read off a
    fine grid agree up to the interpolation error."""
    seed = int(rng.integers(2**31))
    model = tiny_model(seed)
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(30, 3, generator=g, dtype=torch.float64), torch.randint(0, 2, (30,), generator=g)
    origin = flat_params(model)
    directions = rng.normal(size=(2, origin.size)) * 0.3
    xs, ys = np.linspace(-1, 1, 41), np.linspace(-1, 1, 37)
    z = np.array(
        [[slow_loss(model, origin + a * directions[0] + b * directions[1], x, y) for a in xs] for b in ys]
    )
    s = Surface(xs, ys, {"train": {"loss": z}}, origin=origin, directions=directions)
    coords = rng.uniform(-0.9, 0.9, (5, 2))
    recorder = TrajectoryRecorder(model)
    for k, (a, b) in enumerate(coords):
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(
                torch.from_numpy(origin + a * directions[0] + b * directions[1]), model.parameters()
            )
        recorder.record(k)
    calls = []
    got = s.project(recorder, model=model, data=(x, y), progress=lambda done, total: calls.append(done))
    assert calls == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(got.coords, coords, atol=1e-9)
    np.testing.assert_allclose(got.residuals, 0, atol=1e-9)
    true = [slow_loss(model, origin + a * directions[0] + b * directions[1], x, y) for a, b in coords]
    np.testing.assert_allclose(got.true, true, rtol=1e-9)
    want = [reference_bilinear(xs, ys, z, a, b) for a, b in coords]
    np.testing.assert_allclose(got.interpolated, want, rtol=1e-9)
    np.testing.assert_allclose(got.interpolated, got.true, rtol=0, atol=2e-3)  # bilinear error on h = 0.05
    assert np.array_equal(got.difference, got.true - got.interpolated)
    row = got.table().splitlines()[1].split()
    assert row[4:] == [f"{got.true[0]:.6g}", f"{got.interpolated[0]:.6g}", f"{got.difference[0]:.3g}"]


def test_project_refusals(rng):
    model = tiny_model(1)
    recorder = TrajectoryRecorder(model)
    recorder.record()
    recorder.record()
    n = flat_params(model).size
    planeless = Surface(GOOD_X, GOOD_Y, {"t": {"loss": np.zeros((2, 3))}})
    with pytest.raises(ValueError, match=r"this surface has no plane .*keep them"):
        planeless.project(recorder)
    s = Surface(
        GOOD_X,
        GOOD_Y,
        {"t": {"loss": np.zeros((2, 3))}},
        origin=np.zeros(n),
        directions=rng.normal(size=(2, n)),
    )
    with pytest.raises(ValueError, match="give both model and data"):
        s.project(recorder, model=model)
    errors_only = Surface(
        GOOD_X, GOOD_Y, {"t": {"error": np.zeros((2, 3))}}, origin=s.origin, directions=s.directions
    )
    with pytest.raises(ValueError, match=r"no loss on split 't' \(only \['error'\]\)"):
        errors_only.project(recorder)
    s.meta["loss"] = "mse_loss"
    with pytest.raises(ValueError, match="computed with the loss 'mse_loss'"):
        s.project(recorder, model=model, data=(torch.zeros(2, 3, dtype=torch.float64), torch.zeros(2).long()))


# --- plots ------------------------------------------------------------------------------------------------


def colourbar_labels(ax):
    return {a.get_ylabel() for a in ax.figure.axes if a is not ax}


@pytest.mark.parametrize("kind", ["contour", "filled", "heatmap", "3d"])
@pytest.mark.parametrize("with_trajectory", [False, True])
def test_every_kind_draws_and_saves(rng, tmp_path, kind, with_trajectory):
    xs, ys = np.linspace(-1, 1, 15), random_grid(rng, 11)  # y unevenly spaced
    gx, gy = np.meshgrid(xs, ys)
    z = 1 + gx**2 + (gy - ys.mean()) ** 2 + 0.1 * rng.random(gx.shape)
    z[3, 4] = np.nan
    meta = {"axes": ["d1", "dir B"], "points": {"a": [0.0, float(ys[2])], "b": [0.5, float(ys[5])]}}
    model = tiny_model(2)
    n = flat_params(model).size
    s = Surface(
        xs, ys, {"train": {"loss": z}}, meta, origin=flat_params(model), directions=rng.normal(size=(2, n))
    )
    trajectory = None
    if with_trajectory:
        recorder = TrajectoryRecorder(model)
        for k in range(4):
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(0.1 * torch.randn_like(p))
            recorder.record(k)
        trajectory = recorder if kind != "filled" else s.project(recorder)  # either form
    ax = s.plot(kind, trajectory=trajectory, log=kind == "heatmap")
    assert ax.get_xlabel() == "coordinate along d1" and ax.get_ylabel() == "coordinate along dir B"
    labels = colourbar_labels(ax)
    assert ("log10 $J(\\theta)$" if kind == "heatmap" else "$J(\\theta)$") in labels
    lines = {line.get_label() for line in ax.get_lines()}
    assert "NaN/inf at 1 grid point" in lines
    assert {t.get_text() for t in ax.texts} >= {" a", " b"}
    if with_trajectory:
        assert "distance off the plane" in labels and {"trajectory (projected)", "start", "end"} <= lines
        path = next(line for line in ax.get_lines() if line.get_label() == "trajectory (projected)")
        assert len(path.get_xdata()) == 4
        assert "of the squared displacement" in ax.get_title()
    else:
        assert "distance off the plane" not in labels and "start" not in lines
    out = tmp_path / f"{kind}.png"
    save_figure(ax.figure, out)
    assert out.stat().st_size > 1000 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_refusals(rng):
    s = random_surface(rng, plane=False)
    with pytest.raises(ValueError, match="unknown kind 'surface'"):
        s.plot("surface")
    _, ax = plt.subplots()
    with pytest.raises(ValueError, match="must be a 3-D axes"):
        s.plot("3d", ax=ax)
    with pytest.raises(ValueError, match="log=True needs positive values"):
        s.plot(log=True, split="vä lid")
    with pytest.raises(ValueError, match="at least 2 grid points"):
        Surface([0.0], [0.0, 1.0], {"t": {"loss": [[1.0], [2.0]]}}).plot()
    for bad in ([np.nan, 1.0], [2.0, 1.0], [], 0, -3):
        with pytest.raises(ValueError, match="levels must be"):
            s.plot(levels=bad)
    with pytest.raises(TypeError, match="levels must be a number of levels or a sequence"):
        s.plot(levels="many")
    s.meta["points"] = {"a": [1.0]}
    with pytest.raises(ValueError, match=r'meta\["points"\] must map names to \[x, y\] pairs'):
        s.plot()
    plt.close("all")


def test_plot_with_a_path_draws_the_trajectory_and_saves_in_one_call(rng, tmp_path):
    """Surface.plot(..., trajectory=, path=): the surface, the path on it and the file, in one call."""
    model = torch.nn.Linear(3, 2).double()
    recorder = TrajectoryRecorder(model)
    for _ in range(4):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.from_numpy(rng.normal(size=tuple(p.shape))))
        recorder.record()
    n = sum(p.numel() for p in model.parameters())
    xs, ys = np.linspace(-3, 3, 5), np.linspace(-2, 2, 4)
    values = {"data": {"loss": rng.random((4, 5)) + 0.1}}
    s = Surface(xs, ys, values, origin=rng.normal(size=n), directions=rng.normal(size=(2, n)))
    path = tmp_path / "plane.png"
    ax = s.plot("contour", trajectory=recorder, path=path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any(line.get_label() != "" for line in ax.get_lines())
    assert any(
        getattr(c, "get_label", lambda: "")() == "distance off the plane" or True for c in ax.figure.axes
    )
