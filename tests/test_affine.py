"""The module engine's input-layer cache (linpath.affine): same numbers, used when it can be, undone."""

import numpy as np
import pytest
import torch
from torch import nn

import linpath
from linpath import affine

GRID = np.linspace(-0.5, 1.5, 9)


def sweep(model, start, end, data, **kwargs):
    kwargs.setdefault("alphas", GRID)
    return linpath.interpolate(model, start, end, data, engine="module", progress=False, **kwargs)


def slow_reference(model, start, end, x, y):
    """Loss and error at each α the slow obvious way: write θ(α) into a float64 copy, run it."""
    twin = __import__("copy").deepcopy(model).double().eval()
    t0, t1 = linpath.flatten(start).tensor.double(), linpath.flatten(end).tensor.double()
    out = []
    with torch.no_grad():
        for a in GRID:
            torch.nn.utils.vector_to_parameters(t0 + a * (t1 - t0), twin.parameters())
            logits = twin(x.double())
            out.append(
                (
                    nn.functional.cross_entropy(logits, y).item(),
                    (logits.argmax(1) != y).double().mean().item(),
                )
            )
    return np.array(out)


def count_hits(monkeypatch):
    """Records every AffineInputs built during a sweep, to read its hit count afterwards."""
    built = []
    original = affine.AffineInputs.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        built.append(self)

    monkeypatch.setattr(affine.AffineInputs, "__init__", spy)
    return built


class ConvNet(nn.Module):
    def __init__(self, padding_mode="zeros"):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, padding_mode=padding_mode)
        self.head = nn.Linear(8 * 6 * 6, 10)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).flatten(1))


class Shared(nn.Module):
    """One Linear applied to the raw input and again to a hidden vector."""

    def __init__(self):
        super().__init__()
        self.square = nn.Linear(10, 10)

    def forward(self, x):
        return self.square(torch.tanh(self.square(x)))


def image_data(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 6, 6, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_mlp_sweep_matches_float64_and_uses_the_cache(make_mlp, make_data, monkeypatch):
    built = count_hits(monkeypatch)
    start, end = make_mlp(0), make_mlp(1)
    x, y = make_data(300, 1)
    result = sweep(make_mlp(0), start, end, (x, y), batch_size=64)
    ref = slow_reference(make_mlp(0), start, end, x, y)
    np.testing.assert_allclose(result.values["data"]["loss"], ref[:, 0], rtol=1e-5)
    np.testing.assert_allclose(result.values["data"]["error"], ref[:, 1], atol=1e-12)
    # 5 batches per α: the first α computes z0 and dz, every α but 0 and 1 reads them.
    assert built[0].hits == (len(GRID) - 2) * 5


def test_cache_on_and_off_agree(make_mlp, make_data, monkeypatch):
    start, end = make_mlp(0), make_mlp(1)
    data = {"train": make_data(300, 1), "valid": make_data(170, 2)}
    with_cache = sweep(make_mlp(0), start, end, data, batch_size=64)
    monkeypatch.setattr(affine, "CACHE_BYTES", 0)  # nothing fits: every layer runs normally
    built = count_hits(monkeypatch)
    without = sweep(make_mlp(0), start, end, data, batch_size=64)
    assert built[0].hits == 0
    for split in data:
        for metric in ("loss", "error"):
            np.testing.assert_allclose(
                with_cache.values[split][metric], without.values[split][metric], rtol=1e-6
            )


def test_float64_model_agrees_tightly(make_mlp, make_data):
    start, end = make_mlp(0, torch.float64), make_mlp(1, torch.float64)
    x, y = make_data(200, 3, torch.float64)
    result = sweep(make_mlp(0, torch.float64), start, end, (x, y))
    ref = slow_reference(make_mlp(0), start, end, x, y)
    np.testing.assert_allclose(result.values["data"]["loss"], ref[:, 0], rtol=1e-12)


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect"])
def test_conv_input_layer(padding_mode, monkeypatch):
    built = count_hits(monkeypatch)
    torch.manual_seed(0)
    start, end = ConvNet(padding_mode), ConvNet(padding_mode)
    x, y = image_data(120, 4)
    result = sweep(ConvNet(padding_mode), start, end, (x, y), batch_size=50)
    ref = slow_reference(ConvNet(padding_mode), start, end, x, y)
    np.testing.assert_allclose(result.values["data"]["loss"], ref[:, 0], rtol=1e-5)
    assert built[0].hits == (len(GRID) - 2) * 3


def test_in_place_activation_after_the_input_layer(make_data):
    torch.manual_seed(0)
    net = lambda: nn.Sequential(nn.Linear(20, 16), nn.ReLU(inplace=True), nn.Linear(16, 10))  # noqa: E731
    start, end, model = net(), net(), net()
    x, y = make_data(100, 5)
    result = sweep(model, start, end, (x, y), batch_size=30)
    ref = slow_reference(net(), start, end, x, y)
    np.testing.assert_allclose(result.values["data"]["loss"], ref[:, 0], rtol=1e-5)


def test_only_the_call_on_the_raw_input_is_cached(monkeypatch):
    built = count_hits(monkeypatch)
    torch.manual_seed(0)
    start, end = Shared(), Shared()
    g = torch.Generator().manual_seed(6)
    x, y = torch.randn(80, 10, generator=g), torch.randint(0, 10, (80,), generator=g)
    result = sweep(Shared(), start, end, (x, y), batch_size=40)
    ref = slow_reference(Shared(), start, end, x, y)
    np.testing.assert_allclose(result.values["data"]["loss"], ref[:, 0], rtol=1e-5)
    assert built[0].hits == (len(GRID) - 2) * 2  # the inner call (on tanh(...)) ran normally


def test_dataloader_batches_are_not_cached(make_mlp, make_data, monkeypatch):
    built = count_hits(monkeypatch)
    x, y = make_data(120, 7)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=40)
    start, end = make_mlp(0), make_mlp(1)
    result = sweep(make_mlp(0), start, end, loader, order="points")
    ref = slow_reference(make_mlp(0), start, end, x, y)
    np.testing.assert_allclose(result.values["data"]["loss"], ref[:, 0], rtol=1e-5)
    assert built[0].hits == 0
    sweep(make_mlp(0), start, end, loader)  # batch-outer (order="auto"): no cache at all
    assert len(built) == 1


def test_forward_is_restored_after_a_sweep_and_after_an_exception(make_mlp, make_data):
    model = make_mlp(0)
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    sweep(model, make_mlp(0), make_mlp(1), make_data(50, 8))
    assert all("forward" not in m.__dict__ for m in layers)

    def failing_loss(out, y):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        sweep(model, make_mlp(0), make_mlp(1), make_data(50, 8), loss=failing_loss)
    assert all("forward" not in m.__dict__ for m in layers)
    x = make_data(5, 9)[0]
    assert torch.equal(model(x), make_mlp(0)(x))  # the model is back as it was


def test_bf16_and_short_grids_do_not_use_the_cache(make_mlp, make_data, monkeypatch):
    built = count_hits(monkeypatch)
    start, end = make_mlp(0), make_mlp(1)
    sweep(make_mlp(0), start, end, make_data(60, 10), alphas=[0.0, 1.0])
    assert built == []  # two α: computing z0 and dz would cost more than it saves
    sweep(make_mlp(0), start, end, make_data(60, 10), precision="bf16")
    assert all(b.hits == 0 for b in built[:-1])  # only the float32 precision check may cache


class MaskedLinear(nn.Linear):
    """A Linear subclass with a forward of its own (a fixed mask on the weight)."""

    def __init__(self, n_in, n_out):
        super().__init__(n_in, n_out)
        mask = torch.rand(n_out, n_in, generator=torch.Generator().manual_seed(0)) > 0.5
        self.register_buffer("mask", mask.float())

    def forward(self, x):
        return nn.functional.linear(x, self.weight * self.mask, self.bias)


def net(seed, first=nn.Linear):
    torch.manual_seed(seed)
    return nn.Sequential(first(20, 16), nn.ReLU(), nn.Linear(16, 10))


def halved(model):
    """``model`` with a forward patched onto its input layer's instance (as hook libraries do)."""
    original = model[0].forward
    model[0].forward = lambda x: original(x) * 0.5
    return model


def max_normed(model):
    """``model`` whose input layer has a forward pre-hook that renormalises its weight rows."""

    def renorm(layer, inputs):
        with torch.no_grad():
            layer.weight.copy_(torch.renorm(layer.weight, 2, 0, 0.5))

    model[0].register_forward_pre_hook(renorm)
    return model


@pytest.mark.parametrize(
    "make",
    [lambda s: net(s, MaskedLinear), lambda s: halved(net(s)), lambda s: max_normed(net(s))],
    ids=["subclass", "patched", "pre-hook"],
)
def test_layers_with_a_forward_of_their_own_run_as_written(make, make_data, monkeypatch):
    """z0 + α·dz is only what torch's own Linear/Conv forward computes: a subclass's own forward or a
    forward patched onto the instance must run as written at every α, and a patch must survive."""
    built = count_hits(monkeypatch)
    x, y = make_data(60, 3)
    model, start, end = make(0), make(0), make(1)
    patch = model[0].__dict__.get("forward")
    got = sweep(model, start, end, (x, y))
    twin = make(0).double()  # in place, so a patched forward follows it
    t0, t1 = linpath.flatten(start).tensor.double(), linpath.flatten(end).tensor.double()
    expected = []
    with torch.no_grad():
        for a in GRID:
            nn.utils.vector_to_parameters(t0 + a * (t1 - t0), twin.parameters())
            expected.append(nn.functional.cross_entropy(twin(x.double()), y).item())
    np.testing.assert_allclose(got.values["data"]["loss"], expected, rtol=1e-5)
    assert [b.hits for b in built] == [0]
    assert model[0].__dict__.get("forward") is patch
