"""Training runs shared by the figures, cached on disk under ``OUT/runs/``.

Figures 1 and 5 use the same maxout run, Figures 3 and 4 the same ReLU run, so each run is trained
once per output directory: its trajectory file and a ``run.json`` are kept in
``OUT/runs/<name>-<hash of its RunSpec>/`` and reused while the spec is unchanged. ``run.json`` is
written last (atomically), so a run cut short is trained again rather than half-read.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch

from .. import datasets, models, preprocess
from .._io import save_json, temp_path
from ..engines import loss_and_error
from ..models import MLP, NativeModel, TorchMLP
from ..params import ParamVector, assign
from ..sweep import Sweep, interpolate
from ..train import train
from ..trajectory import Trajectory
from .scales import NET_DATASETS, NetSpec, RunSpec, Scale
from .torch_train import train_torch

RUN_FORMAT = "linpath-run/1"


@dataclass(frozen=True)
class Run:
    """A finished training run: its spec, trajectory, learning curve and test error."""

    name: str
    spec: RunSpec | NetSpec
    trajectory: Trajectory
    history: dict[str, list[float]]
    test_error: float
    test_examples: int
    seconds: float
    test_loss: float | None = None

    @property
    def initial(self) -> ParamVector:
        """θi: the parameters before training."""
        return self.trajectory[0]

    @property
    def final(self) -> ParamVector:
        """θf: the parameters after the last step."""
        return self.trajectory[-1]

    @property
    def test_mistakes(self) -> int:
        """Misclassified test examples at θf."""
        return round(self.test_error * self.test_examples)

    def model(self) -> MLP | NativeModel:
        """A fresh model of this run's architecture, holding θf."""
        model = new_model(self.spec)
        assign(model, self.final)
        return model


def new_model(spec: RunSpec | NetSpec) -> MLP | NativeModel:
    """The untrained model of ``spec`` (initialised from ``spec.seed``)."""
    if isinstance(spec, NetSpec):
        return getattr(models, spec.model)(**dict(spec.config), seed=spec.seed)
    return MLP(spec.sizes, spec.activation, pieces=spec.pieces, dropout=spec.dropout, seed=spec.seed)


def load_dataset(name: str, steps: int = 20, binary: bool = False) -> datasets.Dataset:
    """A dataset of :data:`NET_DATASETS` as ``(X, Y)`` splits (PTB as windows of ``steps`` words;
    MNIST binarised with seed 0 when ``binary``, as :func:`datasets.binarized_mnist`)."""
    if binary and name != "mnist":
        raise ValueError(f"only MNIST is binarised, not {name}")
    if name == "mnist":
        return datasets.binarized_mnist(0) if binary else datasets.mnist()
    if name == "cifar10":
        return datasets.cifar10()
    if name == "ptb":
        corpus = datasets.ptb()
        windows = [datasets.lm_windows(ids, steps) for ids in (corpus.train, corpus.valid, corpus.test)]
        return datasets.Dataset(*windows)
    raise ValueError(f"unknown dataset {name!r}; use one of {NET_DATASETS}")


def whiten(data: datasets.Dataset) -> datasets.Dataset:
    """The maxout paper's CIFAR-10 preprocessing: every image's contrast normalised
    (:func:`preprocess.gcn`), then whitened by a :class:`preprocess.ZCA` fitted on ``data.train``
    (the rows a run trains on) and applied unchanged to the other splits."""
    flat = [(preprocess.gcn(x.flatten(1)), y) for x, y in data.splits().values()]
    zca = preprocess.ZCA().fit(flat[0][0])
    shape = data.train[0].shape[1:]
    return datasets.Dataset(*((zca.transform(x).reshape(-1, *shape), y) for x, y in flat))


TRAINERS = ("native", "torch")


class Context:
    """What the figures of one ``reproduce`` call share: the scale, the data, the runs, the output.

    Args:
        scale: The :class:`Scale`.
        out: Output directory (runs are cached in ``out/runs/``).
        progress: Progress bars: True always, False never, None when a step takes over 2 s.
        device: Where to train and sweep: ``"cpu"`` or a CUDA device such as ``"cuda"``.
        trainer: ``"native"`` (:func:`linpath.train` and the native sweep; CPU only) or ``"torch"``
            (:mod:`linpath.experiments.torch_train` and the module sweep on ``device``). Default:
            native on the CPU, torch elsewhere.
    """

    def __init__(
        self,
        scale: Scale,
        out: str | os.PathLike[str],
        progress: bool | None = None,
        device: str | torch.device = "cpu",
        trainer: str | None = None,
    ) -> None:
        self.scale, self.out, self.progress = scale, Path(out), progress
        self.device = torch.device(device)
        self.trainer = trainer or ("native" if self.device.type == "cpu" else "torch")
        if self.trainer not in TRAINERS:
            raise ValueError(f"unknown trainer {self.trainer!r}; use 'native' or 'torch'")
        if self.trainer == "native" and self.device.type != "cpu":
            raise ValueError(f"the native trainer runs on the CPU; use trainer='torch' for {self.device}")
        self._data: datasets.Dataset | None = None
        self._datasets: dict[tuple[Any, ...], datasets.Dataset] = {}
        self._runs: dict[str, Run] = {}

    @property
    def data(self) -> datasets.Dataset:
        """MNIST, cut to the scale's sizes."""
        if self._data is None:
            full = datasets.mnist()
            n, m = self.scale.train_examples, self.scale.eval_examples
            self._data = datasets.Dataset(
                datasets.head(full.train, n), datasets.head(full.valid, m), datasets.head(full.test, m)
            )
        return self._data

    def data_for(self, spec: RunSpec | NetSpec) -> datasets.Dataset:
        """The data of a run: MNIST cut to the scale's sizes, or the spec's dataset cut to its sizes
        and preprocessed as the spec says (see :func:`whiten` and :func:`load_dataset`)."""
        if isinstance(spec, RunSpec):
            return self.data
        n, m = spec.train_examples, spec.eval_examples
        key = (spec.dataset, spec.steps, spec.preprocess, n, m)
        if key not in self._datasets:
            binary = spec.preprocess == "binarize"
            source = (spec.dataset, spec.steps, binary)
            if source not in self._datasets:
                self._datasets[source] = load_dataset(spec.dataset, spec.steps, binary)
            full = self._datasets[source]
            cut = datasets.Dataset(
                datasets.head(full.train, n), datasets.head(full.valid, m), datasets.head(full.test, m)
            )
            self._datasets[key] = whiten(cut) if spec.preprocess == "gcn_zca" else cut
        return self._datasets[key]

    def run(self, name: str) -> Run:
        """The run called ``name`` in the scale: from memory, from ``OUT/runs/``, or trained now."""
        if name not in self._runs:
            spec = self.scale.runs[name] if name in self.scale.runs else self.scale.nets[name]
            if isinstance(spec, NetSpec) and self.trainer != "native":
                raise ValueError(f"{name}: the advanced networks train natively on the CPU; use device='cpu'")
            suffix = "" if self.trainer == "native" else f"-torch-{self.device.type}"
            folder = self.out / "runs" / f"{name}-{spec.key()}{suffix}"
            self._runs[name] = _load_run(name, spec, folder) or _train_run(name, spec, folder, self)
        return self._runs[name]

    def model_of(self, run: Run) -> torch.nn.Module:
        """The run's network holding θf for this context's sweeps (native MLP, or its twin on the device)."""
        model = run.model()
        return model if self.trainer == "native" else _torch_twin(model, self.device).eval()

    def line(
        self,
        model: torch.nn.Module,
        start: Any,
        end: Any,
        alphas: np.ndarray,
        splits: tuple[str, ...] = ("train", "valid"),
        data: datasets.Dataset | None = None,
    ) -> Sweep:
        """The loss and error along the line from ``start`` to ``end`` on the named splits of
        ``data`` (default: this scale's MNIST)."""
        source = self.data if data is None else data
        pairs = {name: getattr(source, name) for name in splits}
        return interpolate(model, start, end, pairs, alphas=alphas, batch_size=2000, progress=self.progress)


def _torch_twin(model: MLP | NativeModel, device: torch.device) -> TorchMLP:
    """The plain-PyTorch twin of an MLP on ``device``: the torch trainer runs only the MLP runs
    (:meth:`Context.run` refuses the advanced networks first)."""
    if not isinstance(model, MLP):
        raise ValueError(f"the torch trainer runs only the MLPs, not a {type(model).__name__}")
    return model.to_torch().to(device)


def _train_run(name: str, spec: RunSpec | NetSpec, folder: Path, ctx: Context) -> Run:
    folder.mkdir(parents=True, exist_ok=True)
    partial = temp_path(folder / "trajectory.lpt")  # an unpredictable name in a maybe shared folder
    try:
        return _finish_run(name, spec, folder, _train(spec, partial, ctx), ctx, partial)
    except BaseException:
        partial.unlink(missing_ok=True)  # an interrupted or failed run leaves nothing behind
        raise


class _NetTraining(TypedDict, total=False):
    """The training arguments only a :class:`NetSpec` sets (the MLP runs keep train's defaults)."""

    clip_norm: float | None
    weight_decay: float
    lr_scale: dict[str, float] | None
    momentum_schedule: tuple[float, int, int] | None
    lr_schedule: tuple[float, int, int] | None


def _net_training(spec: NetSpec) -> _NetTraining:
    return {
        "clip_norm": spec.clip_norm,
        "weight_decay": spec.weight_decay,
        "lr_scale": dict(spec.lr_scale) if spec.lr_scale else None,
        "momentum_schedule": spec.momentum_schedule,
        "lr_schedule": spec.lr_schedule,
    }


def _train(spec: RunSpec | NetSpec, partial: Path, ctx: Context) -> tuple[torch.nn.Module, dict, float]:
    """Trains the run, streaming its trajectory to ``partial``; returns (model, history, seconds)."""
    model = new_model(spec)
    data = ctx.data_for(spec)
    train_pair = datasets.head(data.train, spec.train_examples)
    t0 = time.perf_counter()
    if ctx.trainer == "torch":
        if not isinstance(spec, RunSpec):  # Context.run refuses the advanced networks first
            raise ValueError(f"the torch trainer runs only the MLPs, not a {spec.model}")
        twin = _torch_twin(model, ctx.device)
        history = train_torch(twin, spec, train_pair, data.valid, partial, ctx.progress)
        return twin, history, time.perf_counter() - t0
    steps_per_epoch = math.ceil(len(train_pair[1]) / spec.batch_size)
    every = (
        steps_per_epoch // spec.records_per_epoch if spec.records_per_epoch else steps_per_epoch * spec.epochs
    )
    extra: _NetTraining = {}
    max_norm: float | dict[str, float] | None = spec.max_norm
    if isinstance(spec, NetSpec):
        extra = _net_training(spec)
        max_norm = dict(spec.max_norms) if spec.max_norms else spec.max_norm
        if getattr(model, "visible_bias_from", "zero") == "data":  # the MP-DBM's, from the raw pixels
            raw = datasets.head(datasets.mnist().train, spec.train_examples)[0]
            model.fit_visible_bias(raw)  # type: ignore[operator]
    result = train(
        model,
        train_pair,
        data.valid,
        epochs=spec.epochs,
        batch_size=spec.batch_size,
        lr=spec.lr,
        momentum=spec.momentum,
        max_norm=max_norm,
        lr_decay=spec.lr_decay,
        **extra,
        seed=spec.seed,
        record_every=max(every, 1),
        trajectory=partial,
        progress=ctx.progress,
    )
    if result.interrupted:
        raise KeyboardInterrupt("training was interrupted")
    history = result.history
    del result  # closes the trajectory file before it is moved
    return model, history, time.perf_counter() - t0


def _finish_run(
    name: str,
    spec: RunSpec | NetSpec,
    folder: Path,
    outcome: tuple[torch.nn.Module, dict, float],
    ctx: Context,
    partial: Path,
) -> Run:
    """Moves the finished trajectory into place, measures the test error and writes ``run.json``."""
    model, history, seconds = outcome
    data = ctx.data_for(spec)
    os.replace(partial, folder / "trajectory.lpt")
    test_loss, test_error = loss_and_error(model, data.test)
    record = {
        "format": RUN_FORMAT,
        "name": name,
        "spec": dataclasses.asdict(spec),
        "history": history,
        "test_error": test_error,
        "test_loss": test_loss,
        "test_examples": len(data.test[1]),
        "seconds": seconds,
        "trainer": ctx.trainer,
        "device": str(ctx.device),
    }
    save_json(record, folder / "run.json")
    return _load_run(name, spec, folder) or _corrupt(folder)


def _corrupt(folder: Path) -> Run:
    raise ValueError(f"the run just written to {folder} cannot be read back")


def _load_run(name: str, spec: RunSpec | NetSpec, folder: Path) -> Run | None:
    """The cached run in ``folder``, or None when there is none (or it does not match ``spec``)."""
    try:
        record = json.loads((folder / "run.json").read_text())
        trajectory = Trajectory.open(folder / "trajectory.lpt")
    except (FileNotFoundError, ValueError):
        return None
    if record.get("format") != RUN_FORMAT or record.get("spec") != json.loads(
        json.dumps(dataclasses.asdict(spec))
    ):
        return None
    return Run(
        name=name,
        spec=spec,
        trajectory=trajectory,
        history=record["history"],
        test_error=float(record["test_error"]),
        test_examples=int(record["test_examples"]),
        seconds=float(record["seconds"]),
        test_loss=record.get("test_loss"),
    )
