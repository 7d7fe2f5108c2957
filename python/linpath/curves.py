"""Curves between two solutions (Garipov et al. 2018, "Loss Surfaces, Mode Connectivity, and Fast
Ensembling of DNNs"): a curve φ(t), t ∈ [0, 1], from θ_a (t = 0) to θ_b (t = 1) through trainable
control points θ_1..θ_n (``bends = n``).

* :func:`bezier`: the Bezier curve of degree n + 1, φ(t) = Σ_j B_j(t)·θ_j over θ_0 = θ_a, θ_1..θ_n,
  θ_{n+1} = θ_b with the Bernstein polynomials B_j(t) = C(n+1, j)·t^j·(1−t)^(n+1−j); one bend is the
  quadratic Bezier (1−t)²θ_a + 2t(1−t)θ_1 + t²θ_b.
* :func:`polychain`: the polygonal chain through θ_a, θ_1..θ_n, θ_b, node j at t = j/(n+1).

Training follows the paper: the control points start evenly spaced on the segment,
θ_k = θ_a + k/(n+1)·(θ_b − θ_a); each SGD step (momentum, weight decay) samples t ~ U[0, 1], runs the
model at φ(t) in train mode (``torch.func.functional_call``, so gradients reach the control points;
the endpoints stay fixed) on a minibatch, and steps the control points only. BatchNorm layers use
their batch statistics then; the running statistics are not the curve's.

Evaluation reuses the geometry core: every point of either curve is
φ(t) = θ_a + Σ_k w_k(t)·(θ_k − θ_a) over k = 1..n+1, a point with coordinates w_1..w_{n+1}(t) in the
subspace through θ_a spanned by d_k = θ_k − θ_a, so :meth:`Curve.evaluate` runs the same engines and
job driver as :func:`linpath.interpolate` (native models, ``buffers="recompute"``, ``distributed``,
``checkpoint``) and returns a :class:`linpath.Sweep` with t as its coordinate.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from . import runner
from ._checks import I64_END, U64_END, integer, real
from ._guard import exclusive
from ._io import atomic_write
from ._validate import finite_vector, model_endpoint
from .batches import DEFAULT_LOSS, LossFn, Where, batch_loss, find_logits, input_dtype, to_device
from .buffers import Interpolate
from .checkpoints import load_saved
from .data import Split
from .engines import Geometry, buffer_ends, check_indices, precision_check, progress_bar, request
from .params import ModelState, named_parameters
from .runner import Job
from .sweep import Sweep, _likely_cause, _nonfinite_of, _warn_nonfinite

#: The kinds of curve.
KINDS = ("bezier", "polychain")
#: Most control points between the ends: the native subspace holds at most 8 directions (n + 1).
MAX_BENDS = 7
#: Learning-rate schedules: constant, or Garipov et al.'s (constant for the first half, then linearly
#: down to 1% of ``lr`` at 90% of the epochs, 1% after that).
SCHEDULES = ("constant", "garipov")
CURVE_FORMAT = "linpath.Curve"

StateDict = dict[str, torch.Tensor]


def _check_kind_bends(kind: str, bends: Any) -> int:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if isinstance(bends, bool) or not isinstance(bends, int | np.integer):
        raise TypeError(
            f"bends must be an int (the number of control points between the ends), got {bends!r}"
        )
    if not 1 <= int(bends) <= MAX_BENDS:
        raise ValueError(
            f"bends must be 1 to {MAX_BENDS} (a curve through n control points is evaluated in a subspace of "
            f"n + 1 directions, and linpath's subspaces hold at most {MAX_BENDS + 1}), got {bends}"
        )
    return int(bends)


def _check_t(t: Any) -> np.ndarray:
    """``t`` as a float64 array (any shape), finite and within [0, 1]."""
    try:
        ts = np.asarray(t.detach().cpu() if isinstance(t, torch.Tensor) else t, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"t must be real numbers in [0, 1] ({e})") from None
    if not np.isfinite(ts).all() or (ts < 0).any() or (ts > 1).any():
        bad = ts[~(np.isfinite(ts) & (ts >= 0) & (ts <= 1))].ravel()[:4].tolist()
        raise ValueError(f"t must lie in [0, 1], where the curve is defined; got {bad}")
    return ts


def curve_weights(kind: str, bends: int, t: Any) -> np.ndarray:
    """The coefficients of the n + 2 control points θ_a, θ_1..θ_n, θ_b at ``t``: ``[..., n + 2]``
    (``t``'s shape, then the points), in float64; they sum to 1.

    Bezier: the Bernstein polynomials of degree n + 1. Polychain: the two nodes around t get 1 − s and s,
    where s is t's position between them.
    """
    bends = _check_kind_bends(kind, bends)
    ts = _check_t(t)[..., None]
    degree = bends + 1
    j = np.arange(degree + 1)
    if kind == "bezier":
        binom = np.array([math.comb(degree, k) for k in j], dtype=np.float64)
        return binom * ts**j * (1.0 - ts) ** (degree - j)
    left = np.minimum(np.floor(ts * degree), degree - 1)  # the node at or before t (t = 1: the last span)
    s = ts * degree - left
    return np.where(j == left, 1.0 - s, 0.0) + np.where(j == left + 1, s, 0.0)


def combine(weights: list[float], tensors: list[torch.Tensor]) -> torch.Tensor:
    """Σ_j weights[j]·tensors[j] (differentiable: the trainer's φ(t))."""
    out = weights[0] * tensors[0]
    for w, t in zip(weights[1:], tensors[1:], strict=True):
        out = out + w * t
    return out


class Curve:
    """A curve between two solutions: its kind, its control points and how it was trained.

    Attributes:
        kind: ``"bezier"`` or ``"polychain"``.
        control_points: ``[θ_a, θ_1, ..., θ_n, θ_b]``, each a state_dict of the model's parameters (in
            their dtypes) and of the floating-point buffers both endpoints carried; an interior point's
            buffers lie on the segment between the endpoints' (θ_a + k/(n+1)·(θ_b − θ_a)), so along
            the curve they move linearly in t.
        history: ``{"loss": [mean training loss of each epoch]}`` (the minibatch losses at the sampled
            t, averaged over the epoch's examples).
        meta: JSON-serialisable facts: kind, bends, the training settings.
    """

    def __init__(
        self,
        kind: str,
        control_points: Sequence[Mapping[str, torch.Tensor]],
        history: Mapping[str, list[float]] | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        points = [dict(p) for p in control_points]
        _check_kind_bends(kind, len(points) - 2)
        _check_same_keys(points)
        self.kind = kind
        self.control_points: list[StateDict] = [{n: t.detach() for n, t in p.items()} for p in points]
        self.history = {k: list(v) for k, v in (history or {"loss": []}).items()}
        self.meta = {"kind": kind, "bends": len(points) - 2, **dict(meta or {})}

    @property
    def bends(self) -> int:
        """Number of control points between the ends."""
        return len(self.control_points) - 2

    def weights(self, t: Any) -> np.ndarray:
        """The coefficients w_0..w_{n+1} of θ_a, θ_1..θ_n, θ_b at ``t`` ∈ [0, 1]: ``[n + 2]`` for one t,
        ``[len(t), n + 2]`` for a sequence (see :func:`curve_weights`)."""
        return curve_weights(self.kind, self.bends, t)

    def point(self, t: float) -> StateDict:
        """φ(t) = Σ_j w_j(t)·θ_j as a state_dict (parameters and the carried buffers), computed in
        float64 and rounded once to each tensor's dtype."""
        w = self.weights(t)
        if w.ndim != 1:
            raise ValueError(f"point() takes one t, got an array of shape {w.shape[:-1]}")
        first = self.control_points[0]
        points = self.control_points
        return {n: combine(w.tolist(), [p[n].double() for p in points]).to(first[n].dtype) for n in first}

    def geometry(self, model: nn.Module, with_buffers: bool = True) -> Geometry:
        """The subspace θ_a + Σ_k c_k·(θ_k − θ_a), k = 1..n+1, that holds the curve, laid out like ``model``
        (checked: the control points must have its parameters' names and shapes), with the float buffers
        both ends carry unless ``with_buffers`` is False. The curve's point at t has coordinates
        ``weights(t)[1:]``."""
        names, params = named_parameters(model)
        device = params[0].device
        flats = self._flats(names, [tuple(p.shape) for p in params], device)
        buf_names: list[str] = []
        buffers = None
        if with_buffers:
            buf_names, bufs, _, _ = buffer_ends(model, self.control_points[0], self.control_points[-1])
            if bufs:
                bflats = self._flats(buf_names, [tuple(b.shape) for b in bufs], device, "buffers of ")
                buffers = (bufs, bflats[0], [f - bflats[0] for f in bflats[1:]], None)
        directions = [f - flats[0] for f in flats[1:]]
        return Geometry(names, params, flats[0], directions, buffers=buffers, buffer_names=tuple(buf_names))

    def _flats(
        self, names: list[str], shapes: list[tuple[int, ...]], device: torch.device, what: str = ""
    ) -> list[torch.Tensor]:
        return [
            finite_vector(p, names, shapes, f"{what}control point {j} of the curve", device, "the curve")
            for j, p in enumerate(self.control_points)
        ]

    def evaluate(
        self,
        model: nn.Module,
        data: Any,
        *,
        ts: Sequence[float] | np.ndarray | None = None,
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
        order: str = "auto",
        distributed: bool | None = None,
        shard: str = "points",
        checkpoint: str | os.PathLike[str] | None = None,
    ) -> Sweep:
        """Evaluates the objective along the curve, at each t of ``ts``, like :func:`linpath.interpolate`
        along a line.

        Each point φ(t) is written into ``model`` as θ_a + Σ_k w_k(t)·(θ_k − θ_a) in float64 (the native
        subspace of :meth:`geometry`) by the engines :func:`linpath.interpolate` uses; afterwards the model
        is exactly as it was, also on error or Ctrl-C. Every argument but ``ts`` means what it means for
        :func:`linpath.interpolate`.

        Args:
            model: A model with the layout the curve was trained for (e.g. the one it was trained on).
            data: An ``(X, Y)`` pair, a DataLoader or other re-iterable of batches, or a dict of splits.
            ts: The t grid, values in [0, 1]; default 61 points on [0, 1] (as Garipov et al.).
            loss: ``loss(output, target)`` returning the batch mean; default cross-entropy on the logits.
            step: ``step(model, batch)`` returning the batch's loss (not with ``loss``).
            metrics: Any of ``"loss"`` and ``"error"`` (default both); with ``step``, its names.
            batch_size: Batch size for ``(X, Y)`` pairs (default 1024).
            progress: Show a progress bar: True, False, or None (when it takes over 2 s).
            precision: ``"float32"`` or ``"bf16"`` (then re-checked in float32 at four t).
            engine: ``"auto"``, ``"native"`` or ``"module"``.
            buffers: The float buffers at each t (:mod:`linpath.buffers`): ``"interpolate"`` (default)
                takes them along the curve from the control points' (linear in t between the
                endpoints'); ``"recompute"`` re-estimates BatchNorm statistics at each t, as Garipov et
                al. do (use it for models with BatchNorm); ``"current"`` keeps the model's own.
            recompute_batches: For ``"recompute"``: batches per t.
            recompute_split: For ``"recompute"``: the split to estimate from (default ``"train"``).
            order: ``"auto"``, ``"points"`` or ``"batches"``.
            distributed: Run on the ``torch.distributed`` process group (None: when there is one).
            shard: ``"points"`` or ``"data"``.
            checkpoint: The path of a resumable result file.

        Returns:
            A :class:`linpath.Sweep` whose ``alphas`` are the t; ``meta["curve"]`` records the kind, the
            bends and the training settings, ``meta["distance"]``/``meta["end_norm"]`` the endpoints'
            ‖θ_b − θ_a‖ and ‖θ_b‖.

        Raises:
            ValueError: For t outside [0, 1], a model of another layout, data the model cannot evaluate.
            TypeError: For arguments of the wrong type.
        """
        grid = _check_grid(ts)
        names, params = named_parameters(model)
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
        geometry = self.geometry(model, with_buffers=asked.policy.moves_buffers)
        passes = [(self.weights(grid)[:, 1:], precision)]
        index = check_indices(grid) if precision == "bf16" else None
        if index is not None:
            passes.append((passes[0][0][index], "float32"))
        results, job_info = runner.run(
            Job("curve", distributed, shard, checkpoint), asked, model, geometry, passes, progress
        )
        if isinstance(asked.policy, Interpolate):
            asked.policy.warn_invalid()
        meta = {**asked.meta(model, params), "curve": dict(self.meta), "coordinate": "t"}
        meta |= {"buffers_interpolated": geometry.buffers is not None, "buffers": asked.policy.meta()}
        meta["distance"] = float(torch.linalg.vector_norm(geometry.directions[-1]))
        meta["end_norm"] = float(torch.linalg.vector_norm(geometry.origin + geometry.directions[-1]))
        if job_info:
            meta["job"] = job_info
        if index is not None:
            meta["precision_check"] = precision_check(results[1], grid, index, results[0])
        values = {s: {m: np.array(v) for m, v in mv.items()} for s, mv in results[0].items()}
        sweep = Sweep(grid, values, meta)
        sweep.meta["nonfinite"] = found = _nonfinite_of(sweep)
        if found:
            _warn_nonfinite(found, _likely_cause(found, model, None, None, asked.splits))
        return sweep

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes the curve (control points on the CPU, history, meta) to ``path`` with ``torch.save``,
        atomically; :meth:`load` reads it back."""
        payload = {
            "format": CURVE_FORMAT,
            "version": 1,
            "kind": self.kind,
            "control_points": [{n: t.cpu() for n, t in p.items()} for p in self.control_points],
            "history": self.history,
            "meta": self.meta,
        }
        with atomic_write(path) as file:
            torch.save(payload, file)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Curve:
        """Reads a curve written by :meth:`save` (``torch.load`` with ``weights_only=True``).

        Raises:
            ValueError: If the file is not a saved linpath Curve.
        """
        payload = load_saved(path, "linpath Curve")
        if not isinstance(payload, dict) or payload.get("format") != CURVE_FORMAT:
            raise ValueError(f"{os.fspath(path)} is not a saved linpath Curve (see Curve.save)")
        return cls(payload["kind"], payload["control_points"], payload["history"], payload["meta"])

    def __repr__(self) -> str:
        return f"Curve(kind={self.kind!r}, bends={self.bends}, epochs={len(self.history.get('loss', []))})"


def _check_same_keys(points: list[StateDict]) -> None:
    """TypeError/ValueError unless every control point holds tensors of the same names and shapes."""
    first = points[0]
    for j, p in enumerate(points):
        bad = [n for n, t in p.items() if not isinstance(t, torch.Tensor)]
        if bad:
            raise TypeError(f"control point {j}: entries {bad[:3]} are not tensors")
        shapes = {n: tuple(t.shape) for n, t in p.items()}
        if shapes != {n: tuple(t.shape) for n, t in first.items()}:
            raise ValueError(f"control point {j} differs from control point 0 in its names or shapes")


def _check_grid(ts: Any) -> np.ndarray:
    if ts is None:
        return np.linspace(0.0, 1.0, 61)
    grid = _check_t(ts)
    if grid.ndim != 1 or grid.size == 0:
        raise ValueError(f"ts must be a non-empty 1-D sequence of t in [0, 1], got shape {grid.shape}")
    return grid


def bezier(
    model: nn.Module,
    a: Any,
    b: Any,
    data: Any,
    *,
    bends: int = 1,
    epochs: int = 20,
    batch_size: int = 128,
    lr: float = 0.015,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    schedule: str = "constant",
    loss: LossFn | None = None,
    seed: int = 0,
    prefix: str = "auto",
    progress: bool | None = None,
) -> Curve:
    """Trains a Bezier curve from ``a`` (t = 0) to ``b`` (t = 1) with ``bends`` control points, as
    Garipov et al. (2018) do; one bend is the quadratic (1−t)²θ_a + 2t(1−t)θ_1 + t²θ_b.

    The control points start evenly spaced on the segment; each step samples t ~ U[0, 1] (a private
    generator seeded by ``seed``), runs ``model`` in train mode at φ(t) on a minibatch and takes an SGD
    step (momentum, weight decay) on the control points only. ``model`` itself is never trained: it
    comes back exactly as it was (parameters, buffers, modes), also on error or Ctrl-C; BatchNorm
    layers run on batch statistics during training. The same seed gives the same curve; the global
    random state is left as it was (the model's own randomness, e.g. dropout, is seeded from ``seed``
    inside the run). Training runs in this process alone (under ``torch.distributed`` every rank given
    the same seed and data trains the same curve); :meth:`Curve.evaluate` can then share the points.

    Args:
        model: The ``nn.Module`` whose parameters the curve lives in (``model(x)`` gives the outputs).
        a: θ_a (t = 0): a module, state_dict, parameter vector or checkpoint path, as for
            :func:`linpath.interpolate`'s ``start``; modules and state_dicts carry their float buffers.
        b: θ_b (t = 1), in the same forms.
        data: The training data: an ``(X, Y)`` pair (shuffled each epoch by the private generator), a
            re-iterable of ``(x, y)`` batches (read in its own order), or a dict with a ``"train"`` split.
        bends: Control points between the ends, 1 to :data:`MAX_BENDS`.
        epochs: Passes over the data (0: the untrained curve, the segment).
        batch_size: Minibatch size for an ``(X, Y)`` pair.
        lr: Learning rate.
        momentum: SGD momentum.
        weight_decay: L2 weight decay on the control points (PyTorch's SGD ``weight_decay``).
        schedule: ``"constant"`` or ``"garipov"`` (``lr`` for the first half of the epochs, then down
            linearly to 1% at 90%, then 1%).
        loss: ``loss(output, target)`` returning the batch mean; default cross-entropy on the logits.
        seed: Seed of the run (t, the shuffling, and the model's own randomness).
        prefix: How the endpoints' names map to the model's, as for :func:`linpath.interpolate`.
        progress: Show a progress bar: True, False, or None (when it takes over 2 s).

    Returns:
        The trained :class:`Curve` (evaluate it with :meth:`Curve.evaluate`).

    Raises:
        ValueError: For bends out of range, endpoints of another layout or with NaN values, empty data,
            settings out of range, or a loss that becomes NaN or infinite (lower ``lr``).
        TypeError: For arguments of the wrong type.
    """
    settings: dict[str, Any] = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "momentum": momentum}
    settings |= {"weight_decay": weight_decay, "schedule": schedule, "seed": seed}
    return fit("bezier", model, a, b, data, bends, settings, loss, prefix, progress)


def polychain(
    model: nn.Module,
    a: Any,
    b: Any,
    data: Any,
    *,
    bends: int = 1,
    epochs: int = 20,
    batch_size: int = 128,
    lr: float = 0.015,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    schedule: str = "constant",
    loss: LossFn | None = None,
    seed: int = 0,
    prefix: str = "auto",
    progress: bool | None = None,
) -> Curve:
    """Trains a polygonal chain from ``a`` through ``bends`` control points to ``b`` (node j at
    t = j/(bends + 1), linear between nodes), as Garipov et al. (2018) do; the arguments and the
    training are those of :func:`bezier`."""
    settings: dict[str, Any] = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "momentum": momentum}
    settings |= {"weight_decay": weight_decay, "schedule": schedule, "seed": seed}
    return fit("polychain", model, a, b, data, bends, settings, loss, prefix, progress)


def fit(
    kind: str,
    model: nn.Module,
    a: Any,
    b: Any,
    data: Any,
    bends: int,
    settings: Mapping[str, Any],
    loss: LossFn | None = None,
    prefix: str = "auto",
    progress: bool | None = None,
) -> Curve:
    """The trainer behind :func:`bezier` and :func:`polychain` (``settings``: their keyword arguments
    ``epochs``, ``batch_size``, ``lr``, ``momentum``, ``weight_decay``, ``schedule`` and ``seed``)."""
    bends = _check_kind_bends(kind, bends)
    checked = _check_settings(settings)
    if loss is not None and not callable(loss):
        raise TypeError(f"loss must be callable, got {type(loss).__name__}")
    split = _training_split(data, checked["batch_size"])
    _, params = named_parameters(model)
    points = _initial_points(model, a, b, bends, prefix)
    state = ModelState(model)
    try:
        with exclusive(params, "train a curve on the model", "training a curve"):
            trainer = _Trainer(kind, _functional_module(model, loss), points, checked)
            history = trainer.run(split, loss or DEFAULT_LOSS, progress)
    finally:
        state.restore()
    name = getattr(loss, "__name__", type(loss).__name__) if loss is not None else "cross_entropy"
    meta = {"training": {**checked, "loss": name, "examples": split.size}}
    return Curve(
        kind, [{n: t.detach().clone() for n, t in p.items()} for p in points], {"loss": history}, meta
    )


def _check_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"epochs": integer("epochs", settings["epochs"], 0, I64_END)}
    out["batch_size"] = integer("batch_size", settings["batch_size"], 1, I64_END)
    out |= {k: real(k, settings[k]) for k in ("lr", "momentum", "weight_decay")}
    if not (math.isfinite(out["lr"]) and out["lr"] > 0):
        raise ValueError(f"lr must be a positive finite number, got {out['lr']}")
    if not 0.0 <= out["momentum"] < 1.0:
        raise ValueError(f"momentum must lie in [0, 1), got {out['momentum']}")
    if not (math.isfinite(out["weight_decay"]) and out["weight_decay"] >= 0):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {out['weight_decay']}")
    if settings["schedule"] not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {settings['schedule']!r}")
    out["schedule"] = settings["schedule"]
    out["seed"] = integer("seed", settings["seed"], 0, U64_END)
    return out


def _training_split(data: Any, batch_size: int) -> Split:
    """The training data as a :class:`linpath.data.Split` (a dict's ``"train"`` split)."""
    if isinstance(data, Mapping):
        if "train" not in data:
            raise ValueError(
                f"data is a dict without a 'train' split (it has {list(data)}); curves train on it"
            )
        data = data["train"]
    return Split("train", data, batch_size)


def _initial_points(model: nn.Module, a: Any, b: Any, bends: int, prefix: str) -> list[StateDict]:
    """θ_a, θ_1..θ_n, θ_b as state_dicts in the model's dtypes on its device, the interior ones evenly
    spaced on the segment and requiring grad (their parameters; buffers, when both ends carry them,
    are placed on the segment too)."""
    names, params = named_parameters(model)
    device = params[0].device
    a, b = model_endpoint(model, a, "a", prefix), model_endpoint(model, b, "b", prefix)
    shapes = [tuple(p.shape) for p in params]
    ends = [
        finite_vector(e, names, shapes, what, device, "the curve through it")
        for e, what in ((a, "a"), (b, "b"))
    ]
    buf_names, bufs, at_a, at_b = buffer_ends(model, a, b)
    bshapes = [tuple(t.shape) for t in bufs]
    buf_ends = [
        finite_vector(
            dict(zip(buf_names, v, strict=True)), buf_names, bshapes, f"{w}'s buffers", device, "it"
        )
        for v, w in ((at_a, "a"), (at_b, "b"))
        if bufs
    ]
    m = bends + 1
    points = []
    for k in range(m + 1):
        point = _unflatten(_on_segment(ends, k, m), names, params, trainable=0 < k < m)
        if bufs:
            point |= _unflatten(_on_segment(buf_ends, k, m), buf_names, bufs, trainable=False)
        points.append(point)
    return points


def _on_segment(ends: list[torch.Tensor], k: int, m: int) -> torch.Tensor:
    """The k-th of m + 1 evenly spaced points from ends[0] to ends[1] (the ends exactly)."""
    if k in (0, m):
        return ends[0 if k == 0 else 1]
    return ends[0] + (k / m) * (ends[1] - ends[0])


def _unflatten(flat: torch.Tensor, names: list[str], like: list[torch.Tensor], trainable: bool) -> StateDict:
    """A float64 flat vector as a state_dict of new tensors shaped and typed like ``like``."""
    out, offset = {}, 0
    for name, t in zip(names, like, strict=True):
        piece = flat[offset : offset + t.numel()].reshape(t.shape).to(t.dtype).clone()
        out[name] = piece.requires_grad_(trainable)
        offset += t.numel()
    return out


def lr_factor(schedule: str, epoch: int, epochs: int) -> float:
    """The learning rate's factor at ``epoch`` (from 0) of ``epochs`` (see :data:`SCHEDULES`)."""
    if schedule == "constant":
        return 1.0
    x = epoch / epochs
    if x <= 0.5:
        return 1.0
    return 1.0 - (x - 0.5) / 0.4 * 0.99 if x <= 0.9 else 0.01


@contextlib.contextmanager
def _seeded(device: torch.device, seed: int) -> Iterator[None]:
    """The global RNG of the CPU (and of ``device``, a GPU) seeded with ``seed`` for the block, then put
    back as it was (the model's own randomness, e.g. dropout, draws from it)."""
    cuda = (
        [device.index if device.index is not None else torch.cuda.current_device()]
        if device.type == "cuda"
        else []
    )
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        for index in cuda:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield


def _functional_module(model: nn.Module, loss: LossFn | None) -> nn.Module:
    """The module the trainer calls with φ(t): ``model`` itself, or for a linpath native model (whose
    forward runs in Rust, out of autograd's reach) its plain-PyTorch twin (same names and outputs)."""
    from .models import NativeModel

    if not isinstance(model, NativeModel):
        return model
    twin = getattr(model, "to_torch", None)
    if not callable(twin) or (loss is None and not model.objective_is_cross_entropy):
        raise TypeError(
            f"a linpath {type(model).__name__} cannot train a curve: its objective is its own (computed "
            "natively); train the curve on a plain-PyTorch twin of it, or pass loss="
        )
    with torch.random.fork_rng(devices=[]):  # building the twin must not draw from the global RNG
        module = twin()
    if [n for n, _ in module.named_parameters()] != named_parameters(model)[0]:
        raise TypeError(f"the PyTorch twin of this {type(model).__name__} names its parameters differently")
    return module


class _Trainer:
    """Garipov et al.'s training of a curve's interior control points (see :func:`bezier`)."""

    def __init__(
        self, kind: str, model: nn.Module, points: list[StateDict], settings: dict[str, Any]
    ) -> None:
        self.kind, self.model, self.points, self.settings = kind, model, points, settings
        self.names, params = named_parameters(model)
        self.device = params[0].device
        trainable = [points[k][n] for k in range(1, len(points) - 1) for n in self.names]
        hyper = {k: settings[k] for k in ("lr", "momentum", "weight_decay")}
        self.opt = torch.optim.SGD(trainable, **hyper)
        self.generator = torch.Generator().manual_seed(settings["seed"])
        self.scratch = {n: t.detach().clone() for n, t in model.named_buffers()}  # train-mode BN writes here

    def run(self, split: Split, loss_fn: LossFn, progress: bool | None) -> list[float]:
        """Trains the interior control points in place; returns the mean loss of each epoch."""
        epochs, history = self.settings["epochs"], []
        steps = -(-split.size // split.batch_size) if split.size is not None else None
        total = epochs * steps if steps is not None else None
        self.model.train()
        with (
            _seeded(self.device, self.settings["seed"]),
            progress_bar(total, progress, "linpath curve", "step") as bar,
        ):
            for epoch in range(epochs):
                for group in self.opt.param_groups:
                    group["lr"] = self.settings["lr"] * lr_factor(self.settings["schedule"], epoch, epochs)
                loss_sum, count = 0.0, 0
                for i, (x, y) in enumerate(
                    _batches(split, self.generator, self.device, input_dtype(self.model))
                ):
                    loss_sum += self.step(x, y, loss_fn, Where("train", i, split.is_pair)) * len(y)
                    count += len(y)
                    bar.update(1)
                if count == 0:
                    raise ValueError("the training data yielded no example; curves need data to train on")
                history.append(loss_sum / count)
        return history

    def step(self, x: Any, y: torch.Tensor, loss_fn: LossFn, where: Where) -> float:
        """One SGD step at a random t; returns the minibatch loss."""
        t = float(torch.rand((), generator=self.generator, dtype=torch.float64))
        w = curve_weights(self.kind, len(self.points) - 2, t).tolist()
        phi = {n: combine(w, [p[n] for p in self.points]) for n in self.names}
        out = torch.func.functional_call(self.model, {**self.scratch, **phi}, (x,))
        value = _objective(loss_fn, out, y, where)
        if not bool(torch.isfinite(value)):
            raise ValueError(
                f"the training loss is {float(value)} on {where.name} (t = {t:.3f}); lower lr or check the "
                "data"
            )
        self.opt.zero_grad(set_to_none=True)
        value.backward()
        self.opt.step()
        return float(value.detach())


def _batches(
    split: Split, generator: torch.Generator, device: torch.device, dtype: Any
) -> Iterator[tuple[Any, Any]]:
    """``(x, y)`` minibatches on ``device``: an ``(X, Y)`` pair shuffled by ``generator``, other data in
    its own order."""
    if split.pair is not None:
        x, y = split.staged(device, dtype) or to_device(split.pair, device, dtype)
        order = torch.randperm(len(x), generator=generator).to(x.device)
        for i in range(0, len(x), split.batch_size):
            idx = order[i : i + split.batch_size]
            yield x[idx], y[idx]
        return
    assert split.source is not None  # a split is a pair or a re-iterable
    for k, batch in enumerate(split.source):
        if not isinstance(batch, tuple | list) or len(batch) != 2:
            raise TypeError(
                f"training a curve takes (x, y) batches; batch {k} of the data is a {type(batch).__name__}"
            )
        x, y = to_device(tuple(batch), device, dtype)
        if len(y):
            yield x, y


def _objective(loss_fn: LossFn, out: Any, y: torch.Tensor, where: Where) -> torch.Tensor:
    """The batch's mean loss (the default cross-entropy scores the output's logits)."""
    if loss_fn is DEFAULT_LOSS:
        logits = find_logits(out, len(y))
        if logits is None:
            raise ValueError(
                "the default loss needs the model's logits (a tensor, or 'logits' in its output); pass "
                "loss=lambda out, y: ... that takes the output"
            )
        out = logits
    value = batch_loss(loss_fn, out, y, where)
    if not isinstance(value, torch.Tensor) or value.dim() != 0:
        raise ValueError(f"the loss must return a scalar tensor (the batch mean), got {value!r}")
    return value
