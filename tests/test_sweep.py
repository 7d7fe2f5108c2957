"""linpath.interpolate and linpath.Sweep (python/linpath/sweep.py, src/sweep.rs)."""

import copy
import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import linpath
from linpath import Sweep

GRID = np.linspace(-0.5, 1.5, 21)
FEW = GRID[::4]  # -0.5, -0.1, 0.3, 0.7, 1.1, 1.5: for tests that compare several sweeps


def lerp(a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    return (1.0 - alpha) * a.detach().double() + alpha * b.detach().double()


def reference_sweep(model, start, end, splits, alphas, loss=F.cross_entropy, buffers=True):
    """The slow obvious way, in float64: for each α set every parameter (and, if ``buffers``, every float
    buffer) to (1-α)θ0 + αθ1 from the state_dicts ``start`` and ``end``, then evaluate each whole split."""
    ref = copy.deepcopy(model).double().eval()
    values = {name: {"loss": [], "error": []} for name in splits}
    with torch.no_grad():
        for alpha in alphas:
            for name, p in ref.named_parameters():
                p.copy_(lerp(start[name], end[name], alpha))
            for name, b in ref.named_buffers():
                if buffers and b.is_floating_point():
                    b.copy_(lerp(start[name], end[name], alpha))
            for split, (x, y) in splits.items():
                out = ref(x.double())
                values[split]["loss"].append(loss(out, y.double() if y.is_floating_point() else y).item())
                if not y.is_floating_point():
                    values[split]["error"].append((out.argmax(1) != y).double().mean().item())
    return {s: {m: np.array(v) for m, v in mv.items() if v} for s, mv in values.items()}


def assert_matches(sweep, ref, splits, rtol):
    assert set(sweep.values) == set(ref)
    for split, mv in ref.items():
        assert set(sweep.values[split]) == set(mv)
        np.testing.assert_allclose(sweep.values[split]["loss"], mv["loss"], rtol=rtol, atol=0)
        if "error" in mv:
            n = len(splits[split][0])
            # float32 vs float64 logits may flip an argmax near a tie: at most one example.
            assert np.abs(sweep.values[split]["error"] - mv["error"]).max() <= 1.0 / n + 1e-12


@pytest.fixture
def endpoints(make_mlp):
    """(model, start, end): a float32 MLP holding neither endpoint, and two other initialisations (the end's
    weights scaled up, so that the logits and the error rate change visibly along the line)."""
    end = make_mlp(2)
    with torch.no_grad():
        for p in end.parameters():
            p.mul_(3.0)
    return make_mlp(0), make_mlp(1), end


def state(m):
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


# --- interpolate: values -------------------------------------------------------------------------------


def test_interpolate_matches_float64_reference(endpoints, splits):
    model, start, end = endpoints
    sweep = linpath.interpolate(model, start, end, splits, alphas=GRID, batch_size=64, progress=False)
    np.testing.assert_array_equal(sweep.alphas, GRID)
    ref = reference_sweep(model, state(start), state(end), splits, GRID)
    assert_matches(sweep, ref, splits, rtol=1e-5)
    # The curve really varies along the line.
    assert np.ptp(ref["train"]["loss"]) > 0.5 and np.ptp(ref["train"]["error"]) > 0.05


def test_endpoints_equal_direct_evaluation(endpoints, splits):
    model, start, end = endpoints
    sweep = linpath.interpolate(model, start, end, splits, alphas=[0.0, 0.5, 1.0], progress=False)
    for split, (x, y) in splits.items():
        for i, m in ((0, start), (2, end)):
            with torch.no_grad():
                out = m(x)
            assert sweep.values[split]["loss"][i] == F.cross_entropy(out, y).item()
            assert sweep.values[split]["error"][i] == (out.argmax(1) != y).sum().item() / len(y)


ENDPOINT_FORMS = {
    "module": lambda m: m,
    "state_dict": lambda m: m.state_dict(),
    "param_vector": linpath.flatten,
    "param_vector64": lambda m: linpath.flatten(m, dtype=torch.float64),
    "tensor": lambda m: linpath.flatten(m).tensor,
    "numpy": lambda m: linpath.flatten(m).numpy(),
}


@pytest.mark.parametrize("form", list(ENDPOINT_FORMS))
def test_every_endpoint_form_gives_the_same_sweep(form, endpoints, splits):
    model, start, end = endpoints
    as_form = ENDPOINT_FORMS[form]
    sweep = linpath.interpolate(
        model, as_form(start), as_form(end), splits, alphas=FEW, batch_size=100, progress=False
    )
    baseline = linpath.interpolate(model, start, end, splits, alphas=FEW, batch_size=100, progress=False)
    for s in splits:
        for m in ("loss", "error"):
            np.testing.assert_array_equal(sweep.values[s][m], baseline.values[s][m])
    assert_matches(sweep, reference_sweep(model, state(start), state(end), splits, FEW), splits, rtol=1e-5)


def test_dataloader_and_list_of_batches_match_the_pair(endpoints, splits):
    model, start, end = endpoints
    pair = linpath.interpolate(model, start, end, splits, alphas=FEW, batch_size=64, progress=False)
    loaders = {s: DataLoader(TensorDataset(x, y), batch_size=64) for s, (x, y) in splits.items()}
    lists = {
        s: [(x[i : i + 64], y[i : i + 64]) for i in range(0, len(x), 64)] for s, (x, y) in splits.items()
    }
    for data in (loaders, lists):
        other = linpath.interpolate(model, start, end, data, alphas=FEW, progress=False)
        for s in splits:
            for m in ("loss", "error"):
                # A pair's input layer comes from z0 + α·dz (linpath.affine); other batches run it as
                # written: the same values up to float32 rounding.
                np.testing.assert_allclose(other.values[s][m], pair.values[s][m], rtol=1e-6)


def test_batch_size_does_not_change_the_values(endpoints, splits):
    model, start, end = endpoints
    a = linpath.interpolate(model, start, end, splits, alphas=FEW, batch_size=37, progress=False)
    b = linpath.interpolate(model, start, end, splits, alphas=FEW, progress=False)
    for s in splits:
        np.testing.assert_allclose(a.values[s]["loss"], b.values[s]["loss"], rtol=2e-6)


def test_single_split_is_called_data(endpoints, splits):
    model, start, end = endpoints
    x, y = splits["train"]
    sweep = linpath.interpolate(model, start, end, (x.numpy(), y.numpy()), alphas=GRID, progress=False)
    assert sweep.splits == ["data"]
    assert_matches(
        sweep,
        reference_sweep(model, state(start), state(end), {"data": (x, y)}, GRID),
        {"data": (x, y)},
        rtol=1e-5,
    )


def test_custom_loss_on_float_targets_has_no_error(endpoints, splits):
    model, start, end = endpoints
    onehot = {s: (x, F.one_hot(y, 10).float()) for s, (x, y) in splits.items()}
    sweep = linpath.interpolate(
        model, start, end, onehot, alphas=GRID, loss=F.mse_loss, batch_size=64, progress=False
    )
    for s in splits:
        assert list(sweep.values[s]) == ["loss"]
    assert sweep.meta["loss"] == "mse_loss"
    assert_matches(
        sweep,
        reference_sweep(model, state(start), state(end), onehot, GRID, loss=F.mse_loss),
        onehot,
        rtol=1e-5,
    )


def test_float64_model_matches_tightly(make_mlp, make_data):
    model, start, end = (make_mlp(seed, torch.float64) for seed in (0, 1, 2))
    splits = {"train": make_data(300, 1, torch.float64), "valid": make_data(170, 2, torch.float64)}
    sweep = linpath.interpolate(model, start, end, splits, alphas=GRID, batch_size=64, progress=False)
    ref = reference_sweep(model, state(start), state(end), splits, GRID)
    for s in splits:
        np.testing.assert_allclose(sweep.values[s]["loss"], ref[s]["loss"], rtol=1e-12, atol=0)
        np.testing.assert_array_equal(sweep.values[s]["error"], ref[s]["error"])


def test_metrics_argument_selects_metrics(endpoints, splits):
    model, start, end = endpoints
    only_error = linpath.interpolate(model, start, end, splits, alphas=GRID, metrics="error", progress=False)
    both = linpath.interpolate(model, start, end, splits, alphas=GRID, progress=False)
    for s in splits:
        assert list(only_error.values[s]) == ["error"]
        np.testing.assert_array_equal(only_error.values[s]["error"], both.values[s]["error"])


# --- BatchNorm buffers ------------------------------------------------------------------------------


def test_batchnorm_buffers_are_interpolated_between_modules(make_bn_mlp, splits):
    model, start, end = make_bn_mlp(0, 0.0), make_bn_mlp(1, 2.0), make_bn_mlp(2, -1.5)
    sweep = linpath.interpolate(model, start, end, splits, alphas=GRID, batch_size=64, progress=False)
    assert sweep.meta["buffers_interpolated"] is True
    assert_matches(sweep, reference_sweep(model, state(start), state(end), splits, GRID), splits, rtol=1e-5)
    frozen = reference_sweep(model, state(start), state(end), splits, GRID, buffers=False)
    assert not np.allclose(sweep.values["train"]["loss"], frozen["train"]["loss"], rtol=1e-3)


def test_batchnorm_with_state_dict_endpoints_interpolates_buffers(make_bn_mlp, splits):
    model, start, end = make_bn_mlp(0, 0.0), make_bn_mlp(1, 2.0), make_bn_mlp(2, -1.5)
    sweep = linpath.interpolate(model, start.state_dict(), end, splits, alphas=GRID, progress=False)
    assert sweep.meta["buffers_interpolated"] is True
    assert_matches(sweep, reference_sweep(model, state(start), state(end), splits, GRID), splits, rtol=1e-5)


def test_batchnorm_with_param_vectors_uses_model_buffers_and_warns(make_bn_mlp, splits):
    model, start, end = make_bn_mlp(0, 0.0), make_bn_mlp(1, 2.0), make_bn_mlp(2, -1.5)
    with pytest.warns(UserWarning, match="buffers"):
        sweep = linpath.interpolate(
            model, linpath.flatten(start), linpath.flatten(end), splits, alphas=GRID, progress=False
        )
    assert sweep.meta["buffers_interpolated"] is False
    sd0, sd1 = state(start), state(end)
    for name, b in model.named_buffers():  # the model's own statistics at every alpha
        sd0[name] = sd1[name] = b
    assert_matches(sweep, reference_sweep(model, sd0, sd1, splits, GRID), splits, rtol=1e-5)


def test_endpoints_may_alias_the_model(make_bn_mlp, splits):
    model, start = make_bn_mlp(0, 0.5), make_bn_mlp(1, 2.0)
    ref = reference_sweep(model, state(start), state(model), splits, GRID)
    snap = snapshot(model)
    sweep = linpath.interpolate(model, start, model, splits, alphas=GRID, batch_size=64, progress=False)
    assert_matches(sweep, ref, splits, rtol=1e-5)
    # Reversed: θ(1 - α) from the model's own state_dict (views of its parameters) to start.
    sweep = linpath.interpolate(
        model, model.state_dict(), start.state_dict(), splits, alphas=1.0 - GRID, progress=False
    )
    assert_matches(sweep, ref, splits, rtol=1e-5)
    assert_unchanged(model, snap)


# --- the model is left exactly as it was ------------------------------------------------------------


def snapshot(model):
    return {
        "params": [(p, p.detach().clone(), p.requires_grad, p.data_ptr()) for p in model.parameters()],
        "buffers": [(b, b.clone()) for b in model.buffers()],
        "modes": [(m, m.training) for m in model.modules()],
        "names": [n for n, _ in model.named_parameters()],
    }


def assert_unchanged(model, snap):
    params = list(model.parameters())
    assert [n for n, _ in model.named_parameters()] == snap["names"]
    for p, (obj, saved, requires_grad, ptr) in zip(params, snap["params"], strict=True):
        assert p is obj and p.data_ptr() == ptr
        assert torch.equal(p, saved) and p.requires_grad == requires_grad
    for b, (obj, saved) in zip(model.buffers(), snap["buffers"], strict=True):
        assert b is obj and torch.equal(b, saved) and b.dtype == saved.dtype
    assert [(m, m.training) for m in model.modules()] == snap["modes"]


@pytest.fixture
def awkward_model(make_bn_mlp):
    """A BatchNorm MLP in train mode with one submodule in eval mode and one parameter frozen."""
    model = make_bn_mlp(0, 0.5).train()
    model[3].eval()
    model[0].bias.requires_grad_(False)
    return model


def test_model_is_restored_after_a_sweep(awkward_model, make_bn_mlp, splits):
    snap = snapshot(awkward_model)
    linpath.interpolate(
        awkward_model,
        make_bn_mlp(1, 2.0),
        make_bn_mlp(2, -1.0),
        splits,
        alphas=GRID,
        batch_size=64,
        progress=False,
    )
    assert_unchanged(awkward_model, snap)


class FailingLoss:
    """Cross-entropy that raises ``exc`` on its ``fail_on``-th call."""

    def __init__(self, exc: BaseException, fail_on: int = 7) -> None:
        self.exc, self.fail_on, self.calls = exc, fail_on, 0

    def __call__(self, out, y):
        self.calls += 1
        if self.calls == self.fail_on:
            raise self.exc
        return F.cross_entropy(out, y)


@pytest.mark.parametrize(
    "exc",
    [RuntimeError("loss exploded"), KeyboardInterrupt("loss exploded")],
    ids=["RuntimeError", "KeyboardInterrupt"],
)
def test_model_is_restored_after_an_exception_in_the_loss(exc, awkward_model, make_bn_mlp, splits):
    snap = snapshot(awkward_model)
    loss = FailingLoss(exc)
    with pytest.raises(type(exc), match="loss exploded"):
        linpath.interpolate(
            awkward_model,
            make_bn_mlp(1, 2.0),
            make_bn_mlp(2, -1.0),
            splits,
            alphas=GRID,
            batch_size=64,
            loss=loss,
            progress=False,
        )
    assert loss.calls == 7
    assert_unchanged(awkward_model, snap)


def test_model_is_restored_after_bad_data_midway(awkward_model, make_bn_mlp, make_data):
    snap = snapshot(awkward_model)
    x_bad, y_bad = torch.randn(50, 19), torch.randint(0, 10, (50,))
    with pytest.raises(ValueError, match="'valid'"):
        linpath.interpolate(
            awkward_model,
            make_bn_mlp(1, 2.0),
            make_bn_mlp(2, -1.0),
            {"train": make_data(100, 1), "valid": (x_bad, y_bad)},
            alphas=GRID,
            progress=False,
        )
    assert_unchanged(awkward_model, snap)


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alphas", "exc", "match"),
    [
        ([0.0, np.nan, 1.0], ValueError, r"alpha\[1\] = NaN is not finite"),
        ([0.0, np.inf], ValueError, r"alpha\[1\] = inf is not finite"),
        ([-np.inf], ValueError, "not finite"),
        ([], ValueError, "alpha grid is empty"),
        (np.zeros((2, 3)), ValueError, r"1-D sequence.*\(2, 3\)"),
        (0.5, ValueError, "1-D sequence"),
        (["a", "b"], TypeError, "alphas must be real numbers"),
    ],
    ids=["nan", "inf", "-inf", "empty", "2d", "scalar", "strings"],
)
def test_bad_alphas(alphas, exc, match, endpoints, splits):
    model, start, end = endpoints
    with pytest.raises(exc, match=match):
        linpath.interpolate(model, start, end, splits, alphas=alphas, progress=False)


def _bad_endpoint(kind, model):
    n = len(linpath.flatten(model))
    if kind == "other_model":
        return nn.Sequential(nn.Linear(20, 33), nn.ReLU(), nn.Linear(33, 10))
    if kind == "short_vector":
        return torch.randn(n - 1)
    if kind == "state_dict_missing_key":
        return {k: v for k, v in model.state_dict().items() if k != "2.weight"}
    if kind == "int_tensor":
        return torch.ones(n, dtype=torch.int64)
    if kind == "int_numpy":
        return np.ones(n, dtype=np.int64)
    if kind == "nan":
        v = linpath.flatten(model).tensor.clone()
        v[5] = float("nan")
        return v
    if kind == "inf_numpy":
        v = linpath.flatten(model).numpy()
        v[-1] = np.inf
        return v
    return "not a model"


@pytest.mark.parametrize(
    ("kind", "exc", "match"),
    [
        ("other_model", ValueError, r"start: tensor '0.weight' has shape \(33, 20\), expected \(32, 20\)"),
        ("short_vector", ValueError, r"start has shape \(1001,\); expected a 1-D vector of 1002 values"),
        ("state_dict_missing_key", ValueError, r"start \(a state_dict\) lacks 1 .*2\.weight"),
        ("int_tensor", TypeError, "start has dtype torch.int64; pass a floating-point vector"),
        ("int_numpy", TypeError, "start is a NumPy array of dtype int64"),
        ("nan", ValueError, "start contains NaN or infinite values"),
        ("inf_numpy", ValueError, "start contains NaN or infinite values"),
        ("str", FileNotFoundError, "start is the path 'not a model', where there is no file"),
    ],
)
def test_bad_start(kind, exc, match, endpoints, splits):
    model, _, end = endpoints
    with pytest.raises(exc, match=match):
        linpath.interpolate(model, _bad_endpoint(kind, model), end, splits, alphas=GRID, progress=False)


def test_nan_in_end_is_rejected(endpoints, splits):
    model, start, end = endpoints
    sd = state(end)
    sd["2.bias"][3] = float("nan")
    with pytest.raises(ValueError, match="end contains NaN"):
        linpath.interpolate(model, start, sd, splits, progress=False)


def _generator(x, y):
    yield x, y


@pytest.mark.parametrize(
    ("make", "exc", "match"),
    [
        (
            lambda x, y: {"train": (x, y), "valid": (x[:, :19], y)},
            ValueError,
            r"batch of split 'valid' \(inputs of shape \(300, 19\)\); does the data fit the model",
        ),
        (
            lambda x, y: {"train": (x, y[:-1])},
            ValueError,
            r"split 'train': inputs and targets must have the same first dimension",
        ),
        (lambda x, y: _generator(x, y), TypeError, "one-shot iterator"),
        (lambda x, y: {"train": x}, TypeError, "split 'train' is a single tensor"),
        (lambda x, y: {"train": (x[:0], y[:0])}, ValueError, "split 'train' is empty"),
        (lambda x, y: {}, ValueError, "empty dict"),
        (lambda x, y: 42, TypeError, "split 'data' is a int"),
        (
            lambda x, y: [x, y, x],
            TypeError,
            r"batch 0 is a Tensor; each batch must be an \(inputs, targets\) pair",
        ),
    ],
    ids=[
        "wrong_width",
        "length_mismatch",
        "generator",
        "lone_tensor",
        "empty_split",
        "empty_dict",
        "int",
        "list_of_tensors",
    ],
)
def test_bad_data(make, exc, match, endpoints, splits):
    model, start, end = endpoints
    x, y = splits["train"]
    with pytest.raises(exc, match=match):
        linpath.interpolate(model, start, end, make(x, y), alphas=GRID, progress=False)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (
            {"metrics": ("loss", "accuracy")},
            ValueError,
            r"metrics must be a non-empty subset of \('loss', 'error'\)",
        ),
        ({"metrics": ()}, ValueError, "non-empty subset"),
        ({"batch_size": 0}, ValueError, r"batch_size must lie in \[1, 2\*\*63\), got 0"),
        ({"batch_size": -5}, ValueError, r"batch_size must lie in \[1, 2\*\*63\), got -5"),
        ({"batch_size": 2**64}, ValueError, r"batch_size must lie in \[1, 2\*\*63\)"),
        ({"batch_size": 2.5}, TypeError, "batch_size must be an integer"),
        ({"batch_size": True}, TypeError, "batch_size must be an integer"),
        ({"loss": "mse"}, TypeError, "loss must be callable"),
    ],
)
def test_bad_options(kwargs, exc, match, endpoints, splits):
    model, start, end = endpoints
    with pytest.raises(exc, match=match):
        linpath.interpolate(model, start, end, splits, progress=False, **kwargs)


def test_model_must_be_a_module(endpoints, splits):
    _, start, end = endpoints
    with pytest.raises(TypeError, match="expected a torch.nn.Module, got ParamVector"):
        linpath.interpolate(linpath.flatten(start), start, end, splits)


def test_loss_must_return_a_scalar(endpoints, splits):
    model, start, end = endpoints
    with pytest.raises(ValueError, match="scalar tensor"):
        linpath.interpolate(
            model,
            start,
            end,
            splits,
            loss=lambda o, y: F.cross_entropy(o, y, reduction="none"),
            progress=False,
        )


# --- Sweep -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sweep(make_mlp, make_data):
    """A real sweep on two splits (computed once; the tests below only read it)."""
    model, start, end = make_mlp(0), make_mlp(1), make_mlp(2)
    splits = {"train": make_data(300, 1), "valid": make_data(170, 2)}
    return linpath.interpolate(model, start, end, splits, alphas=GRID, batch_size=64, progress=False)


def test_alphas_are_float64(endpoints, splits):
    model, start, end = endpoints
    for alphas in ([0, 1, 2], np.array([0.25, -0.5], dtype=np.float32), torch.tensor([0.5])):
        sweep = linpath.interpolate(model, start, end, splits, alphas=alphas, progress=False)
        assert sweep.alphas.dtype == np.float64
        np.testing.assert_array_equal(sweep.alphas, np.asarray(alphas, dtype=np.float64))
    default = linpath.interpolate(model, start, end, splits, progress=False)
    np.testing.assert_array_equal(default.alphas, np.linspace(0, 1, 51))


def test_values_are_float64_and_meta_describes_the_sweep(sweep, splits):
    assert sweep.splits == ["train", "valid"]
    for mv in sweep.values.values():
        assert all(v.dtype == np.float64 and v.shape == GRID.shape for v in mv.values())
    assert sweep.meta["examples"] == {"train": 300, "valid": 170}
    assert sweep.meta["n_params"] == 20 * 32 + 32 + 32 * 10 + 10
    assert sweep.meta["model"] == "Sequential" and sweep.meta["metrics"] == ["loss", "error"]


def test_save_load_is_lossless(sweep, tmp_path):
    path = tmp_path / "sweep.npz"
    sweep.save(path)
    loaded = Sweep.load(path)
    np.testing.assert_array_equal(loaded.alphas, sweep.alphas)
    assert loaded.alphas.dtype == np.float64
    assert loaded.values.keys() == sweep.values.keys()
    for s, mv in sweep.values.items():
        assert loaded.values[s].keys() == mv.keys()
        for m, v in mv.items():
            assert np.array_equal(loaded.values[s][m], v) and loaded.values[s][m].dtype == np.float64
    assert loaded.meta == sweep.meta
    assert loaded == sweep


def test_save_load_keeps_awkward_values(tmp_path):
    rng = np.random.default_rng(0)
    alphas = np.array([np.nextafter(0.0, 1.0), -1e300, 1 / 3, 0.1 + 0.2])
    values = {"trä in": {"loss": rng.standard_normal(4) * 1e-300, "error": np.array([np.nan, 0, 1, 0.5])}}
    sweep = Sweep(alphas, values, {"note": "ü", "nested": {"a": [1, 2.5, None]}})
    sweep.save(tmp_path / "s.npz")
    loaded = Sweep.load(tmp_path / "s.npz")
    assert np.array_equal(loaded.alphas, alphas)
    assert np.array_equal(loaded.values["trä in"]["loss"], values["trä in"]["loss"])
    assert np.array_equal(loaded.values["trä in"]["error"], values["trä in"]["error"], equal_nan=True)
    assert loaded.meta == sweep.meta


def test_load_random_bytes_raises_value_error(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(np.random.default_rng(1).bytes(2000))
    with pytest.raises(ValueError, match="not a readable linpath Sweep file"):
        Sweep.load(path)


def test_load_truncated_file_raises_value_error(sweep, tmp_path):
    good = tmp_path / "good.npz"
    sweep.save(good)
    raw = good.read_bytes()
    bad = tmp_path / "bad.npz"
    for n in sorted({0, 1, 10, len(raw) // 3, len(raw) // 2, len(raw) - 22, len(raw) - 1}):
        bad.write_bytes(raw[:n])
        with pytest.raises(ValueError, match="not a readable linpath Sweep file"):
            Sweep.load(bad)


def test_load_every_single_byte_corruption_is_value_error_or_harmless(tmp_path):
    sweep = Sweep(np.linspace(0, 1, 5), {"train": {"loss": np.arange(5.0), "error": np.ones(5)}}, {"a": 1})
    sweep.save(tmp_path / "good.npz")
    raw = (tmp_path / "good.npz").read_bytes()
    bad = tmp_path / "bad.npz"
    escaped = []
    for i in range(len(raw)):
        corrupt = bytearray(raw)
        corrupt[i] ^= 0xFF
        bad.write_bytes(bytes(corrupt))
        try:
            loaded = Sweep.load(bad)
        except ValueError:
            continue
        except Exception as e:  # anything else escaping is the bug this test looks for
            escaped.append((i, f"{type(e).__name__}: {e}"))
            continue
        assert loaded == sweep, f"byte {i}: corrupted file loaded with different content"
    assert not escaped, escaped[:5]


@pytest.mark.parametrize("header", ["[1, 2]", "3", '"text"', "{not json"])
def test_load_file_with_malformed_header_raises_value_error(header, tmp_path):
    path = tmp_path / "h.npz"
    np.savez(path, alphas=np.zeros(3), v0=np.zeros(3), header=np.array(header))
    with pytest.raises(ValueError, match="not a readable linpath Sweep file"):
        Sweep.load(path)


def test_load_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        Sweep.load(tmp_path / "nope.npz")


def test_failed_save_leaves_the_old_file(sweep, tmp_path):
    path = tmp_path / "sweep.npz"
    sweep.save(path)
    old = path.read_bytes()
    bad = Sweep(sweep.alphas, sweep.values, {"unserialisable": object()})
    with pytest.raises(TypeError):
        bad.save(path)
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["sweep.npz"]


def test_save_interrupted_midway_leaves_the_old_file(sweep, tmp_path, monkeypatch):
    path = tmp_path / "sweep.npz"
    sweep.save(path)
    old = path.read_bytes()

    def savez_then_fail(f, **arrays):
        f.write(b"PK\x03\x04 half a zip archive")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", savez_then_fail)
    with pytest.raises(OSError, match="disk full"):
        Sweep(sweep.alphas[:3], {"t": {"loss": np.ones(3)}}).save(path)
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["sweep.npz"]
    assert Sweep.load(path) == sweep


def test_save_overwrites_with_new_content(sweep, tmp_path):
    path = tmp_path / "sweep.npz"
    Sweep(np.zeros(1), {"x": {"loss": np.ones(1)}}).save(path)
    sweep.save(path)
    assert Sweep.load(path) == sweep


def test_to_dict_is_json_serialisable(sweep):
    d = sweep.to_dict()
    back = json.loads(json.dumps(d, allow_nan=False))
    assert back["alphas"] == GRID.tolist()
    assert back["values"]["valid"]["error"] == sweep.values["valid"]["error"].tolist()
    assert back["meta"] == sweep.meta


@pytest.mark.parametrize("metric", ["loss", "error"])
def test_plot_draws_one_line_per_split(metric, sweep):
    import matplotlib.axes

    ax = sweep.plot(metric=metric)
    assert isinstance(ax, matplotlib.axes.Axes)
    lines = {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}
    assert set(lines) == {"train", "valid"}
    for split, line in lines.items():
        np.testing.assert_array_equal(line.get_xdata(), sweep.alphas)
        np.testing.assert_array_equal(line.get_ydata(), sweep.values[split][metric])


def test_plot_onto_given_axes_and_subset_of_splits(sweep):
    import matplotlib.pyplot as plt

    _, ax = plt.subplots()
    assert sweep.plot(ax=ax, splits=["valid"]) is ax
    assert [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")] == ["valid"]


# --- minimum / monotonicity_gap / is_monotone against brute force --------------------------------------


def brute_gap(alphas, v, lo, hi):
    gap = 0.0
    for i in range(len(alphas)):
        for j in range(len(alphas)):
            if lo <= alphas[i] < alphas[j] <= hi:
                gap = max(gap, v[j] - v[i])
    return gap


def brute_minimum(alphas, v):
    best = 0
    for i in range(len(v)):
        if v[i] < v[best]:
            best = i
    return alphas[best], v[best]


def random_sweep(seed, n=40):
    rng = np.random.default_rng(seed)
    alphas = rng.permutation(np.linspace(-0.5, 1.5, n))  # unsorted on purpose
    values = {"a": {"loss": rng.standard_normal(n), "error": rng.random(n)}, "b": {"loss": rng.random(n)}}
    return Sweep(alphas, values)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("interval", [(0.0, 1.0), (-0.5, 1.5), (0.2, 0.9), (-10.0, 0.0)])
def test_monotonicity_gap_matches_brute_force(seed, interval):
    s = random_sweep(seed)
    for split, metric in (("a", "loss"), ("a", "error"), ("b", "loss")):
        want = brute_gap(s.alphas, s.values[split][metric], *interval)
        assert s.monotonicity_gap(split, metric, interval) == want
        assert s.is_monotone(split, metric, interval) == (want == 0.0)


@pytest.mark.parametrize("seed", range(5))
def test_minimum_matches_brute_force(seed):
    s = random_sweep(seed)
    assert s.minimum() == brute_minimum(s.alphas, s.values["a"]["loss"])
    assert s.minimum("b") == brute_minimum(s.alphas, s.values["b"]["loss"])
    assert s.minimum("a", "error") == brute_minimum(s.alphas, s.values["a"]["error"])


def test_monotone_and_non_monotone_series():
    alphas = np.linspace(0, 1, 11)
    down = Sweep(alphas, {"t": {"loss": 5.0 - alphas**2}})
    assert down.is_monotone() and down.monotonicity_gap() == 0.0
    bump = Sweep(alphas, {"t": {"loss": np.where(alphas == 0.5, 6.0, 5.0 - alphas)}})
    assert not bump.is_monotone()
    assert bump.monotonicity_gap() == pytest.approx(6.0 - (5.0 - 0.4))
    # Outside the interval the bump does not count.
    assert bump.is_monotone(interval=(0.6, 1.0))
    # Where fewer than two grid points were measured nothing is known: an error, not "monotone".
    one = Sweep(np.array([0.3]), {"t": {"loss": np.array([1.0])}})
    with pytest.raises(ValueError, match="needs at least 2 grid point"):
        one.monotonicity_gap()
    before = Sweep(np.array([-1.0, -0.5]), {"t": {"loss": np.array([3.0, 2.0])}})
    with pytest.raises(ValueError, match=r"in the interval \(0.0, 1.0\); it holds 0"):
        before.is_monotone()
    with pytest.raises(ValueError, match="low <= high"):
        bump.is_monotone(interval=(1.0, 0.0))
    with pytest.raises(ValueError, match="needs at least 1 grid point"):
        bump.minimum(interval=(2.0, 3.0))


def test_sweep_names_must_be_strings_and_alphas_finite():
    with pytest.raises(TypeError, match="names must be strings"):
        Sweep(np.zeros(2), {0: {"loss": np.zeros(2)}})
    with pytest.raises(TypeError, match="names must be strings"):
        Sweep(np.zeros(2), {"t": {1: np.zeros(2)}})
    with pytest.raises(ValueError, match="finite"):
        Sweep(np.array([0.0, np.nan]), {"t": {"loss": np.zeros(2)}})
    with pytest.raises(ValueError, match="no splits"):
        Sweep(np.zeros(2), {}).minimum()


def brute_local_minima(alphas, v, lo=-np.inf, hi=np.inf):
    """Interior points (in increasing α) strictly below both neighbours; a plateau counts as one point."""
    pairs = sorted((a, x) for a, x in zip(alphas, v, strict=True) if lo <= a <= hi)
    collapsed = []  # (alpha of the plateau's first point, value)
    for a, x in pairs:
        if not collapsed or collapsed[-1][1] != x:
            collapsed.append((a, x))
    return [
        (float(collapsed[k][0]), float(collapsed[k][1]))
        for k in range(1, len(collapsed) - 1)
        if collapsed[k - 1][1] > collapsed[k][1] < collapsed[k + 1][1]
    ]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("interval", [None, (0.0, 1.0), (0.2, 0.9)])
def test_local_minima_match_brute_force(seed, interval):
    s = random_sweep(seed)
    lo, hi = interval or (-np.inf, np.inf)
    for split, metric in (("a", "loss"), ("a", "error"), ("b", "loss")):
        want = brute_local_minima(s.alphas, s.values[split][metric], lo, hi)
        assert s.local_minima(split, metric, interval) == want


def test_local_minima_of_known_shapes():
    alphas = np.linspace(-1, 2, 31)
    assert Sweep(alphas, {"t": {"loss": (alphas - 0.5) ** 2}}).local_minima() == [(alphas[15], 0.0)]
    assert Sweep(alphas, {"t": {"loss": alphas.copy()}}).local_minima() == []  # minimum at the grid's end
    plateau = np.array([3.0, 1.0, 1.0, 1.0, 2.0, 0.5, 0.5, 0.7])
    found = Sweep(np.arange(8.0), {"t": {"loss": plateau}}).local_minima()
    assert found == [(1.0, 1.0), (5.0, 0.5)]
    # A plateau that runs into the grid's end is not a minimum.
    assert Sweep(np.arange(4.0), {"t": {"loss": np.array([2.0, 1.0, 1.0, 1.0])}}).local_minima() == []


def brute_barrier(alphas, v, form):
    j0, j1 = v[list(alphas).index(0.0)], v[list(alphas).index(1.0)]
    best = -np.inf
    for a, x in zip(alphas, v, strict=True):
        if 0.0 <= a <= 1.0:
            base = 0.5 * (j0 + j1) if form == "midpoint" else (1 - a) * j0 + a * j1
            best = max(best, x - base)
    return best


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("form", ["midpoint", "linear"])
def test_barrier_matches_brute_force(seed, form):
    rng = np.random.default_rng(seed)
    alphas = rng.permutation(np.linspace(-0.5, 1.5, 41))  # 0 and 1 are on this grid
    s = Sweep(alphas, {"t": {"loss": rng.standard_normal(41)}})
    assert s.barrier(form=form) == pytest.approx(
        brute_barrier(alphas, s.values["t"]["loss"], form), abs=1e-15
    )


def test_barrier_of_known_shapes():
    alphas = np.linspace(0, 1, 11)
    bump = Sweep(alphas, {"t": {"loss": 1.0 + alphas + 4 * alphas * (1 - alphas)}})
    assert bump.barrier(form="linear") == pytest.approx(1.0)  # 4·½·½ at α = ½
    # The tilted bump peaks at α = 0.625; on this grid at 0.6 (2.56), against the ends' mean 1.5.
    assert bump.barrier(form="midpoint") == pytest.approx(2.56 - 1.5)
    valley = Sweep(alphas, {"t": {"loss": (alphas - 0.5) ** 2}})
    assert valley.barrier() == 0.0 and valley.barrier(form="linear") == 0.0


def test_barrier_needs_both_endpoints_and_a_known_form():
    off_grid = Sweep(np.linspace(0.05, 0.95, 5), {"t": {"loss": np.arange(5.0)}})
    with pytest.raises(ValueError, match="alpha = 0 and alpha = 1"):
        off_grid.barrier()
    on_grid = Sweep(np.linspace(0, 1, 5), {"t": {"loss": np.arange(5.0)}})
    with pytest.raises(ValueError, match="unknown barrier form 'max'"):
        on_grid.barrier(form="max")


def test_real_sweep_minimum_and_gap(sweep):
    alpha, value = sweep.minimum("valid")
    i = int(np.argmin(sweep.values["valid"]["loss"]))
    assert (alpha, value) == (GRID[i], sweep.values["valid"]["loss"][i])
    v = sweep.values["train"]["loss"]
    assert sweep.monotonicity_gap("train") == brute_gap(GRID, v, 0.0, 1.0)


def test_unknown_split_or_metric_raises_key_error(sweep):
    with pytest.raises(KeyError, match="no split 'test'"):
        sweep.minimum("test")
    with pytest.raises(KeyError, match="no metric 'accuracy'"):
        sweep.monotonicity_gap("train", "accuracy")


def test_sweep_constructor_checks_shapes():
    with pytest.raises(ValueError, match=r"values\['t'\]\['loss'\] has shape \(3,\), alphas \(4,\)"):
        Sweep(np.zeros(4), {"t": {"loss": np.zeros(3)}})


# --- progress ------------------------------------------------------------------------------------------


def test_progress_on_and_off_give_the_same_values(endpoints, splits, capsys):
    model, start, end = endpoints
    quiet = linpath.interpolate(model, start, end, splits, alphas=GRID, progress=False)
    assert "linpath sweep" not in capsys.readouterr().err
    loud = linpath.interpolate(model, start, end, splits, alphas=GRID, progress=True)
    assert "linpath sweep" in capsys.readouterr().err
    for s in splits:
        for m in ("loss", "error"):
            np.testing.assert_array_equal(quiet.values[s][m], loud.values[s][m])
