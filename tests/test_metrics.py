"""linpath.metrics and the Sweep methods behind it (Δ, bump, barrier, normalised distance), against
brute force over every pair of grid points and NumPy written out by hand."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import linpath
from linpath.metrics import COLUMNS, summary


def _sweep(alphas, loss, error=None, meta=None) -> linpath.Sweep:
    values = {"loss": np.asarray(loss, dtype=np.float64)}
    if error is not None:
        values["error"] = np.asarray(error, dtype=np.float64)
    return linpath.Sweep(np.asarray(alphas, dtype=np.float64), {"train": values}, meta)


def _brute_rise(alphas, v, low=0.0, high=1.0):
    """max over α < α′ in [low, high] of v(α′) − v(α), with the pair: every pair tried."""
    keep = [i for i in np.argsort(alphas, kind="stable") if low <= alphas[i] <= high]
    best, pair = 0.0, None
    for x in range(len(keep)):
        for y in range(x + 1, len(keep)):
            rise = v[keep[y]] - v[keep[x]]
            if rise > best:
                best, pair = rise, (alphas[keep[x]], alphas[keep[y]])
    return best, pair


@pytest.mark.parametrize("trial", range(40))
def test_delta_and_bump_equal_brute_force_over_every_pair(trial):
    rng = np.random.default_rng(int(np.random.SeedSequence().entropy % 2**32))
    n = int(rng.integers(2, 40))
    alphas = rng.permutation(np.concatenate([[0.0, 1.0], rng.uniform(-0.5, 1.5, n)]))
    # Rough series with ties (rounded) and a trend, so that rises of every size occur.
    v = np.round(rng.normal(size=alphas.size).cumsum() * rng.uniform(0.1, 2.0), int(rng.integers(0, 3)))
    sweep = _sweep(alphas, v)
    want, pair = _brute_rise(alphas, v)
    assert sweep.monotonicity_gap("train") == pytest.approx(want, abs=0, rel=1e-15)
    height, start, peak = sweep.bump("train")
    assert height == pytest.approx(want, abs=0, rel=1e-15)
    if pair is None:
        assert math.isnan(start) and math.isnan(peak)
    else:
        # the rise's end points hold the values of the best pair (ties may pick another pair)
        at = dict(zip(alphas.tolist(), v.tolist(), strict=True))
        assert start < peak and at[peak] - at[start] == pytest.approx(want, rel=1e-15)


def test_a_rise_on_the_last_interval_counts():
    """mli-release's loop misses a rise between the last two grid points; Δ must not."""
    sweep = _sweep(np.linspace(0, 1, 5), [4.0, 3.0, 2.0, 1.0, 1.5])
    assert sweep.monotonicity_gap("train") == 0.5
    assert sweep.bump("train") == (0.5, 0.75, 1.0)


def test_barriers_on_loss_and_error_by_hand():
    alphas = np.linspace(0, 1, 11)
    loss = 1.0 + np.sin(np.pi * alphas) + 0.3 * alphas
    error = 0.1 + 0.2 * np.sin(np.pi * alphas) ** 2
    sweep = _sweep(alphas, loss, error)
    assert sweep.barrier("train", "loss") == pytest.approx(np.max(loss - 0.5 * (loss[0] + loss[-1])))
    assert sweep.barrier("train", "loss", form="linear") == pytest.approx(
        np.max(loss - ((1 - alphas) * loss[0] + alphas * loss[-1]))
    )
    assert sweep.barrier("train", "error") == pytest.approx(np.max(error - 0.5 * (error[0] + error[-1])))


def test_normalized_distance_recorded_by_interpolate(make_mlp, make_data):
    a, b = make_mlp(0), make_mlp(1)
    x, y = make_data(64, 2)
    sweep = linpath.interpolate(a, a, b, (x, y), alphas=[0.0, 0.5, 1.0], progress=False)
    ta = np.concatenate([p.detach().double().numpy().ravel() for p in a.parameters()])
    tb = np.concatenate([p.detach().double().numpy().ravel() for p in b.parameters()])
    assert sweep.normalized_distance() == pytest.approx(
        np.linalg.norm(tb - ta) / np.linalg.norm(tb), rel=1e-12
    )
    with pytest.raises(ValueError, match="does not record the distance"):
        _sweep([0, 1], [1.0, 2.0]).normalized_distance()


def test_nan_on_the_interval_makes_every_metric_nan_with_a_warning():
    sweep = _sweep(np.linspace(0, 1, 5), [1.0, np.nan, 0.5, 0.4, 0.3])
    with pytest.warns(RuntimeWarning, match="NaN or infinite"):
        assert all(math.isnan(x) for x in sweep.bump("train"))
    row = summary({"s": sweep}).rows[0]
    assert math.isnan(row["delta_loss"]) and math.isnan(row["barrier_loss"])
    assert summary({"s": sweep}).to_dict()["rows"][0]["delta_loss"] is None


def test_summary_of_several_sweeps(make_mlp, make_data):
    a, b = make_mlp(0), make_mlp(1)
    x, y = make_data(64, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        line = linpath.interpolate(a, a, b, {"valid": (x, y)}, alphas=np.linspace(0, 1, 9), progress=False)
    outside = _sweep([-1.0, 2.0], [1.0, 2.0])  # no α = 0 or 1: no barrier, no Δ on [0, 1]
    got = summary({"line": line, "outside": outside})
    first = got.rows[0]
    assert first["name"] == "line" and first["split"] == "valid"
    assert first["delta_loss"] == line.monotonicity_gap("valid")
    assert first["barrier_error_linear"] == line.barrier("valid", "error", form="linear")
    assert first["normalized_distance"] == line.normalized_distance()
    assert got.rows[1]["barrier_loss"] is None and got.rows[1]["delta_error"] is None
    table = got.table().splitlines()
    assert len(table) == 4 and table[0].count("|") == len(COLUMNS) + 1 and "—" in table[3]
    with pytest.raises(ValueError, match="no split 'test'"):
        summary({"line": line}, split="test")
    with pytest.raises(TypeError, match="is a dict"):
        summary({"x": {}})


def test_metrics_along_a_curve_read_t_as_the_coordinate(make_mlp, make_data):
    """A curve's sweep (t on [0, 1]) gets the same metrics; an untrained quadratic Bezier lies on the
    segment, so its values at each t are the line's at α = t and so are its metrics."""
    a, b = make_mlp(0), make_mlp(1)
    x, y = make_data(64, 4)
    ts = np.linspace(0, 1, 9)
    curve = linpath.curves.bezier(
        a, a, b, (x, y), bends=1, epochs=0
    )  # the control point stays at the midpoint
    along = curve.evaluate(a, (x, y), ts=ts, progress=False)
    line = linpath.interpolate(a, a, b, (x, y), alphas=ts, progress=False)
    # the quadratic Bezier through the segment's midpoint is the segment traversed as 2t(1-t)/2 + t^2 = t
    rows = summary({"curve": along, "line": line}).rows
    for key in ("delta_loss", "barrier_loss", "barrier_loss_linear", "barrier_error", "normalized_distance"):
        assert rows[0][key] == pytest.approx(rows[1][key], rel=1e-5, abs=1e-7), key
