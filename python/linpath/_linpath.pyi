"""Type stub of linpath's native module (Rust, built by maturin). Internal: use the `linpath` API."""

from collections.abc import Callable, Sequence
from os import PathLike

import numpy as np
import numpy.typing as npt
import torch

__version__: str
TRAJECTORY_FORMAT_VERSION: int  # the trajectory file format written (2); versions 1 and 2 are read

def flatten_tensors(tensors: Sequence[torch.Tensor], dtype: str) -> torch.Tensor:
    """Concatenates tensors into a new contiguous 1-D tensor of `dtype` on their device."""

def assign_tensors(tensors: Sequence[torch.Tensor], vec: torch.Tensor) -> None:
    """Writes the 1-D `vec` into `tensors` in place, slice by slice (cast and copied as needed)."""

def check_alphas(alphas: npt.NDArray[np.float64]) -> None:
    """Raises ValueError unless `alphas` is non-empty and finite."""

class Line:
    """The line θ0 + α·(θ1 − θ0), held in `dtype` on the endpoints' device."""

    def __init__(self, theta0: torch.Tensor, theta1: torch.Tensor, dtype: str = "float64") -> None: ...
    def write(self, tensors: Sequence[torch.Tensor], alpha: float) -> None:
        """Writes θ(α) into `tensors` in place."""
    def point(self, alpha: float) -> torch.Tensor:
        """A new tensor holding θ(α)."""
    @property
    def numel(self) -> int: ...

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

class NativeNet:
    """A LibTorch model of one of NATIVE_NET_KINDS living in Rust (wrapped by linpath.models)."""

    def __init__(self, kind: str, config: dict[str, object]) -> None: ...
    def named_parameters(self) -> list[tuple[str, torch.Tensor]]: ...
    def forward(self, x: torch.Tensor, train: bool = False) -> torch.Tensor: ...
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]: ...
    def sweep(
        self,
        theta0: torch.Tensor,
        theta1: torch.Tensor,
        x: torch.Tensor,
        y: torch.Tensor,
        alphas: list[float],
        progress: Callable[[int, int], object] | None = None,
    ) -> tuple[list[float], list[float]]: ...
    def sweep_passes(
        self,
        theta0: torch.Tensor,
        theta1: torch.Tensor,
        x: torch.Tensor,
        y: torch.Tensor,
        passes: list[tuple[list[float], str]],
        batch_size: int = 0,
        progress: Callable[[int, int], object] | None = None,
    ) -> list[tuple[list[float], list[float]]]: ...
    @property
    def kind(self) -> str: ...

class NativeMlp:
    """A LibTorch MLP living in Rust; its parameters are shared with Python without copies."""

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str = "relu",
        pieces: int = 2,
        input_dropout: float = 0.0,
        hidden_dropout: float = 0.0,
    ) -> None: ...
    def named_parameters(self) -> list[tuple[str, torch.Tensor]]:
        """(name, tensor) pairs in PyTorch order; the tensors are the model's own variables."""
    def forward(self, x: torch.Tensor, train: bool = False) -> torch.Tensor: ...
    def sweep(
        self,
        theta0: torch.Tensor,
        theta1: torch.Tensor,
        x: torch.Tensor,
        y: torch.Tensor,
        alphas: Sequence[float],
        batch_size: int,
        precision: str = "float32",
        progress: Callable[[int, int], object] | None = None,
    ) -> tuple[list[float], list[float]]:
        """(mean losses, error rates) along θ0 + α·(θ1 − θ0), natively; GIL released."""
    def sweep_passes(
        self,
        theta0: torch.Tensor,
        theta1: torch.Tensor,
        x: torch.Tensor,
        y: torch.Tensor,
        passes: Sequence[tuple[Sequence[float], str]],
        batch_size: int,
        progress: Callable[[int, int], object] | None = None,
    ) -> list[tuple[list[float], list[float]]]:
        """One (losses, error rates) per (alphas, precision) pass, sharing the first layer's products."""
    @property
    def sizes(self) -> list[int]: ...
    @property
    def activation(self) -> str: ...
    @property
    def pieces(self) -> int: ...
    @property
    def dropout(self) -> tuple[float, float]: ...

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
    model: NativeMlp | NativeNet,
    train: tuple[torch.Tensor, torch.Tensor],
    valid: tuple[torch.Tensor, torch.Tensor] | None,
    config: dict[str, int | float | None],
    path: str | PathLike[str] | None = None,
    progress: Callable[[int, int, int, float], object] | None = None,
) -> dict[str, object]:
    """Trains `model` in place with minibatch SGD (GIL released); see `linpath.train`.

    `config` holds epochs, batch_size, lr, momentum, weight_decay, max_norm, clip_norm, lr_decay,
    early_stopping, seed and record_every. Returns history, initial, final, best, best_epoch,
    interrupted, epochs_run, steps and store (a new TrajectoryStore). Ctrl-C sets interrupted.
    """
