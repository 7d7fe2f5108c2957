"""linpath.lap.linear_sum_assignment against scipy.optimize.linear_sum_assignment (src/lap.rs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment as scipy_lsa

from linpath.lap import linear_sum_assignment


def _fresh_seed() -> int:
    return int(np.random.SeedSequence().entropy % 2**32)


def _shape(case: int, rng: np.random.Generator) -> tuple[int, int]:
    """Most cases small, a few up to 2,048; a third rectangular (wide and tall)."""
    if case < 2:
        return (2048, 2048) if case == 0 else (1536, 2048)
    n = int(rng.integers(256, 1025)) if case < 10 else int(rng.integers(1, 129))
    if case % 3 == 0:
        return n, n
    m = int(rng.integers(1, 2 * n + 2))
    return (n, m) if case % 3 == 1 else (m, n)


def _matrix(case: int, rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, bool, bool]:
    """(cost, maximize, integer-valued): uniform or small-integer costs (many ties), some with
    forbidden entries placed so that a complete assignment of finite cost remains."""
    integers = case % 2 == 1
    maximize = case % 5 == 4
    cost = (
        rng.integers(0, int(rng.integers(2, 6)), shape).astype(float) if integers else rng.normal(size=shape)
    )
    if case % 4 >= 2:
        forbid = rng.random(shape) < rng.uniform(0.1, 0.6)
        k = min(shape)
        keep_rows, keep_cols = rng.permutation(shape[0])[:k], rng.permutation(shape[1])[:k]
        forbid[keep_rows, keep_cols] = False
        cost[forbid] = -np.inf if maximize else np.inf
    return cost, maximize, integers


def _check_valid(cost: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> None:
    k = min(cost.shape)
    assert rows.dtype == np.int64 and cols.dtype == np.int64
    assert rows.shape == cols.shape == (k,)
    assert np.all(np.diff(rows) > 0), "rows not ascending and distinct"
    assert len(set(cols.tolist())) == k, "a column is used twice"
    assert np.all(np.isfinite(cost[rows, cols])), "a forbidden entry is used"


@pytest.mark.parametrize("case", range(200))
def test_total_equals_scipys_optimum(case):
    seed = _fresh_seed()
    rng = np.random.default_rng(seed)
    cost, maximize, integers = _matrix(case, rng, _shape(case, rng))
    rows, cols = linear_sum_assignment(cost, maximize=maximize)
    _check_valid(cost, rows, cols)
    r, c = scipy_lsa(cost, maximize=maximize)
    got, want = cost[rows, cols].sum(), cost[r, c].sum()
    if integers:
        assert got == want, f"seed {seed}, shape {cost.shape}"
    else:
        assert got == pytest.approx(want, rel=1e-12, abs=1e-12), f"seed {seed}, shape {cost.shape}"


def test_hand_cases_and_scipys_choices():
    cost = np.array([[4.0, 1, 3], [2, 0, 5], [3, 2, 2]])
    rows, cols = linear_sum_assignment(cost)
    assert rows.tolist() == [0, 1, 2] and cols.tolist() == [1, 0, 2]
    assert linear_sum_assignment(np.full((4, 6), 3.0))[1].tolist() == [0, 1, 2, 3]
    rows, cols = linear_sum_assignment(np.array([[3.0], [1.0], [2.0]]))
    assert (rows.tolist(), cols.tolist()) == ([1], [0])
    rows, cols = linear_sum_assignment(np.array([[3.0], [1.0], [2.0]]), maximize=True)
    assert (rows.tolist(), cols.tolist()) == ([0], [0])
    for shape in [(0, 0), (0, 3), (3, 0)]:
        rows, cols = linear_sum_assignment(np.zeros(shape))
        assert rows.shape == cols.shape == (0,) and rows.dtype == np.int64


def test_inputs_of_every_kind_give_the_same_assignment():
    rng = np.random.default_rng(_fresh_seed())
    cost = rng.normal(size=(40, 60))
    want = scipy_lsa(cost)
    fortran, strided = np.asfortranarray(cost), np.repeat(cost, 2, axis=1)[:, ::2]
    for same in [cost, fortran, strided, cost.tolist(), torch.from_numpy(cost), torch.from_numpy(cost).T.T]:
        rows, cols = linear_sum_assignment(same)
        assert (rows.tolist(), cols.tolist()) == (want[0].tolist(), want[1].tolist())
    ints = rng.integers(0, 5, (30, 30))
    assert linear_sum_assignment(ints)[1].tolist() == scipy_lsa(ints)[1].tolist()
    small = torch.from_numpy(cost).float()
    rows, cols = linear_sum_assignment(small, maximize=True)
    assert cost[rows, cols].sum() == pytest.approx(
        cost[scipy_lsa(small.double().numpy(), True)].sum(), rel=1e-12
    )
    assert linear_sum_assignment(small.to(torch.bfloat16))[0].shape == (40,)
    if torch.cuda.is_available():
        rows, cols = linear_sum_assignment(small.double().cuda())
        assert cols.tolist() == scipy_lsa(small.double().numpy())[1].tolist()


@pytest.mark.parametrize(
    ("cost", "maximize", "message"),
    [
        (np.array([[1.0, np.nan], [0.0, 1.0]]), False, r"NaN \(at row 0, column 1\)"),
        (np.array([[np.inf, 1.0], [np.inf, 2.0]]), False, "cost matrix is infeasible"),
        (np.array([[-np.inf, 0.0], [-np.inf, 1.0], [-np.inf, 2.0]]), True, "cost matrix is infeasible"),
        (np.array([[1.0, -np.inf]]), False, r"-inf \(at row 0, column 1\).*use \+inf"),
        (np.array([[1.0, np.inf]]), True, r"\+inf \(at row 0, column 1\).*use -inf"),
        (np.ones(3), False, "2-D matrix, got 1 dimensions"),
        (np.ones((2, 2, 2)), False, "2-D matrix, got 3 dimensions"),
        (torch.tensor([[0.0, float("nan")]]), False, "NaN"),
    ],
)
def test_bad_values_are_value_errors(cost, maximize, message):
    with pytest.raises(ValueError, match=message):
        linear_sum_assignment(cost, maximize=maximize)


@pytest.mark.parametrize(
    "cost",
    [
        np.ones((2, 2), dtype=complex),
        np.ones((2, 2), dtype=bool),
        np.array([["a", "b"]]),
        np.array([[object()]]),
        torch.ones(2, 2, dtype=torch.complex64),
        torch.ones(2, 2, dtype=torch.bool),
    ],
)
def test_wrong_types_are_type_errors(cost):
    with pytest.raises(TypeError, match="real"):
        linear_sum_assignment(cost)


def test_maximize_must_be_a_bool():
    with pytest.raises(TypeError, match="maximize must be a bool"):
        linear_sum_assignment(np.ones((2, 2)), maximize="yes")
