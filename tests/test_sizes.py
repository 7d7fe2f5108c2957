"""Integers that reach the Rust core: type and range checks in Python, checked size arithmetic
and the physical-memory limit natively, and libtorch's allocation failures as MemoryError."""

import numpy as np
import pytest
import torch

import linpath
from linpath._checks import integer
from linpath.datasets import lm_windows
from linpath.models import MLP, MPDBM, ConvMaxout, LSTMLanguageModel

I64_END = 2**63
CONV = {  # one conv maxout layer on 3x9x9 images
    "input_shape": (3, 9, 9),
    "channels": (4,),
    "kernels": (3,),
    "paddings": (1,),
    "pools": (2,),
    "pool_strides": (2,),
    "fc_units": 8,
    "fc_pieces": 3,
    "classes": 5,
}
MACHINE = r"of memory, but this machine has \d+ bytes \(\d+\.\d [KMGT]iB\)"


def _case(value):
    """Test ids: the arguments of a case and the error expected (not its pattern)."""
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()).replace(" ", "")
    return value.__name__ if isinstance(value, type) else ""


def _data(n: int = 10, width: int = 20, classes: int = 10, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, width, generator=g), torch.randint(0, classes, (n,), generator=g)


# ----------------------------------------------------------------------------- the shared helper


def test_the_integer_helper_checks_types_and_states_the_limits():
    assert integer("n", np.int64(7), 1, I64_END) == 7
    assert type(integer("n", np.int32(7))) is int
    assert integer("n", -(2**63), -(2**63), I64_END) == -(2**63)
    for bad in (True, 2.0, "3", None):
        with pytest.raises(TypeError, match="n must be an integer"):
            integer("n", bad, 1, I64_END)
    with pytest.raises(ValueError, match=r"n must lie in \[1, 2\*\*63\), got 9223372036854775808"):
        integer("n", 2**63, 1, I64_END)
    with pytest.raises(ValueError, match=r"n must lie in \[-2\*\*63, 2\*\*64\), got -9223372036854775809"):
        integer("n", -(2**63) - 1, -(2**63), 2**64)
    with pytest.raises(ValueError, match="n must be at least 1, got 0"):
        integer("n", 0, 1)
    with pytest.raises(ValueError, match="n must be below 10, got 10"):
        integer("n", 10, high=10)


# ----------------------------------------------------------------------------- the trainer


def test_a_batch_larger_than_the_data_is_one_full_batch_step():
    # ceil(n / batch_size) overflowed for batch_size = 2**63 - 1: a Rust panic (division by zero).
    x, y = _data()
    model = MLP([20, 8, 10], seed=3)
    twin = model.to_torch()
    result = linpath.train(model, (x, y), epochs=1, batch_size=2**63 - 1, lr=0.1, progress=False)
    assert result.history["step_loss"] == pytest.approx([result.history["train_loss"][0]], rel=1e-5)
    assert list(result.trajectory.steps) == [0, 1]
    # The reference: one plain-PyTorch SGD step on the whole set, in float64.
    twin = twin.double()
    loss = torch.nn.functional.cross_entropy(twin(x.double()), y)
    grads = torch.autograd.grad(loss, list(twin.parameters()))
    expected = torch.cat([(p - 0.1 * g).flatten() for p, g in zip(twin.parameters(), grads, strict=True)])
    assert torch.allclose(result.final.tensor.double(), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"batch_size": 2**63}, ValueError, r"batch_size must lie in \[1, 2\*\*63\), got 9223\d+$"),
        ({"epochs": 2**64}, ValueError, r"epochs must lie in \[1, 2\*\*63\)"),
        ({"record_every": 2**64}, ValueError, r"record_every must lie in \[1, 2\*\*63\)"),
        ({"early_stopping": 2**63}, ValueError, r"early_stopping must lie in \[1, 2\*\*63\)"),
        # epochs x steps per epoch past 2**63 - 1: it used to wrap silently and run forever.
        ({"epochs": 2**62, "batch_size": 1}, ValueError, r"= 4611686018427387904 x 10 exceeds 2\*\*63 - 1"),
        # Checkpoints of every step kept in memory for 2**40 epochs: refused before training.
        (
            {"epochs": 2**40, "batch_size": 1, "record_every": 1},
            ValueError,
            r"an in-memory trajectory of up to 10995116277762 checkpoints of 258 parameters would need "
            r"11346959998650384 bytes \(10\.1 PiB\) " + MACHINE + r"; record less often",
        ),
    ],
    ids=_case,
)
def test_counts_out_of_the_native_range_are_clear_errors(kwargs, error, match):
    model = MLP([20, 8, 10])
    before = linpath.flatten(model).tensor
    with pytest.raises(error, match=match):
        linpath.train(model, _data(), **({"epochs": 1, "batch_size": 2, "lr": 0.1} | kwargs))
    assert torch.equal(linpath.flatten(model).tensor, before)


N_WIDE = 3 * 2**21  # a batch of N_WIDE rows through N_WIDE output units: 2**47.2 bytes of logits


@pytest.fixture(scope="module")
def wide():
    """A 1 -> 6,291,456 linear model (48 MB) and as many one-value inputs (24 MB): its logits for
    the whole set would take 144 TiB, more than any machine and than a 47-bit address space."""
    return MLP([1, N_WIDE]), torch.zeros(N_WIDE, 1), torch.zeros(N_WIDE, dtype=torch.int64)


OUT_OF_MEMORY = (
    r"^out of memory: libtorch could not allocate 158329674399744 bytes \(144\.0 TiB\); this machine "
    r"has \d+ bytes .*\. Use smaller batches"
)


def test_an_allocation_libtorch_cannot_make_is_a_memory_error(wide):
    model, x, _ = wide
    with pytest.raises(MemoryError, match=OUT_OF_MEMORY) as info:
        model(x)
    assert "alloc_cpu" not in str(info.value) and "\n" not in str(info.value)


def test_a_training_batch_too_large_for_memory_is_a_memory_error(wide):
    model, x, y = wide
    with pytest.raises(MemoryError, match=OUT_OF_MEMORY):
        linpath.train(model, (x, y), epochs=1, batch_size=N_WIDE, lr=0.1, eval_train=False, progress=False)


# ----------------------------------------------------------------------------- the models


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        # 8 * 2**62 wrapped to 0: the model was built with layers of shape [0, 4].
        (
            {"sizes": [4, 8, 3], "activation": "maxout", "pieces": 2**62},
            ValueError,
            r"layer 0's number of weight rows \(sizes\[1\] x pieces\) is too large: it exceeds 2\*\*63 - 1",
        ),
        ({"sizes": [2**62, 4]}, ValueError, r"layer 0's parameter count is too large: it exceeds 2\*\*63"),
        ({"sizes": [4, 2**64, 3]}, ValueError, r"sizes\[1\] must lie in \[1, 2\*\*63\), got 1844\d+$"),
        (
            {"sizes": [4, 8, 3], "activation": "maxout", "pieces": 2**64},
            ValueError,
            r"pieces must lie in \[2, 2\*\*63\)",
        ),
        (
            {"sizes": [4, 2**40, 3]},
            ValueError,
            r"an MLP of sizes \[4, 1099511627776, 3\]: its parameters would need 35184372088844 bytes "
            r"\(32\.0 TiB\) " + MACHINE + "; use smaller layers",
        ),
        ({"sizes": [4, 2.5, 3]}, TypeError, r"sizes\[1\] must be an integer, got 2\.5"),
        ({"sizes": 12}, TypeError, "sizes must be a sequence"),
        ({"sizes": [4, 3], "seed": 1.5}, TypeError, "seed must be an integer"),
    ],
    ids=_case,
)
def test_mlp_sizes_out_of_range_are_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        MLP(**kwargs)


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        # 4 * 2**62 wrapped to 0: an IndexError from the initialisation of an empty weight.
        ({"pieces": 2**62}, ValueError, r"number of outputs of a conv layer .* exceeds 2\*\*63 - 1"),
        ({"paddings": (2**62,)}, ValueError, r"conv layer 0's padded input side .* exceeds 2\*\*63 - 1"),
        ({"paddings": (2**64,)}, ValueError, r"paddings\[0\] must lie in \[0, 2\*\*63\)"),
        ({"kernels": (2**63,)}, ValueError, r"kernels\[0\] must lie in \[1, 2\*\*63\)"),
        # libtorch's max pooling takes C ints: a stride of 2**40 failed at the first forward pass.
        ({"pool_strides": (2**40,)}, ValueError, r"pool_strides\[0\] must lie in \[1, 2\*\*31\)"),
        ({"pools": (2**31,)}, ValueError, r"pools\[0\] must lie in \[1, 2\*\*31\)"),
        ({"fc_units": 2**64}, ValueError, r"fc_units must lie in \[1, 2\*\*63\)"),
        ({"classes": 2**63}, ValueError, r"classes must lie in \[1, 2\*\*63\)"),
        ({"input_shape": (3, 9, 2**63)}, ValueError, r"input_shape\[2\] must lie in \[1, 2\*\*63\)"),
        ({"fc_units": 2**40}, ValueError, r"this conv maxout network's parameters would need \d+ bytes"),
        # Few parameters, but one 2**20 x 2**20 image's activations exceed any memory: the model was
        # built, and failed only when used.
        (
            {"input_shape": (1, 2**20, 2**20), "kernels": (1,), "paddings": (0,), "pools": (2**20,)}
            | {"pool_strides": (2**20,)},
            ValueError,
            r"one example's activations in this conv maxout network would need \d+ bytes \(\d+\.\d TiB\) "
            + MACHINE,
        ),
        ({"seed": 2**64}, ValueError, r"seed must lie in \[-2\*\*63, 2\*\*64\)"),
    ],
    ids=_case,
)
def test_conv_maxout_sizes_out_of_range_are_clear_errors(change, error, match):
    with pytest.raises(error, match=match):
        ConvMaxout(**(CONV | change))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_visible": 2**63 - 1}, ValueError, r"the MP-DBM's parameter count is too large"),
        (
            {"n_hidden1": 2**40},
            ValueError,
            r"this MP-DBM's parameters would need 83562883711132 bytes \(76\.0 TiB\) " + MACHINE,
        ),
        ({"n_classes": 2**64}, ValueError, r"n_classes must lie in \[2, 2\*\*63\)"),
        ({"mf_steps": 2**63}, ValueError, r"mf_steps must lie in \[1, 2\*\*63\)"),
        ({"eval_rows": 2**63}, ValueError, r"eval_rows must lie in \[1, 2\*\*63\)"),
    ],
    ids=_case,
)
def test_mpdbm_sizes_out_of_range_are_clear_errors(kwargs, error, match):
    tiny = {"n_visible": 12, "n_hidden1": 8, "n_hidden2": 6, "n_classes": 3, "mf_steps": 2}
    with pytest.raises(error, match=match):
        MPDBM(**(tiny | kwargs))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"vocab_size": 2**64}, ValueError, r"vocab_size must lie in \[1, 2\*\*63\), got 1844\d+$"),
        ({"hidden_size": 2**62}, ValueError, r"gate rows of an LSTM layer \(4 x hidden_size\) is too large"),
        ({"num_layers": 2**63 - 1}, ValueError, r"the LSTM's parameter count is too large"),
        (
            {"vocab_size": 2**40},
            ValueError,
            r"this LSTM's parameters would need 21990232555712 bytes \(20\.0 TiB\) " + MACHINE,
        ),
        ({"vocab_size": 10.7}, TypeError, r"vocab_size must be an integer, got 10\.7"),
        ({"embedding_size": "2"}, TypeError, "embedding_size must be an integer"),
        ({"dropout": "0.5"}, TypeError, "dropout must be a number"),
    ],
    ids=_case,
)
def test_lstm_sizes_out_of_range_are_clear_errors(kwargs, error, match):
    tiny = {"vocab_size": 10, "embedding_size": 2, "hidden_size": 2, "num_layers": 1}
    with pytest.raises(error, match=match):
        LSTMLanguageModel(**(tiny | kwargs))


# ----------------------------------------------------------------------------- recorders and data


def test_recorded_steps_must_fit_the_store():
    recorder = linpath.TrajectoryRecorder(MLP([2, 2]))
    assert recorder.record(np.int64(-(2**63))) == -(2**63)
    assert recorder.record(2**63 - 1) == 2**63 - 1
    with pytest.raises(ValueError, match=r"step must lie in \[-2\*\*63, 2\*\*63\), got 9223372036854775808"):
        recorder.record(2**63)
    with pytest.raises(TypeError, match="step must be an integer"):
        recorder.record(3.0)
    assert list(recorder.trajectory.steps) == [-(2**63), 2**63 - 1]


def test_lm_windows_takes_any_integer_steps():
    ids = torch.randint(0, 50, (41,), generator=torch.Generator().manual_seed(2))
    x, y = lm_windows(ids, np.int64(8))  # a NumPy integer used to be a TypeError
    assert torch.equal(x, ids[:40].reshape(5, 8)) and torch.equal(y, ids[1:41].reshape(5, 8))
    with pytest.raises(TypeError, match="steps must be an integer"):
        lm_windows(ids, 8.0)
    with pytest.raises(ValueError, match="too short for one window"):
        lm_windows(ids, 2**64)
