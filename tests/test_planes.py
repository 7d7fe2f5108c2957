"""``linpath.surface`` (python/linpath/planes.py): J on a plane by every engine, against a float64 loop
over the grid written the slow obvious way; bad input refused; the model left exactly as it was."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import linpath
from linpath.models import MLP

XS, YS = np.linspace(-1.0, 1.5, 7), np.linspace(-0.5, 1.0, 5)


def _data(n: int, width: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, width, generator=gen), torch.randint(classes, (n,), generator=gen)


def _flat_directions(model: nn.Module, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    n = sum(p.numel() for p in model.parameters())
    return [torch.randn(n, generator=gen, dtype=torch.float64) * 0.05 for _ in range(2)]


def float64_grid(model: nn.Module, center: torch.Tensor, dirs, x, y, xs=XS, ys=YS) -> np.ndarray:
    """Mean cross-entropy at every grid point, all in float64, ``[len(ys), len(xs)]``."""
    twin = copy.deepcopy(model).double().eval()
    params = list(twin.parameters())
    out = np.empty((len(ys), len(xs)))
    with torch.no_grad():
        for j, b in enumerate(ys):
            for i, a in enumerate(xs):
                torch.nn.utils.vector_to_parameters(center + a * dirs[0] + b * dirs[1], params)
                out[j, i] = nn.functional.cross_entropy(twin(x.double()), y).item()
    return out


@pytest.mark.parametrize("activation", ["relu", "maxout", "tanh"])
def test_native_and_module_surfaces_equal_a_float64_loop(activation):
    model = MLP((10, 16, 12, 4), activation=activation, seed=3)
    x, y = _data(300, 10, 4, 1)
    dirs = _flat_directions(model, 4)
    center = linpath.flatten(model).tensor.double()
    want = float64_grid(model.to_torch(), center, dirs, x, y)
    grid = (XS, YS)
    native = linpath.surface(model, model, dirs, (x, y), grid=grid, batch_size=64, progress=False)
    module = linpath.surface(model.to_torch(), model, dirs, (x, y), grid=grid, batch_size=64, progress=False)
    assert native.meta["engine"] == "native" and module.meta["engine"] == "module"
    for s in (native, module):
        assert s.values["data"]["loss"].shape == (len(YS), len(XS))
        np.testing.assert_allclose(s.values["data"]["loss"], want, rtol=1e-5)
    np.testing.assert_allclose(
        native.values["data"]["error"], module.values["data"]["error"], atol=1 / 300 + 1e-12
    )


def test_a_conv_net_on_the_module_engine_uses_the_input_layer_cache_and_is_exact():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3))
    x, y = torch.randn(40, 2, 6, 6), torch.randint(3, (40,))
    dirs = _flat_directions(model, 6)
    center = linpath.flatten(model).tensor.double()
    want = float64_grid(model, center, dirs, x, y)
    got = linpath.surface(model, model, dirs, (x, y), grid=(XS, YS), batch_size=16, progress=False)
    np.testing.assert_allclose(got.values["data"]["loss"], want, rtol=1e-5)


def test_the_plane_is_kept_for_projection_and_the_model_is_untouched():
    model = MLP((6, 8, 3), seed=1)
    x, y = _data(50, 6, 3, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    dirs = _flat_directions(model, 7)
    s = linpath.surface(model, model, dirs, (x, y), grid=(XS, YS), progress=False)
    np.testing.assert_array_equal(s.origin, linpath.flatten(model).tensor.double().numpy())
    np.testing.assert_array_equal(s.directions, np.stack([d.numpy() for d in dirs]))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    np.testing.assert_array_equal(s.xs, XS)
    np.testing.assert_array_equal(s.ys, YS)


def test_bf16_surface_reports_its_float32_check_at_the_corners_and_centre():
    model = MLP((10, 32, 32, 4), seed=2)
    x, y = _data(200, 10, 4, 3)
    s = linpath.surface(
        model, model, _flat_directions(model, 1), (x, y), grid=(XS, YS), precision="bf16", progress=False
    )
    check = s.meta["precision_check"]
    corners = {(XS[0], YS[0]), (XS[-1], YS[0]), (XS[0], YS[-1]), (XS[-1], YS[-1]), (XS[3], YS[2])}
    assert {tuple(p) for p in check["points"]} == corners
    assert check["ok"] and check["max_rel_loss_deviation"] < 2e-2


def test_directions_with_buffers_move_batchnorm_statistics_and_everything_is_restored():
    torch.manual_seed(8)
    model = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))
    model.train()
    model(torch.randn(64, 5))  # non-trivial running statistics
    x, y = torch.randn(30, 5), torch.randint(3, (30,))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    names = [n for n, _ in model.named_parameters()] + ["1.running_mean", "1.running_var"]
    shapes = [tuple(p.shape) for p in model.parameters()] + [(6,), (6,)]
    n = sum(int(np.prod(s)) for s in shapes)
    gen = torch.Generator().manual_seed(2)
    dirs = [linpath.ParamVector(torch.rand(n, generator=gen) * 0.1, names, shapes) for _ in range(2)]
    s = linpath.surface(model, model, dirs, (x, y), grid=([0.0, 1.0], [0.0, 0.5]), progress=False)
    assert s.meta["buffers_moved"]
    twin = copy.deepcopy(model).eval()
    with torch.no_grad():
        offset = sum(p.numel() for p in model.parameters())
        flat = linpath.flatten(model).tensor + 1.0 * dirs[0].tensor[:offset] + 0.5 * dirs[1].tensor[:offset]
        torch.nn.utils.vector_to_parameters(flat, twin.parameters())
        twin[1].running_mean += (
            dirs[0].tensor[offset : offset + 6] + 0.5 * dirs[1].tensor[offset : offset + 6]
        )
        twin[1].running_var += dirs[0].tensor[offset + 6 :] + 0.5 * dirs[1].tensor[offset + 6 :]
        want = nn.functional.cross_entropy(twin(x), y).item()
    assert s.values["data"]["loss"][1, 1] == pytest.approx(want, rel=1e-5)
    assert model.training
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def _case():
    model = MLP((6, 8, 3), seed=1)
    return model, _data(40, 6, 3, 5), _flat_directions(model, 2)


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda d: [d[0][:-1], d[1]], ValueError, "expected a 1-D vector of 83 values"),
        (lambda d: [torch.zeros_like(d[0]), d[1]], ValueError, "zero everywhere"),
        (lambda d: [d[0], -3.0 * d[0]], ValueError, "parallel"),
        (
            lambda d: [d[0].index_fill(0, torch.tensor([4]), float("nan")), d[1]],
            ValueError,
            r"NaN.*'layers.0.weight'\[4\]",
        ),
        (lambda d: [d[0]], ValueError, "exactly two directions"),
        (lambda d: [d[0], d[1], d[0]], ValueError, "exactly two directions"),
        (lambda d: "random", TypeError, "sequence of vectors"),
        (lambda d: [d[0], d[1].int()], TypeError, "floating-point"),
    ],
)
def test_bad_directions_are_refused_and_the_model_is_untouched(change, error, match):
    model, data, dirs = _case()
    before = linpath.flatten(model).tensor.clone()
    with pytest.raises(error, match=match):
        linpath.surface(model, model, change(dirs), data, progress=False)
    assert torch.equal(linpath.flatten(model).tensor, before)


@pytest.mark.parametrize(
    ("grid", "error", "match"),
    [
        (([], [0.0]), ValueError, "non-empty"),
        (([0.0, 1.0], [1.0, 0.0]), ValueError, "strictly increasing"),
        (([0.0, 0.0], [0.0, 1.0]), ValueError, "strictly increasing"),
        (([0.0, float("nan")], [0.0]), ValueError, "finite"),
        (([0.0, 1.0],), TypeError, r"\(xs, ys\) pair"),
        ((["a"], [0.0]), TypeError, "real numbers"),
    ],
)
def test_bad_grids_are_refused(grid, error, match):
    model, data, dirs = _case()
    with pytest.raises(error, match=match):
        linpath.surface(model, model, dirs, data, grid=grid, progress=False)


def test_a_failing_loss_and_ctrl_c_leave_the_model_exactly_as_it_was():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 5), nn.Dropout(0.2), nn.Linear(5, 2)).train()
    model[0].weight.requires_grad_(False)
    x, y = torch.randn(20, 4), torch.randint(2, (20,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    dirs = _flat_directions(model, 3)
    calls = [0]

    def failing(out, target):
        calls[0] += 1
        if calls[0] == 5:
            raise exc
        return nn.functional.cross_entropy(out, target)

    for exc in (RuntimeError("boom"), KeyboardInterrupt()):
        calls[0] = 0
        with pytest.raises(type(exc)):
            linpath.surface(model, model, dirs, (x, y), grid=(XS, YS), loss=failing, progress=False)
        assert model.training and not model[0].weight.requires_grad and model[2].weight.requires_grad
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
