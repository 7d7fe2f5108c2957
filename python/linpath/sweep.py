"""Linear path experiments: J(θ) along θ(α) = θ0 + α·(θ1 − θ0) on named data splits."""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO, Any

import numpy as np
import torch
from numpy.lib import format as npy_format
from torch import nn

from . import _linpath, runner
from ._io import atomic_write, open_regular
from ._validate import model_endpoint
from .data import Split
from .engines import (
    LossFn,
    check_indices,
    line_geometry,
    negative_variance_alphas,
    precision_check,
    predicted_run,
    request,
)
from .estimate import Estimate
from .params import named_parameters
from .runner import Job

SWEEP_FORMAT = "linpath.Sweep"
SWEEP_FORMAT_VERSION = 1


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
        if self.alphas.ndim != 1 or not np.isfinite(self.alphas).all():
            raise ValueError(f"alphas must be a 1-D array of finite numbers, got {self.alphas!r}")
        names = [s for s in values] + [m for mv in values.values() for m in mv]
        if not all(isinstance(name, str) for name in names):
            raise TypeError(f"split and metric names must be strings, got {names!r}")
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
    def precision_check(self) -> dict[str, Any] | None:
        """For a bf16 sweep: the float32 re-evaluation at a few α and the largest deviation found."""
        return self.meta.get("precision_check")

    @property
    def splits(self) -> list[str]:
        """Names of the data splits."""
        return list(self.values)

    def nonfinite(self, split: str | None = None, metric: str = "loss") -> np.ndarray:
        """The α (in grid order) where ``values[split][metric]`` is NaN or infinite.

        Such values are kept as they were measured, never dropped or averaged away; the statistics
        below return NaN (with a RuntimeWarning naming the α) when they would need them.
        """
        return self.alphas[~np.isfinite(self._series(split, metric))]

    def minimum(
        self, split: str | None = None, metric: str = "loss", interval: tuple[float, float] | None = None
    ) -> tuple[float, float]:
        """``(alpha, value)`` where ``values[split][metric]`` is smallest (first split by default),
        over the grid points inside ``interval`` when given.

        Returns ``(nan, nan)``, with a RuntimeWarning, when a value there is NaN or infinite: the
        smallest value is then unknown.
        """
        alphas, v = self._sorted(split, metric, interval, "minimum", at_least=1)
        if not np.isfinite(v).all():
            return math.nan, math.nan
        i = int(np.argmin(v))
        return float(alphas[i]), float(v[i])

    def monotonicity_gap(
        self, split: str | None = None, metric: str = "loss", interval: tuple[float, float] = (0.0, 1.0)
    ) -> float:
        """Largest rise of the metric on ``interval``: max over α < α′ of [J(α′) − J(α)]⁺.

        This is Δ of Lucas et al. (2021), computed over every pair of grid points (as a running
        minimum, which is the same thing). 0 means the metric never increases on the interval.
        NaN (with a RuntimeWarning) when a value on the interval is NaN or infinite.
        """
        _, series = self._sorted(split, metric, interval, "monotonicity gap", at_least=2)
        if not np.isfinite(series).all():
            return math.nan
        rises = series[1:] - np.minimum.accumulate(series[:-1])
        return float(max(rises.max(), 0.0))

    def bump(
        self, split: str | None = None, metric: str = "loss", interval: tuple[float, float] = (0.0, 1.0)
    ) -> tuple[float, float, float]:
        """The largest rise on ``interval`` and where it is: ``(height, start, peak)``, the pair of grid
        points α < α′ with the largest J(α′) − J(α) (its height is :meth:`monotonicity_gap`, Lucas et
        al.'s Δ); of equal rises, the one that peaks first, from its lowest start. ``(0.0, nan, nan)``
        when the metric never rises there; NaN everywhere (with a RuntimeWarning) when a value on the
        interval is NaN or infinite.
        """
        alphas, series = self._sorted(split, metric, interval, "bump", at_least=2)
        if not np.isfinite(series).all():
            return math.nan, math.nan, math.nan
        low = np.minimum.accumulate(series[:-1])
        rises = series[1:] - low
        peak = int(np.argmax(rises))
        if rises[peak] <= 0:
            return 0.0, math.nan, math.nan
        start = int(np.flatnonzero(series[: peak + 1] == low[peak])[0])
        return float(rises[peak]), float(alphas[start]), float(alphas[peak + 1])

    def normalized_distance(self) -> float:
        """‖θ1 − θ0‖ / ‖θ1‖ of the line's endpoints (Lucas et al. 2021), from what :func:`interpolate`
        recorded (``meta["distance"]`` and ``meta["end_norm"]``, over the parameters in float64).

        Raises:
            ValueError: For a sweep that does not record them (not made by ``interpolate``, or saved
                by an older linpath).
        """
        if "distance" not in self.meta or "end_norm" not in self.meta:
            raise ValueError(
                "this sweep does not record the distance between its endpoints (meta['distance'] and "
                "meta['end_norm'] are written by linpath.interpolate; a sweep saved by an older linpath "
                "lacks them)"
            )
        return float(self.meta["distance"]) / float(self.meta["end_norm"])

    def is_monotone(
        self, split: str | None = None, metric: str = "loss", interval: tuple[float, float] = (0.0, 1.0)
    ) -> bool:
        """True when the metric never increases on ``interval`` (see :meth:`monotonicity_gap`).

        False, with a RuntimeWarning, when a value on the interval is NaN or infinite (unknown).
        """
        return self.monotonicity_gap(split, metric, interval) == 0.0

    def local_minima(
        self, split: str | None = None, metric: str = "loss", interval: tuple[float, float] | None = None
    ) -> list[tuple[float, float]]:
        """Interior local minima of the metric along the grid: ``[(alpha, value), ...]``.

        A grid point (taken in increasing α) is a local minimum when its value is strictly below
        both neighbours'; on a plateau of equal values, the plateau's first point counts when the
        values on both sides of the plateau are higher. The grid's two ends never count. With
        ``interval``, only the grid points inside it are considered. A NaN or infinite value is
        never a minimum and hides any minimum beside it (a RuntimeWarning says so).
        """
        alphas, v = self._sorted(split, metric, interval, "local minima")
        minima = []
        i = 1
        while i < len(v) - 1:
            j = i
            while j + 1 < len(v) and v[j + 1] == v[i]:
                j += 1  # the plateau v[i..j]
            if j + 1 < len(v) and v[i - 1] > v[i] < v[j + 1]:
                minima.append((float(alphas[i]), float(v[i])))
            i = j + 1
        return minima

    def barrier(self, split: str | None = None, metric: str = "loss", form: str = "midpoint") -> float:
        """Height of the barrier on the segment α ∈ [0, 1] between the two endpoints.

        ``form="midpoint"`` (Frankle et al. 2020): max over α of J(α) − ½[J(0) + J(1)];
        ``form="linear"`` (Entezari et al. 2021): max over α of J(α) − [(1−α)J(0) + αJ(1)].
        The maxima run over the grid points in [0, 1]; the grid must contain 0 and 1. NaN (with a
        RuntimeWarning) when a value on [0, 1] is NaN or infinite.

        Raises:
            ValueError: If α = 0 or α = 1 is not on the grid, or ``form`` is unknown.
        """
        if form not in ("midpoint", "linear"):
            raise ValueError(f"unknown barrier form {form!r}; use 'midpoint' or 'linear'")
        alphas, v = self._sorted(split, metric, (0.0, 1.0), "barrier")
        if alphas.size == 0 or alphas[0] != 0.0 or alphas[-1] != 1.0:
            raise ValueError("the barrier needs alpha = 0 and alpha = 1 on the grid")
        if not np.isfinite(v).all():
            return math.nan
        baseline = 0.5 * (v[0] + v[-1]) if form == "midpoint" else (1.0 - alphas) * v[0] + alphas * v[-1]
        return float(np.max(v - baseline))

    def _sorted(
        self,
        split: str | None,
        metric: str,
        interval: tuple[float, float] | None,
        what: str | None = None,
        at_least: int = 0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The grid and the metric in increasing α, restricted to ``interval`` when given. With
        ``what`` (the statistic about to be computed), non-finite values there raise a warning,
        and fewer than ``at_least`` grid points there a ValueError (nothing was measured)."""
        v = self._series(split, metric)
        keep = np.ones(self.alphas.shape, dtype=bool)
        if interval is not None:
            low, high = interval
            if not low <= high:
                raise ValueError(f"interval must be (low, high) with low <= high, got {interval!r}")
            keep = (self.alphas >= low) & (self.alphas <= high)
        if keep.sum() < at_least:
            where = "the grid" if interval is None else f"the interval {interval!r}"
            raise ValueError(
                f"the {what} needs at least {at_least} grid point(s) in {where}; it holds {int(keep.sum())}"
            )
        order = np.argsort(self.alphas[keep], kind="stable")
        alphas, v = self.alphas[keep][order], v[keep][order]
        if what is not None and not np.isfinite(v).all():
            where = alpha_list(alphas[~np.isfinite(v)])
            warnings.warn(
                f"the {what} of {metric} on split {split or self.splits[0]!r} is unknown: the values are NaN "
                f"or infinite at alpha = {where}",
                RuntimeWarning,
                stacklevel=3,
            )
        return alphas, v

    def _series(self, split: str | None, metric: str) -> np.ndarray:
        if not self.values:
            raise ValueError("this sweep has no splits")
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
        if self.alphas.ndim != 1:
            raise ValueError(f"alphas must be 1-D to save a sweep, got shape {self.alphas.shape}")
        arrays, index = value_members(self.values)
        header = {
            "format": SWEEP_FORMAT,
            "version": SWEEP_FORMAT_VERSION,
            "splits": self.splits,
            "index": index,
            "meta": self.meta,
        }
        write_archive(path, header, {"alphas": self.alphas, **arrays})

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Sweep:
        """Reads a sweep written by :meth:`save`.

        Every member's size and type are checked before it is read, so a damaged or hostile file
        never makes this allocate more memory than the file's own size.

        Raises:
            ValueError: If the file is not a saved linpath Sweep, or is damaged.
        """
        with read_archive(path, "Sweep") as archive:
            splits, index, meta = _parse_header(archive.text("header"))
            alphas = archive.floats("alphas", None)
            values: dict[str, dict[str, np.ndarray]] = {s: {} for s in splits}
            for split, metric, key in index:
                values.setdefault(split, {})[metric] = archive.floats(key, alphas.shape)
            return cls(alphas, values, meta)

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
        span = f" in [{self.alphas.min():g}, {self.alphas.max():g}]" if self.alphas.size else ""
        return f"Sweep({len(self.alphas)} alphas{span}, splits={self.splits}, metrics={metrics})"


class _Archive:
    """The members of a saved sweep (or ``kind``, e.g. a Surface), each checked (stored, sizes, npy
    header) before it is read, so that nothing larger than the file itself is ever allocated."""

    def __init__(self, z: zipfile.ZipFile, size: int, kind: str = "Sweep") -> None:
        self.z, self.size, self.kind = z, size, kind

    def floats(self, key: str, shape: tuple[int, ...] | None) -> np.ndarray:
        """Member ``key``: float64 values of ``shape`` (a 1-D grid of any length when None)."""
        f, got, dtype, nbytes, fortran = self._open(key)
        with f:
            if dtype.kind != "f" or dtype.itemsize != 8:
                raise ValueError(f"member {key!r} holds {dtype}, not float64")
            ok = got == shape if shape is not None else len(got) == 1 and got[0] >= 0
            if not ok or nbytes != 8 * math.prod(got):
                want = "a 1-D grid" if shape is None else f"shape {shape}"
                raise ValueError(f"member {key!r} claims shape {got} in {nbytes} bytes; expected {want}")
            flat = np.frombuffer(_read_exactly(f, nbytes, key), dtype=dtype)
            return flat.reshape(got, order="F" if fortran else "C").astype(np.float64, order="C")

    def text(self, key: str) -> str:
        """Member ``key``: a NumPy string scalar."""
        f, got, dtype, nbytes, _ = self._open(key)
        with f:
            if dtype.kind != "U" or got != () or nbytes != dtype.itemsize:
                raise ValueError(f"member {key!r} is not a string ({dtype}, shape {got}, {nbytes} bytes)")
            raw = _read_exactly(f, nbytes, key)
        return raw.decode("utf-32-le" if dtype.str.startswith("<") else "utf-32-be").rstrip("\0")

    def _open(self, key: str) -> tuple[IO[bytes], tuple[int, ...], np.dtype, int, bool]:
        """The open member ``key``.npy after its npy header: (file, shape, dtype, bytes of data,
        whether the data is in Fortran order)."""
        info = self.z.getinfo(f"{key}.npy")
        if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size:
            raise ValueError(f"member {key!r} is compressed; a saved {self.kind}'s members are not")
        if info.compress_size > self.size:
            raise ValueError(f"member {key!r} claims {info.compress_size} bytes, the file has {self.size}")
        f = self.z.open(info)
        try:
            version = npy_format.read_magic(f)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f"member {key!r} is in npy format version {version}")
            read_header = (
                npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(f)
            return f, shape, dtype, info.file_size - f.tell(), bool(fortran)
        except BaseException:
            f.close()
            raise


def _read_exactly(f: IO[bytes], n: int, key: str) -> bytes:
    """``n`` bytes, the rest of the member (at whose end zipfile checks the CRC)."""
    data = f.read(n + 1)
    if len(data) != n:
        raise ValueError(f"member {key!r} has {len(data)} bytes of data, expected {n}")
    return data


def _parse_header(
    text: str, fmt: str = SWEEP_FORMAT, version: int = SWEEP_FORMAT_VERSION
) -> tuple[list[str], list[tuple[str, str, str]], dict[str, Any]]:
    """The splits, ``(split, metric, member)`` index and meta of a saved sweep's JSON header."""
    return series_index(load_header(text, fmt, version))


def load_header(text: str, fmt: str, version: int) -> dict[str, Any]:
    """A saved file's JSON header, if it names format ``fmt`` at ``version`` (else ValueError)."""
    header = json.loads(text)
    if not isinstance(header, dict) or (header.get("format"), header.get("version")) != (fmt, version):
        raise ValueError("unknown format or version")
    return header


def series_index(
    header: Mapping[str, Any],
) -> tuple[list[str], list[tuple[str, str, str]], dict[str, Any]]:
    """The splits, ``(split, metric, member)`` index and meta of a saved file's header, checked."""
    splits, index, meta = header.get("splits", []), header.get("index"), header.get("meta")
    if not _strings(splits) or len(set(splits)) != len(splits):
        raise ValueError("the header's splits are not a list of distinct strings")
    if not isinstance(index, list) or not all(_strings(e) and len(e) == 3 for e in index):
        raise ValueError("the header's index is not a list of [split, metric, member] strings")
    if len({(s, m) for s, m, _ in index}) != len(index):
        raise ValueError("the header's index names a split and metric twice")
    if not isinstance(meta, dict):
        raise ValueError("the header's meta is not a dict")
    return splits, [tuple(e) for e in index], meta


def value_members(
    values: Mapping[str, Mapping[str, np.ndarray]],
) -> tuple[dict[str, np.ndarray], list[list[str]]]:
    """The arrays of ``values[split][metric]`` as members ``v0, v1, ...`` and their header index."""
    arrays: dict[str, np.ndarray] = {}
    index: list[list[str]] = []
    for s, mv in values.items():
        for m, v in mv.items():
            key = f"v{len(index)}"
            arrays[key] = v
            index.append([s, m, key])
    return arrays, index


def write_archive(path: str | os.PathLike[str], header: Mapping[str, Any], arrays: Mapping[str, Any]) -> None:
    """Writes ``arrays`` and the JSON ``header`` to ``path`` as an uncompressed ``.npz``, atomically."""
    members = {**arrays, "header": np.array(json.dumps(header))}
    with atomic_write(path) as f:
        np.savez(f, **members)


#: What reading a damaged file can raise (zipfile answers some damaged headers with
#: NotImplementedError, unknown compression, or RuntimeError, "encrypted").
_READ_ERRORS = (
    OSError,
    KeyError,
    ValueError,
    TypeError,
    EOFError,
    MemoryError,
    zipfile.BadZipFile,
    NotImplementedError,
    RuntimeError,
)


@contextlib.contextmanager
def read_archive(path: str | os.PathLike[str], kind: str) -> Iterator[_Archive]:
    """The checked members of the saved linpath ``kind`` file at ``path``, a regular file.

    Any error while the block runs (a damaged member, a header the caller refuses) becomes a
    ValueError naming the file; a missing file stays a FileNotFoundError.
    """
    try:
        with open_regular(path) as file, zipfile.ZipFile(file) as z:
            yield _Archive(z, os.fstat(file.fileno()).st_size, kind)
    except FileNotFoundError:
        raise
    except _READ_ERRORS as e:
        raise ValueError(f"{path} is not a readable linpath {kind} file ({e})") from e


def _strings(items: Any) -> bool:
    return isinstance(items, list) and all(isinstance(x, str) for x in items)


def _check_alphas(alphas: Any) -> np.ndarray:
    if alphas is None:
        return np.linspace(0.0, 1.0, 51)
    if isinstance(alphas, torch.Tensor):
        alphas = alphas.detach().cpu()
    try:
        a = np.asarray(alphas, dtype=np.float64)
    except OverflowError as e:
        raise ValueError(f"alphas must be finite float64 numbers ({e})") from None
    except (TypeError, ValueError) as e:
        raise TypeError(f"alphas must be real numbers ({e})") from None
    if a.ndim != 1:
        raise ValueError(f"alphas must be a 1-D sequence of numbers, got shape {a.shape}")
    _linpath.check_alphas(np.ascontiguousarray(a))
    return a


def _progress_estimate(progress: Any, points: int) -> tuple[bool | None, float | None]:
    """``interpolate``'s ``progress`` as (whether to show the bar, the predicted seconds or None)."""
    if isinstance(progress, Estimate):
        return True, progress.predict(points)
    if progress is None or isinstance(progress, bool):
        return progress, None
    raise TypeError(
        f"progress must be True, False, None or a linpath.Estimate (from linpath.estimate), got {progress!r}"
    )


def interpolate(
    model: nn.Module,
    start: Any,
    end: Any,
    data: Any,
    *,
    alphas: Sequence[float] | np.ndarray | None = None,
    loss: LossFn | None = None,
    step: Callable[[nn.Module, Any], Any] | None = None,
    metrics: Sequence[str] | None = None,
    batch_size: int | None = None,
    progress: bool | Estimate | None = None,
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
) -> Sweep:
    """Evaluates the objective along the line θ(α) = θ0 + α·(θ1 − θ0).

    Each point is computed from θ0 and the direction (no accumulated steps, so no drift). With
    the module engine, θ(α) is computed in float64 and written into ``model``'s own parameters,
    and the model is evaluated in eval mode under ``torch.no_grad()``. Floating-point buffers
    (BatchNorm running statistics) are interpolated along with the parameters when both
    ``start`` and ``end`` carry them (modules or state_dicts); otherwise the model's own buffers
    are used throughout (with a warning). Integer buffers are left alone. Afterwards the model is
    exactly as it was (parameters, buffers, train/eval mode, requires_grad), also when the loss
    raises or on Ctrl-C. A :class:`linpath.models.MLP` with ``(X, Y)`` class-target data and the
    default loss runs on the native engine instead: in Rust, GIL released, first layer computed
    once per batch for all α, parameters untouched. The other linpath models
    (:class:`linpath.models.NativeModel`) with ``(X, Y)`` data and the default loss run natively
    too, on their own objective (J of the MP-DBM, per-word cross-entropy of the language model).

    Args:
        model: The ``nn.Module`` to evaluate.
        start: θ0 (α = 0): an ``nn.Module``, a state_dict, a :class:`ParamVector`, a 1-D
            tensor or array in the order of ``model.named_parameters()``, or the path of a
            checkpoint (``torch.save`` state_dict, Lightning ``.ckpt``, safetensors file, Hugging
            Face model directory; read by :func:`linpath.checkpoints.load`).
        end: θ1 (α = 1), in any of the same forms.
        data: An ``(X, Y)`` pair of tensors (staged on the model's device once per sweep), a
            DataLoader or other re-iterable of batches, or a dict of such splits, e.g.
            ``{"train": ..., "valid": ...}``. Batches are ``(x, y)`` pairs (``model(x)``), dicts
            (Hugging Face style: ``model(**batch)``, ``labels`` included; a model output carrying
            ``.loss`` is used as the batch's loss, weighted by its label tokens that are not -100,
            from the second position on for causal LMs), or, with ``step``, anything (tuples of
            three or more, custom objects). Tensors inside them (nested too) are moved to the
            model's device once per batch; floating inputs are cast to the parameters' dtype
            when that is bfloat16 or float16. See :mod:`linpath.batches`.
        alphas: The α grid, any finite values (below 0 and above 1 extrapolate). Defaults to
            51 points on [0, 1].
        loss: ``loss(output, target) -> scalar`` returning the batch *mean*; defaults to
            cross-entropy on the output's logits (a tensor, a dict or ``ModelOutput`` with
            ``logits``, or a tuple with exactly one tensor of one row per example; any other
            output is a ValueError that says to pass ``loss=`` or ``step=``). A loss you pass
            gets the output as it came out. Batch means are combined weighted by batch size.
        step: ``step(model, batch)`` returning the batch's loss, for batches or objectives the
            default path does not cover, e.g. ``step=lambda m, b: m(**b).loss``: a scalar (the
            batch mean over the batch's examples, or for a dict with integer ``labels`` over its
            label tokens, counted as above), a ``(mean, count)`` pair, or a dict of named scalar
            means with an optional ``"count"`` (every name becomes a metric in
            ``sweep.values``). Runs under the same eval mode and ``torch.no_grad()`` on the module
            engine; not together with ``loss``.
        metrics: Any of ``"loss"`` and ``"error"`` (fraction of argmax != target; skipped for a
            split whose targets are not class indices); by default both. With ``step``, the
            names it returns (by default all of them).
        batch_size: Batch size for ``(X, Y)`` pairs (default 1024). DataLoaders keep their own.
        progress: Show a progress bar: True always, False never, None (default) when the sweep
            takes more than two seconds; an :class:`Estimate` of this sweep (from
            :func:`linpath.estimate`) always, with the predicted time and what is left of it.
        precision: ``"float32"`` (default) or ``"bf16"``: evaluate in bfloat16 (autocast for the
            module engine, bfloat16 layers for the native one), then re-evaluate the ends of the
            grid and two interior α in float32; the result is ``sweep.precision_check``, with a
            warning when the loss deviates by more than 2%.
        engine: ``"auto"`` (native when possible), ``"native"`` or ``"module"``.
        buffers: What the float buffers (BatchNorm running statistics) are at each α (see
            :mod:`linpath.buffers`): ``"interpolate"`` (default) moves them with the parameters when
            both ends carry them, and leaves α where an interpolated running variance is negative
            unevaluated (NaN, with a warning: outside [0, 1] the line leaves the valid variances);
            ``"current"`` keeps the model's own; ``"recompute"`` re-estimates them at each α from
            ``recompute_batches`` batches of ``recompute_split`` in train mode.
        recompute_batches: For ``"recompute"``: batches per α (default: all of an ``(X, Y)`` pair,
            10 of a DataLoader).
        recompute_split: For ``"recompute"``: the split to estimate from (default ``"train"`` if the
            data has one, else the first).
        prefix: How the endpoints' names map to the model's: ``"auto"`` (default) takes their names
            as they are or without the prefixes wrappers add (``module.``, ``_orig_mod.``,
            ``model.``), when exactly one of these readings finds every parameter (two are an
            error that lists both); a string (``""`` too) is the prefix to strip from their keys.
            The ``_orig_mod.`` of a model compiled with ``torch.compile`` is matched either way.
        order: How the module engine loops over points and batches: ``"points"`` reads every split
            again at each α; ``"batches"`` reads each batch of a DataLoader once and evaluates it at
            every α before the next (for data that is expensive to load: same values, the loader
            read once; see :mod:`linpath.batch_outer`); ``"auto"`` (default) does that for every
            split that is not an ``(X, Y)`` pair or a list of batches in memory. With a shuffling
            DataLoader, batch-outer evaluates every α on the same batches.
        distributed: Run on the ``torch.distributed`` process group: None (default) when one is
            initialised with more than one process, True to require one, False never. Every rank
            calls this function with the same arguments and gets the same complete result (pass False
            to sweep on one rank alone: the others would never join, and it would wait); the ranks
            first exchange digests of the grid, the settings, the parameter layout, the endpoints or
            directions and the data, and all raise the same ValueError when they differ.
        shard: ``"points"`` (default): the points are dealt across the ranks, interleaved, each rank
            writing its points into its own model; ``"data"``: every rank evaluates every point on
            its share of each split's examples and the sums (float64 loss sum, error count, example
            count) are all-reduced per point, for models too large to replicate many times.
        checkpoint: The path of a resumable result file: each finished point is appended to it; a
            rerun with the same settings computes only the points it lacks, a rerun with other
            settings is refused with a message naming them (see :mod:`linpath.pointlog`).

    Returns:
        A :class:`Sweep` with ``values[split][metric]`` for every α; ``meta["buffers"]`` records the
        policy (and, for ``"interpolate"``, the points left unevaluated).

    Raises:
        TypeError: For a model that is not an ``nn.Module`` (or has no ``forward`` and no
            ``step`` is given), endpoints or data of the wrong type.
        ValueError: For an empty or non-finite α grid, endpoints whose layout differs from the
            model's, NaN or infinite endpoints, data the model cannot evaluate, an output the
            loss cannot take, a model on the meta device or on several devices, or an engine or
            precision that does not apply.
    """
    names, params = named_parameters(model)
    start, end = (model_endpoint(model, obj, what, prefix) for obj, what in ((start, "start"), (end, "end")))
    grid = _check_alphas(alphas)
    shown, predicted = _progress_estimate(progress, len(grid))
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
    splits = asked.splits
    policy = asked.policy
    geometry = line_geometry(model, start, end, with_buffers=policy.moves_buffers)
    # A bf16 sweep is re-evaluated in float32 at a few α (in the same native pass when it can be).
    passes = [(grid[:, None], precision)]
    index = check_indices(grid) if precision == "bf16" else None
    if index is not None:
        passes.append((grid[index][:, None], "float32"))
    job = Job("line", distributed, shard, checkpoint)
    with predicted_run(predicted):
        results, job_info = runner.run(job, asked, model, geometry, passes, shown)
    values = results[0]
    meta = {**asked.meta(model, params), "buffers_interpolated": geometry.buffers is not None}
    assert geometry.end is not None  # a line's geometry keeps its end point
    meta["distance"] = float(torch.linalg.vector_norm(geometry.directions[0]))
    meta["end_norm"] = float(torch.linalg.vector_norm(geometry.end))
    if job_info:
        meta["job"] = job_info
    meta["buffers"] = policy.meta()
    if index is not None:
        meta["precision_check"] = precision_check(results[1], grid, index, values)
    sweep = Sweep(grid, {s: {m: np.array(v) for m, v in mv.items()} for s, mv in values.items()}, meta)
    sweep.meta["nonfinite"] = found = _nonfinite_of(sweep)
    if found:
        moved = policy.moves_buffers  # only then can interpolated variances be the cause
        cause = _likely_cause(found, model, start if moved else None, end if moved else None, splits)
        _warn_nonfinite(found, cause)
    return sweep


def alpha_list(alphas: Any, most: int = 6) -> str:
    """``"-1, -0.5, 1.5"``: the α values for a message (the first ``most``, then how many more)."""
    shown = ", ".join(f"{a:g}" for a in list(alphas)[:most])
    return shown + (f" and {len(alphas) - most} more" if len(alphas) > most else "")


def _nonfinite_of(sweep: Sweep) -> dict[str, dict[str, list[float]]]:
    """Where the sweep's values are NaN or infinite, ``{split: {metric: [alpha, ...]}}``."""
    found = {
        split: {
            metric: sweep.nonfinite(split, metric).tolist()
            for metric in mv
            if sweep.nonfinite(split, metric).size
        }
        for split, mv in sweep.values.items()
    }
    return {split: mv for split, mv in found.items() if mv}


def _likely_cause(
    found: dict[str, dict[str, list[float]]],
    model: nn.Module,
    start: Any,
    end: Any,
    splits: Mapping[str, Split],
) -> str:
    """Why the values listed in ``found`` (see :func:`_nonfinite_of`) are not finite."""
    bad = sorted({a for mv in found.values() for alphas in mv.values() for a in alphas})
    negative = negative_variance_alphas(model, start, end, bad)
    if negative:
        return (
            f"BatchNorm running variances interpolated from start and end are negative at alpha = "
            f"{alpha_list(negative)} (outside [0, 1] the line leaves the valid variances), so the model was "
            "not evaluated there; pass buffers='recompute' to re-estimate the statistics at each alpha, "
            "buffers='current' to keep the model's own, or keep alpha in [0, 1]"
        )
    dirty = [name for name in found if splits[name].has_nonfinite_inputs()]
    if dirty:
        return f"the inputs of split(s) {dirty} contain NaN or infinite values"
    return "the model's outputs overflow there (alpha far outside [0, 1], or a diverged endpoint)"


def _warn_nonfinite(found: dict[str, dict[str, list[float]]], cause: str) -> None:
    """A RuntimeWarning naming where the values are NaN or infinite, and the likely cause."""
    detail = "; ".join(
        f"split {split!r}, {metric}: alpha = {alpha_list(alphas)}"
        for split, mv in found.items()
        for metric, alphas in mv.items()
    )
    warnings.warn(
        f"the sweep has NaN or infinite values ({detail}). They are kept as measured (sweep.nonfinite(), "
        f"meta['nonfinite']) and marked in plots; statistics over them are NaN. Likely cause: {cause}.",
        RuntimeWarning,
        stacklevel=3,
    )
