"""Text for people: the console report of ``reproduce`` and the table of the paper's claims."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

Claim = tuple[str, str, Callable[[dict[str, Any]], tuple[str, bool]]]


def _minima_note(line: dict[str, Any]) -> str:
    inner = [m for m in line["local_minima"] if m["above_noise"]]
    where = ", ".join(f"α={m['alpha']:.3g}" for m in inner[:4]) or "none"
    return f"local minima above noise: {len(inner)} ({where})"


def _smooth(findings: dict[str, Any]) -> tuple[str, bool]:
    line = findings["train_line"]
    rise = "monotone" if line["monotone_on_0_1"] else f"largest rise {line['max_rise_on_0_1']:.3g}"
    low = line["minimum"]
    text = f"train loss on [0, 1]: {rise}; {_minima_note(line)}; "
    text += f"minimum {low['value']:.4f} at α={low['alpha']:.3g}"
    return text, line["monotone_on_0_1"] and line["local_minima_above_noise"] <= 1


def _fig2(findings: dict[str, Any]) -> tuple[str, bool]:
    parts = [(name, _smooth(f)) for name, f in findings.items()]
    return "; ".join(f"{name}: {text}" for name, (text, _) in parts), all(ok for _, (_, ok) in parts)


def _fig3(findings: dict[str, Any]) -> tuple[str, bool]:
    panels = [
        f"{k}) " + ("monotone" if findings[k]["monotone"] else f"max rise {findings[k]['max_rise']:.2g}")
        for k in ("a", "c", "d")
    ]
    count = findings["local_minima_above_noise"]
    return f"{', '.join(panels)}; local minima above noise in a, c, d: {count}", count == 0


def _fig4_barrier(findings: dict[str, Any]) -> tuple[str, bool]:
    b = findings["two_solutions"]["barrier_train"]
    text = (
        f"train loss barrier {b['loss_linear']:.3g} (linear form), {b['loss_midpoint']:.3g} (midpoint form); "
        f"error barrier {b['error_linear']:.2%}"
    )
    return text, b["loss_linear"] > 0


def _fig4_random(findings: dict[str, Any]) -> tuple[str, bool]:
    line = findings["random_to_solution"]["train_line"]
    inner = [m for m in line["local_minima"] if m["above_noise"] and 0.0 < m["alpha"] < 1.0]
    rise = "monotone" if line["monotone_on_0_1"] else f"largest rise {line['max_rise_on_0_1']:.3g}"
    return f"train loss on [0, 1]: {rise}; local minima strictly inside (0, 1): {len(inner)}", line[
        "monotone_on_0_1"
    ] and not inner


def _fig5(findings: dict[str, Any]) -> tuple[str, bool]:
    share = findings["explained"]
    return (
        f"the line captures {share:.1%} of the squared displacement ({findings['checkpoints']} checkpoints)",
        0.5 <= share <= 0.85,
    )


def _mistakes(findings: dict[str, Any]) -> tuple[str, bool]:
    return f"{findings['test_mistakes']} test mistakes ({findings['test_error']:.2%})", findings[
        "test_mistakes"
    ] <= 94


#: (figure, the paper's claim, how to read it from the figure's findings).
CLAIMS: list[Claim] = [
    ("fig1", "maxout: the line from θi to θf is smooth and nearly convex, no barrier", lambda f: _smooth(f)),
    ("fig1", "maxout with dropout: 94 test mistakes (paper scale)", _mistakes),
    ("fig2", "sigmoid and ReLU lines: no difficult structures either", _fig2),
    ("fig3", "200 α on [0, 1], [0, 0.01], [0.99, 1]: no small structures", _fig3),
    ("fig4", "two solutions from different seeds: a barrier between them", _fig4_barrier),
    ("fig4", "random point to a solution: no barrier, no other minimum", _fig4_random),
    ("fig5", "the line captures about 2/3 of the variation of the parameters", _fig5),
]


def claims(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The paper's claims checked against the figures present in ``summary``."""
    rows = []
    for figure, claim, read in CLAIMS:
        entry = summary["figures"].get(figure)
        if entry is None:
            continue
        measured, holds = read(entry["findings"])
        rows.append({"figure": figure, "claim": claim, "measured": measured, "holds": bool(holds)})
    return rows


def claims_markdown(summary: dict[str, Any]) -> str:
    """:func:`claims` as a Markdown table."""
    lines = ["| figure | the paper's claim | measured here | holds |", "|---|---|---|---|"]
    for row in claims(summary):
        lines.append(
            f"| {row['figure']} | {row['claim']} | {row['measured']} | {'yes' if row['holds'] else 'no'} |"
        )
    return "\n".join(lines)


def report(summary: dict[str, Any], out: Path) -> str:
    """The console summary of a ``reproduce`` run."""
    lines = [f"linpath reproduce ({summary['scale']} scale): results in {out}/"]
    lines += [f"  note: {note}" for note in summary.get("notes", [])]
    for name, entry in summary["figures"].items():
        lines.append(
            f"  {name}: {entry['seconds']:.0f} s -> {out / (name + '.png')}, {out / (name + '.json')}"
        )
    for row in claims(summary):
        lines.append(
            f"  [{'holds' if row['holds'] else 'differs'}] {row['figure']}: {row['claim']}\n"
            f"      {row['measured']}"
        )
    return "\n".join(lines)
