"""Input preprocessing of the original recipes: GCN and ZCA (CIFAR-10 maxout), binarisation (MP-DBM).

The maxout paper's CIFAR-10 data (pylearn2's ``scripts/datasets/make_cifar10_gcn_whitened.py``)
is made in two steps, reproduced here:

1. :func:`gcn` with ``scale=55`` and pylearn2's other defaults (``subtract_mean=True``,
   ``use_std=False``, ``sqrt_bias=0``, ``min_divisor=1e-8``), per example, so the same call
   serves every split;
2. :class:`ZCA` with ``filter_bias=0.1`` (pylearn2's default), fitted on the training split and
   applied unchanged to the others (pylearn2 fitted it on all 50,000 training images; fit it on
   the split you train on so that nothing of the validation or test images leaks in).

Both compute in float64 and return the input's float dtype. The MP-DBM paper trains on MNIST
binarised by Bernoulli sampling (:func:`binarize`; see there how it differs from the original).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

import torch

from ._checks import integer, real
from ._io import atomic_write
from .checkpoints import load_saved

#: Rows per float64 block in :func:`gcn` and :class:`ZCA` (bounds the memory they use).
_CHUNK = 4096
ZCA_FORMAT = "linpath-zca"


def _design(name: str, x: Any, *, min_rows: int = 1) -> torch.Tensor:
    """``x`` as a 2-D [n, features] view (images flattened per example), checked.

    Raises:
        TypeError: If ``x`` is not a floating-point torch.Tensor.
        ValueError: If it has fewer than 2 dimensions, no features, fewer than ``min_rows``
            examples, or a NaN or infinite entry.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must hold floating-point values, got {x.dtype}; convert with .float()")
    if x.dim() < 2:
        raise ValueError(
            f"{name} must be [examples, features] or [examples, ...] images, got shape {tuple(x.shape)}"
        )
    if x.shape[0] < min_rows or x[0].numel() == 0:
        raise ValueError(
            f"{name} needs at least {min_rows} example(s) and one feature, got shape {tuple(x.shape)}"
        )
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} holds NaN or infinite values; clean the data first")
    return x.detach().reshape(x.shape[0], -1)


def _positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """``value`` as a finite float, > 0 (or >= 0 with ``allow_zero``), else a clear error."""
    number = real(name, value)
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        bound = "at least 0" if allow_zero else "above 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return number


def gcn(
    x: torch.Tensor,
    *,
    scale: float = 55.0,
    subtract_mean: bool = True,
    use_std: bool = False,
    sqrt_bias: float = 0.0,
    min_divisor: float = 1e-8,
) -> torch.Tensor:
    """Global contrast normalisation per example, as pylearn2's ``global_contrast_normalize``.

    Each example ``x_i`` (its features flattened) becomes ``scale · (x_i − m_i) / d_i`` with
    ``m_i`` its mean over features (0 unless ``subtract_mean``) and ``d_i = sqrt(sqrt_bias +
    Σ_j (x_ij − m_i)²)``, or ``sqrt(sqrt_bias + var_i)`` with the unbiased variance (ddof 1, ddof 0
    for a single feature) when ``use_std``. Where ``d_i / scale < min_divisor`` (a constant
    example) the example is only centred and left unscaled, as in pylearn2. The defaults are the
    maxout paper's CIFAR-10 recipe.

    Args:
        x: Floating-point examples, ``[n, features]`` or ``[n, ...]`` (e.g. images ``[n, 3, 32, 32]``).
        scale: The norm (or, with ``use_std``, the standard deviation) of each normalised example.
        subtract_mean: Remove each example's mean over its features first.
        use_std: Divide by the standard deviation over features instead of the vector norm.
        sqrt_bias: Added under the square root (Coates et al. use 10 with ``use_std``).
        min_divisor: Smaller divisors (after dividing by ``scale``) are replaced by 1.

    Returns:
        A new tensor of ``x``'s shape and dtype, computed in float64.

    Raises:
        TypeError: If ``x`` is not a floating-point tensor or an option is not a number.
        ValueError: If ``x`` has the wrong shape or NaN/inf values, or an option is out of range.
    """
    design = _design("x", x)
    scale = _positive("scale", scale)
    sqrt_bias = _positive("sqrt_bias", sqrt_bias, allow_zero=True)
    min_divisor = _positive("min_divisor", min_divisor, allow_zero=True)
    if scale < min_divisor:
        raise ValueError(f"scale ({scale}) must be at least min_divisor ({min_divisor})")
    out = torch.empty(design.shape, dtype=x.dtype, device=x.device)
    for start in range(0, design.shape[0], _CHUNK):  # per example: blocks bound the float64 memory
        values = design[start : start + _CHUNK].to(torch.float64)
        out[start : start + _CHUNK] = _normalise(
            values, scale, subtract_mean, use_std, sqrt_bias, min_divisor
        )
    return out.reshape(x.shape)


def _normalise(
    values: torch.Tensor,
    scale: float,
    subtract_mean: bool,
    use_std: bool,
    sqrt_bias: float,
    min_divisor: float,
) -> torch.Tensor:
    """:func:`gcn`'s formula on a float64 block of examples (rows)."""
    if subtract_mean:
        values = values - values.mean(dim=1, keepdim=True)
    if use_std:
        spread = values.var(dim=1, correction=1 if values.shape[1] > 1 else 0)
    else:
        spread = values.square().sum(dim=1)
    divisor = torch.sqrt(sqrt_bias + spread) / scale
    divisor = torch.where(divisor < min_divisor, torch.ones_like(divisor), divisor)
    return values / divisor[:, None]


def _rows(x: torch.Tensor) -> Iterator[torch.Tensor]:
    """``x``'s rows in float64 CPU blocks of at most :data:`_CHUNK`."""
    for start in range(0, x.shape[0], _CHUNK):
        yield x[start : start + _CHUNK].to("cpu", torch.float64)


def _moments(design: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The float64 mean of ``design``'s rows and their covariance divided by n (not n − 1)."""
    total = torch.zeros(design.shape[1], dtype=torch.float64)
    for rows in _rows(design):
        total += rows.sum(dim=0)
    mean = total / design.shape[0]
    cov = torch.zeros(design.shape[1], design.shape[1], dtype=torch.float64)
    for rows in _rows(design):
        centred = rows - mean
        cov.addmm_(centred.T, centred)
    return mean, cov / design.shape[0]


class ZCA:
    """ZCA whitening as pylearn2's ``ZCA`` preprocessor (the maxout paper's CIFAR-10 recipe).

    :meth:`fit` takes the training examples ``X`` (rows, features flattened), their mean ``μ``
    and covariance ``C = (X − μ)ᵀ(X − μ) / n`` (divided by n, as pylearn2), and the eigenpairs
    ``(λ_k + b, v_k)`` of ``C + b·I`` with ``b = filter_bias``; the whitening matrix is ``P = Σ_k
    v_k v_kᵀ / sqrt(λ_k + b)`` over the ``n_components`` largest (all by default).
    :meth:`transform` maps ``x`` to ``(x − μ) P``: on the training data the covariance becomes
    ``Σ_k v_k v_kᵀ λ_k / (λ_k + b)``, near the identity along directions of variance much larger
    than ``b`` and damped below it. Everything is computed in float64 (pylearn2 computed partly
    in Theano's float32 and warned that its ZCA differed across platforms).

    Attributes:
        mean: ``μ``, float64 [features] (None until fitted).
        whitener: ``P``, float64 [features, features], symmetric.
        eigenvalues: The kept ``λ_k + b``, float64, ascending.

    Args:
        filter_bias: ``b`` above, added to the covariance's eigenvalues (0 only for data of full
            rank).
        n_components: Keep only this many of the largest eigenvalues (None: all).

    Example:
        >>> zca = ZCA().fit(gcn(train_x))                 # doctest: +SKIP
        >>> train_w, test_w = zca.transform(gcn(train_x)), zca.transform(gcn(test_x))  # doctest: +SKIP
        >>> zca.save("zca.pt"); zca = ZCA.load("zca.pt")  # doctest: +SKIP
    """

    def __init__(self, filter_bias: float = 0.1, n_components: int | None = None) -> None:
        self.filter_bias = _positive("filter_bias", filter_bias, allow_zero=True)
        self.n_components = None if n_components is None else integer("n_components", n_components, 1)
        self.mean: torch.Tensor | None = None
        self.whitener: torch.Tensor | None = None
        self.eigenvalues: torch.Tensor | None = None

    @property
    def fitted(self) -> bool:
        """Whether :meth:`fit` (or :meth:`load_state_dict`) has set the statistics."""
        return self.whitener is not None

    def fit(self, x_train: torch.Tensor) -> ZCA:
        """Estimates the mean and whitening matrix from ``x_train`` alone (float64); returns self.

        Raises:
            TypeError: If ``x_train`` is not a floating-point tensor.
            ValueError: If it has the wrong shape, NaN/inf values or fewer than 2 examples, if
                ``n_components`` exceeds its features, or if the covariance plus bias is singular
                (use a ``filter_bias`` above 0).
        """
        design = _design("x_train", x_train, min_rows=2)
        features = design.shape[1]
        if self.n_components is not None and self.n_components > features:
            raise ValueError(f"n_components ({self.n_components}) exceeds the {features} features of x_train")
        mean, cov = _moments(design)
        cov += self.filter_bias * torch.eye(features, dtype=torch.float64)
        eigenvalues, vectors = torch.linalg.eigh(cov)  # ascending
        if not eigenvalues[0] > features * torch.finfo(torch.float64).eps * eigenvalues[-1]:
            raise ValueError(
                f"the covariance plus filter_bias={self.filter_bias} is singular (smallest eigenvalue "
                f"{eigenvalues[0].item():.3g}; fewer independent examples than features?): "
                "use a filter_bias above 0"
            )
        keep = slice(features - (self.n_components or features), features)
        eigenvalues, vectors = eigenvalues[keep], vectors[:, keep]
        self.mean, self.eigenvalues = mean, eigenvalues
        self.whitener = (vectors * eigenvalues.rsqrt()) @ vectors.T
        return self

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """``(x − mean) · P`` with the training statistics, in float64; ``x``'s shape and dtype.

        Raises:
            TypeError: If ``x`` is not a floating-point tensor.
            ValueError: If the ZCA is not fitted, or ``x`` has NaN/inf values or not the feature
                count it was fitted on.
        """
        if self.mean is None or self.whitener is None:
            raise ValueError("this ZCA is not fitted: call fit(x_train) or load a saved one first")
        design = _design("x", x)
        if design.shape[1] != self.mean.numel():
            raise ValueError(
                f"x has {design.shape[1]} features per example, the ZCA was fitted on {self.mean.numel()}"
            )
        blocks = [(rows - self.mean) @ self.whitener for rows in _rows(design)]
        return torch.cat(blocks).to(x.device, x.dtype).reshape(x.shape)

    def state_dict(self) -> dict[str, Any]:
        """The fitted statistics (float64 CPU tensors) and options, for :meth:`load_state_dict`."""
        if not self.fitted:
            raise ValueError("this ZCA is not fitted: there is no state to save; call fit(x_train) first")
        return {
            "format": ZCA_FORMAT,
            "filter_bias": self.filter_bias,
            "n_components": self.n_components,
            "mean": self.mean,
            "whitener": self.whitener,
            "eigenvalues": self.eigenvalues,
        }

    def load_state_dict(self, state: dict[str, Any]) -> ZCA:
        """Restores what :meth:`state_dict` returned (checked; the tensors are copied); returns self.

        Raises:
            ValueError: If ``state`` is not a ZCA state or its tensors do not fit together.
        """
        if not isinstance(state, dict) or state.get("format") != ZCA_FORMAT:
            raise ValueError("not a ZCA state (expected the dict that ZCA.state_dict() returns)")
        tensors = [state.get(k) for k in ("mean", "whitener", "eigenvalues")]
        if not all(isinstance(t, torch.Tensor) and t.dtype == torch.float64 for t in tensors):
            raise ValueError("a ZCA state needs float64 tensors 'mean', 'whitener' and 'eigenvalues'")
        mean, whitener, eigenvalues = (t.detach().to("cpu").clone() for t in tensors)  # type: ignore[union-attr]
        d = mean.numel()
        if mean.shape != (d,) or whitener.shape != (d, d) or eigenvalues.dim() != 1:
            raise ValueError(f"a ZCA state needs mean [d], whitener [d, d], got {tuple(whitener.shape)}")
        if not (torch.isfinite(whitener).all() and torch.isfinite(mean).all()):
            raise ValueError("a ZCA state's mean and whitener must be finite")
        self.filter_bias = _positive("filter_bias", state.get("filter_bias"), allow_zero=True)
        n = state.get("n_components")
        self.n_components = None if n is None else integer("n_components", n, 1)
        self.mean, self.whitener, self.eigenvalues = mean, whitener, eigenvalues
        return self

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes :meth:`state_dict` to ``path`` with ``torch.save``, atomically."""
        state = self.state_dict()
        with atomic_write(path) as file:
            torch.save(state, file)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ZCA:
        """A ZCA read from a file :meth:`save` wrote (``weights_only=True``: no code runs).

        Raises:
            FileNotFoundError: If ``path`` does not exist.
            ValueError: If the file is not a saved ZCA.
        """
        return cls().load_state_dict(load_saved(path, "ZCA"))

    def __repr__(self) -> str:
        shape = "unfitted" if self.mean is None else f"features={self.mean.numel()}"
        return f"ZCA(filter_bias={self.filter_bias}, n_components={self.n_components}, {shape})"


def binarize(x: torch.Tensor, *, seed: int, method: str = "sample") -> torch.Tensor:
    """Binary inputs from intensities in [0, 1], reproducibly.

    ``method="sample"`` draws each entry once as Bernoulli(intensity): bit = ``u < x`` with ``u``
    uniform on [0, 1) from a private ``torch.Generator`` seeded with ``seed`` (one float32 draw
    per entry in row-major order, a multiple of 2**-24, so P(bit = 1) is the intensity to within
    6e-8; the global RNG is untouched), so the same seed and values give the same bits.

    This is the MP-DBM paper's stochastic binarisation (Goodfellow et al., 2013), with one
    difference: the original (pylearn2's ``Binarizer`` in ``scripts/papers/mpdbm/mpdbm.yaml``)
    draws fresh bits every time a batch is read, while this fixes one draw per ``seed``; to
    follow the original more closely, binarise again with a new seed each epoch. The original
    monitored the error on the raw (unbinarised) validation images. ``method="threshold"`` is the
    deterministic alternative ``x > 0.5`` (not the paper's; ``seed`` is then unused).

    Args:
        x: Floating-point intensities in [0, 1], any shape.
        seed: The generator's seed (an integer in [0, 2**63)).
        method: ``"sample"`` (the paper's) or ``"threshold"``.

    Returns:
        A tensor of ``x``'s shape, dtype and device holding only 0 and 1.

    Raises:
        TypeError: If ``x`` is not a floating-point tensor or ``seed`` not an integer.
        ValueError: If ``method`` is unknown or ``x`` has values outside [0, 1] (or NaN).
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(
            f"x must be a floating-point torch.Tensor, got {getattr(x, 'dtype', type(x).__name__)}"
        )
    seed = integer("seed", seed, 0, 2**63)
    if method not in ("sample", "threshold"):
        raise ValueError(f"method must be 'sample' or 'threshold', got {method!r}")
    if not bool(((x >= 0) & (x <= 1)).all()):
        raise ValueError("x must hold intensities in [0, 1] (no NaN); rescale it first (e.g. bytes / 255)")
    values = x.detach().to("cpu")
    if values.dtype not in (torch.float32, torch.float64):
        values = values.float()  # float16/bfloat16: compare in float32, not in their coarse grid
    if method == "threshold":
        bits = values > 0.5
    else:
        generator = torch.Generator().manual_seed(seed)
        uniform = torch.rand(values.shape, generator=generator, dtype=torch.float32)
        bits = uniform.to(values.dtype) < values  # float32 → float64 is exact
    return bits.to(x.device, x.dtype)
