"""The paper's models, backed by LibTorch in Rust.

:class:`MLP` is an ``nn.Module`` whose parameters are the very tensors of a Rust model (shared
storage, no copies): ``linpath.flatten``, ``assign``, ``interpolate``, ``TrajectoryRecorder`` and
state_dicts work on it as on any module, while :func:`linpath.train` and ``interpolate`` run it
natively in Rust. Its parameter names are ``layers.{i}.weight`` and ``layers.{i}.bias``, exactly
those of :meth:`MLP.to_torch`, the equivalent plain-PyTorch module.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .._checks import I64_END, U64_END, integer
from .native import NativeModel, draw_uniform, weight_init

ACTIVATIONS = ("relu", "sigmoid", "tanh", "maxout")


def _dropout_pair(dropout: Any) -> tuple[float, float]:
    if dropout is None:
        return 0.0, 0.0
    if isinstance(dropout, Sequence) and len(dropout) == 2:
        return float(dropout[0]), float(dropout[1])
    raise ValueError(
        f"dropout must be None or an (input, hidden) pair of drop probabilities, got {dropout!r}"
    )


class Maxout(nn.Module):
    """Maximum over groups of ``pieces`` consecutive features: ``[batch, out·k] -> [batch, out]``."""

    def __init__(self, pieces: int) -> None:
        super().__init__()
        self.pieces = pieces

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z.view(z.shape[0], -1, self.pieces).amax(dim=2)

    def extra_repr(self) -> str:
        return f"pieces={self.pieces}"


def _activation_module(activation: str, pieces: int) -> nn.Module:
    return {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}.get(activation, lambda: Maxout(pieces))()


class TorchMLP(nn.Module):
    """The plain-PyTorch twin of :class:`MLP` (same parameter names, shapes and outputs).

    Layer ``i`` is ``layers[i]`` (an ``nn.Linear`` with ``out·pieces`` outputs for maxout hidden
    layers); dropout acts on the input and on each hidden layer's output while training.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str = "relu",
        pieces: int = 2,
        dropout: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        p_in, p_hidden = _dropout_pair(dropout)
        k = pieces if activation == "maxout" else 1
        depth = len(sizes) - 1
        self.layers = nn.ModuleList(
            nn.Linear(sizes[i], sizes[i + 1] * (k if i < depth - 1 else 1)) for i in range(depth)
        )
        self.activation = _activation_module(activation, pieces)
        self.input_dropout, self.hidden_dropout = nn.Dropout(p_in), nn.Dropout(p_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.input_dropout(x)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.layers) - 1:
                h = self.hidden_dropout(self.activation(h))
        return h


class _Affine(nn.Module):
    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)  # shares storage with the Rust variable
        self.bias = nn.Parameter(bias)


class MLP(NativeModel):
    """A fully connected network run by LibTorch in Rust (the paper's MNIST models).

    Args:
        sizes: Layer widths, input first and classes last, e.g. ``(784, 240, 240, 10)``.
        activation: ``"relu"``, ``"sigmoid"``, ``"tanh"`` or ``"maxout"``.
        pieces: Pieces per maxout unit (maxout only).
        dropout: ``(input, hidden)`` drop probabilities while training, or None.
        seed: Seed of the initialisation (from a private generator, so the global torch RNG is left
            alone).
        init: ``"default"`` (PyTorch's ``nn.Linear`` scheme) or ``"uniform"`` (pylearn2's ``irange``:
            every weight uniform in ±``irange``, every bias ``bias_init``).
        irange: Half-width of the uniform weights (``init="uniform"`` only).
        bias_init: Value of every bias (``init="uniform"`` only).

    Raises:
        ValueError: For an unknown ``activation`` or ``init``, widths outside [1, 2**63), fewer
            than 2 maxout pieces, an ``irange`` that is not positive and finite or a ``bias_init``
            that is not finite.
        TypeError: For arguments of the wrong type.

    One of linpath's native models (:class:`linpath.models.NativeModel`, kind ``"mlp"``); its sweeps
    compute the first layer once per batch for every point of a line or plane.

    The parameters are ``layers.{i}.weight`` (shape ``[out·pieces, in]``) and ``layers.{i}.bias``.
    The model lives on the CPU in float32: ``.to()``, ``.double()`` and the like raise TypeError
    (use :meth:`to_torch` for a movable copy). ``forward`` runs in Rust; for training use
    :func:`linpath.train`, or train ``to_torch()`` with PyTorch and load its state_dict back.
    """

    kind = "mlp"

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str = "relu",
        pieces: int = 2,
        dropout: tuple[float, float] | None = None,
        seed: int = 0,
        init: str = "default",
        irange: float = 0.005,
        bias_init: float = 0.0,
    ) -> None:
        self._init = weight_init(init, irange, bias_init)
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; use one of {ACTIVATIONS}")
        if isinstance(sizes, str | bytes) or not isinstance(sizes, Iterable):
            raise TypeError(f"sizes must be a sequence of layer widths, got {sizes!r}")
        widths = [integer(f"sizes[{i}]", s, 1, I64_END) for i, s in enumerate(sizes)]
        # pieces only matters for maxout (the native model ignores it otherwise).
        maxout = activation == "maxout"
        pieces = integer("pieces", pieces, 2, I64_END) if maxout else integer("pieces", pieces)
        seed = integer("seed", seed, -I64_END, U64_END)
        p_in, p_hidden = _dropout_pair(dropout)
        config = {
            "sizes": widths,
            "activation": activation,
            "pieces": pieces if maxout else 2,
            "input_dropout": p_in,
            "hidden_dropout": p_hidden,
        }
        super().__init__(config, seed)

    def _register_native_parameters(self, params: list[tuple[str, torch.Tensor]]) -> None:
        """``layers``: an ``nn.ModuleList`` of affine layers holding the native tensors."""
        named = dict(params)
        depth = len(self._config["sizes"]) - 1
        self.layers = nn.ModuleList(
            _Affine(named[f"layers.{i}.weight"], named[f"layers.{i}.bias"]) for i in range(depth)
        )

    def _linpath_split_ok(self, split: Any) -> bool:
        """The native MLP sweep needs ``(X, Y)`` pairs of 2-D float inputs and int64 class targets."""
        return split.class_pair is not None

    def _linpath_native_pair(self, split: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return split.class_pair

    def reset_parameters(self, seed: int = 0) -> None:
        """Draws the parameters afresh from a generator seeded with ``seed``: as ``nn.Linear`` does
        (``init="default"``), or weights uniform in ±``irange`` and biases ``bias_init``
        (``init="uniform"``)."""
        gen = torch.Generator().manual_seed(int(seed))
        if self._init["init"] == "uniform":
            draw_uniform(self.layers, self._init["irange"], self._init["bias_init"], gen)
            return
        with torch.no_grad():
            for layer in self.layers:
                weight, bias = layer.get_parameter("weight"), layer.get_parameter("bias")
                nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=gen)
                bound = 1.0 / math.sqrt(weight.shape[1])
                nn.init.uniform_(bias, -bound, bound, generator=gen)

    @property
    def sizes(self) -> list[int]:
        """Layer widths, input first."""
        return list(self._config["sizes"])

    @property
    def activation(self) -> str:
        """The hidden-layer nonlinearity."""
        return str(self._config["activation"])

    @property
    def pieces(self) -> int:
        """Pieces per maxout unit (1 for other activations)."""
        return int(self._config["pieces"]) if self.activation == "maxout" else 1

    @property
    def dropout(self) -> tuple[float, float]:
        """``(input, hidden)`` drop probabilities."""
        return (float(self._config["input_dropout"]), float(self._config["hidden_dropout"]))

    @property
    def init(self) -> str:
        """The initialisation scheme: ``"default"`` or ``"uniform"``."""
        return str(self._init["init"])

    @property
    def irange(self) -> float:
        """Half-width of the uniform initial weights (used with ``init="uniform"``)."""
        return float(self._init["irange"])

    @property
    def bias_init(self) -> float:
        """Initial value of every bias (used with ``init="uniform"``)."""
        return float(self._init["bias_init"])

    def to_torch(self) -> TorchMLP:
        """An equivalent plain-PyTorch module holding a copy of the parameters (same names)."""
        twin = TorchMLP(self.sizes, self.activation, self.pieces, self.dropout)
        twin.load_state_dict(self.state_dict())
        return twin.train(self.training)

    @classmethod
    def from_state_dict(
        cls,
        state_dict: Mapping[str, torch.Tensor],
        activation: str = "relu",
        pieces: int = 2,
        dropout: tuple[float, float] | None = None,
    ) -> MLP:
        """An MLP holding the parameters of ``state_dict`` (e.g. a :class:`TorchMLP`'s); infers the sizes."""
        found = [state_dict.get(f"layers.{i}.weight") for i in range(len(state_dict))]
        weights = [w for w in found if w is not None]
        if not weights or any(w.dim() != 2 for w in weights):
            raise ValueError("state_dict must hold 2-D tensors named layers.0.weight, layers.1.weight, ...")
        k = pieces if activation == "maxout" else 1
        for i in range(1, len(weights)):
            if weights[i].shape[1] * k != weights[i - 1].shape[0]:
                raise ValueError(
                    f"layer sizes do not chain: layers.{i - 1}.weight has {weights[i - 1].shape[0]} outputs "
                    f"but layers.{i}.weight takes {weights[i].shape[1]} inputs (x {k} pieces)"
                )
        sizes = [int(w.shape[1]) for w in weights] + [int(weights[-1].shape[0])]
        model = cls(sizes, activation, pieces, dropout)
        model.load_state_dict(state_dict)
        return model

    def _apply(self, fn: Any, recurse: bool = True) -> MLP:
        raise TypeError(
            "a linpath MLP lives on the CPU in float32 (its tensors belong to the Rust model); "
            "use model.to_torch() for a copy you can move or convert"
        )

    def extra_repr(self) -> str:
        config = f"activation={self.activation!r}, pieces={self.pieces}, dropout={self.dropout}"
        if self.init == "uniform":
            config += f", init='uniform', irange={self.irange}, bias_init={self.bias_init}"
        return f"sizes={self.sizes}, {config}"
