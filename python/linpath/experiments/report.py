"""Text for people: the console report of ``reproduce`` and the table of the paper's claims."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

#: A verdict: "yes", "nearly" (a rise under SHALLOW of the curve's drop on [0, 1]), "no", or
#: "not at this scale" (a claim about the paper's full-size run, read at a smaller scale).
Verdict = str
Claim = tuple[str, str, Callable[[dict[str, Any], str], tuple[str, Verdict]]]
#: A rise on [0, 1] smaller than this fraction of the curve's range there is called shallow.
SHALLOW = 0.01


def _minima_note(minima: list[dict[str, Any]]) -> str:
    where = ", ".join(f"α={m['alpha']:.3g}" for m in minima[:4]) or "none"
    return f"local minima above noise: {len(minima)} ({where})"


def _rise(line: dict[str, Any]) -> str:
    if line["monotone_on_0_1"]:
        return "monotone"
    return f"largest rise {line['max_rise_on_0_1']:.3g} ({line['max_rise_relative']:.2%} of its drop)"


def _shape_verdict(line: dict[str, Any], extra_minima: list[dict[str, Any]]) -> Verdict:
    if line["monotone_on_0_1"] and not extra_minima:
        return "yes"
    return "nearly" if line["max_rise_relative"] < SHALLOW else "no"


def _smooth(findings: dict[str, Any], scale: str) -> tuple[str, Verdict]:
    """One local minimum (the line's own minimum) and no rise on [0, 1]."""
    line = findings["train_line"]
    minima = [m for m in line["local_minima"] if m["above_noise"]]
    low = line["minimum"]
    text = f"train loss on [0, 1]: {_rise(line)}; {_minima_note(minima)}; "
    text += f"minimum {low['value']:.4f} at α={low['alpha']:.3g}"
    return text, _shape_verdict(line, minima[1:])


def _fig2(findings: dict[str, Any], scale: str) -> tuple[str, Verdict]:
    parts = [(name, *_smooth(f, scale)) for name, f in findings.items()]
    verdicts = {v for _, _, v in parts}
    worst = "no" if "no" in verdicts else "nearly" if "nearly" in verdicts else "yes"
    return "; ".join(f"{name}: {text}" for name, text, _ in parts), worst


def _fig3(findings: dict[str, Any], scale: str) -> tuple[str, Verdict]:
    panels = [
        f"{k}) " + ("monotone" if findings[k]["monotone"] else f"max rise {findings[k]['max_rise']:.2g}")
        for k in ("a", "c", "d")
    ]
    count = findings["local_minima_above_noise"]
    return f"{', '.join(panels)}; local minima above noise in a, c, d: {count}", "yes" if count == 0 else "no"


def _fig4_barrier(findings: dict[str, Any], scale: str) -> tuple[str, Verdict]:
    b = findings["two_solutions"]["barrier_train"]
    text = (
        f"train loss barrier {b['loss_linear']:.3g} (linear form), {b['loss_midpoint']:.3g} (midpoint form); "
        f"error barrier {b['error_linear']:.2%}"
    )
    return text, "yes" if b["loss_linear"] > 0 else "no"


def _fig4_random(findings: dict[str, Any], scale: str) -> tuple[str, Verdict]:
    line = findings["random_to_solution"]["train_line"]
    inner = [m for m in line["local_minima"] if m["above_noise"] and 0.0 < m["alpha"] < 1.0]
    text = f"train loss on [0, 1]: {_rise(line)}; local minima strictly inside (0, 1): {len(inner)}"
    return text, _shape_verdict(line, inner)


def _fig5(findings: dict[str, Any], scale: str) -> tuple[str, Verdict]:
    share = findings["explained"]
    text = (
        f"the line captures {share:.1%} of the squared displacement ({findings['checkpoints']} checkpoints)"
    )
    return text, "yes" if abs(share - 2 / 3) <= 0.1 else "no"


def _mistakes(findings: dict[str, Any], scale: str) -> tuple[str, Verdict]:
    text = f"{findings['test_mistakes']} test mistakes ({findings['test_error']:.2%})"
    if scale != "paper":
        return text, "not at this scale"
    return text, "yes" if findings["test_mistakes"] <= 94 else "no"


#: (figure, the paper's claim, how to read it from the figure's findings at a scale).
CLAIMS: list[Claim] = [
    ("fig1", "maxout: the line from θi to θf is smooth and nearly convex, no barrier", _smooth),
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
        measured, verdict = read(entry["findings"], summary["scale"])
        rows.append({"figure": figure, "claim": claim, "measured": measured, "holds": verdict})
    return rows


def claims_markdown(summary: dict[str, Any]) -> str:
    """:func:`claims` as a Markdown table."""
    lines = ["| figure | the paper's claim | measured here | holds |", "|---|---|---|---|"]
    for row in claims(summary):
        lines.append(f"| {row['figure']} | {row['claim']} | {row['measured']} | {row['holds']} |")
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
        lines.append(f"  [{row['holds']}] {row['figure']}: {row['claim']}\n      {row['measured']}")
    return "\n".join(lines)
