"""linpath.estimate: the predicted time of a line sweep (python/linpath/estimate.py)."""

import io
import time

import numpy as np
import pytest
import torch
from torch import nn

import linpath
from linpath.engines import EstimatedBar
from linpath.estimate import LARGE, MIN_PER_POINT, SMALL, Estimate, fit_cost, sub_grid
from linpath.models import MLP

GRID = np.linspace(-0.5, 1.5, 41)
ATTEMPTS, TOLERANCE = 3, 0.5


@pytest.fixture
def one_thread():
    """One torch thread: on a machine whose cores other work keeps busy, two threads that wait on
    each other make single sweeps up to 10x slower at random, which no estimate can predict."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def data(n=4000, width=64, classes=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, width, generator=g), torch.randint(0, classes, (n,), generator=g)


def sequential(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


def module_line():
    """A plain nn.Sequential and two state_dicts (the module engine)."""
    net = sequential()
    start = {k: v.clone() for k, v in net.state_dict().items()}
    end = {k: v.clone() for k, v in sequential(1).state_dict().items()}
    return net, start, end


def assert_predicts(model, start, end, pair, engine, **kwargs):
    """The estimate is within TOLERANCE of the measured sweep at one of ATTEMPTS tries (each an
    estimate, then the sweep it predicts): the machine is shared, so one try may be disturbed."""
    tries = []
    for _ in range(ATTEMPTS):
        guess = linpath.estimate(model, start, end, pair, alphas=GRID, **kwargs)
        t0 = time.perf_counter()
        linpath.interpolate(model, start, end, pair, alphas=GRID, progress=False, **kwargs)
        tries.append((guess.seconds, time.perf_counter() - t0))
        assert guess.engine == engine and guess.points == len(GRID)
        assert [p for p, _ in guess.timed] == [SMALL, LARGE]
        if abs(guess.seconds - tries[-1][1]) <= TOLERANCE * tries[-1][1]:
            return
    pytest.fail(f"no estimate within {TOLERANCE:.0%} of the sweep: (predicted, measured) = {tries}")


def test_estimate_predicts_a_native_mlp_sweep(one_thread):
    start, end = MLP((64, 256, 256, 10), seed=1), MLP((64, 256, 256, 10), seed=2)
    assert_predicts(start, start, end, data(), "native", batch_size=1000)


def test_estimate_predicts_a_module_sweep_of_a_plain_sequential(one_thread):
    assert_predicts(*module_line(), data(), "module", metrics=("loss",))


def test_fit_cost_is_exact_for_times_on_a_line():
    assert fit_cost([(4, 1.2 + 0.1 * 4), (12, 1.2 + 0.1 * 12)]) == pytest.approx((1.2, 0.1))
    assert fit_cost([(1, 5.0), (2, 7.0), (5, 13.0)]) == pytest.approx((3.0, 2.0))
    assert fit_cost([(4, 0.4), (12, 1.2)]) == pytest.approx((0.0, 0.1), abs=1e-12)


def test_fit_cost_keeps_the_fixed_cost_non_negative_and_the_per_point_cost_positive():
    # A negative intercept: a = 0 and b the least-squares slope through the origin.
    a, b = fit_cost([(4, 0.2), (12, 1.4)])
    assert a == 0.0 and b == pytest.approx((4 * 0.2 + 12 * 1.4) / (4**2 + 12**2))
    # The larger run no slower: b is the floor, a the mean time left over.
    assert fit_cost([(4, 1.0), (12, 0.8)]) == pytest.approx((0.9 - 8 * MIN_PER_POINT, MIN_PER_POINT))
    assert fit_cost([(4, 0.0), (12, 0.0)]) == (0.0, MIN_PER_POINT)
    # One timing (a grid timed whole): all of it per point.
    assert fit_cost([(8, 2.0)]) == (0.0, 0.25)


@pytest.mark.parametrize(
    "timed", [[], [(0, 1.0)], [(float("nan"), 1.0)], [(4, -1.0)], [(4, float("nan"))], [(4, float("inf"))]]
)
def test_fit_cost_refuses_timings_that_are_not_timings(timed):
    with pytest.raises(ValueError, match="timings must be"):
        fit_cost(timed)


def test_sub_grid_takes_points_evenly_with_both_ends():
    grid = np.array([0.3, -1.0, 2.0, 0.0, 1.0, 0.5, 0.7])
    np.testing.assert_array_equal(sub_grid(grid, 1), [0.3])
    np.testing.assert_array_equal(sub_grid(grid, 4), [0.3, 2.0, 1.0, 0.7])
    assert sub_grid(grid, 7) is grid and sub_grid(grid, 12) is grid
    assert len(sub_grid(np.linspace(0, 1, 101), LARGE)) == LARGE


def test_a_grid_of_at_most_large_points_is_timed_whole():
    net, start, end = module_line()
    x, y = data(200)
    guess = linpath.estimate(net, start, end, (x, y), alphas=np.linspace(0, 1, LARGE))
    assert len(guess.timed) == 1 and guess.timed[0][0] == LARGE
    assert guess.seconds == pytest.approx(guess.timed[0][1]) and guess.fixed == 0.0
    assert str(guess).endswith(f"for {LARGE} α (the whole grid was timed)")


def test_estimate_reads_as_a_sentence():
    guess = Estimate(12.34, 101, 0.11, 1.23, ((4, 1.67), (12, 2.55)), "native")
    assert str(guess) == "about 12.3 s for 101 α (0.11 s per α + 1.23 s fixed; from timed runs of 4 and 12 α)"
    assert "0.5 ms per α + 0 s fixed" in str(Estimate(0.05, 100, 5e-4, 0.0, ((4, 0.002), (12, 0.006))))
    assert str(Estimate(1234.0, 10, 123.4, 0.0, ((10, 1234.0),))) == (
        "about 1234 s for 10 α (the whole grid was timed)"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alphas": []}, "alpha grid is empty"),
        ({"alphas": [0.0, float("nan")]}, "not finite"),
        ({"checkpoint": "sweep.lpt"}, "does not take checkpoint="),
        ({"distributed": True}, "does not take distributed=True"),
    ],
)
def test_estimate_refuses_what_it_cannot_estimate(kwargs, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    net, start, end = module_line()
    with pytest.raises(ValueError, match=message):
        linpath.estimate(net, start, end, data(50), **kwargs)
    assert not list(tmp_path.iterdir())  # nothing written, no checkpoint file begun


def test_estimate_leaves_the_model_as_it_was():
    net, start, end = module_line()
    net.train()
    net[2].weight.requires_grad_(False)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    guess = linpath.estimate(net, start, end, data(300), alphas=GRID, batch_size=100)
    assert guess.seconds > 0 and guess.per_point > 0 and guess.fixed >= 0
    assert all(m.training for m in net.modules())
    assert [p.requires_grad for p in net.parameters()] == [True, True, False, True, True, True]
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_predict_is_the_fitted_line_at_any_number_of_points():
    guess = Estimate(12.34, 101, 0.11, 1.23, ((4, 1.67), (12, 2.55)), "native")
    assert guess.predict(101) == pytest.approx(1.23 + 0.11 * 101)
    assert guess.predict(7) == pytest.approx(1.23 + 0.77)


@pytest.mark.parametrize(
    ("n", "span", "left"),
    [
        (0, (0.0, 1.0), "20 s left"),
        (4, (0.0, 1.0), "12 s left"),
        (10, (0.0, 1.0), "0 s left"),
        (5, (0.5, 1.0), "5 s left"),
        (10, (0.0, 0.25), "15 s left"),
        (12, (0.0, 1.0), "0 s left"),
    ],
)
def test_estimated_bar_shows_the_prediction_and_what_is_left_of_it(n, span, left):
    out = io.StringIO()
    with EstimatedBar(total=10, predicted=20.0, span=span, file=out, mininterval=0) as bar:
        bar.update(n)
        assert f"estimate 20 s, {left}]" in str(bar)
        assert f" {n}/" in str(bar) and "it/s" in str(bar)  # tqdm's own fields are still there


@pytest.mark.parametrize("engine", ["native", "module"])
def test_a_sweep_given_its_estimate_shows_it_on_its_bar(engine, capsys):
    if engine == "native":
        start, end = MLP((64, 32, 10), seed=1), MLP((64, 32, 10), seed=2)
        model, kwargs = start, {}
    else:
        model, start, end = module_line()
        kwargs = {"metrics": ("loss",)}
    pair = data(300)
    guess = linpath.estimate(model, start, end, pair, alphas=GRID, **kwargs)
    capsys.readouterr()
    sweep = linpath.interpolate(model, start, end, pair, alphas=GRID, progress=guess, **kwargs)
    shown = capsys.readouterr().err
    assert sweep.meta["engine"] == engine
    assert f"estimate {guess.seconds:.3g} s" in shown and "s left]" in shown
    quiet = linpath.interpolate(model, start, end, pair, alphas=GRID, progress=False, **kwargs)
    assert np.array_equal(quiet.values["data"]["loss"], sweep.values["data"]["loss"], equal_nan=True)


def test_an_estimate_of_another_grid_is_rescaled_to_this_one(capsys):
    model, start, end = module_line()
    guess = Estimate(3.0, 10, 0.25, 0.5, ((4, 1.5), (12, 3.5)), "module")
    linpath.interpolate(model, start, end, data(50), alphas=GRID, progress=guess, metrics=("loss",))
    assert f"estimate {guess.predict(len(GRID)):.3g} s" in capsys.readouterr().err


@pytest.mark.parametrize("progress", ["yes", 1, 0.5])
def test_progress_that_is_not_a_flag_or_an_estimate_is_refused(progress):
    model, start, end = module_line()
    with pytest.raises(TypeError, match="progress must be True, False, None or a linpath.Estimate"):
        linpath.interpolate(model, start, end, data(50), alphas=GRID, progress=progress)


def test_a_resumable_sweep_given_an_estimate_shows_it_on_the_job_bar(tmp_path, capsys):
    model, start, end = module_line()
    guess = Estimate(3.0, 10, 0.25, 0.5, ((4, 1.5), (12, 3.5)), "module")
    path = tmp_path / "sweep.lpt"
    kwargs = {"alphas": GRID, "metrics": ("loss",), "checkpoint": path}
    sweep = linpath.interpolate(model, start, end, data(50), progress=guess, **kwargs)
    assert f"estimate {guess.predict(len(GRID)):.3g} s" in capsys.readouterr().err
    assert sweep.meta["job"]["computed_points"] == len(GRID)
