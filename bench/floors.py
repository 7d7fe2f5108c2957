"""This machine's floors, measured in the benchmark's own process: matmul peak and memory bandwidth.

A benchmark that only reports ratios to the peers says who is ahead, not how far from done. Each
script measures the floors here on the workload's own shapes, counts the work its engines must do
at the least (:func:`mlp_sweep_flops`), and reports every engine as a fraction of the floor,
``floor / measured`` (1.0: at the machine's limit), next to its ratio to the peers.

Measured, never assumed: machines of one family differ (AMX or not, AVX512-BF16 or not, the
number of cores given to the job), so a floor from a datasheet would mislead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from common import best_time

#: How long each measurement repeats its kernel (seconds), how long it runs untimed first, and the
#: buffer read for bandwidth.
MEASURE_SECONDS, WARMUP_SECONDS, BANDWIDTH_BYTES = 0.5, 0.25, 512 * 2**20

#: The highest rate measured in this process for each kernel and shape: a later, lower reading of
#: the same kernel (a busy moment, a clock not yet ramped up) never lowers the peak, because a low
#: peak would inflate every fraction of floor computed from it.
_HIGHEST: dict[tuple[object, ...], float] = {}


def _peak_rate(key: tuple[object, ...], fn: Callable[[], object], work: float, seconds: float) -> float:
    """``work`` per second of the fastest call of ``fn`` over about ``seconds`` (after a warm-up), or
    the highest rate this process has measured for ``key`` if that is higher."""
    fastest, _ = best_time(fn, repeats=3, seconds=seconds, warmup=min(WARMUP_SECONDS, seconds))
    _HIGHEST[key] = max(_HIGHEST.get(key, 0.0), work / fastest)
    return _HIGHEST[key]


def matmul_peak(
    m: int, k: int, n: int, dtype: torch.dtype = torch.float32, seconds: float = MEASURE_SECONDS
) -> float:
    """The best FLOP/s of ``torch.mm`` on an ``(m, k) @ (k, n)`` product in ``dtype`` (2·m·k·n
    FLOP a call), with the torch threads this process has: the arithmetic ceiling of a workload
    whose heavy part is products of that shape."""
    if min(m, k, n) < 1:
        raise ValueError(f"matmul shape ({m}, {k}) @ ({k}, {n}) must have positive sizes")
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(m, k, generator=gen).to(dtype)
    b = torch.randn(k, n, generator=gen).to(dtype)
    out = torch.empty(m, n, dtype=dtype)
    return _peak_rate(("mm", m, k, n, dtype), lambda: torch.mm(a, b, out=out), 2.0 * m * k * n, seconds)


def read_bandwidth(nbytes: int = BANDWIDTH_BYTES, seconds: float = MEASURE_SECONDS) -> float:
    """Bytes per second read by a float32 ``torch.sum`` over a buffer of ``nbytes`` (larger than the
    caches): the ceiling of a workload that streams its data once."""
    if nbytes < 4 * 2**20:
        raise ValueError(f"a bandwidth buffer of {nbytes} bytes fits in cache; use at least 4 MiB")
    buffer = torch.ones(nbytes // 4, dtype=torch.float32)
    return _peak_rate(("read", nbytes), lambda: buffer.sum(), float(buffer.numel() * 4), seconds)


def mlp_sweep_flops(sizes: Sequence[int], examples: int, points: int, directions: int = 1) -> float:
    """The least arithmetic of evaluating an MLP ``sizes`` (input first) at ``points`` points of a
    line (``directions`` = 1) or a plane (2) on ``examples`` examples: the first layer is affine in
    the coordinates, so x·W(a, b) = x·W0 + a·x·D1 + b·x·D2 costs 1 + ``directions`` products per
    example for the whole grid; every later layer one product per example and point. Biases,
    activations and the loss are left out (they are O(width), not O(width²))."""
    if len(sizes) < 2 or min(sizes) < 1 or min(examples, points, directions) < 1:
        raise ValueError(
            f"need an MLP of >= 2 positive sizes and examples, points, directions >= 1; got {sizes}, "
            f"{examples}, {points}, {directions}"
        )
    first = 2.0 * examples * sizes[0] * sizes[1] * (1 + directions)
    rest = sum(
        2.0 * examples * fan_in * fan_out for fan_in, fan_out in zip(sizes[1:], sizes[2:], strict=False)
    )
    return first + points * rest


def fraction_of_floor(floor_seconds: float, measured_seconds: float) -> float:
    """``floor / measured``: 1.0 at the machine's limit, 0.5 at half of it."""
    if floor_seconds <= 0 or measured_seconds <= 0:
        raise ValueError(
            f"times must be positive, got floor {floor_seconds} s and measured {measured_seconds} s"
        )
    return floor_seconds / measured_seconds
