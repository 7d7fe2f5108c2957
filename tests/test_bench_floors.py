"""bench/floors.py: the arithmetic count of a line or plane against torch's own FLOP counter on the
grid written out the obvious way, and the measurements' input checks."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

_BENCH = Path(__file__).parents[1] / "bench"
sys.path.insert(0, str(_BENCH))  # floors imports the scripts' shared helpers (common.py)
_SPEC = importlib.util.spec_from_file_location("floors", _BENCH / "floors.py")
assert _SPEC is not None and _SPEC.loader is not None
floors = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(floors)
common = sys.modules["common"]


def _affine_grid(sizes: list[int], examples: int, points: torch.Tensor) -> None:
    """The grid with the first layer's products taken once (x·W0, x·Dk) and the rest per point;
    ``points`` holds one coordinate per direction in each row."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(examples, sizes[0], generator=gen)
    w0 = [torch.randn(o, i, generator=gen) for i, o in zip(sizes, sizes[1:], strict=False)]
    ds = [[torch.randn_like(w) for w in w0] for _ in range(points.shape[1])]
    z0, zs = x @ w0[0].T, [x @ d[0].T for d in ds]
    for c in points.tolist():
        h = F.relu(z0 + sum(ck * z for ck, z in zip(c, zs, strict=True)))
        for layer, w in enumerate(w0[1:], start=1):
            h = F.relu(h @ (w + sum(ck * d[layer] for ck, d in zip(c, ds, strict=True))).T)


@pytest.mark.parametrize("sizes", [[784, 64, 32, 10], [20, 7], [5, 3, 4]])
@pytest.mark.parametrize("directions", [1, 2])
def test_grid_flops_equal_torchs_count_of_the_obvious_grid(sizes, directions):
    points = torch.rand(6, directions, generator=torch.Generator().manual_seed(2)) * 2 - 0.5
    with FlopCounterMode(display=False) as counter:
        _affine_grid(sizes, 17, points)
    assert floors.mlp_sweep_flops(sizes, 17, len(points), directions) == counter.get_total_flops()


def test_measurements_are_positive_rates():
    peak = floors.matmul_peak(64, 64, 64, seconds=0.02)
    assert peak > 0
    assert floors.matmul_peak(32, 48, 16, torch.bfloat16, seconds=0.02) > 0
    assert floors.read_bandwidth(8 * 2**20, seconds=0.02) > 0
    assert floors.fraction_of_floor(1.5, 2.0) == pytest.approx(0.75)


def test_a_later_lower_reading_never_lowers_the_peak(monkeypatch):
    """A low first reading (clock ramp-up, a busy moment) would inflate every fraction of floor."""
    readings = iter([2.0, 1.0, 4.0, 8.0])  # seconds of the fastest call, measurement by measurement
    monkeypatch.setattr(floors, "best_time", lambda *a, **k: (next(readings), None))
    monkeypatch.setattr(floors, "_HIGHEST", {})
    rates = [floors.matmul_peak(8, 8, 8) for _ in range(3)]
    work = 2 * 8**3
    assert rates == [work / 2.0, work / 1.0, work / 1.0]  # the 4 s reading does not lower the peak
    assert floors.matmul_peak(8, 8, 8, torch.bfloat16) == work / 8.0  # another kernel: its own peak


def test_best_time_warms_up_untimed_then_keeps_the_fastest():
    calls = []
    fastest, last = common.best_time(lambda: calls.append(1) or len(calls), repeats=3, warmup=1e-9)
    assert len(calls) >= 4 and last == len(calls) and 0 < fastest < 1
    with pytest.raises(ValueError):
        common.best_time(lambda: None, repeats=0)


@pytest.mark.parametrize(
    "call",
    [
        lambda: floors.matmul_peak(0, 4, 4),
        lambda: floors.read_bandwidth(1024),
        lambda: floors.mlp_sweep_flops([784], 10, 5),
        lambda: floors.mlp_sweep_flops([784, 10], 0, 5),
        lambda: floors.mlp_sweep_flops([784, 10], 10, 5, 0),
        lambda: floors.fraction_of_floor(1.0, 0.0),
    ],
)
def test_bad_inputs_are_refused(call):
    with pytest.raises(ValueError):
        call()
