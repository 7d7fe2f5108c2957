"""bench/floors.py: the arithmetic count of a sweep against torch's own FLOP counter on the sweep
written out the obvious way, and the measurements' input checks."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

_SPEC = importlib.util.spec_from_file_location("floors", Path(__file__).parents[1] / "bench" / "floors.py")
assert _SPEC is not None and _SPEC.loader is not None
floors = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(floors)


def _affine_sweep(sizes: list[int], examples: int, alphas: torch.Tensor) -> None:
    """The sweep with the first layer's products taken once (x·W0, x·D) and the rest per α."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(examples, sizes[0], generator=gen)
    w0 = [torch.randn(o, i, generator=gen) for i, o in zip(sizes, sizes[1:], strict=False)]
    d = [torch.randn_like(w) for w in w0]
    z0, zd = x @ w0[0].T, x @ d[0].T
    for a in alphas.tolist():
        h = F.relu(z0 + a * zd)
        for w, dw in zip(w0[1:], d[1:], strict=True):
            h = F.relu(h @ (w + a * dw).T)


@pytest.mark.parametrize("sizes", [[784, 64, 32, 10], [20, 7], [5, 3, 4]])
def test_sweep_flops_equal_torchs_count_of_the_obvious_sweep(sizes):
    alphas = torch.linspace(-0.5, 1.5, 6)
    with FlopCounterMode(display=False) as counter:
        _affine_sweep(sizes, 17, alphas)
    assert floors.mlp_sweep_flops(sizes, 17, len(alphas)) == counter.get_total_flops()


def test_measurements_are_positive_rates():
    peak = floors.matmul_peak(64, 64, 64, seconds=0.02)
    assert peak > 0
    assert floors.matmul_peak(32, 48, 16, torch.bfloat16, seconds=0.02) > 0
    assert floors.read_bandwidth(8 * 2**20, seconds=0.02) > 0
    assert floors.fraction_of_floor(1.5, 2.0) == pytest.approx(0.75)


@pytest.mark.parametrize(
    "call",
    [
        lambda: floors.matmul_peak(0, 4, 4),
        lambda: floors.read_bandwidth(1024),
        lambda: floors.mlp_sweep_flops([784], 10, 5),
        lambda: floors.mlp_sweep_flops([784, 10], 0, 5),
        lambda: floors.fraction_of_floor(1.0, 0.0),
    ],
)
def test_bad_inputs_are_refused(call):
    with pytest.raises(ValueError):
        call()
