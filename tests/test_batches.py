"""Batches of any shape and the whole-batch ``step=`` hook (python/linpath/batches.py, data.py)."""

import copy
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import linpath
from linpath.batches import check_model, to_device
from linpath.data import Split

ALPHAS = [0.0, 0.5, 1.0]


def _lerp(model, start, end, alpha):
    """A copy of ``model`` at θ0 + α(θ1 − θ0), by a hand-written load_state_dict (float64 arithmetic)."""
    copy_ = copy.deepcopy(model)
    s0, s1 = start.state_dict(), end.state_dict()
    copy_.load_state_dict(
        {k: (s0[k].double() + alpha * (s1[k].double() - s0[k].double())).to(v.dtype) for k, v in s0.items()}
    )
    return copy_


def _reference(model, start, end, batches, per_batch):
    """Σ sum_b / Σ count_b at each α, where ``per_batch(model, batch) -> (sum, count)`` (float64)."""
    out = []
    with torch.no_grad():
        for a in ALPHAS:
            m = _lerp(model, start, end, a).eval()
            sums = [per_batch(m, b) for b in batches]
            out.append(sum(s for s, _ in sums) / sum(c for _, c in sums))
    return np.array(out)


def _triples(seed, sizes=(7, 3, 5)):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(n, 20, generator=g), torch.randint(0, 10, (n,), generator=g), torch.rand(n, generator=g))
        for n in sizes
    ]


def test_longer_tuples_need_a_step_and_work_with_one(make_mlp):
    """(x, y, weight) batches: refused by the default path (which part is what?), scored by a step
    returning (mean, count); the count weights the batches."""
    model, start, end = make_mlp(0), make_mlp(1), make_mlp(2)
    batches = _triples(0)
    with pytest.raises(
        TypeError, match=r"split 'data': batch 0 is a tuple of 3 items.*step=fn\(model, batch\)"
    ):
        linpath.interpolate(model, start, end, batches, alphas=ALPHAS, progress=False)

    def step(m, b):
        x, y, w = b
        return (F.cross_entropy(m(x), y, reduction="none") * w).sum() / w.sum(), len(y)

    sweep = linpath.interpolate(model, start, end, batches, alphas=ALPHAS, progress=False, step=step)

    def ref(m, b):
        x, y, w = b
        losses = F.cross_entropy(m(x).double(), y, reduction="none")
        return float((losses * w).sum() / w.sum() * len(y)), len(y)

    np.testing.assert_allclose(
        sweep.values["data"]["loss"], _reference(model, start, end, batches, ref), rtol=1e-6
    )
    assert list(sweep.values["data"]) == ["loss"]


@dataclasses.dataclass
class Example:
    pixels: torch.Tensor
    target: torch.Tensor


class Opaque:
    def __init__(self, x, y):
        self.x, self.y = x, y


def test_custom_batch_objects(make_mlp):
    """A dataclass batch (moved to the device field by field) with a bare mean: its count is its
    first tensor's length; an opaque object with a bare mean: refused (the count is unknown)."""
    model, start, end = make_mlp(0), make_mlp(1), make_mlp(2)
    batches = [Example(x, y) for x, y, _ in _triples(1)]
    sweep = linpath.interpolate(
        model,
        start,
        end,
        batches,
        alphas=ALPHAS,
        progress=False,
        step=lambda m, b: F.cross_entropy(m(b.pixels), b.target),
    )
    ref = _reference(
        model,
        start,
        end,
        batches,
        lambda m, b: (F.cross_entropy(m(b.pixels).double(), b.target).item() * len(b.target), len(b.target)),
    )
    np.testing.assert_allclose(sweep.values["data"]["loss"], ref, rtol=1e-6)
    opaque = [Opaque(b.pixels, b.target) for b in batches]
    with pytest.raises(ValueError, match=r"return \(mean, count\)"):
        linpath.interpolate(
            model,
            start,
            end,
            opaque,
            alphas=ALPHAS,
            progress=False,
            step=lambda m, b: F.cross_entropy(m(b.x), b.y),
        )
    with pytest.raises(TypeError, match="a Opaque; each batch must be"):
        linpath.interpolate(model, start, end, opaque, alphas=ALPHAS, progress=False)


def test_a_step_returning_named_metrics(make_mlp, make_data):
    """A dict of metrics (with a count) flows into Sweep.values; metrics= narrows it; the weights are
    the counts; unknown or missing names are refused."""
    model, start, end = make_mlp(0), make_mlp(1), make_mlp(2)
    x, y = make_data(50, 3)

    def step(m, b):
        out = m(b[0])
        return {
            "loss": F.cross_entropy(out, b[1]),
            "acc": (out.argmax(1) == b[1]).double().mean(),
            "count": len(b[1]),
        }

    sweep = linpath.interpolate(
        model, start, end, (x, y), alphas=ALPHAS, batch_size=16, progress=False, step=step
    )
    assert list(sweep.values["data"]) == ["loss", "acc"]
    plain = linpath.interpolate(model, start, end, (x, y), alphas=ALPHAS, progress=False)
    np.testing.assert_allclose(sweep.values["data"]["loss"], plain.values["data"]["loss"], rtol=1e-6)
    np.testing.assert_allclose(sweep.values["data"]["acc"], 1 - plain.values["data"]["error"], rtol=1e-12)
    only = linpath.interpolate(
        model, start, end, (x, y), alphas=ALPHAS, progress=False, step=step, metrics=["acc"]
    )
    assert list(only.values["data"]) == ["acc"]
    with pytest.raises(ValueError, match=r"metrics \['f1'\] were asked for"):
        linpath.interpolate(
            model, start, end, (x, y), alphas=ALPHAS, progress=False, step=step, metrics=["acc", "f1"]
        )
    with pytest.raises(ValueError, match="not 'count'"):
        linpath.interpolate(
            model, start, end, (x, y), alphas=ALPHAS, progress=False, step=step, metrics=["count"]
        )
    with pytest.raises(ValueError, match=r"subset of \('loss', 'error'\)"):
        linpath.interpolate(model, start, end, (x, y), alphas=ALPHAS, progress=False, metrics=["acc"])


def test_step_arguments_are_checked(make_mlp, make_data):
    model, data = make_mlp(0), make_data(20, 0)
    step = lambda m, b: F.cross_entropy(m(b[0]), b[1])  # noqa: E731
    with pytest.raises(ValueError, match="not both"):
        linpath.interpolate(model, model, make_mlp(1), data, step=step, loss=F.cross_entropy, progress=False)
    with pytest.raises(ValueError, match="only the module engine"):
        linpath.interpolate(model, model, make_mlp(1), data, step=step, engine="native", progress=False)
    with pytest.raises(TypeError, match="step must be callable"):
        linpath.interpolate(model, model, make_mlp(1), data, step=3, progress=False)
    with pytest.raises(ValueError, match="real floating-point scalar"):
        linpath.interpolate(model, model, make_mlp(1), data, step=lambda m, b: "low", progress=False)
    surface = linpath.surface(
        model,
        model,
        [make_mlp(1), make_mlp(2)],
        data,
        grid=([-1.0, 1.0], [0.0, 1.0]),
        step=step,
        progress=False,
    )
    plain = linpath.surface(
        model, model, [make_mlp(1), make_mlp(2)], data, grid=([-1.0, 1.0], [0.0, 1.0]), progress=False
    )
    np.testing.assert_allclose(surface.values["data"]["loss"], plain.values["data"]["loss"], rtol=1e-6)


def test_a_step_forces_the_module_engine_on_a_native_model(make_data):
    mlp, other = linpath.models.MLP([20, 16, 10], seed=0), linpath.models.MLP([20, 16, 10], seed=1)
    data = make_data(40, 1)
    step = linpath.interpolate(
        mlp, mlp, other, data, alphas=ALPHAS, progress=False, step=lambda m, b: F.cross_entropy(m(b[0]), b[1])
    )
    native = linpath.interpolate(mlp, mlp, other, data, alphas=ALPHAS, progress=False)
    assert step.meta["engine"] == "module" and native.meta["engine"] == "native"
    np.testing.assert_allclose(step.values["data"]["loss"], native.values["data"]["loss"], rtol=1e-5)


class DictModel(nn.Module):
    """A model taking keyword inputs (and labels, which it ignores) and returning tensors, tuples or dicts."""

    def __init__(self, kind):
        super().__init__()
        torch.manual_seed(0)
        self.net, self.kind = nn.Linear(20, 10), kind

    def forward(self, x, labels=None):
        out = self.net(x)
        if self.kind == "dict":
            return {"logits": out, "hidden": out.mean(1)}
        if self.kind == "pair":
            return F.cross_entropy(out, labels) if labels is not None else out.sum(), out
        if self.kind == "ambiguous":
            return out, out * 2
        return out


@pytest.mark.parametrize("kind", ["tensor", "dict", "pair"])
def test_outputs_with_unambiguous_logits_get_the_default_loss(kind, make_data):
    """Dict batches call model(**batch); tuple, dict and tensor outputs whose logits are unambiguous
    are scored by cross-entropy on the labels, with the error rate."""
    model, other = DictModel(kind), DictModel(kind)
    nn.init.normal_(other.net.weight)
    x, y = make_data(30, 4)
    batches = [{"x": x[i : i + 8], "labels": y[i : i + 8]} for i in range(0, 30, 8)]
    sweep = linpath.interpolate(model, model, other, batches, alphas=ALPHAS, progress=False)
    plain = linpath.interpolate(
        model.net, model.net, other.net, (x, y), alphas=ALPHAS, batch_size=8, progress=False
    )
    for metric in ("loss", "error"):
        np.testing.assert_allclose(sweep.values["data"][metric], plain.values["data"][metric], rtol=1e-6)


def test_ambiguous_outputs_say_what_to_pass(make_data):
    model, data = DictModel("ambiguous"), make_data(12, 0)
    with pytest.raises(
        ValueError, match=r"output on batch 0 of split 'data' is a tuple of 2 items.*pass loss="
    ):
        linpath.interpolate(model, model, model, data, progress=False)
    dict_model = DictModel("dict")
    with pytest.raises(
        ValueError,
        match=r"the loss could not take the model's output.*a dict with keys \['logits', 'hidden'\]",
    ):
        linpath.interpolate(
            dict_model,
            dict_model,
            dict_model,
            data,
            loss=lambda o, y: F.mse_loss(o.float(), y),
            progress=False,
        )
    embed = DictModel("pair")  # (a loss, a [n, 10] tensor): no error rate next to a loss of one's own
    custom = linpath.interpolate(
        embed, embed, embed, data, loss=lambda o, y: o[1].pow(2).mean(), progress=False
    )
    assert list(custom.values["data"]) == ["loss"]
    fine = linpath.interpolate(
        model, model, model, data, loss=lambda o, y: F.cross_entropy(o[0], y), alphas=[0.0], progress=False
    )
    with torch.no_grad():
        assert fine.values["data"]["loss"][0] == pytest.approx(
            F.cross_entropy(model.net(data[0]), data[1]).item(), rel=1e-6
        )


def test_dict_batches_without_labels_or_with_unknown_keys(make_data):
    model, (x, y) = DictModel("tensor"), make_data(12, 0)
    with pytest.raises(ValueError, match="without a 'labels' tensor"):
        linpath.interpolate(model, model, model, [{"x": x}], progress=False)
    with pytest.raises(TypeError, match=r"DictModel\(\*\*batch\) failed.*keys \['inputs', 'labels'\]"):
        linpath.interpolate(model, model, model, [{"inputs": x, "labels": y}], progress=False)
    with pytest.raises(ValueError, match="cannot tell how many of the labels"):
        linpath.interpolate(
            model,
            model,
            model,
            [{"x": x, "labels": y[:, None].expand(12, 3)}],
            step=lambda m, b: m(b["x"]).sum() * 0.0,
            progress=False,
        )


def test_half_precision_parameters_get_their_inputs_cast(make_mlp, make_data):
    """A bf16 model on float32 inputs (pairs, and dict batches but their labels): inputs are cast,
    values equal the model run on bf16 inputs by hand."""
    model, end = make_mlp(0, torch.bfloat16), make_mlp(1, torch.bfloat16)
    x, y = make_data(40, 2)
    sweep = linpath.interpolate(model, model, end, (x, y), alphas=[0.0, 1.0], progress=False)
    with torch.no_grad():
        for a, m in zip([0.0, 1.0], [model, end], strict=True):
            ref = F.cross_entropy(m(x.bfloat16()).double(), y).item()
            assert sweep.values["data"]["loss"][int(a)] == pytest.approx(ref, rel=1e-2)
    moved = to_device({"x": x, "labels": y.double()}, torch.device("cpu"), torch.bfloat16)
    assert moved["x"].dtype == torch.bfloat16 and moved["labels"].dtype == torch.float64


def test_a_module_without_forward_on_meta_or_on_several_devices(make_data):
    class NoForward(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(20, 10)

        def score(self, x):
            return self.net(x)

    model, (x, y) = NoForward(), make_data(12, 0)
    with pytest.raises(TypeError, match="NoForward has no forward method.*step="):
        linpath.interpolate(model, model, model, (x, y), progress=False)
    sweep = linpath.interpolate(
        model,
        model,
        model,
        (x, y),
        alphas=[0.0],
        progress=False,
        step=lambda m, b: F.cross_entropy(m.score(b[0]), b[1]),
    )
    assert np.isfinite(sweep.values["data"]["loss"]).all()
    meta = nn.Linear(20, 10, device="meta")
    with pytest.raises(ValueError, match="meta device"):
        linpath.interpolate(meta, meta, meta, (x, y), progress=False)
    spread = nn.Sequential(nn.Linear(20, 10), nn.Linear(10, 10, device="meta"))
    with pytest.raises(ValueError, match=r"several devices \(cpu, meta\)"):
        check_model(spread, None)


def test_pairs_are_staged_once_per_sweep(make_data):
    """An (X, Y) pair that needs moving (here: a cast to the parameters' bf16) is moved once and the
    same staged tensors serve every pass; a DataLoader's batches are moved as they come."""
    x, y = make_data(30, 0)
    split = Split("train", (x, y), 8)
    cpu = torch.device("cpu")
    first = [b[0] for b in split.batches(cpu, torch.bfloat16)]
    second = [b[0] for b in split.batches(cpu, torch.bfloat16)]
    assert all(a.dtype == torch.bfloat16 for a in first)
    assert [a.data_ptr() for a in first] == [b.data_ptr() for b in second]
    assert torch.equal(torch.cat(first), x.bfloat16())
    plain = [b[0] for b in Split("t", (x, y), 8).batches(cpu)]
    assert plain[0].data_ptr() == x.data_ptr()  # on the device already: no copy at all


def test_nested_batches_are_moved_whole():
    batch = {"a": (torch.ones(2), [torch.zeros(2, dtype=torch.float64)]), "labels": torch.ones(2), "n": 3}
    moved = to_device(batch, torch.device("cpu"), torch.bfloat16)
    assert moved["a"][0].dtype == torch.bfloat16 and moved["a"][1][0].dtype == torch.bfloat16
    assert moved["labels"].dtype == torch.float32 and moved["n"] == 3
