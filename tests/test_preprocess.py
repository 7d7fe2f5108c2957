"""linpath.preprocess: GCN and ZCA against NumPy float64 references written from the formulas,
and the seeded binarisation."""

import numpy as np
import pytest
import torch

from linpath.preprocess import ZCA, binarize, gcn


def fresh(seed=None):
    return np.random.default_rng(seed)


def gcn_reference(x, scale=55.0, subtract_mean=True, use_std=False, sqrt_bias=0.0, min_divisor=1e-8):
    """pylearn2's global_contrast_normalize, one example at a time in float64."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    out = np.empty_like(x)
    for i, row in enumerate(x):
        d = len(row)
        centred = row - sum(row) / d if subtract_mean else row.copy()
        if use_std:
            ddof = 1 if d > 1 else 0
            spread = sum((v - sum(centred) / d) ** 2 for v in centred) / (d - ddof)
        else:
            spread = sum(v * v for v in centred)
        divisor = np.sqrt(sqrt_bias + spread) / scale
        out[i] = centred / (1.0 if divisor < min_divisor else divisor)
    return out


def zca_reference(x_train, filter_bias=0.1, n_components=None):
    """pylearn2's ZCA.fit in float64: mean, covariance / n, eigh, P = Σ v vᵀ / sqrt(λ + b)."""
    x = np.asarray(x_train, dtype=np.float64).reshape(len(x_train), -1)
    n, d = x.shape
    mean = x.sum(axis=0) / n
    cov = np.zeros((d, d))
    for row in x:
        cov += np.outer(row - mean, row - mean)
    eigenvalues, vectors = np.linalg.eigh(cov / n + filter_bias * np.eye(d))
    keep = range(d - (n_components or d), d)
    whitener = sum(np.outer(vectors[:, k], vectors[:, k]) / np.sqrt(eigenvalues[k]) for k in keep)
    return mean, whitener, cov / n


def random_design(rng, n, d):
    """Correlated features with unequal scales and offsets (like pixels of natural images). The mixing
    is a random rotation of scales in [0.1, 3], so the covariance's condition number stays below
    about 900: a fresh Gaussian mixing matrix is now and then nearly singular, and float64 whitening
    then loses digits in proportion (once in CI: 2.8e-8 off where the tests allow 1e-9)."""
    rotation, _ = np.linalg.qr(rng.normal(size=(d, d)))
    mixing = rotation * rng.uniform(0.1, 3.0, size=d)
    return rng.normal(size=(n, d)) @ mixing + rng.uniform(-5, 5, size=d)


# --- GCN ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"subtract_mean": False},
        {"use_std": True},
        {"use_std": True, "sqrt_bias": 10.0, "scale": 1.0},
        {"sqrt_bias": 3.0, "scale": 2.5},
    ],
)
def test_gcn_matches_the_float64_reference(options):
    rng = fresh()
    x = rng.normal(size=(9, 37)) * rng.uniform(0.1, 50, size=(9, 1)) + rng.uniform(-20, 20, size=(9, 1))
    got = gcn(torch.from_numpy(x), **options)
    assert got.dtype == torch.float64 and got.shape == x.shape
    np.testing.assert_allclose(got.numpy(), gcn_reference(x, **options), rtol=1e-12, atol=1e-12)


def test_gcn_makes_each_example_mean_zero_and_norm_or_std_scale():
    rng = fresh()
    x = torch.from_numpy(rng.uniform(0, 1, size=(50, 3, 8, 8)))
    by_norm = gcn(x).reshape(50, -1)
    np.testing.assert_allclose(by_norm.mean(dim=1).numpy(), 0.0, atol=1e-12)
    np.testing.assert_allclose(by_norm.norm(dim=1).numpy(), 55.0, rtol=1e-12)
    by_std = gcn(x, scale=2.0, use_std=True).reshape(50, -1)
    np.testing.assert_allclose(by_std.std(dim=1).numpy(), 2.0, rtol=1e-12)  # ddof 1, as pylearn2


def test_gcn_flattens_images_per_example_keeps_their_shape_and_works_in_blocks(monkeypatch):
    import linpath.preprocess as pre

    monkeypatch.setattr(pre, "_CHUNK", 3)  # several blocks, a ragged last one
    x = torch.from_numpy(fresh().uniform(0, 1, size=(8, 3, 5, 5))).float()
    got = gcn(x)
    assert got.shape == x.shape and got.dtype == torch.float32
    np.testing.assert_allclose(got.reshape(8, -1).numpy(), gcn_reference(x.numpy()), rtol=1e-6)


def test_gcn_is_idempotent_and_leaves_its_input_alone():
    x = torch.from_numpy(fresh().normal(size=(6, 30)))
    before = x.clone()
    once = gcn(x)
    torch.testing.assert_close(gcn(once), once, rtol=1e-12, atol=1e-12)
    assert torch.equal(x, before)


def test_gcn_leaves_a_constant_example_centred_but_unscaled():
    rng = fresh()
    x = rng.normal(size=(3, 20))
    x[1] = 7.25  # constant: its divisor is 0 < min_divisor
    x[2] = 1.0 + 1e-13 * rng.normal(size=20)  # divisor about 1e-14 < min_divisor
    got = gcn(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, gcn_reference(x), rtol=1e-12, atol=1e-15)
    assert np.all(got[1] == 0.0) and np.all(np.isfinite(got))
    np.testing.assert_allclose(got[2], x[2] - x[2].mean(), atol=1e-15)  # not blown up to norm 55
    zeros = gcn(torch.zeros(2, 5), subtract_mean=False)
    assert torch.equal(zeros, torch.zeros(2, 5))


def test_gcn_float32_in_float32_out_computed_in_float64():
    """Pixels on a large offset: centring in float32 loses digits that float64 keeps."""
    rng = fresh()
    x32 = torch.from_numpy(1000.0 + 0.01 * rng.normal(size=(20, 3072))).float()
    got = gcn(x32)
    assert got.dtype == torch.float32
    exact = gcn_reference(x32.double().numpy())
    ours = np.abs(got.double().numpy() - exact).max()
    values = x32 - x32.mean(dim=1, keepdim=True)  # the same formula, float32 throughout
    float32_only = values / (values.square().sum(dim=1, keepdim=True).sqrt() / 55.0)
    theirs = np.abs(float32_only.double().numpy() - exact).max()
    assert ours <= 4 * np.finfo(np.float32).eps * np.abs(exact).max()
    assert theirs > 100 * ours


@pytest.mark.parametrize(
    ("x", "options", "error", "match"),
    [
        (np.zeros((2, 3)), {}, TypeError, "torch.Tensor"),
        (torch.zeros(2, 3, dtype=torch.int64), {}, TypeError, "floating-point"),
        (torch.zeros(5), {}, ValueError, "examples, features"),
        (torch.zeros(0, 5), {}, ValueError, "at least 1 example"),
        (torch.tensor([[1.0, float("nan")]]), {}, ValueError, "NaN"),
        (torch.tensor([[1.0, float("inf")]]), {}, ValueError, "NaN or infinite"),
        (torch.zeros(2, 3), {"scale": 0.0}, ValueError, "scale must be"),
        (torch.zeros(2, 3), {"scale": 1e-9}, ValueError, "at least min_divisor"),
        (torch.zeros(2, 3), {"sqrt_bias": -1.0}, ValueError, "sqrt_bias must be"),
        (torch.zeros(2, 3), {"scale": "55"}, TypeError, "scale must be a number"),
    ],
)
def test_gcn_rejects_bad_input(x, options, error, match):
    with pytest.raises(error, match=match):
        gcn(x, **options)


# --- ZCA ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("filter_bias", "n_components"), [(0.1, None), (0.01, None), (0.1, 5)])
def test_zca_matches_the_float64_reference_on_train_and_test(filter_bias, n_components):
    rng = fresh()
    train, test = random_design(rng, 300, 12), random_design(rng, 40, 12)
    zca = ZCA(filter_bias, n_components).fit(torch.from_numpy(train))
    mean, whitener, _ = zca_reference(train, filter_bias, n_components)
    np.testing.assert_allclose(zca.mean.numpy(), mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(zca.whitener.numpy(), whitener, rtol=1e-9, atol=1e-10)
    for x in (train, test):
        got = zca.transform(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, (x - mean) @ whitener, rtol=1e-9, atol=1e-9)


def test_zca_whitened_training_covariance_is_the_damped_identity():
    """cov((X − μ)P) = Σ v vᵀ λ/(λ + b) with (λ, v) the eigenpairs of the raw covariance."""
    rng = fresh()
    train = random_design(rng, 500, 10)
    for bias in (0.5, 1e-9):
        white = ZCA(bias).fit(torch.from_numpy(train)).transform(torch.from_numpy(train)).numpy()
        eigenvalues, vectors = np.linalg.eigh(zca_reference(train)[2])
        expected = (vectors * (eigenvalues / (eigenvalues + bias))) @ vectors.T
        np.testing.assert_allclose(white.T @ white / len(white), expected, atol=1e-9)
        np.testing.assert_allclose(white.mean(axis=0), 0.0, atol=1e-9)
    np.testing.assert_allclose(white.T @ white / len(white), np.eye(10), atol=1e-6)  # b → 0: I


def test_zca_transforms_valid_and_test_with_the_training_statistics_only():
    rng = fresh()
    train, test = random_design(rng, 200, 8), random_design(rng, 30, 8) + 3.0  # shifted
    zca = ZCA().fit(torch.from_numpy(train))
    mean, whitener = zca.mean.clone(), zca.whitener.clone()
    whole = zca.transform(torch.from_numpy(test))
    one_by_one = torch.cat([zca.transform(torch.from_numpy(test[i : i + 1])) for i in range(30)])
    torch.testing.assert_close(whole, one_by_one, rtol=1e-12, atol=1e-12)  # rows independent
    assert torch.equal(zca.mean, mean) and torch.equal(zca.whitener, whitener)  # state unchanged
    np.testing.assert_allclose(
        whole.numpy(), (test - train.mean(axis=0)) @ zca_reference(train)[1], atol=1e-9
    )
    assert np.abs(whole.numpy().mean(axis=0)).max() > 0.5  # not centred on the test's own mean


def test_zca_keeps_image_shape_and_works_in_blocks(monkeypatch):
    import linpath.preprocess as pre

    monkeypatch.setattr(pre, "_CHUNK", 7)  # several blocks, a ragged last one
    rng = fresh()
    images = torch.from_numpy(rng.uniform(0, 1, size=(50, 2, 3, 3)))
    zca = ZCA().fit(images)
    got = zca.transform(images)
    assert got.shape == images.shape
    mean, whitener, _ = zca_reference(images.numpy())
    flat = images.reshape(50, -1).numpy()
    np.testing.assert_allclose(got.reshape(50, -1).numpy(), (flat - mean) @ whitener, atol=1e-10)


def test_zca_float32_in_float32_out_computed_in_float64():
    """Pixels on an offset with a wide spread of variances: a float32 ZCA loses digits."""
    rng = fresh()
    train = 100.0 + random_design(rng, 2000, 40) * np.logspace(-2, 1, 40)
    train32 = torch.from_numpy(train).float()
    got = ZCA(1e-3).fit(train32).transform(train32)
    assert got.dtype == torch.float32
    mean, whitener, _ = zca_reference(train32.double().numpy(), 1e-3)
    exact = (train32.double().numpy() - mean) @ whitener
    ours = np.abs(got.double().numpy() - exact).max()
    centred = train32 - train32.mean(dim=0)  # the same recipe, float32 throughout
    e, v = torch.linalg.eigh(centred.T @ centred / len(centred) + 1e-3 * torch.eye(40))
    theirs = np.abs((centred @ ((v * e.rsqrt()) @ v.T)).double().numpy() - exact).max()
    assert ours <= 1e-5 * np.abs(exact).max()
    assert np.isnan(theirs) or theirs > 1000 * ours  # float32 eigh may even find λ + b < 0


def test_zca_state_dict_and_file_round_trip(tmp_path):
    rng = fresh()
    train, test = torch.from_numpy(random_design(rng, 100, 6)), torch.from_numpy(random_design(rng, 9, 6))
    zca = ZCA(0.2, 4).fit(train)
    restored = ZCA().load_state_dict(zca.state_dict())
    zca.save(tmp_path / "zca.pt")
    loaded = ZCA.load(tmp_path / "zca.pt")
    for other in (restored, loaded):
        assert (other.filter_bias, other.n_components) == (0.2, 4)
        assert torch.equal(other.transform(test), zca.transform(test))
    (tmp_path / "junk.pt").write_bytes(b"not a zca")
    with pytest.raises(ValueError, match="not a readable ZCA file"):
        ZCA.load(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError):
        ZCA.load(tmp_path / "missing.pt")


def test_zca_load_state_dict_rejects_foreign_or_inconsistent_states():
    state = ZCA().fit(torch.from_numpy(fresh().normal(size=(20, 4)))).state_dict()
    with pytest.raises(ValueError, match="not a ZCA state"):
        ZCA().load_state_dict({"mean": state["mean"]})
    with pytest.raises(ValueError, match="float64 tensors"):
        ZCA().load_state_dict({**state, "whitener": state["whitener"].float()})
    with pytest.raises(ValueError, match=r"whitener \[d, d\]"):
        ZCA().load_state_dict({**state, "whitener": state["whitener"][:3]})
    with pytest.raises(ValueError, match="finite"):
        ZCA().load_state_dict({**state, "whitener": state["whitener"] * float("nan")})


def test_zca_errors():
    x = torch.from_numpy(fresh().normal(size=(10, 4)))
    with pytest.raises(ValueError, match="not fitted"):
        ZCA().transform(x)
    with pytest.raises(ValueError, match="not fitted"):
        ZCA().state_dict()
    zca = ZCA().fit(x)
    with pytest.raises(ValueError, match="x has 5 features per example, the ZCA was fitted on 4"):
        zca.transform(torch.zeros(3, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="NaN"):
        zca.transform(torch.full((2, 4), float("nan")))
    with_nan = x.clone()
    with_nan[3, 2] = float("nan")  # placed, not drawn: a random mask can be empty
    bad_fits = [
        (x[:1], ValueError, "at least 2 example"),
        (x[:, 0], ValueError, "examples, features"),
        (x.long(), TypeError, "floating-point"),
        (x.numpy(), TypeError, "torch.Tensor"),
        (with_nan, ValueError, "NaN"),
    ]
    for data, error, match in bad_fits:
        with pytest.raises(error, match=match):
            ZCA().fit(data)
    with pytest.raises(ValueError, match="n_components \\(5\\) exceeds the 4 features"):
        ZCA(n_components=5).fit(x)
    with pytest.raises(ValueError, match="singular"):
        ZCA(0.0).fit(torch.from_numpy(fresh().normal(size=(3, 10))))  # 3 examples, 10 features
    with pytest.raises(ValueError, match="filter_bias must be"):
        ZCA(-0.1)
    with pytest.raises(ValueError, match="n_components must be at least 1"):
        ZCA(n_components=0)


# --- binarisation -------------------------------------------------------------------------------


def test_binarize_draws_bernoulli_bits_with_the_intensities_as_probabilities():
    rng = fresh()
    p = torch.from_numpy(rng.uniform(0, 1, size=(400, 500))).float()
    bits = binarize(p, seed=int(rng.integers(2**32)))
    assert bits.dtype == torch.float32 and bits.shape == p.shape
    assert set(bits.unique().tolist()) <= {0.0, 1.0}
    sigma = float(torch.sqrt((p * (1 - p)).sum())) / p.numel()
    assert abs(float(bits.mean() - p.mean())) < 5 * sigma
    # per intensity bin: the frequency of ones follows the intensity
    for low in np.arange(0, 1, 0.1):
        inside = (p >= low) & (p < low + 0.1)
        q = p[inside]
        tolerance = 5 * float(torch.sqrt((q * (1 - q)).sum())) / q.numel() + 1e-6
        assert abs(float(bits[inside].mean()) - float(q.mean())) < tolerance
    edge = torch.tensor([[0.0, 1.0] * 1000])
    assert torch.equal(binarize(edge, seed=3), edge)


def test_binarize_is_reproducible_by_seed_and_leaves_the_global_rngs_alone():
    p = torch.from_numpy(fresh().uniform(0, 1, size=(50, 784)))
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()  # noqa: NPY002
    a, b, c = binarize(p, seed=11), binarize(p, seed=11), binarize(p, seed=12)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state[1])  # noqa: NPY002
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (a != c).float().mean() > 0.1
    assert torch.equal(binarize(p.float(), seed=11), a.float())  # the same bits whatever the dtype
    uniform = torch.rand(p.shape, generator=torch.Generator().manual_seed(11), dtype=torch.float32)
    assert torch.equal(a, (uniform.double() < p).double())  # the documented draw
    # strictly below: an intensity equal to its draw gives 0, so P(1) = p, never p + 2**-24
    assert torch.all(binarize(uniform, seed=11) == 0) and torch.all(
        binarize((uniform + 1e-7).clamp(max=1), seed=11) == 1
    )


def test_binarize_threshold_and_errors():
    p = torch.tensor([[0.0, 0.2, 0.5, 0.50001, 0.9, 1.0]])
    assert binarize(p, seed=0, method="threshold").tolist() == [[0.0, 0.0, 0.0, 1.0, 1.0, 1.0]]
    cases = [
        (torch.tensor([[1.5]]), {}, ValueError, r"in \[0, 1\]"),
        (torch.tensor([[-0.1]]), {}, ValueError, r"in \[0, 1\]"),
        (torch.tensor([[float("nan")]]), {}, ValueError, "NaN"),
        (torch.tensor([[1]]), {}, TypeError, "floating-point"),
        (p, {"method": "round"}, ValueError, "'sample' or 'threshold'"),
        (p, {"seed": -1}, ValueError, "seed must lie"),
        (p, {"seed": 1.5}, TypeError, "seed must be an integer"),
    ]
    for x, options, error, match in cases:
        with pytest.raises(error, match=match):
            binarize(x, **{"seed": 0, **options})
