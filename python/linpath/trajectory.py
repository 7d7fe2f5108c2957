"""Training trajectories: record parameter checkpoints, and project them onto a line or a plane."""

from __future__ import annotations

import math
import os
import stat
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import _linpath
from ._checks import I64_END, integer
from ._guard import check_free
from ._io import temp_path
from ._validate import finite_vector, line_endpoints
from .params import ParamVector, check_same_layout, dtype_name, float_buffers, named_parameters

_STORE_DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: The floating-point buffers of a trajectory file ``run.lpt`` are in ``run.lpt`` + this suffix, a
#: trajectory file of its own (same format), so that the parameters' file is unchanged.
BUFFERS_SUFFIX = ".buffers"


def buffers_path(path: str | os.PathLike[str]) -> str:
    """The file that holds the buffers recorded beside the trajectory file ``path``."""
    return os.fspath(path) + BUFFERS_SUFFIX


class Checkpoint(ParamVector):
    """A trajectory's checkpoint: its parameters (a :class:`ParamVector`) and the floating-point
    buffers recorded with them (``buffers``: name -> tensor, e.g. BatchNorm statistics).

    ``linpath.interpolate(model, trajectory[0], trajectory[-1], data)`` interpolates those buffers
    along with the parameters (``buffers="interpolate"``), as it does between two modules.
    """

    __slots__ = ("buffers",)

    def __init__(self, vector: ParamVector, buffers: dict[str, torch.Tensor]) -> None:
        super().__init__(vector.tensor, vector.names, vector.shapes)
        self.buffers = buffers


def _want_buffers(buffers: bool | None, has: bool, model: nn.Module) -> bool:
    """Whether to record buffers: ``buffers``, or (None) whether the model has float buffers."""
    if buffers is None:
        return has
    if not isinstance(buffers, bool):
        raise TypeError(f"buffers must be True, False or None, got {buffers!r}")
    if buffers and not has:
        raise ValueError(f"buffers=True but the model ({type(model).__name__}) has no floating-point buffers")
    return buffers


class Trajectory:
    """A sequence of parameter checkpoints (in memory or in a trajectory file).

    Indexing gives a :class:`ParamVector` (negative indices count from the end); ``steps`` holds
    the step number recorded with each checkpoint. File-backed trajectories are read on demand,
    so a trajectory larger than memory is fine.

    Files of format version 2 carry a CRC32 checksum for every checkpoint: reading a checkpoint,
    projecting the trajectory and reading ``steps`` check them, and a mismatch raises a ValueError
    that names the file and the checkpoint. Version-1 files carry no checksums (see
    :attr:`format_version`).
    """

    def __init__(
        self, store: _linpath.TrajectoryStore, buffer_store: _linpath.TrajectoryStore | None = None
    ) -> None:
        self._store = store
        self._buffer_store = buffer_store

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, allow_partial: bool = False) -> Trajectory:
        """Opens a trajectory file written by :class:`TrajectoryRecorder`.

        Args:
            path: The file.
            allow_partial: Read the complete checkpoints of a file whose last write was cut short
                (by default that is an error). The file itself is never modified.

        Raises:
            ValueError: If the file is not a linpath trajectory, or is truncated or damaged (a
                checkpoint damaged later is reported when it is read).
            OSError: If it cannot be read.
        """
        store = _linpath.TrajectoryStore.open(os.fspath(path), allow_partial, False)
        side = buffers_path(path)
        buffer_store = (
            _linpath.TrajectoryStore.open(side, allow_partial, False) if os.path.lexists(side) else None
        )
        return cls(store, buffer_store)

    def __len__(self) -> int:
        return len(self._store)

    def __getitem__(self, index: int) -> ParamVector:
        """Checkpoint ``index``: a :class:`Checkpoint` (parameters and buffers) where buffers were
        recorded for it, else a :class:`ParamVector`."""
        if not isinstance(index, int | np.integer) or isinstance(index, bool):
            raise TypeError(f"trajectory indices must be integers, not {type(index).__name__}")
        n = len(self)
        i = int(index) + n if index < 0 else int(index)
        if not 0 <= i < n:
            raise IndexError(f"checkpoint {index} out of range for a trajectory of {n}")
        vector = ParamVector(self._store.get(i), self.names, self.shapes)
        side = self._buffer_store
        if side is None or i >= len(side):  # a file cut short may hold fewer buffer records
            return vector
        buffers = ParamVector(side.get(i), side.names, [tuple(s) for s in side.shapes]).to_state_dict()
        return Checkpoint(vector, buffers)

    @property
    def buffer_names(self) -> list[str]:
        """Names of the floating-point buffers recorded with the checkpoints (empty if none were)."""
        return [] if self._buffer_store is None else self._buffer_store.names

    def __iter__(self) -> Iterator[ParamVector]:
        for i in range(len(self)):
            yield self[i]

    @property
    def steps(self) -> np.ndarray:
        """Step number of each checkpoint (int64 array).

        For a version-2 file, the first access checks every checkpoint not checked yet (by reading
        it or by :func:`project`) against its checksum, which reads it whole; later accesses are free.

        Raises:
            ValueError: If a checkpoint of the file is damaged.
        """
        return self._store.steps

    @property
    def format_version(self) -> int | None:
        """The trajectory file's format version, or None in memory.

        Version 2 (what linpath writes) has a CRC32 checksum for the header and for every
        checkpoint. Version-1 files (written by earlier linpath) carry no checksums: they are
        read as they are, and damage to them cannot be detected.
        """
        return self._store.format_version

    @property
    def names(self) -> list[str]:
        """Parameter names, in order."""
        return self._store.names

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        """Parameter shapes, in order."""
        return [tuple(s) for s in self._store.shapes]

    @property
    def numel(self) -> int:
        """Values per checkpoint."""
        return self._store.numel

    @property
    def dtype(self) -> torch.dtype:
        """Stored element type (float32 or float64)."""
        return _STORE_DTYPES[self._store.dtype]

    @property
    def path(self) -> Path | None:
        """The trajectory file, or None for an in-memory trajectory."""
        p = self._store.path
        return None if p is None else Path(p)

    def __repr__(self) -> str:
        where = f"file {str(self.path)!r}" if self.path else "memory"
        return f"Trajectory({len(self)} checkpoints of {self.numel} {self._store.dtype} values, in {where})"


class TrajectoryRecorder:
    """Records a model's parameters during training.

    Example::

        recorder = linpath.TrajectoryRecorder(model, "run.lpt")
        for step, (x, y) in enumerate(loader):
            if step % 100 == 0:
                recorder.record(step)
            ...  # one SGD step
        recorder.record(step)
        trajectory = recorder.trajectory

    Args:
        model: The module whose ``named_parameters()`` are recorded.
        path: A new file to stream checkpoints to (append-only; needs no RAM for a long run), or
            None to keep them in memory. An existing path is an error unless ``overwrite`` or
            ``append`` says what to do; a symbolic link is never followed (one at ``path`` counts
            as existing). The file is written in format version 2, with a checksum for every
            checkpoint.
        dtype: Stored element type, float32 or float64. Defaults to float64 for float64 models and
            float32 otherwise (with ``append``, the file's).
        buffers: Also record the model's floating-point buffers (BatchNorm statistics) with each
            checkpoint; defaults to True when the model has any. They go to a file of their own,
            ``path`` + ``".buffers"`` (the parameters' file keeps its format), and come back with
            each checkpoint (:class:`Checkpoint`); :func:`project` ignores them.
        overwrite: Replace an existing trajectory file at ``path``: a new, empty trajectory takes its
            place in one step (the old file stays whole until then).
        append: Add the checkpoints to the trajectory file at ``path`` (a version-2 file of the
            model's names and shapes, complete); a missing file is created.

    Raises:
        ValueError: For an existing ``path`` without ``overwrite`` or ``append``, both of them, or a
            file to append to of another layout or dtype.
    """

    def __init__(
        self,
        model: nn.Module,
        path: str | os.PathLike[str] | None = None,
        *,
        dtype: torch.dtype | None = None,
        buffers: bool | None = None,
        overwrite: bool = False,
        append: bool = False,
    ) -> None:
        self._model = model
        self._names, params = named_parameters(model)
        self._shapes = [tuple(p.shape) for p in params]
        shapes = [list(s) for s in self._shapes]
        if overwrite and append:
            raise ValueError("pass overwrite=True or append=True, not both")
        self._buffer_names, bufs = float_buffers(model)
        self._buffer_shapes = [tuple(b.shape) for b in bufs]
        buffers = _want_buffers(buffers, bool(bufs), model)
        if append and path is not None and os.path.lexists(path):
            self._store = self._appending(path, dtype)
            self._dtype = self._store.dtype
            self._buffer_store = self._appending_buffers(path, buffers)
            return
        if dtype is None:
            dtype = torch.float64 if all(p.dtype == torch.float64 for p in params) else torch.float32
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"trajectories are stored as torch.float32 or torch.float64, not {dtype}")
        self._dtype = dtype_name(dtype)
        if path is None:
            self._store = _linpath.TrajectoryStore.in_memory(self._names, shapes, self._dtype)
        elif overwrite and os.path.lexists(path):
            self._store = self._replacing(path)
            if os.path.lexists(buffers_path(path)):  # the replaced trajectory's buffers
                os.unlink(buffers_path(path))
        else:
            _refuse_existing(path)
            if buffers and os.path.lexists(buffers_path(path)):
                raise FileExistsError(f"{buffers_path(path)} exists; choose a new path for the trajectory")
            self._store = _linpath.TrajectoryStore.create(os.fspath(path), self._names, shapes, self._dtype)
        self._buffer_store = self._buffers_store(path) if buffers else None

    def _buffers_store(self, path: str | os.PathLike[str] | None) -> _linpath.TrajectoryStore:
        """The store the buffers are recorded in (in memory, or the file beside ``path``)."""
        shapes = [list(s) for s in self._buffer_shapes]
        if path is None:
            return _linpath.TrajectoryStore.in_memory(self._buffer_names, shapes, self._dtype)
        return _linpath.TrajectoryStore.create(buffers_path(path), self._buffer_names, shapes, self._dtype)

    def _appending_buffers(self, path: str | os.PathLike[str], buffers: bool) -> Any:
        """The buffers' file beside the trajectory file ``path`` being appended to, open for appending
        (a new one if the trajectory is still empty), or None; it must hold as many checkpoints."""
        side, count = buffers_path(path), len(self._store)
        if not os.path.lexists(side):
            if buffers and count:
                raise ValueError(
                    f"{os.fspath(path)} was recorded without buffers; pass buffers=False to append to it"
                )
            return self._buffers_store(path) if buffers else None
        if not buffers:
            raise ValueError(
                f"{side} records the buffers of {os.fspath(path)}: append them too (buffers=True)"
            )
        store = _linpath.TrajectoryStore.open(side, False, True)
        layout = [tuple(s) for s in store.shapes]
        check_same_layout(
            store.names, layout, self._buffer_names, self._buffer_shapes, f"the buffers file {side}"
        )
        if len(store) != count:
            raise ValueError(f"{side} holds {len(store)} checkpoints but {os.fspath(path)} holds {count}")
        return store

    def _appending(self, path: str | os.PathLike[str], dtype: torch.dtype | None) -> Any:
        """The existing trajectory file at ``path``, open for appending, checked against the model."""
        store = _linpath.TrajectoryStore.open(os.fspath(path), False, True)
        shapes = [tuple(s) for s in store.shapes]
        check_same_layout(store.names, shapes, self._names, self._shapes, f"the trajectory file {path}")
        if dtype is not None and dtype_name(dtype) != store.dtype:
            raise ValueError(
                f"the trajectory file {path} stores {store.dtype} values, not {dtype_name(dtype)}"
            )
        return store

    def _replacing(self, path: str | os.PathLike[str]) -> Any:
        """A new, empty trajectory file that has replaced ``path`` in one step."""
        mode = os.lstat(path).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
            raise ValueError(
                f"{os.fspath(path)} is not a regular file (a directory, device or pipe); overwrite=True "
                "replaces only a file"
            )
        partial = temp_path(path)
        store = _linpath.TrajectoryStore.create(
            os.fspath(partial), self._names, [list(s) for s in self._shapes], self._dtype
        )
        del store  # closed before the rename; reopened by the name it then has
        try:
            os.replace(partial, path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return _linpath.TrajectoryStore.open(os.fspath(path), False, True)

    def record(self, step: int | None = None) -> int:
        """Appends the model's current parameters as a checkpoint.

        Args:
            step: The step number to store with it; defaults to the number of checkpoints so far.

        Returns:
            The step number stored.
        """
        step = integer("step", len(self._store) if step is None else step, -I64_END, I64_END)
        # Read afresh: load_state_dict(assign=True) or a new nn.Parameter replaces the tensors.
        names, params = named_parameters(self._model)
        check_same_layout(names, [tuple(p.shape) for p in params], self._names, self._shapes, "the model now")
        # A sweep in another thread writes its points into these very tensors: refuse to record those.
        check_free(params, "record the model's parameters")
        with torch.no_grad():
            vec = _linpath.flatten_tensors(params, self._dtype)
            buffers = self._buffer_vector()
        self._store.append(step, vec)
        if buffers is not None and self._buffer_store is not None:
            self._buffer_store.append(step, buffers)
        return step

    def _buffer_vector(self) -> torch.Tensor | None:
        """The model's float buffers now, flat, checked against the recorded layout (None if not recorded)."""
        if self._buffer_store is None:
            return None
        names, bufs = float_buffers(self._model)
        layout = [tuple(b.shape) for b in bufs]
        check_same_layout(names, layout, self._buffer_names, self._buffer_shapes, "the model's buffers now")
        return _linpath.flatten_tensors(bufs, self._dtype)

    @property
    def trajectory(self) -> Trajectory:
        """The checkpoints recorded so far (a live view: later records show up in it)."""
        return Trajectory(self._store, self._buffer_store)

    def __len__(self) -> int:
        return len(self._store)


def _refuse_existing(path: str | os.PathLike[str]) -> None:
    if os.path.lexists(path):
        raise ValueError(
            f"{os.fspath(path)} already exists; choose a new path, pass overwrite=True to replace it or "
            "append=True to add to the trajectory in it, or open it with Trajectory.open"
        )


@dataclass(frozen=True)
class Projection:
    """A trajectory projected onto the line θ0 + α·d (d = θ1 − θ0).

    Attributes:
        coordinate: a_t = ⟨θ_t − θ0, d⟩ / ‖d‖² for each checkpoint (0 at θ0, 1 at θ1).
        residual: r_t = ‖θ_t − θ0 − a_t·d‖, the distance of each checkpoint from the line.
        steps: Step number of each checkpoint.
        displacement: ‖θ_t − θ0‖ for each checkpoint.
        direction_norm: ‖d‖.

    A checkpoint with NaN or infinite values has NaN coordinate, residual and displacement; then
    ``path_length``, ``max_residual`` and ``explained`` are NaN as well (never a plausible number).
    """

    coordinate: np.ndarray
    residual: np.ndarray
    steps: np.ndarray
    displacement: np.ndarray
    direction_norm: float
    _summary: tuple[float, float, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        summary = _linpath.summarize(self.coordinate, self.residual, self.displacement, self.direction_norm)
        object.__setattr__(self, "_summary", summary)

    @property
    def path_length(self) -> float:
        """Distance travelled along the line: Σ|a_{t+1} − a_t|·‖d‖."""
        return self._summary[0]

    @property
    def max_residual(self) -> float:
        """The largest distance from the line: max_t r_t."""
        return self._summary[1]

    @property
    def explained(self) -> float:
        """Fraction of squared displacement along the line: Σ(a_t‖d‖)² / Σ‖θ_t − θ0‖²."""
        return self._summary[2]

    def plot(self, ax: Any = None) -> Any:
        """Draws residual norm against coordinate, like the paper's Figure 5; returns the Axes."""
        from .plotting import plot_projection

        return plot_projection(self, ax=ax)

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and numbers (JSON-serialisable)."""
        return {
            "steps": self.steps.tolist(),
            "coordinate": self.coordinate.tolist(),
            "residual": self.residual.tolist(),
            "displacement": self.displacement.tolist(),
            "direction_norm": self.direction_norm,
            "path_length": self.path_length,
            "max_residual": self.max_residual,
            "explained": self.explained,
        }


def project(trajectory: Trajectory | TrajectoryRecorder, start: Any, end: Any) -> Projection:
    """Projects every checkpoint of a trajectory onto the line from ``start`` to ``end``.

    One fused pass per checkpoint, accumulated in float64 and parallel over chunks; file-backed
    trajectories stream from disk in bounded memory.

    Args:
        trajectory: A :class:`Trajectory` (or a recorder, whose trajectory is used).
        start: θ0: a :class:`ParamVector` (e.g. ``trajectory[0]``), an ``nn.Module``, a state_dict,
            or a 1-D tensor or array in the trajectory's layout.
        end: θ1, in any of the same forms (e.g. ``trajectory[-1]``).

    Checkpoints with NaN or infinite values (a diverged run) get NaN coordinate, residual and
    displacement, which makes ``path_length``, ``max_residual`` and ``explained`` NaN too; a
    RuntimeWarning names them.

    Returns:
        A :class:`Projection`.

    Raises:
        ValueError: If the layouts differ, the endpoints contain NaN or infinite values, start equals
            end, or a checkpoint of a trajectory file does not match its checksum (the file is damaged).
    """
    trajectory = _to_project(trajectory)
    theta0, theta1 = (
        t.numpy() for t in line_endpoints(trajectory.names, trajectory.shapes, start, end, "cpu")
    )
    direction = theta1 - theta0
    coordinate, residual, displacement = _linpath.project_store(trajectory._store, theta0, direction)
    # Every checkpoint was checked while projecting, so reading the steps costs nothing more.
    steps = trajectory.steps
    _warn_non_finite(~np.isfinite(coordinate), steps)
    return Projection(coordinate, residual, steps, displacement, float(np.linalg.norm(direction)))


def _to_project(trajectory: Trajectory | TrajectoryRecorder) -> Trajectory:
    """The trajectory (a recorder's own), checked to be one and to have checkpoints."""
    if isinstance(trajectory, TrajectoryRecorder):
        trajectory = trajectory.trajectory
    if not isinstance(trajectory, Trajectory):
        raise TypeError(f"expected a linpath.Trajectory, got {type(trajectory).__name__}")
    if len(trajectory) == 0:
        where = f" {str(trajectory.path)!r}" if trajectory.path else ""
        raise ValueError(f"the trajectory{where} has no checkpoints to project")
    return trajectory


@dataclass(frozen=True)
class SubspaceProjection:
    """A trajectory projected onto the affine subspace θ0 + D·c spanned by k directions d_1 … d_k.

    With x_t = θ_t − θ0, c_t minimises ‖x_t − D·c‖ (the directions need be neither orthogonal nor
    normalised), and P x_t = D·c_t is the part of x_t in the subspace.

    Attributes:
        coords: ``[checkpoints, k]``: c_t, the coefficients of each checkpoint's nearest point
            θ0 + Σ_j c_t[j]·d_j.
        residuals: ``[checkpoints]``: ‖x_t − D·c_t‖, each checkpoint's distance from the subspace.
        displacements: ``[checkpoints]``: ‖x_t‖.
        steps: Step number of each checkpoint.

    A checkpoint with NaN or infinite values has NaN coords, residual and displacement; then
    ``explained`` and ``max_residual`` are NaN as well.
    """

    coords: np.ndarray
    residuals: np.ndarray
    displacements: np.ndarray
    steps: np.ndarray

    @property
    def explained(self) -> float:
        """Fraction of squared displacement in the subspace: Σ‖P x_t‖² / Σ‖x_t‖² (1 if every x_t is 0)."""
        if not (np.isfinite(self.residuals).all() and np.isfinite(self.displacements).all()):
            return math.nan
        total = float(np.sum(self.displacements**2))
        # ‖P x‖² = ‖x‖² − r² (Pythagoras): absolute error ~1e-16 of ‖x‖², and no Gram matrix needed.
        return float(np.sum(self.displacements**2 - self.residuals**2)) / total if total > 0 else 1.0

    @property
    def max_residual(self) -> float:
        """The largest distance from the subspace: max_t r_t (NaN if any checkpoint is not finite)."""
        return float(np.max(self.residuals))

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and numbers (JSON-serialisable)."""
        return {
            "steps": self.steps.tolist(),
            "coords": self.coords.tolist(),
            "residuals": self.residuals.tolist(),
            "displacements": self.displacements.tolist(),
            "explained": self.explained,
            "max_residual": self.max_residual,
        }


def project_onto(
    trajectory: Trajectory | TrajectoryRecorder, origin: Any, directions: Any
) -> SubspaceProjection:
    """Projects every checkpoint of a trajectory onto the affine subspace ``origin + D·c``.

    For the plane of a 2-D loss surface pass two directions. As :func:`project` does: one fused
    pass per checkpoint accumulated in float64, parallel over chunks, streaming from disk.

    Args:
        trajectory: A :class:`Trajectory` (or a recorder, whose trajectory is used).
        origin: θ0 in any form :func:`project` accepts for ``start`` (a :class:`ParamVector`, an
            ``nn.Module``, a state_dict, or a 1-D tensor or array in the trajectory's layout).
        directions: 1 to 8 linearly independent directions (neither orthogonal nor normalised
            needed): a ``[k, n]`` array or tensor (one direction per row), or a sequence of vectors
            each in any form ``origin`` takes.

    Checkpoints with NaN or infinite values get NaN coords, residual and displacement (and make
    ``explained`` and ``max_residual`` NaN); a RuntimeWarning names them.

    Returns:
        A :class:`SubspaceProjection`.

    Raises:
        ValueError: If a layout differs, the origin or a direction contains NaN or infinite values,
            a direction is zero, the directions are linearly dependent, there are none or more than 8,
            or a checkpoint of a trajectory file does not match its checksum.
        TypeError: For an origin or directions of an unsupported type or dtype.
    """
    trajectory = _to_project(trajectory)
    names, shapes = trajectory.names, trajectory.shapes
    defines = "the subspace through it"
    theta0 = finite_vector(origin, names, shapes, "origin", "cpu", defines).numpy()
    rows = [
        finite_vector(d, names, shapes, f"directions[{j}]", "cpu", defines).numpy()
        for j, d in enumerate(_direction_list(directions))
    ]
    stacked = np.stack(rows) if rows else np.empty((0, trajectory.numel))
    # Each direction rescaled by a power of two (exactly) to entries in [1, 2) at most, and the coords
    # scaled back: very short or long directions (a surface along 1e-200·d) neither underflow nor
    # overflow in their squared norms. A zero direction stays zero (and is refused as such).
    scales = np.ldexp(1.0, np.frexp(np.abs(stacked).max(axis=1, initial=0.0))[1] - 1)
    coords, residuals, displacements = _linpath.project_store_subspace(
        trajectory._store, theta0, stacked / scales[:, None]
    )
    coords = coords / scales
    steps = trajectory.steps
    _warn_non_finite(~np.isfinite(residuals), steps, _SUBSPACE_NAN)
    return SubspaceProjection(coords, residuals, displacements, steps)


def _direction_list(directions: Any) -> list[Any]:
    """The directions one by one: the rows of a 2-D array or tensor, or the items of a sequence."""
    if isinstance(directions, np.ndarray | torch.Tensor):
        if directions.ndim != 2:
            raise ValueError(
                f"directions has shape {tuple(directions.shape)}; pass a [k, n] array (one direction per "
                "row) or a sequence of vectors (for one direction d, [d])"
            )
        return list(directions)
    if isinstance(directions, Sequence) and not isinstance(directions, str | bytes):
        return list(directions)
    raise TypeError(
        f"directions is a {type(directions).__name__}; pass a [k, n] array or a sequence of vectors "
        "(for one direction d, [d])"
    )


def non_finite_summary(bad: np.ndarray, steps: np.ndarray, limit: int = 10) -> str:
    """'N checkpoint(s) (indices [...], steps [...])' for the checkpoints where ``bad`` is true."""
    idx = np.flatnonzero(bad)
    more = ", ..." if len(idx) > limit else ""
    shown = idx[:limit]
    return (
        f"{len(idx)} checkpoint{'s' if len(idx) != 1 else ''} (indices {', '.join(map(str, shown))}{more}; "
        f"steps {', '.join(str(int(s)) for s in steps[shown])}{more})"
    )


_LINE_NAN = (
    "their coordinate, residual and displacement are NaN, and so are path_length, max_residual and explained"
)
_SUBSPACE_NAN = "their coords, residual and displacement are NaN, and so are explained and max_residual"


def _warn_non_finite(bad: np.ndarray, steps: np.ndarray, consequence: str = _LINE_NAN) -> None:
    if bad.any():
        verb = "contains" if bad.sum() == 1 else "contain"
        warnings.warn(
            f"{non_finite_summary(bad, steps)} of {len(bad)} {verb} NaN or infinite values (or values too "
            f"large to project in float64): {consequence}",
            RuntimeWarning,
            stacklevel=3,
        )
