"""Adversarial cases for planes (``linpath.surface``, ``linpath.directions``, ``linpath.Surface``):
each test is a defect that was found by trying to break them, checked against a float64 reference
written the slow obvious way."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import linpath
from linpath import directions


def _bn_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 3))
    model.train()
    model(torch.randn(32, 3) * 2 + 1)  # running statistics away from their defaults
    return model


@pytest.mark.parametrize("ignore", ["biasbn", None])
def test_random_directions_with_buffers_give_a_surface_that_moves_the_statistics(ignore):
    # directions.random(include_buffers=True) gives every 1-D buffer a zero direction (ignore="biasbn")
    # or its own values (ignore=None): the same for both seeds. The plane is the parameters'; the
    # buffers' part of the directions may be zero or parallel.
    seed = int(torch.randint(1000, ()))
    model = _bn_model(seed)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(24, 3), torch.randint(3, (24,))
    dirs = [directions.random(model, seed=seed + k, include_buffers=True, ignore=ignore) for k in (0, 1)]
    xs, ys = np.array([-0.5, 0.0, 0.25]), np.array([-0.25, 0.5])
    s = linpath.surface(model, model, dirs, (x, y), grid=(xs, ys), progress=False)
    assert s.meta["buffers_moved"]

    twin = copy.deepcopy(model).double().eval()
    tensors = list(twin.parameters()) + [twin[1].running_mean, twin[1].running_var]
    start = [t.detach().clone() for t in tensors]
    want = np.empty((len(ys), len(xs)))
    with torch.no_grad():
        for j, b in enumerate(ys):
            for i, a in enumerate(xs):
                offset = 0
                for t, t0 in zip(tensors, start, strict=True):
                    d = [v.tensor[offset : offset + t.numel()].double().view_as(t) for v in dirs]
                    t.copy_(t0 + a * d[0] + b * d[1])
                    offset += t.numel()
                want[j, i] = nn.functional.cross_entropy(twin(x.double()), y).item()
    np.testing.assert_allclose(s.values["data"]["loss"], want, rtol=1e-5)
    assert model.training and all(torch.equal(state[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("edge", [1e308, np.finfo(np.float64).max])
def test_surface_at_on_a_grid_wider_than_float64_interpolates_correctly(edge):
    # The width of the cell [-edge, edge] overflows float64; the fraction across it must not.
    z = np.random.default_rng().normal(size=(2, 2))
    s = linpath.Surface([-edge, edge], [0.0, 1.0], {"d": {"loss": z}})
    px = np.array([-edge, -edge / 2, 0.0, edge / 4, edge])
    py = np.array([0.0, 0.25, 0.5, 1.0, 1.0])
    t = (px / edge + 1) / 2  # the fraction across the cell, computed without overflow
    want = (1 - t) * (1 - py) * z[0, 0] + t * (1 - py) * z[0, 1] + (1 - t) * py * z[1, 0] + t * py * z[1, 1]
    np.testing.assert_allclose(s.at(px, py), want, rtol=1e-12, atol=1e-15)
    assert s.at(edge, 1.0) == z[1, 1] and s.at(-edge, 0.0) == z[0, 0]


@pytest.mark.parametrize("scale", [1e-200, 1e-300, 1e200])
def test_a_surface_along_very_short_or_long_directions_projects_a_trajectory(scale):
    # surface() takes directions of any non-zero size; projecting onto its plane must not refuse
    # them as zero (their squared norm underflows) or too long (it overflows), nor lose the coords.
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    n = sum(p.numel() for p in model.parameters())
    rng = np.random.default_rng()
    units = rng.normal(size=(2, n))
    center = torch.nn.utils.parameters_to_vector(model.parameters()).double().detach().numpy()
    recorder = linpath.TrajectoryRecorder(model, dtype=torch.float64)
    for step in range(4):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.1)
        recorder.record(step=step)
    x, y = torch.randn(8, 3), torch.randint(2, (8,))
    grid = (np.array([-1.0, 1.0]) / scale,) * 2
    s = linpath.surface(model, center, list(units * scale), (x, y), grid=grid, progress=False)
    on = s.project(recorder)
    # Reference: least squares on the unit-sized directions, in float64, then divided by the scale.
    thetas = np.stack([c.numpy().astype(np.float64) for c in recorder.trajectory]) - center
    coords = np.linalg.solve(units @ units.T, units @ thetas.T).T
    residuals = np.linalg.norm(thetas - coords @ units, axis=1)
    np.testing.assert_allclose(on.coords * scale, coords, rtol=1e-9)
    np.testing.assert_allclose(on.residuals, residuals, rtol=1e-9)


@pytest.mark.parametrize("where", ["direction", "center", "vector"])
def test_a_sparse_vector_is_refused_with_a_type_error(where):
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    n = sum(p.numel() for p in model.parameters())
    dirs = [torch.randn(n, dtype=torch.float64) for _ in range(2)]
    center: object = model
    if where == "direction":
        dirs[1] = dirs[1].to_sparse()
    elif where == "center":
        center = linpath.flatten(model).tensor.to_sparse()
    else:
        names, shapes = zip(*((k, tuple(p.shape)) for k, p in model.named_parameters()), strict=True)
        dirs[0] = linpath.ParamVector(dirs[0].to_sparse(), names, shapes)
    data = (torch.randn(5, 3), torch.randint(2, (5,)))
    with pytest.raises(TypeError, match="layout torch.sparse_coo.*dense"):
        linpath.surface(model, center, dirs, data, grid=([0.0, 1.0],) * 2, progress=False)


class _FailsInBf16(nn.Module):
    """A model whose outputs are NaN when its layers run in bfloat16 (a stand-in for a bf16 overflow)."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.layer(x)
        return torch.full_like(h, float("nan")) if h.dtype == torch.bfloat16 else h


def test_a_bf16_surface_that_is_nan_where_float32_is_finite_fails_its_precision_check():
    model = _FailsInBf16()
    n = sum(p.numel() for p in model.parameters())
    dirs = [torch.randn(n, dtype=torch.float64) for _ in range(2)]
    data = (torch.randn(6, 3), torch.randint(3, (6,)))
    with pytest.warns(UserWarning, match="bf16 sweep's loss deviates"):
        grid = ([0.0, 1.0],) * 2
        s = linpath.surface(model, model, dirs, data, grid=grid, precision="bf16", progress=False)
    assert np.isnan(s.values["data"]["loss"]).all()
    check = s.meta["precision_check"]
    assert not check["ok"]
    assert check["max_rel_loss_deviation"] == np.inf and check["max_abs_error_deviation"] == np.inf


def test_the_precision_check_counts_values_that_agree_as_agreeing_and_others_as_not():
    from linpath.engines import precision_check

    grid, index = np.arange(3.0), np.array([0, 1, 2])
    reference = {"s": {"loss": [np.nan, np.inf, 1.0], "error": [np.nan, 0.5, 0.25]}}
    agree = {"s": {"loss": [np.nan, np.inf, 1.0], "error": [np.nan, 0.5, 0.25]}}
    check = precision_check(reference, grid, index, agree)
    assert check["ok"] and check["max_rel_loss_deviation"] == 0 and check["max_abs_error_deviation"] == 0
    for loss, error in (([1.0, np.inf, 1.0], [np.nan] * 3), ([np.nan, 2.0, np.nan], [0.0, 0.5, np.nan])):
        with pytest.warns(UserWarning, match="deviates"):
            check = precision_check(reference, grid, index, {"s": {"loss": loss, "error": error}})
        assert not check["ok"] and check["max_rel_loss_deviation"] == np.inf
        assert check["max_abs_error_deviation"] == np.inf


@pytest.mark.parametrize(
    "make",
    [
        lambda z: {"values": z + 1j},
        lambda z: {"values": torch.tensor(z) + 1j},
        lambda z: {"origin": np.zeros(3) + 1j},
        lambda z: {"directions": torch.eye(3, dtype=torch.complex128)[:2]},
    ],
)
def test_a_surface_refuses_complex_numbers_instead_of_dropping_their_imaginary_parts(make):
    z = np.random.default_rng().normal(size=(2, 2))
    given = {"values": z, "origin": np.zeros(3), "directions": np.eye(3)[:2], **make(z)}
    with pytest.raises(ValueError, match="real"):
        linpath.Surface(
            [0.0, 1.0],
            [0.0, 1.0],
            {"s": {"loss": given["values"]}},
            origin=given["origin"],
            directions=given["directions"],
        )


def test_a_surface_takes_values_as_tensors_of_any_float_dtype():
    z = torch.randn(2, 3, dtype=torch.float64)
    for dtype in (torch.float64, torch.float32, torch.bfloat16, torch.float16):
        s = linpath.Surface([0.0, 1.0, 2.0], [0.0, 1.0], {"s": {"loss": z.to(dtype)}})
        np.testing.assert_array_equal(s.values["s"]["loss"], z.to(dtype).double().numpy())


def _surface_and_trajectory():
    torch.manual_seed(int(torch.randint(1000, ())))
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    recorder = linpath.TrajectoryRecorder(model)
    for step in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        recorder.record(step=step)
    splits = {name: (torch.randn(8, 3), torch.randint(2, (8,))) for name in ("train", "test")}
    dirs = [directions.random(model, seed=k) for k in (0, 1)]
    s = linpath.surface(model, model, dirs, splits, grid=(np.linspace(-1, 1, 3),) * 2, progress=False)
    return model, recorder, splits, s


def test_project_with_the_dict_of_splits_the_surface_was_computed_on_uses_the_chosen_split():
    model, recorder, splits, s = _surface_and_trajectory()
    twin = copy.deepcopy(model).double().eval()
    for split in ("train", "test"):
        on = s.project(recorder, model=model, data=splits, split=split)
        x, y = splits[split]
        want = []
        for checkpoint in recorder.trajectory:
            torch.nn.utils.vector_to_parameters(checkpoint.tensor.double(), twin.parameters())
            want.append(nn.functional.cross_entropy(twin(x.double()), y).item())
        assert on.split == split
        np.testing.assert_allclose(on.true, want, rtol=1e-5)
    with pytest.raises(ValueError, match=r"no split 'train'; it has \['valid'\]"):
        s.project(recorder, model=model, data={"valid": splits["test"]}, split="train")


def test_project_refuses_a_progress_that_is_not_callable_before_touching_the_model():
    model, recorder, splits, s = _surface_and_trajectory()
    with pytest.raises(TypeError, match="progress must be a callable"):
        s.project(recorder, model=model, data=splits["train"], split="train", progress=True)


def _float64_surface(model: nn.Module, center, dirs, x, y, xs, ys) -> np.ndarray:
    twin = copy.deepcopy(model).double().eval()
    out = np.empty((len(ys), len(xs)))
    with torch.no_grad():
        for j, b in enumerate(ys):
            for i, a in enumerate(xs):
                torch.nn.utils.vector_to_parameters(center + a * dirs[0] + b * dirs[1], twin.parameters())
                out[j, i] = nn.functional.cross_entropy(twin(x.double()), y).item()
    return out


@pytest.mark.parametrize("reach", [1e39, 1e299])
@pytest.mark.parametrize("precision", ["float32", "bf16"])
def test_native_surface_with_coordinates_beyond_float32_along_tiny_directions(reach, precision):
    # θ(c) stays near θ0 (c·d ~ 0.1) but c itself does not fit in float32: the native MLP's first
    # layer (z0 + c·dz) gave NaN there, where the true loss is finite.
    from linpath.models import MLP

    model = MLP((4, 6, 3), seed=int(torch.randint(1000, ())))
    n = sum(p.numel() for p in model.parameters())
    dirs = [torch.randn(n, dtype=torch.float64) * (0.1 / reach) for _ in range(2)]
    x, y = torch.randn(30, 4), torch.randint(3, (30,))
    xs, ys = np.array([-1.0, 0.0, 0.5]) * reach, np.array([-0.5, 1.0]) * reach
    s = linpath.surface(model, model, dirs, (x, y), grid=(xs, ys), progress=False, precision=precision)
    assert s.meta["engine"] == "native"
    center = linpath.flatten(model).tensor.double()
    want = _float64_surface(model.to_torch(), center, dirs, x, y, xs, ys)
    np.testing.assert_allclose(s.values["data"]["loss"], want, rtol=1e-5 if precision == "float32" else 2e-2)


def test_native_line_with_alphas_beyond_float32_is_not_nan():
    # end − start rounds to (nearly) zero in float64, so every α is (nearly) the start; α = -2e39 gave NaN.
    from linpath.models import MLP

    model = MLP((4, 6, 3), seed=int(torch.randint(1000, ())))
    x, y = torch.randn(30, 4), torch.randint(3, (30,))
    start = linpath.flatten(model).tensor.double()
    end = start + torch.randn_like(start) * 1e-30
    alphas = [0.0, 1.0, 1e29, -2e39]
    native = linpath.interpolate(model, start, end, (x, y), alphas=alphas, progress=False)
    module = linpath.interpolate(model.to_torch(), start, end, (x, y), alphas=alphas, progress=False)
    assert native.meta["engine"] == "native" and module.meta["engine"] == "module"
    np.testing.assert_allclose(native.values["data"]["loss"], module.values["data"]["loss"], rtol=1e-5)


def test_a_grid_that_takes_a_moved_buffer_beyond_its_dtype_is_refused_like_a_parameter():
    model = _bn_model(int(torch.randint(1000, ())))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    dirs = [directions.random(model, seed=k, include_buffers=True, ignore=None) for k in (0, 1)]
    # The buffers' directions are their own values (ignore=None); the parameters' are scaled down so
    # that at x = 1e39 only the buffers go beyond float32.
    n = sum(p.numel() for p in model.parameters())
    scale = torch.cat([torch.full((n,), 1e-60, dtype=torch.float64), torch.ones(len(dirs[0]) - n)])
    small = [linpath.ParamVector(d.tensor.double() * scale, d.names, d.shapes) for d in dirs]
    data = (torch.randn(8, 3), torch.randint(3, (8,)))
    with pytest.raises(
        ValueError, match=r"takes buffer '1.running_(mean|var)' to .* beyond the range of its dtype"
    ):
        linpath.surface(model, model, small, data, grid=([0.0, 1e39], [0.0, 1.0]), progress=False)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_a_line_that_takes_a_buffer_beyond_its_dtype_is_refused():
    model = _bn_model(int(torch.randint(1000, ())))
    end = copy.deepcopy(model)
    with torch.no_grad():
        end[1].running_var.mul_(1e30)
    data = (torch.randn(8, 3), torch.randint(3, (8,)))
    with pytest.raises(ValueError, match=r"alpha = 1e\+09 takes buffer '1.running_var'"):
        linpath.interpolate(model, model, end, data, alphas=[0.0, 1.0, 1e9], progress=False)


class _TwoLayers(nn.Module):
    def __init__(self, reverse: bool = False) -> None:
        super().__init__()
        if reverse:  # the same layers, registered in the other order
            self.second, self.first = nn.Linear(4, 3), nn.Linear(3, 4)
        else:
            self.first, self.second = nn.Linear(3, 4), nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(torch.tanh(self.first(x)))


def test_project_refuses_a_trajectory_of_the_same_size_in_another_layout(tmp_path):
    model, twin = _TwoLayers(), _TwoLayers(reverse=True)
    twin.load_state_dict(model.state_dict())  # the very same point, its tensors in another order
    data = (torch.randn(10, 3), torch.randint(3, (10,)))
    dirs = [directions.random(model, seed=k) for k in (0, 1)]
    s = linpath.surface(model, model, dirs, data, grid=(np.linspace(-1, 1, 3),) * 2, progress=False)
    s.save(tmp_path / "s.npz")
    own, other = linpath.TrajectoryRecorder(model), linpath.TrajectoryRecorder(twin)
    own.record(step=0)
    other.record(step=0)
    for surface in (s, linpath.Surface.load(tmp_path / "s.npz")):
        np.testing.assert_array_equal(surface.project(own).coords, [[0.0, 0.0]])
        with pytest.raises(
            ValueError, match="layout differs from the surface's: tensor 0 is named 'second.weight'"
        ):
            surface.project(other)


@pytest.mark.parametrize("layout", ["abc", [1, 2], [["w", "x"]], [["w", None]]])
def test_project_refuses_a_malformed_layout_in_the_meta_with_a_value_error(layout):
    model = _TwoLayers()
    n = sum(p.numel() for p in model.parameters())
    plane = {"origin": np.zeros(n), "directions": np.eye(n)[:2]}
    values = {"s": {"loss": np.zeros((2, 2))}}
    s = linpath.Surface([0.0, 1.0], [0.0, 1.0], values, {"layout": layout}, **plane)
    recorder = linpath.TrajectoryRecorder(model)
    recorder.record(step=0)
    with pytest.raises(ValueError, match=r"meta\['layout'\] is not a list of \[name, shape\] pairs"):
        s.project(recorder)
