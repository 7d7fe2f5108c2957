"""Estimate benchmark: how close ``linpath.estimate`` comes to the time of the sweep it predicts.

Three workloads, each a line between two initialisations: (1) the native engine on a ReLU MLP
784-1024-1024-10 with 10,000 real MNIST training images, 101 α over [-0.5, 1.5], float32, one batch
of 10,000; (2) the same in bf16 with batches of 2,500 (the bf16 sweep's float32 check included);
(3) the module engine on a plain ``nn.Sequential`` CNN (two 3x3 convolutions with max pooling, then
a linear layer) with 2,000 CIFAR-10 test images (MNIST's, as 1x28x28 images, where CIFAR-10 is not
installed), 51 α. For each: the estimate's predicted seconds, the measured seconds of the full
``interpolate`` run right after it, the relative error, and how long the estimate itself took.
Issue 16 asks for the prediction within 25% on a quiet machine.

Run: ``python bench/estimate.py`` inside the venv; ``--quick`` shrinks every workload (smaller
models, fewer examples and α) to check that the script works, in well under a minute.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, save, table  # noqa: E402

import linpath  # noqa: E402
import linpath.datasets  # noqa: E402
from linpath.models import MLP  # noqa: E402

FULL = {"examples": 10_000, "width": 1024, "alphas": 101, "images": 2000, "cnn_alphas": 51}
QUICK = {"examples": 1000, "width": 256, "alphas": 31, "images": 300, "cnn_alphas": 21}


def cnn(channels: int, side: int, seed: int) -> nn.Sequential:
    """Conv 3x3 (32) – ReLU – max pool – conv 3x3 (64) – ReLU – max pool – linear to 10 classes."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(channels, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * (side // 4) ** 2, 10),
    )


def images_name() -> str:
    """The data set :func:`images` reads here."""
    return "CIFAR-10" if linpath.datasets.cifar10_available() else "MNIST"


def images(n: int) -> tuple[str, tuple[torch.Tensor, torch.Tensor]]:
    """The first ``n`` CIFAR-10 test images, or MNIST's as 1x28x28 images without CIFAR-10."""
    if linpath.datasets.cifar10_available():
        return "CIFAR-10", linpath.datasets.head(linpath.datasets.cifar10().test, n)
    x, y = linpath.datasets.head(linpath.datasets.mnist().test, n)
    return "MNIST", (x.reshape(-1, 1, 28, 28), y)


def workloads(size: dict[str, int]) -> list[tuple[str, Callable[[], tuple[Any, ...]], dict[str, Any]]]:
    """(name, a function making (model, start, end, data), interpolate's keywords) of each workload."""
    n, width = size["examples"], size["width"]
    grid = np.linspace(-0.5, 1.5, size["alphas"])

    def mlp_line() -> tuple[Any, ...]:
        start, end = MLP((784, width, width, 10), seed=0), MLP((784, width, width, 10), seed=1)
        return start, start, end, linpath.datasets.head(linpath.datasets.mnist().train, n)

    def cnn_line() -> tuple[Any, ...]:
        name, (x, y) = images(size["images"])
        model = cnn(x.shape[1], x.shape[2], 0)
        return model, model.state_dict(), cnn(x.shape[1], x.shape[2], 1).state_dict(), (x, y)

    mlp = f"native MLP 784-{width}-{width}-10, {n} MNIST"
    return [
        (f"{mlp}, float32, batch {n}", mlp_line, {"alphas": grid, "batch_size": n}),
        (
            f"{mlp}, bf16, batch {n // 4}",
            mlp_line,
            {"alphas": grid, "batch_size": n // 4, "precision": "bf16"},
        ),
        (
            f"module CNN, {size['images']} {images_name()} test images",
            cnn_line,
            {"alphas": np.linspace(-0.5, 1.5, size["cnn_alphas"]), "batch_size": 500},
        ),
    ]


def measure(make: Callable[[], tuple[Any, ...]], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The estimate of one workload's sweep, what it took, and the sweep's measured time."""
    line = make()
    t0 = time.perf_counter()
    guess = linpath.estimate(*line, **kwargs)
    took = time.perf_counter() - t0
    t0 = time.perf_counter()
    linpath.interpolate(*line, progress=False, **kwargs)
    seconds = time.perf_counter() - t0
    return {
        "alphas": guess.points,
        "engine": guess.engine,
        "predicted_s": guess.seconds,
        "measured_s": seconds,
        "rel_error": guess.seconds / seconds - 1,
        "estimate_took_s": took,
        "per_point_s": guess.per_point,
        "fixed_s": guess.fixed,
        "timed": [list(t) for t in guess.timed],
        "estimate": str(guess),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small workloads, to check the script")
    args = parser.parse_args()
    size = QUICK if args.quick else FULL
    rows = []
    for name, make, kwargs in workloads(size):
        rows.append({"workload": name, **measure(make, kwargs)})
        print(rows[-1]["workload"] + ":", rows[-1]["estimate"], flush=True)
    print(f"linpath.estimate against the sweep it predicts ({machine()['cpu']}, {machine()['cores']} cores)")
    columns = [
        ("workload", "workload", ""),
        ("alphas", "α", "d"),
        ("predicted_s", "predicted (s)", ".2f"),
        ("measured_s", "measured (s)", ".2f"),
        ("rel_error", "error", "+.0%"),
        ("estimate_took_s", "estimate took (s)", ".2f"),
    ]
    print(table(rows, columns))
    print("saved", save("estimate_quick" if args.quick else "estimate", {"size": size, "rows": rows}))


if __name__ == "__main__":
    main()
