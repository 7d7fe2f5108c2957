"""Turning what users pass as ``data`` into named splits of batches: ``(X, Y)`` pairs cut into
``(x, y)`` batches, or any re-iterable (a DataLoader) of batches of any shape (see
:mod:`linpath.batches`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import torch

from ._checks import I64_END, integer
from .batches import Totals, to_device

DEFAULT_BATCH_SIZE = 1024


def _as_tensor(a: Any) -> torch.Tensor | None:
    if isinstance(a, torch.Tensor):
        return a
    if isinstance(a, np.ndarray):
        return torch.from_numpy(a)
    return None


class Split:
    """One named dataset that can be iterated as batches any number of times."""

    def __init__(self, name: str, data: Any, batch_size: int | None) -> None:
        self.name = name
        self._pair: tuple[torch.Tensor, torch.Tensor] | None = None
        self._iterable: Iterable[Any] | None = None
        self._staged: (
            tuple[tuple[torch.device, torch.dtype | None], tuple[torch.Tensor, torch.Tensor]] | None
        ) = None
        if isinstance(data, tuple | list) and len(data) == 2 and all(_as_tensor(a) is not None for a in data):
            x, y = (_as_tensor(a) for a in data)
            assert x is not None and y is not None  # both passed the all(...) check just above
            if x.dim() == 0 or y.dim() == 0 or len(x) != len(y):
                raise ValueError(
                    f"split {name!r}: inputs and targets must have the same first dimension, "
                    f"got shapes {tuple(x.shape)} and {tuple(y.shape)}"
                )
            if len(x) == 0:
                raise ValueError(f"split {name!r} is empty")
            self._pair = (x, y)
            self.batch_size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
        elif _as_tensor(data) is not None:
            raise TypeError(f"split {name!r} is a single tensor; pass an (inputs, targets) pair")
        elif isinstance(data, Iterable):
            if iter(data) is data:
                raise TypeError(
                    f"split {name!r} is a one-shot iterator, which would be used up by the first alpha; "
                    "pass a DataLoader, a list of (x, y) batches or an (X, Y) pair"
                )
            self._iterable = data
        else:
            raise TypeError(
                f"split {name!r} is a {type(data).__name__}; pass an (X, Y) pair of tensors, "
                "a DataLoader or a list of (x, y) batches"
            )

    @property
    def class_pair(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The ``(X, Y)`` pair when this split is one with 2-D float inputs and int64 class targets."""
        if self._pair is None:
            return None
        x, y = self._pair
        ok = x.dim() == 2 and x.is_floating_point() and y.dim() == 1 and y.dtype == torch.int64
        return (x, y) if ok else None

    def has_nonfinite_inputs(self) -> bool:
        """True when this split is an ``(X, Y)`` pair whose floating-point inputs hold NaN or inf
        (False when unknown: a DataLoader is not read for this)."""
        if self._pair is None or not self._pair[0].is_floating_point():
            return False
        return not bool(torch.isfinite(self._pair[0]).all())

    @property
    def pair(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The ``(X, Y)`` pair this split was made from, or None for a re-iterable of batches."""
        return self._pair

    def reduce(self, totals: Totals) -> None:
        """Turns the sums of this split's batches at one point into the sums over the whole split:
        nothing to do here; a rank's share of a split in a distributed run
        (:class:`linpath.distributed.ShardedSplit`) adds the other ranks' sums."""

    @property
    def is_pair(self) -> bool:
        """True for an ``(X, Y)`` pair: the same batches, in the same order, on every pass."""
        return self._pair is not None

    @property
    def source(self) -> Iterable[Any] | None:
        """The re-iterable of batches this split reads (a DataLoader, a list of batches), or None
        for an ``(X, Y)`` pair."""
        return self._iterable

    @property
    def size(self) -> int | None:
        """Number of examples, when known without iterating."""
        return len(self._pair[0]) if self._pair is not None else None

    def batches(self, device: torch.device, dtype: torch.dtype | None = None) -> Iterator[Any]:
        """Yields the split's batches on ``device`` (see :func:`linpath.batches.to_device`; with
        ``dtype``, floating-point inputs are cast to it). An ``(X, Y)`` pair is staged on the device
        once (see :meth:`staged`) and cut into ``(x, y)`` batches; other batches are moved one by one."""
        if self._pair is not None:
            staged = self.staged(device, dtype)
            x, y = self._pair if staged is None else staged
            for i in range(0, len(x), self.batch_size):
                batch = (x[i : i + self.batch_size], y[i : i + self.batch_size])
                yield batch if staged is not None else to_device(batch, device, dtype)
            return
        assert self._iterable is not None  # __init__ sets either the pair or the iterable (or raises)
        for batch in self._iterable:
            yield to_device(batch, device, dtype)

    def staged(
        self, device: torch.device, dtype: torch.dtype | None = None
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The ``(X, Y)`` pair on ``device`` (inputs cast to ``dtype`` when given), moved once and
        kept for the next pass (a sweep evaluates the split at every point, so a pair is not moved
        again at each α); None when the device has not room for it twice over (then each batch is
        moved as it is used)."""
        assert self._pair is not None  # only pairs are staged
        key = (torch.device(device), dtype)
        if self._staged is None or self._staged[0] != key:
            x, y = self._pair
            if not _room_for(key[0], x, y):
                return None
            moved = to_device((x, y), key[0], dtype)
            self._staged = (key, (moved[0], moved[1]))
        return self._staged[1]


def _room_for(device: torch.device, *tensors: torch.Tensor) -> bool:
    """True when the tensors are on ``device`` already, or it has free memory for twice their size
    (CPU memory: assumed)."""
    if all(t.device == device for t in tensors) or device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return 2 * sum(t.numel() * t.element_size() for t in tensors) <= free


def as_splits(data: Any, batch_size: int | None) -> dict[str, Split]:
    """Named splits for ``data``: a dict of splits, or one split called ``"data"``."""
    if batch_size is not None:
        batch_size = integer("batch_size", batch_size, 1, I64_END)
    if isinstance(data, Mapping):
        if not data:
            raise ValueError("data is an empty dict; give at least one split, e.g. {'train': (X, Y)}")
        names = [str(name) for name in data]
        if len(set(names)) != len(names):
            raise ValueError(f"split names must differ as strings, got {list(data)!r}")
        return {name: Split(name, d, batch_size) for name, d in zip(names, data.values(), strict=True)}
    return {"data": Split("data", data, batch_size)}


def native_pair(
    data: Any, name: str, input_dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(X, Y)`` as a native model takes it: CPU inputs of ``input_dtype`` and int64 targets
    (copies only where needed); ``name`` names the data in errors. Shared by the native trainer
    and the native sweep, so both accept and refuse the same data."""
    if not isinstance(data, tuple | list) or len(data) != 2:
        raise TypeError(f"{name} must be an (X, Y) pair of tensors, got {type(data).__name__}")
    x, y = data
    for t, what in ((x, "X"), (y, "Y")):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: {what} must be a torch.Tensor, got {type(t).__name__}")
    if input_dtype.is_floating_point and not x.is_floating_point():
        raise TypeError(f"{name}: X must hold floating-point inputs, got {x.dtype}")
    if not input_dtype.is_floating_point and (
        x.is_floating_point() or x.is_complex() or x.dtype == torch.bool
    ):
        raise TypeError(f"{name}: X must hold integer token ids, got {x.dtype}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"{name}: Y must hold integer class indices, got {y.dtype}")
    return x.detach().to("cpu", input_dtype), y.detach().to("cpu", torch.int64)
