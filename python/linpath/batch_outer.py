"""Batch-outer sweeps: each batch read once and evaluated at every point before the next batch.

The module engine's plain loop is point-outer: for each point θ(c) of the line or plane it reads the
whole split again. Where a batch is expensive to produce (a DataLoader that decodes JPEG files and
runs transforms), that reads the data once per point. The batch-outer loop reads the split once:

    for each batch: for each point: write θ(c) into the model, evaluate the batch, add to the point's sums

Each point keeps its own :class:`linpath.engines.BatchTally` (float64 loss sum, error count, example
count), and each point's sums receive the same batches in the same order as in the point-outer
loop, so the values are the same numbers, bit for bit, when every pass over the loader yields the
same batches. A NaN or infinite value stays with its own point. The parameters are written B × P
times instead of P times (B batches, P points), which costs little beside a forward pass of a batch.

A DataLoader with ``shuffle=True`` (or random augmentation) yields other batches on every pass: the
point-outer loop then evaluates each point on its own draw (other sums, other dropped last batch),
while the batch-outer loop evaluates every point on the very same batches: its curve is the more
consistent one (differences between points come from the parameters alone).

``order`` (an argument of :func:`linpath.interpolate` and :func:`linpath.surface`) chooses:

* ``"points"``: the point-outer loop everywhere.
* ``"batches"``: the batch-outer loop for every split; a split given as an ``(X, Y)`` pair is
  refused (its batches cost nothing to read, and the point-outer loop serves its input layers from
  :mod:`linpath.affine`'s cache).
* ``"auto"`` (default): batch-outer for each split that is read again on every pass, i.e. neither an
  ``(X, Y)`` pair nor a list or tuple of batches already in memory (a DataLoader, any other
  re-iterable), when a pass has at least two points and no point needs work of its own besides
  writing θ(c) (see ``recompute`` in :func:`batch_outer_splits`); point-outer otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from .batches import input_dtype
from .buffers import BufferPolicy
from .data import Split
from .engines import BatchTally, Geometry, LossFn, Values, _autocast, progress_bar
from .params import ModelState

#: The loop orders ``interpolate`` and ``surface`` accept.
ORDERS = ("auto", "points", "batches")


def check_order(order: Any, splits: Mapping[str, Split]) -> str:
    """``order`` checked against :data:`ORDERS` and the splits (ValueError says what to pass)."""
    if not isinstance(order, str) or order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    pairs = [name for name, split in splits.items() if split.is_pair]
    if order == "batches" and pairs:
        raise ValueError(
            f"order='batches' reads each batch of a DataLoader once for all points, but split(s) {pairs} "
            "are (X, Y) pairs, which cost nothing to read again and are evaluated point by point; "
            "pass order='auto' (batch-outer for DataLoaders only) or order='points'"
        )
    return order


def batch_outer_splits(
    splits: Mapping[str, Split], order: str, n_points: int, *, recompute: bool = False
) -> list[str]:
    """The names of the splits a pass of ``n_points`` points evaluates batch-outer.

    Args:
        splits: The checked splits.
        order: A checked order (:func:`check_order`).
        n_points: The number of points of the pass.
        recompute: True when something must happen at each point before its evaluation besides
            writing θ(c) (a buffer policy that re-estimates BatchNorm statistics from training
            batches at each point): that needs the point-outer loop, so "auto" picks it and
            "batches" is refused.
    """
    if recompute and order == "batches":
        raise ValueError(
            "order='batches' cannot re-estimate the buffers at each point (they are recomputed from "
            "training batches before the point is evaluated); pass order='auto' or 'points'"
        )
    if order == "points" or recompute or (order == "auto" and n_points < 2):
        return []
    return [name for name, split in splits.items() if order == "batches" or _read_again(split)]


def _read_again(split: Split) -> bool:
    """True when every pass over ``split`` produces its batches anew (not a pair or a list in memory)."""
    return split.source is not None and not isinstance(split.source, list | tuple)


def sweep_batches(
    model: nn.Module,
    geometry: Geometry,
    splits: Mapping[str, Split],
    points: np.ndarray,
    how: tuple[LossFn, tuple[str, ...], str],
    progress: tuple[bool | None, float],
    policy: BufferPolicy,
) -> Values:
    """Evaluates every split at every point, batch-outer (see the module docstring); the model is
    put back as it was afterwards, also on error or Ctrl-C.

    Args:
        model: The module to evaluate.
        geometry: The subspace whose points are written into the model.
        splits: The splits to evaluate (each read once).
        points: The points' coordinates ``[P, k]``.
        how: ``(loss_fn, metrics, precision)``.
        progress: ``(show, start)``: show a progress bar over batches × points (see
            :func:`linpath.engines.progress_bar`), which counts the part from ``start`` to the end
            of the engine's run.
        policy: The buffer policy (one that does not recompute): a point it refuses is NaN.

    Returns:
        ``{split: {metric: [value per point]}}``, as the point-outer loop returns it.
    """
    coords = points.tolist()
    values: Values = {}
    state = ModelState(model)
    try:
        model.eval()
        total = _total(splits, len(coords))
        subspaces = geometry.subspaces()
        bar_of = progress_bar(total, progress[0], unit="batch·pt", span=(progress[1], 1.0))
        with bar_of as bar, torch.no_grad():
            for name, split in splits.items():
                tallies = _split_tallies(model, subspaces, split, coords, how, bar, policy)
                values[name] = _collect([_result(tally, how[1]) for tally in tallies])
    finally:
        state.restore()
    return values


def _split_tallies(
    model: nn.Module,
    subspaces: list[tuple[Any, list[torch.Tensor]]],
    split: Split,
    coords: list[list[float]],
    how: tuple[LossFn, tuple[str, ...], str],
    bar: Any,
    policy: BufferPolicy,
) -> list[BatchTally | None]:
    """One pass over ``split``: each batch evaluated at every point (written into the model from
    ``subspaces``, see :meth:`Geometry.subspaces`); the sums of each point (None for a point the
    buffer ``policy`` refuses)."""
    loss_fn, metrics, precision = how
    device = subspaces[0][1][0].device
    tallies: list[BatchTally | None] = [BatchTally(split, loss_fn, metrics) for _ in coords]
    for i, batch in enumerate(split.batches(device, input_dtype(model))):
        for k, c in enumerate(coords):
            for subspace, targets in subspaces:
                subspace.write(targets, c)
            tally = tallies[k]
            if tally is not None and not policy.at_point(model, c):
                tallies[k] = tally = None
            if tally is not None:
                with _autocast(precision, device):
                    tally.add(model, batch, i)
            bar.update(1)
    return tallies


def _result(tally: BatchTally | None, metrics: tuple[str, ...]) -> dict[str, float]:
    """A point's metrics; NaN for each (a step's: its loss) where the point was not evaluated."""
    if tally is None:
        return {metric: math.nan for metric in metrics or ("loss",)}
    return tally.result()


def _total(splits: Mapping[str, Split], n_points: int) -> int | None:
    """Batches × points over ``splits``, when every split knows its number of batches."""
    try:
        batches = [len(split.source) for split in splits.values()]  # type: ignore[arg-type]
    except TypeError:  # an iterable without len() (an IterableDataset's DataLoader, a generator class)
        return None
    return sum(batches) * n_points


def _collect(results: list[dict[str, float]]) -> dict[str, list[float]]:
    """``{metric: [value per point]}`` from one result per point (a metric some point lacks has
    fewer values; the engine drops it, as for the point-outer loop)."""
    out: dict[str, list[float]] = {}
    for result in results:
        for metric, value in result.items():
            out.setdefault(metric, []).append(value)
    return out
