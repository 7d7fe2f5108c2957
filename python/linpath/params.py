"""Parameter vectors: a model, a state_dict or a list of tensors as one flat vector, and back.

The heavy lifting (concatenation, slice-by-slice writes into the model's own tensors) is done
by the native module; this file resolves what the user passed into lists of tensors.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from . import _linpath
from ._guard import check_free

_DTYPE_NAMES = {
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
    torch.float32: "float32",
    torch.float64: "float64",
}

Shape = tuple[int, ...]
#: What to do with a tensor that has a shape but no values.
META_HINT = "materialise it first (e.g. module.to_empty(device='cpu') and load real weights)"


def dtype_name(dtype: torch.dtype) -> str:
    """The native module's name for a floating-point torch dtype ("float32", ...)."""
    try:
        return _DTYPE_NAMES[dtype]
    except KeyError:
        raise TypeError(
            f"linpath works on floating-point tensors (float16, bfloat16, float32, float64), not {dtype}"
        ) from None


class ParamVector:
    """A flat parameter vector together with the names and shapes of the tensors it came from.

    Attributes:
        tensor: 1-D contiguous torch tensor (on the device of the tensors it was made from).
        names: Name of each tensor, in order (``"0"``, ``"1"``, ... for an unnamed sequence).
        shapes: Shape of each tensor, in order.
    """

    __slots__ = ("_named", "names", "shapes", "tensor")

    def __init__(
        self,
        tensor: torch.Tensor,
        names: Sequence[str],
        shapes: Sequence[Sequence[int]],
        *,
        named: bool = True,
    ) -> None:
        layout: list[Shape] = [tuple(int(s) for s in shape) for shape in shapes]
        if len(names) != len(layout):
            raise ValueError(f"{len(names)} names but {len(layout)} shapes")
        if not isinstance(tensor, torch.Tensor) or tensor.dim() != 1:
            raise ValueError("a ParamVector's tensor must be a 1-D torch.Tensor")
        numel = sum(int(np.prod(s, dtype=np.int64)) for s in layout)
        if tensor.numel() != numel:
            raise ValueError(f"the tensor has {tensor.numel()} elements but the shapes add up to {numel}")
        self.tensor = tensor
        self.names = list(names)
        self.shapes = layout
        self._named = named

    def __len__(self) -> int:
        return self.tensor.numel()

    @property
    def dtype(self) -> torch.dtype:
        """The element type of the vector."""
        return self.tensor.dtype

    @property
    def device(self) -> torch.device:
        """The device the vector lives on."""
        return self.tensor.device

    def numpy(self) -> np.ndarray:
        """A NumPy copy of the vector on the CPU (bfloat16 is widened to float32)."""
        t = self.tensor.detach().cpu()
        if t.dtype == torch.bfloat16:
            t = t.float()
        return t.numpy().copy()

    def to_state_dict(self) -> dict[str, torch.Tensor]:
        """The vector cut back into named tensors (views into :attr:`tensor`, no copy)."""
        out, offset = {}, 0
        for name, shape in zip(self.names, self.shapes, strict=True):
            n = int(np.prod(shape, dtype=np.int64))
            out[name] = self.tensor[offset : offset + n].view(shape)
            offset += n
        return out

    def check_layout(self, names: Sequence[str], shapes: Sequence[Shape], what: str) -> None:
        """Raises ValueError unless this vector has the given layout (names only if it is named)."""
        check_same_layout(self.names if self._named else None, self.shapes, names, shapes, what)

    def __repr__(self) -> str:
        return (
            f"ParamVector({len(self)} values in {len(self.shapes)} tensors, dtype={self.dtype}, "
            f"device={self.device})"
        )


def check_same_layout(
    names: Sequence[str] | None,
    shapes: Sequence[Shape],
    want_names: Sequence[str],
    want_shapes: Sequence[Shape],
    what: str,
) -> None:
    """Raises ValueError naming the first tensor where two layouts differ (names skipped if None)."""
    if len(shapes) != len(want_shapes):
        raise ValueError(f"{what} has {len(shapes)} tensors but the model has {len(want_shapes)}")
    for i, (shape, want) in enumerate(zip(shapes, want_shapes, strict=True)):
        name = names[i] if names is not None else None
        if name is not None and name != want_names[i]:
            raise ValueError(f"{what}: tensor {i} is named {name!r} but the model's is {want_names[i]!r}")
        if tuple(shape) != tuple(want):
            raise ValueError(
                f"{what}: tensor {want_names[i]!r} has shape {tuple(shape)}, expected {tuple(want)}"
            )


def named_parameters(model: nn.Module) -> tuple[list[str], list[torch.Tensor]]:
    """Names and tensors of ``model.named_parameters()`` (shared parameters once)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch.nn.Module, got {type(model).__name__}")
    pairs = list(model.named_parameters())
    if not pairs:
        raise ValueError(f"the model ({type(model).__name__}) has no parameters")
    for name, p in pairs:
        if p.is_meta:
            raise ValueError(f"parameter {name!r} is on the meta device and holds no values; {META_HINT}")
        if isinstance(p, nn.parameter.UninitializedParameter):
            raise ValueError(
                f"parameter {name!r} of {type(model).__name__} is not initialised yet (a lazy layer); "
                "run the model once on a batch of real inputs first"
            )
        if not p.is_floating_point():
            raise TypeError(
                f"parameter {name!r} has dtype {p.dtype}; linpath works on floating-point parameters "
                "(float16, bfloat16, float32, float64)"
            )
    return [n for n, _ in pairs], [p for _, p in pairs]


def _storage_key(t: torch.Tensor) -> tuple[Any, ...]:
    # The storage object's identity, not its address: every empty storage has data_ptr() == 0.
    return (t.untyped_storage()._cdata, t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)


def _named_tensors(obj: Any) -> tuple[list[str], list[torch.Tensor], bool]:
    """(names, tensors, named) for a module, a state_dict, or a sequence of tensors."""
    if isinstance(obj, nn.Module):
        return (*named_parameters(obj), True)
    if isinstance(obj, torch.Tensor):
        obj = [obj]
    if isinstance(obj, Mapping):
        names, tensors, seen = [], [], set()
        for name, t in obj.items():
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"state_dict entry {name!r} is a {type(t).__name__}, not a tensor")
            if not t.is_floating_point() or _storage_key(t) in seen:
                continue  # integer buffers (e.g. num_batches_tracked) and shared tensors are skipped
            seen.add(_storage_key(t))
            names.append(str(name))
            tensors.append(t)
        if not tensors:
            raise ValueError("the state_dict holds no floating-point tensors")
        return names, tensors, True
    if isinstance(obj, Sequence) and not isinstance(obj, str | bytes):
        if not obj:
            raise ValueError("cannot flatten an empty sequence of tensors")
        for i, t in enumerate(obj):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"item {i} is a {type(t).__name__}, not a torch.Tensor")
        return [str(i) for i in range(len(obj))], list(obj), False
    raise TypeError(
        f"cannot flatten a {type(obj).__name__}: pass an nn.Module, a state_dict or a sequence of tensors"
    )


def _common_dtype(tensors: Sequence[torch.Tensor]) -> torch.dtype:
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def flatten(
    obj: nn.Module | Mapping[str, torch.Tensor] | Sequence[torch.Tensor], *, dtype: torch.dtype | None = None
) -> ParamVector:
    """Flattens parameters into one contiguous vector.

    Args:
        obj: An ``nn.Module`` (its ``named_parameters()``, in that order, shared parameters once),
            a state_dict (its floating-point entries in order; integer buffers and tensors that share
            storage with an earlier entry are skipped), or a sequence of tensors.
        dtype: Element type of the vector. Defaults to the tensors' (promoted) common dtype.

    Returns:
        A :class:`ParamVector` whose tensor is a new copy on the parameters' device.

    Raises:
        TypeError: For non-tensor items or non-floating-point tensors or dtype.
        ValueError: For an empty input or tensors on different devices.
    """
    names, tensors, named = _named_tensors(obj)
    if isinstance(obj, nn.Module):
        check_free(tensors, "flatten the model")  # a sweep's point, not the model's parameters
    dtype = _common_dtype(tensors) if dtype is None else dtype
    vec = _linpath.flatten_tensors(tensors, dtype_name(dtype))
    return ParamVector(vec, names, [tuple(t.shape) for t in tensors], named=named)


def as_vector(obj: Any, names: Sequence[str], shapes: Sequence[Shape], what: str) -> torch.Tensor:
    """A 1-D tensor for ``obj`` in the layout (names, shapes), without copying when possible.

    ``obj`` may be an ``nn.Module``, a state_dict (entries picked by name), a :class:`ParamVector`,
    a 1-D tensor or a 1-D NumPy array.
    """
    if isinstance(obj, nn.Module):
        obj_names, tensors = named_parameters(obj)
        check_same_layout(obj_names, [tuple(t.shape) for t in tensors], names, shapes, what)
        return flatten(tensors).tensor
    if isinstance(obj, Mapping):
        missing = [n for n in names if n not in obj]
        if missing:
            raise ValueError(
                f"{what} (a state_dict) lacks {len(missing)} of the parameters, e.g. {missing[:3]}"
            )
        tensors = [obj[n] for n in names]
        for name, t in zip(names, tensors, strict=True):
            if not isinstance(t, torch.Tensor):
                raise TypeError(
                    f"{what}: state_dict entry {name!r} is a {type(t).__name__}, not a torch.Tensor"
                )
        check_same_layout(None, [tuple(t.shape) for t in tensors], names, shapes, what)
        return flatten(tensors).tensor
    if isinstance(obj, ParamVector):
        obj.check_layout(names, shapes, what)
        return _strided(obj.tensor, what)
    if isinstance(obj, np.ndarray):
        obj = _from_numpy(obj, what)
    if isinstance(obj, torch.Tensor):
        numel = sum(int(np.prod(s, dtype=np.int64)) for s in shapes)
        if not obj.is_floating_point():
            raise TypeError(f"{what} has dtype {obj.dtype}; pass a floating-point vector")
        if obj.dim() != 1 or obj.numel() != numel:
            raise ValueError(f"{what} has shape {tuple(obj.shape)}; expected a 1-D vector of {numel} values")
        return _strided(obj.detach(), what)
    raise TypeError(
        f"{what} is a {type(obj).__name__}; pass an nn.Module, a state_dict, a ParamVector, "
        "or a 1-D tensor or array"
    )


def _strided(t: torch.Tensor, what: str) -> torch.Tensor:
    """``t`` if it is an ordinary (strided) tensor; TypeError for a sparse or other layout."""
    if t.layout != torch.strided:
        raise TypeError(f"{what} is a tensor of layout {t.layout}; pass a dense one (e.g. t.to_dense())")
    return t


def _from_numpy(array: np.ndarray, what: str) -> torch.Tensor:
    """A float16/32/64 NumPy vector as a tensor (byte order made native; other dtypes refused)."""
    if array.dtype.kind != "f" or array.dtype.itemsize not in (2, 4, 8):
        raise TypeError(
            f"{what} is a NumPy array of dtype {array.dtype}; "
            "pass floating-point values (float16, float32 or float64)"
        )
    return torch.from_numpy(np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("=")))


def assign(
    model: nn.Module, vec: ParamVector | torch.Tensor | np.ndarray | Mapping[str, torch.Tensor]
) -> None:
    """Writes a parameter vector into ``model``'s parameters, in place.

    Args:
        model: The module whose ``named_parameters()`` receive the values (each cast to its own
            dtype and device; autograd is not involved).
        vec: A :class:`ParamVector` with the model's names and shapes, a state_dict, or a 1-D
            tensor or array with as many values as the model has parameters.

    Raises:
        ValueError: If the layout (names, shapes, number of values) differs from the model's.
        TypeError: If ``vec`` is not floating-point or not a supported type.
    """
    names, params = named_parameters(model)
    check_free(params, "assign to the model")
    write_vector(params, names, vec)


def write_vector(params: Sequence[torch.Tensor], names: Sequence[str], vec: Any) -> None:
    """:func:`assign` without the check that no linpath operation is using the model (for the
    operations themselves, which hold it)."""
    vector = as_vector(vec, names, [tuple(p.shape) for p in params], "the vector")
    _linpath.assign_tensors(params, vector)


def float_buffers(model: nn.Module) -> tuple[list[str], list[torch.Tensor]]:
    """Names and tensors of the model's floating-point buffers (e.g. BatchNorm statistics)."""
    pairs = [(n, b) for n, b in model.named_buffers() if b.is_floating_point()]
    return [n for n, _ in pairs], [b for _, b in pairs]


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Holds back Ctrl-C (SIGINT) for the duration of the block, then delivers it.

    Used while a model's state is being restored, so that an impatient second Ctrl-C cannot
    leave the model half-restored. Outside the main thread this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda *args: received.append(args))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received and callable(previous):
            previous(*received[0])


class ModelState:
    """A snapshot of everything a sweep touches: parameters and buffers (their values, the tensor
    objects each module holds, ``requires_grad``; integer buffers such as ``num_batches_tracked``
    too), the train/eval mode of every submodule, and the ``momentum`` of the modules that keep
    running statistics (``buffers="recompute"`` sets it to None)."""

    def __init__(self, model: nn.Module) -> None:
        self._slots: list[tuple[dict[str, Any], str, torch.Tensor, bool]] = []
        self._saved: dict[int, torch.Tensor] = {}  # one copy per tensor, however often it is shared
        with torch.no_grad():
            for module in model.modules():
                for table in (module._parameters, module._buffers):
                    for key, t in table.items():
                        if t is not None:
                            self._slots.append((table, key, t, t.requires_grad))
                            self._saved.setdefault(id(t), t.detach().clone())
        self._modes = [(m, m.training) for m in model.modules()]
        self._momenta = [
            (m, m.momentum)
            for m in model.modules()
            if callable(getattr(m, "reset_running_stats", None)) and hasattr(m, "momentum")
        ]

    def restore(self) -> None:
        """Puts the model back exactly as it was when the snapshot was taken.

        A module that replaced one of its tensors (``self.buf = self.buf + 1`` in ``forward``) gets
        the original object back. Ctrl-C cannot cut the restoration short: it is held back while the
        tensors are written, and one that lands just before that starts the restoration over; the
        interrupt is raised once the model is whole again.
        """
        interrupt: KeyboardInterrupt | None = None
        while True:
            try:
                with interrupts_deferred(), torch.no_grad():
                    self._put_back()
                break
            except KeyboardInterrupt as e:
                interrupt = e
        if interrupt is not None:
            raise interrupt

    def _put_back(self) -> None:
        for table, key, original, requires_grad in self._slots:
            table[key] = original
            original.copy_(self._saved[id(original)])
            if original.requires_grad != requires_grad:
                original.requires_grad_(requires_grad)
        for m, training in self._modes:
            m.training = training
        for m, momentum in self._momenta:
            m.momentum = momentum
