"""Shared fixtures: small seeded models and random classification data."""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

N_IN, N_HIDDEN, N_CLASSES = 20, 32, 10


def _mlp(seed: int = 0, dtype: torch.dtype = torch.float32, batchnorm: bool = False) -> nn.Sequential:
    """A 20-32-10 MLP (with BatchNorm1d after the hidden layer if asked), initialised from ``seed``."""
    torch.manual_seed(seed)
    layers = [nn.Linear(N_IN, N_HIDDEN)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(N_HIDDEN))
    layers += [nn.ReLU(), nn.Linear(N_HIDDEN, N_CLASSES)]
    return nn.Sequential(*layers).to(dtype)


def _data(n: int, seed: int, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random inputs of width 20 and class targets in [0, 10)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, N_IN, generator=g, dtype=dtype)
    y = torch.randint(0, N_CLASSES, (n,), generator=g)
    return x, y


def _bn_mlp(seed: int, shift: float) -> nn.Sequential:
    """A BatchNorm MLP whose running statistics were accumulated on inputs shifted by ``shift``."""
    model = _mlp(seed, batchnorm=True)
    g = torch.Generator().manual_seed(seed + 1000)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(64, N_IN, generator=g) * (1 + abs(shift)) + shift)
    return model.eval()


@pytest.fixture(scope="session")
def make_mlp():
    """Factory: ``make_mlp(seed, dtype=torch.float32, batchnorm=False)``."""
    return _mlp


@pytest.fixture(scope="session")
def make_data():
    """Factory: ``make_data(n, seed, dtype=torch.float32) -> (X, Y)``."""
    return _data


@pytest.fixture(scope="session")
def make_bn_mlp():
    """Factory: ``make_bn_mlp(seed, shift)``, a BatchNorm MLP with its own running statistics."""
    return _bn_mlp


@pytest.fixture
def splits():
    """Two splits, sized so that a batch size of 64 leaves ragged last batches."""
    return {"train": _data(300, 1), "valid": _data(170, 2)}


@pytest.fixture
def sigint_raises():
    """Ctrl-C raises KeyboardInterrupt during the test, even when the suite was started with SIGINT
    ignored (as a background job is), in which case Python installs no handler of its own."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")
