"""linpath.train: the native SGD trainer of linpath.models.MLP."""

import _thread
import math
import signal
import sys
import threading
import time

import pytest
import torch
from torch import nn

import linpath
from linpath.models import MLP, MPDBM, ConvMaxout, LSTMLanguageModel

train_module = sys.modules["linpath.train"]  # `linpath.train` itself is the function

N_IN, N_CLASSES = 12, 4


def _task(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` inputs whose class is the argmax of fixed linear scores (learnable, not trivial)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, N_IN, generator=g)
    w = torch.randn(N_IN, N_CLASSES, generator=torch.Generator().manual_seed(1234))
    return x, (x @ w).argmax(1)


@pytest.fixture
def data():
    return {"train": _task(200, 1), "valid": _task(100, 2)}


def _model(dropout=None, seed=0) -> MLP:
    return MLP([N_IN, 24, N_CLASSES], dropout=dropout, seed=seed)


def _fit(data, model=None, valid=True, **kwargs):
    model = _model() if model is None else model
    options = {"epochs": 3, "batch_size": 16, "lr": 0.05, "momentum": 0.9, "progress": False} | kwargs
    return model, linpath.train(model, data["train"], data["valid"] if valid else None, **options)


def _row_norms(vec: linpath.ParamVector) -> dict[str, torch.Tensor]:
    return {n: t.norm(dim=1) for n, t in vec.to_state_dict().items() if n.endswith("weight")}


def test_one_seed_gives_a_bit_identical_run_and_another_seed_differs(data):
    runs = [_fit(data, _model(dropout=(0.2, 0.5)), seed=s, record_every=5)[1] for s in (3, 3, 4)]
    a, b, c = runs
    assert torch.equal(a.final.tensor, b.final.tensor)
    assert a.history == b.history
    assert list(a.trajectory.steps) == list(b.trajectory.steps)
    assert all(torch.equal(x.tensor, y.tensor) for x, y in zip(a.trajectory, b.trajectory, strict=True))
    assert not torch.equal(a.final.tensor, c.final.tensor)
    assert a.history["step_loss"] != c.history["step_loss"]


def test_dropout_masks_follow_the_seed(data):
    # Same minibatch order (momentum-free full batches), different dropout: the runs differ.
    full = len(data["train"][0])
    with_dropout = [
        _fit(data, _model(dropout=(0.0, 0.5)), batch_size=full, seed=s)[1].final.tensor for s in (0, 1)
    ]
    without = [_fit(data, batch_size=full, seed=s)[1].final.tensor for s in (0, 1)]
    assert not torch.equal(*with_dropout)
    assert torch.allclose(*without, atol=1e-6)


def test_the_global_torch_rng_is_left_alone(data):
    model = _model(dropout=(0.2, 0.5))
    torch.manual_seed(123)
    expected = torch.rand(5)
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    _fit(data, model, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(torch.rand(5), expected)


def test_the_model_trains_and_ends_at_final(data):
    model, result = _fit(data, epochs=10)
    h = result.history
    assert h["train_loss"][-1] < 0.5 * h["train_loss"][0]
    assert h["valid_error"][-1] < h["valid_error"][0]
    assert torch.equal(linpath.flatten(model).tensor, result.final.tensor)
    assert result.epochs_run == 10 and not result.interrupted
    assert result.best is not None and result.best_epoch == min(range(11), key=h["valid_error"].__getitem__)


def test_history_has_one_entry_per_epoch_and_step(data):
    _, result = _fit(data, epochs=4)
    h = result.history
    assert h["epoch"] == [0, 1, 2, 3, 4]
    for key in ("train_loss", "train_error", "valid_loss", "valid_error"):
        assert len(h[key]) == 5, key
    assert len(h["step_loss"]) == 4 * math.ceil(200 / 16)
    assert all(0.0 <= e <= 1.0 for e in h["train_error"] + h["valid_error"])
    _, no_valid = _fit(data, valid=False, epochs=2)
    assert set(no_valid.history) == {"epoch", "train_loss", "train_error", "step_loss", "lr", "momentum"}
    assert h["lr"] == [0.05] * 4 and h["momentum"] == [0.9] * 4  # one per epoch trained
    assert no_valid.best is None and no_valid.best_epoch is None


def test_history_matches_an_evaluation_of_the_model(data):
    model, result = _fit(data, epochs=2)
    with torch.no_grad():
        for split in ("train", "valid"):
            x, y = data[split]
            logits = model.eval()(x)
            loss = nn.functional.cross_entropy(logits, y).item()
            error = (logits.argmax(1) != y).double().mean().item()
            assert result.history[f"{split}_loss"][-1] == pytest.approx(loss, rel=1e-5)
            assert result.history[f"{split}_error"][-1] == pytest.approx(error)


def test_sgd_matches_pytorch(data):
    """Full-batch steps (the order within a batch does not matter) against torch.optim.SGD."""
    model = _model(seed=5)
    twin = model.to_torch()
    x, y = data["train"]
    options = {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}
    opt = torch.optim.SGD(twin.parameters(), **options)
    for _ in range(4):
        opt.zero_grad()
        nn.functional.cross_entropy(twin(x), y).backward()
        opt.step()
        with torch.no_grad():
            for layer in twin.layers:
                layer.weight.renorm_(2, 0, 0.5)
    linpath.train(model, (x, y), epochs=4, batch_size=len(x), max_norm=0.5, progress=False, **options)
    expected = linpath.flatten(twin).tensor
    assert torch.allclose(linpath.flatten(model).tensor, expected, atol=1e-5)


def test_max_norm_holds_after_every_step(data):
    model = _model()
    before = _row_norms(linpath.flatten(model))
    assert max(n.max().item() for n in before.values()) > 0.3  # the constraint has work to do
    _, result = _fit(data, model, max_norm=0.3, record_every=1, lr=0.5, epochs=2)
    assert len(result.trajectory) == 2 * 13 + 1
    for step, checkpoint in zip(result.trajectory.steps[1:], list(result.trajectory)[1:], strict=True):
        for name, norms in _row_norms(checkpoint).items():
            assert norms.max().item() <= 0.3 + 1e-6, f"{name} at step {step}"
    first = _row_norms(result.trajectory[1])
    assert any(torch.isclose(n, torch.tensor(0.3), atol=1e-4).any() for n in first.values())
    # biases are not constrained
    biases = [t for n, t in result.final.to_state_dict().items() if n.endswith("bias")]
    assert not torch.equal(
        torch.cat(biases), torch.cat([b for b in result.initial.to_state_dict().values()][1::2])
    )


def test_early_stopping_keeps_the_best_epoch(data):
    model, result = _fit(data, epochs=30, lr=2.0, early_stopping=2)
    errors = result.history["valid_error"]
    best = min(range(len(errors)), key=errors.__getitem__)
    assert 0 < best < len(errors) - 1, errors  # it improved, then got worse
    assert result.best_epoch == best
    assert result.epochs_run == best + 2 < 30  # stopped after two epochs without improvement
    # recorded once per epoch: checkpoint i is the end of epoch i
    assert torch.equal(result.best.tensor, result.trajectory[best].tensor)
    assert torch.equal(linpath.flatten(model).tensor, result.best.tensor)  # the model holds the best
    assert torch.equal(result.final.tensor, result.trajectory[-1].tensor)
    assert not torch.equal(result.final.tensor, result.best.tensor)


def test_without_early_stopping_the_model_keeps_the_final_parameters(data):
    model, result = _fit(data, epochs=6, lr=2.0)
    assert torch.equal(linpath.flatten(model).tensor, result.final.tensor)
    assert result.epochs_run == 6


def test_trajectory_in_memory_is_recorded_at_the_right_steps(data):
    model = _model()
    before = linpath.flatten(model)
    _, result = _fit(data, model, record_every=5, epochs=2)  # 13 steps per epoch
    assert list(result.trajectory.steps) == [0, 5, 10, 15, 20, 25, 26]
    assert result.trajectory.path is None
    assert torch.equal(result.initial.tensor, before.tensor)
    assert torch.equal(result.trajectory[0].tensor, before.tensor)
    assert torch.equal(result.trajectory[-1].tensor, result.final.tensor)
    assert result.initial.names == before.names and result.initial.shapes == before.shapes
    _, per_epoch = _fit(data, epochs=3)
    assert list(per_epoch.trajectory.steps) == [0, 13, 26, 39]


def test_trajectory_goes_to_a_new_file(data, tmp_path):
    path = tmp_path / "run.lpt"
    _, result = _fit(data, record_every=4, epochs=1, trajectory=path)
    assert result.trajectory.path == path
    reopened = linpath.Trajectory.open(path)
    assert list(reopened.steps) == [0, 4, 8, 12, 13]
    assert torch.equal(reopened[-1].tensor, result.final.tensor)
    assert reopened.dtype == torch.float32
    model = _model()
    before = linpath.flatten(model).tensor
    with pytest.raises(ValueError, match="already exists"):
        _fit(data, model, trajectory=path)
    assert torch.equal(linpath.flatten(model).tensor, before)
    assert list(linpath.Trajectory.open(path).steps) == [0, 4, 8, 12, 13]


def test_lr_decay_and_weight_decay_act(data):
    _, frozen = _fit(data, epochs=3, lr_decay=1e-9, momentum=0.0, record_every=None)
    t = frozen.trajectory
    assert not torch.equal(t[0].tensor, t[1].tensor)
    assert torch.allclose(t[1].tensor, t[3].tensor, atol=1e-6)  # lr ≈ 0 after the first epoch
    _, plain = _fit(data, epochs=3)
    _, decayed = _fit(data, epochs=3, weight_decay=0.05)
    assert decayed.final.tensor.norm() < plain.final.tensor.norm()


def test_data_are_converted_to_float32_and_int64(data):
    x, y = data["train"]
    _, a = _fit(data, valid=False)
    _, b = _fit({"train": (x.double(), y.int())}, valid=False)
    assert torch.equal(a.final.tensor, b.final.tensor)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"lr": 0.0}, ValueError, "lr"),
        ({"lr": -0.1}, ValueError, "lr"),
        ({"lr": float("nan")}, ValueError, "lr"),
        ({"epochs": 0}, ValueError, "epochs"),
        ({"epochs": -2}, ValueError, "epochs"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"momentum": 1.0}, ValueError, "momentum"),
        ({"weight_decay": -1.0}, ValueError, "weight_decay"),
        ({"max_norm": 0.0}, ValueError, "max_norm"),
        ({"lr_decay": 0.0}, ValueError, "lr_decay"),
        ({"record_every": 0}, ValueError, "record_every"),
        ({"early_stopping": 0}, ValueError, "early_stopping"),
        ({"seed": -1}, ValueError, "seed"),
        ({"epochs": 2.5}, TypeError, "epochs"),
        ({"batch_size": True}, TypeError, "batch_size"),
        ({"lr": "0.1"}, TypeError, "lr"),
    ],
)
def test_bad_hyperparameters_are_clear_errors(data, kwargs, error, match):
    model = _model()
    before = linpath.flatten(model).tensor
    with pytest.raises(error, match=match):
        _fit(data, model, **kwargs)
    assert torch.equal(linpath.flatten(model).tensor, before)


def test_bad_data_and_models_are_clear_errors(data):
    x, y = data["train"]
    model = _model()
    fit = {"epochs": 1, "batch_size": 8, "lr": 0.1, "progress": False}
    with pytest.raises(ValueError, match=r"train: the inputs must have shape \[n, 12\]"):
        linpath.train(model, (torch.randn(10, 13), y[:10]), **fit)
    with pytest.raises(ValueError, match="valid: 10 inputs but targets of shape"):
        linpath.train(model, (x, y), (x[:10], y[:9]), **fit)
    with pytest.raises(ValueError, match="class indices must lie in"):
        linpath.train(model, (x, y + 1), **fit)
    with pytest.raises(ValueError, match="no examples"):
        linpath.train(model, (x[:0], y[:0]), **fit)
    with pytest.raises(TypeError, match="integer class indices"):
        linpath.train(model, (x, y.float()), **fit)
    with pytest.raises(TypeError, match="floating-point inputs"):
        linpath.train(model, (x.long(), y), **fit)
    with pytest.raises(TypeError, match="pair"):
        linpath.train(model, x, **fit)
    with pytest.raises(TypeError, match="X must be a torch.Tensor"):
        linpath.train(model, (x.numpy(), y), **fit)
    with pytest.raises(ValueError, match="early_stopping needs validation data"):
        linpath.train(model, (x, y), early_stopping=3, **fit)
    with pytest.raises(TypeError, match="linpath.models.MLP"):
        linpath.train(nn.Linear(N_IN, N_CLASSES), (x, y), **fit)
    with pytest.raises(TypeError, match="linpath.models.MLP"):
        linpath.train(model.to_torch(), (x, y), **fit)


class _InterruptingBar:
    """Stands in for tqdm: sends SIGINT to the process once training has reached ``at`` steps."""

    at = 40

    def __init__(self, *args, **kwargs):
        self.n = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, k):
        self.n += k
        if self.n >= self.at:
            signal.raise_signal(signal.SIGINT)

    def set_postfix(self, **kwargs):
        pass


def _check_interrupted(model, result):
    assert result.interrupted
    steps = len(result.history["step_loss"])
    assert result.trajectory.steps[-1] == steps
    assert torch.equal(result.trajectory[-1].tensor, result.final.tensor)
    assert torch.equal(linpath.flatten(model).tensor, result.final.tensor)
    assert len(result.history["epoch"]) == result.epochs_run + 1
    assert all(math.isfinite(v) for v in result.history["step_loss"])


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals")
def test_ctrl_c_in_the_progress_callback_stops_cleanly(data, monkeypatch, sigint_raises):
    monkeypatch.setattr(train_module, "progress_bar", _InterruptingBar)
    model, result = _fit(data, epochs=50, batch_size=8, progress=True)  # 25 steps per epoch
    _check_interrupted(model, result)
    assert len(result.history["step_loss"]) == 40  # checked every 20 steps: stops right at 40
    assert result.epochs_run == 1
    # the model is still usable
    more = linpath.train(model, data["train"], epochs=1, batch_size=8, lr=0.05, progress=False)
    assert not more.interrupted


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals")
def test_ctrl_c_from_outside_stops_a_long_run(data, sigint_raises):
    began = time.perf_counter()
    linpath.train(_model(), data["train"], epochs=1, batch_size=8, lr=0.01, progress=False)
    epoch = time.perf_counter() - began  # on a loaded machine an epoch can take longer than 0.5 s
    timer = threading.Timer(max(0.5, 4 * epoch), _thread.interrupt_main)
    model = _model()
    timer.start()
    start = time.perf_counter()
    try:
        result = linpath.train(model, data["train"], epochs=100_000, batch_size=8, lr=0.01, progress=False)
    finally:
        timer.cancel()
    assert time.perf_counter() - start < 30
    _check_interrupted(model, result)
    assert 0 < result.epochs_run < 100_000


def test_progress_bar_runs(data, capsys):
    _fit(data, epochs=2, progress=True)
    assert "linpath train" in capsys.readouterr().err


def test_a_relu_mlp_learns_real_mnist():
    """The trainer of the paper's experiments reaches under 2.5% test error (about 8 s here)."""
    import linpath.datasets

    mnist = linpath.datasets.mnist()
    model = MLP([784, 512, 512, 10], seed=0)
    result = linpath.train(
        model, mnist.train, mnist.valid, epochs=6, batch_size=128, lr=0.1, momentum=0.9, progress=False
    )
    with torch.no_grad():
        x, y = mnist.test
        test_error = (model.eval()(x).argmax(1) != y).double().mean().item()
    assert test_error < 0.025, test_error
    assert result.history["valid_error"][-1] < 0.025
    assert len(result.history["step_loss"]) == 6 * math.ceil(50_000 / 128)
    assert list(result.trajectory.steps) == [i * 391 for i in range(7)]


def test_eval_train_false_skips_the_evaluation_and_changes_nothing_else():
    x, y = torch.randn(200, 12, generator=torch.Generator().manual_seed(3)), torch.arange(200) % 4
    results = []
    for eval_train in (True, False):
        model = MLP([12, 16, 4], seed=2)
        results.append(
            linpath.train(
                model,
                (x, y),
                epochs=2,
                batch_size=32,
                lr=0.1,
                momentum=0.9,
                eval_train=eval_train,
                progress=False,
            )
        )
    with_eval, without = results
    assert "train_loss" not in without.history and "train_error" not in without.history
    assert without.history["epoch"] == with_eval.history["epoch"] == [0, 1, 2]
    assert without.history["step_loss"] == with_eval.history["step_loss"]
    assert torch.equal(without.final.tensor, with_eval.final.tensor)
    with pytest.raises(TypeError, match="eval_train"):
        linpath.train(MLP([12, 4]), (x, y), epochs=1, batch_size=32, lr=0.1, eval_train="no")


def test_reading_the_model_from_another_thread_while_it_trains_does_not_deadlock():
    x, y = torch.randn(3000, 64, generator=torch.Generator().manual_seed(4)), torch.arange(3000) % 10
    model = MLP([64, 2048, 10], seed=1)
    done = threading.Event()

    def fit():
        linpath.train(model, (x, y), epochs=4, batch_size=8, lr=0.01, progress=True)
        done.set()

    worker = threading.Thread(target=fit, daemon=True)
    worker.start()
    time.sleep(0.2)
    assert not done.is_set()  # still training
    assert model.sizes == [64, 2048, 10]  # no lock needed
    names = [n for n, _ in model._native.named_parameters()]  # waits for the trainer without the GIL
    assert names[0] == "layers.0.weight"
    worker.join(timeout=120)
    assert done.is_set()


# Per-weight max norms, per-parameter learning-rate scales and pylearn2's schedules.

TINY_CONV = {
    "input_shape": (3, 8, 8),
    "channels": (4, 5),
    "kernels": (3, 3),
    "paddings": (1, 1),
    "pools": (2, 2),
    "pool_strides": (2, 2),
    "pieces": 2,
    "fc_units": 6,
    "fc_pieces": 2,
    "classes": 3,
    "input_dropout": 0.0,
    "hidden_dropout": 0.0,
}


def _orders(seed: int, n: int, epochs: int) -> list[list[int]]:
    """The trainer's minibatch orders: a splitmix64-driven Fisher–Yates shuffle per epoch."""
    mask, state, orders = 2**64 - 1, seed, []

    def next_u64() -> int:
        nonlocal state
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = ((state ^ (state >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    for _ in range(epochs):
        order = list(range(n))
        for i in range(n - 1, 0, -1):
            j = (next_u64() * (i + 1)) >> 64
            order[i], order[j] = order[j], order[i]
        orders.append(order)
    return orders


def _pylearn2_momentum(initial, final, start, saturate, count):
    """pylearn2's ``MomentumAdjustor.current_momentum`` with its counter at ``count``."""
    w = saturate - start
    if w == 0:
        return final if count >= start else initial
    alpha = min(max(float(count - start) / float(w), 0.0), 1.0)
    return initial * (1 - alpha) + alpha * final


def _pylearn2_lr(initial, decay_factor, start, saturate, count):
    """pylearn2's ``LinearDecayOverEpoch.current_lr`` with its counter at ``count``."""
    step = (initial - initial * decay_factor) / (saturate - start + 1)
    if count >= start:
        return initial - step * (count - start + 1) if count < saturate else initial * decay_factor
    return initial


def _rates(epochs, lr, momentum, lr_schedule=None, momentum_schedule=None, **_):
    """The (lr, momentum) of epochs 1..epochs: pylearn2 calls ``on_monitor`` once before training and
    after every epoch, from a counter of 0, so epoch e trains with the counter at e."""
    return [
        (
            lr if lr_schedule is None else _pylearn2_lr(lr, *lr_schedule, e),
            momentum if momentum_schedule is None else _pylearn2_momentum(momentum, *momentum_schedule, e),
        )
        for e in range(1, epochs + 1)
    ]


def _renorm(p: torch.Tensor, c: float) -> None:
    """Scales each slice ``p[i]`` with norm above ``c`` down to norm ``c``, in place."""
    norms = p.reshape(len(p), -1).norm(dim=1)
    p *= torch.where(norms > c, c / norms, torch.ones_like(norms)).view(-1, *[1] * (p.dim() - 1))


def _reference_sgd(twin, x, y, *, epochs, batch_size, seed=0, weight_decay=0.0, **options):
    """Slow, obvious float64 SGD on ``twin`` in the trainer's minibatch order: PyTorch's update with
    a momentum buffer (kept throughout when there is a schedule), weight decay, per-parameter lr
    scales, per-weight row renorms; the parameters after every step (step 0 first)."""
    params = dict(twin.named_parameters())
    scale = dict.fromkeys(params, 1.0) | (options.get("lr_scale") or {})
    max_norm = options.get("max_norm")
    norms = (
        dict.fromkeys([n for n in params if n.endswith("weight")], max_norm)
        if isinstance(max_norm, float)
        else max_norm or {}
    )
    keep = options.get("momentum_schedule") is not None or options["momentum"] != 0
    buffers: dict[str, torch.Tensor | None] = dict.fromkeys(params)
    steps = [{n: p.detach().clone() for n, p in params.items()}]
    rates = _rates(epochs, **options)
    for (lr, mu), order in zip(rates, _orders(seed, len(x), epochs), strict=True):
        for start in range(0, len(x), batch_size):
            batch = torch.tensor(order[start : start + batch_size])
            twin.zero_grad()
            nn.functional.cross_entropy(twin(x[batch]), y[batch]).backward()
            with torch.no_grad():
                for name, p in params.items():
                    g = p.grad + weight_decay * p
                    if keep:
                        g = buffers[name] = g if buffers[name] is None else mu * buffers[name] + g
                    p -= lr * scale[name] * g
                    if norms.get(name) is not None:
                        _renorm(p, norms[name])
            steps.append({n: p.detach().clone() for n, p in params.items()})
    return steps


MLP_RECIPE = {
    "momentum": 0.0,  # the schedule starts from 0: the velocity must still carry over
    "momentum_schedule": (0.9, 1, 3),
    "lr": 0.3,
    "lr_schedule": (0.2, 2, 4),
    "weight_decay": 1e-3,
    "lr_scale": {"layers.0.weight": 0.5, "layers.1.bias": 2.0},
    "max_norm": {"layers.0.weight": 0.6},
}
CONV_RECIPE = {
    "momentum": 0.5,
    "momentum_schedule": (0.7, 2, 3),
    "lr": 0.2,
    "lr_schedule": (0.5, 1, 3),
    "lr_scale": {"convs.0.weight": 0.05, "convs.1.weight": 0.05, "convs.0.bias": 0.05},
    "max_norm": {"convs.0.weight": 0.4, "convs.1.weight": 0.7, "fc.weight": 0.8, "out.weight": 0.9},
}
PLAIN = {"momentum": 0.9, "lr": 0.3, "weight_decay": 1e-3, "max_norm": 0.5}


@pytest.mark.parametrize(
    ("kind", "options"),
    [("mlp", MLP_RECIPE), ("mlp", PLAIN), ("conv", CONV_RECIPE), ("conv", PLAIN)],
    ids=["mlp-recipe", "mlp-plain", "conv-recipe", "conv-plain"],
)
def test_every_step_matches_a_float64_reference_sgd(kind, options):
    g = torch.Generator().manual_seed(int(torch.randint(2**31, ())))  # fresh inputs every run
    if kind == "mlp":  # 3 steps per epoch, the last one smaller
        model = MLP([N_IN, 10, N_CLASSES], seed=int(torch.randint(2**31, ())))
        x, y = torch.randn(40, N_IN, generator=g), torch.randint(N_CLASSES, (40,), generator=g)
        fit = {"epochs": 5, "batch_size": 16, "seed": 9}
    else:  # 2 steps per epoch (float64 convolutions are slow)
        model = ConvMaxout(**TINY_CONV, seed=int(torch.randint(2**31, ())))
        x, y = torch.randn(11, 3, 8, 8, generator=g), torch.randint(3, (11,), generator=g)
        fit = {"epochs": 4, "batch_size": 6, "seed": 9}
    expected = _reference_sgd(model.to_torch().double(), x.double(), y, **fit, **options)
    result = linpath.train(model, (x, y), record_every=1, progress=False, **fit, **options)
    assert len(result.trajectory) == len(expected) == fit["epochs"] * -(-len(x) // fit["batch_size"]) + 1
    for step, (got, want) in enumerate(zip(result.trajectory, expected, strict=True)):
        for name, value in got.to_state_dict().items():
            torch.testing.assert_close(
                value.double(), want[name], rtol=1e-5, atol=1e-6, msg=f"{name} at step {step}"
            )
    rates = list(zip(result.history["lr"], result.history["momentum"], strict=True))
    assert rates == _rates(fit["epochs"], **options)


def test_per_weight_max_norms_hold_after_every_step():
    g = torch.Generator().manual_seed(int(torch.randint(2**31, ())))
    x, y = torch.randn(30, 3, 8, 8, generator=g), torch.randint(3, (30,), generator=g)
    model = ConvMaxout(**TINY_CONV)
    limits = {"convs.0.weight": 0.5, "fc.weight": 0.9, "out.weight": 1.3}
    fit = {"epochs": 2, "batch_size": 8, "lr": 2.0, "momentum": 0.5, "record_every": 1, "progress": False}
    result = linpath.train(model, (x, y), max_norm=limits, **fit)
    worst: dict[str, float] = {}
    for step, checkpoint in enumerate(result.trajectory):
        for name, value in checkpoint.to_state_dict().items():
            if name.endswith("weight"):
                norm = value.reshape(len(value), -1).norm(dim=1).max().item()
                worst[name] = max(worst.get(name, 0.0), norm)
                if step > 0 and name in limits:
                    assert norm <= limits[name] + 1e-6, f"{name} at step {step}: {norm}"
    assert all(worst[name] > limits[name] - 1e-3 for name in limits), worst  # the constraint binds
    assert worst["convs.1.weight"] > max(limits.values()), worst  # an unconstrained weight grows past them


@pytest.mark.parametrize(
    ("schedules", "epochs"),
    [
        ({"momentum_schedule": (0.65, 1, 4), "lr_schedule": (0.1, 2, 5)}, 7),
        ({"momentum_schedule": (0.73, 3, 3), "lr_schedule": (0.5, 0, 1)}, 4),
        ({"momentum_schedule": (0.9, 0, 6)}, 3),
        ({"lr_schedule": (2.0, 1, 3)}, 4),
    ],
)
def test_the_recorded_rates_follow_pylearn2s_schedules(data, schedules, epochs):
    _, result = _fit(data, epochs=epochs, lr=0.05, momentum=0.5, **schedules)
    assert len(result.history["lr"]) == len(result.history["momentum"]) == epochs
    expected = _rates(epochs, lr=0.05, momentum=0.5, **schedules)
    for got, want in zip(
        zip(result.history["lr"], result.history["momentum"], strict=True), expected, strict=True
    ):
        assert got == pytest.approx(want, rel=1e-12, abs=1e-15)


def test_without_the_new_arguments_nothing_changes(data):
    """Neutral values of the new arguments give bit-identical runs to leaving them out (whose
    results the reference test above ties to plain SGD)."""
    names = [n for n, _ in _model().named_parameters()]
    weights = [n for n in names if n.endswith("weight")]
    common = {"epochs": 3, "lr": 0.2, "momentum": 0.7, "weight_decay": 1e-3, "record_every": 3}
    _, plain = _fit(data, _model(dropout=(0.1, 0.3)), max_norm=0.5, lr_decay=0.8, **common)
    neutral = {
        "max_norm": dict.fromkeys(weights, 0.5),
        "lr_scale": dict.fromkeys(names, 1.0),
        "momentum_schedule": (0.7, 0, 0),
    }
    _, same = _fit(data, _model(dropout=(0.1, 0.3)), lr_decay=0.8, **neutral, **common)
    _, floor = _fit(data, _model(dropout=(0.1, 0.3)), max_norm=0.5, lr_schedule=(1.0, 1, 2), **common)
    _, undecayed = _fit(data, _model(dropout=(0.1, 0.3)), max_norm=0.5, **common)
    for a, b in [(plain, same), (undecayed, floor)]:
        assert a.history == b.history
        assert all(torch.equal(p.tensor, q.tensor) for p, q in zip(a.trajectory, b.trajectory, strict=True))
    assert plain.history["lr"] == pytest.approx([0.2, 0.16, 0.128])


def test_mpdbm_max_norms_name_its_three_weights():
    model = MPDBM(n_visible=6, n_hidden1=5, n_hidden2=4, n_classes=3, mf_steps=2)
    x, y = (torch.rand(12, 6) > 0.5).float(), torch.arange(12) % 3
    with pytest.raises(
        ValueError, match=r"\"visible_bias\", which is not a weight .* use one of: w1, w2, w3$"
    ):
        linpath.train(
            model, (x, y), epochs=1, batch_size=4, lr=0.1, max_norm={"visible_bias": 1.0}, progress=False
        )
    limits = {"w1": 0.05, "w3": 0.1}
    result = linpath.train(model, (x, y), epochs=1, batch_size=4, lr=5.0, max_norm=limits, progress=False)
    final = result.final.to_state_dict()
    for name, c in limits.items():
        assert final[name].norm(dim=1).max().item() <= c + 1e-6
    assert final["w2"].norm(dim=1).max().item() > 0.1


def test_a_model_without_constrained_weights_refuses_every_max_norm_name():
    model = LSTMLanguageModel(20, 4, 5, 1)
    name = next(n for n, _ in model.named_parameters() if n.endswith("weight"))
    x = torch.randint(20, (4, 6))
    with pytest.raises(
        ValueError, match=f'max_norm names "{name}", which is not a weight .*; this model has none'
    ):
        linpath.train(model, (x, x), epochs=1, batch_size=2, lr=0.1, max_norm={name: 1.0}, progress=False)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"max_norm": {"layers.9.weight": 1.0}},
            ValueError,
            r"'layers.9.weight', which is not a parameter.*layers.0.weight, layers.0.bias",
        ),
        (
            {"max_norm": {"layers.0.bias": 1.0}},
            ValueError,
            r"\"layers.0.bias\", which is not a weight.*use one of: layers.0.weight, layers.1.weight",
        ),
        (
            {"max_norm": {"layers.0.weight": 0.0}},
            ValueError,
            r"max_norm\['layers.0.weight'\] must be a finite number > 0",
        ),
        ({"max_norm": {"layers.0.weight": float("inf")}}, ValueError, "finite number > 0"),
        ({"max_norm": {"layers.0.weight": "1"}}, TypeError, "must be a number"),
        ({"max_norm": [("layers.0.weight", 1.0)]}, TypeError, "max_norm must be a number"),
        (
            {"lr_scale": {"fc.weight": 1.0}},
            ValueError,
            r"lr_scale names 'fc.weight', which is not a parameter",
        ),
        (
            {"lr_scale": {"layers.1.bias": -1.0}},
            ValueError,
            r"lr_scale\['layers.1.bias'\] must be a finite number > 0",
        ),
        ({"lr_scale": {"layers.1.bias": float("nan")}}, ValueError, "finite number > 0"),
        ({"lr_scale": 0.5}, TypeError, "lr_scale must be a mapping"),
        (
            {"momentum_schedule": (0.7, 5, 3)},
            ValueError,
            "needs start <= saturate, got start 5 and saturate 3",
        ),
        ({"momentum_schedule": (1.0, 1, 3)}, ValueError, r"final momentum must lie in \[0, 1\)"),
        ({"momentum_schedule": (-0.1, 1, 3)}, ValueError, "final momentum"),
        (
            {"momentum_schedule": (0.7, -1, 3)},
            ValueError,
            r"momentum_schedule\[1\] must lie in \[0, 2\*\*63\)",
        ),
        ({"momentum_schedule": (0.7, 1)}, TypeError, r"tuple \(final_momentum, start, saturate\)"),
        ({"momentum_schedule": (0.7, 1.5, 3)}, TypeError, "must be an integer"),
        ({"lr_schedule": (0.1, 3, 3)}, ValueError, "needs start < saturate"),
        ({"lr_schedule": (0.0, 1, 3)}, ValueError, "decay factor must be a finite number > 0"),
        ({"lr_schedule": (float("inf"), 1, 3)}, ValueError, "decay factor"),
        ({"lr_schedule": (0.1, 1, 3), "lr_decay": 0.9}, ValueError, "lr_decay and lr_schedule .*pick one"),
        ({"lr_schedule": "0.1, 1, 3"}, TypeError, r"tuple \(decay_factor, start, saturate\)"),
    ],
)
def test_bad_schedules_and_per_parameter_values_are_clear_errors(data, kwargs, error, match):
    model = _model()
    before = linpath.flatten(model).tensor
    with pytest.raises(error, match=match):
        _fit(data, model, **kwargs)
    assert torch.equal(linpath.flatten(model).tensor, before)
