"""The generic native line sweep of every NativeModel (src/models/network.rs, src/py/nets.rs) as
``linpath.interpolate`` runs it: values against direct evaluation, the model put back, bad input."""

import numpy as np
import pytest
import torch
from native_line import native_line

import linpath
from linpath.models import MPDBM, ConvMaxout, LSTMLanguageModel

TINY_CONV = {
    "input_shape": (3, 9, 9),
    "channels": (4, 6),
    "kernels": (3, 3),
    "paddings": (1, 1),
    "pools": (2, 2),
    "pool_strides": (2, 2),
    "fc_units": 8,
    "fc_pieces": 2,
}


def _models_and_data():
    g = torch.Generator().manual_seed(0)
    conv = (ConvMaxout(**TINY_CONV, seed=1), ConvMaxout(**TINY_CONV, seed=2))
    conv_data = (torch.rand(40, 3, 9, 9, generator=g), torch.randint(0, 10, (40,), generator=g))
    dbm = (MPDBM(20, 8, 6, 3, mf_steps=3, seed=1), MPDBM(20, 8, 6, 3, mf_steps=3, seed=2))
    dbm_data = (torch.rand(30, 20, generator=g), torch.randint(0, 3, (30,), generator=g))
    lstm = tuple(LSTMLanguageModel(50, 8, 8, 2, seed=s) for s in (1, 2))
    tokens = torch.randint(0, 50, (12, 7), generator=g)
    return [(conv, conv_data), (dbm, dbm_data), (lstm, (tokens, torch.roll(tokens, -1, 1)))]


CASES = _models_and_data()
IDS = ["conv_maxout", "mpdbm", "lstm"]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_interpolate_runs_natively_and_equals_direct_evaluation(case):
    (model, other), data = case
    before = [p.detach().clone() for p in model.parameters()]
    start, end = linpath.flatten(model), linpath.flatten(other)
    alphas = np.array([-0.5, 0.0, 0.3, 1.0, 1.7])
    sweep = linpath.interpolate(model, start, end, {"train": data}, alphas=alphas, progress=False)
    assert sweep.meta["engine"] == "native"
    probe = model  # evaluated directly at each θ(α), written in with assign
    for i, alpha in enumerate(alphas):
        point = start.tensor.double() + alpha * (end.tensor.double() - start.tensor.double())
        saved = linpath.flatten(probe)
        linpath.assign(probe, point.float())
        loss, error = probe.evaluate(*data)
        linpath.assign(probe, saved)
        assert sweep.values["train"]["loss"][i] == pytest.approx(loss, rel=1e-6)
        assert sweep.values["train"]["error"][i] == pytest.approx(error)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_ctrl_c_mid_sweep_puts_the_parameters_back(case):
    (model, other), data = case
    before = [p.detach().clone() for p in model.parameters()]
    calls = []

    def interrupt(done, total):
        calls.append(done)
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        native_line(
            model,
            linpath.flatten(model).tensor,
            linpath.flatten(other).tensor,
            *data,
            [0.1, 0.5, 0.9],
            interrupt,
        )
    assert calls == [1, 2]
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_bad_requests_are_clear_errors():
    (model, other), data = CASES[0]
    start, end = linpath.flatten(model), linpath.flatten(other)
    with pytest.raises(ValueError, match="bf16.*MLP only"):
        linpath.interpolate(model, start, end, {"train": data}, alphas=[0.0, 1.0], precision="bf16")
    with pytest.raises(ValueError, match="elements"):
        native_line(model, start.tensor[:-1], end.tensor, *data, [0.5])
    with pytest.raises(ValueError, match="unknown model kind"):
        linpath._linpath.NativeNet("resnet", {})
    (lstm, _), (tokens, _) = CASES[2]
    with pytest.raises(TypeError, match="int64"):
        lstm.evaluate(tokens.float(), tokens)
