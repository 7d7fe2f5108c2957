"""TEMPORARY stand-in for the native linear assignment solver (the ``lap`` branch replaces this file).

Wraps :func:`scipy.optimize.linear_sum_assignment` with the same signature, so that
:mod:`linpath.align` can be written and tested before the Rust solver is merged.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def linear_sum_assignment(cost: Any, maximize: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of an optimal assignment, as :func:`scipy.optimize.linear_sum_assignment`."""
    from scipy.optimize import linear_sum_assignment as scipy_lsa  # type: ignore[import-untyped]

    rows, cols = scipy_lsa(np.asarray(cost), maximize=maximize)
    return np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
