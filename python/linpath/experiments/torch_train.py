"""The PyTorch trainer of the experiments, for a GPU (or any torch device).

The native trainer (:func:`linpath.train`) runs on the CPU. With a CUDA device the experiments
train the plain-PyTorch twin of the same :class:`linpath.models.MLP` (``to_torch()``) with the same
algorithm: minibatch SGD with momentum (PyTorch's update), max-norm on each unit's incoming weights
after every step, the learning rate multiplied by ``lr_decay`` after each epoch, inverted dropout,
the same history keys. Random streams differ from the native trainer's, so the numbers differ
run for run, but a seed still gives the same run on the same device.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..engines import evaluate_pair
from ..models import TorchMLP
from ..trajectory import TrajectoryRecorder
from .scales import RunSpec


def _max_norm_(model: TorchMLP, max_norm: float) -> None:
    """Rescales each row of every weight matrix (a unit's incoming weights) to L2 norm ≤ max_norm."""
    with torch.no_grad():
        for layer in model.layers:
            weight = layer.get_parameter("weight")
            norms = weight.norm(dim=1, keepdim=True)
            weight.mul_(torch.clamp(max_norm / norms.clamp_min(1e-12), max=1.0))


def _log_epoch(history: dict[str, list[float]], epoch: int, model: nn.Module, data: dict) -> None:
    history["epoch"].append(epoch)
    for name, pair in data.items():
        for metric, value in evaluate_pair(model, name, pair).items():
            history.setdefault(f"{name}_{metric}", []).append(value)


def train_torch(
    model: TorchMLP,
    spec: RunSpec,
    train: tuple[torch.Tensor, torch.Tensor],
    valid: tuple[torch.Tensor, torch.Tensor],
    trajectory: str | os.PathLike[str],
    progress: bool | None = None,
) -> dict[str, list[float]]:
    """Trains ``model`` (a ``TorchMLP`` on its device) in place as ``spec`` says; returns the history.

    The trajectory is written to the new file ``trajectory``: step 0, every ``steps_per_epoch //
    spec.records_per_epoch`` steps (or none in between when that is 0) and the last step.
    """
    device = next(model.parameters()).device
    x, y = (t.to(device) for t in train)
    data = {"train": (x, y), "valid": tuple(t.to(device) for t in valid)}
    steps_per_epoch = math.ceil(len(y) / spec.batch_size)
    every = steps_per_epoch // spec.records_per_epoch if spec.records_per_epoch else 0
    recorder = TrajectoryRecorder(model, trajectory)
    history: dict[str, Any] = {"epoch": [], "step_loss": []}
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(spec.seed)
        order_rng = torch.Generator().manual_seed(spec.seed)
        optimizer = torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=spec.momentum)
        _log_epoch(history, 0, model, data)
        recorder.record(0)
        step = 0
        bar = tqdm(
            total=spec.epochs * steps_per_epoch,
            desc="linpath train (torch)",
            disable=progress is False,
            delay=0 if progress else 2.0,
            leave=False,
        )
        with bar:
            for epoch in range(1, spec.epochs + 1):
                model.train()
                for idx in torch.randperm(len(y), generator=order_rng).to(device).split(spec.batch_size):
                    loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    if spec.max_norm is not None:
                        _max_norm_(model, spec.max_norm)
                    step += 1
                    history["step_loss"].append(loss.item())
                    if every and step % every == 0:
                        recorder.record(step)
                    bar.update(1)
                _log_epoch(history, epoch, model, data)
                if spec.lr_decay is not None:
                    for group in optimizer.param_groups:
                        group["lr"] *= spec.lr_decay
    if recorder.trajectory.steps[-1] != step:
        recorder.record(step)
    model.eval()
    return history
