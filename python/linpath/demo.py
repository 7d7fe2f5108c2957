"""The main job (``make demo``): the paper's Figures 1 (left) and 5 for a ReLU MLP on real MNIST.

Trains a ReLU MLP with plain PyTorch SGD + momentum, recording the trajectory several times per
epoch; sweeps α over [-0.5, 1.5] between the initial and final parameters on the train and
validation sets; projects the trajectory onto that line; writes plots and numbers.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import datasets, directions
from ._checks import U64_END, integer
from ._io import save_json, temp_path
from .engines import evaluate_pair
from .planes import surface
from .sweep import Sweep, interpolate
from .trajectory import Projection, Trajectory, TrajectoryRecorder, project


@dataclass(frozen=True)
class DemoConfig:
    """Settings of the demo run (the defaults are ``make demo``'s)."""

    out: Path = Path("results/demo")
    hidden: tuple[int, ...] = (512, 512)
    epochs: int = 5
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    records_per_epoch: int = 10
    alphas: tuple[float, float, int] = (-0.5, 1.5, 101)
    plane_grid: int = 21  # points along each axis of the PCA-plane surface
    plane_examples: int = 5_000  # training examples the plane's loss is measured on
    train_examples: int | None = None  # None: all 50,000
    seed: int = 0

    @classmethod
    def smoke(cls, out: Path) -> DemoConfig:
        """A seconds-long version for tests: 2,000 training examples, 1 epoch, 21 alphas."""
        return cls(
            out=out,
            hidden=(64,),
            epochs=1,
            records_per_epoch=4,
            alphas=(-0.5, 1.5, 21),
            plane_grid=7,
            plane_examples=1000,
            train_examples=2000,
        )


def relu_mlp(sizes: tuple[int, ...]) -> nn.Sequential:
    """A fully connected ReLU network with the given layer sizes (input first, classes last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def train(
    model: nn.Module, data: datasets.Dataset, cfg: DemoConfig, recorder: TrajectoryRecorder
) -> dict[str, list[float]]:
    """Minibatch SGD with momentum; records the trajectory ``records_per_epoch`` times per epoch."""
    x, y = data.train
    steps_per_epoch = math.ceil(len(x) / cfg.batch_size)
    record_every = max(1, steps_per_epoch // cfg.records_per_epoch)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    shuffle = torch.Generator().manual_seed(cfg.seed)
    history: dict[str, list[float]] = {"epoch": [], "step_loss": []}
    _log_epoch(history, 0, model, data)
    recorder.record(0)
    step = 0
    for epoch in range(1, cfg.epochs + 1):
        order = torch.randperm(len(x), generator=shuffle)
        model.train()
        for i in tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{cfg.epochs}", leave=False):
            idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            history["step_loss"].append(loss.item())
            if step % record_every == 0:
                recorder.record(step)
        _log_epoch(history, epoch, model, data)
    if recorder.trajectory.steps[-1] != step:
        recorder.record(step)
    return history


def _log_epoch(history: dict[str, list[float]], epoch: int, model: nn.Module, data: datasets.Dataset) -> None:
    history["epoch"].append(epoch)
    for name, pair in (("train", data.train), ("valid", data.valid)):
        for metric, value in evaluate_pair(model, name, pair).items():
            history.setdefault(f"{name}_{metric}", []).append(value)


def _load(cfg: DemoConfig) -> datasets.Dataset:
    data = datasets.mnist()
    if cfg.train_examples is None:
        return data
    n = cfg.train_examples
    return datasets.Dataset((data.train[0][:n], data.train[1][:n]), data.valid, data.test)


def _figures(out: Path, sweep: Sweep, proj: Projection, history: dict[str, list[float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plotting import plot_learning_curve, save_figure

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    sweep.plot(axes[0], metric="loss")
    sweep.plot(axes[1], metric="error")
    fig.suptitle("ReLU MLP on MNIST: the line from initial to final parameters")
    save_figure(fig, out / "line.png")
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    proj.plot(ax)
    save_figure(fig, out / "projection.png")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    plot_learning_curve(history, axes[0], "loss")
    plot_learning_curve(history, axes[1], "error")
    save_figure(fig, out / "learning_curve.png")


def pca_surface(model: nn.Module, trajectory: Trajectory, pair: Any, cfg: DemoConfig) -> tuple[Any, Any]:
    """The loss on the top-two PCA plane of the trajectory (Li et al. 2018: displacements from the
    final iterate), on a grid covering the projected path with a 25% margin, and the path on it."""
    pca = directions.pca(trajectory)
    lows, highs = pca.coords.min(axis=0), pca.coords.max(axis=0)
    margin = 0.25 * (highs - lows)
    xs, ys = (
        np.linspace(lo - m, hi + m, cfg.plane_grid) for lo, hi, m in zip(lows, highs, margin, strict=True)
    )
    x, y = pair
    n = cfg.plane_examples
    plane = surface(
        model,
        pca.reference,
        pca.directions,
        {"train": (x[:n], y[:n])},
        grid=(xs, ys),
        metrics=("loss",),
        batch_size=2000,
        progress=True,
    )
    plane.meta["axes"] = ["PCA direction 1", "PCA direction 2"]
    return plane, plane.project(trajectory)


def _plane_figure(out: Path, plane: Any, on_plane: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5.5))
    ax.set_title(
        f"Training loss on the PCA plane of the trajectory ({on_plane.explained:.1%} captured; "
        f"largest distance off the plane {on_plane.max_residual:.3g})",
        fontsize=9,
    )
    plane.plot(kind="filled", ax=ax, trajectory=on_plane, log=True, path=out / "plane.png")


def _plane_summary(plane: Any, on_plane: Any) -> dict[str, Any]:
    x_min, y_min, loss_min = plane.minimum("train", "loss")
    return {
        "grid": [len(plane.xs), len(plane.ys)],
        "explained": on_plane.explained,
        "max_residual": on_plane.max_residual,
        "min_loss": loss_min,
        "min_at": [x_min, y_min],
    }


def summarize(
    cfg: DemoConfig,
    sweep: Sweep,
    proj: Projection,
    history: dict[str, list[float]],
    test_error: float,
    seconds: dict[str, float],
) -> dict[str, Any]:
    """The numbers the demo reports (also written to summary.json)."""
    alpha_min, loss_min = sweep.minimum("train", "loss")
    valid_alpha_min, valid_loss_min = sweep.minimum("valid", "loss")
    return {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(cfg).items()},
        "final": {
            "train_loss": history["train_loss"][-1],
            "valid_loss": history["valid_loss"][-1],
            "valid_error": history["valid_error"][-1],
            "test_error": test_error,
        },
        "line": {
            "train_min_alpha": alpha_min,
            "train_min_loss": loss_min,
            "valid_min_alpha": valid_alpha_min,
            "valid_min_loss": valid_loss_min,
            "train_loss_monotone_on_0_1": sweep.is_monotone("train", "loss"),
            "train_loss_max_rise_on_0_1": sweep.monotonicity_gap("train", "loss"),
        },
        "projection": {
            "checkpoints": len(proj.steps),
            "path_length": proj.path_length,
            "max_residual": proj.max_residual,
            "explained": proj.explained,
            "direction_norm": proj.direction_norm,
        },
        "seconds": seconds,
    }


def run(cfg: DemoConfig) -> dict[str, Any]:
    """Runs the demo and writes its files to ``cfg.out``; returns the summary."""
    integer("seed", cfg.seed, 0, U64_END)
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    cfg.out.mkdir(parents=True, exist_ok=True)
    data = _load(cfg)
    model = relu_mlp((784, *cfg.hidden, 10))
    partial = temp_path(cfg.out / "trajectory.lpt")  # an unpredictable name in a maybe shared folder
    recorder = TrajectoryRecorder(model, partial)
    history = train(model, data, cfg, recorder)
    os.replace(partial, cfg.out / "trajectory.lpt")  # the finished run replaces an earlier one
    trajectory = Trajectory.open(cfg.out / "trajectory.lpt")
    t_train = time.perf_counter()
    lo, hi, n = cfg.alphas
    sweep = interpolate(
        model,
        trajectory[0],
        trajectory[-1],
        {"train": data.train, "valid": data.valid},
        alphas=np.linspace(lo, hi, n),
        batch_size=2000,
        progress=True,
    )
    t_sweep = time.perf_counter()
    proj = project(trajectory, trajectory[0], trajectory[-1])
    plane, on_plane = pca_surface(model, trajectory, data.train, cfg)
    t_plane = time.perf_counter()
    test_error = evaluate_pair(model, "test", data.test)["error"]
    sweep.save(cfg.out / "sweep.npz")
    plane.save(cfg.out / "plane.lps")
    _figures(cfg.out, sweep, proj, history)
    _plane_figure(cfg.out, plane, on_plane)
    seconds = {
        "train": t_train - t0,
        "sweep": t_sweep - t_train,
        "plane": t_plane - t_sweep,
        "total": time.perf_counter() - t0,
    }
    summary = summarize(cfg, sweep, proj, history, test_error, seconds)
    summary["plane"] = _plane_summary(plane, on_plane)
    extra = {"history": history, "projection_points": proj.to_dict(), "plane_points": on_plane.to_dict()}
    save_json({**summary, **extra}, cfg.out / "summary.json")
    return summary


def report(summary: dict[str, Any], out: Path) -> str:
    """A short human-readable summary of a demo run."""
    f, line, p = summary["final"], summary["line"], summary["projection"]
    monotone = (
        "yes"
        if line["train_loss_monotone_on_0_1"]
        else f"no (largest rise {line['train_loss_max_rise_on_0_1']:.3g})"
    )
    return "\n".join(
        [
            f"linpath demo: ReLU MLP on MNIST, results in {out}/",
            f"  validation error {f['valid_error']:.2%}, test error {f['test_error']:.2%}",
            f"  minimum along the line: train loss {line['train_min_loss']:.4f} "
            f"at alpha = {line['train_min_alpha']:.3g}; validation loss {line['valid_min_loss']:.4f} "
            f"at alpha = {line['valid_min_alpha']:.3g}",
            f"  train loss monotone on [0, 1]: {monotone}",
            f"  trajectory: {p['checkpoints']} checkpoints; the line captures {p['explained']:.1%} "
            f"of the squared displacement; path length {p['path_length']:.3g}, "
            f"max residual {p['max_residual']:.3g} "
            f"(|theta_f - theta_i| = {p['direction_norm']:.3g})",
            f"  PCA plane of the trajectory: captures {summary['plane']['explained']:.1%} of the squared "
            f"displacement from the final iterate; largest distance off the plane "
            f"{summary['plane']['max_residual']:.3g}; plane.png",
            f"  time: {summary['seconds']['total']:.0f} s (training {summary['seconds']['train']:.0f} s, "
            f"sweep {summary['seconds']['sweep']:.0f} s, plane {summary['seconds']['plane']:.0f} s)",
        ]
    )
