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


#: Directions whose cosine is closer to ±1 than this span no plane (numerically parallel).
PARALLEL_COS = 1.0 - 1e-9


def _direction_list(directions: Any) -> list[Any]:
    """The directions as a list: a sequence of vectors, or the rows of a 2-D array/tensor."""
    if isinstance(directions, np.ndarray | torch.Tensor) and directions.ndim == 2:
        return list(directions)
    if isinstance(directions, str | bytes) or not isinstance(directions, Sequence):
        raise TypeError(
            "directions must be a sequence of vectors (e.g. two linpath.directions.random(...) results) or a "
            f"[k, n] array, got {type(directions).__name__}"
        )
    return list(directions)


def subspace_vectors(
    names: Sequence[str], shapes: Sequence[Shape], center: Any, directions: Any, device: torch.device | str
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The origin and the directions of a plane as new float64 vectors on ``device``, checked.

    Raises:
        ValueError: For layouts unlike the model's, NaN or infinite values (named), a zero direction,
            or parallel directions; a number of directions other than two.
        TypeError: For vectors of an unsupported type or dtype.
    """
    given = _direction_list(directions)
    if len(given) != 2:
        raise ValueError(f"a surface needs exactly two directions, got {len(given)}")
    vectors = []
    for obj, what in ((center, "center"), *((d, f"direction {k}") for k, d in enumerate(given))):
        vec = _vector(obj, names, shapes, what).detach().to(device=device, dtype=torch.float64, copy=True)
        where = _first_non_finite(vec, names, shapes)
        if where is not None:
            raise ValueError(
                f"{what} contains NaN or infinite values ({where}); the plane through it is undefined"
            )
        vectors.append(vec)
    _check_independent(vectors[1:])
    return vectors[0], vectors[1:]


def _check_independent(directions: list[torch.Tensor]) -> None:
    """ValueError for a zero direction or two parallel ones (no plane)."""
    # Scaled by the largest entry, so that the norms neither overflow nor underflow.
    units = []
    for k, d in enumerate(directions):
        scale = float(d.abs().max()) if d.numel() else 0.0
        if scale == 0.0:
            raise ValueError(f"direction {k} is zero everywhere; a plane needs two non-zero directions")
        units.append(d / scale / torch.linalg.vector_norm(d / scale))
    cos = float(units[0] @ units[1])
    if abs(cos) > PARALLEL_COS:
        raise ValueError(
            f"the two directions are parallel (cosine {cos:.12f}); they span a line, not a plane: pass two "
            "independent directions (e.g. random directions with different seeds)"
        )
