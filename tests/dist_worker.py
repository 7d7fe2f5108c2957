"""Run by tests/test_distributed.py under ``torchrun --nproc-per-node 2`` (gloo, one torch thread per
process): builds the same seeded models, endpoints and data as the test (see :func:`case`), runs
``interpolate``/``surface`` on the process group and saves each rank's result to OUT/<name>.rank<r>.npz,
so that the test can compare every rank's result with a single-process run of its own.

Usage: dist_worker.py OUT JOB [JOB ...] with JOB one of the names in :data:`JOBS`, or
``resume:<checkpoint>`` (a checkpointed 21x21 surface of the BatchNorm module; the rank-1 process
writes its pid to OUT/pid.rank1 first, so that the test can kill it).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import linpath
from linpath.models import MLP

GRID = (torch.linspace(-1, 1, 21).tolist(),) * 2
ALPHAS = torch.linspace(-0.5, 1.5, 23).tolist()


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def bn_model(seed: int) -> nn.Module:
    """A small MLP with BatchNorm whose running statistics are not the defaults."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(10, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    with torch.no_grad():
        model[1].running_mean.normal_(0, 0.3, generator=_seeded(seed + 100))
        model[1].running_var.uniform_(0.5, 2.0, generator=_seeded(seed + 200))
    return model


def data(seed: int = 7) -> dict[str, Any]:
    """A train pair and a valid DataLoader (batches dealt across ranks with shard='data')."""
    g = _seeded(seed)
    x, y = torch.randn(301, 10, generator=g), torch.randint(0, 3, (301,), generator=g)
    xv, yv = torch.randn(157, 10, generator=g), torch.randint(0, 3, (157,), generator=g)
    return {"train": (x, y), "valid": DataLoader(TensorDataset(xv, yv), batch_size=32)}


def native_data(seed: int = 8) -> dict[str, Any]:
    g = _seeded(seed)
    return {"train": (torch.randn(503, 12, generator=g), torch.randint(0, 4, (503,), generator=g))}


def case(kind: str) -> dict[str, Any]:
    """The model, endpoints and data of a case: "bn" (nn.Module with BatchNorm) or "mlp" (native)."""
    if kind == "bn":
        model, a, b = bn_model(0), bn_model(1).state_dict(), bn_model(2).state_dict()
        return {"model": model, "a": a, "b": b, "data": data(), "batch_size": 64}
    model = MLP((12, 20, 20, 4), seed=0)
    a, b = MLP((12, 20, 20, 4), seed=1).state_dict(), MLP((12, 20, 20, 4), seed=2).state_dict()
    return {"model": model, "a": a, "b": b, "data": native_data(), "batch_size": 100}


def run(name: str, slow: bool = False, **kw: Any) -> Any:
    """Job ``name`` = "<line|surface>-<bn|mlp>-<points|data>"; ``slow``: every forward pass of the
    model sleeps 2 ms (a job that lasts seconds, for the kill test; the values are the same)."""
    what, kind, shard = name.split("-")
    c = case(kind)
    if slow:
        c["model"].register_forward_hook(lambda *_: time.sleep(0.002))
    if BACKEND == "nccl":
        c["model"] = c["model"].to(torch.device("cuda", torch.cuda.current_device()))
    common = {"batch_size": c["batch_size"], "progress": False, "shard": shard, **kw}
    if what == "line":
        return linpath.interpolate(c["model"], c["a"], c["b"], c["data"], alphas=ALPHAS, **common)
    dirs = [linpath.directions.random(c["model"], seed=s) for s in (3, 4)]
    return linpath.surface(c["model"], c["a"], dirs, c["data"], grid=GRID, **common)


JOBS = [f"{w}-{k}-{s}" for w in ("line", "surface") for k in ("bn", "mlp") for s in ("points", "data")]
#: Jobs whose ranks disagree on one fact each (rank 1 differs from rank 0).
DISAGREE = ("grid", "settings", "layout", "origin", "data")


def disagree(fact: str, rank: int) -> Any:
    """A line sweep where rank 1 was given another ``fact`` than rank 0."""
    c = case("bn")
    model, a, b, d = c["model"], c["a"], c["b"], c["data"]
    alphas = ALPHAS[:-1] if fact == "grid" and rank == 1 else ALPHAS
    metrics = ("loss",) if fact == "settings" and rank == 1 else None
    if fact == "layout" and rank == 1:
        model = nn.Sequential(nn.Linear(10, 17), nn.BatchNorm1d(17), nn.ReLU(), nn.Linear(17, 3))
        a = model.state_dict()
        b = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    if fact == "origin" and rank == 1:
        a = bn_model(9).state_dict()
    if fact == "data" and rank == 1:
        d = data(seed=99)
    return linpath.interpolate(
        model, a, b, d, alphas=alphas, metrics=metrics, progress=False, distributed=True
    )


#: The process group's backend: gloo (CPU), or nccl (one GPU per process) when the test asks for it.
BACKEND = os.environ.get("LINPATH_TEST_BACKEND", "gloo")


def main(out: Path, jobs: list[str]) -> None:
    torch.set_num_threads(1)
    if BACKEND == "nccl":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(BACKEND)
    rank = dist.get_rank()
    try:
        for job in jobs:
            if job.startswith("disagree-"):
                try:
                    disagree(job.split("-", 1)[1], rank)
                    message = "no error"
                except ValueError as e:
                    message = str(e)
                (out / f"{job}.rank{rank}.txt").write_text(message)
                continue
            if job.startswith("resume:"):
                (out / f"pid.rank{rank}").write_text(str(os.getpid()))
                result = run("surface-bn-points", checkpoint=job.split(":", 1)[1], slow=True)
                name = "resume"
            else:
                result, name = run(job, distributed=True), job
            result.save(out / f"{name}.rank{rank}.npz")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
