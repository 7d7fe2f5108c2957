"""The convolutional maxout network of Goodfellow et al. (2013) for CIFAR-10: :class:`ConvMaxout`.

Layout (identical in Rust, in :class:`ConvMaxout` and in its plain-PyTorch twin
:class:`TorchConvMaxout`):

* conv maxout layer ``i`` (``convs.{i}.weight`` ``[channels[i]·pieces, in, k, k]``, ``convs.{i}.bias``):
  a stride-1 convolution with zero padding ``paddings[i]``; maxout over groups of ``pieces``
  *consecutive* channels (``[n, channels·pieces, H, W]`` viewed as ``[n, channels, pieces, H, W]``,
  maximum over dimension 2, as pylearn2's ``MaxoutConvC01B``); then max pooling with window
  ``pools[i]`` and stride ``pool_strides[i]`` in ceil mode (``nn.MaxPool2d(ceil_mode=True)``: the last
  window may hang over the edge, as in the cuda-convnet pooling of the original code);
* a fully connected maxout layer (``fc``: ``fc_units`` units × ``fc_pieces`` pieces, consecutive rows)
  on the flattened ``[C, H, W]`` feature map;
* a linear softmax layer (``out``) giving the logits.

Dropout (inverted) acts on the input of every layer while training: ``input_dropout`` on the images,
``hidden_dropout`` on the inputs of the other conv layers, of ``fc`` and of ``out``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .._checks import I64_END, U64_END, integer, real
from .native import NativeModel, draw_uniform, weight_init

SMALL_CONFIG: dict[str, Any] = {
    "input_shape": (3, 32, 32),
    "channels": (32, 64, 64),
    "kernels": (5, 5, 5),
    "paddings": (2, 2, 2),
    "pools": (2, 2, 2),
    "pool_strides": (2, 2, 2),
    "pieces": 2,
    "fc_units": 200,
    "fc_pieces": 2,
    "classes": 10,
    "input_dropout": 0.2,
    "hidden_dropout": 0.5,
}
"""A CPU-sized network (the default of :class:`ConvMaxout`; Rust's ``ConvMaxoutConfig::small()``):
32/64/64 channels × 2 pieces, 5×5 kernels with padding 2, 2×2 pools with stride 2 (32 → 16 → 8 → 4),
a 200 × 2 maxout layer, and the paper's dropout."""

PAPER_CONFIG: dict[str, Any] = {
    "input_shape": (3, 32, 32),
    "channels": (96, 192, 192),
    "kernels": (8, 8, 5),
    "paddings": (4, 3, 3),
    "pools": (4, 4, 2),
    "pool_strides": (2, 2, 2),
    "pieces": 2,
    "fc_units": 500,
    "fc_pieces": 5,
    "classes": 10,
    "input_dropout": 0.2,
    "hidden_dropout": 0.5,
}
"""The CIFAR-10 network of Goodfellow et al. 2013 (pylearn2's ``papers/maxout/cifar10.yaml``; Rust's
``ConvMaxoutConfig::default()``): feature maps 16×16, 7×7 and 5×5, a 500 × 5 maxout layer."""

PAPER_INIT: dict[str, Any] = {"init": "uniform", "irange": 0.005, "bias_init": 0.0}
"""The initialisation of pylearn2's ``papers/maxout/cifar10.yaml`` (:meth:`ConvMaxout.paper`):
``irange: .005`` on all five layers, biases 0 (pylearn2's default ``init_bias``)."""

PAPER_MAX_NORMS: dict[str, float] = {
    "convs.0.weight": 0.9,
    "convs.1.weight": 1.9365,
    "convs.2.weight": 1.9365,
    "fc.weight": 1.9,
    "out.weight": 1.9365,
}
"""The same file's norm limits (``max_kernel_norm`` of the conv layers: each output channel's
kernel; ``max_col_norm`` of the maxout and softmax layers: each row here), by parameter name. The
conv layers' weights and biases learn at 0.05 times the rate (``W_lr_scale``, ``b_lr_scale``)."""

_LAYER_LISTS = ("channels", "kernels", "paddings", "pools", "pool_strides")


_LIST_RANGES = {"paddings": (0, I64_END), "pools": (1, 2**31), "pool_strides": (1, 2**31)}
"""Ranges other than [1, 2**63) (libtorch's max pooling takes windows and strides as C ints)."""


def _ints(name: str, value: Any) -> list[int]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence | torch.Size):
        raise TypeError(f"{name} must be a sequence of ints (one per conv layer), got {value!r}")
    low, high = _LIST_RANGES.get(name, (1, I64_END))
    return [integer(f"{name}[{i}]", v, low, high) for i, v in enumerate(value)]


def _config(**values: Any) -> dict[str, Any]:
    """The native config dict with types and single values' ranges checked, normalised (list
    lengths, feature-map sizes and parameter counts are checked natively)."""
    config: dict[str, Any] = {k: _ints(k, values[k]) for k in _LAYER_LISTS}
    shape = _ints("input_shape", values["input_shape"])
    if len(shape) != 3:
        raise ValueError(f"input_shape must be (channels, height, width), got {values['input_shape']!r}")
    config["input_shape"] = shape
    lows = {"pieces": 2, "fc_units": 1, "fc_pieces": 2, "classes": 1}
    config |= {k: integer(k, values[k], low, I64_END) for k, low in lows.items()}
    config |= {k: real(k, values[k]) for k in ("input_dropout", "hidden_dropout")}
    return config


class TorchConvMaxout(nn.Module):
    """The plain-PyTorch twin of :class:`ConvMaxout` (same parameter names, shapes and outputs).

    It takes the same configuration arguments (see :class:`ConvMaxout`) and is initialised by
    PyTorch's ``nn.Conv2d`` / ``nn.Linear`` defaults from the global RNG.
    """

    def __init__(
        self,
        channels: Sequence[int] = SMALL_CONFIG["channels"],
        kernels: Sequence[int] = SMALL_CONFIG["kernels"],
        paddings: Sequence[int] = SMALL_CONFIG["paddings"],
        pools: Sequence[int] = SMALL_CONFIG["pools"],
        pool_strides: Sequence[int] = SMALL_CONFIG["pool_strides"],
        pieces: int = SMALL_CONFIG["pieces"],
        fc_units: int = SMALL_CONFIG["fc_units"],
        fc_pieces: int = SMALL_CONFIG["fc_pieces"],
        classes: int = SMALL_CONFIG["classes"],
        input_shape: Sequence[int] = SMALL_CONFIG["input_shape"],
        input_dropout: float = SMALL_CONFIG["input_dropout"],
        hidden_dropout: float = SMALL_CONFIG["hidden_dropout"],
    ) -> None:
        super().__init__()
        self.pieces, self.fc_pieces = int(pieces), int(fc_pieces)
        ins = [int(input_shape[0]), *(int(c) for c in channels[:-1])]
        self.convs = nn.ModuleList(
            nn.Conv2d(c_in, int(c) * self.pieces, int(k), padding=int(p))
            for c_in, c, k, p in zip(ins, channels, kernels, paddings, strict=True)
        )
        self.pools = nn.ModuleList(
            nn.MaxPool2d(int(p), int(s), ceil_mode=True) for p, s in zip(pools, pool_strides, strict=True)
        )
        with torch.no_grad():  # the flattened feature map's size (nothing random is drawn)
            h = torch.zeros(1, *(int(s) for s in input_shape))
            for conv, pool in zip(self.convs, self.pools, strict=True):
                h = pool(self._maxout(conv(h), self.pieces))
        self.fc = nn.Linear(h.numel(), int(fc_units) * self.fc_pieces)
        self.out = nn.Linear(int(fc_units), int(classes))
        self.input_dropout, self.hidden_dropout = nn.Dropout(input_dropout), nn.Dropout(hidden_dropout)

    @staticmethod
    def _maxout(z: torch.Tensor, pieces: int) -> torch.Tensor:
        """Maximum over groups of ``pieces`` consecutive channels (dimension 1)."""
        return z.view(z.shape[0], z.shape[1] // pieces, pieces, *z.shape[2:]).amax(dim=2)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """The conv maxout stack, flattened (dropout on the inputs of the layers after the first)."""
        h = x
        for i, (conv, pool) in enumerate(zip(self.convs, self.pools, strict=True)):
            if i > 0:
                h = self.hidden_dropout(h)
            h = pool(self._maxout(conv(h), self.pieces))
        return h.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for images ``x`` (``[n, C, H, W]``)."""
        h = self.hidden_dropout(self._features(self.input_dropout(x)))
        h = self.hidden_dropout(self._maxout(self.fc(h), self.fc_pieces))
        return self.out(h)


class ConvMaxout(NativeModel):
    """The convolutional maxout network (Goodfellow et al. 2013), run by LibTorch in Rust.

    The defaults are :data:`SMALL_CONFIG`, a network that trains on a small CPU (about 3 ms per
    example forward and backward on 2 cores); :meth:`paper` builds the paper's CIFAR-10 network
    (:data:`PAPER_CONFIG`). See the module documentation for the layout.

    Args:
        channels: Maxout channels of each conv layer (the convolution has ``channels·pieces`` outputs).
        kernels: Square kernel size of each conv layer.
        paddings: Zero padding of each conv layer's input (on each side).
        pools: Square max-pooling window of each conv layer.
        pool_strides: Pooling stride of each conv layer.
        pieces: Pieces per maxout channel in the conv layers (at least 2).
        fc_units: Units of the fully connected maxout layer.
        fc_pieces: Pieces per unit of the fully connected maxout layer (at least 2).
        classes: Number of classes.
        input_shape: ``(channels, height, width)`` of the input images.
        input_dropout: Drop probability of the input values while training.
        hidden_dropout: Drop probability of the other layers' inputs while training.
        seed: Seed of the initialisation (drawn from a private generator, so the global torch RNG is
            left alone).
        init: ``"default"`` (PyTorch's ``nn.Conv2d`` / ``nn.Linear`` scheme) or ``"uniform"``
            (pylearn2's ``irange``: every weight uniform in ±``irange``, every bias ``bias_init``).
        irange: Half-width of the uniform weights (``init="uniform"`` only; the paper: 0.005).
        bias_init: Value of every bias (``init="uniform"`` only).

    Raises:
        TypeError: For arguments of the wrong type.
        ValueError: For lists of different lengths or empty, sizes outside [1, 2**63) (paddings
            [0, 2**63), pools and pool_strides [1, 2**31)), fewer than 2 pieces, dropout outside
            [0, 1), a stack that shrinks the feature map below a pooling window, parameters (or
            one example's activations) that would not fit in this machine's memory, an unknown
            ``init``, an ``irange`` that is not positive and finite or a ``bias_init`` that is not finite.

    Inputs are float images ``[n, *input_shape]``, targets int64 class indices ``[n]``. Training
    objective: the mean cross-entropy with dropout; :meth:`evaluate`: mean cross-entropy and error
    rate without dropout. The model lives on the CPU in float32; ``.to()`` and the like raise
    TypeError (use :meth:`to_torch`).
    """

    kind = "conv_maxout"
    # Plain modules holding the parameters registered from the Rust model's (see NativeModel):
    # ``convs.<i>.weight/bias``, ``fc.weight/bias``, ``out.weight/bias``; declared for type checkers.
    convs: nn.Module
    fc: nn.Module
    out: nn.Module

    def __init__(
        self,
        channels: Sequence[int] = SMALL_CONFIG["channels"],
        kernels: Sequence[int] = SMALL_CONFIG["kernels"],
        paddings: Sequence[int] = SMALL_CONFIG["paddings"],
        pools: Sequence[int] = SMALL_CONFIG["pools"],
        pool_strides: Sequence[int] = SMALL_CONFIG["pool_strides"],
        pieces: int = SMALL_CONFIG["pieces"],
        fc_units: int = SMALL_CONFIG["fc_units"],
        fc_pieces: int = SMALL_CONFIG["fc_pieces"],
        classes: int = SMALL_CONFIG["classes"],
        input_shape: Sequence[int] = SMALL_CONFIG["input_shape"],
        input_dropout: float = SMALL_CONFIG["input_dropout"],
        hidden_dropout: float = SMALL_CONFIG["hidden_dropout"],
        seed: int = 0,
        init: str = "default",
        irange: float = 0.005,
        bias_init: float = 0.0,
    ) -> None:
        self._init = weight_init(init, irange, bias_init)
        config = _config(
            channels=channels,
            kernels=kernels,
            paddings=paddings,
            pools=pools,
            pool_strides=pool_strides,
            pieces=pieces,
            fc_units=fc_units,
            fc_pieces=fc_pieces,
            classes=classes,
            input_shape=input_shape,
            input_dropout=input_dropout,
            hidden_dropout=hidden_dropout,
        )
        super().__init__(config, integer("seed", seed, -I64_END, U64_END))
        self._config = config

    @classmethod
    def paper(cls, seed: int = 0, **overrides: Any) -> ConvMaxout:
        """The CIFAR-10 network of Goodfellow et al. 2013 (:data:`PAPER_CONFIG`) with its
        initialisation (:data:`PAPER_INIT`: weights uniform in ±0.005, biases 0), with ``overrides``."""
        return cls(**(PAPER_CONFIG | PAPER_INIT | overrides), seed=seed)

    def reset_parameters(self, seed: int = 0) -> None:
        """Draws the parameters afresh, layer by layer, from a generator seeded with ``seed``: with
        ``init="default"`` as ``nn.Conv2d`` / ``nn.Linear`` do (Kaiming-uniform weights with a = √5,
        biases uniform in ±1/√fan_in), with ``init="uniform"`` weights uniform in ±``irange`` and
        biases ``bias_init``."""
        gen = torch.Generator().manual_seed(integer("seed", seed))
        layers = [*self.convs.children(), self.fc, self.out]
        if self._init["init"] == "uniform":
            draw_uniform(layers, self._init["irange"], self._init["bias_init"], gen)
            return
        with torch.no_grad():
            for layer in layers:
                weight, bias = layer.get_parameter("weight"), layer.get_parameter("bias")
                nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=gen)
                bound = 1.0 / math.sqrt(weight[0].numel())
                nn.init.uniform_(bias, -bound, bound, generator=gen)

    @property
    def config(self) -> dict[str, Any]:
        """The configuration, as keyword arguments of the constructor (a copy; the initialisation's
        ``init``, ``irange`` and ``bias_init`` last)."""
        return self._architecture() | self._init

    def _architecture(self) -> dict[str, Any]:
        """The keyword arguments that shape the network (those of :class:`TorchConvMaxout`)."""
        return {k: (tuple(v) if isinstance(v, list) else v) for k, v in self._config.items()}

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

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(channels, height, width)`` of the input images."""
        c, h, w = self._config["input_shape"]
        return c, h, w

    @property
    def channels(self) -> tuple[int, ...]:
        """Maxout channels of each conv layer."""
        return tuple(self._config["channels"])

    @property
    def kernels(self) -> tuple[int, ...]:
        """Kernel size of each conv layer."""
        return tuple(self._config["kernels"])

    @property
    def paddings(self) -> tuple[int, ...]:
        """Zero padding of each conv layer."""
        return tuple(self._config["paddings"])

    @property
    def pools(self) -> tuple[int, ...]:
        """Pooling window of each conv layer."""
        return tuple(self._config["pools"])

    @property
    def pool_strides(self) -> tuple[int, ...]:
        """Pooling stride of each conv layer."""
        return tuple(self._config["pool_strides"])

    @property
    def pieces(self) -> int:
        """Pieces per maxout channel of the conv layers."""
        return self._config["pieces"]

    @property
    def fc_units(self) -> int:
        """Units of the fully connected maxout layer."""
        return self._config["fc_units"]

    @property
    def fc_pieces(self) -> int:
        """Pieces per unit of the fully connected maxout layer."""
        return self._config["fc_pieces"]

    @property
    def classes(self) -> int:
        """Number of classes."""
        return self._config["classes"]

    @property
    def dropout(self) -> tuple[float, float]:
        """``(input, hidden)`` drop probabilities while training."""
        return self._config["input_dropout"], self._config["hidden_dropout"]

    def to_torch(self) -> TorchConvMaxout:
        """An equivalent :class:`TorchConvMaxout` holding a copy of the parameters (same names, same
        train/eval mode); the global torch RNG is left as it was."""
        with torch.random.fork_rng(devices=[]):
            twin = TorchConvMaxout(**self._architecture())
        twin.load_state_dict(self.state_dict())
        return twin.train(self.training)

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor], **config: Any) -> ConvMaxout:
        """A ConvMaxout with configuration ``config`` (constructor arguments; the defaults otherwise)
        holding the parameters of ``state_dict`` (e.g. a :class:`TorchConvMaxout`'s).

        Raises:
            ValueError: If the names or shapes of ``state_dict`` do not match the configuration.
        """
        model = cls(**config)
        expected = {name: tuple(p.shape) for name, p in model.named_parameters()}
        given = {name: tuple(t.shape) for name, t in state_dict.items()}
        if given != expected:
            raise ValueError(
                f"state_dict does not fit this configuration: expected {expected}, got {given}; "
                "pass the configuration the parameters were made with"
            )
        model.load_state_dict(state_dict)
        return model

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config.items())
