"""What every figure shares: the pyplot backend, the facts about a run, writing the outputs."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from .._io import save_json
from ..plotting import save_figure
from .runs import Context, Run


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (figures are written to files, never shown)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def run_facts(run: Run) -> dict[str, Any]:
    """A run's model, spec, training time, test error and last learning-curve values (JSON-ready)."""
    history = run.history
    facts = {
        "model": run.spec.describe(),
        "spec": dataclasses.asdict(run.spec),
        "train_seconds": run.seconds,
        "test_error": run.test_error,
        "test_mistakes": run.test_mistakes,
        "test_examples": run.test_examples,
    }
    if run.test_loss is not None:
        facts["test_loss"] = run.test_loss
    facts |= parameter_norms(run)
    steps = getattr(run.spec, "steps", 1) if getattr(run.spec, "dataset", "") == "ptb" else 1
    if steps > 1:  # a language model: the error is per word, over windows of `steps` words
        del facts["test_mistakes"]
        facts["test_words"] = run.test_examples * steps
    for key in ("train_loss", "valid_loss", "valid_error"):
        if history.get(key):
            facts[f"final_{key}"] = history[key][-1]
    return facts


def parameter_norms(run: Run) -> dict[str, float]:
    """‖θi‖, ‖θf‖ and ‖θf − θi‖/‖θi‖ of a run, in float64 (how far training moved the parameters,
    relative to where it started: the scale of the initialisation matters for the paper's Section 4)."""
    start, end = run.initial.tensor.double(), run.final.tensor.double()
    initial = float(torch.linalg.vector_norm(start))
    moved = float(torch.linalg.vector_norm(end - start))
    return {
        "theta_initial_norm": initial,
        "theta_final_norm": float(torch.linalg.vector_norm(end)),
        "relative_distance": moved / initial if initial > 0 else float("nan"),
    }


def write_figure(ctx: Context, name: str, fig: Any, record: dict[str, Any]) -> dict[str, Any]:
    """Writes ``name.png`` and ``name.json`` (the record) to ``ctx.out``; returns the findings."""
    save_figure(fig, ctx.out / f"{name}.png")
    save_json({"figure": name, "scale": ctx.scale.name, **record}, ctx.out / f"{name}.json")
    return record["findings"]
