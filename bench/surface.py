"""Surface benchmark: the loss on a 21×21 plane, side by side with a plain PyTorch loop, in one process.

A trained ReLU MLP 784-512-512-10 (one epoch of SGD on 10,000 real MNIST training images), the plane
through it along two random filter-normalised directions (``linpath.directions.random``, seeds 0 and
1), a 21×21 grid on [-1, 1]², evaluated on 2,000 MNIST training images in batches of 1,000. Every
value is compared with a float64 loop over the grid (the acceptance bound is 1e-5 relative).

Methods: a plain PyTorch loop (write θ0 + a·d1 + b·d2 into the model with ``vector_to_parameters``,
evaluate); ``linpath.surface`` on the plain module (module engine: the first layer from the affine
cache, three products per batch instead of 441); ``linpath.surface`` on a ``linpath.models.MLP``
(native engine) in float32 and bf16. Reported: seconds, the ratio to the plain loop, and the fraction
of this machine's floor (``bench/floors.py``): the least arithmetic of the grid (the first layer's three
products once, every other layer once per point) at the float32 matmul peak measured in the same run on
the hidden layer's shape (bf16 rows are held to the same float32 floor).

Run: ``make bench`` (or ``python bench/surface.py`` inside the venv).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from common import best_time, machine, save, table  # noqa: E402
from floors import fraction_of_floor, matmul_peak, mlp_sweep_flops  # noqa: E402

import linpath  # noqa: E402
import linpath.datasets  # noqa: E402
from linpath.models import MLP, TorchMLP  # noqa: E402

SIZES = (784, 512, 512, 10)
N_TRAIN, N_EVAL, BATCH = 10_000, 2_000, 1_000
AXIS = np.linspace(-1.0, 1.0, 21)


def trained(x: torch.Tensor, y: torch.Tensor) -> MLP:
    """The MLP after one epoch of SGD + momentum (batch 128) from seed 0."""
    model = MLP(SIZES, seed=0)
    twin = model.to_torch()
    opt = torch.optim.SGD(twin.parameters(), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    for idx in torch.randperm(len(x), generator=gen).split(128):
        loss = F.cross_entropy(twin(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.load_state_dict(twin.state_dict())
    return model


def grid_loop(model: torch.nn.Module, center, d1, d2, x, y, dtype=torch.float32) -> np.ndarray:
    """The loss at every grid point, written into ``model`` (plain PyTorch), ``[ys, xs]``."""
    params = list(model.parameters())
    out = np.empty((len(AXIS), len(AXIS)))
    with torch.no_grad():
        for j, b in enumerate(AXIS):
            for i, a in enumerate(AXIS):
                torch.nn.utils.vector_to_parameters((center + a * d1 + b * d2).to(dtype), params)
                total = sum(
                    F.cross_entropy(model(xb.to(dtype)), yb, reduction="sum").item()
                    for xb, yb in zip(x.split(BATCH), y.split(BATCH), strict=True)
                )
                out[j, i] = total / len(x)
    return out


def main() -> None:
    data = linpath.datasets.mnist()
    model = trained(data.train[0][:N_TRAIN], data.train[1][:N_TRAIN])
    x, y = data.train[0][:N_EVAL], data.train[1][:N_EVAL]
    d1 = linpath.directions.random(model, seed=0)
    d2 = linpath.directions.random(model, seed=1)
    center = linpath.flatten(model).tensor.double()
    v1, v2 = d1.tensor.double(), d2.tensor.double()
    reference = grid_loop(TorchMLP(SIZES).double().eval(), center, v1, v2, x, y, torch.float64)
    measure_peaks()
    plain = model.to_torch().eval()
    runs = {
        "plain PyTorch loop": ("float32", lambda: (grid_loop(plain, center, v1, v2, x, y), None)),
        "linpath module engine": (
            "float32",
            lambda: _ours(model.to_torch(), model, d1, d2, x, y, "module", "float32"),
        ),
        "linpath module engine bf16": (
            "bf16",
            lambda: _ours(model.to_torch(), model, d1, d2, x, y, "module", "bf16"),
        ),
        "linpath native float32": ("float32", lambda: _ours(model, model, d1, d2, x, y, "native", "float32")),
        "linpath native bf16": ("bf16", lambda: _ours(model, model, d1, d2, x, y, "native", "bf16")),
    }
    rows = []
    for name, (precision, run) in runs.items():
        seconds, (values, check) = best_time(run)
        rel = float(np.max(np.abs(values - reference) / np.abs(reference)))
        rows.append({"method": name, "precision": precision, "seconds": seconds, "rel_error": rel})
        rows[-1]["check"] = check
    peaks = measure_peaks()  # again after the sweeps: the highest reading of the run counts
    for r in rows:
        r["floor_seconds"] = floor_seconds(r["precision"], r["check"], peaks)
        r["floor"] = fraction_of_floor(r["floor_seconds"], r["seconds"])
    base = rows[0]["seconds"]
    for r in rows:
        r["speedup"] = base / r["seconds"]
    print(
        f"Surface: MLP {SIZES}, {N_EVAL} MNIST examples, 21×21 grid  ({machine()['cpu']}, "
        f"{machine()['cores']} cores, matmul peak {peaks['float32'] / 1e9:.0f} GFLOP/s float32, "
        f"{peaks['bf16'] / 1e9:.0f} bf16)"
    )
    print(
        table(
            rows,
            [
                ("method", "method", ""),
                ("seconds", "time (s)", ".2f"),
                ("speedup", "speed vs plain loop", ".2f"),
                ("floor", "fraction of this machine's floor", ".0%"),
                ("rel_error", "max rel. error vs float64", ".1e"),
            ],
        )
    )
    print("saved", save("surface", {"rows": rows, "matmul_peaks": peaks}))


def measure_peaks() -> dict[str, float]:
    """float32 and bf16 matmul peaks on the hidden layer's shape (FLOP/s): the highest reading of the
    process (bench/floors.py), so measured before and after the sweeps."""
    return {
        "float32": matmul_peak(BATCH, SIZES[1], SIZES[2]),
        "bf16": matmul_peak(BATCH, SIZES[1], SIZES[2], torch.bfloat16),
    }


def floor_seconds(precision: str, check: dict | None, peaks: dict[str, float]) -> float:
    """The grid's least arithmetic at the peak of its precision; a bf16 grid also pays for its
    float32 check at a few points."""
    grid = mlp_sweep_flops(SIZES, N_EVAL, len(AXIS) ** 2, directions=2)
    if precision == "float32":
        return grid / peaks["float32"]
    checked = len(check["points"])  # a bf16 grid always carries its check
    return grid / peaks["bf16"] + mlp_sweep_flops(SIZES, N_EVAL, checked, directions=2) / peaks["float32"]


def _ours(target, center, d1, d2, x, y, engine: str, precision: str):
    s = linpath.surface(
        target,
        center,
        [d1, d2],
        {"train": (x, y)},
        grid=(AXIS, AXIS),
        batch_size=BATCH,
        engine=engine,
        precision=precision,
        metrics=("loss",),
        progress=False,
    )
    return s.values["train"]["loss"], s.meta.get("precision_check")


if __name__ == "__main__":
    main()
