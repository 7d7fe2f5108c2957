"""linpath.flatten / linpath.assign / ParamVector (python/linpath/params.py, src/flat.rs)."""

import numpy as np
import pytest
import torch
from torch import nn

import linpath
from linpath import ParamVector


class OddShapes(nn.Module):
    """Parameters of awkward shapes: 0-d, zero-size, 3-D and 4-D conv weights, a non-contiguous one."""

    def __init__(self, seed: int, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.scalar = nn.Parameter(torch.randn(()))
        self.empty = nn.Parameter(torch.randn(0, 3))
        self.conv1 = nn.Conv1d(2, 3, 4)
        self.conv2 = nn.Conv2d(3, 2, (3, 2))
        self.transposed = nn.Parameter(torch.randn(5, 3).t())
        self.to(dtype)


class Tied(nn.Module):
    """Two linear layers sharing one weight (``b.weight is a.weight``)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.b.weight = self.a.weight


def reference_flat(tensors) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def test_odd_model_really_is_odd():
    model = OddShapes(0)
    assert not model.transposed.is_contiguous()
    assert model.scalar.dim() == 0 and model.empty.numel() == 0
    assert model.conv1.weight.dim() == 3 and model.conv2.weight.dim() == 4


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_flatten_matches_torch_cat_for_odd_shapes(dtype):
    model = OddShapes(0, dtype)
    vec = linpath.flatten(model)
    assert vec.tensor.dtype == dtype and vec.dtype == dtype
    assert vec.tensor.dim() == 1 and vec.tensor.is_contiguous()
    assert torch.equal(vec.tensor, reference_flat(model.parameters()))
    assert vec.names == [n for n, _ in model.named_parameters()]
    assert vec.shapes == [tuple(p.shape) for p in model.parameters()]
    assert len(vec) == sum(p.numel() for p in model.parameters()) == vec.tensor.numel()


def test_flatten_reads_non_contiguous_tensor_in_logical_order():
    t = torch.arange(6.0).view(2, 3).t()
    vec = linpath.flatten([t])
    assert torch.equal(vec.tensor, torch.tensor([0.0, 3.0, 1.0, 4.0, 2.0, 5.0]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_assign_round_trip_writes_in_place_into_odd_model(dtype):
    source, target = OddShapes(0, dtype), OddShapes(1, dtype)
    params_before = dict(target.named_parameters())
    ptrs = {n: p.data_ptr() for n, p in params_before.items()}
    strides = {n: p.stride() for n, p in params_before.items()}
    assert not torch.equal(source.conv2.weight, target.conv2.weight)
    linpath.assign(target, linpath.flatten(source))
    for name, p in target.named_parameters():
        assert p is params_before[name]
        assert p.data_ptr() == ptrs[name] and p.stride() == strides[name]
        assert p.dtype == dtype
        assert torch.equal(p, dict(source.named_parameters())[name])
    assert not target.transposed.is_contiguous()


def test_assign_into_non_contiguous_view_writes_its_base():
    base = torch.zeros(3, 2)
    model = nn.Module()
    model.w = nn.Parameter(base.t())
    linpath.assign(model, torch.arange(1.0, 7.0))
    assert torch.equal(model.w, torch.arange(1.0, 7.0).view(2, 3))
    assert torch.equal(base, torch.tensor([[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]]))


def test_flatten_returns_a_copy(make_mlp):
    model = make_mlp(0)
    before = reference_flat(model.parameters()).clone()
    vec = linpath.flatten(model)
    vec.tensor.add_(1.0)
    assert torch.equal(reference_flat(model.parameters()), before)


def test_assign_does_not_alias_the_vector(make_mlp):
    model = make_mlp(0)
    vec = linpath.flatten(make_mlp(1))
    linpath.assign(model, vec)
    expected = vec.tensor.clone()
    vec.tensor.zero_()
    assert torch.equal(reference_flat(model.parameters()), expected)


def test_batchnorm_model_flattens_parameters_only(make_mlp):
    model = make_mlp(0, batchnorm=True)
    vec = linpath.flatten(model)
    assert vec.names == ["0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias"]
    assert torch.equal(vec.tensor, reference_flat(model.parameters()))
    assert len(vec) == sum(p.numel() for p in model.parameters())


def test_shared_parameter_is_counted_once():
    model = Tied()
    vec = linpath.flatten(model)
    assert vec.names == ["a.weight", "a.bias", "b.bias"]
    assert len(vec) == 16 + 4 + 4
    new = torch.randn(len(vec), dtype=torch.float64)
    linpath.assign(model, new)
    assert model.b.weight is model.a.weight
    assert torch.equal(model.a.weight, new[:16].float().view(4, 4))
    assert torch.equal(model.b.bias, new[20:].float())


def test_state_dict_skips_integer_buffers(make_bn_mlp):
    model = make_bn_mlp(0, shift=1.0)
    sd = model.state_dict()
    assert sd["1.num_batches_tracked"].item() == 3
    vec = linpath.flatten(sd)
    floats = [n for n, t in sd.items() if t.is_floating_point()]
    assert vec.names == floats and "1.running_var" in floats
    assert "1.num_batches_tracked" not in vec.names
    assert torch.equal(vec.tensor, reference_flat([sd[n] for n in floats]))


def test_state_dict_counts_shared_tensor_once():
    model = Tied()
    sd = model.state_dict()
    assert list(sd) == ["a.weight", "a.bias", "b.weight", "b.bias"]
    vec = linpath.flatten(sd)
    assert vec.names == ["a.weight", "a.bias", "b.bias"]
    assert torch.equal(vec.tensor, linpath.flatten(model).tensor)


def test_state_dict_keeps_distinct_zero_size_parameters():
    # Two different zero-size parameters both have data pointer 0: they are not shared.
    model = OddShapes(0)
    model.empty2 = nn.Parameter(torch.randn(0, 3))
    from_sd = linpath.flatten(model.state_dict())
    assert from_sd.names == linpath.flatten(model).names
    linpath.assign(model, from_sd)


def test_state_dict_round_trip_into_model(make_bn_mlp):
    source, target = make_bn_mlp(0, 1.0), make_bn_mlp(1, -1.0)
    linpath.assign(target, source.state_dict())
    for p, q in zip(target.parameters(), source.parameters(), strict=True):
        assert torch.equal(p, q)


def test_sequence_of_tensors():
    tensors = [torch.randn(2, 3), torch.randn(()), torch.randn(4, dtype=torch.float64)]
    vec = linpath.flatten(tensors)
    assert vec.names == ["0", "1", "2"]
    assert vec.shapes == [(2, 3), (), (4,)]
    assert vec.dtype == torch.float64
    assert torch.equal(vec.tensor, torch.cat([t.reshape(-1).double() for t in tensors]))
    assert torch.equal(linpath.flatten(tensors[0]).tensor, tensors[0].reshape(-1))


def test_dtype_argument_float64_from_float32_model(make_mlp):
    model = make_mlp(0)
    vec = linpath.flatten(model, dtype=torch.float64)
    assert vec.dtype == torch.float64
    assert torch.equal(vec.tensor, torch.cat([p.reshape(-1) for p in model.parameters()]).double())


def test_dtype_argument_float32_from_float64_model(make_mlp):
    model = make_mlp(0, torch.float64)
    vec = linpath.flatten(model, dtype=torch.float32)
    assert torch.equal(vec.tensor, reference_flat(model.parameters()).float())


def test_numpy_is_an_equal_copy(make_mlp):
    vec = linpath.flatten(make_mlp(0))
    arr = vec.numpy()
    assert arr.dtype == np.float32 and arr.shape == (len(vec),)
    np.testing.assert_array_equal(arr, vec.tensor.numpy())
    arr[:] = 0.0
    assert vec.tensor.abs().sum() > 0


def test_to_state_dict_gives_views_equal_to_parameters():
    model = OddShapes(0)
    vec = linpath.flatten(model)
    views = vec.to_state_dict()
    assert list(views) == vec.names
    for name, p in model.named_parameters():
        assert views[name].shape == p.shape
        assert torch.equal(views[name], p.detach())
    vec.tensor.add_(1.0)
    assert torch.equal(views["conv2.weight"], model.conv2.weight.detach() + 1.0)
    assert torch.equal(views["scalar"], model.scalar.detach() + 1.0)


@pytest.mark.parametrize("form", ["tensor64", "numpy32", "numpy64", "param_vector", "state_dict"])
def test_assign_accepts_every_form(form, make_mlp):
    source, target = make_mlp(0), make_mlp(1)
    vec = linpath.flatten(source, dtype=torch.float64)
    value = {
        "tensor64": vec.tensor,
        "numpy32": vec.numpy().astype(np.float32),
        "numpy64": vec.numpy(),
        "param_vector": vec,
        "state_dict": source.state_dict(),
    }[form]
    linpath.assign(target, value)
    assert torch.equal(reference_flat(target.parameters()), vec.tensor.float())


def test_assign_casts_to_each_parameter_dtype():
    model = nn.Module()
    model.a = nn.Parameter(torch.zeros(3))
    model.b = nn.Parameter(torch.zeros(2, dtype=torch.float64))
    vec = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5], dtype=torch.float64)
    linpath.assign(model, vec)
    assert torch.equal(model.a, vec[:3].float())
    assert torch.equal(model.b, vec[3:])


def test_assign_rejects_bad_vectors(make_mlp):
    model = make_mlp(0)
    n = len(linpath.flatten(model))
    with pytest.raises(ValueError, match=f"expected a 1-D vector of {n} values"):
        linpath.assign(model, torch.randn(n + 1))
    with pytest.raises(ValueError, match="1-D vector"):
        linpath.assign(model, torch.randn(1, n))
    with pytest.raises(TypeError, match="floating-point"):
        linpath.assign(model, torch.ones(n, dtype=torch.int64))
    with pytest.raises(TypeError, match="floating-point"):
        linpath.assign(model, np.ones(n, dtype=np.int32))
    with pytest.raises(TypeError, match="nn.Module"):
        linpath.assign(model, [1.0] * n)


def test_assign_rejects_other_layouts(make_mlp):
    model = make_mlp(0)
    with pytest.raises(ValueError, match=r"'0.weight' has shape \(32, 21\), expected \(32, 20\)"):
        linpath.assign(model, linpath.flatten(nn.Sequential(nn.Linear(21, 32), nn.ReLU(), nn.Linear(32, 10))))
    with pytest.raises(ValueError, match="has 2 tensors but the model has 4"):
        linpath.assign(model, linpath.flatten(nn.Linear(20, 10)))
    sd = model.state_dict()
    del sd["2.bias"]
    with pytest.raises(ValueError, match=r"lacks 1 of the parameters.*2\.bias"):
        linpath.assign(model, sd)
    renamed = ParamVector(
        torch.zeros(len(linpath.flatten(model))), ["a", "b", "c", "d"], linpath.flatten(model).shapes
    )
    with pytest.raises(ValueError, match="named 'a' but the model's is '0.weight'"):
        linpath.assign(model, renamed)


def test_assign_rejects_non_modules():
    with pytest.raises(TypeError, match=r"expected a torch.nn.Module, got dict"):
        linpath.assign({}, torch.zeros(3))


def test_flatten_rejects_bad_input():
    with pytest.raises(ValueError, match="empty sequence"):
        linpath.flatten([])
    with pytest.raises(TypeError, match="item 1 is a float"):
        linpath.flatten([torch.zeros(2), 1.0])
    with pytest.raises(TypeError, match="floating-point"):
        linpath.flatten([torch.zeros(2, dtype=torch.int64)])
    with pytest.raises(TypeError, match="floating-point"):
        linpath.flatten([torch.zeros(2)], dtype=torch.int32)
    with pytest.raises(ValueError, match="no parameters"):
        linpath.flatten(nn.ReLU())
    with pytest.raises(ValueError, match="no floating-point tensors"):
        linpath.flatten({"n": torch.zeros(2, dtype=torch.int64)})
    with pytest.raises(TypeError, match="cannot flatten a int"):
        linpath.flatten(3)


def test_param_vector_checks_its_parts():
    with pytest.raises(ValueError, match="2 names but 1 shapes"):
        ParamVector(torch.zeros(3), ["a", "b"], [(3,)])
    with pytest.raises(ValueError, match="has 4 elements but the shapes add up to 3"):
        ParamVector(torch.zeros(4), ["a"], [(3,)])
    with pytest.raises(ValueError, match="1-D"):
        ParamVector(torch.zeros(1, 3), ["a"], [(3,)])
    vec = ParamVector(torch.zeros(6, dtype=torch.float64), ["a", "b"], [[2, 2], [2]])
    assert vec.shapes == [(2, 2), (2,)] and len(vec) == 6
    assert vec.device == torch.device("cpu")
    assert "6 values in 2 tensors" in repr(vec)


def test_endpoints_in_unusual_forms_are_read_or_refused_clearly():
    model = nn.Linear(3, 2)
    data = (torch.randn(6, 3), torch.randint(0, 2, (6,)))
    vec = linpath.flatten(model).numpy().astype(np.float64)
    want = linpath.interpolate(model, vec, model, data, alphas=[0.0, 0.5], progress=False)
    swapped = linpath.interpolate(model, vec.astype(">f8"), model, data, alphas=[0.0, 0.5], progress=False)
    np.testing.assert_array_equal(swapped.values["data"]["loss"], want.values["data"]["loss"])
    with pytest.raises(TypeError, match=r"dtype float128; pass floating-point values \(float16"):
        linpath.interpolate(model, vec.astype(np.longdouble), model, data, progress=False)
    arrays = {k: v.numpy() for k, v in model.state_dict().items()}
    with pytest.raises(TypeError, match="start: state_dict entry 'weight' is a ndarray"):
        linpath.interpolate(model, arrays, model, data, progress=False)


def test_lazy_and_integer_parameters_are_named_in_the_error():
    with pytest.raises(ValueError, match=r"parameter '0.weight' of Sequential is not initialised yet"):
        linpath.flatten(nn.Sequential(nn.LazyLinear(2)))

    class WithCounter(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(3))
            self.count = nn.Parameter(torch.zeros(2, dtype=torch.long), requires_grad=False)

    with pytest.raises(TypeError, match="parameter 'count' has dtype torch.int64"):
        linpath.TrajectoryRecorder(WithCounter())
