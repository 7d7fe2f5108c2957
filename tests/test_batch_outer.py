"""The batch-outer loop (python/linpath/batch_outer.py): each batch of a DataLoader read once and
evaluated at every point gives the point-outer loop's numbers, bit for bit, on real MNIST."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import linpath
import linpath.datasets
from linpath.batch_outer import batch_outer_splits, check_order
from linpath.data import as_splits

ALPHAS = np.linspace(-0.5, 1.5, 5)


@pytest.fixture(scope="module")
def mnist_subset():
    """256 real MNIST validation images as [n, 1, 28, 28] and their labels, in a fresh random order."""
    x, y = linpath.datasets.mnist().valid
    idx = torch.randperm(len(x))[:256]
    return x[idx].reshape(-1, 1, 28, 28), y[idx]


def small_cnn(seed: int) -> nn.Sequential:
    """A conv net with BatchNorm whose running statistics differ from seed to seed."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 5, stride=2), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 12 * 12, 10)
    )
    with torch.no_grad():
        model.train()
        model(torch.rand(64, 1, 28, 28) * (1 + seed))
    return model.eval()


def loader(data, batch_size: int = 96, **kwargs) -> DataLoader:
    return DataLoader(TensorDataset(*data), batch_size=batch_size, **kwargs)


def snapshot(model: nn.Module) -> list:
    """Every tensor's value, identity and requires_grad, and every submodule's mode."""
    tensors = [
        (n, t, t.detach().clone(), t.requires_grad) for n, t in model.state_dict(keep_vars=True).items()
    ]
    return [tensors, [m.training for m in model.modules()]]


def assert_unchanged(model: nn.Module, before: list) -> None:
    tensors, modes = before
    now = model.state_dict(keep_vars=True)
    for name, t, value, requires_grad in tensors:
        assert now[name] is t, name
        assert torch.equal(t.detach(), value), name
        assert t.requires_grad == requires_grad, name
    assert [m.training for m in model.modules()] == modes


def reference(start, end, data_loader, alphas) -> np.ndarray:
    """Mean cross-entropy along the line the slow obvious way: a load_state_dict per α (float64
    interpolation of parameters and float buffers), a float64 sum over the loader's batches."""
    out = []
    for a in alphas:
        model = small_cnn(0)
        ends = zip(start.state_dict().values(), end.state_dict().values(), strict=True)
        model.load_state_dict(
            {
                k: (s.double() + a * (e.double() - s.double())).to(s.dtype) if s.is_floating_point() else s
                for k, (s, e) in zip(model.state_dict(), ends, strict=True)
            }
        )
        with torch.no_grad():
            total = sum(F.cross_entropy(model(x), y, reduction="sum").double() for x, y in data_loader)
        out.append(float(total) / len(data_loader.dataset))
    return np.array(out)


@pytest.mark.parametrize("precision", ["float32", "bf16"])
def test_line_equals_point_outer_loop_on_mnist(mnist_subset, precision):
    start, end = small_cnn(0), small_cnn(1)
    data = {"train": loader(mnist_subset), "small": loader(mnist_subset, batch_size=50)}
    model = small_cnn(2)
    before = snapshot(model)
    run = {
        order: linpath.interpolate(
            model, start, end, data, alphas=ALPHAS, order=order, precision=precision, progress=False
        )
        for order in ("points", "batches")
    }
    assert_unchanged(model, before)
    for split in data:
        for metric in ("loss", "error"):
            np.testing.assert_array_equal(
                run["batches"].values[split][metric], run["points"].values[split][metric]
            )
    assert run["batches"].meta["order"] == "batches"
    if precision == "float32":
        ref = reference(start, end, data["train"], ALPHAS)
        np.testing.assert_allclose(run["batches"].values["train"]["loss"], ref, rtol=1e-5)


def test_surface_equals_point_outer_loop_on_mnist(mnist_subset):
    center = small_cnn(0)
    d1, d2 = (linpath.directions.random(center, seed=s) for s in (0, 1))
    grid = (np.linspace(-1.0, 1.0, 4), np.linspace(-0.5, 0.5, 3))
    data = loader(mnist_subset)
    model = small_cnn(3)
    before = snapshot(model)
    run = {
        order: linpath.surface(model, center, [d1, d2], data, grid=grid, order=order, progress=False)
        for order in ("points", "batches")
    }
    assert_unchanged(model, before)
    for metric in ("loss", "error"):
        np.testing.assert_array_equal(
            run["batches"].values["data"][metric], run["points"].values["data"][metric]
        )
    assert run["batches"].values["data"]["loss"].shape == (3, 4)


class Boom(Exception):
    pass


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
def test_model_restored_after_an_exception_mid_sweep(mnist_subset, error):
    calls = []

    def loss(out, y):
        calls.append(1)
        if len(calls) == 7:  # the second batch, at the second α
            raise error("stop")
        return F.cross_entropy(out, y)

    model = small_cnn(2)
    model.train()  # a model in train mode, with a frozen layer: all of it must come back
    model[0].weight.requires_grad_(False)
    before = snapshot(model)
    with pytest.raises(error, match="stop"):
        linpath.interpolate(
            model, small_cnn(0), small_cnn(1), loader(mnist_subset), alphas=ALPHAS, loss=loss, order="batches"
        )
    assert len(calls) == 7
    assert_unchanged(model, before)


def test_nonfinite_values_stay_with_their_own_point(make_bn_mlp, make_data):
    """Extrapolated BatchNorm variances are negative below some α: NaN there, finite elsewhere."""
    start, end = make_bn_mlp(0, 0.0), make_bn_mlp(1, 3.0)
    data = loader(make_data(300, 5), batch_size=64)
    alphas = np.linspace(-1.0, 2.0, 7)
    run = {}
    for order in ("points", "batches"):
        with pytest.warns(RuntimeWarning, match="negative"):
            run[order] = linpath.interpolate(
                make_bn_mlp(2, 0.0), start, end, data, alphas=alphas, order=order
            )
    loss = run["batches"].values["data"]["loss"]
    assert np.isnan(loss).any() and np.isfinite(loss).any()
    np.testing.assert_array_equal(
        loss, run["points"].values["data"]["loss"]
    )  # NaN where NaN, equal elsewhere
    np.testing.assert_array_equal(run["batches"].nonfinite(), run["points"].nonfinite())


class Counted:
    """A re-iterable of batches without len() that counts how often it is read."""

    def __init__(self, batches):
        self.batches, self.reads = batches, 0

    def __iter__(self):
        def read():  # counts a read when its first batch is taken (not a mere iter() call)
            self.reads += 1
            yield from self.batches

        return read()


class CountedList(list):
    """A list of batches (in memory) that counts how often it is read."""

    reads = 0

    def __iter__(self):
        def read():
            self.reads += 1
            yield from list.__iter__(self)

        return read()


def test_auto_reads_dataloaders_once_and_in_memory_data_per_point(make_mlp, make_data):
    x, y = make_data(200, 7)
    batches = [(x[i : i + 64], y[i : i + 64]) for i in range(0, 200, 64)]
    streamed, listed = Counted(batches), CountedList(batches)
    data = {"streamed": streamed, "listed": listed, "pair": (x, y)}
    sweep = linpath.interpolate(make_mlp(2), make_mlp(0), make_mlp(1), data, alphas=ALPHAS, progress=True)
    assert (streamed.reads, listed.reads) == (1, len(ALPHAS))
    assert sweep.meta["order"] == "auto"
    splits = as_splits(data, None)
    assert batch_outer_splits(splits, "auto", 5) == ["streamed"]
    assert batch_outer_splits(splits, "auto", 1) == []  # one point: nothing to share
    assert batch_outer_splits(splits, "points", 5) == []
    # A buffer policy that re-estimates statistics at each point needs the point-outer loop.
    assert batch_outer_splits(splits, "auto", 5, recompute=True) == []
    with pytest.raises(ValueError, match="re-estimate"):
        batch_outer_splits(splits, "batches", 5, recompute=True)
    streamed.reads = 0
    linpath.interpolate(make_mlp(2), make_mlp(0), make_mlp(1), streamed, alphas=ALPHAS, order="points")
    assert streamed.reads == len(ALPHAS)


def test_bad_orders_are_refused_with_what_to_pass(make_mlp, make_data):
    pair = make_data(50, 8)
    with pytest.raises(ValueError, match="order must be one of"):
        linpath.interpolate(make_mlp(2), make_mlp(0), make_mlp(1), pair, order="batch")
    with pytest.raises(ValueError, match="pass order='auto'"):
        linpath.interpolate(
            make_mlp(2), make_mlp(0), make_mlp(1), {"a": loader(pair), "b": pair}, order="batches"
        )
    assert check_order("batches", as_splits(loader(pair), None)) == "batches"


def test_shuffled_loader_gives_every_alpha_the_same_batches(make_mlp, make_data):
    """With shuffle=True and drop_last=True each pass draws other examples: the point-outer loop
    gives two different values at the same α, the batch-outer loop the same value."""
    data = loader(make_data(300, 9), batch_size=64, shuffle=True, drop_last=True)
    alphas = [0.0, 0.5, 0.0]
    torch.manual_seed(0)
    run = {
        order: linpath.interpolate(make_mlp(2), make_mlp(0), make_mlp(1), data, alphas=alphas, order=order)
        for order in ("points", "batches")
    }
    outer, inner = run["batches"].values["data"]["loss"], run["points"].values["data"]["loss"]
    assert outer[0] == outer[2]
    assert inner[0] != inner[2]
