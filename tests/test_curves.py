"""Curves between solutions (python/linpath/curves.py): the Bezier and polychain weights against the
formulas written out by hand, points against a float64 loop, evaluation against loading each point
into a copy of the model by hand, and the published finding (Garipov et al. 2018) that a trained
curve between two independently trained networks has a far lower loss maximum than the segment."""

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import linpath
import linpath.datasets
from linpath import curves
from linpath.curves import Curve

FAST = {"epochs": 2, "batch_size": 64, "lr": 0.05, "progress": False}


def bernstein_by_hand(bends: int, t: float) -> list[float]:
    """The Bernstein coefficients written out: quadratic and cubic explicitly, others by the sum."""
    if bends == 1:
        return [(1 - t) ** 2, 2 * t * (1 - t), t**2]
    if bends == 2:
        return [(1 - t) ** 3, 3 * t * (1 - t) ** 2, 3 * t**2 * (1 - t), t**3]
    n = bends + 1
    return [math.comb(n, j) * t**j * (1 - t) ** (n - j) for j in range(n + 1)]


def hats_by_hand(bends: int, t: float) -> list[float]:
    """A polygonal chain's weights as hat functions around the nodes j/(n+1)."""
    n = bends + 1
    return [max(0.0, 1.0 - abs(t * n - j)) for j in range(n + 1)]


def state(model: nn.Module) -> dict:
    """Everything a curve must leave as it was: values, modes, requires_grad."""
    return {
        "sd": {k: v.clone() for k, v in model.state_dict().items()},
        "modes": [m.training for m in model.modules()],
        "grad": [p.requires_grad for p in model.parameters()],
        "ids": [id(p) for p in model.parameters()],
    }


def assert_same_state(before: dict, model: nn.Module) -> None:
    after = state(model)
    assert before["modes"] == after["modes"] and before["grad"] == after["grad"]
    assert before["ids"] == after["ids"]
    for k, v in before["sd"].items():
        assert torch.equal(v, after["sd"][k]), k


def random_curve(kind: str, bends: int, seed: int) -> Curve:
    g = torch.Generator().manual_seed(seed)
    points = [
        {"w": torch.randn(3, 4, generator=g), "b": torch.randn(5, generator=g)} for _ in range(bends + 2)
    ]
    return Curve(kind, points)


@pytest.mark.parametrize("bends", [1, 2, 3, 5, 7])
def test_bezier_weights_are_bernstein_and_sum_to_one(bends):
    ts = np.random.default_rng().uniform(0, 1, 25).tolist() + [0.0, 1.0]
    got = curves.curve_weights("bezier", bends, ts)
    want = np.array([bernstein_by_hand(bends, t) for t in ts])
    assert got.shape == (len(ts), bends + 2)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-12)
    assert (got >= 0).all()
    assert np.array_equal(curves.curve_weights("bezier", bends, 0.0), np.eye(bends + 2)[0])
    assert np.array_equal(curves.curve_weights("bezier", bends, 1.0), np.eye(bends + 2)[-1])


@pytest.mark.parametrize("bends", [1, 2, 4, 7])
def test_polychain_weights_are_hats_through_the_nodes(bends):
    nodes = [j / (bends + 1) for j in range(bends + 2)]
    ts = np.random.default_rng().uniform(0, 1, 25).tolist() + nodes
    got = curves.curve_weights("polychain", bends, ts)
    want = np.array([hats_by_hand(bends, t) for t in ts])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(got[-len(nodes) :], np.eye(bends + 2), atol=1e-12)  # node j at j/(n+1)


@pytest.mark.parametrize("kind", ["bezier", "polychain"])
def test_point_equals_a_float64_loop(kind):
    seed = int(np.random.default_rng().integers(1 << 31))
    curve = random_curve(kind, 3, seed)
    for t in np.random.default_rng(seed).uniform(0, 1, 5):
        w = bernstein_by_hand(3, t) if kind == "bezier" else hats_by_hand(3, t)
        got = curve.point(t)
        for name in ("w", "b"):
            want = sum(wj * p[name].double() for wj, p in zip(w, curve.control_points, strict=True))
            assert got[name].dtype == torch.float32
            torch.testing.assert_close(got[name].double(), want, rtol=1e-6, atol=1e-7)
    assert all(torch.equal(curve.point(0.0)[n], curve.control_points[0][n]) for n in ("w", "b"))
    assert all(torch.equal(curve.point(1.0)[n], curve.control_points[-1][n]) for n in ("w", "b"))


def by_hand(model, curve, t, data, batch_size, recompute):
    """Loads ``curve.point(t)`` into a copy of the model and evaluates it (BatchNorm statistics
    re-estimated over the whole data in batches when ``recompute``)."""
    m = copy.deepcopy(model)
    m.load_state_dict(curve.point(t), strict=False)
    x, y = data
    with torch.no_grad():
        if recompute:
            for bn in (mod for mod in m.modules() if isinstance(mod, nn.BatchNorm1d)):
                bn.reset_running_stats()
                bn.momentum = None
            m.train()
            for i in range(0, len(x), batch_size):
                m(x[i : i + batch_size])
        m.eval()
        out = m(x)
    return float(F.cross_entropy(out, y)), float((out.argmax(1) != y).double().mean())


@pytest.mark.parametrize("kind", ["bezier", "polychain"])
@pytest.mark.parametrize("buffers", ["recompute", "interpolate"])
def test_evaluate_equals_each_point_loaded_by_hand(kind, buffers, make_bn_mlp, make_data):
    model, a, b = make_bn_mlp(0, 0.0), make_bn_mlp(1, 1.0), make_bn_mlp(2, -1.0)
    seed = int(np.random.default_rng().integers(1 << 31))
    data = make_data(200, seed)
    curve = getattr(curves, kind)(model, a, b, data, bends=2, seed=seed, **FAST)
    ts = np.concatenate([[0.0, 1.0], np.random.default_rng(seed).uniform(0, 1, 5)])
    sweep = curve.evaluate(model, data, ts=ts, batch_size=64, buffers=buffers, progress=False)
    assert np.array_equal(sweep.alphas, ts)
    for i, t in enumerate(ts):
        loss, error = by_hand(model, curve, t, data, 64, buffers == "recompute")
        assert sweep.values["data"]["loss"][i] == pytest.approx(loss, rel=1e-5)
        assert sweep.values["data"]["error"][i] == pytest.approx(error, abs=1e-9)
    assert sweep.meta["curve"]["kind"] == kind and sweep.meta["curve"]["bends"] == 2
    assert sweep.meta["curve"]["training"]["epochs"] == FAST["epochs"]
    assert sweep.meta["buffers"]["policy"] == buffers


def test_untrained_bezier_is_the_segment(make_mlp, make_data):
    """With no training the control points lie on the segment, and Bernstein polynomials reproduce
    linear functions: the curve's values are the line's (linpath.interpolate) at the same t."""
    model, a, b = make_mlp(0), make_mlp(1), make_mlp(2)
    data = make_data(150, 3)
    ts = np.linspace(0, 1, 9)
    curve = curves.bezier(model, a, b, data, bends=3, epochs=0)
    assert curve.history["loss"] == []
    got = curve.evaluate(model, data, ts=ts, progress=False).values["data"]
    want = linpath.interpolate(model, a, b, data, alphas=ts, progress=False).values["data"]
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-6)
    np.testing.assert_allclose(got["error"], want["error"], atol=1e-9)


@pytest.fixture(scope="module")
def mnist_pair():
    """1,000 real MNIST training images (a fresh random subset) and two 784-32-10 MLPs trained on
    them from different seeds."""
    x, y = linpath.datasets.mnist().train
    idx = torch.randperm(len(x))[:1000]
    data = (x[idx], y[idx])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest, on a busy machine by far
    try:
        return data, train_mlp(data, 1), train_mlp(data, 2)
    finally:
        torch.set_num_threads(threads)


def train_mlp(data, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = data
    for _ in range(15):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            j = perm[i : i + 64]
            loss = F.cross_entropy(model(x[j]), y[j])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model


def test_trained_curve_has_a_lower_maximum_than_the_line(mnist_pair):
    """Garipov et al. (2018): the loss along a trained curve stays near the endpoints' while the
    segment between the two solutions rises far above them."""
    data, a, b = mnist_pair
    model = copy.deepcopy(a)
    ts = np.linspace(0, 1, 21)
    line = linpath.interpolate(model, a, b, data, alphas=ts, metrics=["loss"], progress=False)
    curve = curves.bezier(model, a, b, data, epochs=10, lr=0.05, batch_size=64, seed=0, progress=False)
    along = curve.evaluate(model, data, ts=ts, metrics=["loss"], progress=False)
    line_max, curve_max = line.values["data"]["loss"].max(), along.values["data"]["loss"].max()
    ends = max(line.values["data"]["loss"][[0, -1]])
    print(f"MNIST 1k, 784-32-10: endpoints {ends:.4f}, line max {line_max:.4f}, Bezier max {curve_max:.4f}")
    assert line_max > ends + 0.1  # there is a barrier on the segment
    assert curve_max < ends + 0.5 * (line_max - ends)  # the curve removes at least half of it
    np.testing.assert_allclose(
        along.values["data"]["loss"][[0, -1]], line.values["data"]["loss"][[0, -1]], rtol=1e-6
    )


def test_same_seed_same_curve_and_the_global_rng_untouched(make_mlp, make_data):
    model = nn.Sequential(nn.Linear(20, 32), nn.Dropout(0.3), nn.ReLU(), nn.Linear(32, 10))
    a, b, data = make_mlp(1), make_mlp(2), make_data(100, 5)
    a, b = (nn.Sequential(m[0], nn.Dropout(0.3), m[1], m[2]) for m in (a, b))
    torch.manual_seed(1234)
    rng = torch.get_rng_state()
    first = curves.polychain(model, a, b, data, bends=2, seed=7, **FAST)
    assert torch.equal(torch.get_rng_state(), rng)
    torch.manual_seed(99)  # another global state: the same curve still
    again = curves.polychain(model, a, b, data, bends=2, seed=7, **FAST)
    other = curves.polychain(model, a, b, data, bends=2, seed=8, **FAST)
    for p, q in zip(first.control_points, again.control_points, strict=True):
        assert all(torch.equal(p[n], q[n]) for n in p)
    assert first.history == again.history
    assert any(
        not torch.equal(p[n], r[n])
        for p, r in zip(first.control_points, other.control_points, strict=True)
        for n in p
    )


def test_the_model_comes_back_unchanged(make_bn_mlp, make_data):
    model, a, b = make_bn_mlp(0, 0.5), make_bn_mlp(1, 1.0), make_bn_mlp(2, -1.0)
    model.train()
    model[0].weight.requires_grad_(False)
    before = state(model)
    curve = curves.bezier(model, a, b, make_data(100, 1), **FAST)
    assert_same_state(before, model)
    curve.evaluate(model, make_data(50, 2), ts=[0.0, 0.5, 1.0], buffers="recompute", progress=False)
    assert_same_state(before, model)
    assert all(not p.requires_grad for p in curve.control_points[1].values())


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_the_model_comes_back_after_an_error_or_ctrl_c(error, make_bn_mlp, make_data):
    model, a, b = make_bn_mlp(0, 0.5), make_bn_mlp(1, 1.0), make_bn_mlp(2, -1.0)
    before = state(model)
    calls = []

    def loss(out, y):
        calls.append(1)
        if len(calls) == 3:
            raise error("stop")
        return F.cross_entropy(out, y)

    with pytest.raises(error):
        curves.bezier(model, a, b, make_data(300, 1), loss=loss, **FAST)
    assert_same_state(before, model)


def test_bad_input_gives_clear_errors(make_mlp, make_data):
    model, a, b, data = make_mlp(0), make_mlp(1), make_mlp(2), make_data(50, 1)
    for bends in (0, 8):
        with pytest.raises(ValueError, match="bends must be 1 to 7"):
            curves.bezier(model, a, b, data, bends=bends)
    with pytest.raises(TypeError, match="bends must be an int"):
        curves.polychain(model, a, b, data, bends=1.5)
    wide = nn.Sequential(nn.Linear(20, 33), nn.ReLU(), nn.Linear(33, 10))
    with pytest.raises(ValueError, match="0.weight"):
        curves.bezier(model, a, wide, data)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        curves.curve_weights("bezier", 1, 1.5)
    curve = random_curve("bezier", 1, 0)
    for t in (-0.1, float("nan")):
        with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
            curve.point(t)
    trained = curves.bezier(model, a, b, data, epochs=0)
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        trained.evaluate(model, data, ts=[0.0, 1.2])
    with pytest.raises(ValueError, match="empty"):
        curves.bezier(model, a, b, (torch.zeros(0, 20), torch.zeros(0, dtype=torch.long)))
    with pytest.raises(ValueError, match="no example"):
        curves.bezier(model, a, b, DataLoader(TensorDataset(*make_data(0, 1)), batch_size=8))
    with pytest.raises(ValueError, match="'train' split"):
        curves.bezier(model, a, b, {"valid": data})
    with pytest.raises(ValueError, match="lr must be"):
        curves.bezier(model, a, b, data, lr=-1.0)
    with pytest.raises(ValueError, match="kind must be"):
        curves.curve_weights("spline", 1, 0.5)
    with pytest.raises(ValueError, match="0.weight"):
        trained.evaluate(wide, data)
    nan = {k: v.clone() for k, v in b.state_dict().items()}
    nan["2.bias"][3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        curves.bezier(model, a, nan, data)


def test_a_dataloader_trains_and_a_checkpoint_resumes(tmp_path, make_mlp, make_data):
    model, a, b = make_mlp(0), make_mlp(1), make_mlp(2)
    data = make_data(120, 4)
    loader = DataLoader(TensorDataset(*data), batch_size=32)
    curve = curves.bezier(model, a, b, loader, bends=2, epochs=2, lr=0.05, progress=False)
    assert len(curve.history["loss"]) == 2
    path = tmp_path / "curve.lpt"
    first = curve.evaluate(model, data, ts=np.linspace(0, 1, 5), checkpoint=path, progress=False)
    again = curve.evaluate(model, data, ts=np.linspace(0, 1, 5), checkpoint=path, progress=False)
    assert again.meta["job"]["resumed_points"] == 5 and again.meta["job"]["computed_points"] == 0
    np.testing.assert_array_equal(first.values["data"]["loss"], again.values["data"]["loss"])


def test_save_and_load(tmp_path, make_mlp, make_data):
    model, a, b = make_mlp(0), make_mlp(1), make_mlp(2)
    curve = curves.polychain(model, a, b, make_data(60, 1), bends=3, **FAST)
    curve.save(tmp_path / "c.pt")
    back = Curve.load(tmp_path / "c.pt")
    assert back.kind == "polychain" and back.bends == 3 and back.history == curve.history
    assert back.meta == curve.meta
    for p, q in zip(curve.control_points, back.control_points, strict=True):
        assert all(torch.equal(p[n], q[n]) for n in p)
    (tmp_path / "bad.pt").write_bytes(b"not a curve")
    with pytest.raises(ValueError, match="not a readable linpath Curve"):
        Curve.load(tmp_path / "bad.pt")


def test_a_native_mlp_trains_through_its_twin_and_evaluates_natively(make_data):
    """A linpath MLP's forward runs in Rust, out of autograd's reach: the curve trains on its PyTorch
    twin (built without touching the global RNG), and the native engine evaluates it as the module
    engine does."""
    from linpath.models import MLP

    model, a, b = MLP([20, 16, 10], seed=3), MLP([20, 16, 10], seed=1), MLP([20, 16, 10], seed=2)
    data = make_data(120, 6)
    before = state(model)
    rng = torch.get_rng_state()
    curve = curves.bezier(model, a, b, data, **FAST)
    assert torch.equal(torch.get_rng_state(), rng)
    assert_same_state(before, model)
    start = (a.state_dict()["layers.0.weight"] + b.state_dict()["layers.0.weight"]) / 2  # where θ_1 began
    assert (curve.control_points[1]["layers.0.weight"] - start).abs().max() > 1e-4  # trained
    ts = np.linspace(0, 1, 6)
    native = curve.evaluate(model, data, ts=ts, progress=False)
    module = curve.evaluate(model, data, ts=ts, engine="module", progress=False)
    assert native.meta["engine"] == "native" and module.meta["engine"] == "module"
    np.testing.assert_allclose(native.values["data"]["loss"], module.values["data"]["loss"], rtol=1e-5)


def test_the_garipov_schedule(make_mlp, make_data):
    """lr for the first half of the epochs, then linearly down to 1% at 90%, then 1% (Garipov et al.'s
    learning_rate_schedule, written out)."""
    want = [
        1.0,
        1.0,
        1.0,
        1.0,
        1.0,
        1.0,
        1 - 0.1 / 0.4 * 0.99,
        1 - 0.2 / 0.4 * 0.99,
        1 - 0.3 / 0.4 * 0.99,
        0.01,
    ]
    got = [curves.lr_factor("garipov", e, 10) for e in range(10)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert all(curves.lr_factor("constant", e, 10) == 1.0 for e in range(10))
    model, a, b = make_mlp(0), make_mlp(1), make_mlp(2)
    curve = curves.bezier(model, a, b, make_data(64, 1), schedule="garipov", **FAST)
    assert curve.meta["training"]["schedule"] == "garipov"
    with pytest.raises(ValueError, match="schedule must be"):
        curves.bezier(model, a, b, make_data(64, 1), schedule="cosine")
