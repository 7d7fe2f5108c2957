"""Directions in parameter space, for pictures of the loss on planes (``linpath.surface``).

* :func:`random`: a Gaussian direction scaled filter by filter (or layer by layer) to the model's
  own weights, as in Li et al. (2018), "Visualizing the loss landscape of neural nets".
* :func:`between`: the direction ``b − a`` from one solution to another.
* :func:`plane_through`: the plane through three solutions, with orthonormal axes and the three
  points' coordinates on it (Garipov et al. 2018, "Loss surfaces, mode connectivity, and fast
  ensembling of DNNs").
* :func:`pca`: the plane of the top two principal directions of a training trajectory.

Every direction is accepted by anything that takes a parameter vector (``as_vector``): a
:class:`~linpath.params.ParamVector` laid out like ``model.named_parameters()``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ._checks import integer, real
from ._guard import check_free
from ._validate import _first_non_finite, _vector
from .params import META_HINT, ParamVector, Shape, _common_dtype, float_buffers, named_parameters
from .trajectory import Trajectory, TrajectoryRecorder

NORMALIZATIONS = ("filter", "layer", "none")
IGNORES = ("biasbn", None)
#: c − a is refused as collinear with b − a when its orthogonal part is below this fraction of it.
COLLINEAR_RTOL = 1e-9


# --------------------------------------------------------------------------------------------
# random


def random(
    model: nn.Module,
    *,
    seed: int = 0,
    normalization: str = "filter",
    ignore: str | None = "biasbn",
    include_buffers: bool = False,
) -> ParamVector:
    """A random Gaussian direction scaled to the model's weights (Li et al. 2018).

    Each tensor's entries are drawn from N(0, 1) in turn (``torch.randn(shape, dtype=float64,
    generator=torch.Generator().manual_seed(seed))`` for each tensor of the layout, in order), then,
    for every tensor with two or more dimensions:

    * ``"filter"``: each slice along dim 0 (a convolution's output filter, a linear layer's row,
      i.e. one output unit; for ``nn.Embedding`` one token's embedding row; for a transposed
      convolution, whose weight is ``[in, out, ...]``, an input channel) is rescaled to the
      Frobenius norm of the same slice of the model's tensor;
    * ``"layer"``: the whole tensor is rescaled to the model tensor's norm;
    * ``"none"``: the raw Gaussian is kept.

    Tensors with fewer than two dimensions (biases, norm-layer weights, running statistics) get a
    zero direction with ``ignore="biasbn"``, and the model's own values with ``ignore=None``.

    This mirrors ``net_plotter.py`` of Li et al.'s code (``normalize_directions_for_weights``):
    the same slices, the same rule for 1-D tensors. Differences: where the model's slice (or
    tensor) has norm 0 the direction is exactly 0 (their code divides by ``norm + 1e-10``; no
    epsilon is used here, so there is never NaN or inf); the draw and the scaling are done in
    float64 on the CPU from a private generator, so a seed gives the same direction on every
    device and the global RNG is left alone; their "weight", "dfilter" and "dlayer" are absent.

    Args:
        model: The module whose ``named_parameters()`` give the layout and the norms.
        seed: Seed of the private ``torch.Generator`` (an integer in [0, 2**64)).
        normalization: ``"filter"``, ``"layer"`` or ``"none"``.
        ignore: ``"biasbn"`` (zero for 1-D and 0-d tensors) or None (their model values).
        include_buffers: Also give a direction for the model's floating-point buffers (e.g.
            BatchNorm running statistics; integer ones such as ``num_batches_tracked`` are left
            out), after the parameters in ``named_buffers()`` order. The parameters' part is the
            same as without them. Such a vector has more tensors than ``named_parameters()``.

    Returns:
        A :class:`ParamVector` on the model's device, in the parameters' (common) dtype.

    Raises:
        TypeError: For a seed that is not an integer, an ``include_buffers`` that is not a bool, or
            a model that is not an ``nn.Module``.
        ValueError: For an unknown ``normalization`` or ``ignore``, a model on several devices or
            the meta device, or a model tensor with NaN or infinite values that the direction uses.
        RuntimeError: If another linpath operation (a sweep) is overwriting the model right now.
    """
    seed = _check_options(seed, normalization, ignore)
    names, tensors, dtype = _random_layout(model, include_buffers)
    generator = torch.Generator().manual_seed(seed)
    pieces = []
    for name, tensor in zip(names, tensors, strict=True):
        # One draw per tensor, in turn (as Li et al.): the parameters' part is the same with buffers.
        draw = torch.randn(tensor.shape, generator=generator, dtype=torch.float64)
        weight = tensor.detach().to(device="cpu", dtype=torch.float64)
        piece = _scaled(draw, weight, normalization, ignore).reshape(-1)
        pieces.append(_cast_checked(piece, dtype, name))
    vec = torch.cat(pieces).to(tensors[0].device)
    return ParamVector(vec, names, [tuple(t.shape) for t in tensors])


def _check_options(seed: Any, normalization: Any, ignore: Any) -> int:
    seed = integer("seed", seed, 0, 2**64)
    if not isinstance(normalization, str) or normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be 'filter', 'layer' or 'none', got {normalization!r}")
    if not (ignore is None or (isinstance(ignore, str) and ignore == "biasbn")):
        raise ValueError(
            f"ignore must be 'biasbn' (zero direction for biases and norm layers) or None "
            f"(their own values), got {ignore!r}"
        )
    return seed


def _random_layout(model: nn.Module, include_buffers: bool) -> tuple[list[str], list[torch.Tensor], Any]:
    """Names and tensors to draw for (parameters, then float buffers), and the parameters' dtype."""
    if not isinstance(include_buffers, bool):
        raise TypeError(f"include_buffers must be True or False, got {include_buffers!r}")
    names, tensors = named_parameters(model)
    dtype = _common_dtype(tensors)
    check_free(tensors, "draw a random direction for the model")
    if include_buffers:
        buffer_names, buffers = float_buffers(model)
        for name, b in zip(buffer_names, buffers, strict=True):
            if b.is_meta:
                raise ValueError(f"buffer {name!r} is on the meta device and holds no values; {META_HINT}")
        names, tensors = names + buffer_names, tensors + buffers
    devices = sorted({str(t.device) for t in tensors})
    if len(devices) > 1:
        raise ValueError(
            f"the model's tensors are on several devices ({', '.join(devices)}); move it to one device"
        )
    return names, tensors, dtype


def _scaled(draw: torch.Tensor, weight: torch.Tensor, normalization: str, ignore: str | None) -> torch.Tensor:
    """One tensor's direction from its Gaussian draw and the model's values (float64)."""
    if draw.dim() <= 1:
        return torch.zeros_like(weight) if ignore == "biasbn" else weight.clone()
    if normalization == "none":
        return draw
    if normalization == "layer":
        return draw * _ratio(torch.linalg.vector_norm(weight), torch.linalg.vector_norm(draw))
    rows = draw.flatten(1)  # one row per slice along dim 0 (not reshape: a 0-row tensor is fine)
    target = torch.linalg.vector_norm(weight.flatten(1), dim=1)
    scale = _ratio(target, torch.linalg.vector_norm(rows, dim=1))
    return (rows * scale[:, None]).view(draw.shape)


def _ratio(target: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    """target / norm, and 0 where norm is 0 (an empty slice); a zero target gives 0, NaN stays NaN."""
    positive = norm > 0
    return torch.where(positive, target / torch.where(positive, norm, 1.0), 0.0)


def _cast_checked(piece: torch.Tensor, dtype: torch.dtype, name: str) -> torch.Tensor:
    if not bool(torch.isfinite(piece).all()):
        raise ValueError(
            f"the model's {name!r} holds NaN or infinite values (or values whose norm overflows "
            "float64), so the direction scaled to it is undefined; fix the model's values first"
        )
    out = piece.to(dtype)
    if not bool(torch.isfinite(out).all()):
        raise ValueError(f"the direction for {name!r} exceeds the range of {dtype}; use a wider dtype")
    return out


# --------------------------------------------------------------------------------------------
# between, plane_through


def between(a: Any, b: Any, *, model: nn.Module | None = None) -> ParamVector:
    """The direction ``b − a`` from one point of parameter space to another.

    Args:
        a: The start: an ``nn.Module``, a :class:`ParamVector`, or (with ``model``) a state_dict
            or a flat 1-D tensor or array in the order of ``model.named_parameters()``.
        b: The end, likewise.
        model: The module whose ``named_parameters()`` give the layout. Needed unless ``a`` or
            ``b`` is a module or a ParamVector (whose layout is then used).

    Returns:
        A float64 :class:`ParamVector` on ``a``'s device, computed in float64.

    Raises:
        TypeError: For unsupported types, or state_dicts / flat vectors without ``model``.
        ValueError: For layouts that differ, or NaN or infinite values.
    """
    names, shapes, named = _layout(model, (a, b))
    va = _point(a, names, shapes, "a", None)
    diff = _point(b, names, shapes, "b", va.device) - va
    if not bool(torch.isfinite(diff).all()):
        raise ValueError("b − a overflows float64; the points are too far apart")
    return ParamVector(diff, names, shapes, named=named)


@dataclass(frozen=True)
class PlaneThrough:
    """The plane through three points ``a``, ``b``, ``c`` of parameter space.

    A point ``(x, y)`` of the plane is ``center + x·u + y·v``.

    Attributes:
        center: ``a`` (float64), the origin.
        directions: ``(u, v)``, orthonormal float64 vectors: ``u`` along ``b − a``, ``v`` the part
            of ``c − a`` orthogonal to ``u``, both of unit norm.
        points: The coordinates of the three points: ``{"a": (0, 0), "b": (‖b − a‖, 0),
            "c": (⟨c − a, u⟩, ⟨c − a, v⟩)}``.
    """

    center: ParamVector
    directions: tuple[ParamVector, ParamVector]
    points: dict[str, tuple[float, float]]

    def grid(self, n: int = 21, margin: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
        """Coordinates ``(xs, ys)`` of an ``n × n`` grid that covers the three points.

        Args:
            n: Number of values on each axis (at least 2).
            margin: How far the grid reaches beyond the points, as a fraction of their span on
                each axis (at least 0).

        Returns:
            Two float64 arrays of ``n`` increasing values each.
        """
        n = integer("n", n, 2)
        margin = real("margin", margin)
        if not 0.0 <= margin < float("inf"):
            raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
        coords = np.asarray(list(self.points.values()), dtype=np.float64)
        low, high = coords.min(axis=0), coords.max(axis=0)
        pad = margin * (high - low)
        axes = [np.linspace(low[i] - pad[i], high[i] + pad[i], n) for i in range(2)]
        return axes[0], axes[1]


def plane_through(a: Any, b: Any, c: Any, *, model: nn.Module | None = None) -> PlaneThrough:
    """The plane through three solutions, with orthonormal axes (Gram–Schmidt in float64).

    Args:
        a: The origin: an ``nn.Module``, a :class:`ParamVector`, or (with ``model``) a state_dict
            or a flat 1-D tensor or array in the order of ``model.named_parameters()``.
        b: The point that fixes the first axis, likewise.
        c: The third point, likewise.
        model: The module that gives the layout (see :func:`between`).

    Returns:
        A :class:`PlaneThrough`; its vectors are float64 on ``a``'s device.

    Raises:
        TypeError: For unsupported types, or state_dicts / flat vectors without ``model``.
        ValueError: For different layouts, NaN or infinite values, two coincident points, or
            three collinear points.
    """
    names, shapes, named = _layout(model, (a, b, c))
    va = _point(a, names, shapes, "a", None)
    vb, vc = (_point(p, names, shapes, w, va.device) for p, w in ((b, "b"), (c, "c")))
    for first, second, p, q in (("a", "b", va, vb), ("a", "c", va, vc), ("b", "c", vb, vc)):
        if torch.equal(p, q):
            raise ValueError(f"{first} and {second} are the same point; a plane needs three distinct points")
    u, length = _unit(vb - va, None)
    v, _ = _unit(_orthogonal(vc - va, u), vc - va)
    cx, cy = float((vc - va) @ u), float((vc - va) @ v)
    vector = functools.partial(ParamVector, names=names, shapes=shapes, named=named)
    points = {"a": (0.0, 0.0), "b": (length, 0.0), "c": (cx, cy)}
    return PlaneThrough(center=vector(va), directions=(vector(u), vector(v)), points=points)


def _orthogonal(w: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The part of ``w`` orthogonal to the unit vector ``u`` (Gram–Schmidt applied twice)."""
    for _ in range(2):
        w = w - (w @ u) * u
    return w


def _unit(w: torch.Tensor, whole: torch.Tensor | None) -> tuple[torch.Tensor, float]:
    """``w / ‖w‖`` and ``‖w‖``; with ``whole`` (c − a), refuses a ``w`` negligible beside it."""
    norm = float(torch.linalg.vector_norm(w))
    size = norm if whole is None else float(torch.linalg.vector_norm(whole))
    if not size < float("inf"):
        raise ValueError("the points are too far apart: their distance overflows float64; rescale them")
    if not norm >= COLLINEAR_RTOL * size:
        raise ValueError(
            f"a, b and c are collinear: the part of c − a orthogonal to b − a is {norm / size:.2e} "
            f"of ‖c − a‖ (below {COLLINEAR_RTOL:g}); pick a c off the line through a and b "
            "(for the line itself use linpath.interpolate)"
        )
    if not norm > 0.0:
        raise ValueError("the points are too close together: their distance underflows float64")
    return w / norm, norm


def _layout(model: Any, points: Sequence[Any]) -> tuple[list[str], list[Shape], bool]:
    """(names, shapes, named) from ``model``, else the first module, else the first ParamVector."""
    if model is not None:
        names, params = named_parameters(model)
        return names, [tuple(p.shape) for p in params], True
    for p in points:
        if isinstance(p, nn.Module):
            names, params = named_parameters(p)
            return names, [tuple(t.shape) for t in params], True
    for p in points:
        if isinstance(p, ParamVector):
            return list(p.names), list(p.shapes), p._named
    kinds = ", ".join(type(p).__name__ for p in points)
    raise TypeError(
        f"cannot tell the layout of the points ({kinds}): pass model= (the module whose "
        "named_parameters() they follow), or pass modules or linpath.ParamVector points"
    )


def _point(obj: Any, names: Sequence[str], shapes: Sequence[Shape], what: str, device: Any) -> torch.Tensor:
    """``obj`` as a new, finite float64 vector in the layout (on ``device``, or its own if None)."""
    vec = _vector(obj, names, shapes, what)
    vec = vec.detach().to(device=vec.device if device is None else device, dtype=torch.float64, copy=True)
    where = _first_non_finite(vec, names, shapes)
    if where is not None:
        raise ValueError(f"{what} contains NaN or infinite values ({where}); a direction needs finite points")
    return vec


# --------------------------------------------------------------------------------------------
# pca

#: Largest float32 matrix of stacked checkpoints that :func:`pca` builds (bytes).
PCA_MEMORY = 2 << 30
#: A second eigenvalue below this fraction of the first is rounding noise: no second direction.
PLANE_RTOL = 1e-12


def _checkpoints(trajectory: Trajectory | TrajectoryRecorder) -> Trajectory:
    if isinstance(trajectory, TrajectoryRecorder):
        trajectory = trajectory.trajectory
    if not isinstance(trajectory, Trajectory):
        raise TypeError(
            f"trajectory must be a linpath Trajectory or TrajectoryRecorder, got {type(trajectory).__name__}"
        )
    if len(trajectory) < 2:
        raise ValueError(f"the trajectory needs at least 2 checkpoints, it has {len(trajectory)}")
    return trajectory


def _flat64(vector: Any) -> np.ndarray:
    values = vector.numpy().astype(np.float64, copy=False)
    if not np.isfinite(values).all():
        raise ValueError("the trajectory holds NaN or infinite parameters")
    return values


@dataclass(frozen=True)
class Plane:
    """The top-two PCA plane of a trajectory's displacements from a reference point.

    ``linpath.surface(model, plane.center, plane.directions, ...)`` draws the loss on it.

    Attributes:
        reference: θ_ref (float64, flat), the plane's origin.
        directions: ``[2, n_params]`` orthonormal directions, the first explaining the most.
        coords: ``[checkpoints, 2]`` coordinates of each θ_t − θ_ref on the directions.
        residuals: ``[checkpoints]`` norm of the part of θ_t − θ_ref off the plane.
        explained: Fraction of Σ‖θ_t − θ_ref‖² that the plane captures.
        steps: The checkpoints' step numbers.
    """

    reference: np.ndarray
    directions: np.ndarray
    coords: np.ndarray
    residuals: np.ndarray
    explained: float
    steps: np.ndarray

    @property
    def center(self) -> np.ndarray:
        """The plane's origin, :attr:`reference` (a flat float64 vector)."""
        return self.reference

    @property
    def direction_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """The two rows of :attr:`directions`, each a flat float64 vector."""
        return self.directions[0], self.directions[1]

    @property
    def max_residual(self) -> float:
        """The largest distance of an iterate from the plane."""
        return float(self.residuals.max())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (without the long vectors)."""
        return {
            "explained": self.explained,
            "max_residual": self.max_residual,
            "coords": self.coords.tolist(),
            "residuals": self.residuals.tolist(),
            "steps": self.steps.tolist(),
        }


def pca(trajectory: Trajectory | TrajectoryRecorder, k: int = 2, reference: str = "final") -> Plane:
    """The plane of the top two principal directions of θ_t − θ_ref over the checkpoints.

    As in Li et al. (2018), the displacements are taken from the final iterate (``"final"``), or
    from their mean (``"mean"``, ordinary centred PCA). The directions are the top two right
    singular vectors of the stacked displacements, found from their Gram matrix in float64.

    Args:
        trajectory: The recorded checkpoints.
        k: The number of directions; only 2 (a plane) is supported for now.
        reference: ``"final"`` or ``"mean"``.

    Returns:
        A :class:`Plane`.

    Raises:
        TypeError: For a trajectory that is not a Trajectory or TrajectoryRecorder, or a non-integer k.
        ValueError: For k other than 2, an unknown reference, fewer than two checkpoints or
            directions, NaN or infinite checkpoints, or too many checkpoints to stack in memory.
    """
    if integer("k", k) != 2:
        raise ValueError(f"only k=2 (a plane) is supported for now, got k={k}")
    trajectory = _checkpoints(trajectory)
    if reference not in ("final", "mean"):
        raise ValueError(f"reference must be 'final' or 'mean', got {reference!r}")
    size = len(trajectory) * trajectory.numel * 4
    if size > PCA_MEMORY:
        raise ValueError(
            f"pca_plane stacks the checkpoints in memory ({size / 2**30:.1f} GiB > "
            f"{PCA_MEMORY / 2**30:.0f} GiB); "
            "record fewer checkpoints"
        )
    stacked = torch.stack([torch.from_numpy(_flat64(c)) for c in trajectory])
    if not bool(torch.isfinite(stacked).all()):
        raise ValueError("the trajectory has NaN or infinite values; there is no plane to fit")
    origin = stacked[-1] if reference == "final" else stacked.mean(dim=0)
    return _plane(stacked, origin, np.asarray(trajectory.steps))


def _plane(stacked: torch.Tensor, origin: torch.Tensor, steps: np.ndarray) -> Plane:
    """The top-two PCA plane of the rows of ``stacked`` (float64) around ``origin``."""
    # In units of the largest displacement, so that squares neither overflow nor underflow.
    scale = float((stacked - origin).abs().max())
    unit = (stacked - origin) / (scale if scale > 0 else 1.0)
    eigenvalues, eigenvectors = torch.linalg.eigh(unit @ unit.T)
    top = torch.argsort(eigenvalues, descending=True)[:2]
    lam = eigenvalues[top].clamp_min(0)
    # Relative to the largest: rounding leaves ~1e-16·λ1 in the second eigenvalue of a line's Gram matrix.
    if float(lam[1]) <= PLANE_RTOL * float(lam[0]):
        raise ValueError("the trajectory spans fewer than two directions; there is no plane to fit")
    directions = (unit.T @ eigenvectors[:, top]) / lam.sqrt()
    coords = unit @ directions
    # Off the plane directly (not as sqrt(‖x‖² − ‖c‖²), which keeps only half the digits).
    residuals = torch.linalg.vector_norm(unit - coords @ directions.T, dim=1)
    return Plane(
        reference=origin.numpy(),
        directions=directions.T.contiguous().numpy(),
        coords=(coords * scale).numpy(),
        residuals=(residuals * scale).numpy(),
        explained=float(lam.sum()) / float((unit**2).sum()),
        steps=steps,
    )
