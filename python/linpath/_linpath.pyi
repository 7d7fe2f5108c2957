"""Type stub of linpath's native module (Rust, built by maturin). Internal: use the `linpath` API."""

from collections.abc import Callable, Sequence
from os import PathLike
from typing import final

import numpy as np
import numpy.typing as npt
import torch

# The native module's __all__ (pyo3 fills it from what it registers); `make lint` runs stubtest against it.
__all__ = [
    "__version__",
    "TRAJECTORY_FORMAT_VERSION",
    "flatten_tensors",
    "assign_tensors",
    "NativeNet",
    "NATIVE_NET_KINDS",
    "METRICS",
    "Subspace",
    "check_alphas",
    "TrajectoryStore",
    "project_store",
    "project_store_subspace",
    "summarize",
    "train_native",
    "linear_sum_assignment",
]

__version__: str
TRAJECTORY_FORMAT_VERSION: int  # the trajectory file format written (2); versions 1 and 2 are read

def flatten_tensors(tensors: Sequence[torch.Tensor], dtype: str) -> torch.Tensor:
    """Concatenates tensors into a new contiguous 1-D tensor of `dtype` on their device."""

def assign_tensors(tensors: Sequence[torch.Tensor], vec: torch.Tensor) -> None:
    """Writes the 1-D `vec` into `tensors` in place, slice by slice (cast and copied as needed)."""

def check_alphas(alphas: npt.NDArray[np.float64]) -> None:
    """Raises ValueError unless `alphas` is non-empty and finite."""

# The pyo3 classes below cannot be subclassed (hence @final); those with a constructor build it in __new__.
@final
class Subspace:
    """The affine subspace θ0 + Σ c_k·d_k (a line: one direction; a plane: two), held in `dtype` on the
    origin's device; every point is computed from θ0 and the directions and rounded once."""

    def __new__(
        cls, origin: torch.Tensor, directions: Sequence[torch.Tensor], dtype: str = "float64"
    ) -> Subspace: ...
    @staticmethod
    def line(theta0: torch.Tensor, theta1: torch.Tensor, dtype: str = "float64") -> Subspace:
        """The line through θ0 (α = 0) and θ1 (α = 1)."""
    @staticmethod
    def of_activations(origin: torch.Tensor, directions: Sequence[torch.Tensor]) -> Subspace:
        """A subspace of same-shaped activations, sharing their memory (no copy, no finiteness check)."""
    def write(self, tensors: Sequence[torch.Tensor], coords: Sequence[float]) -> None:
        """Writes θ(coords) into `tensors` in place, each in its own dtype."""
    def point(self, coords: Sequence[float]) -> torch.Tensor:
        """A new tensor holding θ(coords)."""
    @property
    def numel(self) -> int: ...
    @property
    def dim(self) -> int: ...

@final
class TrajectoryStore:
    """Checkpoints of one parameter layout, in memory or in an append-only file."""

    @staticmethod
    def in_memory(names: Sequence[str], shapes: Sequence[Sequence[int]], dtype: str) -> TrajectoryStore: ...
    @staticmethod
    def create(
        path: str | PathLike[str], names: Sequence[str], shapes: Sequence[Sequence[int]], dtype: str
    ) -> TrajectoryStore: ...
    @staticmethod
    def open(
        path: str | PathLike[str], allow_partial: bool = False, writable: bool = False
    ) -> TrajectoryStore:
        """Opens a version-1 or -2 file; `writable` refuses version 1 (no checksums to append)."""
    def append(self, step: int, tensor: torch.Tensor) -> None: ...
    def get(self, index: int) -> torch.Tensor:
        """Checkpoint `index`, checked against its CRC32 (ValueError naming the file and index if damaged)."""
    def __len__(self) -> int: ...
    @property
    def steps(self) -> npt.NDArray[np.int64]:
        """Step numbers; a file's records not checked yet are checked against their CRC32 first (once)."""
    @property
    def format_version(self) -> int | None:
        """The file's format version (1: no checksums; 2: CRC32 per header and record); None in memory."""
    @property
    def names(self) -> list[str]: ...
    @property
    def shapes(self) -> list[list[int]]: ...
    @property
    def numel(self) -> int: ...
    @property
    def dtype(self) -> str: ...
    @property
    def path(self) -> str | None: ...

NATIVE_NET_KINDS: list[str]
METRICS: list[str]  # the metric names every native sweep reports, in order

@final
class NativeNet:
    """A LibTorch model of one of NATIVE_NET_KINDS living in Rust (wrapped by linpath.models)."""

    def __new__(cls, kind: str, config: dict[str, object]) -> NativeNet: ...
    def named_parameters(self) -> list[tuple[str, torch.Tensor]]: ...
    def forward(self, x: torch.Tensor, train: bool = False) -> torch.Tensor: ...
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]: ...
    def sweep(
        self,
        subspace: Subspace,
        x: torch.Tensor,
        y: torch.Tensor,
        passes: Sequence[tuple[Sequence[Sequence[float]], str]],
        batch_size: int = 1024,
        progress: Callable[[int, int], object] | None = None,
    ) -> list[list[tuple[str, list[float]]]]:
        """For each (points, precision) pass, [(metric, [value per point]), ...] in METRICS order."""
    @property
    def kind(self) -> str: ...

def project_store(
    store: TrajectoryStore, theta0: npt.NDArray[np.float64], direction: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(coordinate, residual, displacement) of every checkpoint relative to θ0 + α·direction."""

def project_store_subspace(
    store: TrajectoryStore, theta0: npt.NDArray[np.float64], directions: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(coords [T, k], residuals [T], displacements [T]) of every checkpoint relative to θ0 + D·c.

    ``directions`` is a C-contiguous [k, n] float64 array (1 ≤ k ≤ 8, linearly independent rows;
    neither orthogonal nor normalised); the GIL is released while projecting.
    """

def summarize(
    coordinate: npt.NDArray[np.float64],
    residual: npt.NDArray[np.float64],
    displacement: npt.NDArray[np.float64],
    direction_norm: float,
) -> tuple[float, float, float]:
    """(path_length, max_residual, explained)."""

def train_native(
    model: NativeNet,
    train: tuple[torch.Tensor, torch.Tensor],
    valid: tuple[torch.Tensor, torch.Tensor] | None,
    config: dict[str, object],
    path: str | PathLike[str] | None = None,
    progress: Callable[[int, int, int, float], object] | None = None,
) -> dict[str, object]:
    """Trains `model` in place with minibatch SGD (GIL released); see `linpath.train`.

    `config` holds epochs, batch_size, lr, momentum, weight_decay, max_norm (one float or None),
    max_norms and lr_scale (dicts {parameter name: float}), momentum_schedule and lr_schedule
    ((target, start, saturate) or None), clip_norm, lr_decay, early_stopping, seed, record_every
    and eval_train. Returns history (with per-epoch lr and momentum), initial, final, best,
    best_epoch, interrupted, epochs_run, steps and store (a new TrajectoryStore). Ctrl-C sets
    interrupted.
    """

def linear_sum_assignment(
    cost: npt.NDArray[np.float64], maximize: bool = False
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(rows, cols) of an optimal assignment of the 2-D float64 `cost` (ValueError: NaN, unbounded,
    infeasible); the GIL is released while solving."""
