"""linpath.models.MLP (src/models/mlp.rs): the native model, its PyTorch twin and its errors."""

import pytest
import torch

import linpath
from linpath.models import MLP, TorchMLP

ACTIVATIONS = [("relu", 2), ("sigmoid", 2), ("tanh", 2), ("maxout", 3)]


def inputs(n=64, width=12, seed=0):
    return torch.randn(n, width, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("activation", "pieces"), ACTIVATIONS)
def test_to_torch_gives_the_same_outputs_and_names(activation, pieces):
    model = MLP([12, 16, 9, 5], activation, pieces=pieces, dropout=(0.2, 0.5), seed=3).eval()
    twin = model.to_torch().eval()
    assert isinstance(twin, TorchMLP) and not twin.training
    assert list(model.state_dict()) == list(twin.state_dict())
    x = inputs()
    torch.testing.assert_close(model(x), twin(x), rtol=0, atol=1e-6)
    double = twin.double()  # a movable copy: the float64 twin agrees too
    torch.testing.assert_close(model(x).double(), double(x.double()), rtol=0, atol=1e-5)


@pytest.mark.parametrize(("activation", "pieces"), ACTIVATIONS)
def test_from_state_dict_round_trips(activation, pieces):
    twin = TorchMLP([12, 7, 5], activation, pieces)
    model = MLP.from_state_dict(twin.state_dict(), activation, pieces).eval()
    assert model.sizes == [12, 7, 5]
    torch.testing.assert_close(model(inputs()), twin.eval()(inputs()), rtol=0, atol=1e-6)


def test_parameters_are_the_rust_models_own_tensors():
    model = MLP([12, 8, 3], seed=1).eval()
    x = inputs()
    before = model(x)
    linpath.assign(model, linpath.flatten(model).tensor * 2)
    after = model(x)
    assert not torch.allclose(before, after)
    manual = torch.relu(x @ model.layers[0].weight.T + model.layers[0].bias) @ model.layers[1].weight.T
    torch.testing.assert_close(after, manual + model.layers[1].bias, rtol=1e-6, atol=1e-6)


def test_seed_fixes_the_initialisation_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b, c = MLP([12, 8, 3], seed=4), MLP([12, 8, 3], seed=4), MLP([12, 8, 3], seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(linpath.flatten(a).tensor, linpath.flatten(b).tensor)
    assert not torch.equal(linpath.flatten(a).tensor, linpath.flatten(c).tensor)
    bound = 1 / 12**0.5  # nn.Linear's scheme: weights and biases within ±1/sqrt(fan_in)
    assert a.layers[0].weight.abs().max() <= bound and a.layers[0].bias.abs().max() <= bound


def test_dropout_acts_only_in_train_mode():
    model = MLP([12, 64, 3], dropout=(0.5, 0.5), seed=0)
    x = inputs()
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"sizes": [12]}, ValueError, "at least an input and an output"),
        ({"sizes": [12, 0, 3]}, ValueError, r"sizes\[1\] must lie in \[1, 2\*\*63\), got 0"),
        ({"sizes": [12, 3], "activation": "swish"}, ValueError, "unknown activation"),
        ({"sizes": [12, 3, 3], "activation": "maxout", "pieces": 1}, ValueError, r"pieces must lie in \[2, "),
        ({"sizes": [12, 3], "dropout": (1.0, 0.0)}, ValueError, "dropout must be in"),
        ({"sizes": [12, 3], "dropout": 0.5}, ValueError, "pair of drop probabilities"),
    ],
)
def test_bad_configurations_raise_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        MLP(**kwargs)


def test_bad_inputs_and_moves_raise_clear_errors():
    model = MLP([12, 8, 3])
    with pytest.raises(ValueError, match=r"shape \[batch, 12\]"):
        model(inputs(width=13))
    with pytest.raises(TypeError, match="torch.Tensor"):
        model([[0.0] * 12])
    with pytest.raises(TypeError, match="floating"):
        model(torch.zeros(2, 12, dtype=torch.int64))
    with pytest.raises(TypeError, match="to_torch"):
        model.double()
    twin = TorchMLP([12, 8, 3]).state_dict()
    twin["layers.1.weight"] = torch.zeros(3, 9)  # sizes that do not chain
    with pytest.raises(ValueError, match="chain"):
        MLP.from_state_dict(twin)
