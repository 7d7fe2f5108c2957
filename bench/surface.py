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
    peak = matmul_peak(BATCH, SIZES[1], SIZES[2]) / 1e9  # GFLOP/s on the hidden layer's shape
    floor = mlp_sweep_flops(SIZES, N_EVAL, len(AXIS) ** 2, directions=2) / (peak * 1e9)
    plain = model.to_torch().eval()
    runs = {
        "plain PyTorch loop": lambda: (grid_loop(plain, center, v1, v2, x, y), None),
        "linpath module engine": lambda: _ours(model.to_torch(), model, d1, d2, x, y, "module", "float32"),
        "linpath native float32": lambda: _ours(model, model, d1, d2, x, y, "native", "float32"),
        "linpath native bf16": lambda: _ours(model, model, d1, d2, x, y, "native", "bf16"),
    }
    rows = []
    for name, run in runs.items():
        seconds, (values, check) = best_time(run)
        rel = float(np.max(np.abs(values - reference) / np.abs(reference)))
        rows.append(
            {
                "method": name,
                "seconds": seconds,
                "rel_error": rel,
                "check": check,
                "floor": fraction_of_floor(floor, seconds),
            }
        )
    base = rows[0]["seconds"]
    for r in rows:
        r["speedup"] = base / r["seconds"]
    print(
        f"Surface: MLP {SIZES}, {N_EVAL} MNIST examples, 21×21 grid  ({machine()['cpu']}, "
        f"{machine()['cores']} cores, float32 matmul peak {peak:.0f} GFLOP/s)"
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
    print("saved", save("surface", {"rows": rows, "matmul_peak_gflops": peak, "floor_seconds": floor}))


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
