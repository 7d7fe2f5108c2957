"""linpath.models.MLP's initialisation knobs (init, irange, bias_init) against their documented statistics."""

import copy
import hashlib
import math

import pytest
import torch
from init_stats import assert_uniform, fresh_seed

from linpath.models import MLP


def _digest(model) -> str:
    """The first 16 hex digits of the SHA-256 of the parameters' float32 bytes, in order."""
    h = hashlib.sha256()
    for _, p in model.named_parameters():
        h.update(p.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def test_the_default_initialisation_is_bit_identical_to_before_the_init_knobs():
    # Digests computed on main (d954be3) before init/irange/bias_init existed.
    assert _digest(MLP([12, 8, 3], seed=5)) == "5ddb67b542bf1399"
    assert _digest(MLP([20, 16, 4], activation="maxout", pieces=3, seed=7)) == "c2f5968b1f9a9143"
    assert _digest(MLP([12, 8, 3], seed=5, init="default", irange=1.0, bias_init=3.0)) == "5ddb67b542bf1399"
    assert _digest(MLP([12, 8, 3], "relu", 2, None, 5)) == "5ddb67b542bf1399"  # seed stays 5th


@pytest.mark.parametrize(("activation", "pieces"), [("relu", 2), ("maxout", 3)])
def test_uniform_initialisation_has_the_documented_statistics(activation, pieces):
    seed = fresh_seed()
    irange, bias = 0.001 + 0.05 * (seed % 11), 0.5 - 0.1 * (seed % 9)
    sizes = [300, 64, 40, 10]
    model = MLP(sizes, activation, pieces, seed=seed, init="uniform", irange=irange, bias_init=bias)
    for layer in model.layers:
        assert_uniform(layer.weight, irange)
        assert (layer.bias == torch.tensor(bias, dtype=torch.float32)).all()
    again = MLP(sizes, activation, pieces, seed=seed, init="uniform", irange=irange, bias_init=bias)
    assert _digest(again) == _digest(model)
    other = MLP(sizes, activation, pieces, seed=seed + 1, init="uniform", irange=irange, bias_init=bias)
    assert _digest(other) != _digest(model)
    state = torch.random.get_rng_state()
    model.reset_parameters(seed + 1)
    assert torch.equal(torch.random.get_rng_state(), state) and _digest(model) == _digest(other)


def test_the_init_knobs_are_kept_by_copies_and_shown():
    model = MLP([12, 8, 3], seed=2, init="uniform", irange=0.05, bias_init=-0.5)
    assert (model.init, model.irange, model.bias_init) == ("uniform", 0.05, -0.5)
    clone = copy.deepcopy(model)
    assert (clone.init, clone.irange, clone.bias_init) == ("uniform", 0.05, -0.5)
    clone.reset_parameters(2)
    assert _digest(clone) == _digest(model)
    assert "init='uniform', irange=0.05, bias_init=-0.5" in repr(model)
    assert "init=" not in repr(MLP([12, 8, 3]))  # the default's repr is as before
    twin = model.to_torch()
    assert all(torch.equal(a, b) for a, b in zip(twin.parameters(), model.parameters(), strict=True))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"init": "he"}, ValueError, "unknown init 'he'"),
        ({"irange": -0.1}, ValueError, "irange must be a positive finite number, got -0.1"),
        ({"irange": math.nan}, ValueError, "irange must be a positive finite number"),
        ({"irange": None}, TypeError, "irange must be a number"),
        ({"bias_init": -math.inf}, ValueError, "bias_init must be a finite number"),
        ({"bias_init": "0"}, TypeError, "bias_init must be a number"),
    ],
)
def test_bad_init_arguments_are_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        MLP([12, 8, 3], **({"init": "uniform"} | kwargs))
