"""Input validation shared by every engine, so that all of them refuse the same things.

:func:`line_endpoints` turns what the user passed as ``start`` and ``end`` into the float64 vectors
θ0 and θ1 that every engine and :func:`linpath.project` work from: laid out like the model, on
real data (not the meta device), finite, and owned (never sharing memory with the model's
parameters, which an engine overwrites while it reads the line). :func:`check_point_range`
refuses an α grid that takes parameters beyond what their dtype can hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .params import META_HINT, Shape, as_vector


def _vector(obj: Any, names: Sequence[str], shapes: Sequence[Shape], what: str) -> torch.Tensor:
    vec = as_vector(obj, names, shapes, what)  # a module on the meta device is refused there, by name
    if vec.is_meta:
        raise ValueError(f"{what} is on the meta device and holds no values; {META_HINT}")
    return vec


def _first_non_finite(vec: torch.Tensor, names: Sequence[str], shapes: Sequence[Shape]) -> str | None:
    """Where ``vec`` first holds NaN or inf: ``"'name'[flat index] = value"``, or None."""
    bad = torch.nonzero(~torch.isfinite(vec))
    if bad.numel() == 0:
        return None
    index = int(bad[0, 0])
    sizes = np.cumsum([int(np.prod(s, dtype=np.int64)) for s in shapes])
    k = int(np.searchsorted(sizes, index, side="right"))
    local = index - (int(sizes[k - 1]) if k else 0)
    return f"{names[k]!r}[{local}] = {float(vec[index])}"


def line_endpoints(
    names: Sequence[str], shapes: Sequence[Shape], start: Any, end: Any, device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor]:
    """θ0 and θ1 as new float64 vectors on ``device``, checked.

    Raises:
        ValueError: For a layout unlike the model's, endpoints on the meta device, or NaN or
            infinite values (the message names the first such parameter).
        TypeError: For endpoints of an unsupported type or dtype.
    """
    start = finite_vector(start, names, shapes, "start", device, "the line through it")
    return start, finite_vector(end, names, shapes, "end", device, "the line through it")


def finite_vector(
    obj: Any,
    names: Sequence[str],
    shapes: Sequence[Shape],
    what: str,
    device: torch.device | str,
    defines: str,
) -> torch.Tensor:
    """``obj`` as a new float64 vector on ``device``, checked as :func:`line_endpoints` checks an endpoint.

    ``defines`` names what the vector defines, for the message on NaN or infinite values
    ("... ({where}); {defines} is undefined").
    """
    vec = _vector(obj, names, shapes, what)
    # A copy, always: the engines write points into the model, which ``obj`` may share memory with.
    vec = vec.detach().to(device=device, dtype=torch.float64, copy=True)
    where = _first_non_finite(vec, names, shapes)
    if where is not None:
        raise ValueError(f"{what} contains NaN or infinite values ({where}); {defines} is undefined")
    return vec


def check_point_range(
    params: Sequence[torch.Tensor], names: Sequence[str], t0: torch.Tensor, t1: torch.Tensor, grid: np.ndarray
) -> None:
    """ValueError if some α of ``grid`` puts a parameter beyond the largest value of its dtype.

    θ(α) is affine in α, so each parameter's extreme values on the grid are at its smallest and
    largest α; they are computed in float64 and compared with ``torch.finfo(dtype).max``.
    """
    alphas = (float(np.min(grid)), float(np.max(grid)))
    offset = 0
    for name, p in zip(names, params, strict=True):
        n = p.numel()
        a, b = t0[offset : offset + n], t1[offset : offset + n]
        offset += n
        limit = torch.finfo(p.dtype).max
        for alpha in alphas:
            peak = float((a + alpha * (b - a)).abs().max()) if n else 0.0
            if not peak <= limit:
                raise ValueError(
                    f"alpha = {alpha:g} takes parameter {name!r} to {peak:.3g}, beyond the range of its "
                    f"dtype {p.dtype} (largest {limit:.3g}); use alphas closer to [0, 1]"
                )
