"""The job driver behind :func:`linpath.interpolate` and :func:`linpath.surface` when they run on a
``torch.distributed`` process group or write a resumable result file (``checkpoint=``).

A job is the list of all its points (the grid, then the few points a bf16 sweep re-checks in
float32), each with a global index. The driver

1. checks that every rank was given the same job (:func:`linpath.distributed.agree`: digests of the
   settings, the grid, the parameter layout, θ0, the directions and the data);
2. reads the points a result file already holds (:mod:`linpath.pointlog`), and keeps only the rest;
3. deals the rest across the ranks, interleaved (rank r takes the r-th, (r + W)-th, ... so that ranks
   finish together), or with ``shard="data"`` has every rank evaluate every point on its share of
   the examples, the sums all-reduced per point;
4. runs the engine on chunks of its points (one chunk per pass without a result file; chunks of
   about :data:`CHECKPOINT_SECONDS` with one, each appended to the file as soon as it is done);
5. gathers every rank's values (a few floats per point), so that each rank returns the whole result.

One progress bar, on rank 0, counts the points done across ranks (through the process group's store).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch.distributed as dist
from torch import nn

from . import pointlog
from .distributed import (
    Group,
    ShardedSplit,
    agree,
    broadcast,
    check_shard,
    collective_seconds,
    consistent,
    current_group,
    digest,
    digest_json,
    gather,
    reduce_means,
)
from .engines import BAR_RELAY, Geometry, PassSpec, Request, Values, progress_bar

#: Seconds of work per chunk of points between appends to a result file (the most a kill loses).
CHECKPOINT_SECONDS = float(os.environ.get("LINPATH_CHECKPOINT_SECONDS", "10"))

#: One point's values: ``{split: {metric: value}}``.
PointValues = dict[str, dict[str, float]]
_jobs = itertools.count()


@dataclass(frozen=True)
class Job:
    """How ``interpolate``/``surface`` were asked to run (see their ``distributed``, ``shard`` and
    ``checkpoint`` arguments); ``kind`` is ``"line"``, ``"surface"`` or ``"curve"``
    (:mod:`linpath.curves`)."""

    kind: str
    distributed: bool | None = None
    shard: str = "points"
    checkpoint: str | os.PathLike[str] | None = None


def run(
    job: Job,
    asked: Request,
    model: nn.Module,
    geometry: Geometry,
    passes: list[PassSpec],
    progress: bool | None,
) -> tuple[list[Values], dict[str, Any]]:
    """The values of every pass (as :meth:`linpath.engines.Engine.run` returns them) and what the
    result's meta records about the job (``{}`` for a plain single-process run)."""
    shard = check_shard(job.shard)
    group = current_group(job.distributed)
    path = _checked_path(job.checkpoint)
    if group is None and path is None:
        return _engine_run(asked, model, geometry, asked.splits, passes, progress), {}
    _check_data_shard(shard, asked, model)
    header = job_header(job.kind, asked, model, geometry, passes)
    if group is not None:
        agree(group, facts(header))
    done = consistent(group, lambda: pointlog.read_points(path, header)) if path else {}
    if group is not None and path is not None:
        agree(group, {"checkpoint": digest_json(sorted(done))})
    work = _Work(asked, model, geometry, passes, group, shard)
    todo = [i for i in range(work.size) if i not in done]
    started, waited = time.perf_counter(), collective_seconds()
    computed = work.evaluate(todo, done, path, header, progress)
    if path is not None and (group is None or group.rank == 0):
        pointlog.finish(path, header)
    info: dict[str, Any] = {"resumed_points": len(done), "computed_points": len(todo)}
    done.update(computed)
    if group is not None:
        info |= {"world_size": group.world, "rank": group.rank, "backend": group.backend, "shard": shard}
        info["seconds"] = time.perf_counter() - started
        info["collective_seconds"] = collective_seconds() - waited
    if path is not None:
        info["checkpoint"] = os.fspath(path)
    return assemble(passes, done, list(asked.splits)), info


def _checked_path(checkpoint: Any) -> str | None:
    if checkpoint is None:
        return None
    if not isinstance(checkpoint, str | os.PathLike):
        raise TypeError(f"checkpoint must be a path (str or os.PathLike), got {type(checkpoint).__name__}")
    return os.fspath(checkpoint)


def _check_data_shard(shard: str, asked: Request, model: nn.Module) -> None:
    """shard='data' with an engine that reports means needs means over examples to combine."""
    if (
        shard == "data"
        and not asked.engine.tallies
        and not getattr(model, "objective_is_cross_entropy", True)
    ):
        raise ValueError(
            f"shard='data' combines each rank's mean over its examples, but a {type(model).__name__}'s "
            "objective is not a mean over examples; use shard='points'"
        )


def _engine_run(
    asked: Request,
    model: nn.Module,
    geometry: Geometry,
    splits: Mapping[str, Any],
    passes: list[PassSpec],
    progress: bool | None,
) -> list[Values]:
    return asked.engine.run(
        model,
        geometry,
        splits,
        asked.metrics,
        passes,
        progress,
        asked.loss_fn,
        order=asked.order,
        policy=asked.policy,
    )


def job_header(
    kind: str, asked: Request, model: nn.Module, geometry: Geometry, passes: list[PassSpec]
) -> dict[str, Any]:
    """What defines a job's results (a result file's header; the facts ranks must agree on)."""
    meta = asked.meta(model, geometry.params)
    for volatile in ("created", "linpath_version"):
        meta.pop(volatile)
    policy = {k: v for k, v in asked.policy.meta().items() if k != "invalid_points"}
    settings = {
        **meta,
        "buffers": policy,
        "batch_sizes": {name: getattr(s, "batch_size", None) for name, s in asked.splits.items()},
        "passes": [[len(points), precision] for points, precision in passes],
    }
    hashes = {
        "origin": digest(geometry.origin),
        "directions": digest(*geometry.directions),
        "buffers": digest(geometry.buffers[1], *geometry.buffers[2]) if geometry.buffers else "none",
        "data": digest_json({name: _data_facts(split) for name, split in asked.splits.items()}),
    }
    return {
        "kind": kind,
        "settings": settings,
        "hashes": hashes,
        "layout": [[n, list(p.shape)] for n, p in zip(geometry.names, geometry.params, strict=True)],
        "grid": np.concatenate([points for points, _ in passes]).tolist(),
    }


def _data_facts(split: Any) -> Any:
    """A split's identity: a digest of an ``(X, Y)`` pair's values, else its type and length."""
    if split.pair is not None:
        return digest(*split.pair)
    source = split.source
    dataset = getattr(source, "dataset", None)
    return {
        "type": type(source).__name__,
        "batches": len(source) if hasattr(source, "__len__") else None,
        "examples": len(dataset) if dataset is not None and hasattr(dataset, "__len__") else None,
    }


def facts(header: Mapping[str, Any]) -> dict[str, str]:
    """The digests ranks exchange before a job (see :func:`linpath.distributed.agree`)."""
    return {
        "settings": digest_json([header["kind"], header["settings"]]),
        "grid": digest_json(header["grid"]),
        "layout": digest_json(header["layout"]),
        **header["hashes"],
    }


class _Work:
    """One rank's part of a job: its points, its splits, its engine calls."""

    def __init__(
        self,
        asked: Request,
        model: nn.Module,
        geometry: Geometry,
        passes: list[PassSpec],
        group: Group | None,
        shard: str,
    ) -> None:
        self.asked, self.model, self.geometry, self.group, self.shard = asked, model, geometry, group, shard
        self.points = np.concatenate([points for points, _ in passes])
        self.precisions = [precision for points, precision in passes for _ in range(len(points))]
        self.size = len(self.points)
        data_shard = shard == "data" and group is not None
        self.splits = (
            {name: ShardedSplit(split, group) for name, split in asked.splits.items()}
            if data_shard and group is not None
            else asked.splits
        )
        self.weights = [len(s.pair[0]) if s.pair is not None else 0 for s in self.splits.values()]
        self.dealt = group is not None and shard == "points"
        self.rank = 0 if group is None else group.rank

    def evaluate(
        self,
        todo: list[int],
        done: Mapping[int, PointValues],
        path: str | None,
        header: dict[str, Any],
        progress: bool | None,
    ) -> dict[int, PointValues]:
        """Evaluates this rank's share of ``todo`` and returns the values of every point of ``todo``
        (every rank's, gathered)."""
        group = self.group
        mine = todo[self.rank :: group.world] if self.dealt and group is not None else todo
        writes = path is not None and (self.dealt or self.rank == 0)

        def opened() -> pointlog.PointLog | None:
            return pointlog.PointLog.open(path, header, rank=self.rank) if writes and path else None

        log = consistent(group, opened) if path is not None else None
        computed: dict[int, PointValues] = {}
        try:
            with _JobBar(group, self.size, len(done), progress, shared=self.dealt) as bar:
                for chunk in self._chunks(mine, chunked=path is not None):
                    with bar.chunk(len(chunk)):
                        values = self._chunk_values(chunk)
                    if log is not None:
                        log.append(list(values.items()))
                    computed.update(values)
        finally:
            if log is not None:
                log.close()
        return self._gathered(computed) if self.dealt else computed

    def _chunks(self, mine: list[int], chunked: bool) -> Iterator[list[int]]:
        """``mine`` in chunks of one precision each: one per pass, or with a result file chunks of
        about :data:`CHECKPOINT_SECONDS` (timed as they go; with shard='data' rank 0's timing decides
        for every rank, as the ranks evaluate each chunk together)."""
        for _, run in itertools.groupby(mine, key=lambda i: self.precisions[i]):
            rest = list(run)
            size = len(rest) if not chunked else 1
            while rest:
                started = time.perf_counter()
                yield rest[:size]
                taken, rest = time.perf_counter() - started, rest[size:]
                if chunked:
                    size = self._next_size(size, taken)

    def _next_size(self, size: int, taken: float) -> int:
        wanted = max(1, min(4 * size, int(size * CHECKPOINT_SECONDS / max(taken, 1e-3))))
        if self.shard == "data" and self.group is not None:
            wanted = int(broadcast(self.group, wanted))
        return wanted

    def _chunk_values(self, chunk: list[int]) -> dict[int, PointValues]:
        """The values at the points ``chunk`` (one precision), evaluated by the engine."""
        passes = [(self.points[chunk], self.precisions[chunk[0]])]
        values = _engine_run(self.asked, self.model, self.geometry, self.splits, passes, None)
        if self.shard == "data" and self.group is not None and not self.asked.engine.tallies:
            reduce_means(self.group, values, self.weights)
        return {
            i: {split: {m: float(v[k]) for m, v in mv.items()} for split, mv in values[0].items()}
            for k, i in enumerate(chunk)
        }

    def _gathered(self, computed: dict[int, PointValues]) -> dict[int, PointValues]:
        """Every rank's values (and the points its buffer policy refused), on every rank."""
        assert self.group is not None  # only a dealt job gathers
        invalid = getattr(self.asked.policy, "invalid", None)
        everyone = gather(self.group, (computed, invalid))
        merged = {i: v for values, _ in everyone for i, v in values.items()}
        if isinstance(invalid, list):
            refused = [p for _, inv in everyone for p in inv or []]
            invalid[:] = sorted(refused, key=lambda p: tuple(p))
        return merged


def assemble(
    passes: list[PassSpec], values: Mapping[int, PointValues], split_names: list[str]
) -> list[Values]:
    """``{split: {metric: [value per point]}}`` per pass from the values of each point (global
    index); a metric some point lacks is dropped, as the engines do."""
    results: list[Values] = []
    offset = 0
    for points, _ in passes:
        indices = range(offset, offset + len(points))
        offset += len(points)
        per_pass: Values = {}
        for split in split_names:
            first = values[indices[0]][split]
            metrics = [m for m in first if all(m in values[i][split] for i in indices)]
            if not metrics:
                raise ValueError(f"no metric was computed at every point of split {split!r}")
            per_pass[split] = {m: [values[i][split][m] for i in indices] for m in metrics}
        results.append(per_pass)
    return results


class _JobBar:
    """The job's one progress bar, on rank 0: points done across ranks. Each rank adds the points it
    finishes to a counter in the process group's store (at most every half second); rank 0 shows
    the sum. Without a store (or with shard='data', where every rank evaluates every point), rank 0
    shows its own count (times the number of ranks when points are dealt)."""

    def __init__(
        self, group: Group | None, total: int, done: int, progress: bool | None, shared: bool
    ) -> None:
        self.group, self.done, self.shared = group, done, shared
        self.show = group is None or group.rank == 0
        self.bar = progress_bar(total, progress if self.show else False, unit="pt")
        self.bar.n = done
        self.store = _store() if shared else None
        self.key = f"linpath/progress/{next(_jobs)}"
        self.local, self.published, self.last = 0.0, 0, 0.0

    def __enter__(self) -> _JobBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            self.bar.n = self.bar.total
            self.bar.refresh()
        self.bar.close()

    @contextlib.contextmanager
    def chunk(self, points: int) -> Iterator[None]:
        """While the engine evaluates ``points`` points, its bars report here."""
        base = self.local

        def relay(total: int | None, span: tuple[float, float]) -> _RelayBar:
            return _RelayBar(self, base + span[0] * points, (span[1] - span[0]) * points, total)

        token = BAR_RELAY.set(relay)
        try:
            yield
        finally:
            BAR_RELAY.reset(token)
        self.advance(base + points, force=True)

    def advance(self, local: float, force: bool = False) -> None:
        """This rank has finished ``local`` points (fractions within a chunk; never fewer than before)."""
        self.local = local = max(local, self.local)
        now = time.monotonic()
        if not force and now - self.last < 0.5:
            return
        self.last = now
        counted = local * (self.group.world if self.shared and self.group is not None else 1)
        if self.store is not None:
            milli = int(local * 1000)
            counted = self.store.add(self.key, milli - self.published) / 1000
            self.published = milli
        if self.show:
            self.bar.n = min(self.done + round(counted), self.bar.total)
            self.bar.refresh()


def _store() -> Any:
    """The default process group's key-value store, or None where torch does not expose it."""
    try:
        return dist.distributed_c10d._get_default_store()
    except (AttributeError, RuntimeError, ValueError):
        return None


class _RelayBar:
    """What an engine gets for a progress bar inside a job: it reports the fraction done to the
    job's bar (the engine's total is in its own units: points, batches × points, ...)."""

    def __init__(self, job: _JobBar, base: float, points: float, total: int | None) -> None:
        self.job, self.base, self.points, self.total = job, base, points, total
        self.n = 0

    def update(self, k: int = 1) -> None:
        self.n += k
        self.refresh()

    def refresh(self) -> None:
        if self.total:
            self.job.advance(self.base + self.points * min(1.0, self.n / self.total))

    def close(self) -> None:
        """Nothing to close: the job's bar is closed by the job."""

    def __enter__(self) -> _RelayBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


#: The type of a relay factory (see :data:`linpath.engines.BAR_RELAY`).
Relay = Callable[[int | None, tuple[float, float]], _RelayBar]
