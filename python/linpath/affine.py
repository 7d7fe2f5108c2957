"""The module engine's shortcut for layers applied to the raw inputs.

Along the line every parameter is θ0 + α·d, so a linear or convolutional layer that reads the
batch itself outputs  z(α) = op(x, W0 + α·dW) + b0 + α·db = z0 + α·dz  with z0 = op(x, W0) + b0 and
dz = op(x, dW) + db  fixed for the batch. :class:`AffineInputs` computes z0 and dz once per batch
(the first time an α reaches it) and answers every later α with one fused ``z0 + α·dz``, instead of
the layer's matrix product. Everything else in the model runs as written.

A layer is served from the cache only when all of these hold; otherwise it runs normally:
it is an ``nn.Linear`` or ``nn.Conv1d/2d/3d`` running torch's own forward (not a subclass's own, not
one patched onto the instance, no forward pre-hook, not parametrized) whose weight and bias are
parameters of the swept model; it is called on the very tensor the engine passed to the model;
the batch comes from an ``(X, Y)`` pair (the same rows at every α); α is not 0 or 1 (there the
layer runs as written, so the endpoints equal a direct evaluation bit for bit) and fits in float32;
and the cache stays
within its memory budget (:data:`CACHE_BYTES`). Elsewhere the values agree with the layer's own
product to float rounding (about 1e-7 relative in float32).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as module_hooks
from torch.nn.utils import parametrize

#: Largest total size of the cached z0 and dz tensors (per sweep); beyond it layers run normally.
CACHE_BYTES = 1 << 30

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_FLOAT32_MAX = float(torch.finfo(torch.float32).max)


def _runs_torchs_own_forward(m: nn.Module) -> bool:
    """True for an ``nn.Linear``/``nn.ConvNd`` (or a subclass) that computes exactly what torch's
    class does: a subclass's own forward (masking, fake quantisation, weight standardisation, ...)
    or a forward patched onto the instance would be bypassed by z0 + α·dz, and so would a forward
    pre-hook: those run as written."""
    base = next((cls for cls in _LAYERS if isinstance(m, cls)), None)
    if base is None or "forward" in m.__dict__ or type(m).forward is not base.forward:
        return False
    # A forward pre-hook may change the inputs or the weights (a max-norm constraint, pruning) before
    # the layer runs; z0 and dz would not see that.
    if m._forward_pre_hooks or module_hooks._global_forward_pre_hooks:
        return False
    return base is nn.Linear or type(m)._conv_forward is base._conv_forward


class AffineInputs:
    """Caches z0 and dz of input layers while the module engine sweeps α (see the module docstring).

    Args:
        model: The swept model.
        params: Its parameters, in the order of ``start`` and ``end``.
        start: θ0 as one flat vector in that order (on the model's device).
        end: θ1 likewise.
        budget: Largest total bytes of cached tensors (default :data:`CACHE_BYTES`).
    """

    def __init__(
        self,
        model: nn.Module,
        params: list[torch.Tensor],
        start: torch.Tensor,
        end: torch.Tensor,
        budget: int | None = None,
    ) -> None:
        offsets, total = {}, 0
        for p in params:
            offsets[id(p)] = (total, p)
            total += p.numel()
        self._offsets, self._start, self._end = offsets, start, end
        self._budget = CACHE_BYTES if budget is None else budget
        self._layers = [m for m in model.modules() if self._eligible(m)]
        self._cache: dict[tuple[Any, int], tuple[torch.Tensor, torch.Tensor] | None] = {}
        self._used = 0
        self._current: tuple[Any, torch.Tensor] | None = None
        self.alpha = 0.0
        #: Layer calls answered from the cache (for tests and curiosity).
        self.hits = 0

    def _eligible(self, m: nn.Module) -> bool:
        if not _runs_torchs_own_forward(m) or parametrize.is_parametrized(m):
            return False
        tensors = [m.weight] + ([] if m.bias is None else [m.bias])
        return all(id(t) in self._offsets and self._offsets[id(t)][1] is t for t in tensors)

    @contextlib.contextmanager
    def installed(self) -> Iterator[AffineInputs]:
        """Routes the eligible layers' ``forward`` through the cache; always undone on exit."""
        try:
            for m in self._layers:
                m.forward = self._forward_of(m, m.forward)
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

    def _forward_of(self, m: nn.Module, original: Any) -> Any:
        def forward(inputs: torch.Tensor) -> torch.Tensor:
            current = self._current
            if (
                current is None
                or inputs is not current[1]
                or self.alpha in (0.0, 1.0)
                or not self._alpha_fits()
            ):
                return original(inputs)  # at the endpoints: exactly the model's own evaluation
            pair = self._pair(current[0], m, inputs)
            if pair is None:
                return original(inputs)
            self.hits += 1
            return torch.add(pair[0], pair[1], alpha=self.alpha)  # a new tensor: in-place layers are safe

        return forward

    def _alpha_fits(self) -> bool:
        """False for an α that float32 cannot hold (the layer then runs as written)."""
        return abs(self.alpha) <= _FLOAT32_MAX

    def _pair(self, key: Any, m: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        slot = (key, id(m))
        if slot not in self._cache:
            pair = self._products(m, x)
            size = sum(t.numel() * t.element_size() for t in pair)
            fits = self._used + size <= self._budget
            self._used += size if fits else 0
            self._cache[slot] = pair if fits else None
        return self._cache[slot]

    def _slice(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(θ0, θ1 − θ0) of parameter ``p``, shaped like it, in its dtype (difference taken in float64)."""
        offset = self._offsets[id(p)][0]
        a = self._start[offset : offset + p.numel()]
        b = self._end[offset : offset + p.numel()]
        diff = b.to(torch.float64) - a.to(torch.float64)
        return a.to(p.dtype).view(p.shape), diff.to(p.dtype).view(p.shape)

    def _products(self, m: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w0, dw = self._slice(m.weight)
        b0, db = self._slice(m.bias) if m.bias is not None else (None, None)
        if isinstance(m, nn.Linear):
            return nn.functional.linear(x, w0, b0), nn.functional.linear(x, dw, db)
        return m._conv_forward(x, w0, b0), m._conv_forward(x, dw, db)
