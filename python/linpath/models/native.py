"""The base of linpath's Rust-backed models other than the MLP: :class:`NativeModel`.

A subclass names its native ``kind`` (see ``linpath._linpath.NATIVE_NET_KINDS``), passes a config
dict to the Rust constructor and initialises its parameters in :meth:`reset_parameters` from a
private ``torch.Generator`` (so the global torch RNG is left alone). The parameters are the very
tensors of the Rust model (shared storage), registered under the same dotted names as the plain
PyTorch twin's, in the same order: ``linpath.flatten``, ``assign``, ``interpolate``, state_dicts,
:func:`linpath.train` and ``TrajectoryRecorder`` work on it as on any module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from .. import _linpath


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


class NativeModel(nn.Module):
    """A model whose parameters belong to a LibTorch model in Rust (``linpath._linpath.NativeNet``).

    The model lives on the CPU in float32: ``.to()``, ``.double()`` and the like raise TypeError
    (use ``to_torch()``, where a subclass has one, for a movable copy). ``forward`` runs in Rust.

    Class attributes:
        kind: The native model kind.
        input_dtype: The dtype inputs are converted to for training and evaluation.
    """

    kind: ClassVar[str] = ""
    input_dtype: ClassVar[torch.dtype] = torch.float32

    def __init__(self, config: Mapping[str, Any], seed: int = 0) -> None:
        super().__init__()
        rng = torch.random.get_rng_state()  # the native constructor draws from libtorch's global RNG
        try:
            self._native = _linpath.NativeNet(self.kind, dict(config))
        finally:
            torch.random.set_rng_state(rng)
        native_params = self._native.named_parameters()
        for name, tensor in native_params:
            _attach(self, name, tensor)
        names = [n for n, _ in self.named_parameters()]
        if names != [n for n, _ in native_params]:  # the module tree must list them in Rust's order
            raise RuntimeError(f"parameter order differs from the native model's: {names}")
        self.reset_parameters(seed)

    def reset_parameters(self, seed: int = 0) -> None:
        """Draws the parameters afresh from a generator seeded with ``seed`` (each model's scheme)."""
        raise NotImplementedError(f"{type(self).__name__} must define reset_parameters")

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
