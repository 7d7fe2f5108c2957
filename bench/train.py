"""Training benchmark: ``linpath.train`` against the same model trained by a plain PyTorch loop.

ReLU MLP 784-1024-1024-10 on 10,000 real MNIST training images, one epoch of SGD with momentum
0.9 (lr 0.01), at batch sizes 32 and 128, from the same initial parameters. Like for like: the
loop evaluates nothing, so ``linpath.train`` runs with ``eval_train=False`` (no full passes over
the training set for the history; it still records the trajectory at the start and the end and
every minibatch loss). Reported: examples per second (best of two epochs), ratio to the loop.

Run: ``make bench`` (or ``python bench/train.py`` inside the venv).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from common import best_time, machine, save, table  # noqa: E402

import linpath  # noqa: E402
import linpath.datasets  # noqa: E402
from linpath.models import MLP  # noqa: E402

SIZES, N, LR = (784, 1024, 1024, 10), 10_000, 0.01


def pytorch_loop(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    """One epoch of the textbook loop; returns the last minibatch loss."""
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    model.train()
    loss = torch.zeros(())
    for idx in torch.randperm(len(x)).split(batch_size):
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss.item()


def main() -> None:
    data = linpath.datasets.mnist()
    x, y = data.train[0][:N], data.train[1][:N]
    rows = []
    for batch_size in (32, 128):
        native = MLP(SIZES, seed=0)
        twin = native.to_torch()
        loop_s, _ = best_time(lambda twin=twin, bs=batch_size: pytorch_loop(twin, x, y, bs), repeats=2)
        ours_s, _ = best_time(
            lambda native=native, bs=batch_size: linpath.train(
                native,
                (x, y),
                epochs=1,
                batch_size=bs,
                lr=LR,
                momentum=0.9,
                eval_train=False,
                progress=False,
            ),
            repeats=2,
        )
        for name, seconds in (("plain PyTorch loop", loop_s), ("linpath.train", ours_s)):
            rows.append(
                {
                    "batch_size": batch_size,
                    "method": name,
                    "seconds": seconds,
                    "examples_per_s": N / seconds,
                    "vs_loop": loop_s / seconds,
                }
            )
    print(f"Training: MLP {SIZES}, {N} MNIST examples, one epoch  ({machine()['cpu']})")
    print(
        table(
            rows,
            [
                ("batch_size", "batch", "d"),
                ("method", "method", ""),
                ("seconds", "time (s)", ".2f"),
                ("examples_per_s", "examples/s", ",.0f"),
                ("vs_loop", "speed vs loop", ".2f"),
            ],
        )
    )
    print("saved", save("train", {"rows": rows}))


if __name__ == "__main__":
    main()
