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

from collections.abc import Sequence
from typing import Any, TypedDict

import torch

from .._checks import I64_END, U64_END, integer, real
from .native import NativeModel, finite, positive

INITS = ("sparse", "gaussian")
DEFAULT_INIT_SCALE = {"sparse": 1.0, "gaussian": 0.01}
LAYER_INITS = {"sparse": ("count", "stdev"), "uniform": ("irange",), "gaussian": ("stdev",)}
"""The forms of a ``layer_init`` entry (see :class:`MPDBM`): the name, then these numbers."""
VISIBLE_BIAS_FROM = ("zero", "data")
MARGINAL_CLIP = 1e-7
"""Pixel means are clipped to [MARGINAL_CLIP, 1 − MARGINAL_CLIP] before their logit, as pylearn2's
``init_sigmoid_bias_from_array`` (``pylearn2/models/dbm/__init__.py``)."""

LayerInit = tuple[Any, ...]
"""One checked ``layer_init`` entry: ``("sparse", count, stdev)``, ``("uniform", irange)`` or
``("gaussian", stdev)``."""

PAPER_CONFIG: dict[str, Any] = {
    "n_visible": 784,
    "n_hidden1": 500,
    "n_hidden2": 1000,
    "n_classes": 10,
    "mf_steps": 14,
    "mask_prob": 0.5,
    "layer_init": (("sparse", 15, 1.0), ("uniform", 0.00638830865761), ("sparse", 23, 1.0)),
    "hidden_biases": (-0.710467, -0.393587),
    "visible_bias_from": "data",
}
"""The MNIST MP-DBM of Goodfellow et al. 2013 (:meth:`MPDBM.paper`): the paper's 500/1000 hidden
units with the initialisation of pylearn2's ``scripts/papers/mpdbm/mpdbm.yaml`` (``sparse_init: 15``
on W1, ``irange: 0.00638830865761`` on W2, ``sparse_init: 23`` on the label weights, each non-zero
N(0, 1); ``init_bias`` −0.710467 and −0.393587; visible biases ``bias_from_marginals``;
``niter: 14``; ``MaskGen(drop_prob=0.5)``). That file itself uses 2087 and 3200 hidden units."""

PAPER_MAX_NORMS: dict[str, float] = {"w1": 1.809978, "w2": 2.666304, "w3": 5.175683}
"""The same file's ``max_col_norm`` of each weight (a bound on each row here), by parameter name."""


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
        layer_init: None (``init``, ``sparse_count`` and ``init_scale`` for all three weights) or
            one entry per weight, ``(w1, w2, w3)``, replacing those three arguments:

            =============================  ===========================================================
            ``("sparse", count, stdev)``   each unit (row) gets ``count`` non-zero weights to the
                                           layer below, at places drawn uniformly without
                                           replacement, values N(0, stdev²) (pylearn2's
                                           ``sparse_init``, ``sparse_stdev``); ``count`` at most
                                           the width of the layer below
            ``("uniform", irange)``        every weight uniform in ±irange (pylearn2's ``irange``)
            ``("gaussian", stdev)``        every weight N(0, stdev²)
            =============================  ===========================================================

            Lists work as well as tuples (JSON). The paper's: ``(("sparse", 15, 1.0), ("uniform",
            0.00638830865761), ("sparse", 23, 1.0))`` (:data:`PAPER_CONFIG`).
        hidden_biases: Initial biases of the two hidden layers (pylearn2's ``init_bias``; the
            paper: −0.71 and −0.39). The label biases start at 0.
        visible_bias_from: ``"zero"`` (visible biases start at 0) or ``"data"``: the model is meant
            to get its visible biases from the training data's pixel means (pylearn2's
            ``bias_from_marginals``); they stay 0 until :meth:`fit_visible_bias` is called with
            the training inputs, which whoever builds the model from a configuration must do.

    Raises:
        TypeError: For arguments of the wrong type.
        ValueError: For values outside the ranges above, naming the argument (e.g. a
            ``layer_init`` of the wrong length, an unknown form, a count above the layer below's
            width, a scale that is not positive and finite, or ``layer_init`` together with
            ``init``, ``sparse_count`` or ``init_scale``).

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
        layer_init: Sequence[Sequence[Any]] | None = None,
        hidden_biases: Sequence[float] = (0.0, 0.0),
        visible_bias_from: str = "zero",
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
        legacy_given = init != "sparse" or sparse_count != 15 or init_scale is not None
        self._set_layer_init(layer_init, legacy_given)
        self.hidden_biases = _hidden_biases(hidden_biases)
        if not isinstance(visible_bias_from, str) or visible_bias_from not in VISIBLE_BIAS_FROM:
            raise ValueError(
                f"visible_bias_from must be one of {VISIBLE_BIAS_FROM}, got {visible_bias_from!r}"
            )
        self.visible_bias_from = visible_bias_from
        super().__init__(config, integer("seed", seed, -I64_END, U64_END))

    def _set_layer_init(self, layer_init: Any, legacy_given: bool) -> None:
        """Sets :attr:`layer_init`: the checked argument, or else ``init``, ``sparse_count`` and
        ``init_scale`` as its entries (the count capped at each layer's fan-in)."""
        if layer_init is not None and legacy_given:
            raise ValueError("layer_init replaces init, sparse_count and init_scale: pass one or the other")
        self._layered = layer_init is not None
        fan_ins = (self.n_visible, self.n_hidden1, self.n_hidden2)
        self.layer_init: tuple[LayerInit, ...]
        if layer_init is not None:
            self.layer_init = _layer_inits(layer_init, fan_ins)
        elif self.init == "gaussian":
            self.layer_init = (("gaussian", self.init_scale),) * 3
        else:
            self.layer_init = tuple(("sparse", min(self.sparse_count, n), self.init_scale) for n in fan_ins)

    @classmethod
    def paper(cls, seed: int = 0, **overrides: Any) -> MPDBM:
        """The MNIST MP-DBM of Goodfellow et al. 2013 with the original initialisation
        (:data:`PAPER_CONFIG`), with ``overrides``. Its visible biases are 0 until
        :meth:`fit_visible_bias` is called with the training inputs."""
        return cls(**(PAPER_CONFIG | overrides), seed=seed)

    def reset_parameters(self, seed: int = 0, visible_mean: torch.Tensor | None = None) -> None:
        """Draws the weights afresh (``layer_init``, see the class) from a generator seeded with
        ``seed``, in the order w1, w2, w3; sets the hidden biases to ``hidden_biases`` and the
        visible and label biases to 0.

        Args:
            seed: Seed of the private generator.
            visible_mean: Optional mean of each pixel over the training set (``[n_visible]``, in
                [0, 1]); the visible biases are then its logit (clipped to [1e-7, 1 − 1e-7]), as
                pylearn2's ``bias_from_marginals`` (see :meth:`fit_visible_bias`).
        """
        gen = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            for weight, spec in zip((self.w1, self.w2, self.w3), self.layer_init, strict=True):
                _draw_weight(weight, spec, gen)
            for bias in (self.visible_bias, self.label_bias):
                bias.zero_()
            self.hidden1_bias.fill_(self.hidden_biases[0])
            self.hidden2_bias.fill_(self.hidden_biases[1])
            if visible_mean is not None:
                self.visible_bias.copy_(self._visible_logit(visible_mean))

    def fit_visible_bias(self, x: torch.Tensor) -> None:
        """Sets the visible biases so that σ(bias) are the pixel means of ``x``, as pylearn2's
        ``bias_from_marginals``: the logit of each column's mean (in float64), clipped to
        [1e-7, 1 − 1e-7] (:data:`MARGINAL_CLIP`). The original used the raw (grey-level) MNIST
        training images, not binarised samples.

        Args:
            x: Training inputs ``[n, n_visible]``, floating point, values in [0, 1], n ≥ 1.

        Raises:
            TypeError: If ``x`` is not a floating-point tensor.
            ValueError: If ``x`` has the wrong shape, no rows, or values outside [0, 1].
        """
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"x must be a floating-point tensor of pixel intensities, got {type(x).__name__}")
        if x.dim() != 2 or x.shape[0] == 0 or x.shape[1] != self.n_visible:
            raise ValueError(f"x must have shape [n, {self.n_visible}] with n >= 1, got {list(x.shape)}")
        if not bool(((x >= 0) & (x <= 1)).all()):
            raise ValueError("x must hold pixel intensities in [0, 1] (NaN is not one)")
        with torch.no_grad():
            self.visible_bias.copy_(self._visible_logit(x.detach().mean(dim=0, dtype=torch.float64)))

    def _visible_logit(self, mean: torch.Tensor) -> torch.Tensor:
        if not isinstance(mean, torch.Tensor) or mean.shape != (self.n_visible,):
            raise ValueError(f"visible_mean must be a tensor of shape [{self.n_visible}]")
        if not mean.is_floating_point() or not bool(((mean >= 0) & (mean <= 1)).all()):
            raise ValueError("visible_mean must hold floating-point pixel means in [0, 1]")
        return torch.logit(mean.detach().double().clamp(MARGINAL_CLIP, 1 - MARGINAL_CLIP)).float()

    @property
    def config(self) -> dict[str, Any]:
        """The configuration, as keyword arguments of the constructor (without ``seed``)."""
        init: dict[str, Any] = {"layer_init": self.layer_init}
        if not self._layered:
            init = {"init": self.init, "sparse_count": self.sparse_count, "init_scale": self.init_scale}
        knobs = {"hidden_biases": self.hidden_biases, "visible_bias_from": self.visible_bias_from}
        return dict(self._config) | init | knobs

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
        init = (
            f"layer_init={self.layer_init}"
            if self._layered
            else f"init={self.init!r}, init_scale={self.init_scale}"
        )
        if self.hidden_biases != (0.0, 0.0):
            init += f", hidden_biases={self.hidden_biases}"
        if self.visible_bias_from != "zero":
            init += f", visible_bias_from={self.visible_bias_from!r}"
        return f"sizes={sizes}, mf_steps={self.mf_steps}, mask_prob={self.mask_prob}, {init}"


def _hidden_biases(value: Any) -> tuple[float, float]:
    """``hidden_biases`` checked: two finite numbers."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != 2:
        raise ValueError(f"hidden_biases must be a pair (hidden layer 1, hidden layer 2), got {value!r}")
    return finite("hidden_biases[0]", value[0]), finite("hidden_biases[1]", value[1])


def _layer_inits(value: Any, fan_ins: tuple[int, int, int]) -> tuple[LayerInit, ...]:
    """``layer_init`` checked and normalised to tuples (see :class:`MPDBM`)."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != 3:
        raise ValueError(f"layer_init must hold three entries, for (w1, w2, w3), got {value!r}")
    return tuple(
        _layer_init(f"layer_init[{i}]", spec, fan)
        for i, (spec, fan) in enumerate(zip(value, fan_ins, strict=True))
    )


def _layer_init(name: str, spec: Any, fan_in: int) -> LayerInit:
    """One ``layer_init`` entry checked against the width ``fan_in`` of the layer below."""
    forms = "('sparse', count, stdev), ('uniform', irange) or ('gaussian', stdev)"
    if isinstance(spec, str | bytes) or not isinstance(spec, Sequence) or not spec:
        raise ValueError(f"{name} must be {forms}, got {spec!r}")
    kind, *numbers = spec
    if not isinstance(kind, str) or kind not in LAYER_INITS:
        raise ValueError(f"{name}: unknown init {kind!r}; use one of {tuple(LAYER_INITS)}")
    fields = LAYER_INITS[kind]
    if len(numbers) != len(fields):
        raise ValueError(f"{name} must be {forms}, got {spec!r}")
    if kind != "sparse":
        return kind, positive(f"{name} {fields[0]}", numbers[0])
    count = integer(f"{name} count", numbers[0], 1)
    if count > fan_in:
        raise ValueError(f"{name} count is {count}, above the {fan_in} units of the layer below")
    return kind, count, positive(f"{name} stdev", numbers[1])


def _draw_weight(weight: torch.Tensor, spec: LayerInit, gen: torch.Generator) -> None:
    """Draws ``weight`` (``[units, fan_in]``) from ``gen`` as the checked entry ``spec`` says."""
    kind = spec[0]
    if kind == "gaussian":
        weight.normal_(0.0, spec[1], generator=gen)
    elif kind == "uniform":
        weight.uniform_(-spec[1], spec[1], generator=gen)
    else:
        units, fan_in = weight.shape
        chosen = torch.rand(units, fan_in, generator=gen).argsort(dim=1)[:, : spec[1]]
        values = torch.randn(units, spec[1], generator=gen) * spec[2]
        weight.zero_().scatter_(1, chosen, values)
