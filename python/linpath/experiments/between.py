"""Between two solutions, as later work saw Figure 4's barrier: ``python -m linpath reproduce align``.

Two 784-w-w-w-10 ReLU MLPs trained on MNIST from different seeds (Ainsworth et al. 2022, "Git
Re-Basin", use w = 512), for each width of the scale (``Scale.align_widths``):

* the line between them as trained (the paper's Figure 4: a barrier);
* the line after weight matching and after activation matching (:func:`linpath.align`): hidden units
  of B permuted to line up with A's, the same function as B;
* for the widest pair, a quadratic Bezier curve between the solutions as trained (Garipov et al.
  2018, :func:`linpath.curves.bezier`).

The findings hold the barriers (midpoint and linear forms, loss and error, on the train and test
splits) and the metrics of :func:`linpath.metrics.summary`; the claims table compares them with the
published findings: alignment removes most of the barrier for wide MLPs (Ainsworth et al.: about zero
loss barrier for the 512-wide MNIST MLP after weight matching), the barrier after alignment shrinks
as the width grows (Entezari et al. 2021's conjecture), and a trained curve connects the solutions
at about their loss (Garipov et al.).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .. import curves, datasets
from ..alignment import align
from ..metrics import summary
from ..sweep import Sweep
from .common import pyplot, run_facts, write_figure
from .runs import Context, Run

#: Points of every line and curve on [0, 1] (Git Re-Basin's code uses 25).
POINTS = 25
#: The splits every line is measured on.
SPLITS = ("train", "test")


def _data(ctx: Context) -> datasets.Dataset:
    """The examples the lines, the curve's evaluation and activation matching read."""
    n = ctx.scale.align_examples
    full = ctx.data
    return datasets.Dataset(datasets.head(full.train, n), full.valid, datasets.head(full.test, n))


def _lines(ctx: Context, a: Run, b: Run, data: datasets.Dataset) -> tuple[dict[str, Sweep], dict[str, Any]]:
    """The lines from A to B as trained, weight-matched and activation-matched, and the alignments' facts."""
    model = ctx.model_of(a)
    first, second = a.model(), b.model()  # align runs native MLPs through their PyTorch twins
    grid = np.linspace(0.0, 1.0, POINTS)
    t0 = time.perf_counter()
    weights = align(first, second, method="weights", seed=0)
    t1 = time.perf_counter()
    activations = align(first, second, method="activations", data=data.train)
    t2 = time.perf_counter()
    ends = {"naive": b.final, "weights": weights.state_dict, "activations": activations.state_dict}
    lines = {name: ctx.line(model, a.final, end, grid, SPLITS, data) for name, end in ends.items()}
    facts = {
        "weight_matching": {"seconds": t1 - t0, "objective": list(weights.objective)},
        "activation_matching": {"seconds": t2 - t1, "objective": _last(activations.objective)},
    }
    return lines, facts


def _last(objective: Any) -> Any:
    """The final value of an objective history (or the value itself)."""
    if isinstance(objective, list | tuple):
        return objective[-1] if objective else None
    return float(objective)


def _curve(ctx: Context, a: Run, b: Run, data: datasets.Dataset) -> tuple[Sweep, dict[str, Any]]:
    """A quadratic Bezier curve between A and B as trained (Garipov et al. 2018), along t."""
    t0 = time.perf_counter()
    curve = curves.bezier(
        ctx.model_of(a),  # a native MLP trains through its PyTorch twin, and evaluates natively
        a.final,
        b.final,
        ctx.data.train,
        bends=1,
        epochs=ctx.scale.curve_epochs,
        seed=0,
        progress=ctx.progress,
    )
    seconds = time.perf_counter() - t0
    pairs = {name: getattr(data, name) for name in SPLITS}
    sweep = curve.evaluate(ctx.model_of(a), pairs, ts=np.linspace(0.0, 1.0, POINTS))
    return sweep, {"seconds": seconds, "epochs": ctx.scale.curve_epochs, "history": curve.history}


def _barriers(sweep: Sweep) -> dict[str, float]:
    return {
        f"{split}_{metric}_{form}": sweep.barrier(split, metric, form)
        for split in SPLITS
        for metric in ("loss", "error")
        for form in ("midpoint", "linear")
    }


def align_experiment(ctx: Context) -> dict[str, Any]:
    """The experiment of the module docstring: figure ``align.png``, findings in ``align.json``."""
    data = _data(ctx)
    widths = ctx.scale.align_widths
    per_width: dict[int, dict[str, dict[str, float]]] = {}
    sweeps: dict[int, dict[str, Sweep]] = {}
    runs, facts, errors = {}, {}, {}
    for width in widths:
        a, b = ctx.run(f"align{width}_seed0"), ctx.run(f"align{width}_seed1")
        lines, facts[width] = _lines(ctx, a, b, data)
        per_width[width] = {name: _barriers(s) for name, s in lines.items()}
        sweeps[width], runs[width] = lines, [run_facts(a), run_facts(b)]
        errors[str(width)] = [a.test_error, b.test_error]
    widest = widths[-1]
    curve, curve_facts = _curve(ctx, ctx.run(f"align{widest}_seed0"), ctx.run(f"align{widest}_seed1"), data)
    table = summary({**{f"w{widest} {k}": s for k, s in sweeps[widest].items()}, f"w{widest} bezier": curve})
    findings = {
        "widths": list(widths),
        "barriers": {str(w): v for w, v in per_width.items()},
        "test_errors": errors,
        "curve": {**_barriers(curve), "epochs": curve_facts["epochs"]},
        "removed_by_weight_matching": _removed(per_width[widest], "weights"),
        "removed_by_activation_matching": _removed(per_width[widest], "activations"),
        "summary": table.to_dict()["rows"],
    }
    fig = _figure(sweeps[widest], curve, per_width, widest)
    record = {
        "runs": {str(w): r for w, r in runs.items()},
        "alignment": {str(w): f for w, f in facts.items()},
        "curve_training": curve_facts,
        "sweeps": {str(w): {k: s.to_dict() for k, s in lines.items()} for w, lines in sweeps.items()},
        "curve_sweep": curve.to_dict(),
        "findings": findings,
    }
    return write_figure(ctx, "align", fig, record)


def _removed(barriers: dict[str, Any], method: str) -> float:
    """The fraction of the train loss barrier (linear form) that alignment removes."""
    before, after = barriers["naive"]["train_loss_linear"], barriers[method]["train_loss_linear"]
    return float(1.0 - after / before) if before > 0 else float("nan")


def _figure(lines: dict[str, Sweep], curve: Sweep, per_width: dict[int, Any], widest: int) -> Any:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
    styles = {"naive": "tab:red", "weights": "tab:blue", "activations": "tab:green"}
    for metric, ax in zip(("loss", "error"), axes[:2], strict=True):
        for name, sweep in lines.items():
            for split, dash in zip(SPLITS, ("-", "--"), strict=True):
                label = f"line, {name} ({split})" if name != "naive" else f"line as trained ({split})"
                ax.plot(sweep.alphas, sweep.values[split][metric], dash, color=styles[name], label=label)
        for split, dash in zip(SPLITS, ("-", "--"), strict=True):
            ax.plot(
                curve.alphas, curve.values[split][metric], dash, color="k", label=f"Bezier curve ({split})"
            )
        ax.set_xlabel(r"$\alpha$ (line) or $t$ (curve)")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.25)
    axes[0].legend(fontsize=7)
    axes[0].set_title(f"width {widest}: loss from A (0) to B (1)", fontsize=10)
    axes[1].set_title("error rate", fontsize=10)
    widths = sorted(per_width)
    for name, color in styles.items():
        heights = [per_width[w][name]["train_loss_linear"] for w in widths]
        axes[2].plot(widths, heights, "o-", color=color, label=name if name != "naive" else "as trained")
    axes[2].set_xscale("log", base=2)
    axes[2].set_yscale("symlog", linthresh=1e-3)  # the aligned barriers are 100-1000x lower
    axes[2].set_ylim(bottom=0.0)
    axes[2].set_xlabel("hidden width")
    axes[2].set_ylabel("train loss barrier (linear form)")
    axes[2].legend(fontsize=8)
    axes[2].grid(alpha=0.25)
    fig.suptitle("Between two MNIST MLPs from different seeds: permutation alignment and a Bezier curve")
    return fig


FIGURES = {"align": align_experiment}
