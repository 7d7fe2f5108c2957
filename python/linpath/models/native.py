"""The base of linpath's Rust-backed models (the MLP, the conv maxout net, the MP-DBM, the LSTM):
:class:`NativeModel`.

A subclass names its native ``kind`` (see ``linpath._linpath.NATIVE_NET_KINDS``), passes a config
dict to the Rust constructor and initialises its parameters in :meth:`reset_parameters` from a
private ``torch.Generator`` (so the global torch RNG is left alone). The parameters are the very
tensors of the Rust model (shared storage), registered under the same dotted names as the plain
PyTorch twin's, in the same order: ``linpath.flatten``, ``assign``, ``interpolate``, state_dicts,
:func:`linpath.train` and ``TrajectoryRecorder`` work on it as on any module.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from .. import _linpath
from .._checks import real

WEIGHT_INITS = ("default", "uniform")
"""The ``init`` values of :class:`~linpath.models.MLP` and :class:`~linpath.models.ConvMaxout`:
PyTorch's ``nn.Linear`` / ``nn.Conv2d`` scheme, or pylearn2's ``irange`` (every weight uniform in
±``irange``, every bias ``bias_init``)."""


def positive(name: str, value: Any) -> float:
    """``value`` as a float that is finite and positive (TypeError / ValueError naming ``name``)."""
    number = real(name, value)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be a positive finite number, got {number}")
    return number


def finite(name: str, value: Any) -> float:
    """``value`` as a finite float (TypeError / ValueError naming ``name``)."""
    number = real(name, value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {number}")
    return number


def weight_init(init: Any, irange: Any, bias_init: Any) -> dict[str, Any]:
    """The checked ``init``, ``irange`` and ``bias_init`` keywords of a layered native model.

    Raises:
        ValueError: For an ``init`` outside :data:`WEIGHT_INITS`, an ``irange`` that is not positive
            and finite, or a ``bias_init`` that is not finite.
        TypeError: For an ``irange`` or ``bias_init`` that is not a real number.
    """
    if not isinstance(init, str) or init not in WEIGHT_INITS:
        raise ValueError(f"unknown init {init!r}; use one of {WEIGHT_INITS}")
    return {"init": init, "irange": positive("irange", irange), "bias_init": finite("bias_init", bias_init)}


def draw_uniform(layers: Iterable[nn.Module], irange: float, bias_init: float, gen: torch.Generator) -> None:
    """pylearn2's ``irange`` initialisation, layer by layer: each ``weight`` uniform in ±``irange``
    (drawn from ``gen``), each ``bias`` filled with ``bias_init``."""
    with torch.no_grad():
        for layer in layers:
            layer.get_parameter("weight").uniform_(-irange, irange, generator=gen)
            layer.get_parameter("bias").fill_(bias_init)


class NativeBacked(nn.Module):
    """An ``nn.Module`` whose parameters are the tensors of a model living in Rust.

    Python and Rust share each parameter's storage. Anything that swaps a parameter's tensor on
    the Python side (``load_state_dict(..., assign=True)``, ``param.data = ...``, assigning a new
    ``nn.Parameter``) would silently disconnect the two, so every use of the native model goes
    through :attr:`_native`, which first points the Rust tensors at the module's current
    parameters (or raises when that cannot be done).
    """

    # Set by _attach_native (in __dict__, not as submodules or parameters); declared for type checkers.
    _native_factory: Callable[[], Any]
    _native_handle: Any
    _native_tensors: list[tuple[str, torch.Tensor]]

    def _attach_native(self, factory: Callable[[], Any]) -> None:
        """Builds the native model with ``factory`` (which may draw from libtorch's global RNG: the
        RNG is put back) and keeps it, its ``(name, tensor)`` handles and the factory, which
        :meth:`__deepcopy__` calls again. Call once, in ``__init__``."""
        rng = torch.random.get_rng_state()
        try:
            handle = factory()
        finally:
            torch.random.set_rng_state(rng)
        self.__dict__.update(_native_factory=factory, _native_handle=handle)
        self.__dict__["_native_tensors"] = handle.named_parameters()

    def __deepcopy__(self, memo: dict[int, Any]) -> NativeBacked:
        """An independent copy (``copy.deepcopy``): the Python state deep-copied, a new native model
        built, and that model pointed at the copied parameters."""
        clone = type(self).__new__(type(self))
        memo[id(self)] = clone
        for key, value in self.__dict__.items():
            if key not in _NATIVE_KEYS:
                clone.__dict__[key] = copy.deepcopy(value, memo)
        clone._attach_native(self._native_factory)
        clone._sync_parameters()
        return clone

    @property
    def _native(self) -> Any:
        """The native model, its tensors checked to be this module's parameters (see the class)."""
        self._sync_parameters()
        return self._native_handle

    def _sync_parameters(self) -> None:
        for name, native in self._native_tensors:
            try:
                param = self.get_parameter(name)
            except AttributeError:
                raise ValueError(
                    f"parameter {name!r} is no longer part of this {type(self).__name__}; build a new model"
                ) from None
            if _same_tensor(param, native):
                continue
            if param.dtype != torch.float32 or param.device.type != "cpu" or param.shape != native.shape:
                got = f"a {param.dtype} tensor of shape {tuple(param.shape)} on {param.device}"
                raise TypeError(
                    f"parameter {name!r} was replaced by {got}; a linpath {type(self).__name__} keeps "
                    f"float32 CPU parameters of shape {tuple(native.shape)}: load_state_dict without "
                    "assign=True (which copies the values)"
                )
            if not param.is_contiguous():
                raise ValueError(
                    f"parameter {name!r} was replaced by a non-contiguous tensor; pass a contiguous one "
                    "(tensor.contiguous()) or load_state_dict without assign=True"
                )
            with torch.no_grad():
                # The Rust model now reads and writes the module's tensor (torch's stub lacks set_(Tensor)).
                native.set_(param.detach())  # type: ignore[call-overload]


_NATIVE_KEYS = ("_native_factory", "_native_handle", "_native_tensors")


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    """True when ``a`` and ``b`` are views of the same memory with the same layout."""
    return (
        a.data_ptr() == b.data_ptr()
        and a.shape == b.shape
        and a.stride() == b.stride()
        and a.dtype == b.dtype
        and a.device == b.device
    )


def _attach(module: nn.Module, name: str, tensor: torch.Tensor) -> None:
    """Registers ``tensor`` as the parameter at dotted ``name``, creating plain submodules on the way."""
    *path, leaf = name.split(".")
    for part in path:
        child = module._modules.get(part)
        if child is None:
            child = nn.Module()
            module.add_module(part, child)
        module = child
    module.register_parameter(leaf, nn.Parameter(tensor))  # shares storage with the Rust variable


class NativeModel(NativeBacked):
    """A model whose parameters belong to a LibTorch model in Rust (``linpath._linpath.NativeNet``).

    The model lives on the CPU in float32: ``.to()``, ``.double()`` and the like raise TypeError
    (use ``to_torch()``, where a subclass has one, for a movable copy). ``forward`` runs in Rust.

    Class attributes:
        kind: The native model kind.
        input_dtype: The dtype inputs are converted to for training and evaluation.
        objective_is_cross_entropy: Whether the model's objective J is the mean cross-entropy of
            ``forward``'s ``[n, classes]`` outputs, so that a generic evaluation (the module engine's
            default loss) measures the same J as the native one.
    """

    kind: ClassVar[str] = ""
    input_dtype: ClassVar[torch.dtype] = torch.float32
    objective_is_cross_entropy: ClassVar[bool] = True
    #: The checked config passed to Rust (a subclass may declare a precise TypedDict).
    _config: Mapping[str, Any]

    def __init__(self, config: Mapping[str, Any], seed: int = 0) -> None:
        super().__init__()
        kind, config = self.kind, dict(config)  # not self: a copy's factory must not keep this model alive
        self._config = config
        self._attach_native(lambda: _linpath.NativeNet(kind, config))
        native_params = self._native_tensors
        self._register_native_parameters(native_params)
        names = [n for n, _ in self.named_parameters()]
        if names != [n for n, _ in native_params]:  # the module tree must list them in Rust's order
            raise RuntimeError(f"parameter order differs from the native model's: {names}")
        self.reset_parameters(seed)

    def _register_native_parameters(self, params: list[tuple[str, torch.Tensor]]) -> None:
        """Registers the native tensors as this module's parameters under their dotted names
        (plain submodules on the way); a subclass may build its own module tree instead."""
        for name, tensor in params:
            _attach(self, name, tensor)

    def reset_parameters(self, seed: int = 0) -> None:
        """Draws the parameters afresh from a generator seeded with ``seed`` (each model's scheme)."""
        raise NotImplementedError(f"{type(self).__name__} must define reset_parameters")

    # What linpath's engines ask a model (capabilities as methods, not isinstance checks).

    def _linpath_split_ok(self, split: Any) -> bool:
        """Whether the native engine can evaluate ``split``: an ``(X, Y)`` pair of tensors."""
        return bool(split.is_pair)

    def _linpath_engine(self, splits: Mapping[str, Any], loss: Any) -> Any:
        """The native engine when every split suits it and the loss is the model's own, else None."""
        from ..engines import NATIVE

        if loss is None and all(self._linpath_split_ok(s) for s in splits.values()):
            return NATIVE
        return None

    def _linpath_native_pair(self, split: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """The split's ``(X, Y)`` as the native model takes them (CPU, its input dtype, int64 targets)."""
        from ..data import native_pair

        return native_pair(split._pair, f"split {split.name!r}", self.input_dtype)

    def _linpath_evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        """``(J, error rate)`` on ``(x, y)`` on the model's own objective (see :meth:`evaluate`)."""
        return self.evaluate(x.to(self.input_dtype), y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model's output for ``x``, computed in Rust; training-time noise only in train mode."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        return self._native.forward(x, self.training)

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        """``(J, error rate)`` on the labelled data ``(x, y)``: the model's deterministic objective
        and its prediction error, computed in Rust without autograd."""
        for t, what in ((x, "x"), (y, "y")):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{what} must be a torch.Tensor, got {type(t).__name__}")
        return self._native.evaluate(x, y)

    def _apply(self, fn: Any, recurse: bool = True) -> NativeModel:
        raise TypeError(
            f"a linpath {type(self).__name__} lives on the CPU in float32 (its tensors belong to the "
            "Rust model); use to_torch(), where it exists, for a copy you can move or convert"
        )
