"""The convolutional maxout network (linpath.models.ConvMaxout) against PyTorch and float64 references."""

import copy
import hashlib
import json
import math

import pytest
import torch
import torch.nn.functional as F
from init_stats import assert_uniform, fresh_seed
from native_line import native_line

import linpath
from linpath.models import ConvMaxout, TorchConvMaxout
from linpath.models.conv_maxout import PAPER_CONFIG, PAPER_INIT, PAPER_MAX_NORMS, SMALL_CONFIG

# 9x9 images: both ceil-mode poolings end with a window hanging over the edge (9 -> 5 -> 3).
TINY = {
    "input_shape": (3, 9, 9),
    "channels": (4, 6),
    "kernels": (3, 3),
    "paddings": (1, 1),
    "pools": (2, 2),
    "pool_strides": (2, 2),
    "pieces": 2,
    "fc_units": 8,
    "fc_pieces": 3,
    "classes": 5,
    "input_dropout": 0.2,
    "hidden_dropout": 0.5,
}
DEFAULT_INIT = {"init": "default", "irange": 0.005, "bias_init": 0.0}
NAMES = [
    "convs.0.weight",
    "convs.0.bias",
    "convs.1.weight",
    "convs.1.bias",
    "fc.weight",
    "fc.bias",
    "out.weight",
    "out.bias",
]


def _data(n: int, seed: int, shape: tuple[int, ...] = TINY["input_shape"], classes: int = 5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g), torch.randint(0, classes, (n,), generator=g)


def _pool_reference(h: torch.Tensor, pool: int, stride: int) -> torch.Tensor:
    """Ceil-mode max pooling the slow way: every window, truncated at the edge."""
    side = h.shape[-1]
    out = math.ceil((side - pool) / stride) + 1
    rows = []
    for r in range(out):
        cols = [
            h[:, :, r * stride : r * stride + pool, c * stride : c * stride + pool].amax(dim=(2, 3))
            for c in range(out)
        ]
        rows.append(torch.stack(cols, dim=-1))
    return torch.stack(rows, dim=-2)


def _maxout_reference(z: torch.Tensor, pieces: int) -> torch.Tensor:
    """Unit j = max over pieces i of feature j·pieces + i (strided slices, as pylearn2 writes it)."""
    out = z[:, 0::pieces]
    for i in range(1, pieces):
        out = torch.maximum(out, z[:, i::pieces])
    return out


def _reference_logits(model: ConvMaxout, x: torch.Tensor) -> torch.Tensor:
    """The network's formula in float64, without dropout."""
    p = {name: t.detach().double() for name, t in model.named_parameters()}
    h = x.double()
    for i in range(len(model.channels)):
        z = F.conv2d(h, p[f"convs.{i}.weight"], p[f"convs.{i}.bias"], padding=model.paddings[i])
        h = _pool_reference(_maxout_reference(z, model.pieces), model.pools[i], model.pool_strides[i])
    z = h.reshape(h.shape[0], -1) @ p["fc.weight"].T + p["fc.bias"]
    return _maxout_reference(z, model.fc_pieces) @ p["out.weight"].T + p["out.bias"]


def test_parameters_and_output_shape():
    model = ConvMaxout(**TINY)
    assert [n for n, _ in model.named_parameters()] == NAMES
    shapes = [tuple(p.shape) for p in model.parameters()]
    assert shapes == [(8, 3, 3, 3), (8,), (12, 4, 3, 3), (12,), (24, 54), (24,), (5, 8), (5,)]
    x, _ = _data(7, 0)
    assert model.eval()(x).shape == (7, 5)
    assert (
        model.config == TINY | DEFAULT_INIT and model.dropout == (0.2, 0.5) and model.input_shape == (3, 9, 9)
    )
    assert [n for n, _ in model.to_torch().named_parameters()] == NAMES
    default = ConvMaxout()
    assert default.config == SMALL_CONFIG | DEFAULT_INIT and default.fc.weight.shape == (400, 64 * 4 * 4)
    paper = ConvMaxout.paper(input_shape=(3, 32, 32))
    assert paper.config == PAPER_CONFIG | PAPER_INIT
    assert paper.fc.weight.shape == (2500, 192 * 5 * 5)  # feature maps 16, 7, 5 as in pylearn2
    assert paper.convs.get_submodule("0").weight.shape == (192, 3, 8, 8)


def test_initialisation_is_pytorchs_default_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    model = ConvMaxout(**TINY, seed=11)
    assert torch.equal(torch.random.get_rng_state(), state)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        twin = TorchConvMaxout(**TINY)
    for (name, a), (_, b) in zip(model.named_parameters(), twin.named_parameters(), strict=True):
        assert torch.equal(a, b), name
    other = ConvMaxout(**TINY, seed=12)
    assert not torch.equal(other.fc.weight, model.fc.weight)
    model.reset_parameters(12)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), other.parameters(), strict=True))


@pytest.mark.parametrize("seed", [1, 2])
def test_forward_equals_to_torch_and_a_float64_reference(seed):
    model = ConvMaxout(**TINY, seed=seed).eval()
    with torch.no_grad():  # larger biases make the maxout and pooling choices less uniform
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.mul_(5)
    x, _ = _data(6, seed + 100)
    got = model(x)
    twin = model.to_torch()
    assert not twin.training
    expected = _reference_logits(model, x)
    scale = expected.abs().max().item()
    assert (got.double() - expected).abs().max().item() <= 1e-5 * scale
    assert (got - twin(x)).abs().max().item() <= 1e-5 * scale


def test_training_mode_applies_dropout_and_eval_mode_does_not():
    model = ConvMaxout(**TINY, seed=3)
    x, _ = _data(4, 5)
    assert model.training
    a, b = model(x), model(x)
    assert not torch.equal(a, b)
    model.eval()
    assert torch.equal(model(x), model(x))


def test_evaluate_equals_float64_cross_entropy_and_error_of_to_torch():
    model = ConvMaxout(**TINY, seed=4)
    x, y = _data(50, 6)
    loss, error = model.evaluate(x, y)
    twin = model.to_torch().double().eval()
    with torch.no_grad():
        logits = twin(x.double())
    assert loss == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert error == (logits.argmax(1) != y).double().mean().item()


def _train(seed: int, data, max_norm: float = 0.5):
    model = ConvMaxout(**TINY, seed=0)
    result = linpath.train(
        model,
        data,
        epochs=2,
        batch_size=32,
        lr=0.05,
        momentum=0.5,
        max_norm=max_norm,
        seed=seed,
        progress=False,
    )
    return model, result


def test_seeded_training_is_reproducible_and_respects_max_norm():
    data = _data(256, 7)
    initial = ConvMaxout(**TINY, seed=0)
    norms = [
        p.detach().flatten(1).norm(dim=1).max().item() for n, p in initial.named_parameters() if "weight" in n
    ]
    assert max(norms) > 0.5  # the constraint has work to do
    a, ra = _train(3, data)
    b, rb = _train(3, data)
    c, rc = _train(4, data)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb), name
    assert ra.history == rb.history
    assert not torch.equal(a.fc.weight, c.fc.weight)
    assert ra.history["step_loss"] != rc.history["step_loss"]
    assert ra.history["train_loss"][-1] < ra.history["train_loss"][0]
    for name, p in a.named_parameters():
        if name.endswith("weight"):
            assert p.detach().flatten(1).norm(dim=1).max().item() <= 0.5 * (1 + 1e-5), name


def test_native_sweep_endpoints_equal_evaluate():
    x, y = _data(40, 8)
    m0, m1 = ConvMaxout(**TINY, seed=0), ConvMaxout(**TINY, seed=1)
    theta0 = torch.cat([p.detach().flatten() for p in m0.parameters()])
    theta1 = torch.cat([p.detach().flatten() for p in m1.parameters()])
    losses, errors = native_line(m0, theta0, theta1, x, y, [0.0, 1.0])
    assert (losses[0], errors[0]) == pytest.approx(m0.evaluate(x, y), rel=1e-6)
    assert (losses[1], errors[1]) == pytest.approx(m1.evaluate(x, y), rel=1e-6)
    assert torch.equal(torch.cat([p.detach().flatten() for p in m0.parameters()]), theta0)  # restored


def test_from_state_dict_round_trip():
    twin = TorchConvMaxout(**TINY).eval()
    model = ConvMaxout.from_state_dict(twin.state_dict(), **TINY).eval()
    x, _ = _data(3, 9)
    assert torch.allclose(model(x), twin(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="does not fit this configuration"):
        ConvMaxout.from_state_dict(twin.state_dict(), **(TINY | {"fc_units": 9}))


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"kernels": (3,)}, ValueError, "one entry per conv layer; got 2 channels but 1 kernels"),
        (
            {k: () for k in ("channels", "kernels", "paddings", "pools", "pool_strides")},
            ValueError,
            "at least one",
        ),
        ({"channels": (4, 0)}, ValueError, r"channels\[1\] must lie in \[1, 2\*\*63\), got 0"),
        ({"paddings": (-1, 1)}, ValueError, r"paddings\[0\] must lie in \[0, 2\*\*63\)"),
        ({"pieces": 1}, ValueError, r"pieces must lie in \[2, 2\*\*63\)"),
        ({"fc_pieces": 0}, ValueError, r"fc_pieces must lie in \[2, "),
        ({"fc_units": 0}, ValueError, r"fc_units must lie in \[1, "),
        ({"input_dropout": 1.0}, ValueError, r"input dropout must be in \[0, 1\)"),
        ({"hidden_dropout": -0.1}, ValueError, "hidden dropout"),
        ({"kernels": (3, 7)}, ValueError, "conv layer 1: a 5x5 input .* gives 1x1, smaller than the 2x2"),
        ({"input_shape": (3, 9)}, ValueError, r"input_shape must be \(channels, height, width\)"),
        ({"channels": (4, 6.0)}, TypeError, r"channels\[1\] must be an int"),
        ({"kernels": 3}, TypeError, "kernels must be a sequence of ints"),
        ({"pieces": True}, TypeError, "pieces must be an int"),
        ({"input_dropout": "0.2"}, TypeError, "input_dropout must be a number"),
    ],
)
def test_bad_configs_raise(change, error, message):
    with pytest.raises(error, match=message):
        ConvMaxout(**(TINY | change))


def test_bad_data_raise():
    model = ConvMaxout(**TINY)
    x, y = _data(8, 10)
    with pytest.raises(ValueError, match=r"images of shape \[n, 3, 9, 9\]"):
        model.evaluate(x[:, :2], y)
    with pytest.raises(ValueError, match=r"images of shape \[n, 3, 9, 9\]"):
        model(x.flatten(1))
    with pytest.raises(TypeError, match="floating-point"):
        model.evaluate(x.long(), y)
    with pytest.raises(TypeError, match="int64 class indices"):
        model.evaluate(x, y.int())
    with pytest.raises(ValueError, match=r"class indices must lie in \[0, 5\).*found 0 to 5"):
        model.evaluate(x, torch.tensor([0, 1, 2, 3, 4, 5, 0, 1]))
    with pytest.raises(ValueError, match="8 inputs but targets of shape"):
        model.evaluate(x, y[:5])
    with pytest.raises(ValueError, match=r"train: the inputs must be images of shape \[n, 3, 9, 9\]"):
        linpath.train(model, (x[:, :, :8], y), epochs=1, batch_size=4, lr=0.1, progress=False)
    with pytest.raises(ValueError, match=r"class indices must lie in \[0, 5\)"):
        linpath.train(model, (x, y + 5), epochs=1, batch_size=4, lr=0.1, progress=False)
    with pytest.raises(TypeError, match="Y must hold integer class indices"):
        linpath.train(model, (x, y.float()), epochs=1, batch_size=4, lr=0.1, progress=False)


def test_moving_or_converting_raises():
    model = ConvMaxout(**TINY)
    with pytest.raises(TypeError, match="to_torch"):
        model.to(torch.float64)
    with pytest.raises(TypeError, match="to_torch"):
        model.double()


# ----------------------------------------------------------------------------- initialisation knobs


def _digest(model) -> str:
    """The first 16 hex digits of the SHA-256 of the parameters' float32 bytes, in order."""
    h = hashlib.sha256()
    for _, p in model.named_parameters():
        h.update(p.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def test_the_default_initialisation_is_bit_identical_to_before_the_init_knobs():
    # Digest computed on main (d954be3) before init/irange/bias_init existed.
    assert _digest(ConvMaxout(**TINY, seed=11)) == "82174ef1cb3c1fec"
    assert (
        _digest(ConvMaxout(**TINY, seed=11, init="default", irange=0.3, bias_init=2.0)) == "82174ef1cb3c1fec"
    )


def test_uniform_initialisation_has_the_documented_statistics():
    seed = fresh_seed()
    irange, bias = 0.005 + 0.1 * (seed % 7), -0.25 + 0.1 * (seed % 5)
    config = TINY | {"channels": (16, 24), "fc_units": 40}  # 432 to 10,368 weights per layer
    model = ConvMaxout(**config, init="uniform", irange=irange, bias_init=bias, seed=seed)
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            assert (p == torch.tensor(bias, dtype=torch.float32)).all(), name
        else:
            assert_uniform(p, irange)
    again = ConvMaxout(**config, init="uniform", irange=irange, bias_init=bias, seed=seed)
    assert _digest(again) == _digest(model)
    assert _digest(ConvMaxout(**config, init="uniform", irange=irange, seed=seed + 1)) != _digest(model)
    state = torch.random.get_rng_state()
    model.reset_parameters(seed + 1)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_the_init_knobs_round_trip_through_config_and_deepcopy():
    model = ConvMaxout(**TINY, init="uniform", irange=0.02, bias_init=0.1, seed=3)
    assert (model.init, model.irange, model.bias_init) == ("uniform", 0.02, 0.1)
    assert model.config == TINY | {"init": "uniform", "irange": 0.02, "bias_init": 0.1}
    rebuilt = ConvMaxout(**model.config, seed=3)
    assert _digest(rebuilt) == _digest(model)
    assert "irange=0.02" in repr(model)
    assert _digest(copy.deepcopy(model)) == _digest(model)
    assert copy.deepcopy(model).config == model.config
    twin = model.to_torch()  # the twin takes the architecture only
    assert all(torch.equal(a, b) for a, b in zip(twin.parameters(), model.parameters(), strict=True))
    assert json.loads(json.dumps(model.config)) == {
        k: list(v) if isinstance(v, tuple) else v for k, v in model.config.items()
    }


def test_paper_has_the_original_initialisation():
    model = ConvMaxout.paper(seed=fresh_seed())  # built only: too big to run here
    assert (model.init, model.irange, model.bias_init) == ("uniform", 0.005, 0.0)
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            assert (p == 0).all(), name
        else:
            assert_uniform(p, 0.005)
    assert ConvMaxout.paper(init="default").init == "default"
    assert set(PAPER_MAX_NORMS) == {n for n in NAMES_PAPER if n.endswith("weight")}


NAMES_PAPER = [f"convs.{i}.{k}" for i in range(3) for k in ("weight", "bias")] + NAMES[4:]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"init": "xavier"}, ValueError, "unknown init 'xavier'"),
        ({"init": None}, ValueError, "unknown init None"),
        ({"irange": -0.005}, ValueError, "irange must be a positive finite number"),
        ({"irange": 0.0}, ValueError, "irange must be a positive finite number"),
        ({"irange": math.inf}, ValueError, "irange must be a positive finite number"),
        ({"irange": "0.005"}, TypeError, "irange must be a number"),
        ({"bias_init": math.nan}, ValueError, "bias_init must be a finite number"),
        ({"bias_init": [0.0]}, TypeError, "bias_init must be a number"),
    ],
)
def test_bad_init_arguments_are_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        ConvMaxout(**(TINY | {"init": "uniform"} | kwargs))
