"""Projection benchmark: a 1 GB trajectory projected onto its line, against NumPy, in one process.

250 checkpoints of 1,048,576 float32 values (1.05 GB): a random walk with drift. NumPy does what
a user would write (per checkpoint: widen to float64, subtract θ0, dot with d, norm of the
residual); linpath projects the same data in memory and from a trajectory file (in the page
cache). Throughput is compared with the machine's streaming read rate (torch.sum over 1 GB).

Run: ``make bench`` (or ``python bench/project.py`` inside the venv).
"""

from __future__ import annotations

import sys
import tempfile
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


if __name__ == "__main__":
    main()
