"""Property-based tests (hypothesis) of the core numerics against float64 references written the slow,
obvious way: flatten/assign (src/flat.rs, python/linpath/params.py) and the line θ0 + α·d
(src/sweep.rs). Random layouts include 0-d, one-element and zero-size tensors, strided views and every
floating dtype. The trajectory format and projection have their own property tests."""

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import linpath
from linpath import _linpath

SETTINGS = settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]

shapes = st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple)


@st.composite
def tensors(draw, dtype=None):
    """A tensor of a random shape and dtype, sometimes a strided (non-contiguous) view."""
    shape = draw(shapes)
    dtype = dtype or draw(st.sampled_from(DTYPES))
    seed = draw(st.integers(0, 2**31 - 1))
    base = torch.randn(*shape, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    view = base[..., 0] if draw(st.booleans()) else base[..., 1].clone()
    if view.dim() >= 2 and draw(st.booleans()):
        view = view.transpose(0, 1)
    return (view * draw(st.sampled_from([1e-3, 1.0, 1e3]))).to(dtype)


layouts = st.lists(tensors(), min_size=1, max_size=5).filter(lambda ts: sum(t.numel() for t in ts) > 0)


@SETTINGS
@given(layouts, st.sampled_from(DTYPES))
def test_flatten_equals_concatenating_in_logical_order(ts, dtype):
    vec = linpath.flatten(ts, dtype=dtype)
    reference = torch.cat([t.double().reshape(-1) for t in ts]).to(dtype)
    assert vec.tensor.is_contiguous() and vec.shapes == [tuple(t.shape) for t in ts]
    assert torch.equal(vec.tensor, reference)
    assert all(vec.tensor.data_ptr() != t.data_ptr() or t.numel() == 0 for t in ts)  # a copy


@SETTINGS
@given(layouts, st.integers(0, 2**31 - 1))
def test_assign_writes_each_slice_cast_to_its_tensors_dtype(ts, seed):
    n = sum(t.numel() for t in ts)
    vec = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    targets = [t.clone() if i % 2 else t for i, t in enumerate(ts)]  # strided views stay strided
    _linpath.assign_tensors(targets, vec)
    offset = 0
    for t in targets:
        expected = vec[offset : offset + t.numel()].view(t.shape).to(t.dtype)
        assert torch.equal(t, expected)
        offset += t.numel()


@SETTINGS
@given(layouts)
def test_flatten_then_assign_round_trips_bit_for_bit(ts):
    vec = linpath.flatten(ts, dtype=torch.float64)  # float64 holds every narrower value exactly
    targets = [torch.zeros_like(t) for t in ts]
    _linpath.assign_tensors(targets, vec.tensor)
    assert all(torch.equal(a, b) for a, b in zip(ts, targets, strict=True))


alphas = st.lists(
    st.one_of(st.sampled_from([0.0, 1.0, -1.0, 0.5]), st.floats(-1e3, 1e3, allow_nan=False)),
    min_size=1,
    max_size=8,
)


@st.composite
def line_ends(draw):
    n = draw(st.integers(1, 300))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    scale = draw(st.sampled_from([1e-6, 1.0, 1e6]))
    return (
        torch.randn(n, generator=g, dtype=dtype) * scale,
        torch.randn(n, generator=g, dtype=dtype) * scale,
    )


@SETTINGS
@given(line_ends(), alphas)
def test_line_points_equal_the_float64_formula(ends, grid):
    t0, t1 = ends
    line = _linpath.Subspace.line(t0, t1)
    a, b = t0.double().numpy(), t1.double().numpy()
    for alpha in grid:
        want = a + alpha * (b - a)
        got = line.point([alpha]).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-15, atol=1e-300)
    assert np.array_equal(line.point([0.0]).numpy(), a)


@SETTINGS
@given(line_ends(), alphas, st.sampled_from([torch.float32, torch.float64]), st.booleans())
def test_written_points_are_the_float64_point_rounded_once(ends, grid, target_dtype, split):
    t0, t1 = ends
    n = t0.numel()
    cut = n // 2 if split else n
    targets = [torch.empty(cut, dtype=target_dtype), torch.empty(n - cut, dtype=torch.float64)]
    line = _linpath.Subspace.line(t0, t1)
    a, b = t0.double(), t1.double()
    for alpha in grid:
        line.write(targets, [alpha])
        want = a + alpha * (b - a)
        assert torch.equal(targets[0], want[:cut].to(target_dtype))
        assert torch.equal(targets[1], want[cut:])
