"""The linear sum assignment problem, solved in Rust: :func:`linear_sum_assignment`.

Permutation alignment (:func:`linpath.align`) solves one per layer: which unit of model B goes with
which unit of model A. The solver is SciPy's algorithm (the shortest augmenting path method of
Jonker and Volgenant, as in Crouse 2016, "On implementing 2D rectangular assignment algorithms"),
with SciPy's semantics, and a first pass on each row's cheapest columns that the dual variables then
certify optimal for the whole matrix (or the rows that fail get every column), which makes large
dense problems several times faster than SciPy's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from . import _linpath


def linear_sum_assignment(
    cost: Any, maximize: bool = False
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """An optimal assignment of rows to columns: the one-to-one pairing with the smallest total cost.

    The same contract as :func:`scipy.optimize.linear_sum_assignment`. For an ``n × m`` matrix,
    min(n, m) pairs (every row of a wide matrix, every column of a tall one) with distinct rows and
    columns minimizing Σ cost[rows, cols] (maximizing with ``maximize=True``). Rows are added one at
    a time; each finds its cheapest augmenting path by a Dijkstra search over reduced costs and the
    dual variables are updated (Jonker–Volgenant's shortest augmenting path, as SciPy implements it).
    Cost: O(n²·m) in the worst case, n ≤ m; on random dense matrices a first pass on each row's 16
    cheapest columns, checked against the whole matrix by the duals, is much faster.

    Args:
        cost: A 2-D matrix of real numbers: a NumPy array (or nested lists) of any float or integer
            dtype, or a torch tensor of any float or integer dtype on any device (copied to the CPU
            as float64). +inf entries are forbidden pairings (−inf ones when maximizing).
        maximize: Maximize the total instead.

    Returns:
        ``(rows, cols)``: int64 arrays, ``rows`` ascending; row ``rows[k]`` goes to column ``cols[k]``.
        An empty matrix gives two empty arrays.

    Raises:
        TypeError: ``cost`` is complex, boolean or not numeric, or ``maximize`` is not a bool.
        ValueError: ``cost`` is not 2-D, holds NaN or an entry that makes the total unbounded (−inf
            when minimizing, +inf when maximizing), or has no complete assignment of finite cost
            ("cost matrix is infeasible").
    """
    if not isinstance(maximize, bool | np.bool_):
        raise TypeError(f"maximize must be a bool, got {type(maximize).__name__}")
    matrix = _as_float64(cost)
    if matrix.ndim != 2:
        raise ValueError(f"cost must be a 2-D matrix, got {matrix.ndim} dimensions (shape {matrix.shape})")
    return _linpath.linear_sum_assignment(matrix, bool(maximize))


def _as_float64(cost: Any) -> npt.NDArray[np.float64]:
    """``cost`` as a C-contiguous float64 NumPy array (a copy only when needed)."""
    if isinstance(cost, torch.Tensor):
        if cost.dtype == torch.bool or cost.is_complex():
            raise TypeError(f"cost must be a real (float or integer) tensor, got {cost.dtype}")
        return np.ascontiguousarray(cost.detach().to(device="cpu", dtype=torch.float64).numpy())
    array = np.asarray(cost)
    if array.dtype == np.bool_ or array.dtype.kind not in "fiu":
        raise TypeError(f"cost must be a real (float or integer) matrix, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.float64)
