"""Projection benchmark: a 1 GB trajectory projected onto its line, against NumPy, in one process.

250 checkpoints of 1,048,576 float32 values (1.05 GB): a random walk with drift. NumPy does what
a user would write (per checkpoint: widen to float64, subtract θ0, dot with d, norm of the
residual); linpath projects the same data in memory and from a trajectory file (in the page
cache). Throughput is compared with the machine's streaming read rate (torch.sum over 1 GB).

Run: ``make bench`` (or ``python bench/project.py`` inside the venv).

``python bench/project.py --cold GB`` instead writes a trajectory of that many gigabytes (choose more
than this machine's memory, so the page cache cannot hold it) and compares ``project`` from that
file with a plain sequential read of the same file, both cold (the file's cached pages dropped with
``posix_fadvise(DONTNEED)`` before each; two rounds, alternately, best of each): the floor of a
projection from disk is the disk's read rate, not memory bandwidth.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import best_time, machine, save, table  # noqa: E402
from floors import read_bandwidth  # noqa: E402

import linpath  # noqa: E402
from linpath import _linpath  # noqa: E402

T, N = 250, 1 << 20


def walk() -> np.ndarray:
    rng = np.random.default_rng(0)
    steps = rng.standard_normal((T, N), dtype=np.float32) * 0.01
    steps += np.linspace(0, 1, N, dtype=np.float32) * 0.004
    return np.cumsum(steps, axis=0)


def numpy_projection(traj: np.ndarray, t0: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    dd = d @ d
    coord, resid = np.empty(len(traj)), np.empty(len(traj))
    for t, row in enumerate(traj):
        x = row.astype(np.float64) - t0
        coord[t] = x @ d / dd
        resid[t] = np.linalg.norm(x - coord[t] * d)
    return coord, resid


def store_from(traj: np.ndarray, path: Path | None) -> linpath.Trajectory:
    names, shapes = ["theta"], [[N]]
    store = (
        _linpath.TrajectoryStore.in_memory(names, shapes, "float32")
        if path is None
        else _linpath.TrajectoryStore.create(str(path), names, shapes, "float32")
    )
    for t, row in enumerate(traj):
        store.append(t, torch.from_numpy(row))
    return linpath.Trajectory(store) if path is None else linpath.Trajectory.open(path)


def main() -> None:
    traj = walk()
    gigabytes = traj.nbytes / 1e9
    t0, t1 = traj[0].astype(np.float64), traj[-1].astype(np.float64)
    rows = []
    seconds, (coord, resid) = best_time(lambda: numpy_projection(traj, t0, t1 - t0), repeats=2)
    rows.append({"method": "NumPy (per checkpoint, float64)", "seconds": seconds})
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        for name, path in (("linpath, in memory", None), ("linpath, from a file", Path(tmp) / "t.lpt")):
            trajectory = store_from(traj, path)
            seconds, proj = best_time(
                lambda trajectory=trajectory: linpath.project(trajectory, t0, t1), repeats=3
            )
            rel = max(
                np.max(np.abs(proj.coordinate - coord) / np.maximum(np.abs(coord), 1e-300)),
                np.max(np.abs(proj.residual - resid) / np.maximum(resid, 1e-300)),
            )
            rows.append({"method": name, "seconds": seconds, "rel_error": float(rel)})
            del trajectory
    rate = read_bandwidth(1 << 30) / 1e9  # GB/s of torch.sum over 1 GB of float32, all threads
    for r in rows:
        r["gb_per_s"] = gigabytes / r["seconds"]
        r["vs_numpy"] = rows[0]["seconds"] / r["seconds"]
        r["of_read_rate"] = r["gb_per_s"] / rate
    print(
        f"Projection: {T} checkpoints x {N:,} float32 ({gigabytes:.2f} GB); streaming read rate "
        f"{rate:.1f} GB/s  ({machine()['cpu']})"
    )
    print(
        table(
            rows,
            [
                ("method", "method", ""),
                ("seconds", "time (s)", ".3f"),
                ("gb_per_s", "GB/s", ".2f"),
                ("of_read_rate", "of read rate", ".0%"),
                ("rel_error", "max rel. error vs NumPy", ".1e"),
                ("vs_numpy", "speed vs NumPy", ".1f"),
            ],
        )
    )
    print("saved", save("project", {"rows": rows, "read_rate_gb_per_s": rate, "gigabytes": gigabytes}))


#: Checkpoint size of the cold-file run: 2**24 float32 values (64 MiB), the size of a mid-sized CNN.
COLD_N = 1 << 24


def write_cold_trajectory(path: Path, gigabytes: float) -> int:
    """A random walk of 64 MiB checkpoints totalling ``gigabytes``, written checkpoint by checkpoint
    (never held in memory whole); returns the number of checkpoints."""
    count = max(2, round(gigabytes * 1e9 / (COLD_N * 4)))
    store = _linpath.TrajectoryStore.create(str(path), ["theta"], [[COLD_N]], "float32")
    gen = torch.Generator().manual_seed(0)
    theta = torch.zeros(COLD_N)
    for t in range(count):
        theta += torch.randn(COLD_N, generator=gen) * 0.01 + 0.004
        store.append(t, theta)
        if t % 50 == 0:
            print(f"  written {t + 1}/{count} checkpoints", flush=True)
    del store
    return count


def drop_cached(path: Path) -> None:
    """Evicts the file's pages from the page cache (after flushing them), so the next read is cold."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def sequential_read_seconds(path: Path, block: int = 64 << 20) -> float:
    """Seconds to read the whole file once in ``block``-byte reads, cold, with the kernel told the
    reads are sequential (a larger readahead): the disk's read rate."""
    drop_cached(path)
    buffer = bytearray(block)
    start = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        while f.readinto(buffer):
            pass
    return time.perf_counter() - start


def cold_project_seconds(path: Path, trajectory: linpath.Trajectory, t0, t1) -> float:
    """Seconds of ``linpath.project`` from the file, its pages dropped from the cache first."""
    drop_cached(path)
    start = time.perf_counter()
    linpath.project(trajectory, t0, t1)
    return time.perf_counter() - start


def cold(gigabytes: float, folder: str) -> None:
    """project() from a file larger than the page cache against a plain read of that file."""
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        path = Path(tmp) / "cold.lpt"
        count = write_cold_trajectory(path, gigabytes)
        size = path.stat().st_size / 1e9
        trajectory = linpath.Trajectory.open(path)
        t0, t1 = trajectory[0].tensor.double(), trajectory[count - 1].tensor.double()
        # Alternately, twice, best of each: the disk's rate drifts (a shared volume).
        reads, projections = [], []
        for _ in range(2):
            reads.append(sequential_read_seconds(path))
            projections.append(cold_project_seconds(path, trajectory, t0, t1))
        rows = [
            {"method": "sequential read (64 MiB blocks)", "seconds": min(reads), "all": reads},
            {"method": "linpath.project from the file", "seconds": min(projections), "all": projections},
        ]
    memory = read_bandwidth(1 << 30) / 1e9
    for r in rows:
        r["gb_per_s"] = size / r["seconds"]
        r["of_disk"] = r["gb_per_s"] / rows[0]["gb_per_s"]
    print(
        f"Cold projection: {count} checkpoints x {COLD_N:,} float32 ({size:.1f} GB file; memory "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB); memory read rate "
        f"{memory:.1f} GB/s  ({machine()['cpu']})"
    )
    print(
        table(
            rows,
            [
                ("method", "method", ""),
                ("seconds", "time (s)", ".1f"),
                ("gb_per_s", "GB/s", ".2f"),
                ("of_disk", "of the disk's read rate", ".0%"),
            ],
        )
    )
    payload = {"rows": rows, "file_gb": size, "checkpoints": count, "memory_read_gb_per_s": memory}
    print("saved", save("project_cold", payload))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", type=float, metavar="GB", help="project a file of GB gigabytes, cold")
    parser.add_argument("--dir", default=".", help="where the cold file is written (default: here)")
    args = parser.parse_args()
    if args.cold is None:
        main()
    else:
        cold(args.cold, args.dir)
