"""The module engine's shortcut for layers applied to the raw inputs.

At a point of a subspace every parameter is θ0 + Σ c_k·d_k, so a linear or convolutional layer that
reads the batch itself outputs  z(c) = op(x, W0 + Σ c_k·dW_k) + b0 + Σ c_k·db_k = z0 + Σ c_k·dz_k
with z0 = op(x, W0) + b0 and dz_k = op(x, dW_k) + db_k fixed for the batch. :class:`AffineInputs`
computes z0 and the dz_k once per batch (1 + k products: two on a line, three on a plane, the
first time a point reaches it) and answers every later point with one fused combination from a
native ``Subspace`` of the activations, instead of the layer's matrix product. Everything else in
the model runs as written.

A layer is served from the cache only when all of these hold; otherwise it runs normally:
it is an ``nn.Linear`` or ``nn.Conv1d/2d/3d`` running torch's own forward (not a subclass's own, not
one patched onto the instance, no forward pre-hook, not parametrized) whose weight and bias are
parameters of the swept model; it is called on the very tensor the engine passed to the model;
the batch comes from an ``(X, Y)`` pair (the same rows at every point); the point is not the origin
or a line's end α = 1 (there the layer runs as written, so the endpoints equal a direct evaluation
bit for bit) and its coordinates fit in float32;
and the cache stays
within its memory budget (:data:`CACHE_BYTES`). Elsewhere the values agree with the layer's own
product to float rounding (about 1e-7 relative in float32).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, TypeGuard

import torch
from torch import nn
from torch.nn.modules import module as module_hooks
from torch.nn.utils import parametrize

from . import _linpath

#: Largest total size of the cached z0 and dz tensors (per sweep); beyond it layers run normally.
CACHE_BYTES = 1 << 30

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
#: A layer the cache may serve.
_Layer = nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d
_FLOAT32_MAX = float(torch.finfo(torch.float32).max)


def _runs_torchs_own_forward(m: nn.Module) -> bool:
    """True for an ``nn.Linear``/``nn.ConvNd`` (or a subclass) that computes exactly what torch's
    class does: a subclass's own forward (masking, fake quantisation, weight standardisation, ...)
    or a forward patched onto the instance would be bypassed by z0 + α·dz, and so would a forward
    pre-hook: those run as written."""
    base: type[_Layer] | None = next((cls for cls in _LAYERS if isinstance(m, cls)), None)
    if base is None or "forward" in m.__dict__ or type(m).forward is not base.forward:
        return False
    # A forward pre-hook may change the inputs or the weights (a max-norm constraint, pruning) before
    # the layer runs; z0 and dz would not see that.
    if m._forward_pre_hooks or module_hooks._global_forward_pre_hooks:
        return False
    if issubclass(base, nn.Linear):  # base is nn.Linear itself
        return True
    # isinstance always holds here (base is m's class among _LAYERS); it narrows m for the type checker
    return isinstance(m, base) and type(m)._conv_forward is base._conv_forward


class AffineInputs:
    """Caches z0 and dz of input layers while the module engine sweeps α (see the module docstring).

    Args:
        model: The swept model.
        geometry: The subspace being swept (a :class:`linpath.engines.Geometry`: the parameters,
            θ0 and the directions as flat float64 vectors on the model's device).
        budget: Largest total bytes of cached tensors (default :data:`CACHE_BYTES`).
    """

    def __init__(self, model: nn.Module, geometry: Any, budget: int | None = None) -> None:
        offsets, total = {}, 0
        for p in geometry.params:
            offsets[id(p)] = (total, p)
            total += p.numel()
        self._offsets, self._origin, self._directions = offsets, geometry.origin, geometry.directions
        self._budget = CACHE_BYTES if budget is None else budget
        self._layers = [m for m in model.modules() if self._eligible(m)]
        self._cache: dict[tuple[Any, int], tuple[Any, torch.Size] | None] = {}
        self._used = 0
        self._current: tuple[Any, torch.Tensor] | None = None
        #: The current point's coordinates (set by the engine before each point).
        self.coords: tuple[float, ...] = (0.0,) * len(self._directions)
        #: Layer calls answered from the cache (for tests and curiosity).
        self.hits = 0

    def _eligible(self, m: nn.Module) -> TypeGuard[_Layer]:
        if not _runs_torchs_own_forward(m) or parametrize.is_parametrized(m):
            return False
        tensors = [m.weight] + ([] if m.bias is None else [m.bias])
        return all(id(t) in self._offsets and self._offsets[id(t)][1] is t for t in tensors)

    @contextlib.contextmanager
    def installed(self) -> Iterator[AffineInputs]:
        """Routes the eligible layers' ``forward`` through the cache; always undone on exit."""
        try:
            for m in self._layers:
                m.forward = self._forward_of(m, m.forward)  # type: ignore[method-assign]  # undone below
            yield self
        finally:
            for m in self._layers:
                m.__dict__.pop("forward", None)
            self._cache.clear()

    @contextlib.contextmanager
    def batch(self, key: Any, x: Any) -> Iterator[None]:
        """Marks ``x`` as the batch called ``key`` while the model runs on it (key None: do not cache)."""
        self._current = None if key is None else (key, x)
        try:
            yield
        finally:
            self._current = None

    def _forward_of(self, m: _Layer, original: Any) -> Any:
        def forward(inputs: torch.Tensor) -> torch.Tensor:
            current = self._current
            if current is None or inputs is not current[1] or self._runs_as_written():
                return original(inputs)  # at the endpoints: exactly the model's own evaluation
            cached = self._activations(current[0], m, inputs)
            if cached is None:
                return original(inputs)
            self.hits += 1
            subspace, shape = cached
            return subspace.point(list(self.coords)).view(shape)  # a new tensor: in-place layers are safe

        return forward

    def _runs_as_written(self) -> bool:
        """True at the origin and at a line's end (α = 1), and for coordinates that float32 cannot
        hold: there the layer runs as written."""
        endpoint = all(c == 0.0 for c in self.coords) or self.coords == (1.0,)
        return endpoint or any(abs(c) > _FLOAT32_MAX for c in self.coords)

    def _activations(self, key: Any, m: _Layer, x: torch.Tensor) -> tuple[Any, torch.Size] | None:
        """The native ``Subspace`` z0 + Σ c_k·dz_k of layer ``m`` on batch ``key``, and its shape."""
        slot = (key, id(m))
        if slot not in self._cache:
            products = self._products(m, x)
            size = sum(t.numel() * t.element_size() for t in products)
            fits = self._used + size <= self._budget
            self._used += size if fits else 0
            cached = (_linpath.Subspace.of_activations(products[0], products[1:]), products[0].shape)
            self._cache[slot] = cached if fits else None
        return self._cache[slot]

    def _slice(self, p: torch.Tensor) -> list[torch.Tensor]:
        """θ0 and each direction d_k of parameter ``p``, shaped like it, in its dtype."""
        offset, n = self._offsets[id(p)][0], p.numel()
        return [v[offset : offset + n].to(p.dtype).view(p.shape) for v in (self._origin, *self._directions)]

    def _products(self, m: _Layer, x: torch.Tensor) -> list[torch.Tensor]:
        """z0 = op(x, W0) + b0 and dz_k = op(x, dW_k) + db_k."""
        weights = self._slice(m.weight)
        biases = self._slice(m.bias) if m.bias is not None else [None] * len(weights)
        if isinstance(m, nn.Linear):
            return [nn.functional.linear(x, w, b) for w, b in zip(weights, biases, strict=True)]
        return [m._conv_forward(x, w, b) for w, b in zip(weights, biases, strict=True)]
