"""The LSTM language model (src/models/lstm.rs, linpath.models.LSTMLanguageModel) and lm_windows."""

import math

import pytest
import torch
from native_line import native_line

import linpath
import linpath.datasets as ds
from linpath.models import LSTMLanguageModel, TorchLSTMLanguageModel

VOCAB, EMB, HIDDEN, LAYERS, STEPS = 50, 12, 16, 2, 7


@pytest.fixture(autouse=True)
def one_thread():
    """Runs each test on one intra-op thread: these models are tiny, and libtorch's oneDNN LSTM with two
    OpenMP threads stalls for tens of seconds when other processes share the two cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(seed=0, **kw):
    return LSTMLanguageModel(VOCAB, EMB, HIDDEN, LAYERS, seed=seed, **kw)


def windows(n, seed, steps=STEPS, vocab=VOCAB):
    g = torch.Generator().manual_seed(seed)
    return ds.lm_windows(torch.randint(0, vocab, (n * steps + 1,), generator=g), steps)


def reference_logits(model, x):
    """The model's equations written out in float64: embedding, LSTM layers step by step, decoder."""
    p = {k: v.detach().double() for k, v in model.named_parameters()}
    h_in = p["embedding.weight"][x]  # [n, T, emb]
    n, steps, _ = h_in.shape
    for k in range(model.num_layers):
        h = c = torch.zeros(n, model.hidden_size, dtype=torch.float64)
        outs = []
        for t in range(steps):
            z = h_in[:, t] @ p[f"lstm.weight_ih_l{k}"].T + p[f"lstm.bias_ih_l{k}"]
            z = z + h @ p[f"lstm.weight_hh_l{k}"].T + p[f"lstm.bias_hh_l{k}"]
            i, f, g, o = z.chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outs.append(h)
        h_in = torch.stack(outs, dim=1)
    return h_in @ p["decoder.weight"].T + p["decoder.bias"]


def test_logits_shape_parameter_names_and_initialisation():
    model = tiny()
    x, _ = windows(5, 1)
    assert model(x).shape == (5, STEPS, VOCAB)
    names = [n for n, _ in model.named_parameters()]
    assert names == [n for n, _ in TorchLSTMLanguageModel(VOCAB, EMB, HIDDEN, LAYERS).named_parameters()]
    assert names[0] == "embedding.weight" and names[-2:] == ["decoder.weight", "decoder.bias"]
    params = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert params.abs().max() <= 0.1 and params.abs().max() > 0.099  # uniform in ±init_scale
    assert params.std() == pytest.approx(0.1 / math.sqrt(3), rel=0.02)
    assert torch.equal(params, torch.cat([p.detach().flatten() for p in tiny().parameters()]))
    assert not torch.equal(params, torch.cat([p.detach().flatten() for p in tiny(seed=1).parameters()]))
    assert (model.vocab_size, model.embedding_size, model.hidden_size, model.num_layers) == (50, 12, 16, 2)
    assert (model.dropout, model.init_scale) == (0.0, 0.1)


def test_forward_equals_to_torch_and_a_float64_reference_of_the_gate_equations():
    model = tiny(seed=3, init_scale=0.5)  # larger weights: the gates saturate differently
    x, _ = windows(6, 2)
    got = model(x).double()
    twin = model.to_torch()
    assert isinstance(twin, TorchLSTMLanguageModel)
    with torch.no_grad():
        torch.testing.assert_close(got, twin(x).double(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got, reference_logits(model, x), rtol=1e-5, atol=1e-5)
    # One-layer model, embedding narrower than the hidden layer.
    one = LSTMLanguageModel(VOCAB, 5, 9, 1, seed=4, init_scale=0.3)
    torch.testing.assert_close(one(x).double(), reference_logits(one, x), rtol=1e-5, atol=1e-5)


def test_evaluate_equals_float64_cross_entropy_error_and_perplexity():
    model = tiny(seed=5, init_scale=0.4)
    x, y = windows(40, 6)
    twin = model.to_torch().double()
    with torch.no_grad():
        logits = twin(x).reshape(-1, VOCAB)
    ce = torch.nn.functional.cross_entropy(logits, y.reshape(-1)).item()
    error = (logits.argmax(1) != y.reshape(-1)).double().mean().item()
    loss, err = model.evaluate(x, y)
    assert loss == pytest.approx(ce, rel=1e-5)
    assert err == pytest.approx(error, abs=1e-12)
    assert model.perplexity(x, y) == pytest.approx(math.exp(ce), rel=1e-5)


def test_dropout_acts_only_in_train_mode_and_eval_mode_matches_the_twin():
    model = tiny(seed=7, dropout=0.5)
    x, _ = windows(4, 8)
    eval_out = model.eval()(x)
    torch.testing.assert_close(eval_out, model.to_torch().eval()(x), rtol=1e-5, atol=1e-5)
    assert not torch.equal(model.train()(x), eval_out)
    assert torch.equal(model.eval()(x), eval_out)


def test_lm_windows_cuts_non_overlapping_windows_and_shifted_targets():
    x, y = ds.lm_windows(torch.arange(10, 21), 3)  # 11 words: 3 windows, the last word only a target
    assert x.tolist() == [[10, 11, 12], [13, 14, 15], [16, 17, 18]]
    assert y.tolist() == [[11, 12, 13], [14, 15, 16], [17, 18, 19]]
    assert x.dtype == y.dtype == torch.int64
    x, y = ds.lm_windows(torch.tensor([4, 5, 6], dtype=torch.int32), 2)
    assert (x.tolist(), y.tolist(), x.dtype) == ([[4, 5]], [[5, 6]], torch.int64)


def test_lm_windows_rejects_bad_arguments():
    with pytest.raises(ValueError, match="steps must be at least 1"):
        ds.lm_windows(torch.arange(5), 0)
    with pytest.raises(ValueError, match="too short for one window of 4"):
        ds.lm_windows(torch.arange(4), 4)
    with pytest.raises(ValueError, match="1-D stream"):
        ds.lm_windows(torch.zeros(2, 5, dtype=torch.int64), 2)
    with pytest.raises(TypeError, match="integer word ids"):
        ds.lm_windows(torch.zeros(9), 2)
    with pytest.raises(TypeError, match="steps must be an integer"):
        ds.lm_windows(torch.arange(9), 2.0)


def run(seed, data):
    model = tiny(seed=11)
    kwargs = {"epochs": 2, "batch_size": 20, "lr": 1.0, "clip_norm": 5.0, "progress": False}
    return linpath.train(model, data, seed=seed, **kwargs)


def test_seeded_training_is_bit_identical_and_depends_on_the_seed():
    data = windows(200, 12)
    a, b, c = run(0, data), run(0, data), run(1, data)
    assert torch.equal(a.final.tensor, b.final.tensor)
    assert a.history["step_loss"] == b.history["step_loss"]
    assert not torch.equal(a.final.tensor, c.final.tensor)
    assert not torch.equal(a.final.tensor, a.initial.tensor)
    assert a.history["train_loss"][0] == pytest.approx(math.log(VOCAB), abs=0.05)


def test_one_native_sgd_step_with_clipping_equals_a_pytorch_step_on_the_twin():
    model = tiny(seed=13, init_scale=0.3)
    x, y = windows(24, 14)
    twin = model.to_torch()
    result = linpath.train(
        model, (x, y), epochs=1, batch_size=len(x), lr=1.0, clip_norm=0.05, eval_train=False, progress=False
    )
    loss = torch.nn.functional.cross_entropy(twin(x).reshape(-1, VOCAB), y.reshape(-1))
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(twin.parameters(), 0.05)
    assert norm > 0.05  # the clipping is exercised
    torch.optim.SGD(twin.parameters(), lr=1.0).step()
    assert result.history["step_loss"][0] == pytest.approx(loss.item(), rel=1e-5)
    for (name, got), (twin_name, want) in zip(model.named_parameters(), twin.named_parameters(), strict=True):
        assert name == twin_name
        torch.testing.assert_close(got.detach(), want.detach(), rtol=1e-5, atol=1e-6)


def test_native_sweep_endpoints_equal_evaluate():
    start, end = tiny(seed=1), tiny(seed=2, init_scale=0.3)
    x, y = windows(30, 9)
    theta0, theta1 = linpath.flatten(start).tensor, linpath.flatten(end).tensor
    before = theta0.clone()
    losses, errors = native_line(start, theta0, theta1, x, y, [0.0, 1.0])
    assert (losses[0], errors[0]) == start.evaluate(x, y)
    assert losses[1] == pytest.approx(end.evaluate(x, y)[0], rel=1e-6)
    assert errors[1] == end.evaluate(x, y)[1]
    assert torch.equal(linpath.flatten(start).tensor, before)


@pytest.fixture(scope="module")
def ptb():
    try:
        return ds.ptb()
    except FileNotFoundError as e:
        pytest.skip(str(e))


def test_default_model_starts_near_uniform_on_real_ptb(ptb):
    model = LSTMLanguageModel()  # Zaremba et al.'s small model
    sizes = (model.vocab_size, model.embedding_size, model.hidden_size, model.num_layers)
    assert sizes == (10_000, 200, 200, 2)
    x, y = ds.lm_windows(ptb.valid[:2001], 20)
    loss, error = model.evaluate(x, y)
    assert loss == pytest.approx(math.log(10_000), abs=0.01)
    assert model.perplexity(x, y) == pytest.approx(10_000, rel=0.01)
    assert 0.9 < error <= 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"vocab_size": 0}, r"vocab_size must lie in \[1, 2\*\*63\)"),
        ({"hidden_size": -2}, r"hidden_size must lie in \[1, "),
        ({"num_layers": 0}, r"num_layers must lie in \[1, "),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"dropout": -0.1}, r"dropout must be in \[0, 1\)"),
        ({"init_scale": 0.0}, "init_scale must be a positive finite number"),
    ],
)
def test_bad_configs_raise_value_errors(kwargs, message):
    config = {"vocab_size": VOCAB, "embedding_size": EMB, "hidden_size": HIDDEN, "num_layers": LAYERS}
    config |= kwargs
    with pytest.raises(ValueError, match=message):
        LSTMLanguageModel(**config)


def test_bad_data_raise_clear_errors():
    model = tiny()
    x, y = windows(4, 10)
    with pytest.raises(TypeError, match="token ids must be int64"):
        model.evaluate(x.float(), y)
    with pytest.raises(TypeError, match="token ids must be int64"):
        model(x.int())
    bad = y.clone()
    bad[0, 0], bad[1, 1] = 50, 0
    with pytest.raises(ValueError, match=r"Y: token ids must lie in \[0, 50\).*found 0 to 50"):
        model.evaluate(x, bad)
    bad = x.clone()
    bad[2, 3] = -1
    with pytest.raises(ValueError, match=r"X: token ids must lie in \[0, 50\).*found -1 to"):
        model.evaluate(bad, y)
    with pytest.raises(ValueError, match="shape"):
        model.evaluate(x, y[:, :-1])
    with pytest.raises(ValueError, match=r"shape \[n, steps\]"):
        model(x.flatten())
    with pytest.raises(ValueError, match="no sequences"):
        model.evaluate(x[:0], y[:0])
    with pytest.raises(TypeError, match="integer token ids"):
        linpath.train(model, (x.float(), y), epochs=1, batch_size=2, lr=1.0, progress=False)
