"""The claims of Figures 6 and 7 and their ablations, read over seeds against bootstrap noise floors.

Each figure's findings hold one entry per seed (``findings["seeds"]``). A rise or a minimum counts
only when it exceeds that seed's floor τ: the 95% quantile of the largest rise that resampling the
evaluation examples alone creates anywhere on the curve (:mod:`linpath.experiments.noise`). A verdict
says how many seeds show the phenomenon: "yes" when most do, "nearly" when some do, "no" when none.
"""

from __future__ import annotations

from typing import Any

#: A rise near θi counts as "shallow" (the paper's word) below this fraction of J there.
SHALLOW_BARRIER = 0.1


def _share(hits: int, seeds: int) -> str:
    """ "yes" when most seeds show it, "nearly" when some do, "no" when none."""
    if hits * 2 > seeds:
        return "yes"
    return "nearly" if hits else "no"


def _delta_note(seed: dict[str, Any]) -> str:
    noise = seed["noise"]
    text = f"seed {seed['seed']}: Δ={noise['delta']:.3g}, τ={noise['tau']:.2g}"
    if noise["rise_persistence"] is not None:
        text += f" (rise persists in {noise['rise_persistence']:.0%} of resamples)"
    return text


def fig6_global(findings: dict[str, Any], scale: str) -> tuple[str, str]:
    """At a global scale the line is well-behaved: Lucas et al.'s Δ on [0, 1] within the floor, or a
    rise under 10% of the curve's drop ("nearly")."""
    seeds = findings["seeds"]
    within = sum(s["noise"]["delta"] <= s["noise"]["tau"] for s in seeds)
    shallow = sum(s["train_line"]["max_rise_relative"] < 0.1 for s in seeds)
    text = f"train loss on [0, 1], {len(seeds)} seed(s): " + "; ".join(_delta_note(s) for s in seeds)
    text += f"; monotone within noise: {within}/{len(seeds)}"
    if within * 2 > len(seeds):
        return text, "yes"
    return text, "nearly" if shallow * 2 > len(seeds) else "no"


def _barrier_note(seed: dict[str, Any]) -> str:
    bumps = seed["barriers_near_init"]
    where = ", ".join(
        f"α={b['alpha']:.3g} (height {b['height']:.3g}, τ={b['tau']:.2g}, persists {b['persistence']:.0%})"
        for b in bumps
        if b["above_floor"]
    )
    weak = sum(not b["above_floor"] for b in bumps)
    return f"seed {seed['seed']}: {where or 'none above the floor'}" + (
        f", {weak} within noise" if weak else ""
    )


def fig6_barrier(findings: dict[str, Any], scale: str) -> tuple[str, str]:
    """One shallow barrier near θi: a bump of the train J in (0, 0.3], read on the log-spaced zoom,
    higher than the bootstrap floor and under 10% of J there, in most seeds."""
    seeds = findings["seeds"]
    hits = 0
    for seed in seeds:
        real = [b for b in seed["barriers_near_init"] if b["above_floor"]]
        hits += len(real) == 1 and real[0]["height_relative"] < SHALLOW_BARRIER
    text = "bumps near θi (α ≤ 0.3) above the floor: " + "; ".join(_barrier_note(s) for s in seeds)
    return f"{text}; seeds with one shallow barrier: {hits}/{len(seeds)}", _share(hits, len(seeds))


def _secondary_note(seed: dict[str, Any]) -> str:
    second, noise = seed["secondary_minimum"], seed["noise"]
    if second is None:
        return f"seed {seed['seed']}: none (τ={noise['tau_grid']:.2g}; Δ on [0, 2] {noise['delta']:.3g})"
    return (
        f"seed {seed['seed']}: α={second['alpha']:.3g}, prominence {second['prominence']:.3g} > "
        f"τ={second['tau']:.2g} (persists {second['persistence']:.0%}), train error {second['error']:.2%}"
    )


def fig7_secondary(findings: dict[str, Any], scale: str) -> tuple[str, str]:
    """A secondary local minimum on [0, 2], deeper than the floor, with a higher error than the
    line's minimum, in most seeds."""
    seeds = findings["seeds"]
    hits = sum(
        s["secondary_minimum"] is not None and s["secondary_minimum"]["error"] > s["train_error_at_minimum"]
        for s in seeds
    )
    text = "secondary minima on [0, 2]: " + "; ".join(_secondary_note(s) for s in seeds)
    return f"{text}; seeds with one of higher error: {hits}/{len(seeds)}", _share(hits, len(seeds))


def fig7_around(findings: dict[str, Any], scale: str) -> tuple[str, str]:
    """SGD passes around the secondary minimum: its closest iterate stays farther from θ(α) than the
    minimum's basin reaches along the line (the nearest bump above the floor on either side)."""
    seeds = [s for s in findings["seeds"] if s["secondary_minimum"] is not None]
    if not seeds:
        return "no secondary minimum above the floor in any seed, nothing to pass around", "no"
    notes, hits = [], 0
    for seed in seeds:
        second, near = seed["secondary_minimum"], seed["sgd_closest_approach"]
        peaks = [b["alpha"] for b in seed["barriers_on_0_2"] if b["above_floor"]]
        radius = min((abs(p - second["alpha"]) for p in peaks), default=float("inf")) * near["line_length"]
        hits += near["distance"] > radius
        notes.append(f"seed {seed['seed']}: closest iterate {near['distance']:.3g} away, basin {radius:.3g}")
    return "; ".join(notes) + f"; passes around: {hits}/{len(seeds)}", _share(hits, len(findings["seeds"]))


def _setting(run: dict[str, Any]) -> str:
    if run["tau"] is None:
        return f"{run['label']}: NaN or inf on the line (diverged), no verdict"
    barrier = run["barrier"]
    if barrier is None:
        return f"{run['label']}: none (τ={run['tau']:.2g})"
    return f"{run['label']}: height {barrier['height']:.3g} at α={barrier['alpha']:.3g} (τ={run['tau']:.2g})"


def fig6_init(findings: dict[str, Any], scale: str) -> tuple[str, str]:
    """The paper's hypothesis: whether a barrier near θi appears depends on the initial weights' scale
    ("yes": some settings show one above the floor and others do not)."""
    runs = findings["runs"]
    text = "; ".join(_setting(r) for r in runs)
    text += "; from s·θi: " + "; ".join(_setting(c) for c in findings["pre_check"])
    shown = sum(r["barrier"] is not None for r in runs)
    return text, "yes" if 0 < shown < len(runs) else "no"


def _where(run: dict[str, Any]) -> str:
    if run["tau"] is None:
        return "NaN or inf on the line (diverged)"
    minimum = run["secondary_minimum"]
    return "none" if minimum is None else f"α={minimum['alpha']:.3g}"


def fig7_init(findings: dict[str, Any], scale: str) -> tuple[str, str]:
    """The secondary minimum needs the large sparse weights together with the max-norms ("yes": it
    appears with the max-norms at scale ≥ 1 and in no run without them)."""
    runs = findings["runs"]
    notes = [f"{r['label']}: " + _where(r) for r in runs]
    free = [r for r in runs if r["label"].endswith("free") and r["secondary_minimum"] is not None]
    bound = [r for r in runs if r["label"].endswith("maxnorm") and r["secondary_minimum"] is not None]
    text = "secondary minima above the floor: " + "; ".join(notes)
    return text, "yes" if bound and not free else "no"


CLAIMS = [
    ("fig6", "conv maxout (CIFAR-10): at a global scale the line is well-behaved", fig6_global),
    ("fig6", "conv maxout: one shallow barrier near θi (α near 0)", fig6_barrier),
    ("fig6_init", "the barrier near θi depends on the initial weights' scale (the paper's guess)", fig6_init),
    ("fig7", "MP-DBM: a secondary local minimum with high error on α in [0, 2]", fig7_secondary),
    ("fig7", "MP-DBM: SGD passes around that minimum (does not come near it)", fig7_around),
    ("fig7_init", "the secondary minimum needs the large sparse weights and the max-norms", fig7_init),
]
