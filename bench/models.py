"""bf16 against float32 on the module engine, for models nobody here wrote (issue 12, acceptance 1).

torchvision's ResNet-18 (``num_classes=10``) and timm's ViT-Tiny (``vit_tiny_patch16_224`` built from its
config with ``img_size=32, patch_size=4, num_classes=10``; no download), on real CIFAR-10 training images
(32x32; the JPEG copy is slightly lossy), along the line between two random initialisations over a
21-point grid on [-0.5, 1.5]. For each model: the time of the float32 and of the bf16 sweep (bf16
includes its own float32 check at four α), their ratio, and the largest relative deviation of the bf16
loss from the float32 one over the 21 α (acceptance: at most 2e-2).

Run: ``python bench/models.py [--images 64]`` inside the venv.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

from common import machine, save, table  # noqa: E402

import linpath  # noqa: E402

GRID = np.linspace(-0.5, 1.5, 21)


def resnet18(seed: int) -> torch.nn.Module:
    import torchvision

    torch.manual_seed(seed)
    return torchvision.models.resnet18(num_classes=10).eval()


def vit_tiny(seed: int) -> torch.nn.Module:
    import timm

    torch.manual_seed(seed)
    return timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=4, num_classes=10
    ).eval()


def measure(build, data) -> dict:
    """Times both precisions on the line between two initialisations of ``build``."""
    model, start, end = build(0), build(1), build(2)
    row: dict = {"model": build.__name__}
    losses = {}
    for precision in ("float32", "bf16"):
        t = time.perf_counter()
        sweep = linpath.interpolate(
            model, start, end, data, alphas=GRID, precision=precision, engine="module", progress=False
        )
        row[precision] = time.perf_counter() - t
        losses[precision] = sweep.values["train"]["loss"]
    row["ratio"] = row["bf16"] / row["float32"]
    row["max_rel"] = float(np.max(np.abs(losses["bf16"] - losses["float32"]) / np.abs(losses["float32"])))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    args = parser.parse_args()
    from test_buffers import cifar10_head  # reads the first images without decoding the whole set

    data = {"train": cifar10_head(args.images)}
    rows = [measure(build, data) for build in (resnet18, vit_tiny)]
    print(machine())
    columns = [
        ("model", "model", ""),
        ("float32", "float32 (s)", ".2f"),
        ("bf16", "bf16 (s)", ".2f"),
        ("ratio", "bf16 / float32", ".2f"),
        ("max_rel", "max rel. deviation", ".1e"),
    ]
    print(table(rows, columns))
    print(save("models", {"images": args.images, "grid": GRID.tolist(), "rows": rows}))


if __name__ == "__main__":
    main()
