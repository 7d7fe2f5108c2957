"""What Figures 6 and 7 share at every scale: a figure's runs over seeds, and lines whose training
curve comes with a paired-bootstrap noise floor.

A line's training curve is evaluated on ``Scale.bootstrap_blocks`` equal blocks of the evaluation
examples (one sweep, the blocks as named splits), so the curve is the mean of the blocks' curves and
:mod:`linpath.experiments.noise` can resample the blocks, the same ones at every α, to tell a real
rise from sampling noise. (The MP-DBM's evaluation masks are fixed by each row's index within its
split, so every block sees the masks of rows 0 .. block − 1.)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import datasets
from ..sweep import Sweep, interpolate
from . import noise
from .runs import Context, Run, new_model
from .scales import NetSpec

BLOCK_PREFIX = "train_block"


def seed_runs(ctx: Context, name: str) -> list[Run]:
    """The run ``name`` and its other seeds in the scale (``"<name>_seed<s>"``), seed 0 first."""
    names = [name] + [f"{name}_seed{s}" for s in range(1, ctx.scale.seeds)]
    return [ctx.run(n) for n in names if n == name or n in ctx.scale.nets]


def eval_data(ctx: Context, run: Run) -> datasets.Dataset:
    """The run's data with the training split cut to the validation split's size (for sweeps)."""
    data = ctx.data_for(run.spec)
    m = len(data.valid[1])
    return datasets.Dataset(datasets.head(data.train, m), data.valid, data.test)


@dataclass
class NoisyLine:
    """A line whose ``train`` curve is the mean of equal blocks (and of mask draws), with the blocks'
    losses for the bootstrap.

    Attributes:
        sweep: ``train`` (the blocks' mean, over the mask draws too) and ``valid`` (the first draw's).
        block_losses: ``[blocks, K]``, or ``[draws, blocks, K]`` with several mask draws: the train
            loss of each block at each α.
        examples: Evaluation examples in the blocks.
    """

    sweep: Sweep
    block_losses: np.ndarray
    examples: int

    def bootstrap(self, seed: int = 0) -> noise.Bootstrap:
        """The paired bootstrap over the blocks (and draws): :func:`noise.paired_bootstrap`."""
        return noise.paired_bootstrap(self.block_losses, seed=seed)


def noisy_line(
    ctx: Context, models: list[Any], start: Any, end: Any, alphas: np.ndarray, data: datasets.Dataset
) -> NoisyLine:
    """The line from ``start`` to ``end`` on ``data``'s validation split and on its training split in
    ``ctx.scale.bootstrap_blocks`` blocks, one sweep per model of ``models`` (the same network
    under different evaluation masks, or one model)."""
    splits = {
        "valid": data.valid,
        **noise.block_splits(*data.train, ctx.scale.bootstrap_blocks, BLOCK_PREFIX),
    }
    names = [s for s in splits if s.startswith(BLOCK_PREFIX)]
    # The validation curve is measured under the first mask draw only (it carries no verdict).
    only_blocks = {name: splits[name] for name in names}
    sweeps = [
        interpolate(
            model,
            start,
            end,
            splits if i == 0 else only_blocks,
            alphas=alphas,
            batch_size=2000,
            progress=ctx.progress,
        )
        for i, model in enumerate(models)
    ]
    metrics = list(sweeps[0].values["valid"])
    cube = {m: np.array([[sw.values[s][m] for s in names] for sw in sweeps]) for m in metrics}
    train = {m: cube[m].mean(axis=(0, 1)) for m in metrics}
    valid = sweeps[0].values["valid"]
    size = len(splits[names[0]][1])
    meta = sweeps[0].meta | {"train_blocks": len(names), "train_block_size": size, "mask_draws": len(models)}
    losses = cube["loss"][0] if len(models) == 1 else cube["loss"]
    return NoisyLine(
        Sweep(sweeps[0].alphas, {"train": train, "valid": valid}, meta), losses, size * len(names)
    )


def _draw_models(ctx: Context, run: Run) -> list[Any]:
    """The run's network at θf, and for a model with evaluation masks (the MP-DBM) one copy per mask
    draw of the scale (``eval_seed`` 0, 1, ...)."""
    spec = run.spec
    if not isinstance(spec, NetSpec) or spec.model != "MPDBM" or ctx.scale.mask_draws < 2:
        return [ctx.model_of(run)]
    config = dict(spec.config)
    specs = [
        dataclasses.replace(spec, config=tuple((config | {"eval_seed": s}).items()))
        for s in range(ctx.scale.mask_draws)
    ]
    return [new_model(s) for s in specs]


def run_line(ctx: Context, run: Run, alphas: np.ndarray, start: Any = None) -> NoisyLine:
    """:func:`noisy_line` from θi (or ``start``) to θf of ``run`` on its evaluation data."""
    begin = run.initial if start is None else start
    return noisy_line(ctx, _draw_models(ctx, run), begin, run.final, alphas, eval_data(ctx, run))


def overlay(
    lines: list[Sweep],
    ax: Any,
    metric: str,
    title: str,
    log_alpha: bool = False,
    labels: list[str] | None = None,
) -> None:
    """The training curves of several lines on one axes (labelled "seed 0", "seed 1", ... unless
    ``labels`` are given), α on a log axis (α > 0 only) if asked."""
    names = labels or [f"seed {i}" for i in range(len(lines))]
    for sweep, name in zip(lines, names, strict=True):
        keep = sweep.alphas > 0 if log_alpha else np.ones(len(sweep.alphas), bool)
        ax.plot(sweep.alphas[keep], sweep.values["train"][metric][keep], lw=1.2, label=name)
    if log_alpha:
        ax.set_xscale("log")
    ax.set_xlabel("α")
    ax.set_ylabel(f"train {metric}")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
