"""Sweeps and surfaces across the processes of a ``torch.distributed`` process group.

linpath writes no process management of its own: the processes come from ``torchrun`` (or any
launcher that sets up ``torch.distributed``), the collectives from the process group (gloo on CPUs,
NCCL on GPUs). This module holds what the job driver (:mod:`linpath.runner`) needs from the group:

* :func:`current_group`: the group to use (``distributed=None``: the default group when one is
  initialised with more than one process; ``True``: require one; ``False``: never).
* :func:`agree`: a cheap exchange of digests (the grid, the settings, the parameter layout, θ0 and
  the directions, the data) before any evaluation; ranks that disagree all raise the same ValueError.
* :func:`consistent`: runs a step that may fail (reading a result file) on every rank and raises the
  same error on every rank when it fails on any, so that no rank is left waiting in a collective.
* :class:`ShardedSplit`: one rank's share of a split for ``shard="data"``, whose per-point sums
  (float64 loss sum, error count, example count) are all-reduced across the ranks.
* :func:`gather`: every rank's objects, on every rank.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, IterableDataset, RandomSampler

from .batches import Totals
from .data import Split

#: What ``shard=`` accepts: grid points dealt across ranks, or each split's examples.
SHARDS = ("points", "data")
#: Elements hashed per step (so that a large model is never copied to the CPU whole).
_CHUNK = 1 << 22

T = TypeVar("T")


@dataclass(frozen=True)
class Group:
    """The process group a job runs on: this process's rank, the number of ranks, the backend."""

    rank: int
    world: int
    backend: str

    @property
    def device(self) -> torch.device:
        """Where the collectives' tensors live: the current GPU for NCCL, else the CPU."""
        if self.backend == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")


def current_group(distributed: bool | None) -> Group | None:
    """The default process group when ``distributed`` asks for it (see the module docstring)."""
    if distributed is not None and not isinstance(distributed, bool):
        raise TypeError(f"distributed must be None, True or False, got {distributed!r}")
    if distributed is False:
        return None
    ready = dist.is_available() and dist.is_initialized()
    if not ready:
        if distributed:
            raise ValueError(
                "distributed=True needs an initialised torch.distributed process group: launch the script "
                "with torchrun and call torch.distributed.init_process_group() first, or run "
                "`torchrun ... -m linpath sweep|surface`, which does"
            )
        return None
    world = dist.get_world_size()
    if world == 1 and distributed is None:
        return None
    return Group(dist.get_rank(), world, str(dist.get_backend()))


def check_shard(shard: Any) -> str:
    """``shard`` checked against :data:`SHARDS`."""
    if not isinstance(shard, str) or shard not in SHARDS:
        raise ValueError(f"shard must be one of {SHARDS}, got {shard!r}")
    return shard


class _Collectives:
    """Seconds spent in collectives (communication, and waiting for the other ranks to get there)."""

    seconds = 0.0

    @classmethod
    @contextlib.contextmanager
    def timed(cls) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            cls.seconds += time.perf_counter() - started


def collective_seconds() -> float:
    """Seconds this process has spent in linpath's collectives so far."""
    return _Collectives.seconds


def gather(group: Group, obj: T) -> list[T]:
    """``obj`` of every rank, in rank order, on every rank (pickled: for small objects)."""
    out: list[Any] = [None] * group.world
    with _Collectives.timed():
        dist.all_gather_object(out, obj)
    return out


def broadcast(group: Group, obj: T) -> T:
    """Rank 0's ``obj``, on every rank."""
    shared = [obj]
    with _Collectives.timed():
        dist.broadcast_object_list(shared, src=0)
    return shared[0]


def all_reduce(group: Group, vector: torch.Tensor) -> torch.Tensor:
    """The sum of ``vector`` (float64, on the CPU) over every rank, on the CPU."""
    with _Collectives.timed():
        moved = vector.to(group.device)
        dist.all_reduce(moved)
        return moved.cpu()


def digest(*tensors: torch.Tensor) -> str:
    """A BLAKE2b digest of the tensors' float64 values (and shapes), read in chunks on their device."""
    h = hashlib.blake2b(digest_size=16)
    for t in tensors:
        flat = t.detach().reshape(-1)
        h.update(repr(tuple(t.shape)).encode())
        for i in range(0, flat.numel(), _CHUNK):
            h.update(flat[i : i + _CHUNK].to("cpu", torch.float64).numpy().tobytes())
    return h.hexdigest()


def digest_json(obj: Any) -> str:
    """A digest of a JSON-able object (keys sorted)."""
    text = json.dumps(obj, sort_keys=True, allow_nan=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


#: What each agreed fact is, and how ranks come to differ on it (for the message).
_FACTS = {
    "settings": "the settings (metrics, loss, engine, precision, buffers, order, batch sizes)",
    "grid": "the grid of points (alphas / xs and ys)",
    "layout": "the parameter layout (names and shapes: another model)",
    "origin": "θ0 (the start or center: build the model and endpoints from the same checkpoint or seed)",
    "directions": "the directions (or the end point)",
    "buffers": "the buffers' subspace (BatchNorm statistics of the endpoints)",
    "data": "the data (build it the same way on every rank; shard='data' splits it for you)",
    "checkpoint": "the finished points read from the checkpoint file (on a filesystem every rank sees?)",
}


def agree(group: Group, facts: Mapping[str, str]) -> None:
    """Exchanges the digests ``facts`` (names as in ``_FACTS``) between the ranks; when any differ,
    every rank raises the same ValueError naming them and which ranks hold which value."""
    seen = gather(group, dict(facts))
    names = sorted({k for f in seen for k in f})
    differ = [k for k in names if len({f.get(k) for f in seen}) > 1]
    if not differ:
        return
    lines = []
    for k in differ:
        groups: dict[str | None, list[int]] = {}
        for rank, f in enumerate(seen):
            groups.setdefault(f.get(k), []).append(rank)
        ranks = "; ".join(
            f"rank{'s' if len(r) > 1 else ''} {', '.join(map(str, r))}: {str(v)[:8]}"
            for v, r in groups.items()
        )
        lines.append(f"  {_FACTS.get(k, k)} ({ranks})")
    raise ValueError(
        f"the {group.world} processes of the torch.distributed group disagree before any evaluation on:\n"
        + "\n".join(lines)
        + "\nevery rank must be given the same model, endpoints, directions, grid, data and settings"
    )


def consistent(group: Group | None, step: Callable[[], T]) -> T:
    """``step()``, run on every rank; a ValueError/OSError on any rank is raised on every rank (the
    lowest failing rank's message), so that none goes on into a collective the others never reach."""
    if group is None:
        return step()
    try:
        result, error = step(), None
    except (ValueError, OSError) as e:
        result, error = None, f"{type(e).__name__}: {e}"
    errors = gather(group, error)
    failed = [(rank, e) for rank, e in enumerate(errors) if e is not None]
    if failed:
        rank, message = failed[0]
        raise ValueError(f"rank {rank} of {group.world}: {message}")
    return result  # type: ignore[return-value]  # no rank failed, so step() returned


class ShardedSplit(Split):
    """One rank's share of a split (``shard="data"``): a contiguous slice of an ``(X, Y)`` pair, or
    every ``world``-th batch of a DataLoader. Each point's sums over the share are all-reduced
    (:meth:`reduce`), so that every rank gets the sums over the whole split."""

    def __init__(self, split: Split, group: Group) -> None:
        self.group = group
        self._layout: list[str] | None = None
        pair = split.pair
        if pair is not None:
            n = len(pair[0])
            if n < group.world:
                raise ValueError(
                    f"shard='data' splits the examples of split {split.name!r} across {group.world} ranks, "
                    f"but it holds {n}; use shard='points'"
                )
            lo, hi = n * group.rank // group.world, n * (group.rank + 1) // group.world
            super().__init__(split.name, (pair[0][lo:hi], pair[1][lo:hi]), split.batch_size)
        else:
            assert split.source is not None  # a split is a pair or a re-iterable
            super().__init__(split.name, dealt_batches(split.source, group, split.name), None)
        self.whole = split

    @property
    def size(self) -> int | None:
        """The whole split's number of examples (what results record)."""
        return self.whole.size

    def reduce(self, totals: Totals) -> None:
        """Replaces this rank's sums in ``totals`` by the sums over every rank (one all-reduce of a
        few float64 scalars per metric)."""
        if self._layout is None:
            self._layout = sorted(
                {name for names in gather(self.group, sorted(totals.sums)) for name in names}
            )
        layout = self._layout
        vector = torch.zeros(3 * len(layout) + 2, dtype=torch.float64)
        for k, name in enumerate(layout):
            if name in totals.sums:
                vector[3 * k] = totals.sums[name].double().cpu()
                vector[3 * k + 1] = float(totals.counts[name])
                vector[3 * k + 2] = totals.seen[name]
        vector[-2] = totals.batches
        vector[-1] = len(set(totals.sums) - set(layout))
        vector = all_reduce(self.group, vector)
        if vector[-1] > 0:
            raise ValueError(
                f"split {self.name!r}: the batches of some rank returned metrics that the others' did not "
                f"({sorted(set(totals.sums) - set(layout))} here); shard='data' needs the same metrics from "
                "every batch"
            )
        totals.sums = {name: vector[3 * k] for k, name in enumerate(layout) if vector[3 * k + 2] > 0}
        totals.counts = {
            name: int(vector[3 * k + 1]) for k, name in enumerate(layout) if vector[3 * k + 2] > 0
        }
        totals.seen = {name: int(vector[3 * k + 2]) for k, name in enumerate(layout) if vector[3 * k + 2] > 0}
        totals.batches = int(vector[-2])


def dealt_batches(source: Iterable[Any], group: Group, name: str) -> Iterable[Any]:
    """Every ``world``-th batch of ``source``, starting at this rank's: a DataLoader over a
    map-style dataset gets a new one that loads only those batches; anything else is read whole
    and the others' batches skipped. A shuffling DataLoader is refused (ranks would draw other
    permutations, and examples would be counted twice or never)."""
    if isinstance(source, DataLoader):
        if isinstance(source.sampler, RandomSampler):
            raise ValueError(
                f"shard='data' needs the same batches on every rank, but split {name!r} is a DataLoader "
                "with shuffle=True; pass shuffle=False (the sums do not depend on the order)"
            )
        if not isinstance(source.dataset, IterableDataset) and source.batch_sampler is not None:
            return _loader_of(source, list(source.batch_sampler)[group.rank :: group.world])
    return _EveryNth(source, group.rank, group.world)


def _loader_of(loader: DataLoader, batches: list[list[int]]) -> DataLoader:
    """A DataLoader like ``loader`` that yields exactly ``batches`` (lists of dataset indices)."""
    extra: dict[str, Any] = {}
    if loader.num_workers > 0:
        extra = {"prefetch_factor": loader.prefetch_factor, "persistent_workers": loader.persistent_workers}
    return DataLoader(
        loader.dataset,
        batch_sampler=batches,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context,
        **extra,
    )


class _EveryNth:
    """Re-iterable: batches ``start``, ``start + step``, ... of ``source``."""

    def __init__(self, source: Iterable[Any], start: int, step: int) -> None:
        self.source, self.start, self.step = source, start, step

    def __iter__(self) -> Iterator[Any]:
        for i, batch in enumerate(self.source):
            if i % self.step == self.start:
                yield batch

    def __len__(self) -> int:
        n = len(self.source)  # type: ignore[arg-type]  # TypeError when unknown, as for the source itself
        return max(0, (n - self.start + self.step - 1) // self.step)


def reduce_means(
    group: Group, values: list[dict[str, dict[str, list[float]]]], weights: Sequence[float]
) -> None:
    """For engines that report means (not sums) per split: replaces this rank's means in ``values``
    (one dict per pass) by the weighted means over every rank, ``weights`` being this rank's weight
    (number of examples) per split, in the order of each pass's splits."""
    flat: list[float] = []
    for per_pass in values:
        for (_, mv), w in zip(per_pass.items(), weights, strict=True):
            for v in mv.values():
                flat.extend(x * w for x in v)
    vector = all_reduce(group, torch.tensor(flat + list(weights), dtype=torch.float64))
    sums, total = vector[: len(flat)].tolist(), vector[len(flat) :].tolist()
    k = 0
    for per_pass in values:
        for (_, mv), w in zip(per_pass.items(), total, strict=True):
            for metric, v in mv.items():
                mv[metric] = [s / w for s in sums[k : k + len(v)]]
                k += len(v)
