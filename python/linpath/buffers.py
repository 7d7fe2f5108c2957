"""What a sweep does with the floating-point buffers (BatchNorm running statistics) at each point.

``interpolate(..., buffers=...)`` and ``surface(..., buffers=...)`` take one of three policies:

* ``"interpolate"`` (default): the float buffers move with the point, θ(c) for the buffers too, when
  both ends carry them (modules or state_dicts; a plane's directions made with
  ``include_buffers=True``). A line through two valid variances leaves [0, ∞) outside α ∈ [0, 1],
  and a negative ``running_var`` gives NaN (or, just below zero, enormous but finite activations:
  a plausible wrong number). So at every point where an interpolated BatchNorm ``running_var`` has a
  negative entry, the model is **not evaluated**: every metric there is NaN, a warning names the
  points and suggests ``"recompute"`` or ``"current"``, and ``meta["buffers"]["invalid_points"]``
  lists them. Variances are never clamped or otherwise made up.
* ``"current"``: the model's own buffers, as they are, at every point (no warning).
* ``"recompute"``: at each point, after the parameters are written, the running statistics of every
  BatchNorm-like module are reset and re-estimated as the exact mean over N batches of one split
  (``momentum=None``: cumulative averaging), with the model in train mode under ``torch.no_grad()``
  (as ``torch.optim.swa_utils.update_bn`` and the mode-connectivity papers do; dropout is active
  during those batches), in float32; then the point is evaluated in eval mode. Everything (buffers,
  ``num_batches_tracked``, momentum, modes) is restored afterwards by the engine's
  :class:`linpath.params.ModelState`. With a shuffled DataLoader each point sees other batches:
  pass a fixed one for reproducible values.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ._checks import I64_END, integer
from .batches import LossFn, Where, input_dtype, measure_batch
from .data import Split

#: The buffer policies, by name.
POLICIES = ("interpolate", "recompute", "current")
#: Batches of a DataLoader (or other iterable) that ``"recompute"`` reads at each point by default;
#: an ``(X, Y)`` pair is read whole.
DEFAULT_RECOMPUTE_BATCHES = 10


def batchnorm_modules(model: nn.Module) -> list[Any]:
    """The modules that keep running statistics: those with ``reset_running_stats`` and
    ``track_running_stats`` set (BatchNorm1d/2d/3d, their lazy forms, SyncBatchNorm, and
    InstanceNorm with ``track_running_stats=True``)."""
    return [
        m
        for m in model.modules()
        if callable(getattr(m, "reset_running_stats", None))
        and getattr(m, "track_running_stats", False)
        and getattr(m, "running_var", None) is not None
    ]


class BufferPolicy:
    """The interface: how the buffers are set at a point, after its parameters are written.

    Attributes:
        name: The policy's name (one of :data:`POLICIES`).
        moves_buffers: Whether the float buffers are part of the swept subspace.
        recomputes: Whether the policy runs the model on data at each point before evaluating it
            (then sweeps loop over points outermost, see :mod:`linpath.batch_outer`).
    """

    name = ""
    moves_buffers = False
    recomputes = False

    def at_point(self, model: nn.Module, coords: list[float]) -> bool:
        """Prepares the model's buffers at the point ``coords``; False when the point must not be
        evaluated (its values are then NaN)."""
        return True

    def meta(self) -> dict[str, Any]:
        """What results record about the policy."""
        return {"policy": self.name}


class Current(BufferPolicy):
    """The model's own buffers at every point."""

    name = "current"


class Interpolate(BufferPolicy):
    """The buffers move with the point; points with a negative running variance are not evaluated."""

    name = "interpolate"
    moves_buffers = True

    def __init__(self) -> None:
        self.invalid: list[list[float]] = []

    def at_point(self, model: nn.Module, coords: list[float]) -> bool:
        bad = any(bool((m.running_var < 0).any()) for m in batchnorm_modules(model))
        if bad and coords not in self.invalid:
            self.invalid.append(list(coords))
        return not bad

    def meta(self) -> dict[str, Any]:
        return {"policy": self.name, "invalid_points": self.invalid}

    def warn_invalid(self, stacklevel: int = 3) -> None:
        """A RuntimeWarning naming the points left unevaluated, if any."""
        if not self.invalid:
            return
        where = ", ".join("(" + ", ".join(f"{c:g}" for c in p) + ")" for p in self.invalid[:6])
        more = f" and {len(self.invalid) - 6} more" if len(self.invalid) > 6 else ""
        warnings.warn(
            f"interpolated BatchNorm running variances are negative at {len(self.invalid)} point(s) "
            f"(coordinates {where}{more}): the model was not evaluated there and the values are NaN. "
            "Pass buffers='recompute' to re-estimate the statistics at each point, or buffers='current' "
            "to keep the model's own",
            RuntimeWarning,
            stacklevel=stacklevel,
        )


class Recompute(BufferPolicy):
    """Running statistics re-estimated at each point from ``batches`` batches of ``split``.

    Args:
        split: The split whose batches are run in train mode.
        batches: How many batches (None: all of them).
        how: The sweep's loss (or step) and metrics: the batches are run as the sweep runs them.
    """

    recomputes = True
    name = "recompute"

    def __init__(self, split: Split, batches: int | None, how: tuple[LossFn, tuple[str, ...]]) -> None:
        self.split, self.batches = split, batches
        self.loss_fn, self.metrics = how

    def at_point(self, model: nn.Module, coords: list[float]) -> bool:
        modules = batchnorm_modules(model)
        if not modules:
            return True
        for m in modules:
            m.reset_running_stats()
            m.momentum = None  # cumulative average: the exact mean over the batches
        device = next(model.parameters()).device
        limit = math.inf if self.batches is None else self.batches
        model.train()
        try:
            seen = self._run(model, device, limit)
        finally:
            model.eval()
        if seen == 0:
            raise ValueError(
                f"buffers='recompute': split {self.split.name!r} yielded no batch to estimate from"
            )
        return True

    def _run(self, model: nn.Module, device: torch.device, limit: float) -> int:
        """Runs the model on up to ``limit`` non-empty batches, as the sweep measures them (any batch
        shape, ``step=`` too); returns how many ran."""
        seen = 0
        with torch.no_grad():
            for i, batch in enumerate(self.split.batches(device, input_dtype(model))):
                if seen >= limit:
                    break
                where = Where(self.split.name, i, self.split.is_pair)
                if measure_batch(model, batch, self.loss_fn, self.metrics, where) is not None:
                    seen += 1
        return seen

    def meta(self) -> dict[str, Any]:
        return {"policy": self.name, "split": self.split.name, "batches": self.batches}


def buffer_policy(
    buffers: str,
    model: nn.Module,
    splits: Mapping[str, Split],
    recompute_batches: int | None = None,
    recompute_split: str | None = None,
    how: tuple[LossFn, tuple[str, ...]] | None = None,
) -> BufferPolicy:
    """The checked policy for ``buffers`` (see the module docstring).

    Args:
        buffers: ``"interpolate"``, ``"recompute"`` or ``"current"``.
        model: The swept model.
        splits: The sweep's splits (``"recompute"`` reads one of them).
        recompute_batches: Batches per point for ``"recompute"`` (default: all of an ``(X, Y)``
            pair, :data:`DEFAULT_RECOMPUTE_BATCHES` of a DataLoader).
        recompute_split: The split ``"recompute"`` reads (default ``"train"`` if there is one,
            else the first).
        how: The sweep's ``(loss_fn, metrics)`` (default: cross-entropy and its loss).

    Raises:
        ValueError: For an unknown policy or split, or recompute arguments given to another policy.
    """
    if buffers not in POLICIES:
        raise ValueError(f"buffers must be one of {POLICIES}, got {buffers!r}")
    if buffers != "recompute":
        if recompute_batches is not None or recompute_split is not None:
            raise ValueError("recompute_batches and recompute_split apply only to buffers='recompute'")
        return Interpolate() if buffers == "interpolate" else Current()
    name = recompute_split
    if name is None:
        name = "train" if "train" in splits else next(iter(splits))
    if name not in splits:
        raise ValueError(f"recompute_split {name!r} is not a split of the data; it has {list(splits)}")
    split = splits[name]
    if recompute_batches is not None:
        recompute_batches = integer("recompute_batches", recompute_batches, 1, I64_END)
    elif not split.is_pair:
        recompute_batches = DEFAULT_RECOMPUTE_BATCHES
    if how is None:
        from .batches import DEFAULT_LOSS

        how = (DEFAULT_LOSS, ("loss",))
    return Recompute(split, recompute_batches, how)


def check_engine(policy: BufferPolicy, model: nn.Module, engine_name: str) -> None:
    """ValueError for ``"recompute"`` on an engine that cannot run the model in train mode (the
    native one) when the model has running statistics to recompute (linpath's native models have
    none, so for them the policy changes nothing and is accepted)."""
    if policy.name == "recompute" and engine_name != "module" and batchnorm_modules(model):
        raise ValueError(
            f"buffers='recompute' needs the module engine (engine='module'); the {engine_name} engine "
            "cannot re-estimate BatchNorm statistics"
        )
