"""Python parameters and the Rust model stay one (python/linpath/models/native.py, NativeBacked):
replacing a parameter's tensor on the Python side must never leave Rust computing with the old one."""

import numpy as np
import pytest
import torch
from torch import nn

import linpath
from linpath.models import MLP, ConvMaxout

CONV = {
    "input_shape": (3, 8, 8),
    "channels": (4,),
    "kernels": (3,),
    "paddings": (1,),
    "pools": (2,),
    "pool_strides": (2,),
    "pieces": 2,
    "fc_units": 6,
    "fc_pieces": 2,
    "classes": 3,
}


def mlp(seed):
    return MLP([6, 9, 3], seed=seed).eval()


def conv(seed):
    return ConvMaxout(**CONV, seed=seed).eval()


def data(model, n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (n, 6) if isinstance(model, MLP) else (n, *CONV["input_shape"])
    return torch.randn(*shape, generator=g), torch.randint(0, 3, (n,), generator=g)


def copied_state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("make", [mlp, conv], ids=["MLP", "ConvMaxout"])
def test_load_state_dict_with_assign_reaches_the_native_model(make):
    model, other = make(0), make(1)
    x, y = data(model)
    model.load_state_dict(copied_state(other), assign=True)
    torch.testing.assert_close(model(x), other(x), rtol=0, atol=0)
    if hasattr(model, "evaluate"):
        assert model.evaluate(x, y) == other.evaluate(x, y)
    # Both ways from now on: a write through Python is seen by Rust.
    with torch.no_grad():
        next(model.parameters()).mul_(2.0)
        next(other.parameters()).mul_(2.0)
    torch.testing.assert_close(model(x), other(x), rtol=0, atol=0)


@pytest.mark.parametrize("make", [mlp, conv], ids=["MLP", "ConvMaxout"])
def test_native_sweeps_and_training_use_the_assigned_parameters(make):
    model, other = make(0), make(1)
    x, y = data(model)
    model.load_state_dict(copied_state(other), assign=True)
    ends = (linpath.flatten(other), linpath.flatten(make(2)))
    swept = linpath.interpolate(model, *ends, (x, y), alphas=[0.0, 0.5, 1.0], progress=False)
    want = linpath.interpolate(other, *ends, (x, y), alphas=[0.0, 0.5, 1.0], progress=False)
    np.testing.assert_array_equal(swept.values["data"]["loss"], want.values["data"]["loss"])
    assert torch.equal(linpath.flatten(model).tensor, linpath.flatten(other).tensor)  # put back
    result = linpath.train(model, (x, y), epochs=1, batch_size=8, lr=0.1, progress=False)
    reference = linpath.train(other, (x, y), epochs=1, batch_size=8, lr=0.1, progress=False)
    assert torch.equal(result.final.tensor, reference.final.tensor)
    assert torch.equal(linpath.flatten(model).tensor, result.final.tensor)  # trained in place


def test_assigning_data_or_a_new_parameter_reaches_the_native_model():
    model, other = mlp(0), mlp(1)
    x, _ = data(model)
    model.layers[0].weight.data = other.layers[0].weight.detach().clone()
    model.layers[0].bias = nn.Parameter(other.layers[0].bias.detach().clone())
    model.layers[1].weight.data = other.layers[1].weight.detach().clone()
    model.layers[1].bias.data = other.layers[1].bias.detach().clone()
    torch.testing.assert_close(model(x), other(x), rtol=0, atol=0)


def test_parameters_the_native_model_cannot_hold_are_refused_clearly():
    model = mlp(0)
    state = copied_state(model)
    state["layers.0.weight"] = state["layers.0.weight"].double()
    model.load_state_dict(state, assign=True)
    with pytest.raises(TypeError, match=r"'layers.0.weight' was replaced by a torch.float64 tensor"):
        model(data(model)[0])
    model = mlp(0)
    model.layers[1].weight.data = torch.randn(3, 9).t().contiguous().t()
    assert not model.layers[1].weight.is_contiguous()
    with pytest.raises(ValueError, match="non-contiguous"):
        model(data(model)[0])


@pytest.mark.parametrize("make", [mlp, conv], ids=["MLP", "ConvMaxout"])
def test_deepcopy_gives_an_independent_model(make):
    """copy.deepcopy, which the guard's message suggests for parallel sweeps, works on native models."""
    import copy

    model = make(0).train()
    clone = copy.deepcopy(model)
    x, y = data(model)
    model.eval(), clone.eval()
    torch.testing.assert_close(clone(x), model(x), rtol=0, atol=0)
    assert all(
        a.data_ptr() != b.data_ptr() for a, b in zip(model.parameters(), clone.parameters(), strict=True)
    )
    result = linpath.train(clone, (x, y), epochs=1, batch_size=8, lr=0.5, progress=False)
    assert torch.equal(linpath.flatten(clone).tensor, result.final.tensor)
    torch.testing.assert_close(model(x), make(0)(x), rtol=0, atol=0)  # the original is untouched
    assert not torch.equal(clone(x), model(x))
