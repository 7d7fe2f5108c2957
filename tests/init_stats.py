"""Statistical checks of initial weights, shared by the native models' initialisation tests.

Each check compares sample statistics (NumPy float64) with the distribution's own moments, within 5
standard errors of the sample size: a correct draw fails about once in a million checks, a wrong
range, scale or distribution fails at the sizes the tests use.
"""

from __future__ import annotations

import math
import secrets

import numpy as np
import torch
from scipy.stats import binom

SIGMAS = 5.0


def fresh_seed() -> int:
    """A new seed per run (printed, so a failing run can be replayed)."""
    seed = secrets.randbelow(2**31)
    print(f"seed {seed}")  # shown by pytest when the test fails
    return seed


def _values(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy().astype(np.float64).ravel()


def assert_uniform(t: torch.Tensor, irange: float) -> None:
    """``t``'s values are i.i.d. uniform in [−irange, irange]: range, both edges reached, mean 0 and
    variance irange²/3 (the variance of X² is 4·irange⁴/45)."""
    x = _values(t)
    n = x.size
    assert x.min() >= -irange and x.max() <= irange, (x.min(), x.max(), irange)
    edge = 20 * 2 * irange / n  # P(no value within edge of an end) = exp(-20)
    assert x.max() > irange - edge and x.min() < -irange + edge, (x.min(), x.max(), irange)
    assert abs(x.mean()) < SIGMAS * irange / math.sqrt(3 * n), x.mean()
    var = np.mean(x**2)
    assert abs(var - irange**2 / 3) < SIGMAS * math.sqrt(4 * irange**4 / 45 / n), (var, irange**2 / 3)


def assert_normal(x_t: torch.Tensor, std: float) -> None:
    """``x_t``'s values are i.i.d. N(0, std²): mean 0, variance std² (the variance of X² is 2·std⁴)
    and mean absolute value std·√(2/π) (which tells a normal from a uniform of the same variance)."""
    x = _values(x_t)
    n = x.size
    assert abs(x.mean()) < SIGMAS * std / math.sqrt(n), x.mean()
    var = np.mean(x**2)
    assert abs(var - std**2) < SIGMAS * std**2 * math.sqrt(2 / n), (var, std**2)
    mad = np.mean(np.abs(x))
    assert abs(mad - std * math.sqrt(2 / math.pi)) < SIGMAS * std * math.sqrt((1 - 2 / math.pi) / n), mad


def assert_sparse_rows(w: torch.Tensor, count: int, std: float) -> None:
    """Every row of ``w`` has exactly ``count`` non-zeros, N(0, std²), at places spread evenly over
    the columns: each column's count, Binomial(rows, count/columns), within the bounds that all
    columns together leave with probability below 1e-6 (Bonferroni)."""
    x = w.detach().numpy().astype(np.float64)
    rows, cols = x.shape
    nonzero = x != 0
    assert (nonzero.sum(axis=1) == count).all(), nonzero.sum(axis=1)
    assert_normal(torch.from_numpy(x[nonzero]), std)
    per_column = nonzero.sum(axis=0)
    tail = 1e-6 / (2 * cols)
    low, high = binom.ppf(tail, rows, count / cols), binom.isf(tail, rows, count / cols)
    assert low <= per_column.min() and per_column.max() <= high, (low, high, per_column)
