"""One linpath operation per model at a time.

A sweep writes each point of the line into the model's own parameters and puts them back at
the end; a second sweep of the same model in another thread would read the first one's points
(wrong values) and could put the wrong parameters back. linpath does not serialise such calls
(that would hide a data race in the caller's program); it refuses them: :func:`exclusive` raises
RuntimeError when any parameter of the model is already in use by another linpath operation
(in another thread, or re-entrantly from a loss function), and :func:`check_free` lets readers
such as ``TrajectoryRecorder.record`` refuse to read parameters that a sweep is overwriting.
Sweep copies of a model (``copy.deepcopy``) to work in parallel.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator

import torch

_lock = threading.Lock()
#: id of each parameter in use -> what is being done with it.
_in_use: dict[int, str] = {}


def _busy(tensors: Iterable[torch.Tensor]) -> str | None:
    return next((_in_use[id(t)] for t in tensors if id(t) in _in_use), None)


def _refusal(action: str, running: str) -> RuntimeError:
    return RuntimeError(
        f"cannot {action}: linpath is {running} this model right now (in another thread, or from a "
        "callback of that call), and it overwrites the model's parameters while it runs; wait for it, "
        "or give each thread its own copy of the model (copy.deepcopy(model))"
    )


@contextlib.contextmanager
def exclusive(tensors: Iterable[torch.Tensor], action: str, running: str) -> Iterator[None]:
    """Marks ``tensors`` (a model's parameters) as in use for the block.

    Args:
        tensors: The parameters the operation reads or writes.
        action: What the caller tries to do, for the message (e.g. "sweep the model").
        running: What the operation is doing, as another caller is told (e.g. "sweeping").

    Raises:
        RuntimeError: If another operation holds any of them.
    """
    tensors = list(tensors)
    keys = [id(t) for t in tensors]
    with _lock:
        busy = _busy(tensors)
        if busy is not None:
            raise _refusal(action, busy)
        for key in keys:
            _in_use[key] = running
    try:
        yield
    finally:
        with _lock:
            for key in keys:
                _in_use.pop(key, None)


def check_free(tensors: Iterable[torch.Tensor], action: str) -> None:
    """RuntimeError if a linpath operation is using any of ``tensors`` right now."""
    with _lock:
        busy = _busy(tensors)
    if busy is not None:
        raise _refusal(action, busy)
