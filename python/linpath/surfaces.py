"""The objective on a plane: J(θ) at θ(x, y) = θ0 + x·d1 + y·d2 over a grid of (x, y).

:func:`linpath.surface` evaluates it; :class:`Surface` holds the result, saves and loads it, reads
values off the grid (:meth:`Surface.at`), places a training trajectory on the plane
(:meth:`Surface.project`) and draws it (:meth:`Surface.plot`).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ._validate import _check_independent
from .sweep import load_header, read_archive, series_index, value_members, write_archive

if TYPE_CHECKING:
    from .trajectory import SubspaceProjection

SURFACE_FORMAT = "linpath.Surface"
SURFACE_FORMAT_VERSION = 1


def _axis(values: Any, name: str) -> np.ndarray:
    """``values`` as a finite, strictly increasing, non-empty 1-D float64 grid (else ValueError)."""
    try:
        grid = np.array(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as e:
        raise ValueError(f"{name} must be a 1-D sequence of finite numbers ({e})") from None
    if grid.ndim != 1 or grid.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D grid, got shape {grid.shape}")
    if not np.isfinite(grid).all():
        raise ValueError(
            f"{name} must be finite, got NaN or infinite values at {np.flatnonzero(~np.isfinite(grid))}"
        )
    with np.errstate(over="ignore"):  # a step wider than float64 holds is +inf: still increasing
        steps = np.diff(grid)
    if (steps <= 0).any():
        i = int(np.flatnonzero(steps <= 0)[0])
        raise ValueError(
            f"{name} must be strictly increasing (no duplicates), but {name}[{i}] = {float(grid[i])!r} and "
            f"{name}[{i + 1}] = {float(grid[i + 1])!r}; sort it and drop repeated values"
        )
    return grid


def _flat(vector: Any, name: str) -> np.ndarray:
    """A tensor, ParamVector or array as a new float64 NumPy array."""
    if hasattr(vector, "tensor") and isinstance(vector.tensor, torch.Tensor):  # a ParamVector
        vector = vector.tensor
    if isinstance(vector, torch.Tensor):
        if vector.is_complex():
            raise ValueError(f"{name} must be real numbers, got a complex tensor")
        vector = vector.detach().cpu().to(torch.float64).numpy()
    try:
        if np.iscomplexobj(vector):  # np.array(..., float64) would drop the imaginary parts
            raise ValueError("got complex values")
        return np.array(vector, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as e:
        raise ValueError(f"{name} must be real float64 numbers ({e})") from None


def _plane(origin: Any, directions: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The plane's origin [n] and directions [2, n], checked, or (None, None) when neither is given."""
    if origin is None and directions is None:
        return None, None
    if origin is None or directions is None:
        raise ValueError("give both origin and directions (the plane), or neither")
    o = _flat(origin, "origin")
    if hasattr(directions, "shape"):  # an array or tensor [2, n]
        d = _flat(directions, "directions")
    else:  # a sequence of vectors
        vectors = [_flat(v, "directions") for v in directions]
        if len({v.shape for v in vectors}) != 1:
            raise ValueError(
                f"directions must be vectors of one length, got shapes {[v.shape for v in vectors]}"
            )
        d = np.stack(vectors)
    if o.ndim != 1 or o.size == 0:
        raise ValueError(f"origin must be a flat vector of parameters, got shape {o.shape}")
    if d.shape != (2, o.size):
        raise ValueError(f"directions must have shape (2, {o.size}) like the origin, got {d.shape}")
    if not (np.isfinite(o).all() and np.isfinite(d).all()):
        raise ValueError("origin and directions must be finite; NaN or infinite values define no plane")
    _check_independent([torch.from_numpy(v) for v in d])
    return o, d


class Surface:
    """The objective on a plane: one value per grid point (x, y), split and metric.

    ``values[split][metric]`` is a 2-D array of shape ``(len(ys), len(xs))``: row ``j`` holds
    y = ``ys[j]`` and column ``i`` holds x = ``xs[i]``, the layout of ``np.meshgrid(xs, ys)``, so
    ``plt.contour(xs, ys, values[split][metric])`` draws it directly. The point (x, y) is
    θ = origin + x·directions[0] + y·directions[1].

    NaN and infinite values are kept as they were measured: :meth:`nonfinite` lists them, plots
    mark them, and statistics that would need them are NaN (with a RuntimeWarning).

    Attributes:
        xs: The x grid (float64, strictly increasing).
        ys: The y grid (float64, strictly increasing).
        values: ``values[split][metric]``, float64 arrays of shape ``(len(ys), len(xs))``.
        meta: JSON-serialisable facts (e.g. ``meta["axes"] = ["d1", "d2"]`` names the axes,
            ``meta["points"] = {"a": [x, y], ...}`` marks points of the plane in plots).
        origin: The plane's origin θ0 (flat float64), or None when the plane was not kept.
        directions: ``[2, n]`` float64 directions d1, d2, or None.

    Raises:
        ValueError: For an empty, non-finite, unsorted or repeating grid, values of the wrong
            shape, or an origin and directions that are not a plane (one without the other,
            mismatched sizes, NaN, zero or parallel directions).
        TypeError: For split or metric names that are not strings.
    """

    def __init__(
        self,
        xs: Any,
        ys: Any,
        values: Mapping[str, Mapping[str, Any]],
        meta: Mapping[str, Any] | None = None,
        *,
        origin: Any = None,
        directions: Any = None,
    ) -> None:
        self.xs, self.ys = _axis(xs, "xs"), _axis(ys, "ys")
        names = [s for s in values] + [m for mv in values.values() for m in mv]
        if not all(isinstance(name, str) for name in names):
            raise TypeError(f"split and metric names must be strings, got {names!r}")
        shape = (len(self.ys), len(self.xs))
        self.values = {
            s: {m: _flat(v, f"values[{s!r}][{m!r}]") for m, v in mv.items()} for s, mv in values.items()
        }
        for split, mv in self.values.items():
            for metric, v in mv.items():
                if v.shape != shape:
                    raise ValueError(
                        f"values[{split!r}][{metric!r}] has shape {v.shape}; expected (len(ys), len(xs)) = "
                        f"{shape} (row j is y = ys[j], column i is x = xs[i])"
                    )
        self.meta = dict(meta or {})
        self.origin, self.directions = _plane(origin, directions)

    @property
    def splits(self) -> list[str]:
        """Names of the data splits."""
        return list(self.values)

    @property
    def has_plane(self) -> bool:
        """Whether the plane's origin and directions are kept (needed by :meth:`project`)."""
        return self.origin is not None

    def grid(self, split: str | None = None, metric: str = "loss") -> np.ndarray:
        """``values[split][metric]`` (first split by default), shape ``(len(ys), len(xs))``."""
        if not self.values:
            raise ValueError("this surface has no splits")
        split = self.splits[0] if split is None else split
        if split not in self.values:
            raise KeyError(f"no split {split!r}; this surface has {self.splits}")
        if metric not in self.values[split]:
            raise KeyError(f"split {split!r} has no metric {metric!r}; it has {list(self.values[split])}")
        return self.values[split][metric]

    def nonfinite(self, split: str | None = None, metric: str = "loss") -> list[tuple[float, float]]:
        """The grid points ``(x, y)`` where the metric is NaN or infinite, row by row (y outer)."""
        rows, cols = np.nonzero(~np.isfinite(self.grid(split, metric)))
        return [(float(self.xs[i]), float(self.ys[j])) for j, i in zip(rows, cols, strict=True)]

    def minimum(self, split: str | None = None, metric: str = "loss") -> tuple[float, float, float]:
        """``(x, y, value)`` at the grid point where the metric is smallest (first split by default).

        Returns ``(nan, nan, nan)``, with a RuntimeWarning naming the points, when a value is NaN
        or infinite: the smallest value is then unknown.
        """
        z = self.grid(split, metric)
        bad = self.nonfinite(split, metric)
        if bad:
            warnings.warn(
                f"the minimum of {metric} on split {split or self.splits[0]!r} is unknown: the values are "
                f"NaN or infinite at (x, y) = {_point_list(bad)}",
                RuntimeWarning,
                stacklevel=2,
            )
            return math.nan, math.nan, math.nan
        j, i = np.unravel_index(int(np.argmin(z)), z.shape)
        return float(self.xs[i]), float(self.ys[j]), float(z[j, i])

    def at(self, x: Any, y: Any, split: str | None = None, metric: str = "loss") -> Any:
        """The metric at (x, y), interpolated bilinearly from the four grid points around it.

        ``x`` and ``y`` may be numbers (a float is returned) or arrays of one shape. The result is
        NaN when a grid value it uses is NaN (a grid value whose weight is zero, as at a grid
        point or on a cell's edge, is not used); an infinite one makes it infinite.

        Raises:
            ValueError: If a point lies outside the grid (or is NaN).
        """
        px, py = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
        inside = _inside(self.xs, px) & _inside(self.ys, py)
        if not inside.all():
            k = np.flatnonzero(~inside.ravel())[0]
            raise ValueError(
                f"(x, y) = ({px.ravel()[k]!r}, {py.ravel()[k]!r}) is outside the grid x in "
                f"[{self.xs[0]:g}, {self.xs[-1]:g}], y in [{self.ys[0]:g}, {self.ys[-1]:g}]"
            )
        out = bilinear(self.xs, self.ys, self.grid(split, metric), px, py)
        return float(out) if out.ndim == 0 else out

    def project(
        self,
        trajectory: Any,
        *,
        model: torch.nn.Module | None = None,
        data: Any = None,
        progress: Any = None,
        split: str | None = None,
    ) -> TrajectoryOnSurface:
        """Places each checkpoint of ``trajectory`` on the plane, with J there from the grid.

        Each checkpoint θ_t is projected orthogonally onto the plane: (x_t, y_t) are its
        coordinates in the directions (the closest point is origin + x_t·d1 + y_t·d2), and the
        residual is its distance from the plane. ``interpolated`` is the loss read off the grid at
        (x_t, y_t) (:meth:`at`; NaN outside the grid), which is J at the *projected* point, not at
        θ_t: it can be far from the truth when the residuals are large. With ``model`` and
        ``data``, ``true`` holds J at the checkpoints themselves, to compare.

        Args:
            trajectory: A :class:`linpath.Trajectory` or :class:`linpath.TrajectoryRecorder`.
            model: A module with the trajectory's layout, to evaluate J at each checkpoint.
            data: The ``(X, Y)`` pair of the split the surface was computed on (or the dict of
                splits it was computed on: then the ``split``'s).
            progress: An optional callable ``progress(done, total)`` for that evaluation.
            split: The split whose loss is read off the grid (the first by default).

        Returns:
            A :class:`TrajectoryOnSurface`.

        Raises:
            ValueError: If the surface has no plane (origin and directions), only one of ``model``
                and ``data`` is given, or the surface's loss is not the one the model is evaluated on.
        """
        from .trajectory import TrajectoryRecorder, project_onto

        if isinstance(trajectory, TrajectoryRecorder):
            trajectory = trajectory.trajectory
        if not self.has_plane:
            raise ValueError(
                "this surface has no plane (origin and directions) to project onto: keep them, i.e. "
                "Surface(..., origin=, directions=), save(path, plane=True)"
            )
        if (model is None) != (data is None):
            raise ValueError("give both model and data to evaluate J at the checkpoints, or neither")
        if progress is not None and not callable(progress):
            raise TypeError(f"progress must be a callable progress(done, total) or None, got {progress!r}")
        split = self.splits[0] if split is None and self.values else split
        if split in self.values and "loss" not in self.values[split]:
            raise ValueError(
                f"this surface has no loss on split {split!r} (only {list(self.values[split])}): the "
                "trajectory is drawn on the loss; compute the surface with metrics including 'loss'"
            )
        z = self.grid(split, "loss")
        if isinstance(data, Mapping):  # the splits the surface was computed on: this one's data
            if split not in data:
                raise ValueError(f"data (a dict of splits) has no split {split!r}; it has {list(data)}")
            data = data[split]
        self._check_layout(trajectory)
        projection = project_onto(trajectory, self.origin, self.directions)
        coords = projection.coords
        true = None if model is None else self._true_loss(model, trajectory, data, progress)
        return TrajectoryOnSurface(
            projection=projection,
            interpolated=bilinear(self.xs, self.ys, z, coords[:, 0], coords[:, 1], outside=math.nan),
            true=true,
            split=str(split),
        )

    def _check_layout(self, trajectory: Any) -> None:
        """ValueError if the surface knows its parameters' layout (``meta["layout"]``, which
        :func:`linpath.surface` records) and the trajectory's differs: the flat plane alone would
        take a trajectory of the same size in another order (e.g. layers registered differently)."""
        from .params import check_same_layout

        layout = self.meta.get("layout")
        if layout is None or not hasattr(trajectory, "names"):
            return  # not a Trajectory: project_onto says so
        try:
            names, shapes = [str(n) for n, _ in layout], [tuple(int(k) for k in s) for _, s in layout]
        except (TypeError, ValueError):
            raise ValueError("the surface's meta['layout'] is not a list of [name, shape] pairs") from None
        what = "the trajectory's layout differs from the surface's"
        check_same_layout(trajectory.names, trajectory.shapes, names, shapes, what)

    def _true_loss(self, model: torch.nn.Module, trajectory: Any, data: Any, progress: Any) -> np.ndarray:
        """J at each checkpoint (``evaluate_checkpoints``), if that is the loss of this surface."""
        from .views import evaluate_checkpoints

        loss = self.meta.get("loss", "cross_entropy")
        if loss != "cross_entropy":
            raise ValueError(
                f"this surface was computed with the loss {loss!r}; J at the checkpoints is evaluated on "
                "the model's default objective (cross-entropy or a native model's own): not comparable"
            )
        return evaluate_checkpoints(model, trajectory, data, progress)["loss"]

    def plot(
        self,
        kind: str = "contour",
        *,
        split: str | None = None,
        metric: str = "loss",
        trajectory: Any = None,
        ax: Any = None,
        levels: Any = 20,
        log: bool = False,
        path: str | os.PathLike[str] | None = None,
    ) -> Any:
        """Draws the surface; see :func:`linpath.plotting.plot_surface`. Returns the Axes.

        With ``path``, the figure is also written there as a PNG (atomically) and closed: one call
        draws the surface with the trajectory on it and saves it.
        """
        from .plotting import plot_surface, save_figure

        ax = plot_surface(
            self, kind, split=split, metric=metric, trajectory=trajectory, ax=ax, levels=levels, log=log
        )
        if path is not None:
            save_figure(ax.figure, path)
        return ax

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and dicts (JSON-serialisable) of the grids, values and meta; the plane's long
        vectors are left out (``"plane"`` says whether the surface keeps them)."""
        return {
            "xs": self.xs.tolist(),
            "ys": self.ys.tolist(),
            "values": {s: {m: v.tolist() for m, v in mv.items()} for s, mv in self.values.items()},
            "meta": self.meta,
            "plane": self.has_plane,
        }

    def save(self, path: str | os.PathLike[str], *, plane: bool = True) -> None:
        """Writes the surface to ``path`` (a NumPy ``.npz`` archive), atomically and losslessly.

        Args:
            path: The file.
            plane: Keep the plane's origin and directions (when the surface has them), which
                :meth:`project` needs; they take 3 × 8 bytes per parameter.
        """
        arrays, index = value_members(self.values)
        if plane and self.origin is not None and self.directions is not None:
            arrays.update(origin=self.origin, directions=self.directions)
        header = {
            "format": SURFACE_FORMAT,
            "version": SURFACE_FORMAT_VERSION,
            "splits": self.splits,
            "index": index,
            "meta": self.meta,
            "plane": "origin" in arrays,
        }
        write_archive(path, header, {"xs": self.xs, "ys": self.ys, **arrays})

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Surface:
        """Reads a surface written by :meth:`save`.

        Every member's size and type are checked before it is read, so a damaged or hostile file
        never makes this allocate more memory than the file's own size.

        Raises:
            ValueError: If the file is not a saved linpath Surface, or is damaged.
        """
        with read_archive(path, "Surface") as archive:
            header = load_header(archive.text("header"), SURFACE_FORMAT, SURFACE_FORMAT_VERSION)
            splits, index, meta = series_index(header)
            if not isinstance(header.get("plane"), bool):
                raise ValueError("the header does not say whether the plane is kept")
            xs, ys = archive.floats("xs", None), archive.floats("ys", None)
            values: dict[str, dict[str, np.ndarray]] = {s: {} for s in splits}
            for split, metric, key in index:
                values.setdefault(split, {})[metric] = archive.floats(key, (len(ys), len(xs)))
            origin = directions = None
            if header["plane"]:
                origin = archive.floats("origin", None)
                directions = archive.floats("directions", (2, len(origin)))
            return cls(xs, ys, values, meta, origin=origin, directions=directions)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Surface):
            return NotImplemented
        same_values = self.splits == other.splits and all(
            list(mv) == list(other.values[s])
            and all(np.array_equal(v, other.values[s][m], equal_nan=True) for m, v in mv.items())
            for s, mv in self.values.items()
        )
        same_plane = _same(self.origin, other.origin) and _same(self.directions, other.directions)
        same_grid = np.array_equal(self.xs, other.xs) and np.array_equal(self.ys, other.ys)
        return same_values and same_plane and same_grid and self.meta == other.meta

    def __repr__(self) -> str:
        metrics = sorted({m for mv in self.values.values() for m in mv})
        plane = f"plane of {self.origin.size} parameters" if self.origin is not None else "no plane"
        return (
            f"Surface({len(self.xs)}x{len(self.ys)} grid, x in [{self.xs[0]:g}, {self.xs[-1]:g}], "
            f"y in [{self.ys[0]:g}, {self.ys[-1]:g}], splits={self.splits}, metrics={metrics}, {plane})"
        )


@dataclass(frozen=True)
class TrajectoryOnSurface:
    """A training trajectory placed on a :class:`Surface`'s plane (see :meth:`Surface.project`).

    Attributes:
        projection: The trajectory projected onto the plane (:func:`linpath.trajectory.project_onto`):
            its ``coords`` are each checkpoint's (x, y), its ``residuals`` the distances off the plane.
        interpolated: J read off the grid at (x, y) (NaN outside the grid): J at the projected point.
        true: J at the checkpoint itself, when a model and data were given, else None.
        split: The split whose loss ``interpolated`` (and ``true``) is.
    """

    projection: SubspaceProjection
    interpolated: np.ndarray
    true: np.ndarray | None
    split: str

    @property
    def coords(self) -> np.ndarray:
        """``[checkpoints, 2]`` coordinates (x, y) of each checkpoint's projection on the plane."""
        return self.projection.coords

    @property
    def x(self) -> np.ndarray:
        """The x coordinate of each checkpoint on the plane."""
        return self.coords[:, 0]

    @property
    def y(self) -> np.ndarray:
        """The y coordinate of each checkpoint on the plane."""
        return self.coords[:, 1]

    @property
    def residuals(self) -> np.ndarray:
        """``[checkpoints]`` distance of each checkpoint from the plane."""
        return self.projection.residuals

    @property
    def steps(self) -> np.ndarray:
        """Step number of each checkpoint."""
        return self.projection.steps

    @property
    def max_residual(self) -> float:
        """The largest distance of a checkpoint from the plane (NaN if a checkpoint is not finite)."""
        return self.projection.max_residual

    @property
    def explained(self) -> float:
        """Fraction of Σ‖θ_t − origin‖² that lies in the plane (NaN if a checkpoint is not finite)."""
        return self.projection.explained

    @property
    def difference(self) -> np.ndarray | None:
        """``true − interpolated`` for each checkpoint, or None without ``true``."""
        return None if self.true is None else self.true - self.interpolated

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and numbers (JSON-serialisable)."""
        return {
            **self.projection.to_dict(),
            "split": self.split,
            "interpolated": self.interpolated.tolist(),
            "true": None if self.true is None else self.true.tolist(),
        }

    def table(self) -> str:
        """One line per checkpoint: step, x, y, residual, J at the checkpoint, J from the grid, and
        their difference (``-`` where J at the checkpoints was not evaluated)."""
        head = ("step", "x", "y", "residual", "J (checkpoint)", "J (grid)", "difference")
        rows = [head]
        for t in range(len(self.steps)):
            true = "-" if self.true is None else f"{self.true[t]:.6g}"
            diff = "-" if self.true is None else f"{self.true[t] - self.interpolated[t]:.3g}"
            x, y = self.coords[t]
            numbers = (
                f"{x:.4g}",
                f"{y:.4g}",
                f"{self.residuals[t]:.4g}",
                true,
                f"{self.interpolated[t]:.6g}",
            )
            rows.append((str(int(self.steps[t])), *numbers, diff))
        widths = [max(len(r[k]) for r in rows) for k in range(len(head))]
        return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def _same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    """Whether two optional arrays are both absent, or equal."""
    if a is None or b is None:
        return a is b
    return bool(np.array_equal(a, b))


def _inside(grid: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Whether each of ``p`` lies within [grid[0], grid[-1]] (False for NaN)."""
    return (p >= grid[0]) & (p <= grid[-1])


def _cell(grid: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For points inside the grid: the index i of the cell [grid[i], grid[i+1]] and the fraction t
    of the way across it (t = 0 at a grid point; a one-point grid has the cell i = 0, t = 0)."""
    if grid.size == 1:
        return np.zeros(p.shape, dtype=np.intp), np.zeros(p.shape)
    i = np.clip(np.searchsorted(grid, p, side="right") - 1, 0, grid.size - 2)
    low, high = grid[i], grid[i + 1]
    # A cell wider than float64's largest number (e.g. [-1e308, 1e308]) is measured in halves.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # of the side not taken
        width = high - low
        return i, np.where(np.isfinite(width), (p - low) / width, (p / 2 - low / 2) / (high / 2 - low / 2))


def bilinear(
    xs: np.ndarray, ys: np.ndarray, z: np.ndarray, px: Any, py: Any, outside: float | None = None
) -> np.ndarray:
    """Bilinear interpolation of ``z`` (``[len(ys), len(xs)]``) at the points (px, py).

    Corners of zero weight are not used (a NaN there does not spread to a grid point beside it).
    Points outside the grid get ``outside`` (they must not occur when it is None).
    """
    px, py = np.broadcast_arrays(np.asarray(px, dtype=np.float64), np.asarray(py, dtype=np.float64))
    inside = _inside(xs, px) & _inside(ys, py)
    qx, qy = np.where(inside, px, xs[0]), np.where(inside, py, ys[0])
    (i, tx), (j, ty) = _cell(xs, qx), _cell(ys, qy)
    i1, j1 = np.minimum(i + 1, xs.size - 1), np.minimum(j + 1, ys.size - 1)
    total = np.zeros(px.shape)
    with np.errstate(invalid="ignore"):
        for w, v in (
            ((1 - tx) * (1 - ty), z[j, i]),
            (tx * (1 - ty), z[j, i1]),
            ((1 - tx) * ty, z[j1, i]),
            (tx * ty, z[j1, i1]),
        ):
            total = total + np.where(w > 0, w * v, 0.0)
    if outside is not None:
        total = np.where(inside, total, outside)
    return total


def _point_list(points: list[tuple[float, float]], most: int = 6) -> str:
    """``"(0, 1), (0.5, 1)"``: grid points for a message (the first ``most``, then how many more)."""
    shown = ", ".join(f"({x:g}, {y:g})" for x, y in points[:most])
    return shown + (f" and {len(points) - most} more" if len(points) > most else "")
