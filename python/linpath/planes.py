"""``surface``: J on a plane θ(a, b) = θ0 + a·d1 + b·d2 through parameter space, by the same engines
as ``interpolate`` (:mod:`linpath.engines`): any ``nn.Module`` with its input layers from the affine
cache (three products per batch instead of one per grid point), and the native engines for
linpath's own models (the MLP's first layer 1 + 2 times per batch; bf16 with its float32 check)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from torch import nn

from . import runner
from ._validate import finite_vector, model_endpoint, subspace_vectors
from .buffers import Interpolate
from .engines import Geometry, LossFn, precision_check, request
from .params import ParamVector, float_buffers, named_parameters
from .runner import Job
from .surfaces import Surface, _axis

#: Default grid: 21 points on [-1, 1] along each direction.
DEFAULT_GRID = np.linspace(-1.0, 1.0, 21)


def _check_axis(values: Any, what: str) -> np.ndarray:
    """A finite, strictly increasing, non-empty grid axis (the checks of :class:`Surface`); values that are
    not numbers at all are a TypeError."""
    try:
        np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} must be real numbers ({e})") from None
    return _axis(values, what)


def _check_grid(grid: Any) -> tuple[np.ndarray, np.ndarray]:
    if grid is None:
        return DEFAULT_GRID.copy(), DEFAULT_GRID.copy()
    if not isinstance(grid, Sequence) or isinstance(grid, str | bytes) or len(grid) != 2:
        raise TypeError(
            "grid must be an (xs, ys) pair of 1-D coordinate sequences, e.g. (np.linspace(-1, 1, 21),) * 2"
        )
    return _check_axis(grid[0], "grid xs"), _check_axis(grid[1], "grid ys")


def _split_buffers(model: nn.Module, directions: Any) -> tuple[Any, list[Any] | None]:
    """Directions laid out as the parameters followed by the float buffers (``directions.random(...,
    include_buffers=True)``) are cut into their parameter and buffer parts."""
    names, params = named_parameters(model)
    buf_names, bufs = float_buffers(model)
    full = names + buf_names
    if not bufs or not all(isinstance(d, ParamVector) and d.names == full for d in directions):
        return directions, None
    n = sum(p.numel() for p in params)
    cut = len(names)
    head = [ParamVector(d.tensor[:n], d.names[:cut], d.shapes[:cut]) for d in directions]
    tail = [ParamVector(d.tensor[n:], d.names[cut:], d.shapes[cut:]) for d in directions]
    return head, tail


def plane_geometry(model: nn.Module, center: Any, directions: Any, with_buffers: bool = True) -> Geometry:
    """The checked :class:`Geometry` of the plane through ``center`` along ``directions`` (buffer
    parts of the directions are dropped when ``with_buffers`` is False)."""
    names, params = named_parameters(model)
    device = params[0].device
    if isinstance(directions, Sequence) and not isinstance(directions, str | bytes):
        directions, buffer_dirs = _split_buffers(model, list(directions))
    else:
        buffer_dirs = None
    origin, dirs = subspace_vectors(names, [tuple(p.shape) for p in params], center, directions, device)
    if buffer_dirs is None or not with_buffers:
        return Geometry(names, params, origin, dirs)
    buffers = _buffer_plane(model, center, buffer_dirs, device)
    return Geometry(names, params, origin, dirs, buffers=buffers, buffer_names=tuple(float_buffers(model)[0]))


def _buffer_plane(model: nn.Module, center: Any, buffer_dirs: list[Any], device: Any) -> Any:
    """The float buffers' origin (the center's values, else the model's) and directions, checked for
    layout and finite values only: their directions may be zero or parallel (``directions.random``
    gives 1-D tensors a zero direction, or their own values), the plane is the parameters'."""
    buf_names, bufs = float_buffers(model)
    shapes = [tuple(b.shape) for b in bufs]
    base = dict(model.named_buffers())
    if isinstance(center, nn.Module):
        base.update(center.named_buffers())
    elif isinstance(center, Mapping):
        base.update(center)
    defines = "the plane through it"
    b0 = finite_vector(base, buf_names, shapes, "the center's buffers", device, defines)
    bdirs = [
        finite_vector(d, buf_names, shapes, f"direction {k} (buffers)", device, defines)
        for k, d in enumerate(buffer_dirs)
    ]
    return bufs, b0, bdirs, None


def surface(
    model: nn.Module,
    center: Any,
    directions: Any,
    data: Any,
    *,
    grid: tuple[Any, Any] | None = None,
    loss: LossFn | None = None,
    step: Callable[[nn.Module, Any], Any] | None = None,
    metrics: Sequence[str] | None = None,
    batch_size: int | None = None,
    progress: bool | None = None,
    precision: str = "float32",
    engine: str = "auto",
    buffers: str = "interpolate",
    recompute_batches: int | None = None,
    recompute_split: str | None = None,
    prefix: str = "auto",
    order: str = "auto",
    distributed: bool | None = None,
    shard: str = "points",
    checkpoint: str | os.PathLike[str] | None = None,
) -> Surface:
    """Evaluates the objective on the plane θ(a, b) = θ0 + a·d1 + b·d2.

    Each point is computed from θ0 and the two directions in float64 and rounded once into the
    model (never by accumulating steps). The engines are those of :func:`linpath.interpolate`: the
    module engine for any ``nn.Module`` (each point written into the model's parameters, eval mode,
    ``torch.no_grad()``; afterwards the model is exactly as it was, also on error or Ctrl-C), the
    native engine for linpath's own models with ``(X, Y)`` data and the default loss.

    Args:
        model: The ``nn.Module`` to evaluate.
        center: θ0 (the grid's (0, 0)): an ``nn.Module``, a state_dict, a :class:`ParamVector`, a
            flat vector in the order of ``model.named_parameters()``, or the path of a checkpoint
            (see :func:`linpath.checkpoints.load`).
        directions: Two directions d1, d2 in the same forms (e.g. ``linpath.directions.random(model,
            seed=0)`` and ``seed=1``, the rows of ``linpath.directions.pca(trajectory).directions``,
            or the ``directions`` of ``linpath.directions.plane_through(a, b, c)``). Directions made
            with ``include_buffers=True`` move the float buffers (BatchNorm statistics) too, from the
            center's (or else the model's) values.
        data: An ``(X, Y)`` pair, a DataLoader or other re-iterable of batches of any shape (as for
            :func:`linpath.interpolate`), or a dict of splits.
        grid: ``(xs, ys)``: the coordinates along d1 and d2, each strictly increasing and finite.
            Defaults to 21 points on [-1, 1] each.
        loss: ``loss(output, target) -> scalar`` batch mean; defaults to cross-entropy on the logits.
        step: ``step(model, batch)`` returning the batch's loss (a mean, ``(mean, count)`` or a dict of
            named means), as for :func:`linpath.interpolate`; not together with ``loss``.
        metrics: Any of ``"loss"`` and ``"error"`` (default both); with ``step``, the names it returns.
        batch_size: Batch size for ``(X, Y)`` pairs (default 1024).
        progress: Show a progress bar: True always, False never, None when the work takes over 2 s.
        precision: ``"float32"`` or ``"bf16"`` (then the grid's four corners and its centre point are
            re-evaluated in float32: ``surface.meta["precision_check"]``).
        engine: ``"auto"``, ``"native"`` or ``"module"``.
        buffers: The float buffers at each point (:mod:`linpath.buffers`): ``"interpolate"``
            (default) moves them along directions made with ``include_buffers=True`` and leaves
            points where a running variance turns negative unevaluated (NaN, with a warning);
            ``"current"`` keeps the model's own; ``"recompute"`` re-estimates them at each point.
        recompute_batches: For ``"recompute"``: batches per point (default: all of an ``(X, Y)``
            pair, 10 of a DataLoader).
        recompute_split: For ``"recompute"``: the split to estimate from (default ``"train"``).
        prefix: How the names of the center and of directions given as state_dicts (or paths) map
            to the model's, as for :func:`linpath.interpolate`.
        order: ``"auto"``, ``"points"`` or ``"batches"``: whether each batch of a DataLoader is read
            once and evaluated at every point (see :func:`linpath.interpolate` and
            :mod:`linpath.batch_outer`).
        distributed: Run on the ``torch.distributed`` process group (None: when one is initialised
            with more than one process), as for :func:`linpath.interpolate`.
        shard: ``"points"`` (default; the grid points dealt across the ranks) or ``"data"`` (each
            split's examples), as for :func:`linpath.interpolate`.
        checkpoint: The path of a resumable result file, as for :func:`linpath.interpolate`.

    Returns:
        A :class:`Surface` with ``values[split][metric]`` of shape ``(len(ys), len(xs))`` and the plane
        (origin and directions) for :meth:`Surface.project`.

    Raises:
        TypeError: For arguments of the wrong type.
        ValueError: For directions of the wrong layout, zero, parallel or NaN directions, an empty or
            unsorted grid, data the model cannot evaluate, or an engine or precision that does not apply.
    """
    names, params = named_parameters(model)
    center, directions = _resolved(model, center, directions, prefix)
    xs, ys = _check_grid(grid)
    asked = request(
        model,
        data,
        loss=loss,
        metrics=metrics,
        batch_size=batch_size,
        engine=engine,
        precision=precision,
        step=step,
        order=order,
        buffers=(buffers, recompute_batches, recompute_split),
    )
    policy = asked.policy
    geometry = plane_geometry(model, center, directions, with_buffers=policy.moves_buffers)
    points = np.stack(np.meshgrid(xs, ys, indexing="xy"), axis=-1).reshape(-1, 2)  # row-major: y outer
    passes = [(points, precision)]
    index = _check_points(len(xs), len(ys)) if precision == "bf16" else None
    if index is not None:
        passes.append((points[index], "float32"))
    job = Job("surface", distributed, shard, checkpoint)
    results, job_info = runner.run(job, asked, model, geometry, passes, progress)
    if isinstance(policy, Interpolate):
        policy.warn_invalid()
    meta = {
        **asked.meta(model, params),
        "buffers_moved": geometry.buffers is not None,
        "buffers": policy.meta(),
        "direction_norms": [float(d.norm()) for d in geometry.directions],
        "axes": ["d1", "d2"],
        # The plane's layout, so that Surface.project can refuse a trajectory of another one.
        "layout": [[name, list(p.shape)] for name, p in zip(names, params, strict=True)],
    }
    if job_info:
        meta["job"] = job_info
    if index is not None:
        check = precision_check(results[1], np.arange(len(points), dtype=np.float64), index, results[0])
        check.pop("alphas")
        meta["precision_check"] = {"points": points[index].tolist(), **check}
    shape = (len(ys), len(xs))
    values = {
        s: {m: np.asarray(v, dtype=np.float64).reshape(shape) for m, v in mv.items()}
        for s, mv in results[0].items()
    }
    origin = geometry.origin.cpu().numpy()
    dirs = np.stack([d.cpu().numpy() for d in geometry.directions])
    return Surface(xs, ys, values, meta, origin=origin, directions=dirs)


def _resolved(model: nn.Module, center: Any, directions: Any, prefix: str) -> tuple[Any, Any]:
    """The center and the directions with paths read and names matched to the model's."""
    center = model_endpoint(model, center, "center", prefix)
    if isinstance(directions, Sequence) and not isinstance(directions, str | bytes):
        directions = [model_endpoint(model, d, f"direction {k}", prefix) for k, d in enumerate(directions)]
    return center, directions


def _check_points(nx: int, ny: int) -> np.ndarray:
    """Positions (in the row-major list of grid points) of the four corners and the centre."""
    rows, cols = [0, ny - 1, 0, ny - 1, ny // 2], [0, 0, nx - 1, nx - 1, nx // 2]
    return np.unique(np.asarray(rows) * nx + np.asarray(cols))
