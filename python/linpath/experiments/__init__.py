"""The paper's experiments, reproduced on real data: ``python -m linpath reproduce``.

Figures 1 to 5 (fully connected networks on MNIST, :mod:`~linpath.experiments.mnist`) and 6 to 8
(a conv maxout net on CIFAR-10, an MP-DBM on MNIST and an LSTM on Penn Treebank,
:mod:`~linpath.experiments.advanced`) at three scales (see :mod:`linpath.experiments.scales`)::

    from linpath import experiments
    findings = experiments.reproduce(["fig1", "fig5"], scale="small", out="results/reproduce/small")

Each figure writes ``figN.png`` and ``figN.json`` (numbers, findings, settings) to ``out``; the
training runs are cached in ``out/runs/`` and shared by the figures that need them; ``out/summary.json``
collects every figure's findings and timing, and ``out/claims.md`` checks the paper's claims
against them.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .._io import atomic_write, save_json
from .ablations import FIGURES as ABLATION_FIGURES
from .advanced import FIGURES as ADVANCED_FIGURES
from .between import FIGURES as BETWEEN_FIGURES
from .findings import NOISE_FLOOR, line_grid, zoom_grid
from .mnist import FIGURES as MNIST_FIGURES
from .report import claims_markdown
from .runs import Context, Run
from .scales import SCALE_NAMES, SCALES, NetSpec, RunSpec, Scale, get_scale

#: The paper's figures (what "all" names).
PAPER_FIGURES = {**MNIST_FIGURES, **ADVANCED_FIGURES}
#: Every figure and experiment, by name: the paper's, the ablations behind Figures 6 and 7
#: ("fig6_init", "fig7_init") and "align" (between two solutions, later work).
FIGURES = {**PAPER_FIGURES, **ABLATION_FIGURES, **BETWEEN_FIGURES}
#: The figures whose networks train natively on the CPU.
_NATIVE_FIGURES = {**ADVANCED_FIGURES, **ABLATION_FIGURES}

__all__ = [
    "FIGURES",
    "NOISE_FLOOR",
    "SCALES",
    "SCALE_NAMES",
    "Context",
    "NetSpec",
    "Run",
    "RunSpec",
    "Scale",
    "get_scale",
    "line_grid",
    "reproduce",
    "zoom_grid",
]


def _figure_names(figures: str | Sequence[str]) -> list[str]:
    names = [figures] if isinstance(figures, str) else list(figures)
    if not names:
        raise ValueError("no figure asked for; name some of " + ", ".join([*FIGURES, "all"]))
    if "all" in names:
        return list(dict.fromkeys([*PAPER_FIGURES, *(n for n in names if n != "all")]))
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        raise ValueError(f"unknown figure(s) {unknown}; use {', '.join([*FIGURES, 'all'])}")
    return list(dict.fromkeys(names))


def reproduce(
    figures: str | Sequence[str] = "all",
    scale: str | Scale = "small",
    out: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Runs the named figures (``"fig1"`` ... ``"fig8"`` or ``"all"``) and writes their files.

    Args:
        figures: A figure name, a list of them, or ``"all"``.
        scale: ``"smoke"``, ``"small"``, ``"medium"`` or ``"paper"`` (or a :class:`Scale` of your own).
        out: Output directory (default ``results/reproduce/<scale>``).
        progress: Progress bars: True always, False never, None when a step takes over 2 s.
        device: ``"cpu"`` (the native trainer and sweep), ``"cuda"`` (PyTorch on the GPU; Figures 1
            to 5 only), or None: the GPU for Figures 1 to 5 at the paper scale when one is available,
            the CPU otherwise (Figures 6 to 8 always train natively on the CPU).

    Returns:
        The summary also written to ``out/summary.json``: per figure its findings and seconds.

    Raises:
        ValueError: For an unknown figure or scale.
    """
    names = _figure_names(figures)
    if device is not None and torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but PyTorch sees no CUDA device; use device='cpu'")
    chosen = get_scale(scale) if isinstance(scale, str) else scale
    out_dir = Path(out) if out is not None else Path("results/reproduce") / chosen.name
    auto = device is None
    if device is None:
        device = "cuda" if chosen.name == "paper" and torch.cuda.is_available() else "cpu"
    ctx = Context(chosen, out_dir, progress, device=device)
    # The advanced networks train natively on the CPU; "auto" sends them there.
    native_ctx = (
        Context(chosen, out_dir, progress, device="cpu") if auto and ctx.device.type != "cpu" else ctx
    )
    summary = _previous_summary(out_dir, chosen.name)
    for name in names:
        start = time.perf_counter()
        findings = FIGURES[name](native_ctx if name in _NATIVE_FIGURES else ctx)
        entry = {"findings": findings, "seconds": time.perf_counter() - start}
        summary = _record_figure(out_dir, chosen.name, name, entry)  # a long run keeps what it made
    return summary


def _record_figure(out: Path, scale_name: str, name: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Adds one figure to ``out/summary.json`` under a lock, re-reading the file first, so that two
    ``reproduce`` calls writing into the same folder (say fig6 and fig7 at once) keep each other's
    figures; returns the summary written."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".summary.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        summary = _previous_summary(out, scale_name)
        summary["figures"][name] = entry
        _write_summary(summary, out)
    return summary


def _write_summary(summary: dict[str, Any], out: Path) -> None:
    """``summary.json`` and ``claims.md`` (the paper's claims against the figures made so far)."""
    save_json(summary, out / "summary.json")
    with atomic_write(out / "claims.md", text=True) as f:
        f.write(f"# The paper's claims, {summary['scale']} scale\n\n{claims_markdown(summary)}\n")


def _previous_summary(out: Path, scale_name: str) -> dict[str, Any]:
    """The summary of earlier figures of the same scale in ``out`` (kept), or a fresh one."""
    notes = SCALES[scale_name].notes if scale_name in SCALES else []
    fresh: dict[str, Any] = {"scale": scale_name, "notes": notes, "figures": {}}
    try:
        old = json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        return fresh
    if isinstance(old, dict) and old.get("scale") == scale_name and isinstance(old.get("figures"), dict):
        # Only well-formed records of known figures: a damaged file must not break the claims table.
        kept = {k: v for k, v in old["figures"].items() if k in FIGURES and _well_formed(v)}
        return {**fresh, "figures": kept}
    return fresh


def _well_formed(record: Any) -> bool:
    """True for a figure's record as :func:`reproduce` writes it (a dict with its findings)."""
    return isinstance(record, dict) and isinstance(record.get("findings"), dict)
