"""Scaling benchmark: a 31×31 surface of the demo MLP, 1 process × 2 threads against 2 processes × 1
thread (torchrun, gloo), sharded over points and over data.

The demo's ReLU MLP 784-512-512-10 (one epoch of SGD on 10,000 real MNIST training images, seed 0),
the plane through it along two filter-normalised random directions (seeds 0 and 1), a 31×31 grid on
[-1, 1]², evaluated on 2,000 MNIST training images in batches of 1,000, as an ``nn.Module`` (module
engine) and as a ``linpath.models.MLP`` (native engine). Each configuration runs in a fresh process
(or pair of processes under ``torchrun``), twice, interleaved; the best time counts. Reported: the
seconds of ``linpath.surface`` (slowest rank), the speed-up of 2 × 1 over 1 × 2, the share of the time
the ranks spent in linpath's collectives (communication and waiting for the other rank), and the
largest deviation from the single-process values.

Run: ``make bench`` (or ``python bench/distributed.py`` inside the venv).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, save, table  # noqa: E402

import linpath  # noqa: E402
import linpath.datasets  # noqa: E402
from linpath.models import MLP  # noqa: E402

SIZES = (784, 512, 512, 10)
N_TRAIN, N_EVAL, BATCH = 10_000, 2_000, 1_000
AXIS = np.linspace(-1.0, 1.0, 31).tolist()
ROUNDS = 2


def prepare(folder: Path) -> None:
    """Trains the MLP and writes its state_dict, the directions and the data into ``folder``."""
    x, y = linpath.datasets.mnist().train
    model = MLP(SIZES, seed=0)
    twin = model.to_torch()
    opt = torch.optim.SGD(twin.parameters(), lr=0.05, momentum=0.9)
    for idx in torch.randperm(N_TRAIN, generator=torch.Generator().manual_seed(0)).split(128):
        loss = F.cross_entropy(twin(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    dirs = [linpath.directions.random(twin, seed=s).tensor for s in (0, 1)]
    torch.save(
        {"state": twin.state_dict(), "dirs": dirs, "x": x[:N_EVAL], "y": y[:N_EVAL]}, folder / "job.pt"
    )


def worker(folder: Path, engine: str, shard: str) -> None:
    """One configuration (under torchrun when WORLD_SIZE is set): times linpath.surface, writes JSON."""
    import torch.distributed as dist

    ranked = "WORLD_SIZE" in os.environ
    if ranked:
        dist.init_process_group("gloo")
    job = torch.load(folder / "job.pt")
    model = MLP(SIZES, seed=0) if engine == "native" else MLP(SIZES, seed=0).to_torch()
    model.load_state_dict(job["state"])
    kw = {"grid": (AXIS, AXIS), "batch_size": BATCH, "progress": False, "engine": engine}
    if ranked:
        kw |= {"distributed": True, "shard": shard}
    started = time.perf_counter()
    surface = linpath.surface(model, job["state"], job["dirs"], (job["x"], job["y"]), **kw)
    seconds = time.perf_counter() - started
    rank = dist.get_rank() if ranked else 0
    info = surface.meta.get("job", {})
    out = {
        "seconds": seconds,
        "collective": info.get("collective_seconds", 0.0),
        "threads": torch.get_num_threads(),
    }
    (folder / f"{engine}-{shard}-{rank}.json").write_text(json.dumps(out))
    np.save(folder / f"{engine}-{shard}-{rank}.npy", surface.values["data"]["loss"])
    if ranked:
        dist.destroy_process_group()


def launch(folder: Path, engine: str, shard: str, processes: int) -> dict[str, float]:
    """Runs one configuration in fresh processes; the slowest rank's seconds and collective share."""
    script = [str(Path(__file__)), "--worker", str(folder), engine, shard]
    if processes == 1:
        cmd, threads = [sys.executable, *script], "2"
    else:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            *script,
        ]
        threads = "1"
    subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS=threads), check=True, capture_output=True)
    ranks = [json.loads((folder / f"{engine}-{shard}-{r}.json").read_text()) for r in range(processes)]
    slowest = max(ranks, key=lambda r: r["seconds"])
    return {
        "seconds": slowest["seconds"],
        "collective_share": max(r["collective"] / r["seconds"] for r in ranks),
    }


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        prepare(folder)
        for engine in ("module", "native"):
            for shard in ("points", "data"):
                single, double = [], []
                for _ in range(ROUNDS):  # interleaved, so that drifts of the machine hit both alike
                    single.append(launch(folder, engine, "single", 1))
                    reference = np.load(folder / f"{engine}-single-0.npy")
                    double.append(launch(folder, engine, shard, 2))
                got = np.load(folder / f"{engine}-{shard}-0.npy")
                one = min(r["seconds"] for r in single)
                two = min(double, key=lambda r: r["seconds"])
                rows.append(
                    {
                        "engine": engine,
                        "shard": shard,
                        "one": one,
                        "two": two["seconds"],
                        "speedup": one / two["seconds"],
                        "comm": two["collective_share"],
                        "dev": float(np.max(np.abs(got - reference) / np.abs(reference))),
                    }
                )
                print(rows[-1], flush=True)
    columns = [
        ("engine", "engine", "s"),
        ("shard", "shard", "s"),
        ("one", "1 proc × 2 threads (s)", ".2f"),
        ("two", "2 procs × 1 thread (s)", ".2f"),
        ("speedup", "speed-up", ".2f"),
        ("comm", "time in collectives", ".1%"),
        ("dev", "max rel. deviation", ".1e"),
    ]
    print(f"\n31×31 surface of the demo MLP {SIZES}, {N_EVAL:,} MNIST images, {machine()['cpu']}\n")
    print(table(rows, columns))
    print(f"\nwrote {save('distributed', {'rows': rows, 'grid': [31, 31], 'examples': N_EVAL})}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(Path(sys.argv[2]), sys.argv[3], sys.argv[4])
    else:
        main()
