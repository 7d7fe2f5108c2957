"""The three scales of the reproduction: the models, schedules and grids of each figure.

* ``smoke``: seconds per figure on a slice of MNIST (for CI); the numbers mean little.
* ``small``: real MNIST (all 50,000 training images), the paper's architectures or close to them,
  fewer epochs; minutes on a 2-core CPU.
* ``paper``: the paper's sizes and schedules; an hour or more on a CPU.

The maxout network is that of Goodfellow et al. (2013) for permutation-invariant MNIST: two maxout
layers of 240 units with 5 pieces, dropout (drop 0.2 of the inputs, 0.5 of the hidden units),
max-norm 1.9365 on each unit's incoming weights, SGD with momentum, batches of 100. The paper does
not give the sigmoid and ReLU networks' sizes; these are fully connected nets of two hidden layers.

Figures 6 to 8 use the advanced networks of :mod:`linpath.models` (a :class:`NetSpec` each): the
conv maxout net on CIFAR-10 (Goodfellow et al. 2013), the MP-DBM on MNIST (Goodfellow et al. 2013)
and the LSTM language model on Penn Treebank (Zaremba et al. 2014, small configuration).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import TypedDict

from ..models.conv_maxout import PAPER_CONFIG

SCALE_NAMES = ("smoke", "small", "paper")


@dataclass(frozen=True)
class RunSpec:
    """One training run: the model, the schedule and the seed (everything that fixes its result).

    ``records_per_epoch`` > 0 records the trajectory that many times per epoch (for Figure 5);
    0 records only the initial and final parameters.
    """

    sizes: tuple[int, ...]
    activation: str
    epochs: int
    lr: float
    momentum: float
    pieces: int = 2
    dropout: tuple[float, float] | None = None
    max_norm: float | None = None
    lr_decay: float | None = None
    batch_size: int = 100
    seed: int = 0
    records_per_epoch: int = 0
    train_examples: int | None = None  # None: the whole training set

    def key(self) -> str:
        """A short hash of every field: a cached run is reused only when nothing changed."""
        return spec_key(self)

    def describe(self) -> str:
        """E.g. ``"maxout 784-240x5-240x5-10, dropout (0.2, 0.5), max-norm 1.94, 15 epochs"``."""
        hidden = [f"{s}x{self.pieces}" if self.activation == "maxout" else str(s) for s in self.sizes[1:-1]]
        text = f"{self.activation} {'-'.join([str(self.sizes[0]), *hidden, str(self.sizes[-1])])}"
        if self.dropout:
            text += f", dropout {self.dropout}"
        if self.max_norm:
            text += f", max-norm {self.max_norm:g}"
        return f"{text}, {self.epochs} epochs, seed {self.seed}"


def spec_key(spec: RunSpec | NetSpec) -> str:
    """A short hash of every field of a spec."""
    text = json.dumps(dataclasses.asdict(spec), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


#: The datasets a :class:`NetSpec` can name.
NET_DATASETS = ("mnist", "cifar10", "ptb")


@dataclass(frozen=True)
class NetSpec:
    """One training run of an advanced network (Figures 6 to 8).

    ``model`` names a class of :mod:`linpath.models` (``"ConvMaxout"``, ``"MPDBM"``,
    ``"LSTMLanguageModel"``) and ``config`` its constructor's keyword arguments (as pairs, so the
    spec stays hashable); ``dataset`` is one of :data:`NET_DATASETS`. ``train_examples`` and
    ``eval_examples`` cut the splits (rows: images, or windows of ``steps`` words for PTB).
    """

    model: str
    config: tuple[tuple[str, object], ...]
    dataset: str
    epochs: int
    lr: float
    momentum: float = 0.0
    batch_size: int = 100
    max_norm: float | None = None
    clip_norm: float | None = None
    lr_decay: float | None = None
    weight_decay: float = 0.0
    seed: int = 0
    records_per_epoch: int = 0
    train_examples: int | None = None
    eval_examples: int | None = None
    steps: int = 20  # words per window (PTB only)

    def key(self) -> str:
        """A short hash of every field: a cached run is reused only when nothing changed."""
        return spec_key(self)

    def describe(self) -> str:
        """E.g. ``"MPDBM(hidden=(500, 1000)), 10 epochs, seed 0"``."""
        args = ", ".join(f"{k}={v}" for k, v in self.config)
        return f"{self.model}({args}), {self.epochs} epochs, seed {self.seed}"


@dataclass(frozen=True)
class Scale:
    """Everything that differs between the scales."""

    name: str
    runs: dict[str, RunSpec]
    line_points: int  # α values on [-0.5, 1.5] for Figures 1, 2 and 4
    zoom_points: int  # α values per panel of Figure 3 (the paper: 200)
    train_examples: int | None = None  # None: all 50,000
    eval_examples: int | None = None  # validation and test examples; None: all 10,000 of each
    notes: list[str] = field(default_factory=list)
    nets: dict[str, NetSpec] = field(default_factory=dict)  # Figures 6 to 8
    # α values per line of Figures 6 to 8 (n − 1 a multiple of 12, so that 0 and 1 fall on each grid)
    net_points: int = 61
    # The experiment between two solutions (linpath.experiments.between): the widths of its
    # 784-w-w-w-10 ReLU MLPs (runs "align<w>_seed0" and "align<w>_seed1"), the epochs of its Bezier
    # curve between the widest pair, and the examples its lines and activation matching read.
    align_widths: tuple[int, ...] = ()
    curve_epochs: int = 1
    align_examples: int = 10_000


class _CommonArgs(TypedDict):
    """The RunSpec arguments every MNIST run of a scale shares."""

    train_examples: int | None
    batch_size: int


def _mnist_runs(
    hidden: int, maxout: tuple[int, int], epochs: dict[str, int], records: int, n: int | None
) -> dict[str, RunSpec]:
    units, pieces = maxout
    mlp = (784, hidden, hidden, 10)
    common: _CommonArgs = {"train_examples": n, "batch_size": 100}
    relu = RunSpec(mlp, "relu", epochs["relu"], lr=0.05, momentum=0.9, **common)
    return {
        "maxout": RunSpec(
            (784, units, units, 10),
            "maxout",
            epochs["maxout"],
            lr=0.1,
            momentum=0.7,
            pieces=pieces,
            dropout=(0.2, 0.5),
            max_norm=1.9365,
            lr_decay=0.98,
            records_per_epoch=records,
            **common,
        ),
        "sigmoid": RunSpec(
            mlp, "sigmoid", epochs["sigmoid"], lr=0.2, momentum=0.9, dropout=(0.2, 0.5), **common
        ),
        "relu_dropout": dataclasses.replace(relu, epochs=epochs["relu_dropout"], dropout=(0.2, 0.5)),
        "relu": relu,
        "relu_seed1": dataclasses.replace(relu, seed=1),
    }


def _align_runs(widths: tuple[int, ...], epochs: int, n: int | None) -> dict[str, RunSpec]:
    """Two 784-w-w-w-10 ReLU MLPs per width, from seeds 0 and 1 (Ainsworth et al. 2022's MNIST MLP has
    512 units in each of its three hidden layers); SGD with momentum, as the other MNIST runs."""
    return {
        f"align{w}_seed{seed}": RunSpec(
            (784, w, w, w, 10), "relu", epochs, lr=0.05, momentum=0.9, seed=seed, train_examples=n
        )
        for w in widths
        for seed in (0, 1)
    }


def _conv(
    epochs: int,
    n: int | None,
    m: int | None,
    config: dict[str, object],
    lr: float = 0.02,
    lr_decay: float = 0.95,
) -> NetSpec:
    """The conv maxout net: SGD with momentum and max-norm, as in Goodfellow et al. (2013); lr 0.05
    diverged in a 2-epoch probe of the small net, 0.02 did not. A decay of 0.85 per epoch instead of
    0.95 (to calm the swings of the learning curve) ended worse: 58.1% test error against 54.3%."""
    return NetSpec(
        "ConvMaxout",
        tuple((k, tuple(v) if isinstance(v, list | tuple) else v) for k, v in config.items()),
        "cifar10",
        epochs,
        lr=lr,
        momentum=0.9,
        batch_size=100,
        max_norm=1.9365,
        lr_decay=lr_decay,
        records_per_epoch=2,
        train_examples=n,
        eval_examples=m,
    )


def _mpdbm(epochs: int, n: int | None, m: int | None, hidden: tuple[int, int], mf_steps: int) -> NetSpec:
    """The MP-DBM: MNIST, SGD with momentum on the multi-prediction loss (which is divided by the
    785 variables, hence the large learning rate: 10 beat 1, 30 and 100 in a 3-epoch probe)."""
    config = (("n_hidden1", hidden[0]), ("n_hidden2", hidden[1]), ("mf_steps", mf_steps))
    return NetSpec(
        "MPDBM",
        config,
        "mnist",
        epochs,
        lr=10.0,
        momentum=0.5,
        batch_size=100,
        records_per_epoch=2,
        train_examples=n,
        eval_examples=m,
    )


def _lstm(epochs: int, n: int | None, m: int | None, size: int, lr_decay: float = 0.8) -> NetSpec:
    """The LSTM language model (Zaremba et al. 2014, small): windows of 20 words, batches of 20, lr 1,
    gradient norm clipped at 5, init ±0.1; the learning rate decays by ``lr_decay`` each epoch."""
    return NetSpec(
        "LSTMLanguageModel",
        (("embedding_size", size), ("hidden_size", size), ("num_layers", 2)),
        "ptb",
        epochs,
        lr=1.0,
        batch_size=20,
        clip_norm=5.0,
        lr_decay=lr_decay,
        records_per_epoch=2,
        train_examples=n,
        eval_examples=m,
        steps=20,
    )


_SMOKE_CONV = {
    "channels": (8, 16),
    "kernels": (5, 5),
    "paddings": (2, 2),
    "pools": (2, 2),
    "pool_strides": (2, 2),
    "fc_units": 32,
    "fc_pieces": 2,
}

SCALES = {
    "smoke": Scale(
        "smoke",
        _mnist_runs(64, (32, 3), {"maxout": 2, "sigmoid": 2, "relu_dropout": 2, "relu": 2}, 4, 2000)
        | _align_runs((16, 32), 2, 2000),
        line_points=21,
        zoom_points=20,
        train_examples=2000,
        eval_examples=1000,
        notes=["smoke scale: 2,000 training images, tiny networks, 2 epochs; for tests, not for conclusions"],
        nets={
            "conv_maxout": _conv(2, 1000, 300, _SMOKE_CONV),
            "mpdbm": _mpdbm(2, 1000, 300, (32, 64), 3),
            "lstm": _lstm(2, 200, 50, 16),
        },
        net_points=13,
        align_widths=(16, 32),
        curve_epochs=1,
        align_examples=1000,
    ),
    "small": Scale(
        "small",
        _mnist_runs(512, (240, 5), {"maxout": 40, "sigmoid": 30, "relu_dropout": 30, "relu": 15}, 2, None)
        | _align_runs((64, 128, 256, 512), 10, None),
        line_points=101,
        zoom_points=200,
        nets={
            "conv_maxout": _conv(12, 20_000, 1000, {}),
            "mpdbm": _mpdbm(15, 20_000, 2000, (500, 1000), 5),
            "lstm": _lstm(6, 20_000, 1000, 200),
        },
        net_points=49,
        align_widths=(64, 128, 256, 512),
        curve_epochs=4,
    ),
    "paper": Scale(
        "paper",
        _mnist_runs(
            1024, (240, 5), {"maxout": 200, "sigmoid": 100, "relu_dropout": 100, "relu": 100}, 1, None
        )
        | _align_runs((64, 128, 256, 512, 1024), 30, None),
        line_points=201,
        zoom_points=200,
        nets={
            "conv_maxout": _conv(100, None, None, PAPER_CONFIG),
            "mpdbm": _mpdbm(100, None, None, (500, 1000), 10),
            "lstm": _lstm(13, None, None, 200),
        },
        net_points=121,
        align_widths=(64, 128, 256, 512, 1024),
        curve_epochs=20,
    ),
}


def get_scale(name: str) -> Scale:
    """The scale called ``name`` (one of :data:`SCALE_NAMES`)."""
    if name not in SCALES:
        raise ValueError(f"unknown scale {name!r}; use one of {', '.join(SCALE_NAMES)}")
    return SCALES[name]
