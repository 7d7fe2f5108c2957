"""The native sweep of linpath.models.MLP (src/models/mlp_sweep.rs, src/models/kernels.rs) and bf16 sweeps."""

import _thread
import math
import sys
import threading
import time
import warnings

import numpy as np
import pytest
import torch
from native_line import native_line
from torch import nn

import linpath
import linpath.engines
from linpath.models import MLP

ALPHAS = np.linspace(-0.5, 1.5, 9)
ACTIVATIONS = [("relu", 2), ("sigmoid", 2), ("tanh", 2), ("maxout", 3)]


def data(n, seed, width=12, classes=5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, width, generator=g), torch.randint(0, classes, (n,), generator=g)


def pair(activation="relu", pieces=2, sizes=(12, 16, 9, 5)):
    return MLP(sizes, activation, pieces, seed=1), MLP(sizes, activation, pieces, seed=2)


def float64_reference(start, end, splits, alphas):
    """The module engine on a float64 twin: θ(α) in float64, evaluated in float64."""
    twin = start.to_torch().double()
    t0, t1 = linpath.flatten(start).tensor.double(), linpath.flatten(end).tensor.double()
    doubled = {k: (x.double(), y) for k, (x, y) in splits.items()}
    return linpath.interpolate(twin, t0, t1, doubled, alphas=alphas, engine="module", progress=False)


@pytest.mark.parametrize(("activation", "pieces"), ACTIVATIONS)
def test_native_sweep_matches_float64_and_the_module_sweep_of_to_torch(activation, pieces):
    start, end = pair(activation, pieces)
    splits = {"train": data(300, 1), "valid": data(170, 2)}
    native = linpath.interpolate(start, start, end, splits, alphas=ALPHAS, batch_size=64, progress=False)
    assert native.meta["engine"] == "native"
    module = linpath.interpolate(
        start.to_torch(), start, end, splits, alphas=ALPHAS, batch_size=64, engine="module", progress=False
    )
    ref = float64_reference(start, end, splits, ALPHAS)
    for split, (x, _) in splits.items():
        for other in (module, ref):
            np.testing.assert_allclose(native.values[split]["loss"], other.values[split]["loss"], rtol=1e-5)
            gap = np.abs(native.values[split]["error"] - other.values[split]["error"]).max()
            assert gap <= 1 / len(x) + 1e-12  # an argmax at a near-tie may flip between precisions


def test_native_sweep_leaves_the_model_untouched_and_handles_a_model_without_hidden_layers():
    start, end = pair(sizes=(12, 5))
    before = {k: v.clone() for k, v in start.state_dict().items()}
    sweep = linpath.interpolate(start, start, end, data(50, 3), alphas=ALPHAS, progress=False)
    ref = float64_reference(start, end, {"data": data(50, 3)}, ALPHAS)
    np.testing.assert_allclose(sweep.values["data"]["loss"], ref.values["data"]["loss"], rtol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in start.state_dict().items())


def bf16_and_float32(engine):
    start, end = pair()
    model = start if engine == "native" else start.to_torch()
    x, y = data(400, 4)
    run = {"alphas": ALPHAS, "engine": engine, "progress": False}
    exact = linpath.interpolate(model, start, end, (x, y), **run)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # within the 2% threshold on both engines: no warning
        fast = linpath.interpolate(model, start, end, (x, y), precision="bf16", **run)
    return exact, fast


@pytest.mark.parametrize("engine", ["native", "module"])
def test_bf16_precision_check_measures_the_real_deviation(engine):
    exact, fast = bf16_and_float32(engine)
    check = fast.precision_check
    assert exact.precision_check is None
    assert check["precision"] == "bf16" and len(check["alphas"]) == 4
    assert check["alphas"][0] == ALPHAS[0] and check["alphas"][-1] == ALPHAS[-1]
    deviation = (
        np.abs(fast.values["data"]["loss"] - exact.values["data"]["loss"]) / exact.values["data"]["loss"]
    )
    checked = deviation[np.isin(ALPHAS, check["alphas"])]
    np.testing.assert_allclose(check["max_rel_loss_deviation"], checked.max(), rtol=1e-6)
    assert deviation.max() > 0  # it really ran in bfloat16
    assert check["ok"] == (checked.max() <= check["threshold"])


def test_native_bf16_sweep_stays_within_two_percent():
    exact, fast = bf16_and_float32("native")
    deviation = (
        np.abs(fast.values["data"]["loss"] - exact.values["data"]["loss"]) / exact.values["data"]["loss"]
    )
    assert deviation.max() < 2e-2 and fast.precision_check["ok"]


def test_bf16_deviation_past_the_threshold_warns(monkeypatch):
    start, end = pair()
    monkeypatch.setattr(linpath.engines, "PRECISION_THRESHOLD", 0.0)
    with pytest.warns(UserWarning, match="deviates from float32"):
        sweep = linpath.interpolate(
            start, start, end, data(200, 5), alphas=ALPHAS, precision="bf16", progress=False
        )
    assert sweep.precision_check["ok"] is False


def test_precision_check_survives_save_and_load(tmp_path):
    start, end = pair()
    sweep = linpath.interpolate(
        start, start, end, data(100, 6), alphas=ALPHAS, precision="bf16", progress=False
    )
    sweep.save(tmp_path / "s.npz")
    assert linpath.Sweep.load(tmp_path / "s.npz").precision_check == sweep.precision_check


def test_engine_choice_and_its_errors():
    start, end = pair()
    x, y = data(40, 7)
    custom = linpath.interpolate(
        start, start, end, (x, y), alphas=ALPHAS, loss=nn.functional.cross_entropy, progress=False
    )
    assert custom.meta["engine"] == "module"
    with pytest.raises(ValueError, match="engine='native' needs"):
        linpath.interpolate(start.to_torch(), start, end, (x, y), engine="native")
    with pytest.raises(ValueError, match="engine must be"):
        linpath.interpolate(start, start, end, (x, y), engine="fast")
    with pytest.raises(ValueError, match="precision must be"):
        linpath.interpolate(start, start, end, (x, y), precision="fp8")
    with pytest.raises(ValueError, match=r"inputs must have shape \[n, 12\]"):
        linpath.interpolate(start, start, end, data(40, 7, width=13), engine="native")
    with pytest.raises(ValueError, match="class indices must lie in"):
        linpath.interpolate(start, start, end, (x, y + 5), engine="native")
    with pytest.raises(ValueError, match="NaN|finite"):
        linpath.interpolate(start, start, end, (x, y), alphas=[0.0, float("nan")])


def big_sweep_args():
    start, end = pair(sizes=(256, 512, 512, 10))
    x, y = data(2000, 8, width=256, classes=10)
    t0, t1 = linpath.flatten(start).tensor.double(), linpath.flatten(end).tensor.double()
    return start, (t0, t1, x, y, [float(a) for a in np.linspace(0, 1, 40)], None, 500, "float32")


def test_native_sweep_releases_the_gil():
    """A ticker thread, never forced to yield (switch interval 30 s), runs during the native call."""
    start, args = big_sweep_args()
    counter, done = [0], [False]

    def tick():
        while not done[0]:
            counter[0] += 1
            if counter[0] % 32 == 0:
                time.sleep(1e-5)

    interval = sys.getswitchinterval()
    ticker = threading.Thread(target=tick, daemon=True)
    sys.setswitchinterval(30.0)
    try:
        ticker.start()
        while counter[0] < 100:
            time.sleep(1e-3)
        values = np.ones(3_000_000).tolist()
        before = counter[0]
        math.fsum(values)  # control: holds the GIL
        control = counter[0] - before
        before = counter[0]
        native_line(start, *args)
        during = counter[0] - before
    finally:
        done[0] = True
        ticker.join(timeout=60)
        sys.setswitchinterval(interval)
    assert control == 0
    assert during >= 100, f"the ticker advanced only {during} times during the native sweep"


def test_ctrl_c_interrupts_a_native_sweep_and_leaves_the_model_alone(sigint_raises):
    start, args = big_sweep_args()
    before = linpath.flatten(start).tensor.clone()
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    try:
        deadline = time.monotonic() + 120  # however late the timer thread gets to run
        with pytest.raises(KeyboardInterrupt):
            while time.monotonic() < deadline:
                native_line(start, *args)
    finally:
        timer.cancel()
    assert torch.equal(linpath.flatten(start).tensor, before)
