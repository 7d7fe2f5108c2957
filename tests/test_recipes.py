"""The originals' recipes of Figures 6 and 7 (experiments/scales.py, runs.py): the specs name real
parameters, the data is preprocessed as the originals did (checked against NumPy float64), and bad
specs are refused."""

import dataclasses

import numpy as np
import pytest
import torch

from linpath import assign, datasets
from linpath.experiments import SCALES, NetSpec, get_scale
from linpath.experiments.runs import Context, new_model, whiten

RECIPE_SCALES = [name for name, scale in SCALES.items() if scale.conv_ablation]


def _numpy_gcn_zca(train: np.ndarray, other: np.ndarray) -> np.ndarray:
    """pylearn2's global_contrast_normalize (scale 55, mean subtracted, no std) and ZCA (filter_bias
    0.1) written out in float64: the ZCA fitted on ``train``, applied to ``other``."""

    def gcn(x: np.ndarray) -> np.ndarray:
        x = x - x.mean(axis=1, keepdims=True)
        norms = np.sqrt((x**2).sum(axis=1, keepdims=True))
        norms[norms < 1e-8] = 1.0
        return 55.0 * x / norms

    fit, apply = gcn(train), gcn(other)
    mean = fit.mean(axis=0)
    centred = fit - mean
    eigs, vecs = np.linalg.eigh(centred.T @ centred / len(fit) + 0.1 * np.eye(fit.shape[1]))
    whitening = (vecs / np.sqrt(eigs)) @ vecs.T
    return (apply - mean) @ whitening


def test_whiten_equals_the_numpy_pipeline_fitted_on_the_training_split():
    gen = torch.Generator().manual_seed(7)
    splits = [
        (torch.rand(n, 3, 4, 4, generator=gen), torch.randint(0, 10, (n,), generator=gen))
        for n in (80, 30, 20)
    ]
    out = whiten(datasets.Dataset(*splits))
    train = splits[0][0].double().flatten(1).numpy()
    for (x, y), (wx, wy) in zip(splits, out.splits().values(), strict=True):
        assert wx.shape == x.shape and wx.dtype == torch.float32 and torch.equal(wy, y)
        want = _numpy_gcn_zca(train, x.double().flatten(1).numpy())
        np.testing.assert_allclose(wx.flatten(1).double().numpy(), want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("scale_name", RECIPE_SCALES)
def test_recipe_specs_name_real_constrained_weights_and_parameters(scale_name):
    scale = get_scale(scale_name)
    for name, spec in scale.nets.items():
        if spec.model == "LSTMLanguageModel":
            continue
        model = new_model(spec)
        params = dict(model.named_parameters())
        constrained = {n for n, p in params.items() if p.dim() > 1}
        for weight, limit in spec.max_norms or ():
            assert weight in constrained and limit > 0, (name, weight)
        for param, factor in spec.lr_scale or ():
            assert param in params and 0 < factor <= 1, (name, param)
        if spec.momentum_schedule:
            final, start, saturate = spec.momentum_schedule
            assert spec.momentum < final < 1 and 1 <= start <= saturate, name  # the original's epochs


def test_medium_scale_runs_three_seeds_and_both_ablations():
    scale = get_scale("medium")
    assert scale.seeds == 3
    for run in ("conv_maxout", "mpdbm"):
        specs = [scale.nets[run]] + [scale.nets[f"{run}_seed{s}"] for s in (1, 2)]
        assert [s.seed for s in specs] == [0, 1, 2]
        assert all(dataclasses.replace(s, seed=0) == specs[0] for s in specs)
    conv = scale.nets["conv_maxout"]
    assert (conv.train_examples, conv.batch_size, conv.lr, conv.preprocess) == (40_000, 128, 0.17, "gcn_zca")
    assert dict(conv.config)["irange"] == 0.05 and dict(conv.max_norms)["convs.0.weight"] == 0.9
    mpdbm = scale.nets["mpdbm"]
    assert dict(mpdbm.config)["mf_steps"] == 14 and mpdbm.preprocess == "binarize"
    assert dict(mpdbm.max_norms) == {"w1": 1.809978, "w2": 2.666304, "w3": 5.175683}  # the yaml's
    assert len(scale.conv_ablation) == 4 and len(scale.mpdbm_ablation) == 6
    assert scale.net_points >= 121


@pytest.mark.parametrize(
    "dataset, how", [("mnist", "gcn_zca"), ("cifar10", "binarize"), ("mnist", "zca"), ("imagenet", None)]
)
def test_net_spec_refuses_preprocessing_that_does_not_apply(dataset, how):
    with pytest.raises(ValueError, match="preprocess|dataset"):
        NetSpec("MPDBM", (), dataset, 1, 1.0, preprocess=how)


def test_binarised_data_of_a_run_are_the_binarised_mnist_bits(tmp_path):
    ctx = Context(get_scale("smoke"), tmp_path)
    spec = get_scale("smoke").nets["mpdbm"]
    data = ctx.data_for(spec)
    reference = datasets.binarized_mnist(0)
    assert torch.equal(data.train[0], reference.train[0][: spec.train_examples])
    assert torch.equal(data.valid[0], reference.valid[0][: spec.eval_examples])
    assert set(data.train[0].unique().tolist()) == {0.0, 1.0}


def test_the_mpdbm_recipe_starts_from_the_pixel_marginals(tmp_path):
    """θi of a recipe run holds visible biases = logit of the raw training pixels' means, clipped to
    [1e-7, 1 − 1e-7] (pylearn2's bias_from_marginals on the grey-level images), in NumPy float64."""
    ctx = Context(get_scale("smoke"), tmp_path)
    run = ctx.run("mpdbm_sparse1_free")
    model = new_model(run.spec)
    assign(model, run.initial)
    raw = datasets.mnist().train[0][: run.spec.train_examples].double().numpy()
    p = np.clip(raw.mean(axis=0), 1e-7, 1 - 1e-7)
    want = np.log(p / (1 - p))
    np.testing.assert_allclose(model.visible_bias.detach().double().numpy(), want, rtol=1e-6, atol=1e-5)
    hidden = dict(run.spec.config)["hidden_biases"]
    assert model.hidden1_bias.detach().eq(np.float32(hidden[0])).all()
