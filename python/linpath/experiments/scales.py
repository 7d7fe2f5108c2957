"""The three scales of the reproduction: the models, schedules and grids of each figure.

* ``smoke``: seconds per figure on a slice of MNIST (for CI); the numbers mean little.
* ``small``: real MNIST (all 50,000 training images), the paper's architectures or close to them,
  fewer epochs; minutes on a 2-core CPU.
* ``paper``: the paper's sizes and schedules; an hour or more on a CPU.

The maxout network is that of Goodfellow et al. (2013) for permutation-invariant MNIST: two maxout
layers of 240 units with 5 pieces, dropout (drop 0.2 of the inputs, 0.5 of the hidden units),
max-norm 1.9365 on each unit's incoming weights, SGD with momentum, batches of 100. The paper does
not give the sigmoid and ReLU networks' sizes; these are fully connected nets of two hidden layers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

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
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def describe(self) -> str:
        """E.g. ``"maxout 784-240x5-240x5-10, dropout (0.2, 0.5), max-norm 1.94, 15 epochs"``."""
        hidden = [f"{s}x{self.pieces}" if self.activation == "maxout" else str(s) for s in self.sizes[1:-1]]
        text = f"{self.activation} {'-'.join([str(self.sizes[0]), *hidden, str(self.sizes[-1])])}"
        if self.dropout:
            text += f", dropout {self.dropout}"
        if self.max_norm:
            text += f", max-norm {self.max_norm:g}"
        return f"{text}, {self.epochs} epochs, seed {self.seed}"


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


def _mnist_runs(
    hidden: int, maxout: tuple[int, int], epochs: dict[str, int], records: int, n: int | None
) -> dict[str, RunSpec]:
    units, pieces = maxout
    mlp = (784, hidden, hidden, 10)
    common = {"train_examples": n, "batch_size": 100}
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


SCALES = {
    "smoke": Scale(
        "smoke",
        _mnist_runs(64, (32, 3), {"maxout": 2, "sigmoid": 2, "relu_dropout": 2, "relu": 2}, 4, 2000),
        line_points=21,
        zoom_points=20,
        train_examples=2000,
        eval_examples=1000,
        notes=["smoke scale: 2,000 training images, tiny networks, 2 epochs; for tests, not for conclusions"],
    ),
    "small": Scale(
        "small",
        _mnist_runs(512, (240, 5), {"maxout": 40, "sigmoid": 30, "relu_dropout": 30, "relu": 15}, 2, None),
        line_points=101,
        zoom_points=200,
    ),
    "paper": Scale(
        "paper",
        _mnist_runs(
            1024, (240, 5), {"maxout": 200, "sigmoid": 100, "relu_dropout": 100, "relu": 100}, 1, None
        ),
        line_points=201,
        zoom_points=200,
    ),
}


def get_scale(name: str) -> Scale:
    """The scale called ``name`` (one of :data:`SCALE_NAMES`)."""
    if name not in SCALES:
        raise ValueError(f"unknown scale {name!r}; use one of {', '.join(SCALE_NAMES)}")
    return SCALES[name]
