"""Loader benchmark: batch-outer against point-outer sweeps on data that costs something to load.

A DataLoader over 2,000 CIFAR-10 test images read as JPEG bytes from ``cifar10-jpeg.zip``, decoded with
Pillow in the Dataset's ``__getitem__`` and put through a torchvision transform (``ToTensor`` +
``Normalize``; no random crop, so every pass yields the same batches), batches of 250, ``num_workers`` 0
and 1. The line between two initialisations of a model, 21 values of α on [0, 1], evaluated by
``linpath.interpolate`` twice in one process: ``order="points"`` (every α reads the whole loader again:
21 reads) and ``order="batches"`` (each batch read once and evaluated at all 21 α). Models: a small
conv net with BatchNorm (cheap forward, so loading dominates) and torchvision's ResNet-18 (10 classes).

Reported: seconds of each, the speedup (points / batches), the largest absolute difference between the
two sweeps' values (0 expected: the same float64 sums per α), the time of one pass over the loader
alone (decoding and transform, no model) and the share of the point-outer sweep it accounts for
(21 passes). The JPEG files re-encode CIFAR-10's pixels (slightly lossy).

Run: ``make bench`` (or ``python bench/loader.py`` inside the venv; ``--help`` for sizes).
"""

from __future__ import annotations

import argparse
import io
import math
import os
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import models, transforms

sys.path.insert(0, str(Path(__file__).parent))
from common import best_time, machine, save, table  # noqa: E402

import linpath  # noqa: E402
import linpath.datasets  # noqa: E402

#: Per-channel mean and standard deviation of CIFAR-10's training images.
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def zip_path() -> Path:
    """The JPEG zip: $LINPATH_CIFAR10 if it names a file, else ``../shared/data/cifar10-jpeg.zip``."""
    env = os.environ.get("LINPATH_CIFAR10")
    path = Path(env) if env and env.endswith(".zip") else Path("..") / "shared" / "data" / "cifar10-jpeg.zip"
    if not path.is_file():
        sys.exit(f"bench/loader.py needs {path} (CIFAR-10 JPEGs in a zip); {linpath.datasets.CIFAR10_HOWTO}")
    return path


class JpegZip(Dataset):
    """CIFAR-10 images decoded from the JPEG bytes of a zip at every access (as an image-folder
    dataset does), each worker with its own open zip."""

    def __init__(self, path: Path, names: list[str], labels: list[int], transform: Any) -> None:
        self.path, self.names, self.labels, self.transform = path, names, labels, transform
        self._zip: zipfile.ZipFile | None = None

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if self._zip is None:  # opened lazily: a zip handle does not survive a fork
            self._zip = zipfile.ZipFile(self.path)
        image = Image.open(io.BytesIO(self._zip.read(self.names[i]))).convert("RGB")
        return self.transform(image), self.labels[i]


def test_images(path: Path, n: int) -> tuple[list[str], list[int]]:
    """``n`` test images spread evenly over the 10,000 (every 10,000/n-th in name order), with labels."""
    with zipfile.ZipFile(path) as z:
        names = sorted(
            i.filename for i in z.infolist() if i.filename.startswith("test/") and i.filename.endswith(".jpg")
        )
    picked = names[:: len(names) // n][:n]
    return picked, [linpath.datasets.CIFAR10_CLASSES.index(name.split("/")[1]) for name in picked]


def small_cnn(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(64, 10),
    )  # fmt: skip


def resnet18(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return models.resnet18(num_classes=10)


MODELS = {"small CNN": small_cnn, "ResNet-18": resnet18}


def one_pass(loader: DataLoader) -> float:
    """Seconds to read the loader once (decoding and transform, no model)."""
    t0 = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - t0


def compare(
    make: Any, loader: DataLoader, alphas: np.ndarray, device: torch.device, repeats: int
) -> dict[str, Any]:
    """Both orders on one model and loader (alternating, the best of ``repeats`` runs of each, after a
    warm-up forward): times, speedup, largest difference of the values."""
    start, end, model = (make(seed).to(device).eval() for seed in (0, 1, 2))
    with torch.no_grad():
        model(next(iter(loader))[0].to(device))

    def sweep(order: str) -> linpath.Sweep:
        return linpath.interpolate(model, start, end, loader, alphas=alphas, order=order, progress=False)

    seconds, run = {"points": math.inf, "batches": math.inf}, {}
    for _ in range(repeats):
        for order in seconds:
            took, run[order] = best_time(lambda o=order: sweep(o))
            seconds[order] = min(seconds[order], took)
    values = [(run["points"].values["data"][m], run["batches"].values["data"][m]) for m in ("loss", "error")]
    load = one_pass(loader)
    return {
        "n_params": sum(p.numel() for p in model.parameters()),
        "points_s": seconds["points"],
        "batches_s": seconds["batches"],
        "speedup": seconds["points"] / seconds["batches"],
        "max_abs_diff": max(float(np.nanmax(np.abs(a - b))) for a, b in values),
        "bitwise_equal": all(np.array_equal(a, b, equal_nan=True) for a, b in values),
        "load_pass_s": load,
        "load_fraction_points": len(alphas) * load / seconds["points"],
        "load_fraction_batches": load / seconds["batches"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--alphas", type=int, default=21)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--models", nargs="+", default=["small CNN"], choices=list(MODELS))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--name", default="loader", help="results/bench/<name>.json")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    path = zip_path()
    names, labels = test_images(path, args.images)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    alphas = np.linspace(0.0, 1.0, args.alphas)
    rows = []
    for workers in args.workers:
        loader = DataLoader(
            JpegZip(path, names, labels, transform), batch_size=args.batch, num_workers=workers
        )
        one_pass(loader)  # warm up: the zip's pages in the page cache, the workers' imports
        for name in args.models:
            row = {
                "model": name,
                "workers": workers,
                **compare(MODELS[name], loader, alphas, device, args.repeats),
            }
            rows.append(row)
            print(row, flush=True)
    where = torch.cuda.get_device_name() if device.type == "cuda" else machine()["cpu"]
    print(
        f"\nLoader: {args.images} CIFAR-10 JPEGs (Pillow + ToTensor + Normalize), batches of {args.batch}, "
        f"{args.alphas} α, on {device.type} ({where})"
    )
    print(
        table(
            rows,
            [
                ("model", "model", ""),
                ("workers", "num_workers", "d"),
                ("points_s", "α-outer (s)", ".2f"),
                ("batches_s", "batch-outer (s)", ".2f"),
                ("speedup", "speedup", ".2f"),
                ("load_pass_s", "one read of the loader (s)", ".2f"),
                ("load_fraction_points", "loading share of α-outer", ".0%"),
                ("max_abs_diff", "max abs diff of values", ".1e"),
            ],
        )
    )
    config = {
        "images": args.images,
        "alphas": args.alphas,
        "batch_size": args.batch,
        "device": device.type,
        "device_name": where,
        "data": "CIFAR-10 test images re-encoded as JPEG (slightly lossy pixels), Pillow decode",
    }
    print("saved", save(args.name, {"config": config, "rows": rows}))


if __name__ == "__main__":
    main()
