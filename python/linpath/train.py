"""Native training of linpath's Rust-backed models (:class:`linpath.models.MLP` and the
:class:`linpath.models.NativeModel` family): minibatch SGD run by LibTorch in Rust.

:func:`train` is the trainer of the paper's experiments: SGD with momentum, weight decay, the
max-norm constraint (one value or one per weight), per-parameter learning-rate scales,
learning-rate decay, pylearn2's momentum and learning-rate schedules, dropout and early stopping,
recording the parameter trajectory as it goes. The loop runs in Rust with the GIL released; a
progress bar and Ctrl-C (which stops the run cleanly) are handled every few steps.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from . import _linpath
from ._checks import I64_END, U64_END, integer, positive, real
from ._guard import exclusive
from .data import native_pair
from .engines import progress_bar
from .models import MLP, NativeModel
from .params import ParamVector
from .trajectory import Trajectory

HISTORY_KEYS = (
    "epoch",
    "train_loss",
    "train_error",
    "valid_loss",
    "valid_error",
    "step_loss",
    "lr",
    "momentum",
)


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        history: Lists keyed ``"epoch"``, ``"train_loss"``, ``"train_error"``, ``"valid_loss"``,
            ``"valid_error"`` (one entry per evaluated epoch, epoch 0 being before training; the
            ``valid_*`` keys only with validation data) and ``"step_loss"`` (the minibatch loss of
            every step, dropout active). Losses are mean cross-entropy, errors fractions in [0, 1].
            ``"lr"`` and ``"momentum"`` hold the learning rate and momentum of every epoch trained
            (epoch 1 first, so one entry fewer than ``"epoch"``; an epoch cut short by Ctrl-C
            counts), as ``lr_decay`` and the schedules set them; the update uses them rounded
            to float32.
        trajectory: The recorded checkpoints (step 0, every ``record_every`` steps, the last step).
        initial: The parameters before training.
        final: The parameters after the last step trained.
        best: The parameters at the epoch of lowest validation error (the earliest, on ties;
            epoch 0 counts), or None without validation data.
        interrupted: True when Ctrl-C stopped the run early.
        epochs_run: Epochs trained and evaluated in full.
        best_epoch: The epoch of ``best``, or None.
    """

    history: dict[str, list[float]]
    trajectory: Trajectory
    initial: ParamVector
    final: ParamVector
    best: ParamVector | None
    interrupted: bool
    epochs_run: int
    best_epoch: int | None = None


def _int(name: str, value: Any, optional: bool = False) -> int | None:
    """A count the native trainer takes (an i64, at least 1), or None where ``optional``."""
    return None if value is None and optional else integer(name, value, 1, I64_END)


def _real(name: str, value: Any, optional: bool = False) -> float | None:
    return None if value is None and optional else real(name, value)


def _by_name(what: str, mapping: Any, names: Sequence[str]) -> dict[str, float]:
    """``mapping`` as {parameter name: finite number > 0}; every name a parameter in ``names``."""
    if not isinstance(mapping, Mapping):
        raise TypeError(f"{what} must be a mapping {{parameter name: number}}, got {mapping!r}")
    unknown = [k for k in mapping if k not in names]
    if unknown:
        raise ValueError(
            f"{what} names {unknown[0]!r}, which is not a parameter of this model; "
            f"use one of: {', '.join(names)}"
        )
    return {k: positive(f"{what}[{k!r}]", v) for k, v in mapping.items()}


def _per_parameter(values: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """The config's max_norm (one value), max_norms and lr_scale (by name) entries."""
    max_norm, lr_scale = values["max_norm"], values["lr_scale"]
    by_name = isinstance(max_norm, Mapping)
    return {
        "max_norm": None if by_name else _real("max_norm", max_norm, optional=True),
        "max_norms": _by_name("max_norm", max_norm, names) if by_name else {},
        "lr_scale": {} if lr_scale is None else _by_name("lr_scale", lr_scale, names),
    }


def _schedule(name: str, value: Any, fields: str, strict: bool) -> tuple[float, int, int] | None:
    """``value`` as ``(target, start, saturate)`` with ``0 <= start <= saturate`` (``<`` when
    ``strict``), or None; ``fields`` names the three in messages."""
    if value is None:
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != 3:
        raise TypeError(f"{name} must be a tuple {fields}, got {value!r}")
    target = real(f"{name}[0]", value[0])
    start, saturate = (integer(f"{name}[{i}]", value[i], 0, I64_END) for i in (1, 2))
    if saturate < start or (strict and saturate == start):
        raise ValueError(
            f"{name} = {fields} needs start {'<' if strict else '<='} saturate, "
            f"got start {start} and saturate {saturate}"
        )
    return target, start, saturate


def _schedules(values: dict[str, Any]) -> dict[str, Any]:
    """The config's momentum_schedule and lr_schedule entries."""
    momentum = _schedule(
        "momentum_schedule", values["momentum_schedule"], "(final_momentum, start, saturate)", False
    )
    if momentum is not None and not (math.isfinite(momentum[0]) and 0 <= momentum[0] < 1):
        raise ValueError(f"momentum_schedule's final momentum must lie in [0, 1), got {momentum[0]}")
    lr = _schedule("lr_schedule", values["lr_schedule"], "(decay_factor, start, saturate)", True)
    if lr is not None:
        positive("lr_schedule's decay factor", lr[0])
        if values["lr_decay"] is not None:
            raise ValueError("lr_decay and lr_schedule both change the learning rate; pick one")
    return {"momentum_schedule": momentum, "lr_schedule": lr}


def _config(names: Sequence[str], **values: Any) -> dict[str, Any]:
    """The native trainer's config dict, with types and the ranges of single values checked
    (the ranges of floats and of combinations, such as the number of steps, are checked natively);
    ``names`` are the model's parameter names."""
    config: dict[str, Any] = {k: _int(k, values[k]) for k in ("epochs", "batch_size")}
    config |= {k: _int(k, values[k], optional=True) for k in ("early_stopping", "record_every")}
    config |= {k: _real(k, values[k]) for k in ("lr", "momentum", "weight_decay")}
    config |= {k: _real(k, values[k], optional=True) for k in ("clip_norm", "lr_decay")}
    config |= _per_parameter(values, names) | _schedules(values)
    if not isinstance(values["eval_train"], bool):
        raise TypeError(f"eval_train must be True or False, got {values['eval_train']!r}")
    config["eval_train"] = values["eval_train"]
    return config | {"seed": integer("seed", values["seed"], 0, U64_END)}


def _bar(total: int, progress: bool | None) -> tuple[Any, Any]:
    """A tqdm bar and the native trainer's callback that advances it."""
    bar = progress_bar(total, progress, desc="linpath train", unit="step")

    def report(step: int, total_steps: int, epoch: int, loss: float) -> None:
        bar.update(step - bar.n)
        bar.set_postfix(epoch=epoch, loss=f"{loss:.4f}", refresh=False)

    return bar, report


def train(
    model: MLP | NativeModel,
    train: tuple[torch.Tensor, torch.Tensor],
    valid: tuple[torch.Tensor, torch.Tensor] | None = None,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    max_norm: float | Mapping[str, float] | None = None,
    lr_scale: Mapping[str, float] | None = None,
    momentum_schedule: tuple[float, int, int] | None = None,
    lr_schedule: tuple[float, int, int] | None = None,
    clip_norm: float | None = None,
    lr_decay: float | None = None,
    early_stopping: int | None = None,
    seed: int = 0,
    record_every: int | None = None,
    trajectory: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
    eval_train: bool = True,
) -> TrainResult:
    """Trains a linpath model in place with minibatch SGD, natively, recording its trajectory.

    Each epoch visits the training set once in a fresh random order, in minibatches of
    ``batch_size`` (the last one may be smaller). Each step minimises the model's training
    objective on the minibatch (the mean cross-entropy for classifiers and the language model, the
    multi-prediction loss for the MP-DBM) with its training noise (dropout, masks) active, using
    PyTorch's SGD update
    ``v ← momentum·v + g + weight_decay·θ``, ``θ ← θ − lr·scale·v`` (``scale`` from ``lr_scale``,
    1 by default); with ``max_norm``, each row of every weight matrix (a unit's incoming weights)
    is then rescaled to L2 norm ≤ ``max_norm`` (biases untouched). After each epoch the model is
    evaluated (eval mode) on the whole training and validation sets, and ``lr`` is multiplied by
    ``lr_decay``.

    The schedules are pylearn2's ``MomentumAdjustor`` and ``LinearDecayOverEpoch`` (the maxout and
    MP-DBM recipes), with their epoch indexing: pylearn2 updates them once before training and
    after each epoch, so epoch ``e`` (1-based) trains with their value at ``e``. With
    ``momentum_schedule=(final, start, saturate)`` the momentum of epoch ``e`` is
    ``momentum·(1 − a) + final·a`` with ``a = clip((e − start) / (saturate − start), 0, 1)`` (with
    ``start == saturate``: ``momentum`` before ``start``, ``final`` from it on). With
    ``lr_schedule=(factor, start, saturate)`` the learning rate of epoch ``e`` is ``lr`` for
    ``e < start``, ``lr − s·(e − start + 1)`` with ``s = lr·(1 − factor) / (saturate − start + 1)``
    for ``start ≤ e < saturate``, and ``lr·factor`` from ``saturate`` on. The update stays
    PyTorch's (pylearn2's velocity holds ``−lr·v`` instead, which differs only while the
    learning rate changes); with a momentum schedule the velocity is kept even while the momentum
    is 0, so a step after the momentum rises uses the previous ones.

    The run is reproducible: the minibatch order and the dropout masks are drawn from ``seed``,
    so one seed gives bit-identical results. The global torch RNG is left as it was.

    Ctrl-C stops training after the current step (it is checked every few steps) and returns
    what was trained so far with ``interrupted=True``; an epoch cut short is not evaluated.

    Args:
        model: A :class:`linpath.models.MLP` or another :class:`linpath.models.NativeModel`
            (trained in place).
        train: ``(X, Y)``: inputs ``[n, sizes[0]]`` (floating point; converted to float32) and
            integer class indices ``[n]`` in ``[0, sizes[-1])``.
        valid: Validation ``(X, Y)`` in the same form, or None.
        epochs: Passes over the training set (at least 1).
        batch_size: Examples per step (at least 1).
        lr: Learning rate (positive).
        momentum: Momentum in [0, 1).
        weight_decay: L2 penalty coefficient added to the gradient (non-negative).
        max_norm: Largest L2 norm of each unit's incoming weight vector (of each filter for
            convolutions), or None. A mapping {parameter name: norm} (names as in
            ``model.named_parameters()``, e.g. ``{"convs.0.weight": 0.9, "fc.weight": 1.9}``)
            sets one per weight, as pylearn2's per-layer ``max_col_norm``/``max_kernel_norm``;
            weights left out are unconstrained.
        lr_scale: A mapping {parameter name: factor > 0} multiplying the learning rate of single
            parameters (pylearn2's ``W_lr_scale``/``b_lr_scale``), or None (every factor 1).
        momentum_schedule: ``(final_momentum, start, saturate)``: the momentum rises linearly
            from ``momentum`` at epoch ``start`` to ``final_momentum`` in [0, 1) at epoch
            ``saturate`` (``0 <= start <= saturate``), as described above; or None.
        lr_schedule: ``(decay_factor, start, saturate)``: the learning rate falls linearly from
            ``lr`` to ``lr·decay_factor`` (``decay_factor > 0``) between epochs ``start`` and
            ``saturate`` (``0 <= start < saturate``), as described above; or None. Not with
            ``lr_decay``.
        clip_norm: Largest L2 norm of the whole gradient; a longer gradient is scaled down to it
            before the update (``torch.nn.utils.clip_grad_norm_``), or None.
        lr_decay: Factor applied to ``lr`` after every epoch, or None for a constant rate.
        early_stopping: Patience in epochs, or None. Training stops once the validation error
            has not improved for this many epochs; at the end (also after Ctrl-C) the model
            holds the best parameters (``result.best``; ``result.final`` is where training
            stopped). Needs ``valid``. Without it the model keeps the final parameters.
        seed: Seed of the minibatch order and the dropout masks.
        record_every: Record the parameters every this many steps; None records once per epoch.
            Step 0 (before training) and the last step are always recorded.
        trajectory: A new file to write the trajectory to (never overwrites one), or None to
            keep it in memory.
        progress: Show a progress bar: True always, False never, None (default) when training
            takes more than two seconds.
        eval_train: Evaluate the whole training set after each epoch (and before training) for
            ``history["train_loss"]`` and ``history["train_error"]``. False skips those passes
            (the keys are then absent; ``step_loss`` still has every minibatch's loss).

    Returns:
        A :class:`TrainResult`.

    Raises:
        TypeError: If ``model`` is not a linpath MLP, the data are not pairs of tensors of the
            right kinds, or a hyper-parameter has the wrong type (``lr_scale`` not a mapping, a
            schedule not a 3-tuple of a number and two integers).
        ValueError: For out-of-range hyper-parameters (counts must lie in [1, 2**63), the seed in
            [0, 2**64), epochs x steps per epoch below 2**63), names in ``max_norm`` or
            ``lr_scale`` that are not parameters of the model (or, for ``max_norm``, not weights
            the constraint applies to: biases are not), schedules out of order, ``lr_decay``
            together with ``lr_schedule``, data of the wrong shape, mismatched
            X/Y lengths, class indices out of range, ``early_stopping`` without ``valid``, an
            existing ``trajectory`` file, or an in-memory trajectory (``trajectory=None``) whose
            checkpoints would not fit in this machine's memory.
        MemoryError: If libtorch cannot allocate what a step needs (e.g. a batch too large).
    """
    if not isinstance(model, MLP | NativeModel):
        raise TypeError(
            f"linpath.train trains a linpath.models.MLP or NativeModel, got {type(model).__name__}; "
            "for other modules write a PyTorch loop with linpath.TrajectoryRecorder"
        )
    config = _config(
        [name for name, _ in model.named_parameters()],
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        max_norm=max_norm,
        lr_scale=lr_scale,
        momentum_schedule=momentum_schedule,
        lr_schedule=lr_schedule,
        clip_norm=clip_norm,
        lr_decay=lr_decay,
        early_stopping=early_stopping,
        seed=seed,
        record_every=record_every,
        eval_train=eval_train,
    )
    input_dtype = getattr(model, "input_dtype", torch.float32)
    train_pair = native_pair(train, "train", input_dtype)
    valid_pair = None if valid is None else native_pair(valid, "valid", input_dtype)
    path = None if trajectory is None else os.fsdecode(trajectory)
    n = train_pair[0].shape[0] if train_pair[0].dim() else 0
    steps = config["epochs"] * -(-n // config["batch_size"])
    bar, report = _bar(max(steps, 0), progress)
    rng_state = torch.random.get_rng_state()
    try:
        # Dropout draws from the global CPU generator, shared with the native code.
        torch.default_generator.manual_seed(config["seed"])
        with bar, exclusive(model.parameters(), "train the model", "training"):
            callback = None if progress is False else report
            out = _linpath.train_native(model._native, train_pair, valid_pair, config, path, callback)
    finally:
        torch.random.set_rng_state(rng_state)
    return _result(model, out, has_valid=valid is not None, has_train=eval_train)


def _result(model: MLP | NativeModel, out: dict[str, Any], has_valid: bool, has_train: bool) -> TrainResult:
    names = [n for n, _ in model.named_parameters()]
    shapes = [tuple(p.shape) for p in model.parameters()]
    kept = {"valid": has_valid, "train": has_train}
    history = {k: list(out["history"][k]) for k in HISTORY_KEYS if kept.get(k.split("_")[0], True)}
    best = out["best"]
    return TrainResult(
        history=history,
        trajectory=Trajectory(out["store"]),
        initial=ParamVector(out["initial"], names, shapes),
        final=ParamVector(out["final"], names, shapes),
        best=None if best is None else ParamVector(best, names, shapes),
        interrupted=bool(out["interrupted"]),
        epochs_run=int(out["epochs_run"]),
        best_epoch=out["best_epoch"],
    )
