"""The engines that evaluate a model at points of a subspace (``interpolate``'s line,
``surface``'s plane), behind one interface (:class:`Engine`).

Every engine takes ``(model, geometry, splits, metrics, passes, progress)``: the checked
:class:`Geometry` θ0 + Σ c_k·d_k of the model's parameters (and of the float buffers both ends
carry), and passes of points (``[P, k]`` coordinate arrays, each pass in a precision); it returns
one :data:`Values` per pass, ``{split: {metric: [value per point]}}``. Which engine runs is decided
by the model: a linpath native model answers :meth:`_linpath_engine` with the native engine when
its data allow it; any other module gets the module engine.

* The **module engine** works on any ``nn.Module``: for each point it writes θ(c) into the model's
  own parameters (native ``Subspace``) and runs the model in eval mode under ``torch.no_grad()``;
  layers reading the raw inputs come from z0 + Σ c_k·dz_k (:mod:`linpath.affine`). A DataLoader
  is read batch-outer: each batch once, evaluated at every point (:mod:`linpath.batch_outer`).
* The **native engine** runs linpath's Rust-backed models in Rust with the GIL released, on their
  own deterministic objective. The MLP computes its first layer 1 + k times per batch instead of
  once per point and never touches its parameters; the others (the MP-DBM's multi-prediction loss
  with fixed masks, the language model's per-word cross-entropy, the conv net) write each point
  into their parameters and put them back.

Both can run in bfloat16 (``precision="bf16"``); :func:`precision_check` then re-evaluates a few
points in float32 and reports the largest deviation.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import datetime
import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import _linpath
from ._guard import exclusive
from ._validate import line_endpoints
from .affine import AffineInputs
from .batches import DEFAULT_LOSS, LossFn, Step, Totals, Where, check_model, input_dtype, measure_batch
from .buffers import BufferPolicy, Interpolate, buffer_policy, check_engine
from .data import Split, as_splits
from .params import ModelState, float_buffers, named_parameters

if TYPE_CHECKING:
    from .models.native import NativeModel

PRECISIONS = ("float32", "bf16")
#: Largest relative deviation of the loss between bf16 and float32 before a warning.
PRECISION_THRESHOLD = 2e-2

Values = dict[str, dict[str, list[float]]]


def evaluate(
    model: nn.Module,
    split: Split,
    loss_fn: LossFn,
    metrics: tuple[str, ...],
    device: torch.device,
    affine: AffineInputs | None = None,
) -> dict[str, float]:
    """The metrics of ``model`` on one split: each batch measured by :func:`linpath.batches.measure_batch`
    (any batch shape; ``loss_fn`` may be a :class:`linpath.batches.Step`), means weighted by each
    batch's count (examples, or label tokens for a language model's own loss).

    Empty batches are skipped (they hold no example to average over). The error rate is NaN when
    any output of the split is NaN or +inf: the argmax of such outputs means nothing. With
    ``affine`` (during a module sweep), input layers of ``(X, Y)`` batches come from its cache.
    ``metrics`` empty (with a step): every metric the step returns.
    """
    tally = BatchTally(split, loss_fn, metrics)
    for i, batch in enumerate(split.batches(device, input_dtype(model))):
        tally.add(model, batch, i, affine)
    return tally.result()


class BatchTally:
    """The sums behind :func:`evaluate`'s metrics on one split at one point, added batch by batch in
    the order the batches come (a batch-outer sweep keeps one per point and gets the same numbers as
    the point-outer loop, see :mod:`linpath.batch_outer`)."""

    def __init__(self, split: Split, loss_fn: LossFn, metrics: tuple[str, ...]) -> None:
        self.split, self.loss_fn, self.metrics = split, loss_fn, metrics
        self.totals = Totals()

    def add(self, model: nn.Module, batch: Any, index: int, affine: AffineInputs | None = None) -> None:
        """Measures ``model`` (at the point being evaluated) on batch ``index`` of the split."""
        where = Where(self.split.name, index, self.split.is_pair)
        self.totals.add(measure_batch(model, batch, self.loss_fn, self.metrics, where, affine))

    def result(self) -> dict[str, float]:
        """The metrics over the batches added (ValueError if none held examples, or if a step did not
        return a metric asked for)."""
        step = isinstance(self.loss_fn, Step)
        self.split.reduce(self.totals)
        result = self.totals.result(self.split.name, step)
        if not self.metrics:
            return result
        missing = [m for m in self.metrics if m not in result and step and m != "error"]
        if missing:
            raise ValueError(
                f"metrics {missing} were asked for, but the step returned {list(result)} on split "
                f"{self.split.name!r}"
            )
        return {m: result[m] for m in self.metrics if m in result}


def evaluate_pair(
    model: nn.Module,
    name: str,
    pair: tuple[torch.Tensor, torch.Tensor],
    metrics: tuple[str, ...] = ("loss", "error"),
    batch_size: int = 2000,
) -> dict[str, float]:
    """Mean cross-entropy and error rate of ``model`` on an ``(X, Y)`` pair, in eval mode and
    without gradients, on the model's device; the model's train/eval mode is restored."""
    was_training = model.training
    device = next(model.parameters()).device
    model.eval()
    try:
        with torch.no_grad():
            return evaluate(model, Split(name, pair, batch_size), DEFAULT_LOSS, metrics, device)
    finally:
        model.train(was_training)


def loss_and_error(model: nn.Module, pair: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, float]:
    """J and the error rate of ``model`` on an ``(X, Y)`` pair (eval mode, on its own device):
    linpath's native models (:class:`linpath.models.NativeModel`) report their own objective (e.g.
    the per-word cross-entropy), other modules the mean cross-entropy (:func:`evaluate_pair`)."""
    own = getattr(model, "_linpath_evaluate", None)
    if callable(own):
        return own(*pair)
    values = evaluate_pair(model, "data", pair)
    return values["loss"], values["error"]


def _carried(obj: Any) -> Mapping[str, Any]:
    """The named tensors an endpoint carries besides parameters: a module's buffers, a state_dict's
    entries; nothing for a vector."""
    if isinstance(obj, nn.Module):
        return dict(obj.named_buffers())
    carried = getattr(obj, "buffers", None)  # a trajectory's checkpoint with its recorded buffers
    if isinstance(carried, Mapping):
        return carried
    return obj if isinstance(obj, Mapping) else {}


def _persistent(model: nn.Module, name: str) -> bool:
    """True when buffer ``name`` belongs in the model's state_dict (non-persistent buffers never do)."""
    owner, _, leaf = name.rpartition(".")
    return leaf not in model.get_submodule(owner)._non_persistent_buffers_set


def buffer_ends(
    model: nn.Module, start: Any, end: Any
) -> tuple[list[str], list[torch.Tensor], list[Any], list[Any]]:
    """The model's float buffers that both endpoints carry (same shape), with their values at each
    end: ``(names, buffers, at_start, at_end)``. A persistent float buffer that an endpoint lacks is
    used as the model holds it, at every α, and a warning names it; non-persistent buffers (never
    in a state_dict) are left alone silently."""
    names, bufs = float_buffers(model)
    ends = (_carried(start), _carried(end))
    both = [
        k
        for k, (n, b) in enumerate(zip(names, bufs, strict=True))
        if all(
            n in e and isinstance(e[n], torch.Tensor) and tuple(e[n].shape) == tuple(b.shape) for e in ends
        )
    ]
    missing = [n for k, n in enumerate(names) if k not in both and _persistent(model, n)]
    if missing:
        warnings.warn(
            f"start and end do not both carry the model's floating-point buffers {missing[:4]}"
            f"{' ...' if len(missing) > 4 else ''} (e.g. BatchNorm statistics; pass modules or state_dicts "
            "to interpolate them); the model's current values of those are used at every alpha",
            stacklevel=4,  # buffer_ends <- line_geometry <- interpolate <- the caller
        )
    kept = [names[k] for k in both]
    return kept, [bufs[k] for k in both], [ends[0][n] for n in kept], [ends[1][n] for n in kept]


def negative_variance_alphas(model: nn.Module, start: Any, end: Any, alphas: list[float]) -> list[float]:
    """The α among ``alphas`` where an interpolated BatchNorm ``running_var`` has a negative entry
    (a line through two valid variances leaves [0, ∞) outside [0, 1])."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the sweep has already said which buffers it left alone
        names, _, b0, b1 = buffer_ends(model, start, end)
    lines = [
        _linpath.Subspace.line(x.detach().double().cpu().reshape(-1), y.detach().double().cpu().reshape(-1))
        for n, x, y in zip(names, b0, b1, strict=True)
        if n.endswith("running_var")
    ]
    return [a for a in alphas if any(bool((line.point([a]) < 0).any()) for line in lines)]


def _drop_partial_metrics(values: dict[str, dict[str, list[float]]], n: int) -> None:
    """Removes a metric that was not available at every α (e.g. error on non-class targets); a
    split left with no metric at all is an error, not an empty result."""
    for name, mv in values.items():
        for metric in [m for m, v in mv.items() if len(v) != n]:
            del mv[metric]
        if not mv:
            raise ValueError(
                f"none of the metrics asked for could be computed on split {name!r}: 'error' needs a score "
                "per class ([n, classes] outputs, at least two classes) and int class targets; ask for "
                "metrics=('loss',) as well"
            )


#: While a job driver (:mod:`linpath.runner`) runs an engine, the bars the engine asks for report to
#: the job's one bar instead of showing their own: ``relay(total, unit)`` makes them.
BAR_RELAY: contextvars.ContextVar[Callable[[int | None, tuple[float, float]], Any] | None] = (
    contextvars.ContextVar("linpath_bar_relay", default=None)
)


#: The predicted seconds of the whole run while ``interpolate(progress=estimate)`` runs it (see
#: :func:`predicted_run`): the bars show the prediction and the time it leaves.
BAR_ESTIMATE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "linpath_bar_estimate", default=None
)


@contextlib.contextmanager
def predicted_run(seconds: float | None) -> Iterator[None]:
    """Within it, the bars :func:`progress_bar` makes show ``seconds`` as the run's predicted time
    (nothing changes for None)."""
    token = BAR_ESTIMATE.set(seconds)
    try:
        yield
    finally:
        BAR_ESTIMATE.reset(token)


class EstimatedBar(tqdm):
    """A tqdm bar that also shows a run's predicted time (a :class:`linpath.Estimate`) and what is
    left of it at the fraction done, beside tqdm's own measured rate and remaining time::

        linpath sweep:  40%|████      | 40/101 [00:16<00:24, 2.5α/s; estimate 41.0 s, 24.6 s left]

    ``span`` is the part (from, to: fractions) of the predicted run that this bar counts.
    """

    FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}; {estimate}]"

    def __init__(self, *args: Any, predicted: float, span: tuple[float, float] = (0.0, 1.0), **kwargs: Any):
        self.predicted, self.span = predicted, span
        super().__init__(*args, bar_format=self.FORMAT, **kwargs)

    @property
    def format_dict(self) -> dict[str, Any]:
        """tqdm's fields and ``estimate``: "estimate 41.0 s, 24.6 s left"."""
        fields = dict(super().format_dict)
        total = fields.get("total") or 0
        within = min(fields["n"] / total, 1.0) if total else 0.0
        done = self.span[0] + (self.span[1] - self.span[0]) * within
        left = self.predicted * (1.0 - done)
        fields["estimate"] = f"estimate {self.predicted:.3g} s, {left:.3g} s left"
        return fields


def progress_bar(
    total: int | None,
    progress: bool | None,
    desc: str = "linpath sweep",
    unit: str = "α",
    span: tuple[float, float] = (0.0, 1.0),
) -> Any:
    """A tqdm bar: shown always (True), never (False), or once the work takes over 2 s (None); inside
    a job driver's run, a bar that reports to the job's bar (:data:`BAR_RELAY`), as the part ``span``
    (from, to: fractions) of the engine's run that this bar counts; inside :func:`predicted_run`, an
    :class:`EstimatedBar` that is always shown."""
    relay = BAR_RELAY.get()
    if relay is not None:
        return relay(total, span)
    predicted = BAR_ESTIMATE.get()
    if predicted is not None:
        return EstimatedBar(total=total, desc=desc, unit=unit, leave=False, predicted=predicted, span=span)
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        disable=progress is False,
        delay=0 if progress else 2.0,
        leave=False,
    )


def _autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    if precision == "bf16":
        # No weight cache: autocast would otherwise keep the bf16 copy of each weight (that requires
        # grad) made at the first α and use it at every later α.
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=False)
    return contextlib.nullcontext()


@dataclass(frozen=True)
class Geometry:
    """A checked subspace θ0 + Σ c_k·d_k of a model's parameters, and of the floating-point buffers
    that both ends carry (BatchNorm statistics), as float64 vectors on the model's device.

    Attributes:
        names: The parameters' names, in the model's order.
        params: The parameters themselves.
        origin: θ0, flat float64.
        directions: d_k, flat float64 (one for a line, two for a plane).
        end: θ1 for a line (its direction is θ1 − θ0, taken in the native core), else None.
        buffers: ``(tensors, origin, directions, end)`` of the buffers, or None.
        buffer_names: The names of those buffers (for messages).
    """

    names: list[str]
    params: list[torch.Tensor]
    origin: torch.Tensor
    directions: list[torch.Tensor]
    end: torch.Tensor | None = None
    buffers: tuple[list[torch.Tensor], torch.Tensor, list[torch.Tensor], torch.Tensor | None] | None = None
    buffer_names: tuple[str, ...] = ()
    #: The native subspaces per device, built once (checked copies in float64: not free on large models).
    _native: dict[str, list[tuple[Any, list[torch.Tensor]]]] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    @property
    def dim(self) -> int:
        """Number of directions."""
        return len(self.directions)

    def subspaces(self, device: torch.device | str | None = None) -> list[tuple[Any, list[torch.Tensor]]]:
        """The native ``Subspace`` of the parameters (and of the buffers), each with its targets; built
        on the first call for ``device`` and shared by later ones (a native Subspace is never changed)."""
        key = str(device)
        if key not in self._native:
            out = [(_native_subspace(self.origin, self.directions, self.end, device), self.params)]
            if self.buffers is not None:
                tensors, origin, directions, end = self.buffers
                out.append((_native_subspace(origin, directions, end, device), tensors))
            self._native[key] = out
        return list(self._native[key])


def _native_subspace(origin: torch.Tensor, directions: list[torch.Tensor], end: Any, device: Any) -> Any:
    move = (lambda t: t) if device is None else (lambda t: t.to(device))
    if end is not None:
        return _linpath.Subspace.line(move(origin), move(end))
    return _linpath.Subspace(move(origin), [move(d) for d in directions])


def line_geometry(model: nn.Module, start: Any, end: Any, with_buffers: bool = True) -> Geometry:
    """The :class:`Geometry` of the line from ``start`` to ``end`` (checked, see linpath._validate),
    with the float buffers both endpoints carry (none when ``with_buffers`` is False)."""
    names, params = named_parameters(model)
    device = params[0].device
    t0, t1 = line_endpoints(names, [tuple(p.shape) for p in params], start, end, device)
    buffers = None
    buf_names, bufs, b0, b1 = buffer_ends(model, start, end) if with_buffers else ([], [], [], [])
    if bufs:
        shapes = [tuple(b.shape) for b in bufs]
        start_bufs, end_bufs = (dict(zip(buf_names, b, strict=True)) for b in (b0, b1))
        flat0, flat1 = line_endpoints(buf_names, shapes, start_bufs, end_bufs, device)
        buffers = (bufs, flat0, [flat1 - flat0], flat1)
    return Geometry(names, params, t0, [t1 - t0], end=t1, buffers=buffers, buffer_names=tuple(buf_names))


#: One pass: the points' coordinates ``[P, k]`` and the precision to evaluate them in.
PassSpec = tuple[np.ndarray, str]


class Engine:
    """The engine interface: evaluate a model at points of a :class:`Geometry`.

    Subclasses implement :meth:`run`; ``name`` is what ``Sweep.meta["engine"]`` records.
    """

    name = ""
    #: Precisions the engine evaluates in.
    precisions: tuple[str, ...] = PRECISIONS
    #: Whether each point's batches are added up by :class:`BatchTally` (then a rank's share of a split
    #: all-reduces the sums, see :mod:`linpath.distributed`); False: the engine reports means per split.
    tallies = True

    def run(
        self,
        model: nn.Module,
        geometry: Geometry,
        splits: Mapping[str, Split],
        metrics: tuple[str, ...],
        passes: list[PassSpec],
        progress: bool | None,
        loss_fn: LossFn = DEFAULT_LOSS,
        order: str = "auto",
        policy: BufferPolicy | None = None,
    ) -> list[Values]:
        """One :data:`Values` per pass (``{split: {metric: [value per point]}}``); ``order`` is the
        checked loop order (see :mod:`linpath.batch_outer`; engines that read no DataLoader ignore it);
        ``policy`` sets the buffers at each point (:mod:`linpath.buffers`; default: interpolated with
        the point)."""
        raise NotImplementedError


def _point_label(coords: np.ndarray) -> str:
    if coords.shape[-1] == 1:
        return f"alpha = {float(coords[0]):g}"
    return "point (" + ", ".join(f"{float(c):g}" for c in coords) + ")"


def check_point_range(geometry: Geometry, points: np.ndarray) -> None:
    """ValueError if some point takes a parameter (or a moved buffer) beyond its dtype's largest value.

    θ(c) is affine in c, so each parameter's extreme values over the points are at the corners of
    their bounding box; they are computed in float64 and compared with ``torch.finfo(dtype).max``.
    """
    lows, highs = points.min(axis=0), points.max(axis=0)
    corners = np.array(np.meshgrid(*zip(lows, highs, strict=True), indexing="ij")).reshape(len(lows), -1).T
    labels = [("parameter", geometry.names), ("buffer", list(geometry.buffer_names))]
    for (subspace, tensors), (kind, names) in zip(geometry.subspaces(), labels, strict=False):
        for corner in corners:
            beyond = _beyond_dtype(subspace.point(corner.tolist()), tensors)  # the native core's point
            if beyond is not None:
                k, peak, dtype = beyond
                name = names[k] if k < len(names) else f"#{k}"
                near = "alphas closer to [0, 1]" if len(corner) == 1 else "a grid closer to the origin"
                raise ValueError(
                    f"{_point_label(corner)} takes {kind} {name!r} to {peak:.3g}, beyond the range of "
                    f"its dtype {dtype} (largest {torch.finfo(dtype).max:.3g}); use {near}"
                )


def _beyond_dtype(point: torch.Tensor, tensors: list[torch.Tensor]) -> tuple[int, float, torch.dtype] | None:
    """The first tensor whose slice of the float64 ``point`` exceeds its dtype's range: (index, the
    largest magnitude, the dtype), or None."""
    offset = 0
    for k, t in enumerate(tensors):
        n = t.numel()
        peak = float(point[offset : offset + n].abs().max()) if n else 0.0
        offset += n
        if not peak <= torch.finfo(t.dtype).max:
            return k, peak, t.dtype
    return None


class ModuleEngine(Engine):
    """Any ``nn.Module``: each point written into the model (see the module docstring)."""

    name = "module"

    def run(
        self,
        model: nn.Module,
        geometry: Geometry,
        splits: Mapping[str, Split],
        metrics: tuple[str, ...],
        passes: list[PassSpec],
        progress: bool | None,
        loss_fn: LossFn = DEFAULT_LOSS,
        order: str = "auto",
        policy: BufferPolicy | None = None,
    ) -> list[Values]:
        from .batch_outer import batch_outer_splits, sweep_batches  # it builds on this module

        results = []
        policy = Interpolate() if policy is None else policy
        for points, precision in passes:
            check_point_range(geometry, points)
            outer = batch_outer_splits(splits, order, len(points), recompute=policy.recomputes)
            inner = {name: split for name, split in splits.items() if name not in outer}
            # Input layers from z0 + Σ c·dz (see linpath.affine); float32 only, when points repeat batches.
            cached = precision == "float32" and len(points) > 2 and bool(inner)
            affine = AffineInputs(model, geometry) if cached else None
            tensors = list(geometry.params) + float_buffers(model)[1]
            with exclusive(tensors, "sweep the model", "sweeping"):
                how = (loss_fn, metrics, precision)
                cut = len(inner) / len(splits)  # the share of the run's progress of the point-outer loop
                values = (
                    _module_points(model, geometry, inner, points, how, affine, (progress, cut), policy)
                    if inner
                    else {}
                )
                if outer:
                    outer_splits = {n: splits[n] for n in outer}
                    values |= sweep_batches(
                        model, geometry, outer_splits, points, how, (progress, cut), policy
                    )
            values = {name: values[name] for name in splits}  # in the splits' order
            _drop_partial_metrics(values, len(points))
            results.append(values)
        return results


def _module_points(
    model: nn.Module,
    geometry: Geometry,
    splits: Mapping[str, Split],
    points: np.ndarray,
    how: tuple[LossFn, tuple[str, ...], str],
    affine: AffineInputs | None,
    progress: tuple[bool | None, float],
    policy: BufferPolicy,
) -> Values:
    """Writes each point into the model, sets its buffers by ``policy`` and evaluates every split
    there (NaN where the policy refuses the point); the model is put back as it was afterwards,
    also on error or Ctrl-C."""
    loss_fn, metrics, precision = how
    device = geometry.params[0].device
    subspaces = geometry.subspaces()
    values: Values = {name: {} for name in splits}
    state = ModelState(model)
    try:
        model.eval()
        with (
            progress_bar(
                len(points), progress[0], unit="pt" if geometry.dim > 1 else "α", span=(0.0, progress[1])
            ) as bar,
            torch.no_grad(),
            affine.installed() if affine is not None else contextlib.nullcontext(),
        ):
            for coords in points.tolist():
                for subspace, targets in subspaces:
                    subspace.write(targets, coords)
                if affine is not None:
                    affine.coords = tuple(coords)
                if not policy.at_point(model, coords):
                    _append_nan(values, metrics)
                    bar.update(1)
                    continue
                for name, split in splits.items():
                    with _autocast(precision, device):
                        measured = evaluate(model, split, loss_fn, metrics, device, affine)
                    for metric, v in measured.items():
                        values[name].setdefault(metric, []).append(v)
                bar.update(1)
    finally:
        state.restore()
    return values


def _append_nan(values: Values, metrics: tuple[str, ...]) -> None:
    """NaN for every metric of every split: a point that was not evaluated."""
    for mv in values.values():
        for metric in metrics or ("loss",):  # a step's own metrics (none asked for): its loss
            mv.setdefault(metric, []).append(math.nan)


class NativeEngine(Engine):
    """linpath's Rust-backed models, in Rust (see the module docstring)."""

    name = "native"
    tallies = False

    def run(
        self,
        model: nn.Module,
        geometry: Geometry,
        splits: Mapping[str, Split],
        metrics: tuple[str, ...],
        passes: list[PassSpec],
        progress: bool | None,
        loss_fn: LossFn = DEFAULT_LOSS,
        order: str = "auto",
        policy: BufferPolicy | None = None,
    ) -> list[Values]:
        check_point_range(geometry, np.concatenate([points for points, _ in passes]))
        native_passes = [(points.tolist(), precision) for points, precision in passes]
        per_split = sum(len(points) for points, _ in passes)
        results: list[Values] = [{} for _ in passes]
        subspace = geometry.subspaces("cpu")[0][0]
        unit = "pt" if geometry.dim > 1 else "α"
        with (
            exclusive(geometry.params, "sweep the model", "sweeping"),
            progress_bar(per_split * len(splits), progress, unit=unit) as bar,
        ):
            # Only a native model's _linpath_engine picks this engine; the type checker cannot know it.
            native_model = cast("NativeModel", model)
            native = native_model._native
            for k, (name, split) in enumerate(splits.items()):
                x, y = native_model._linpath_native_pair(split)

                def advance(done: int, total: int, k: int = k) -> None:
                    bar.n = k * per_split + round(done / total * per_split)
                    bar.refresh()

                swept = native.sweep(subspace, x, y, native_passes, split.batch_size, advance)
                for values, pass_values in zip(results, swept, strict=True):
                    values[name] = {m: v for m, v in pass_values if m in metrics}
        return results


#: The engines by name.
MODULE, NATIVE = ModuleEngine(), NativeEngine()


def choose_engine(
    model: nn.Module, splits: Mapping[str, Split], loss: LossFn | None, engine: str, precision: str
) -> Engine:
    """The engine for ``engine`` ("auto", "native" or "module"): the model's own (its
    ``_linpath_engine(splits, loss)`` method, which linpath's native models have) when it offers
    one, else the module engine."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if engine not in ("auto", "native", "module"):
        raise ValueError(f"engine must be 'auto', 'native' or 'module', got {engine!r}")
    own = getattr(model, "_linpath_engine", None)
    native = own(splits, loss) if callable(own) else None
    if engine == "native" and native is None:
        raise ValueError(
            "engine='native' needs the default loss and a linpath.models.MLP with (X, Y) splits of "
            "2-D float inputs and int64 class targets, or another linpath.models.NativeModel with "
            "(X, Y) splits"
        )
    if engine == "module" or native is None:
        if loss is None:
            check_generic_objective(model)
        return MODULE
    return native


#: The metrics every engine reports, by name (from the native core, the one list of them).
METRICS: tuple[str, ...] = tuple(_linpath.METRICS)


@dataclass(frozen=True)
class Request:
    """What ``interpolate`` and ``surface`` were asked, checked: the splits, metrics, loss and engine
    (``metrics`` empty: every metric ``step`` returns)."""

    splits: Mapping[str, Split]
    metrics: tuple[str, ...]
    loss: LossFn | None
    engine: Engine
    precision: str
    step: Step | None = None
    #: The loop order over points and batches (see :mod:`linpath.batch_outer`).
    order: str = "auto"
    #: How the float buffers are set at each point (see :mod:`linpath.buffers`).
    policy: BufferPolicy = dataclasses.field(default_factory=Interpolate)

    @property
    def loss_fn(self) -> LossFn:
        """What the module engine scores batches with: the loss, or the step (a :class:`Step`)."""
        if self.step is not None:
            return self.step
        return DEFAULT_LOSS if self.loss is None else self.loss

    def meta(self, model: nn.Module, params: list[torch.Tensor]) -> dict[str, Any]:
        """The facts every result records about how it was computed."""
        loss = self.loss
        name = getattr(loss, "__name__", type(loss).__name__) if loss is not None else "cross_entropy"
        return {
            "model": type(model).__name__,
            "n_params": sum(p.numel() for p in params),
            "examples": {name: s.size for name, s in self.splits.items()},
            "metrics": list(self.metrics),
            "loss": f"step:{self.step.__name__}" if self.step is not None else name,
            "engine": self.engine.name,
            "precision": self.precision,
            "order": self.order,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "linpath_version": _linpath.__version__,
        }


def check_metrics(metrics: Sequence[str] | None, step: bool = False) -> tuple[str, ...]:
    """``metrics`` as a tuple of metric names (a single name or a generator is fine): known names
    (:data:`METRICS`), or with a ``step``, any names it returns. None means :data:`METRICS`, or with
    a step, every metric it returns (then ``()`` is returned)."""
    if metrics is None:
        return () if step else METRICS
    metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)  # a generator is read once
    known = [m for m in metrics if isinstance(m, str) and m and m != "count"] if step else METRICS
    unknown = [m for m in metrics if m not in known]
    if unknown or not metrics:
        allowed = (
            "metric names the step returns (not 'count')" if step else f"a non-empty subset of {METRICS}"
        )
        raise ValueError(f"metrics must be {allowed}, got {tuple(metrics)}")
    return tuple(metrics)


def request(
    model: nn.Module,
    data: Any,
    *,
    loss: LossFn | None,
    metrics: Sequence[str] | None,
    batch_size: int | None,
    engine: str,
    precision: str,
    step: Callable[[nn.Module, Any], Any] | None = None,
    order: str = "auto",
    buffers: tuple[str, int | None, str | None] = ("interpolate", None, None),
) -> Request:
    """Checks the arguments ``interpolate`` and ``surface`` share, chooses the engine (the module
    engine for a ``step``) and builds the buffer policy from ``buffers`` = (policy name,
    recompute_batches, recompute_split)."""
    from .batch_outer import check_order  # it builds on this module

    if step is not None and loss is not None:
        raise ValueError(
            "pass either loss= (scores the model's output) or step= (scores a whole batch), not both"
        )
    if step is not None and engine == "native":
        raise ValueError(
            "step= runs your function on the model, which only the module engine does; use engine='auto'"
        )
    stepper = Step(step) if step is not None else None
    checked = check_metrics(metrics, stepper is not None)
    splits = as_splits(data, batch_size)
    if loss is not None and not callable(loss):
        raise TypeError(f"loss must be callable, got {type(loss).__name__}")
    order = check_order(order, splits)
    check_model(model, stepper)
    chosen = MODULE if stepper is not None else choose_engine(model, splits, loss, engine, precision)
    if stepper is not None and precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    asked = Request(splits, checked, loss, chosen, precision, stepper, order)
    policy = buffer_policy(buffers[0], model, splits, buffers[1], buffers[2], (asked.loss_fn, checked))
    check_engine(policy, model, chosen.name)
    return dataclasses.replace(asked, policy=policy)


def check_generic_objective(model: nn.Module) -> None:
    """ValueError for a linpath model whose J is not the cross-entropy of its outputs (the MP-DBM,
    the language model) about to be scored by the module engine's default loss: the values would be
    another quantity than the native sweep's, depending on how the data was passed."""
    if not getattr(model, "objective_is_cross_entropy", True):
        raise ValueError(
            f"a linpath {type(model).__name__} is scored by its own objective, which only the native engine "
            "computes: pass every split as an (X, Y) pair of tensors (not a DataLoader), or pass loss= to "
            "score its outputs another way"
        )


def check_indices(grid: np.ndarray) -> np.ndarray:
    """Where a reduced-precision sweep is checked: the smallest and largest α of the grid and two
    interior ones (a third of the way in from each end, in increasing α), as positions in ``grid``."""
    order = np.argsort(grid, kind="stable")
    return np.unique(order[np.round(np.linspace(0, len(grid) - 1, 4)).astype(int)])


def _deviation(values: np.ndarray, reference: np.ndarray, relative: bool) -> np.ndarray:
    """|values − reference| (relative to |reference| if ``relative``): 0 where they are equal (also
    both NaN, or the same infinity), +inf where only one is finite or NaN (never NaN, which ``max``
    would skip)."""
    with np.errstate(invalid="ignore", over="ignore"):
        dev = np.abs(values - reference)
        if relative:
            dev = dev / np.maximum(np.abs(reference), 1e-30)
    same = (values == reference) | (np.isnan(values) & np.isnan(reference))
    return np.where(same, 0.0, np.where(np.isnan(dev), np.inf, dev))


def precision_check(reference: Values, grid: np.ndarray, index: np.ndarray, values: Values) -> dict[str, Any]:
    """Compares a reduced-precision sweep with its float32 re-evaluation at ``grid[index]``.

    Args:
        reference: The float32 values at ``grid[index]`` (see :func:`check_indices`).
        grid: The α grid of the reduced-precision sweep.
        index: The positions in ``grid`` that were re-evaluated.
        values: The reduced-precision values on the whole grid.

    Returns:
        A JSON-ready dict: the α checked, the largest relative deviation of the loss, the largest
        absolute deviation of the error rate, the threshold, and whether the loss stayed within it.
    """
    rel_loss, abs_error = 0.0, 0.0
    for split, mv in reference.items():
        if "loss" in mv:
            ref = np.asarray(mv["loss"], dtype=np.float64)
            dev = _deviation(np.asarray(values[split]["loss"], dtype=np.float64)[index], ref, relative=True)
            rel_loss = max(rel_loss, float(dev.max()))
        if "error" in mv:
            ref = np.asarray(mv["error"], dtype=np.float64)
            dev = _deviation(np.asarray(values[split]["error"], dtype=np.float64)[index], ref, relative=False)
            abs_error = max(abs_error, float(dev.max()))
    check = {
        "precision": "bf16",
        "alphas": grid[index].tolist(),
        "max_rel_loss_deviation": rel_loss,
        "max_abs_error_deviation": abs_error,
        "threshold": PRECISION_THRESHOLD,
        "ok": rel_loss <= PRECISION_THRESHOLD,
    }
    if not check["ok"]:
        warnings.warn(
            f"the bf16 sweep's loss deviates from float32 by up to {rel_loss:.2%} (threshold "
            f"{PRECISION_THRESHOLD:.0%}) at the α checked; use precision='float32'",
            stacklevel=3,
        )
    return check
