"""The metrics later work reads off a line or a curve between two solutions, side by side for several
sweeps: :func:`summary`.

Each metric is one method of :class:`linpath.Sweep` (one implementation, used everywhere):

* Δ (Lucas et al. 2021, "monotonic linear interpolation"): the largest rise on [0, 1], max over
  α < α′ of [J(α′) − J(α)]⁺ over every pair of grid points (:meth:`~linpath.Sweep.monotonicity_gap`);
* the bump: that rise's height, where it starts and where it peaks (:meth:`~linpath.Sweep.bump`);
* the barrier on [0, 1] in the midpoint form (Frankle et al. 2020) and the linear form (Entezari et
  al. 2021), on the loss and on the error (:meth:`~linpath.Sweep.barrier`);
* the normalised distance ‖θ1 − θ0‖ / ‖θ1‖ (Lucas et al.; :meth:`~linpath.Sweep.normalized_distance`).

A curve's sweep (``t`` as the coordinate, :mod:`linpath.curves`) has the same metrics.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .sweep import Sweep

#: The columns of a summary: (key, header, format).
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("name", "sweep", "s"),
    ("split", "split", "s"),
    ("delta_loss", "Δ loss", ".4g"),
    ("delta_error", "Δ error", ".4g"),
    ("bump_start", "bump from α", ".3g"),
    ("bump_peak", "bump peak α", ".3g"),
    ("barrier_loss", "barrier loss (mid)", ".4g"),
    ("barrier_loss_linear", "barrier loss (lin)", ".4g"),
    ("barrier_error", "barrier error (mid)", ".4g"),
    ("barrier_error_linear", "barrier error (lin)", ".4g"),
    ("normalized_distance", "‖θ1−θ0‖/‖θ1‖", ".4g"),
)


@dataclass(frozen=True)
class Summary:
    """One row of metrics per sweep (see the module docstring): :attr:`rows` as dicts keyed as
    :data:`COLUMNS`; :meth:`table` as Markdown. A metric a sweep cannot give (no error metric, no
    α = 0 or 1 on its grid, no recorded distance) is None; one its values make unknown (NaN or
    infinite values on [0, 1]) is NaN."""

    rows: tuple[dict[str, Any], ...]

    def table(self) -> str:
        """The rows as a Markdown table (— for a metric the sweep cannot give)."""
        lines = ["| " + " | ".join(h for _, h, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        for row in self.rows:
            cells = [format(row[k], f) if row[k] is not None else "—" for k, _, f in COLUMNS]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"rows": [...]}`` (NaN as None)."""
        clean = [
            {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()}
            for r in self.rows
        ]
        return {"rows": clean}


def summary(sweeps: Mapping[str, Sweep], split: str | None = None) -> Summary:
    """The metrics of each sweep in ``sweeps`` (``{name: sweep}``, in order) on ``split`` (default:
    each sweep's first split).

    Raises:
        TypeError: If a value is not a :class:`linpath.Sweep`.
        ValueError: If a sweep has no split ``split``.
    """
    rows = []
    for name, sweep in sweeps.items():
        if not isinstance(sweep, Sweep):
            raise TypeError(f"summary takes {{name: Sweep}}, but {name!r} is a {type(sweep).__name__}")
        chosen = split if split is not None else sweep.splits[0]
        if chosen not in sweep.values:
            raise ValueError(f"sweep {name!r} has no split {chosen!r}; its splits are {sweep.splits}")
        rows.append({"name": str(name), "split": chosen, **_metrics(sweep, chosen)})
    return Summary(tuple(rows))


def _metrics(sweep: Sweep, split: str) -> dict[str, Any]:
    have = sweep.values[split]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NaN metrics are reported as NaN in the row
        height, start, peak = _maybe(lambda: sweep.bump(split, "loss")) or (None, None, None)
        return {
            "delta_loss": height,
            "delta_error": _maybe(lambda: sweep.monotonicity_gap(split, "error"))
            if "error" in have
            else None,
            "bump_start": start,
            "bump_peak": peak,
            "barrier_loss": _maybe(lambda: sweep.barrier(split, "loss")),
            "barrier_loss_linear": _maybe(lambda: sweep.barrier(split, "loss", form="linear")),
            "barrier_error": _maybe(lambda: sweep.barrier(split, "error")) if "error" in have else None,
            "barrier_error_linear": (
                _maybe(lambda: sweep.barrier(split, "error", form="linear")) if "error" in have else None
            ),
            "normalized_distance": _maybe(sweep.normalized_distance),
        }


def _maybe(metric: Any) -> Any:
    """``metric()``, or None where the sweep cannot give it (a ValueError: a grid without 0 and 1,
    fewer than two points on [0, 1], no recorded distance)."""
    try:
        return metric()
    except ValueError:
        return None
