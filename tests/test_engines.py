"""Both engines of interpolate (python/linpath/engines.py, python/linpath/_validate.py): answers that
used to be silently wrong, and the inputs every engine refuses alike."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import linpath
from linpath.models import MLP

GRID = np.linspace(0.0, 1.0, 6)


def lerp_model(model, start, end, alpha):
    """``model`` set to θ0 + α·(θ1 − θ0) of two modules, computed in float64 (float buffers too)."""
    ends = zip(start.state_dict().values(), end.state_dict().values(), strict=True)
    with torch.no_grad():
        for t, (a, b) in zip(model.state_dict().values(), ends, strict=True):
            if t.is_floating_point():
                t.copy_(a.double() + alpha * (b.double() - a.double()))
    return model


def reference_losses(make_model, start, end, data, alphas, dtype=torch.float64):
    """Mean cross-entropy along the line, the slow obvious way in ``dtype``."""
    x, y = data
    out = []
    for a in alphas:
        model = lerp_model(make_model().to(dtype), start, end, a).eval()
        with torch.no_grad():
            out.append(F.cross_entropy(model(x.to(dtype)), y).item())
    return np.array(out)


# --- item 1: bf16 on the module engine ---------------------------------------------------------------


def test_bf16_module_sweep_evaluates_every_alpha_at_its_own_weights(make_mlp, make_data):
    """Autocast's weight cache used to keep the first α's bf16 weights for the whole sweep."""
    start, end, data = make_mlp(0), make_mlp(1), make_data(400, 3)
    fast = linpath.interpolate(make_mlp(0), start, end, data, alphas=GRID, precision="bf16", progress=False)
    ref = reference_losses(lambda: make_mlp(0), start, end, data, GRID)
    loss = fast.values["data"]["loss"]
    assert len(np.unique(loss)) == len(GRID)  # one value per α, not the first α's everywhere
    np.testing.assert_allclose(loss, ref, rtol=2e-2)
    assert fast.precision_check["ok"]


# --- item 2: non-finite values are reported, never averaged away ---------------------------------------


@pytest.fixture
def batchnorm_sweep(make_bn_mlp, splits):
    start, end = make_bn_mlp(0, 0.0), make_bn_mlp(1, 3.0)
    alphas = np.linspace(-1.0, 2.0, 13)
    with pytest.warns(RuntimeWarning, match="negative at alpha = -1") as record:
        sweep = linpath.interpolate(make_bn_mlp(0, 0.0), start, end, splits, alphas=alphas, progress=False)
    return sweep, [str(w.message) for w in record]


def test_batchnorm_beyond_the_segment_is_reported_with_its_cause(batchnorm_sweep):
    sweep, messages = batchnorm_sweep
    bad = sweep.nonfinite("train")
    assert bad.size > 0 and ((bad < 0) | (bad > 1)).all()
    assert np.isnan(sweep.values["train"]["loss"][np.isin(sweep.alphas, bad)]).all()
    # The error rate at NaN outputs is NaN, not the argmax of NaN logits (0.90 before).
    assert np.isnan(sweep.values["train"]["error"][np.isin(sweep.alphas, bad)]).all()
    assert sweep.meta["nonfinite"]["train"]["loss"] == bad.tolist()
    assert any("BatchNorm running variances" in m and "kept as measured" in m for m in messages)


def test_statistics_over_nan_are_nan_with_a_warning(batchnorm_sweep):
    sweep, _ = batchnorm_sweep
    with pytest.warns(RuntimeWarning, match="unknown: the values are NaN"):
        assert all(np.isnan(sweep.minimum("train")))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # inside [0, 1] every value is finite: no warning, real numbers
        alpha, value = sweep.minimum("train", interval=(0.0, 1.0))
        assert 0.0 <= alpha <= 1.0 and np.isfinite(value)
        assert np.isfinite(sweep.barrier("train"))
    with pytest.warns(RuntimeWarning):
        assert np.isnan(sweep.monotonicity_gap("train", interval=(-1.0, 2.0)))
    with pytest.warns(RuntimeWarning):
        assert not sweep.is_monotone("train", interval=(-1.0, 2.0))


def test_the_plot_marks_non_finite_alphas(batchnorm_sweep):
    sweep, _ = batchnorm_sweep
    ax = sweep.plot()
    labels = [line.get_label() for line in ax.get_lines()]
    n_bad = sweep.nonfinite("train").size
    assert f"train: NaN/inf at {n_bad} α" in labels
    marks = next(line for line in ax.get_lines() if line.get_label().startswith("train: NaN"))
    np.testing.assert_array_equal(marks.get_xdata(), sweep.nonfinite("train"))


def test_overflowing_outputs_give_nan_errors_on_both_engines():
    start = MLP([4, 8, 3], seed=0)
    end = MLP([4, 8, 3], seed=1)
    with torch.no_grad():
        for p in end.parameters():
            p.mul_(1e20)  # finite, but far along the line the logits overflow float32
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(50, 4, generator=g).abs() + 1, torch.randint(0, 3, (50,), generator=g)
    for model, engine in ((start, "native"), (start.to_torch(), "module")):
        with pytest.warns(RuntimeWarning, match="outputs overflow"):
            sweep = linpath.interpolate(
                model, start, end, (x, y), alphas=[0.0, 1.0], engine=engine, progress=False
            )
        assert np.isfinite(sweep.values["data"]["error"][0])
        assert not np.isfinite(sweep.values["data"]["loss"][1]) and np.isnan(sweep.values["data"]["error"][1])


# --- item 5: empty batches --------------------------------------------------------------------------


@pytest.mark.parametrize("loss", [None, F.cross_entropy])
def test_an_empty_batch_adds_nothing(loss, make_mlp, make_data):
    x, y = make_data(200, 4)
    batches = [(x[:120], y[:120]), (x[:0], y[:0]), (x[120:], y[120:])]
    start, end = make_mlp(0), make_mlp(1)
    run = {"alphas": GRID, "loss": loss, "progress": False}
    with_empty = linpath.interpolate(make_mlp(0), start, end, batches, **run)
    whole = linpath.interpolate(make_mlp(0), start, end, (x, y), **run)
    np.testing.assert_allclose(with_empty.values["data"]["loss"], whole.values["data"]["loss"], rtol=1e-6)
    np.testing.assert_array_equal(with_empty.values["data"]["error"], whole.values["data"]["error"])


def test_a_split_of_empty_batches_only_is_an_error(make_mlp, make_data):
    x, y = make_data(10, 4)
    with pytest.raises(ValueError, match="yielded no examples"):
        linpath.interpolate(make_mlp(0), make_mlp(0), make_mlp(1), [(x[:0], y[:0])], progress=False)


# --- item 6: endpoints that share memory with the model ----------------------------------------------


def flat_float64_model(seed):
    """A float64 MLP whose parameters are views into one flat vector, and that vector."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 9), nn.Tanh(), nn.Linear(9, 4)).double()
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).clone()
    offset = 0
    for layer in (model[0], model[2]):
        for name in ("weight", "bias"):
            p = getattr(layer, name)
            setattr(layer, name, nn.Parameter(flat[offset : offset + p.numel()].view(p.shape)))
            offset += p.numel()
    return model, flat


@pytest.mark.parametrize("engine", ["module"])
def test_a_start_that_is_a_view_of_the_model_does_not_drift(engine):
    model, flat = flat_float64_model(0)
    end = torch.randn(flat.numel(), dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(80, 6, generator=g, dtype=torch.float64), torch.randint(0, 4, (80,), generator=g)
    theta0 = flat.clone()
    sweep = linpath.interpolate(model, flat, end, (x, y), alphas=GRID, engine=engine, progress=False)
    twin, _ = flat_float64_model(0)
    expected = []
    for a in GRID:
        linpath.assign(twin, theta0 + a * (end - theta0))
        expected.append(F.cross_entropy(twin(x), y).item())
    np.testing.assert_allclose(sweep.values["data"]["loss"], expected, rtol=1e-12)
    assert torch.equal(flat, theta0)  # and the model is back where it was


# --- the same refusals on every engine (items 3, 12 and the rest) -------------------------------------


def _native_pair():
    return MLP([5, 7, 3], seed=0), MLP([5, 7, 3], seed=1)


def _with(vector, index, value):
    vector = vector.clone()
    vector[index] = value
    return vector


BAD_ENDPOINTS = {
    "nan end": (lambda s, e: (s, _with(linpath.flatten(e).tensor, 3, float("nan"))), "end contains NaN"),
    "inf start": (lambda s, e: (_with(linpath.flatten(s).tensor, 0, float("inf")), e), "start contains NaN"),
    "-inf end": (
        lambda s, e: (s, _with(linpath.flatten(e).tensor, 45, -float("inf"))),
        r"'layers.1.weight'\[3\] = -inf",
    ),
    "meta end": (
        lambda s, e: (s, torch.zeros(linpath.flatten(e).tensor.numel(), device="meta")),
        "meta device",
    ),
    "short end": (lambda s, e: (s, linpath.flatten(e).tensor[:-1]), "expected a 1-D vector"),
}


@pytest.mark.parametrize("engine", ["native", "module"])
@pytest.mark.parametrize("case", list(BAD_ENDPOINTS))
def test_every_engine_refuses_the_same_endpoints(engine, case):
    start, end = _native_pair()
    make, match = BAD_ENDPOINTS[case]
    s, e = make(start, end)
    model = start if engine == "native" else start.to_torch()
    g = torch.Generator().manual_seed(0)
    data = (torch.randn(20, 5, generator=g), torch.randint(0, 3, (20,), generator=g))
    with pytest.raises(ValueError, match=match):
        linpath.interpolate(model, s, e, data, alphas=GRID, engine=engine, progress=False)


@pytest.mark.parametrize("engine", ["native", "module"])
def test_alphas_that_overflow_the_parameters_dtype_are_refused(engine):
    start, end = _native_pair()
    model = start if engine == "native" else start.to_torch()
    data = (torch.randn(20, 5), torch.randint(0, 3, (20,)))
    with pytest.raises(ValueError, match=r"alpha = 1e\+300 takes parameter .* beyond the range of its dtype"):
        linpath.interpolate(model, start, end, data, alphas=[0.0, 1e300], engine=engine, progress=False)


def test_a_huge_alpha_on_a_constant_line_is_evaluated_not_crashed(make_data):
    """d = 0: θ(α) = θ0 at every α, however large; the affine cache cannot hold α = 1e300 in float32."""
    model = nn.Linear(20, 10)
    data = make_data(30, 1)
    sweep = linpath.interpolate(
        nn.Linear(20, 10), model, model, data, alphas=[0.0, 0.5, 1e300], progress=False
    )
    assert np.all(sweep.values["data"]["loss"] == sweep.values["data"]["loss"][0])


def test_a_meta_model_is_refused(make_data):
    with pytest.raises(ValueError, match="meta device"):
        linpath.interpolate(
            nn.Linear(20, 10, device="meta"),
            nn.Linear(20, 10),
            nn.Linear(20, 10),
            make_data(10, 0),
            progress=False,
        )
    with pytest.raises(ValueError, match="meta device"):
        linpath.flatten(nn.Linear(20, 10, device="meta"))


def test_nan_in_interpolated_buffers_is_refused(make_bn_mlp, splits):
    start, end = make_bn_mlp(0, 0.0), make_bn_mlp(1, 1.0)
    with torch.no_grad():
        end[1].running_mean[2] = float("nan")
    with pytest.raises(ValueError, match=r"end contains NaN or infinite values \('1.running_mean'\[2\]"):
        linpath.interpolate(make_bn_mlp(0, 0.0), start, end, splits, progress=False)


# --- item 11: strided data on the native engine ------------------------------------------------------


def test_strided_inputs_and_targets_are_accepted_by_the_native_engine():
    start, end = _native_pair()
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(400, 5, generator=g), torch.randint(0, 3, (400,), generator=g)
    strided = (x.t().contiguous().t()[::2], y[::2])
    assert not strided[0].is_contiguous() and not strided[1].is_contiguous()
    got = linpath.interpolate(start, start, end, strided, alphas=GRID, progress=False)
    copied = (x[::2].contiguous(), y[::2].contiguous())
    want = linpath.interpolate(start, start, end, copied, alphas=GRID, progress=False)
    assert got.meta["engine"] == "native"
    for metric in ("loss", "error"):
        np.testing.assert_array_equal(got.values["data"][metric], want.values["data"][metric])


@pytest.mark.parametrize("engine", ["native", "module"])
def test_nan_inputs_are_named_as_the_likely_cause(engine):
    start, end = _native_pair()
    model = start if engine == "native" else start.to_torch()
    x, y = torch.randn(20, 5), torch.randint(0, 3, (20,))
    x[7, 2] = float("nan")
    with pytest.warns(RuntimeWarning, match=r"the inputs of split\(s\) \['train'\] contain NaN"):
        sweep = linpath.interpolate(
            model, start, end, {"train": (x, y)}, alphas=GRID, engine=engine, progress=False
        )
    assert np.isnan(sweep.values["train"]["loss"]).all() and np.isnan(sweep.values["train"]["error"]).all()


@pytest.mark.parametrize(
    "targets",
    [lambda y: y.float(), lambda y: y[:, None], lambda y: y.int(), lambda y: y > 0],
    ids=["float", "2-D", "int32", "bool"],
)
def test_targets_the_default_loss_cannot_score_are_a_clear_value_error(targets, make_mlp, make_data):
    x, y = make_data(30, 2)
    with pytest.raises(ValueError, match=r"the default loss \(cross-entropy\) cannot score split 'data'"):
        linpath.interpolate(make_mlp(0), make_mlp(0), make_mlp(1), (x, targets(y)), progress=False)


def test_the_native_sweep_refuses_float_token_ids_like_the_trainer():
    """Float "token ids" were truncated to integers by the native sweep, while train refused them."""
    from linpath.models import LSTMLanguageModel

    lm = LSTMLanguageModel(vocab_size=20, embedding_size=6, hidden_size=5, num_layers=1, seed=0)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randint(0, 20, (8, 5), generator=g), torch.randint(0, 20, (8, 5), generator=g)
    for call in (
        lambda: linpath.interpolate(lm, lm, lm, (x.float() + 0.9, y), alphas=GRID, progress=False),
        lambda: linpath.train(lm, (x.float() + 0.9, y), epochs=1, batch_size=4, lr=0.1, progress=False),
    ):
        with pytest.raises(TypeError, match="X must hold integer token ids"):
            call()


def test_a_single_logit_model_has_no_argmax_error_rate():
    """[n, 1] outputs with 0/1 targets (a BCE model): argmax is always 0, so an "error rate" would
    just be the share of positives. The error metric is left out instead."""
    model = nn.Linear(5, 1)
    x = torch.randn(200, 5, generator=torch.Generator().manual_seed(0))
    y = (x[:, 0] > 0).long()

    def bce(out, target):
        return F.binary_cross_entropy_with_logits(out.squeeze(1), target.float())

    sweep = linpath.interpolate(model, model, model, (x, y), alphas=[0.0, 1.0], loss=bce, progress=False)
    assert list(sweep.values["data"]) == ["loss"]
    with pytest.raises(ValueError, match="none of the metrics asked for could be computed on split 'data'"):
        linpath.interpolate(
            model, model, model, (x, y), alphas=[0.0, 1.0], loss=bce, metrics=("error",), progress=False
        )


class Masked(nn.Module):
    """Class 3 masked out with -inf logits (as in constrained decoding)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        mask = torch.zeros(5, dtype=torch.bool)
        mask[3] = True
        return self.fc(x).masked_fill(mask, -float("inf"))


def test_masked_logits_at_minus_inf_keep_a_real_error_rate():
    torch.manual_seed(0)
    start, end = Masked(), Masked()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(100, 6, generator=g), torch.randint(0, 3, (100,), generator=g)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sweep = linpath.interpolate(Masked(), start, end, (x, y), alphas=GRID, progress=False)
    model = Masked()
    for alpha, error in zip(GRID, sweep.values["data"]["error"], strict=True):
        lerp_model(model, start, end, alpha)
        with torch.no_grad():
            assert error == (model(x).argmax(1) != y).double().mean().item()


def test_split_names_that_collide_as_strings_are_refused(make_mlp, make_data):
    with pytest.raises(ValueError, match="split names must differ as strings"):
        linpath.interpolate(make_mlp(0), make_mlp(0), make_mlp(1), {1: make_data(9, 0), "1": make_data(5, 1)})


def test_a_dataloader_of_single_examples_is_a_clear_error(make_mlp, make_data):
    x, y = make_data(12, 0)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=None)
    with pytest.raises(ValueError, match="batch 0 holds a single example"):
        linpath.interpolate(make_mlp(0), make_mlp(0), make_mlp(1), loader, progress=False)


class RotaryLike(nn.Module):
    """BatchNorm plus a non-persistent float buffer (never in a state_dict, like a rotary inv_freq)."""

    def __init__(self):
        super().__init__()
        self.fc, self.bn, self.out = nn.Linear(5, 8), nn.BatchNorm1d(8), nn.Linear(8, 3)
        self.register_buffer("scale", torch.tensor(1.0), persistent=False)

    def forward(self, x):
        return self.out(torch.relu(self.bn(self.fc(x)) * self.scale))


def rotary_like(seed, shift):
    torch.manual_seed(seed)
    model = RotaryLike().train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(64, 5) + shift)
    return model.eval()


def test_state_dict_endpoints_interpolate_buffers_despite_non_persistent_ones():
    start, end = rotary_like(0, 0.0), rotary_like(1, 2.0)
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(100, 5, generator=g), torch.randint(0, 3, (100,), generator=g)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every persistent buffer is carried: no warning
        sweep = linpath.interpolate(
            rotary_like(0, 0.0), start.state_dict(), end.state_dict(), (x, y), alphas=GRID, progress=False
        )
    assert sweep.meta["buffers_interpolated"]
    want = reference_losses(lambda: rotary_like(0, 0.0), start, end, (x, y), GRID)
    np.testing.assert_allclose(sweep.values["data"]["loss"], want, rtol=1e-5)


def test_models_with_their_own_objective_are_never_scored_by_another():
    """An MP-DBM's J is its multi-prediction objective, which only the native engine computes; a
    DataLoader split (or engine='module') used to turn it into the cross-entropy of log Q."""
    from torch.utils.data import DataLoader, TensorDataset

    from linpath.models import MPDBM

    a, b = MPDBM(12, 6, 5, 3, mf_steps=3, seed=1), MPDBM(12, 6, 5, 3, mf_steps=3, seed=2)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(40, 12, generator=g), torch.randint(0, 3, (40,), generator=g)
    loader = DataLoader(TensorDataset(x, y), batch_size=10)
    for data, engine in (({"pair": (x, y), "loader": loader}, "auto"), ((x, y), "module")):
        with pytest.raises(ValueError, match="scored by its own objective"):
            linpath.interpolate(a, a, b, data, alphas=[0.0, 1.0], engine=engine, progress=False)
    native = linpath.interpolate(a, a, b, (x, y), alphas=[0.0, 1.0], progress=False)
    assert native.values["data"]["loss"][0] == pytest.approx(a.evaluate(x, y)[0], rel=1e-6)


def test_odd_arguments_get_clear_errors_or_work(make_mlp, make_data):
    model, start, end, data = make_mlp(0), make_mlp(0), make_mlp(1), make_data(20, 0)
    with pytest.raises(ValueError, match="alphas must be finite float64 numbers"):
        linpath.interpolate(model, start, end, data, alphas=[10**400], progress=False)
    grid = torch.linspace(0, 1, 3, requires_grad=True)
    sweep = linpath.interpolate(model, start, end, data, alphas=grid, progress=False)
    np.testing.assert_array_equal(sweep.alphas, [0.0, 0.5, 1.0])
    once = linpath.interpolate(
        model, start, end, data, alphas=GRID, metrics=(m for m in ["loss"]), progress=False
    )
    assert list(once.values["data"]) == ["loss"]
    for loss in (
        lambda o, y: F.cross_entropy(o, y).to(torch.complex64),
        lambda o, y: F.cross_entropy(o, y) > 0,
    ):
        with pytest.raises(ValueError, match="real floating-point scalar tensor"):
            linpath.interpolate(model, start, end, data, loss=loss, progress=False)
    with pytest.raises(ValueError, match="layout torch.sparse_coo; linpath works on dense tensors"):
        linpath.flatten([torch.eye(3).to_sparse()])
    with pytest.raises(KeyError, match="no split 'zz'"):
        sweep.plot(splits=["zz"])
    with pytest.raises(KeyError, match="has metric 'acc'"):
        sweep.plot(metric="acc")


def test_the_bf16_check_looks_at_the_grids_extreme_alphas_in_any_order(make_mlp, make_data):
    grid = np.array([1.5, -0.5, 0.0, 0.5, 1.0, 0.25, 2.0])
    sweep = linpath.interpolate(
        make_mlp(0), make_mlp(0), make_mlp(1), make_data(50, 1), alphas=grid, precision="bf16", progress=False
    )
    checked = sweep.precision_check["alphas"]
    assert min(checked) == -0.5 and max(checked) == 2.0 and len(checked) == 4
