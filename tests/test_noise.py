"""The paired bootstrap's noise floor, Δ and the claims read against it (experiments/noise.py),
checked against slow, obvious float64 references on fresh random inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import linpath
from linpath.experiments import noise
from linpath.experiments.findings import NOISE_FLOOR
from linpath.models import MLP, MPDBM, ConvMaxout

# ----------------------------------------------------------------------------- references


def slow_bootstrap_tau(losses: np.ndarray, n_boot: int, seed: int, level: float) -> float:
    """τ by explicit loops over resamples, draws, units and every pair of grid points (float64),
    drawing the indices by the documented protocol."""
    cube = losses if losses.ndim == 3 else losses[None]
    draws, units, points = cube.shape
    rng = np.random.default_rng(seed)
    picked_draws = rng.integers(0, draws, (n_boot, draws)) if losses.ndim == 3 else np.zeros((n_boot, 1), int)
    picked_units = rng.integers(0, units, (n_boot, units))
    observed = [
        sum(float(cube[d, i, k]) for d in range(draws) for i in range(units)) / (draws * units)
        for k in range(points)
    ]
    rises = []
    for b in range(n_boot):
        cells = [(d, i) for d in picked_draws[b] for i in picked_units[b]]
        curve = [sum(float(cube[d, i, k]) for d, i in cells) / len(cells) for k in range(points)]
        errors = [curve[k] - observed[k] for k in range(points)]
        best = 0.0
        for k in range(points):
            for k2 in range(k + 1, points):
                best = max(best, errors[k2] - errors[k])
        rises.append(best)
    return float(np.quantile(np.array(rises), level))


def brute_delta(alphas: np.ndarray, curve: np.ndarray, low: float, high: float) -> float:
    inside = [(a, j) for a, j in sorted(zip(alphas, curve, strict=True)) if low <= a <= high]
    best = 0.0
    for p in range(len(inside)):
        for q in range(p + 1, len(inside)):
            best = max(best, inside[q][1] - inside[p][1])
    return best


def smooth_curve(alphas: np.ndarray, bump: float = 0.0) -> np.ndarray:
    """A decreasing curve with an optional Gaussian bump of height ``bump`` at α = 0.5."""
    return 2.0 * np.exp(-2.0 * alphas) + bump * np.exp(-(((alphas - 0.5) / 0.04) ** 2))


def noisy_units(alphas: np.ndarray, units: int, sigma: float, rng: np.random.Generator, bump: float = 0.0):
    return smooth_curve(alphas, bump)[None, :] + sigma * rng.standard_normal((units, len(alphas)))


def slow_floor(losses: np.ndarray, n_boot: int, seed: int, level: float) -> float:
    """The slow τ, never below float32 rounding: NOISE_FLOOR times the curve's largest |J|."""
    curve = np.asarray(losses, dtype=np.float64).reshape(-1, np.shape(losses)[-1]).mean(0)
    return max(slow_bootstrap_tau(losses, n_boot, seed, level), NOISE_FLOOR * float(np.abs(curve).max()))


# ----------------------------------------------------------------------------- the bootstrap


@pytest.mark.parametrize("shape", [(7, 9), (3, 6, 8), (1, 5, 6), (2, 2)])
def test_tau_matches_the_slow_reference(shape):
    rng = np.random.default_rng()
    losses = rng.standard_normal(shape) * rng.uniform(0.1, 2.0) + rng.uniform(-1, 1)
    seed, level = int(rng.integers(0, 2**31)), float(rng.uniform(0.5, 0.99))
    boot = noise.paired_bootstrap(losses, n_boot=60, seed=seed, level=level)
    assert boot.tau == pytest.approx(slow_floor(losses, 60, seed, level), rel=1e-10, abs=1e-12)
    again = noise.paired_bootstrap(losses, n_boot=60, seed=seed, level=level)
    assert again.tau == boot.tau and np.array_equal(again.resampled, boot.resampled)
    np.testing.assert_allclose(boot.curve, losses.reshape(-1, shape[-1]).mean(0), rtol=1e-12)
    points = rng.random(shape[-1]) < 0.7
    if points.sum() >= 2:  # the floor over some grid points: the same resamples, fewer columns
        slow = slow_floor(losses[..., points], 60, seed, level)
        assert boot.floor(points=points) == pytest.approx(slow, rel=1e-10, abs=1e-12)
    other = noise.paired_bootstrap(losses, n_boot=60, seed=seed + 1, level=level)
    assert not np.array_equal(other.resampled, boot.resampled)


def test_resampling_is_paired_and_counts_draws_and_units():
    """Resampled curves are averages of whole rows: a loss matrix whose rows are constant shifts of one
    curve gives resampled curves that are the same curve shifted (the shape never changes)."""
    rng = np.random.default_rng()
    base = rng.standard_normal(11)
    losses = base[None, None, :] + rng.standard_normal((3, 5, 1))
    boot = noise.paired_bootstrap(losses, n_boot=40, seed=3)
    shifts = boot.resampled - base[None, :]
    np.testing.assert_allclose(shifts, shifts[:, :1].repeat(11, axis=1), atol=1e-12)
    rises = boot.spurious_rises()
    assert rises == pytest.approx(np.zeros_like(rises), abs=1e-12)  # paired: shifts create no rise
    assert boot.tau == pytest.approx(NOISE_FLOOR * np.abs(boot.curve).max())  # only rounding is left
    assert (boot.units, boot.draws, boot.n_boot) == (5, 3, 40)


def test_tau_matches_the_noise_it_is_given():
    """Per-unit Gaussian noise of known σ: the bootstrap's τ is near the 95% quantile of the largest
    rise of K independent N(0, σ²/units) deviations (simulated directly)."""
    rng = np.random.default_rng()
    alphas, units, sigma = np.linspace(0, 1, 30), 200, rng.uniform(0.05, 0.5)
    boot = noise.paired_bootstrap(
        noisy_units(alphas, units, sigma, rng), n_boot=1000, seed=int(rng.integers(1e9))
    )
    e = rng.standard_normal((4000, len(alphas))) * sigma / np.sqrt(units)
    rises = np.maximum((e[:, 1:] - np.minimum.accumulate(e[:, :-1], axis=1)).max(axis=1), 0)
    expected = np.quantile(rises, 0.95)
    assert 0.75 * expected < boot.tau < 1.3 * expected


def test_a_planted_bump_above_tau_is_found_and_one_far_below_is_not():
    rng = np.random.default_rng()
    alphas, units, sigma = np.linspace(0, 1, 41), 100, 0.02  # noise well below the drop per step
    tau = noise.paired_bootstrap(noisy_units(alphas, units, sigma, rng), seed=1).tau
    assert tau < 0.05  # so the bump of 0.5 stands ten times above it (and above the base curve's slope)
    high = noise.paired_bootstrap(noisy_units(alphas, units, sigma, rng, bump=0.5), seed=2)
    found = noise.noise_findings(alphas, high, examples=units)
    assert not found["monotone"] and found["delta"] > found["tau"]
    assert found["rise_persistence"] > 0.99 and 0.4 <= found["rise_peak"] <= 0.6
    assert any(0.4 < m["alpha"] < 0.5 for m in found["minima_above_noise"])
    assert found["text"].startswith(f"Δ = {found['delta']:.3g} > τ = {found['tau']:.3g} (95% bootstrap floor")
    low = noise.paired_bootstrap(noisy_units(alphas, units, sigma, rng, bump=0.01 * tau), seed=3)
    quiet = noise.noise_findings(alphas, low)
    assert quiet["monotone"] and not quiet["minima_above_noise"]
    assert noise.monotone_within_noise(alphas, low.curve, low.tau)


def test_delta_is_the_brute_force_largest_rise():
    rng = np.random.default_rng()
    for _ in range(20):
        alphas = rng.permutation(np.concatenate(([0.0, 1.0], rng.uniform(-0.5, 1.5, 15))))
        curve = rng.standard_normal(len(alphas))
        low, high = sorted(rng.uniform(-0.5, 1.5, 2))
        if ((alphas >= low) & (alphas <= high)).sum() >= 2:
            assert noise.delta(alphas, curve, (low, high)) == pytest.approx(
                brute_delta(alphas, curve, low, high)
            )
        assert noise.delta(alphas, curve) == pytest.approx(brute_delta(alphas, curve, 0.0, 1.0))


def test_minima_above_noise_use_prominence_against_tau():
    alphas = np.linspace(0, 1, 7)
    curve = np.array([3.0, 2.0, 1.0, 1.5, 0.9, 0.95, 0.5])  # minima at α=1/3 (prominence .5), 2/3 (.05)
    assert [m["alpha"] for m in noise.local_minima_above_noise(alphas, curve, 0.1)] == [alphas[2]]
    assert len(noise.local_minima_above_noise(alphas, curve, 0.01)) == 2
    assert noise.local_minima_above_noise(alphas, curve, 0.6) == []


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("losses", "kwargs", "message"),
    [
        (np.ones((1, 5)), {}, "at least 2 units"),
        (np.ones((4, 1)), {}, "2 grid points"),
        (np.ones(5), {}, r"\[units, K\]"),
        (np.array([[1.0, np.nan, 2.0], [1.0, 1.0, 1.0]]), {}, "unit 0, grid point 1"),
        (np.array([[1.0, 1.0], [1.0, np.inf]]), {}, "unit 1, grid point 1"),
        (np.ones((3, 2, 4)), {"n_boot": 0}, "n_boot must be at least 1"),
        (np.ones((3, 4)), {"level": 1.0}, r"level is a quantile and must lie in \(0, 1\)"),
        (np.ones((3, 4)), {"level": 0.0}, r"level is a quantile"),
    ],
)
def test_bad_input_is_refused_clearly(losses, kwargs, message):
    with pytest.raises(ValueError, match=message):
        noise.paired_bootstrap(losses, **kwargs)


def test_nan_curves_and_mismatched_alphas_are_refused():
    alphas = np.linspace(0, 1, 5)
    with pytest.raises(ValueError, match="NaN or infinite at α=0.75"):
        noise.delta(alphas, [1.0, 0.5, 0.4, np.nan, 0.2])
    with pytest.raises(ValueError, match="same length"):
        noise.delta(alphas, np.ones(4))
    boot = noise.paired_bootstrap(np.random.default_rng().standard_normal((4, 6)), n_boot=5)
    with pytest.raises(ValueError, match="same length"):
        noise.noise_findings(alphas, boot)
    with pytest.raises(ValueError, match="tau"):
        noise.monotone_within_noise(alphas, np.ones(5), -1.0)


# ----------------------------------------------------------------------------- block_losses


def _line(model: torch.nn.Module):
    start = {k: v.clone() for k, v in model.state_dict().items()}
    end = {k: v + 0.2 * torch.randn_like(v) for k, v in start.items()}
    return start, end


TINY_CONV = {
    "input_shape": (3, 9, 9),
    "channels": (4, 6),
    "kernels": (3, 3),
    "paddings": (1, 1),
    "pools": (2, 2),
    "pool_strides": (2, 2),
    "fc_units": 8,
    "fc_pieces": 3,
    "classes": 5,
}


@pytest.mark.parametrize(
    "make",
    [
        lambda: (MLP([10, 7, 3]), torch.randn(43, 10), torch.randint(0, 3, (43,))),
        lambda: (
            torch.nn.Sequential(torch.nn.Linear(10, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)),
            torch.randn(43, 10),
            torch.randint(0, 3, (43,)),
        ),
        lambda: (ConvMaxout(**TINY_CONV), torch.randn(23, 3, 9, 9), torch.randint(0, 5, (23,))),
    ],
    ids=["MLP", "nn.Module", "ConvMaxout"],
)
def test_block_means_average_to_the_sweep_on_the_rows_used(make):
    model, X, Y = make()
    start, end = _line(model)
    alphas = np.linspace(-0.5, 1.5, 6)
    grid, losses = noise.block_losses(model, start, end, alphas, X, Y, blocks=5, progress=False)
    used = len(X) // 5 * 5  # the remainder rows are dropped
    whole = linpath.interpolate(model, start, end, (X[:used], Y[:used]), alphas=alphas, progress=False)
    assert losses.shape == (5, 6) and losses.dtype == np.float64
    np.testing.assert_allclose(grid, whole.alphas)
    np.testing.assert_allclose(losses.mean(0), whole.values["data"]["loss"], rtol=1e-6, atol=1e-6)
    one = linpath.interpolate(
        model, start, end, (X[: used // 5], Y[: used // 5]), alphas=alphas, progress=False
    )
    np.testing.assert_allclose(losses[0], one.values["data"]["loss"], rtol=1e-6)


def test_mpdbm_blocks_restart_the_mask_rows_and_draws_differ():
    """Each block is its own split, so its masks are those of rows 0.. of a sweep over that block
    alone; other eval seeds give other masks, hence the [draws, blocks, K] bootstrap."""
    model = MPDBM(n_visible=12, n_hidden1=8, n_hidden2=6, n_classes=3, mf_steps=3)
    X, Y = torch.rand(24, 12), torch.randint(0, 3, (24,))
    start, end = _line(model)
    alphas = np.linspace(0, 2, 5)
    _, losses = noise.block_losses(model, start, end, alphas, X, Y, blocks=3, progress=False)
    for b in range(3):
        alone = linpath.interpolate(
            model, start, end, (X[8 * b : 8 * b + 8], Y[8 * b : 8 * b + 8]), alphas=alphas, progress=False
        )
        np.testing.assert_allclose(losses[b], alone.values["data"]["loss"], rtol=1e-6)
    _, draws = noise.mask_draw_losses(model, start, end, alphas, X, Y, seeds=[0, 7], blocks=3, progress=False)
    assert draws.shape == (2, 3, 5)
    np.testing.assert_allclose(draws[0], losses, rtol=1e-6)
    assert not np.allclose(draws[1], losses)
    boot = noise.paired_bootstrap(draws, n_boot=50)
    assert boot.draws == 2 and boot.units == 3


def test_block_losses_refuses_too_few_rows_or_blocks():
    model = MLP([4, 3])
    X, Y = torch.randn(5, 4), torch.randint(0, 3, (5,))
    start, end = _line(model)
    with pytest.raises(ValueError, match="blocks must be at least 2"):
        noise.block_losses(model, start, end, [0.0, 1.0], X, Y, blocks=1)
    with pytest.raises(ValueError, match="need at least 6 rows"):
        noise.block_losses(model, start, end, [0.0, 1.0], X, Y, blocks=6)
    with pytest.raises(ValueError, match="Y has 4"):
        noise.block_losses(model, start, end, [0.0, 1.0], X, Y[:4], blocks=2)
    with pytest.raises(TypeError, match="MP-DBM"):
        noise.mask_draw_losses(model, start, end, [0.0, 1.0], X, Y, seeds=[0], blocks=2)


def test_findings_take_the_bootstrap_floor():
    """minima_of / maxima_of with tau call features above noise exactly as noise's helpers do."""
    from linpath.experiments.findings import maxima_of, minima_of

    rng = np.random.default_rng()
    alphas = np.linspace(0, 1, 31)
    curve = smooth_curve(alphas) + 0.05 * rng.standard_normal(31)
    sweep = linpath.Sweep(alphas, {"train": {"loss": curve}})
    tau = float(rng.uniform(0.01, 0.08))
    above = [m["alpha"] for m in minima_of(sweep, "train", "loss", None, tau=tau) if m["above_noise"]]
    assert above == [m["alpha"] for m in noise.local_minima_above_noise(alphas, curve, tau)]
    bumps = maxima_of(sweep, "train", "loss", None, tau=tau)
    assert [b["above_noise"] for b in bumps] == [b["prominence"] > tau for b in bumps]
    default = minima_of(sweep, "train", "loss", None)  # without tau: the float32 floor, unchanged
    assert all(m["above_noise"] for m in default)


def test_delta_is_judged_against_the_floor_of_its_own_interval():
    """Noise in the extrapolation (α > 1, large here) raises the whole grid's floor, not Δ's."""
    rng = np.random.default_rng()
    alphas = np.linspace(0, 2, 41)
    spread = np.where(alphas > 1, 1.0, 0.01)
    boot = noise.paired_bootstrap(smooth_curve(alphas) + spread * rng.standard_normal((60, 41)), n_boot=300)
    found = noise.noise_findings(alphas, boot)
    assert found["tau"] == boot.floor(points=alphas <= 1) and found["tau_grid"] == boot.tau
    assert found["tau"] < 0.1 * found["tau_grid"]
    with pytest.raises(ValueError, match="at least 2 grid point"):
        noise.noise_findings(alphas, boot, interval=(3.0, 4.0))


def test_the_floor_never_drops_below_float32_rounding_on_a_flat_curve():
    """A model that predicts the same for every example gives identical blocks: the resampled curves
    agree exactly, but a wiggle of a few float32 ulps is rounding, not a barrier (seen on the
    plateau of the conv net initialised at ±0.0005: a 6e-7 bump on J = 2.3026)."""
    rng = np.random.default_rng(11)
    curve = np.full(41, np.log(10.0)) + rng.normal(0, 2e-7, 41)
    curve[5] += 6e-7  # a rounding-sized bump
    losses = np.tile(curve, (20, 1))
    boot = noise.paired_bootstrap(losses, n_boot=200, seed=3)
    assert boot.tau == pytest.approx(NOISE_FLOOR * np.abs(curve).max())
    alphas = np.linspace(0, 1, 41)
    assert noise.local_minima_above_noise(alphas, curve, boot.tau) == []
    assert noise.noise_findings(alphas, boot)["monotone"]
