"""Linear path experiments: J(θ) along θ(α) = θ0 + α·(θ1 − θ0) on named data splits."""

from __future__ import annotations

import datetime
import json
import os
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import _linpath
from ._io import atomic_write
from .data import Split, as_splits
from .params import ModelState, as_vector, float_buffers, named_parameters

METRICS = ("loss", "error")
SWEEP_FORMAT = "linpath.Sweep"
SWEEP_FORMAT_VERSION = 1

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
DEFAULT_LOSS: LossFn = torch.nn.functional.cross_entropy


class Sweep:
    """The objective along a line: one value per α, split and metric.

    Attributes:
        alphas: The α grid (float64 array).
        values: ``values[split][metric]`` is a float64 array aligned with :attr:`alphas`.
        meta: JSON-serialisable facts about the sweep (model, sizes, splits, time).
    """

    def __init__(
        self,
        alphas: np.ndarray,
        values: Mapping[str, Mapping[str, np.ndarray]],
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        self.alphas = np.asarray(alphas, dtype=np.float64)
        self.values = {
            s: {m: np.asarray(v, dtype=np.float64) for m, v in mv.items()} for s, mv in values.items()
        }
        for split, mv in self.values.items():
            for metric, v in mv.items():
                if v.shape != self.alphas.shape:
                    raise ValueError(
                        f"values[{split!r}][{metric!r}] has shape {v.shape}, alphas {self.alphas.shape}"
                    )
        self.meta = dict(meta or {})

    @property
    def splits(self) -> list[str]:
        """Names of the data splits."""
        return list(self.values)

    def minimum(self, split: str | None = None, metric: str = "loss") -> tuple[float, float]:
        """``(alpha, value)`` where ``values[split][metric]`` is smallest (first split by default)."""
        v = self._series(split, metric)
        i = int(np.nanargmin(v))
        return float(self.alphas[i]), float(v[i])

    def monotonicity_gap(
        self, split: str | None = None, metric: str = "loss", interval: tuple[float, float] = (0.0, 1.0)
    ) -> float:
        """Largest rise of the metric on ``interval``: max over α < α′ of [J(α′) − J(α)]⁺.

        This is Δ of Lucas et al. (2021), computed over every pair of grid points (as a running
        minimum, which is the same thing). 0 means the metric never increases on the interval.
        """
        v = self._series(split, metric)
        inside = (self.alphas >= interval[0]) & (self.alphas <= interval[1])
        order = np.argsort(self.alphas[inside], kind="stable")
        series = v[inside][order]
        if series.size < 2:
            return 0.0
        rises = series[1:] - np.minimum.accumulate(series[:-1])
        return float(max(rises.max(), 0.0))

    def is_monotone(
        self, split: str | None = None, metric: str = "loss", interval: tuple[float, float] = (0.0, 1.0)
    ) -> bool:
        """True when the metric never increases on ``interval`` (see :meth:`monotonicity_gap`)."""
        return self.monotonicity_gap(split, metric, interval) == 0.0

    def _series(self, split: str | None, metric: str) -> np.ndarray:
        split = self.splits[0] if split is None else split
        if split not in self.values:
            raise KeyError(f"no split {split!r}; this sweep has {self.splits}")
        if metric not in self.values[split]:
            raise KeyError(f"split {split!r} has no metric {metric!r}; it has {list(self.values[split])}")
        return self.values[split][metric]

    def plot(self, ax: Any = None, metric: str = "loss", splits: Sequence[str] | None = None) -> Any:
        """Draws the metric against α for each split, like the paper's Figure 1 (left).

        Returns:
            The matplotlib Axes drawn on (a new figure's when ``ax`` is None).
        """
        from .plotting import plot_sweep

        return plot_sweep(self, ax=ax, metric=metric, splits=splits)

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and dicts (JSON-serialisable) of the alphas, values and meta."""
        return {
            "alphas": self.alphas.tolist(),
            "values": {s: {m: v.tolist() for m, v in mv.items()} for s, mv in self.values.items()},
            "meta": self.meta,
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes the sweep to ``path`` (a NumPy ``.npz`` archive), atomically and losslessly."""
        arrays, index = {"alphas": self.alphas}, []
        for s, mv in self.values.items():
            for m, v in mv.items():
                key = f"v{len(index)}"
                arrays[key] = v
                index.append([s, m, key])
        header = {"format": SWEEP_FORMAT, "version": SWEEP_FORMAT_VERSION, "index": index, "meta": self.meta}
        arrays["header"] = np.array(json.dumps(header))
        with atomic_write(path) as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Sweep:
        """Reads a sweep written by :meth:`save`.

        Raises:
            ValueError: If the file is not a saved linpath Sweep, or is damaged.
        """
        try:
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(str(z["header"]))
                if not isinstance(header, dict) or (header.get("format"), header.get("version")) != (
                    SWEEP_FORMAT,
                    SWEEP_FORMAT_VERSION,
                ):
                    raise ValueError("unknown format or version")
                values: dict[str, dict[str, np.ndarray]] = {}
                for split, metric, key in header["index"]:
                    values.setdefault(split, {})[metric] = z[key]
                return cls(z["alphas"], values, header["meta"])
        except FileNotFoundError:
            raise
        except (
            OSError,
            KeyError,
            ValueError,
            TypeError,
            EOFError,
            zipfile.BadZipFile,
            # zipfile's answers to some damaged headers (unknown compression, "encrypted")
            NotImplementedError,
            RuntimeError,
        ) as e:
            raise ValueError(f"{path} is not a readable linpath Sweep file ({e})") from e

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sweep):
            return NotImplemented
        same_arrays = self.splits == other.splits and all(
            list(mv) == list(other.values[s])
            and all(np.array_equal(v, other.values[s][m], equal_nan=True) for m, v in mv.items())
            for s, mv in self.values.items()
        )
        return same_arrays and np.array_equal(self.alphas, other.alphas) and self.meta == other.meta

    def __repr__(self) -> str:
        metrics = sorted({m for mv in self.values.values() for m in mv})
        return (
            f"Sweep({len(self.alphas)} alphas in [{self.alphas.min():g}, {self.alphas.max():g}], "
            f"splits={self.splits}, metrics={metrics})"
        )


def _check_alphas(alphas: Any) -> np.ndarray:
    if alphas is None:
        return np.linspace(0.0, 1.0, 51)
    try:
        a = np.asarray(alphas, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"alphas must be real numbers ({e})") from None
    if a.ndim != 1:
        raise ValueError(f"alphas must be a 1-D sequence of numbers, got shape {a.shape}")
    _linpath.check_alphas(np.ascontiguousarray(a))
    return a


def _check_metrics(metrics: Sequence[str]) -> tuple[str, ...]:
    if isinstance(metrics, str):
        metrics = (metrics,)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise ValueError(f"metrics must be a non-empty subset of {METRICS}, got {tuple(metrics)}")
    return tuple(metrics)


def _is_class_target(out: Any, y: torch.Tensor) -> bool:
    return (
        isinstance(out, torch.Tensor)
        and out.dim() == 2
        and y.dim() == 1
        and len(y) == len(out)
        and not y.is_floating_point()
        and not y.is_complex()
        and y.dtype != torch.bool
    )


def _check_class_targets(out: Any, y: torch.Tensor, split: str) -> None:
    """For the default cross-entropy: targets must be class indices within the model's outputs."""
    if not _is_class_target(out, y):
        return
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= out.shape[1]:
        raise ValueError(
            f"split {split!r} has class targets in [{low}, {high}] but the model has {out.shape[1]} outputs; "
            "targets must be class indices 0..n_classes-1 (or pass loss= for other targets)"
        )


def _evaluate(
    model: nn.Module, split: Split, loss_fn: LossFn, metrics: tuple[str, ...], device: torch.device
) -> dict[str, float]:
    """The mean loss (weighted by batch size) and error rate of ``model`` on one split."""
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    wrong = torch.zeros((), dtype=torch.int64, device=device)
    count, error_ok = 0, "error" in metrics
    for x, y in split.batches(device):
        try:
            out = model(x)
        except RuntimeError as e:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"the model could not evaluate a batch of split {split.name!r} "
                f"(inputs of shape {shape}); does the data fit the model? ({e})"
            ) from e
        n = len(y)
        if loss_fn is DEFAULT_LOSS:
            _check_class_targets(out, y, split.name)
        if "loss" in metrics:
            value = loss_fn(out, y)
            if not isinstance(value, torch.Tensor) or value.numel() != 1:
                raise ValueError("the loss must return a scalar tensor (the batch mean)")
            loss_sum += value.detach().to(torch.float64).reshape(()) * n
        if error_ok and _is_class_target(out, y):
            wrong += (out.argmax(dim=1) != y).sum()
        else:
            error_ok = False
        count += n
    if count == 0:
        raise ValueError(f"split {split.name!r} yielded no examples")
    result = {"loss": loss_sum.item() / count} if "loss" in metrics else {}
    if error_ok:
        result["error"] = wrong.item() / count
    return result


def _endpoint_buffers(obj: Any, names: list[str], shapes: list[tuple[int, ...]]) -> list[torch.Tensor] | None:
    """The float buffers carried by an endpoint (a module or state_dict), or None."""
    if isinstance(obj, nn.Module):
        obj = dict(obj.named_buffers())
    if not isinstance(obj, Mapping) or not names or any(n not in obj for n in names):
        return None
    tensors = [obj[n] for n in names]
    if [tuple(t.shape) for t in tensors] != shapes:
        return None
    return tensors


def _lines(
    model: nn.Module, start: Any, end: Any, device: torch.device
) -> list[tuple[Any, list[torch.Tensor]]]:
    """A native Line for the parameters, and one for the float buffers when both endpoints carry them."""
    names, params = named_parameters(model)
    shapes = [tuple(p.shape) for p in params]
    t0 = as_vector(start, names, shapes, "start").to(device)
    t1 = as_vector(end, names, shapes, "end").to(device)
    lines = [(_linpath.Line(t0, t1), params)]
    buf_names, bufs = float_buffers(model)
    buf_shapes = [tuple(b.shape) for b in bufs]
    b0, b1 = (_endpoint_buffers(e, buf_names, buf_shapes) for e in (start, end))
    if b0 is not None and b1 is not None:
        flat0 = torch.cat([b.detach().reshape(-1).double().to(device) for b in b0])
        flat1 = torch.cat([b.detach().reshape(-1).double().to(device) for b in b1])
        lines.append((_linpath.Line(flat0, flat1), bufs))
    elif bufs:
        warnings.warn(
            "the model has floating-point buffers (e.g. BatchNorm statistics) but start and end do not both "
            "carry them (pass modules or state_dicts to interpolate them); the model's current buffers are "
            "used at every alpha",
            stacklevel=3,
        )
    return lines


def interpolate(
    model: nn.Module,
    start: Any,
    end: Any,
    data: Any,
    *,
    alphas: Sequence[float] | np.ndarray | None = None,
    loss: LossFn | None = None,
    metrics: Sequence[str] = METRICS,
    batch_size: int | None = None,
    progress: bool | None = None,
) -> Sweep:
    """Evaluates the objective along the line θ(α) = θ0 + α·(θ1 − θ0).

    Each point is computed from θ0 and the direction in float64 (no accumulated steps, so no
    drift) and written into ``model``'s own parameters; the model is evaluated in eval mode under
    ``torch.no_grad()``. Floating-point buffers (BatchNorm running statistics) are interpolated
    along with the parameters when both ``start`` and ``end`` carry them (modules or
    state_dicts); otherwise the model's own buffers are used throughout (with a warning).
    Integer buffers are left alone. Afterwards the model is exactly as it was (parameters,
    buffers, train/eval mode, requires_grad), also when the loss raises or on Ctrl-C.

    Args:
        model: The ``nn.Module`` to evaluate.
        start: θ0 (α = 0): an ``nn.Module``, a state_dict, a :class:`ParamVector`, or a 1-D
            tensor or array in the order of ``model.named_parameters()``.
        end: θ1 (α = 1), in any of the same forms.
        data: An ``(X, Y)`` pair of tensors, a DataLoader or other re-iterable of ``(x, y)``
            batches, or a dict of such splits, e.g. ``{"train": ..., "valid": ...}``.
        alphas: The α grid, any finite values (below 0 and above 1 extrapolate). Defaults to
            51 points on [0, 1].
        loss: ``loss(output, target) -> scalar`` returning the batch *mean*; defaults to
            cross-entropy. Batch means are combined weighted by batch size.
        metrics: Any of ``"loss"`` and ``"error"`` (fraction of argmax != target; skipped for a
            split whose targets are not class indices).
        batch_size: Batch size for ``(X, Y)`` pairs (default 1024). DataLoaders keep their own.
        progress: Show a progress bar: True always, False never, None (default) when the sweep
            takes more than two seconds.

    Returns:
        A :class:`Sweep` with ``values[split][metric]`` for every α.

    Raises:
        TypeError: For a model that is not an ``nn.Module``, endpoints or data of the wrong type.
        ValueError: For an empty or non-finite α grid, endpoints whose layout differs from the
            model's, NaN or infinite endpoints, or data the model cannot evaluate.
    """
    names, params = named_parameters(model)
    grid = _check_alphas(alphas)
    metrics = _check_metrics(metrics)
    splits = as_splits(data, batch_size)
    loss_fn = DEFAULT_LOSS if loss is None else loss
    if not callable(loss_fn):
        raise TypeError(f"loss must be callable, got {type(loss_fn).__name__}")
    device = params[0].device
    lines = _lines(model, start, end, device)
    values: dict[str, dict[str, list[float]]] = {name: {} for name in splits}
    state = ModelState(model)
    try:
        model.eval()
        bar = tqdm(
            grid,
            desc="linpath sweep",
            unit="α",
            disable=progress is False,
            delay=0 if progress else 2.0,
            leave=False,
        )
        with bar, torch.no_grad():
            for alpha in bar:
                for line, targets in lines:
                    line.write(targets, float(alpha))
                for name, split in splits.items():
                    for metric, v in _evaluate(model, split, loss_fn, metrics, device).items():
                        values[name].setdefault(metric, []).append(v)
    finally:
        state.restore()
    _drop_partial_metrics(values, len(grid))
    meta = {
        "model": type(model).__name__,
        "n_params": sum(p.numel() for p in params),
        "examples": {name: s.size for name, s in splits.items()},
        "metrics": list(metrics),
        "loss": getattr(loss_fn, "__name__", type(loss_fn).__name__),
        "buffers_interpolated": len(lines) > 1,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "linpath_version": _linpath.__version__,
    }
    return Sweep(grid, {s: {m: np.array(v) for m, v in mv.items()} for s, mv in values.items()}, meta)


def _drop_partial_metrics(values: dict[str, dict[str, list[float]]], n: int) -> None:
    """Removes a metric that was not available at every α (e.g. error on non-class targets)."""
    for mv in values.values():
        for metric in [m for m, v in mv.items() if len(v) != n]:
            del mv[metric]
