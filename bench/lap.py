"""Linear assignment benchmark: linpath's solver against SciPy's on dense random costs, in one process.

Uniform [0, 1) costs of 1,024², 2,048² and 4,096² (float64, seed 0); both solvers on the same
matrix, interleaved, best of 3 each. Both totals are checked equal (1e-12 relative). The issue's
target: 4,096 × 4,096 in well under a second.

Run: ``make bench`` (or ``python bench/lap.py`` inside the venv).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment as scipy_lsa

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, save, table  # noqa: E402

from linpath.lap import linear_sum_assignment  # noqa: E402

SIZES = (1024, 2048, 4096)
REPEATS = 3


def timed(fn, cost: np.ndarray) -> tuple[float, float]:
    """Seconds of one call of ``fn(cost)`` and the total cost of its assignment."""
    t0 = time.perf_counter()
    rows, cols = fn(cost)
    return time.perf_counter() - t0, float(cost[rows, cols].sum())


def run(n: int) -> dict[str, float]:
    cost = np.random.default_rng(0).random((n, n))
    ours, scipy = float("inf"), float("inf")
    for _ in range(REPEATS):
        t, total = timed(linear_sum_assignment, cost)
        ours = min(ours, t)
        t, want = timed(scipy_lsa, cost)
        scipy = min(scipy, t)
        if abs(total - want) > 1e-12 * abs(want):
            raise AssertionError(f"{n}x{n}: total {total!r} differs from SciPy's {want!r}")
    return {"n": n, "linpath_s": ours, "scipy_s": scipy, "speedup": scipy / ours, "total": total}


def main() -> None:
    rows = [run(n) for n in SIZES]
    print(f"machine: {machine()['cpu']}, {machine()['cores']} cores")
    columns = [
        ("n", "n × n", "d"),
        ("linpath_s", "linpath (s)", ".3f"),
        ("scipy_s", "SciPy (s)", ".3f"),
        ("speedup", "SciPy / linpath", ".1f"),
    ]
    print(table(rows, columns))
    path = save("lap", {"repeats": REPEATS, "costs": "uniform [0, 1), seed 0", "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
