"""Input validation shared by every engine, so that all of them refuse the same things.

:func:`line_endpoints` turns what the user passed as ``start`` and ``end`` into the float64 vectors
θ0 and θ1 that every engine and :func:`linpath.project` work from: laid out like the model, on
real data (not the meta device), finite, and owned (never sharing memory with the model's
parameters, which an engine overwrites while it reads the line). :func:`check_point_range`
refuses an α grid that takes parameters beyond what their dtype can hold.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from . import checkpoints
from .params import META_HINT, ParamVector, Shape, as_vector, named_parameters

#: Name prefixes that wrappers add: DistributedDataParallel/DataParallel, torch.compile, Lightning.
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.")


def _vector(obj: Any, names: Sequence[str], shapes: Sequence[Shape], what: str) -> torch.Tensor:
    obj = endpoint(obj, names, what)
    vec = as_vector(obj, names, shapes, what)  # a module on the meta device is refused there, by name
    if vec.is_meta:
        raise ValueError(f"{what} is on the meta device and holds no values; {META_HINT}")
    return vec


def _first_non_finite(vec: torch.Tensor, names: Sequence[str], shapes: Sequence[Shape]) -> str | None:
    """Where ``vec`` first holds NaN or inf: ``"'name'[flat index] = value"``, or None."""
    if vec.is_floating_point() and bool(torch.isfinite(vec.sum())):
        # One streaming pass: a finite sum has no NaN or inf among its terms (NaN and ±inf
        # propagate); a sum that overflows to inf only sends finite vectors to the full check.
        return None
    bad = torch.nonzero(~torch.isfinite(vec))
    if bad.numel() == 0:
        return None
    index = int(bad[0, 0])
    sizes = np.cumsum([int(np.prod(s, dtype=np.int64)) for s in shapes])
    k = int(np.searchsorted(sizes, index, side="right"))
    local = index - (int(sizes[k - 1]) if k else 0)
    return f"{names[k]!r}[{local}] = {float(vec[index])}"


def endpoint(
    obj: Any, names: Sequence[str], what: str, prefix: str = "auto", others: Sequence[str] = ()
) -> Any:
    """``obj`` with a path read (:func:`linpath.checkpoints.load`) and its names matched to ``names``.

    A state_dict, module or named :class:`ParamVector` whose names differ from ``names`` by a
    prefix is re-keyed: its key for name ``n`` is ``q + n[len(r):]``, where ``r`` is a chain of
    :data:`WRAPPER_PREFIXES` that all of ``names`` start with (the model's side, e.g. a
    model compiled with ``torch.compile``: ``_orig_mod.``) or ``""``, and ``q`` is ``prefix``, or with
    ``prefix="auto"`` ``""`` or a chain of wrapper prefixes that the keys start with. Exactly one
    such reading must find every name; the re-keyed dict holds ``names`` and those of ``others``
    (e.g. buffers) that it finds. Anything else (vectors) is returned as it is.

    Raises:
        ValueError: When no reading finds every name, or more than one does (both are listed).
    """
    if isinstance(obj, str | os.PathLike):
        obj = _read(obj, what)
    table = _named_table(obj, names)
    if table is None or not names:
        return obj
    readings = _readings(table, names, prefix)
    if len(readings) == 1:
        r, q = readings[0]
        if r == q and not isinstance(obj, Mapping):
            return obj  # the names as they are
        # A new dict of exactly the names needed (a second reading of it finds only this one).
        return {n: table[q + n[len(r) :]] for n in (*names, *others) if q + n[len(r) :] in table}
    if not readings:
        if prefix == "auto" and not isinstance(obj, Mapping) and not _wrapped(table, names):
            return obj  # a module with no wrapper prefix in sight: the layout check says what differs
        raise ValueError(_no_reading(what, obj, table, names, prefix))
    shown = "; ".join(f"{names[0]!r} <- {q + names[0][len(r) :]!r}" for r, q in readings)
    raise ValueError(
        f"{what} can be read against the model's parameter names in {len(readings)} ways ({shown}); "
        f"pass prefix= to say which (the prefix to strip from its keys, '' for none)"
    )


def _read(path: str | os.PathLike[str], what: str) -> dict[str, torch.Tensor]:
    if not os.path.lexists(path):
        raise FileNotFoundError(
            f"{what} is the path {os.fspath(path)!r}, where there is no file or directory; a string "
            "endpoint names a checkpoint (torch.save state_dict, Lightning .ckpt, safetensors) or a "
            "Hugging Face model directory"
        )
    return checkpoints.load(path)


def model_endpoint(model: nn.Module, obj: Any, what: str, prefix: str = "auto") -> Any:
    """:func:`endpoint` against ``model``'s parameter names (its buffers re-keyed alongside)."""
    names, _ = named_parameters(model)
    return endpoint(obj, names, what, prefix, [n for n, _ in model.named_buffers()])


def _named_table(obj: Any, names: Sequence[str]) -> Mapping[str, Any] | None:
    """The named tensors of ``obj`` (a state_dict; a module's parameters and buffers; a named
    ParamVector's tensors), or None for what has no names (vectors, sequences)."""
    if isinstance(obj, Mapping):
        return obj
    if isinstance(obj, nn.Module):
        return {**dict(obj.named_buffers()), **dict(obj.named_parameters())}
    if isinstance(obj, ParamVector) and obj._named and obj.names != list(names):
        return obj.to_state_dict()
    return None


def _wrapped(table: Mapping[str, Any], names: Sequence[str]) -> bool:
    """True when some key of ``table`` or some model name starts with a wrapper prefix."""
    return any(_chains(k) for k in table) or any(_chains(n) for n in names)


def _chains(name: str) -> list[str]:
    """The chains of wrapper prefixes ``name`` starts with: ``"_orig_mod.module.x"`` gives
    ``["_orig_mod.", "_orig_mod.module."]``."""
    out, rest, chain = [], name, ""
    while prefix := next((p for p in WRAPPER_PREFIXES if rest.startswith(p)), None):
        chain, rest = chain + prefix, rest[len(prefix) :]
        out.append(chain)
    return out


def _readings(table: Mapping[str, Any], names: Sequence[str], prefix: str) -> list[tuple[str, str]]:
    """The ``(r, q)`` readings (see :func:`endpoint`) under which ``table`` holds every name, one
    per distinct key mapping."""
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a string ('auto', '' or e.g. 'model.'), got {prefix!r}")
    model_side = [""] + [c for c in _chains(names[0]) if all(n.startswith(c) for n in names)]
    key_side = [prefix]
    if prefix == "auto":
        key_side = [""] + sorted({c for k in table for c in _chains(str(k))})
    found: dict[tuple[str, ...], tuple[str, str]] = {}
    for r in model_side:
        for q in key_side:
            keys = tuple(q + n[len(r) :] for n in names)
            if all(k in table for k in keys):
                found.setdefault(keys, (r, q))
    return list(found.values())


def _no_reading(what: str, obj: Any, table: Mapping[str, Any], names: Sequence[str], prefix: str) -> str:
    q = "" if prefix == "auto" else prefix
    missing = [n for n in names if q + n not in table]
    kind = "a state_dict" if isinstance(obj, Mapping) else f"a {type(obj).__name__}"
    keys = [str(k) for k in list(table)[:3]]
    if prefix != "auto":
        return (
            f"{what} ({kind}) lacks {len(missing)} of the parameters with prefix={prefix!r}, e.g. "
            f"{[q + n for n in missing[:3]]}; its keys look like {keys}: pass the prefix they carry"
        )
    return (
        f"{what} ({kind}) lacks {len(missing)} of the parameters, e.g. {missing[:3]}, while its keys look "
        f"like {keys}; where they differ from the model's names by a prefix other than those of wrappers "
        f"{list(WRAPPER_PREFIXES)} (tried), pass prefix= with the prefix to strip (e.g. 'net.')"
    )


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
