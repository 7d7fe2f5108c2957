"""The multi-prediction deep Boltzmann machine (Goodfellow, Mirza, Courville & Bengio, 2013).

:class:`MPDBM` is the MNIST model of the paper's Fig. 7: binary visible units ``v`` (pixel
intensities in [0, 1]), two binary hidden layers ``h1`` and ``h2``, and a one-hot label ``y``
attached to ``h2``, with energy
``E = −v·W1ᵀh1 − h1·W2ᵀh2 − h2·W3ᵀy − bv·v − b1·h1 − b2·h2 − by·y``.

Parameters, in order (``w*`` stored ``[upper layer, lower layer]``; row ``j`` holds unit ``j``'s
connections to the layer below, which the trainer's ``max_norm`` bounds, as pylearn2's
``max_col_norm``):

=================  ============================
``visible_bias``   ``[n_visible]``
``w1``             ``[n_hidden1, n_visible]``
``hidden1_bias``   ``[n_hidden1]``
``w2``             ``[n_hidden2, n_hidden1]``
``hidden2_bias``   ``[n_hidden2]``
``w3``             ``[n_classes, n_hidden2]``
``label_bias``     ``[n_classes]``
=================  ============================

Mean-field inference (in Rust), with some variables clamped to the data and the others predicted:
predicted pixels start at ``σ(bv)`` and a predicted label at ``softmax(by)``; one bottom-up pass
with doubled weights from below gives ``h1 = σ(2·v W1ᵀ + b1)``, ``h2 = σ(h1 W2ᵀ + y W3 + b2)``;
then ``mf_steps`` updates in the order ``h1 = σ(v W1ᵀ + h2 W2 + b1)``,
``h2 = σ(h1 W2ᵀ + y W3 + b2)``, predicted ``v = σ(h1 W1 + bv)``, predicted
``y = softmax(h2 W3ᵀ + by)``.

The objective J (training and :meth:`MPDBM.evaluate`) is the multi-prediction loss: each pixel and
the label are predicted independently with probability ``mask_prob`` from the rest; an example's
loss is the summed cross-entropy of its predicted variables (binary cross-entropy against the
pixel intensity, ``−log Q(y = label)``) divided by ``n_visible + 1``, and J is its mean over the
examples (nats per variable). Training draws the masks from the global torch generator (which
:func:`linpath.train` seeds); evaluation masks are fixed by ``eval_seed`` and each row's index in
the split, so every point of a line sweep uses the same masks. The error rate and ``forward``
are the classifier: all pixels observed, ``log Q(y)`` predicted.
"""

from __future__ import annotations

from typing import TypedDict

import torch

from .._checks import I64_END, U64_END, integer, real
from .native import NativeModel

INITS = ("sparse", "gaussian")
DEFAULT_INIT_SCALE = {"sparse": 1.0, "gaussian": 0.01}


class _MPDBMConfig(TypedDict):
    """The checked configuration of an :class:`MPDBM`, as passed to Rust."""

    n_visible: int
    n_hidden1: int
    n_hidden2: int
    n_classes: int
    mf_steps: int
    mask_prob: float
    eval_seed: int
    eval_rows: int


class MPDBM(NativeModel):
    """A multi-prediction DBM run by LibTorch in Rust (see the module documentation).

    Args:
        n_visible: Visible units (784 for MNIST).
        n_hidden1: Units of the first hidden layer (500, the MNIST DBM).
        n_hidden2: Units of the second hidden layer, attached to the label (1000).
        n_classes: Label classes (at least 2).
        mf_steps: Mean-field updates after the bottom-up pass (14, pylearn2's MP-DBM ``niter``).
        mask_prob: Probability that a variable is predicted in the objective, in (0, 1) (0.5,
            pylearn2's ``MaskGen(drop_prob=0.5)``).
        eval_seed: Seed of the fixed evaluation masks, in [0, 2**64).
        eval_rows: Rows per evaluation block (memory ~ eval_rows × all units × a few floats).
        init: ``"sparse"`` (the paper's "very large, sparse weights": each unit gets
            ``sparse_count`` non-zero weights to the layer below, N(0, init_scale²), the others 0)
            or ``"gaussian"`` (every weight N(0, init_scale²)).
        sparse_count: Non-zero weights per unit with ``init="sparse"`` (15, pylearn2's
            ``sparse_init``; capped at the width of the layer below).
        init_scale: Standard deviation of the initial weights; None for 1.0 (sparse) or 0.01
            (gaussian).
        seed: Seed of the initialisation (a private generator; the global torch RNG is left alone).

    Inputs are float tensors ``[n, n_visible]`` with values in [0, 1]; labels int64 ``[n]``.
    """

    kind = "mpdbm"
    objective_is_cross_entropy = False  # J is its own objective (see the class docstring)
    # The parameters, registered from the Rust model's (see NativeModel); declared for type checkers.
    w1: torch.nn.Parameter
    w2: torch.nn.Parameter
    w3: torch.nn.Parameter
    visible_bias: torch.nn.Parameter
    hidden1_bias: torch.nn.Parameter
    hidden2_bias: torch.nn.Parameter
    label_bias: torch.nn.Parameter

    def __init__(
        self,
        n_visible: int = 784,
        n_hidden1: int = 500,
        n_hidden2: int = 1000,
        n_classes: int = 10,
        mf_steps: int = 14,
        mask_prob: float = 0.5,
        eval_seed: int = 0,
        eval_rows: int = 2048,
        init: str = "sparse",
        sparse_count: int = 15,
        init_scale: float | None = None,
        seed: int = 0,
    ) -> None:
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; use one of {INITS}")
        self.init = init
        self.sparse_count = integer("sparse_count", sparse_count, 1)
        scale = DEFAULT_INIT_SCALE[init] if init_scale is None else real("init_scale", init_scale)
        if not scale > 0:
            raise ValueError(f"init_scale must be positive, got {scale}")
        self.init_scale = scale
        config: _MPDBMConfig = {
            "n_visible": integer("n_visible", n_visible, 1, I64_END),
            "n_hidden1": integer("n_hidden1", n_hidden1, 1, I64_END),
            "n_hidden2": integer("n_hidden2", n_hidden2, 1, I64_END),
            "n_classes": integer("n_classes", n_classes, 2, I64_END),
            "mf_steps": integer("mf_steps", mf_steps, 1, I64_END),
            "mask_prob": real("mask_prob", mask_prob),
            "eval_seed": integer("eval_seed", eval_seed, 0, U64_END),
            "eval_rows": integer("eval_rows", eval_rows, 1, I64_END),
        }
        self._config: _MPDBMConfig = config
        super().__init__(config, integer("seed", seed, -I64_END, U64_END))

    def reset_parameters(self, seed: int = 0, visible_mean: torch.Tensor | None = None) -> None:
        """Draws the weights afresh (``init``, see the class) from a generator seeded with ``seed``.

        Args:
            seed: Seed of the private generator.
            visible_mean: Optional mean of each pixel over the training set (``[n_visible]``, in
                [0, 1]); the visible biases are then its logit (clamped to [0.001, 0.999]), as
                pylearn2's ``bias_from_marginals``. Otherwise all biases are 0.
        """
        gen = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            for weight in (self.w1, self.w2, self.w3):
                self._init_weight(weight, gen)
            for bias in (self.visible_bias, self.hidden1_bias, self.hidden2_bias, self.label_bias):
                bias.zero_()
            if visible_mean is not None:
                self.visible_bias.copy_(self._visible_logit(visible_mean))

    def _init_weight(self, weight: torch.Tensor, gen: torch.Generator) -> None:
        if self.init == "gaussian":
            weight.normal_(0.0, self.init_scale, generator=gen)
            return
        units, fan_in = weight.shape
        count = min(self.sparse_count, fan_in)
        chosen = torch.rand(units, fan_in, generator=gen).argsort(dim=1)[:, :count]
        values = torch.randn(units, count, generator=gen) * self.init_scale
        weight.zero_().scatter_(1, chosen, values)

    def _visible_logit(self, mean: torch.Tensor) -> torch.Tensor:
        if not isinstance(mean, torch.Tensor) or mean.shape != (self.n_visible,):
            raise ValueError(f"visible_mean must be a tensor of shape [{self.n_visible}]")
        if not mean.is_floating_point() or not bool(((mean >= 0) & (mean <= 1)).all()):
            raise ValueError("visible_mean must hold floating-point pixel means in [0, 1]")
        return torch.logit(mean.detach().double().clamp(1e-3, 1 - 1e-3)).float()

    @property
    def n_visible(self) -> int:
        """Visible units."""
        return self._config["n_visible"]

    @property
    def n_hidden1(self) -> int:
        """Units of the first hidden layer."""
        return self._config["n_hidden1"]

    @property
    def n_hidden2(self) -> int:
        """Units of the second hidden layer."""
        return self._config["n_hidden2"]

    @property
    def n_classes(self) -> int:
        """Label classes."""
        return self._config["n_classes"]

    @property
    def mf_steps(self) -> int:
        """Mean-field updates after the bottom-up pass."""
        return self._config["mf_steps"]

    @property
    def mask_prob(self) -> float:
        """Probability that a variable is predicted in the objective."""
        return self._config["mask_prob"]

    @property
    def eval_seed(self) -> int:
        """Seed of the evaluation masks."""
        return self._config["eval_seed"]

    @property
    def eval_rows(self) -> int:
        """Rows per evaluation block."""
        return self._config["eval_rows"]

    def extra_repr(self) -> str:
        sizes = f"{self.n_visible}-{self.n_hidden1}-{self.n_hidden2}-{self.n_classes}"
        return (
            f"sizes={sizes}, mf_steps={self.mf_steps}, mask_prob={self.mask_prob}, "
            f"init={self.init!r}, init_scale={self.init_scale}"
        )
