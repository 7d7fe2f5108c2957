"""Text for people: the console report of ``reproduce`` and the table of the paper's claims."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .recipe_claims import CLAIMS as RECIPE_CLAIMS

#: A verdict: "yes", "nearly" (a rise under SHALLOW of the curve's drop on [0, 1]), "no", or
#: "not at this scale" (a claim about the paper's full-size run, read at a smaller scale), or
#: "not comparable" (the paper does not define the quantity it states, e.g. Figure 5's "2/3").
Verdict = str
Claim = tuple[str, str, Callable[[dict[str, Any], str], tuple[str, Verdict]]]
#: A rise on [0, 1] smaller than this fraction of the curve's range there is called shallow.
SHALLOW = 0.01


def _minima_note(minima: list[dict[str, Any]]) -> str:
    where = ", ".join(f"α={m['alpha']:.3g}" for m in minima[:4]) or "none"
    return f"local minima above noise: {len(minima)} ({where})"


def _rise(line: dict[str, Any]) -> str:
    if line["monotone_on_0_1"] is None:
        return "unknown (NaN or inf at α=" + ", ".join(f"{a:.3g}" for a in line["nonfinite_alphas"][:4]) + ")"
    if line["monotone_on_0_1"]:
        return "monotone"
    return f"largest rise {line['max_rise_on_0_1']:.3g} ({line['max_rise_relative']:.2%} of its drop)"


def _shape_verdict(line: dict[str, Any], extra_minima: list[dict[str, Any]]) -> Verdict:
    if line["monotone_on_0_1"] is None:
        return "unknown (NaN)"
    if line["monotone_on_0_1"] and not extra_minima:
        return "yes"
    return "nearly" if line["max_rise_relative"] < SHALLOW else "no"


def _smooth(findings: dict[str, Any], scale: str) -> tuple[str, Verdict]:
    """No rise on [0, 1] and no local minimum inside [0, 1] besides the line's own minimum
    (minima out in the extrapolation, α < 0 or beyond θf's basin, are reported, not counted)."""
    line = findings["train_line"]
    minima = [m for m in line["local_minima"] if m["above_noise"]]
    low = line["minimum"]
    text = f"train loss on [0, 1]: {_rise(line)}; {_minima_note(minima)}; "
    text += f"minimum {low['value']:.4f} at α={low['alpha']:.3g}"
    inside = [m for m in minima if 0.0 <= m["alpha"] <= 1.0 and m["alpha"] != low["alpha"]]
    return text, _shape_verdict(line, inside)


def _fig2(findings: dict[str, Any], scale: str) -> tuple[str, Verdict]:
    parts = [(name, *_smooth(f, scale)) for name, f in findings.items()]
    verdicts = {v for _, _, v in parts}
    worst = next((v for v in ("unknown (NaN)", "no", "nearly") if v in verdicts), "yes")
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
    """The paper's "about 2/3" is undefined: both readings, each beside a random walk's value."""
    walk = findings["random_walk"]
    text = (
        f"the line captures {findings['explained']:.1%} of the squared displacement from θi and "
        f"{findings['variance_share']:.1%} of the variance about the mean point "
        f"({findings['checkpoints']} checkpoints); a Gaussian random walk of the same length and "
        f"dimension ({walk['method']}): {walk['explained']:.1%} and {walk['variance_share']:.1%}"
    )
    return text, "not comparable"


def _mistakes(findings: dict[str, Any], scale: str) -> tuple[str, Verdict]:
    text = f"{findings['test_mistakes']} test mistakes ({findings['test_error']:.2%})"
    if scale != "paper":
        return text, "not at this scale"
    return text, "yes" if findings["test_mistakes"] <= 94 else "no"


def _removed(method: str) -> Callable[[dict[str, Any], str], tuple[str, Verdict]]:
    """Alignment by ``method`` ("weight" or "activation" matching) removes most (over half) of the
    widest pair's train loss barrier."""

    def read(findings: dict[str, Any], scale: str) -> tuple[str, Verdict]:
        widest = str(findings["widths"][-1])
        b = findings["barriers"][widest]
        key = f"{method}s"  # the barriers of the line after that alignment
        before, after = b["naive"]["train_loss_linear"], b[key]["train_loss_linear"]
        share = findings[f"removed_by_{method}_matching"]
        text = (
            f"width {widest}: train loss barrier {before:.3g} as trained, {after:.3g} after {method} "
            f"matching ({share:.0%} removed); test error barrier {b['naive']['test_error_linear']:.2%} -> "
            f"{b[key]['test_error_linear']:.2%}"
        )
        return text, "yes" if share >= 0.5 else ("nearly" if share >= 0.25 else "no")

    return read


def _shrinks_with_width(findings: dict[str, Any], scale: str) -> tuple[str, Verdict]:
    """After weight matching, no wider pair has a higher barrier than a narrower one ("nearly": the
    widest is below the narrowest, not monotone on the way)."""
    widths = findings["widths"]
    heights = [findings["barriers"][str(w)]["weights"]["train_loss_linear"] for w in widths]
    text = "train loss barrier after weight matching by width: " + ", ".join(
        f"{w}: {h:.3g}" for w, h in zip(widths, heights, strict=True)
    )
    if len(heights) < 2:
        return text, "no"
    if all(b <= a for a, b in zip(heights, heights[1:], strict=False)):
        return text, "yes"
    return text, "nearly" if heights[-1] < heights[0] else "no"


def _curve_connects(findings: dict[str, Any], scale: str) -> tuple[str, Verdict]:
    """The curve's train loss barrier is under a tenth of the straight line's ("nearly": under half)."""
    widest = str(findings["widths"][-1])
    line = findings["barriers"][widest]["naive"]["train_loss_linear"]
    curve = findings["curve"]["train_loss_linear"]
    text = (
        f"width {widest}: train loss barrier {curve:.3g} along the Bezier curve "
        f"({findings['curve']['epochs']} epochs) against {line:.3g} on the line"
    )
    ratio = curve / line if line > 0 else float("inf")
    return text, "yes" if ratio <= 0.1 else ("nearly" if ratio <= 0.5 else "no")


#: (figure, the paper's claim, how to read it from the figure's findings at a scale).
CLAIMS: list[Claim] = [
    ("fig1", "maxout: the line from θi to θf is smooth and nearly convex, no barrier", _smooth),
    ("fig1", "maxout with dropout: 94 test mistakes (paper scale)", _mistakes),
    ("fig2", "sigmoid and ReLU lines: no difficult structures either", _fig2),
    ("fig3", "200 α on [0, 1], [0, 0.01], [0.99, 1]: no small structures", _fig3),
    ("fig4", "two solutions from different seeds: a barrier between them", _fig4_barrier),
    ("fig4", "random point to a solution: no barrier, no other minimum", _fig4_random),
    ("fig5", "the line captures about 2/3 of the variation of the parameters", _fig5),
    *RECIPE_CLAIMS,
    ("fig8", "LSTM (Penn Treebank): no difficult structure on the line", _smooth),
    (
        "align",
        "Git Re-Basin: weight matching removes most of the barrier (wide MNIST MLPs)",
        _removed("weight"),
    ),
    ("align", "activation matching removes most of it too", _removed("activation")),
    ("align", "Entezari et al.: the barrier after alignment shrinks as the width grows", _shrinks_with_width),
    ("align", "Garipov et al.: a trained Bezier curve connects the solutions at low loss", _curve_connects),
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
