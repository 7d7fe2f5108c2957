"""linpath.models.MPDBM against an independent float64 reference of the same equations.

PyTorch has no DBM, so the reference below re-derives mean-field inference, the evaluation masks
(splitmix64 in plain Python integers) and the multi-prediction loss the slow obvious way.
"""

import copy
import hashlib
import json
import math

import numpy as np
import pytest
import torch
from init_stats import assert_normal, assert_sparse_rows, assert_uniform, fresh_seed
from native_line import native_line

import linpath
from linpath.models import MPDBM
from linpath.models.mpdbm import PAPER_MAX_NORMS

TINY = {"n_visible": 12, "n_hidden1": 8, "n_hidden2": 6, "n_classes": 3, "mf_steps": 4}
U64 = 2**64 - 1


# ----------------------------------------------------------------------------- reference


def _splitmix(state: int) -> tuple[int, int]:
    """One splitmix64 step: ``(new state, output)``."""
    state = (state + 0x9E3779B97F4A7C15) & U64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & U64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & U64
    return state, z ^ (z >> 31)


def _eval_masks(seed: int, first_row: int, n: int, width: int, p: float) -> torch.Tensor:
    """The documented evaluation masks: row r draws from splitmix64(mix(mix(seed) ^ r))."""
    key = _splitmix(seed)[1]
    rows = []
    for r in range(first_row, first_row + n):
        state = _splitmix(key ^ r)[1]
        row = []
        for _ in range(width):
            state, z = _splitmix(state)
            row.append((z >> 11) / 2.0**53 < p)
        rows.append(row)
    return torch.tensor(rows, dtype=torch.bool)


def _sigmoid(z: torch.Tensor) -> torch.Tensor:
    return 1.0 / (1.0 + torch.exp(-z))


def _softmax(z: torch.Tensor) -> torch.Tensor:
    e = torch.exp(z - z.max(dim=-1, keepdim=True).values)
    return e / e.sum(dim=-1, keepdim=True)


def _reference_mean_field(p, v, y, mask_v, mask_y, steps):
    """``(P(v=1), Q(y))`` after mean-field inference; masks are True where a variable is predicted."""
    n = v.shape[0]
    v_hat = torch.where(mask_v, _sigmoid(p["visible_bias"]).expand(n, -1), v)
    y_hat = torch.where(mask_y[:, None], _softmax(p["label_bias"]).expand(n, -1), y)
    h1 = _sigmoid(2 * v_hat @ p["w1"].T + p["hidden1_bias"])
    h2 = _sigmoid(h1 @ p["w2"].T + y_hat @ p["w3"] + p["hidden2_bias"])
    for _ in range(steps):
        h1 = _sigmoid(v_hat @ p["w1"].T + h2 @ p["w2"] + p["hidden1_bias"])
        h2 = _sigmoid(h1 @ p["w2"].T + y_hat @ p["w3"] + p["hidden2_bias"])
        pv = _sigmoid(h1 @ p["w1"] + p["visible_bias"])
        v_hat = torch.where(mask_v, pv, v)
        qy = _softmax(h2 @ p["w3"].T + p["label_bias"])
        y_hat = torch.where(mask_y[:, None], qy, y)
    return pv, qy


def _reference(model: MPDBM, x: torch.Tensor, labels: torch.Tensor) -> dict:
    """Logits, J and the error rate of ``model`` on ``(x, labels)``, in float64, example by example."""
    p = {name: t.detach().double() for name, t in model.named_parameters()}
    n, nv = x.shape
    v = x.double()
    y = torch.nn.functional.one_hot(labels, model.n_classes).double()
    masks = _eval_masks(model.eval_seed, 0, n, nv + 1, model.mask_prob)
    pv, qy = _reference_mean_field(p, v, y, masks[:, :nv], masks[:, nv], model.mf_steps)
    total = 0.0
    for i in range(n):
        loss = 0.0
        for j in range(nv):
            if masks[i, j]:
                loss -= v[i, j] * math.log(pv[i, j]) + (1 - v[i, j]) * math.log(1 - pv[i, j])
        if masks[i, nv]:
            loss -= math.log(qy[i, labels[i]])
        total += float(loss) / (nv + 1)
    none_v = torch.zeros(n, nv, dtype=torch.bool)
    _, q_class = _reference_mean_field(
        p, v, torch.zeros_like(y), none_v, torch.ones(n, dtype=torch.bool), model.mf_steps
    )
    error = (q_class.argmax(dim=1) != labels).double().mean().item()
    return {"logits": torch.log(q_class), "J": total / n, "error": error}


# ----------------------------------------------------------------------------- helpers


def _data(
    n: int, nv: int, classes: int, seed: int, binary: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, nv, generator=g)
    if binary:  # binary-ish: mostly 0/1 with some grey levels
        x = torch.where(torch.rand(n, nv, generator=g) < 0.8, (x > 0.5).float(), x)
    return x, torch.randint(0, classes, (n,), generator=g)


def _randomised(seed: int = 0, **config) -> MPDBM:
    """A tiny model with dense weights and non-zero biases (every term of the equations matters)."""
    model = MPDBM(**(TINY | config), init="gaussian", init_scale=0.8, seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for name, t in model.named_parameters():
            if name.endswith("bias"):
                t.copy_(torch.randn(t.shape, generator=g) * 0.5)
    return model


# ----------------------------------------------------------------------------- tests


def test_parameters_are_named_shaped_and_sparse():
    model = MPDBM(**TINY, sparse_count=5, seed=3)
    shapes = {name: tuple(t.shape) for name, t in model.named_parameters()}
    assert shapes == {
        "visible_bias": (12,), "w1": (8, 12), "hidden1_bias": (8,), "w2": (6, 8),
        "hidden2_bias": (6,), "w3": (3, 6), "label_bias": (3,),
    }  # fmt: skip
    for w in (model.w1, model.w2, model.w3):
        assert ((w != 0).sum(dim=1) == 5).all()
    assert all((b == 0).all() for b in (model.visible_bias, model.hidden1_bias, model.label_bias))
    big = MPDBM(784, 500, 20, 10, seed=1)  # the default scale is "very large": N(0, 1)
    nonzero = big.w1[big.w1 != 0]
    assert nonzero.numel() == 500 * 15 and abs(nonzero.std().item() - 1.0) < 0.05
    again = MPDBM(**TINY, sparse_count=5, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters(), strict=True))
    assert not torch.equal(model.w1, MPDBM(**TINY, sparse_count=5, seed=4).w1)


def test_reset_parameters_leaves_the_global_rng_and_sets_the_visible_bias_from_marginals():
    model = MPDBM(**TINY, init="gaussian", init_scale=0.1)
    state = torch.random.get_rng_state()
    mean = torch.linspace(0.0, 1.0, 12)
    model.reset_parameters(7, visible_mean=mean)
    assert torch.equal(torch.random.get_rng_state(), state)
    expected = torch.logit(mean.double().clamp(1e-7, 1 - 1e-7)).float()  # pylearn2's clip
    torch.testing.assert_close(model.visible_bias.detach(), expected)
    assert abs(model.w1.std().item() - 0.1) < 0.04


def test_logits_are_log_probabilities():
    model = _randomised()
    x, _ = _data(9, 12, 3, seed=1)
    logits = model(x)
    assert logits.shape == (9, 3) and logits.dtype == torch.float32
    torch.testing.assert_close(logits.exp().sum(dim=1), torch.ones(9), atol=1e-6, rtol=0)


@pytest.mark.parametrize("randomised", [True, False], ids=["dense", "sparse-default"])
def test_logits_objective_and_error_match_the_float64_reference(randomised):
    model = _randomised(seed=2) if randomised else MPDBM(**TINY, seed=2)
    x, y = _data(40, 12, 3, seed=5)
    ref = _reference(model, x, y)
    torch.testing.assert_close(model(x).double(), ref["logits"], atol=2e-5, rtol=1e-5)
    loss, error = model.evaluate(x, y)
    assert loss == pytest.approx(ref["J"], rel=1e-5)
    assert error == ref["error"]
    assert 0.05 < loss < 2.0


def test_evaluation_is_deterministic_and_follows_eval_seed():
    x, y = _data(30, 12, 3, seed=6)
    a = _randomised(eval_seed=0)
    assert a.evaluate(x, y) == a.evaluate(x, y)
    b = _randomised(eval_seed=1)
    assert a.evaluate(x, y)[0] != pytest.approx(b.evaluate(x, y)[0], rel=1e-4)
    assert a.evaluate(x, y)[1] == b.evaluate(x, y)[1]  # the classifier has no masks
    assert b.evaluate(x, y)[0] == pytest.approx(_reference(b, x, y)["J"], rel=1e-5)


def test_masks_follow_the_global_row_index_across_evaluation_blocks():
    x, y = _data(30, 12, 3, seed=7)
    whole = _randomised(eval_rows=1000).evaluate(x, y)
    blocks = _randomised(eval_rows=7).evaluate(x, y)  # 5 blocks, the last one of 2 rows
    assert blocks[0] == pytest.approx(whole[0], rel=1e-6)
    assert blocks[1] == whole[1]
    # A row's mask is tied to its index: the last rows evaluated on their own get other masks.
    tail = _randomised(eval_rows=7).evaluate(x[14:], y[14:])
    part = _reference(_randomised(), x[14:], y[14:])
    assert tail[0] == pytest.approx(part["J"], rel=1e-5)


def test_sweep_at_the_ends_equals_evaluate():
    x, y = _data(25, 12, 3, seed=8)
    start, end = _randomised(seed=0), _randomised(seed=1)
    theta0, theta1 = linpath.flatten(start).tensor, linpath.flatten(end).tensor
    losses, errors = native_line(start, theta0, theta1, x, y, [0.0, 1.0])
    assert (losses[0], errors[0]) == start.evaluate(x, y)
    assert (losses[1], errors[1]) == end.evaluate(x, y)
    assert torch.equal(linpath.flatten(start).tensor, theta0)  # parameters restored


def _fit(data, seed: int, epochs: int = 2, **config) -> linpath.TrainResult:
    model = MPDBM(**(TINY | config), seed=0)
    return linpath.train(
        model, data, epochs=epochs, batch_size=32, lr=0.05, momentum=0.5, seed=seed, progress=False
    )


def test_one_seed_gives_a_bit_identical_run_and_another_seed_differs():
    data = _data(256, 12, 3, seed=9, binary=True)
    a, b, c = _fit(data, seed=0), _fit(data, seed=0), _fit(data, seed=1)
    assert torch.equal(a.final.tensor, b.final.tensor)
    assert a.history["step_loss"] == b.history["step_loss"]
    assert not torch.equal(a.final.tensor, c.final.tensor)
    assert not torch.equal(a.final.tensor, a.initial.tensor)


def _prototypes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary 8x8 images: 4 random class prototypes with 10% of the pixels flipped."""
    g = torch.Generator().manual_seed(seed)
    protos = (torch.rand(4, 64, generator=g) < 0.4).float()
    y = torch.randint(0, 4, (n,), generator=g)
    flips = (torch.rand(n, 64, generator=g) < 0.1).float()
    return (protos[y] - flips).abs(), y


def test_the_objective_goes_down_on_a_structured_problem():
    data = _prototypes(512, seed=10)
    model = MPDBM(64, 32, 32, 4, mf_steps=5, seed=0)
    result = linpath.train(model, data, epochs=6, batch_size=32, lr=0.3, momentum=0.5, seed=0, progress=False)
    j = result.history["train_loss"]  # epoch 0 (the initial model) first
    assert all(b < a for a, b in zip(j, j[1:], strict=False)), j
    assert j[-1] < 0.7 * j[0], j


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_hidden1": 0}, ValueError, r"n_hidden1 must lie in \[1, 2\*\*63\)"),
        ({"n_classes": 1}, ValueError, r"n_classes must lie in \[2, "),
        ({"mf_steps": 0}, ValueError, r"mf_steps must lie in \[1, "),
        ({"mask_prob": 1.0}, ValueError, "mask_prob must lie strictly between 0 and 1"),
        ({"mask_prob": 0.0}, ValueError, "mask_prob must lie strictly between 0 and 1"),
        ({"eval_rows": 0}, ValueError, r"eval_rows must lie in \[1, "),
        ({"eval_seed": -1}, ValueError, "eval_seed must lie in"),
        ({"init": "uniform"}, ValueError, "unknown init"),
        ({"sparse_count": 0}, ValueError, "sparse_count must be at least 1"),
        ({"init_scale": -1.0}, ValueError, "init_scale must be positive"),
        ({"n_visible": 7.5}, TypeError, "n_visible must be an integer"),
        ({"mask_prob": "half"}, TypeError, "mask_prob must be a number"),
    ],
)
def test_bad_configurations_are_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        MPDBM(**(TINY | kwargs))


def test_bad_data_are_clear_errors():
    model = _randomised()
    x, y = _data(10, 12, 3, seed=11)
    with pytest.raises(ValueError, match=r"shape \[n, 12\]"):
        model.evaluate(x[:, :11], y)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        model.evaluate(x * 255, y)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        model.evaluate(torch.where(x > 0.5, torch.nan, x), y)
    with pytest.raises(ValueError, match=r"class indices must lie in \[0, 3\)"):
        model.evaluate(x, y + 1)
    with pytest.raises(TypeError, match="int64"):
        model.evaluate(x, y.int())
    with pytest.raises(ValueError, match="one class index per example"):
        model.evaluate(x, y[:5])
    with pytest.raises(TypeError, match="floating-point"):
        model.evaluate((x > 0.5).long(), y)
    with pytest.raises(ValueError, match=r"shape \[n, 12\]"):
        model(x[0])
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        linpath.train(model, (x * 2, y), epochs=1, batch_size=4, lr=0.1, progress=False)
    with pytest.raises(ValueError, match="visible_mean"):
        model.reset_parameters(0, visible_mean=torch.full((12,), 2.0))


# ----------------------------------------------------------------------------- initialisation knobs


def _digest(model) -> str:
    """The first 16 hex digits of the SHA-256 of the parameters' float32 bytes, in order."""
    h = hashlib.sha256()
    for _, p in model.named_parameters():
        h.update(p.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def test_the_default_initialisations_are_bit_identical_to_before_the_init_knobs():
    # Digests computed on main (d954be3) before layer_init/hidden_biases/visible_bias_from existed.
    assert _digest(MPDBM(**TINY, seed=3)) == "a5082383e3359ac8"
    capped = MPDBM(**TINY, sparse_count=20, init_scale=0.5, seed=2)  # 20 > every fan-in: capped
    assert _digest(capped) == "cbb0dc05980297da"
    assert capped.layer_init == (("sparse", 12, 0.5), ("sparse", 8, 0.5), ("sparse", 6, 0.5))
    assert _digest(MPDBM(**TINY, init="gaussian", seed=4)) == "52f3a2e2c30b7e82"
    # layer_init spelling out the same scheme draws the same numbers.
    spelled = MPDBM(**TINY, layer_init=[["sparse", 12, 0.5], ["sparse", 8, 0.5], ["sparse", 6, 0.5]], seed=2)
    assert _digest(spelled) == "cbb0dc05980297da"


SIZES = {"n_visible": 200, "n_hidden1": 400, "n_hidden2": 300, "n_classes": 10, "mf_steps": 2}


def test_layer_init_has_the_documented_statistics():
    seed = fresh_seed()
    k1, s1, irange, k3, s3 = 5 + seed % 20, 0.5 + seed % 4, 0.001 * (1 + seed % 13), 1 + seed % 40, 2.0
    b1, b2 = -0.7 - 0.01 * (seed % 10), 0.3 + 0.01 * (seed % 10)
    layer_init = (("sparse", k1, s1), ("uniform", irange), ("sparse", k3, s3))
    model = MPDBM(**SIZES, layer_init=layer_init, hidden_biases=(b1, b2), seed=seed)
    assert_sparse_rows(model.w1, k1, s1)
    assert_uniform(model.w2, irange)
    assert_sparse_rows(model.w3, k3, s3)
    assert (model.hidden1_bias == torch.tensor(b1, dtype=torch.float32)).all()
    assert (model.hidden2_bias == torch.tensor(b2, dtype=torch.float32)).all()
    assert (model.visible_bias == 0).all() and (model.label_bias == 0).all()
    gaussian = MPDBM(**SIZES, layer_init=(("gaussian", 0.3), ("gaussian", 0.02), ("uniform", 4.0)), seed=seed)
    assert_normal(gaussian.w1, 0.3)
    assert_normal(gaussian.w2, 0.02)
    assert_uniform(gaussian.w3, 4.0)
    again = MPDBM(**SIZES, layer_init=layer_init, hidden_biases=(b1, b2), seed=seed)
    assert _digest(again) == _digest(model)
    assert _digest(MPDBM(**SIZES, layer_init=layer_init, seed=seed + 1)) != _digest(model)


def test_fit_visible_bias_is_the_clipped_logit_of_the_pixel_means():
    seed = fresh_seed()
    rng = np.random.default_rng(seed)
    x = rng.random((57, 12)) * (rng.random((57, 12)) < 0.7)
    x[:, 3], x[:, 7], x[0, 5] = 0.0, 1.0, 1.0  # an all-zero and an all-one pixel (clipped), a rare one
    model = MPDBM(**TINY, visible_bias_from="data", seed=seed)
    model.fit_visible_bias(torch.from_numpy(x).float())
    mean = np.clip(x.astype(np.float32).astype(np.float64).mean(axis=0), 1e-7, 1 - 1e-7)
    expected = np.log(mean / (1 - mean))
    np.testing.assert_allclose(model.visible_bias.detach().numpy(), expected, rtol=1e-6)
    assert model.visible_bias[3].item() == pytest.approx(-16.118, abs=1e-3)
    assert model.visible_bias[7].item() == pytest.approx(16.118, abs=1e-3)
    state = dict(model.named_parameters())
    assert all(
        torch.equal(state[n], p)
        for n, p in MPDBM(**TINY, seed=seed).named_parameters()
        if n != "visible_bias"
    )


def test_the_configuration_round_trips_through_json():
    seed = fresh_seed()
    models = [
        MPDBM(**TINY, seed=seed),
        MPDBM(**TINY, init="gaussian", init_scale=0.2, seed=seed),
        MPDBM(**TINY, layer_init=(("sparse", 4, 2.0), ("uniform", 0.1), ("gaussian", 0.5)),
              hidden_biases=(-1.0, 0.5), visible_bias_from="data", seed=seed),
    ]  # fmt: skip
    for model in models:
        rebuilt = MPDBM(**json.loads(json.dumps(model.config)), seed=seed)
        assert rebuilt.config == model.config and _digest(rebuilt) == _digest(model)
        clone = copy.deepcopy(model)
        clone.reset_parameters(seed)
        assert _digest(clone) == _digest(model)
    assert "layer_init=(('sparse', 4, 2.0)" in repr(models[2]) and "visible_bias_from='data'" in repr(
        models[2]
    )
    assert "layer_init" not in repr(models[0]) and "hidden_biases" not in repr(models[0])


def test_paper_has_the_original_architecture_and_initialisation():
    model = MPDBM.paper(seed=fresh_seed())
    assert (model.n_visible, model.n_hidden1, model.n_hidden2, model.n_classes) == (784, 500, 1000, 10)
    assert (model.mf_steps, model.mask_prob, model.visible_bias_from) == (14, 0.5, "data")
    assert_sparse_rows(model.w1, 15, 1.0)
    assert_uniform(model.w2, 0.00638830865761)
    assert_sparse_rows(model.w3, 23, 1.0)
    assert (model.hidden1_bias == torch.tensor(-0.710467)).all()
    assert (model.hidden2_bias == torch.tensor(-0.393587)).all()
    assert (model.label_bias == 0).all() and (model.visible_bias == 0).all()
    assert set(PAPER_MAX_NORMS) == {"w1", "w2", "w3"}
    x, y = _data(5, 784, 10, seed=1, binary=True)
    model.fit_visible_bias(x)
    assert model.evaluate(x, y)[0] > 0  # it runs
    assert MPDBM.paper(n_hidden1=20, n_hidden2=30).w2.shape == (30, 20)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"layer_init": (("sparse", 3, 1.0),) * 2}, ValueError, "layer_init must hold three entries"),
        ({"layer_init": "sparse"}, ValueError, "layer_init must hold three entries"),
        ({"layer_init": (("sparse", 3, 1.0), ("xavier", 1.0), ("sparse", 3, 1.0))}, ValueError,
         r"layer_init\[1\]: unknown init 'xavier'"),
        ({"layer_init": (("sparse", 3), ("uniform", 0.1), ("sparse", 3, 1.0))}, ValueError,
         r"layer_init\[0\] must be \('sparse', count, stdev\)"),
        ({"layer_init": (("sparse", 3, 1.0), ("uniform", 0.1, 2.0), ("sparse", 3, 1.0))}, ValueError,
         r"layer_init\[1\] must be"),
        ({"layer_init": (("sparse", 3, 1.0), 0.1, ("sparse", 3, 1.0))}, ValueError,
         r"layer_init\[1\] must be"),
        ({"layer_init": (("sparse", 13, 1.0), ("uniform", 0.1), ("sparse", 3, 1.0))}, ValueError,
         r"layer_init\[0\] count is 13, above the 12 units of the layer below"),
        ({"layer_init": (("sparse", 3, 1.0), ("uniform", 0.1), ("sparse", 7, 1.0))}, ValueError,
         r"layer_init\[2\] count is 7, above the 6 units"),
        ({"layer_init": (("sparse", 0, 1.0), ("uniform", 0.1), ("sparse", 3, 1.0))}, ValueError,
         r"layer_init\[0\] count must be at least 1"),
        ({"layer_init": (("sparse", 2.5, 1.0), ("uniform", 0.1), ("sparse", 3, 1.0))}, TypeError,
         r"layer_init\[0\] count must be an integer"),
        ({"layer_init": (("sparse", 3, 1.0), ("uniform", -0.1), ("sparse", 3, 1.0))}, ValueError,
         r"layer_init\[1\] irange must be a positive finite number"),
        ({"layer_init": (("sparse", 3, -1.0), ("uniform", 0.1), ("sparse", 3, 1.0))}, ValueError,
         r"layer_init\[0\] stdev must be a positive finite number"),
        ({"layer_init": (("gaussian", math.nan),) * 3}, ValueError,
         r"layer_init\[0\] stdev must be a positive"),
        ({"layer_init": (("gaussian", 0.1),) * 3, "init_scale": 0.5}, ValueError,
         "layer_init replaces init, sparse_count and init_scale"),
        ({"layer_init": (("gaussian", 0.1),) * 3, "sparse_count": 3}, ValueError, "layer_init replaces"),
        ({"hidden_biases": (0.1,)}, ValueError, "hidden_biases must be a pair"),
        ({"hidden_biases": (0.1, math.inf)}, ValueError, r"hidden_biases\[1\] must be a finite number"),
        ({"hidden_biases": (0.1, "a")}, TypeError, r"hidden_biases\[1\] must be a number"),
        ({"visible_bias_from": "marginals"}, ValueError, "visible_bias_from must be one of"),
    ],
)  # fmt: skip
def test_bad_init_arguments_are_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        MPDBM(**(TINY | kwargs))


def test_bad_fit_visible_bias_inputs_are_clear_errors():
    model = MPDBM(**TINY)
    x, _ = _data(10, 12, 3, seed=12)
    with pytest.raises(ValueError, match=r"x must have shape \[n, 12\] with n >= 1"):
        model.fit_visible_bias(x[:, :11])
    with pytest.raises(ValueError, match=r"x must have shape \[n, 12\] with n >= 1"):
        model.fit_visible_bias(x[:0])
    with pytest.raises(ValueError, match=r"x must hold pixel intensities in \[0, 1\]"):
        model.fit_visible_bias(x * 255)
    with pytest.raises(ValueError, match=r"x must hold pixel intensities in \[0, 1\]"):
        model.fit_visible_bias(torch.where(x > 0.5, torch.nan, x))
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        model.fit_visible_bias((x > 0.5).long())
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        model.fit_visible_bias(x.numpy())
    assert (model.visible_bias == 0).all()  # left as it was
