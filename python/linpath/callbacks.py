"""Callbacks that record a training trajectory from inside a training framework.

- :class:`TrajectoryCallback` for Lightning (``lightning.pytorch``, or ``pytorch_lightning``);
- :class:`HFTrajectoryCallback` for the Hugging Face ``transformers.Trainer``.

Both record θ0 when training starts, then every ``every_n_steps`` optimizer steps and when
training ends, into a :class:`linpath.TrajectoryRecorder` (in memory, or streamed to a file); and,
given ``sweep_data``, evaluate the line from θ0 to the current parameters at each validation
(:func:`linpath.interpolate`), kept in ``callback.sweeps``.

Both take the same arguments (keyword-only after ``path``):

- ``path``: a trajectory file to stream the checkpoints to, or None (default) to keep them in memory;
  ``overwrite=`` / ``append=`` for an existing file, ``dtype=`` as for :class:`linpath.TrajectoryRecorder`.
- ``every_n_steps``: record after every this many optimizer steps (default 100).
- ``module``: the name of the submodule to record (``"model"`` for a LightningModule holding its network
  as ``self.model``); None records the whole model.
- ``sweep_data``, ``alphas``, ``sweep_kwargs``: data for a line sweep from θ0 to the current parameters
  at each validation, its α grid (default 11 points on [0, 1]) and further :func:`linpath.interpolate`
  arguments (``loss=`` ...).

Only the main process records and sweeps (rank 0 of a distributed run). ``callback.trajectory`` is the
recorded :class:`linpath.Trajectory`, ``callback.sweeps`` the ``[(step, Sweep), ...]``.

Neither framework is a dependency of linpath: each class is created the first time it is used
(``linpath.callbacks.TrajectoryCallback``), so importing linpath imports neither.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import nn

from ._checks import I64_END, integer
from .sweep import Sweep, interpolate
from .trajectory import Trajectory, TrajectoryRecorder


class _Recording:
    """What both callbacks do, framework aside.

    Args:
        path: A trajectory file to stream the checkpoints to, or None to keep them in memory.
        every_n_steps: Record after every this many optimizer steps (besides the start and the end).
        module: The name of the submodule to record (e.g. ``"model"`` for a LightningModule that
            holds the network as ``self.model``); None records the whole model.
        sweep_data: Data for a line sweep from θ0 to the current parameters at each validation (any
            form :func:`linpath.interpolate` takes); None for no sweeps.
        alphas: The α grid of those sweeps (default 11 points on [0, 1]).
        sweep_kwargs: Further keyword arguments for :func:`linpath.interpolate` (``loss=`` ...).
        dtype: The trajectory's element type (see :class:`linpath.TrajectoryRecorder`).
        overwrite: Replace an existing trajectory file at ``path``.
        append: Add to an existing trajectory file at ``path``.

    Attributes:
        sweeps: ``[(step, Sweep), ...]``, one per validation with ``sweep_data``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        every_n_steps: int = 100,
        module: str | None = None,
        sweep_data: Any = None,
        alphas: Any = None,
        sweep_kwargs: dict[str, Any] | None = None,
        dtype: torch.dtype | None = None,
        overwrite: bool = False,
        append: bool = False,
    ) -> None:
        super().__init__()
        self.every_n_steps = integer("every_n_steps", every_n_steps, 1, I64_END)
        if module is not None and not isinstance(module, str):
            raise TypeError(f"module must be the name of a submodule (a str) or None, got {module!r}")
        self._options: dict[str, Any] = {
            "path": path,
            "dtype": dtype,
            "overwrite": overwrite,
            "append": append,
        }
        self._module_name = module
        self.sweep_data = sweep_data
        self.alphas = np.linspace(0.0, 1.0, 11) if alphas is None else alphas
        self.sweep_kwargs = dict(sweep_kwargs or {})
        self.sweeps: list[tuple[int, Sweep]] = []
        self._recorder: TrajectoryRecorder | None = None
        self._module: nn.Module | None = None
        self._theta0: dict[str, torch.Tensor] | None = None
        self._last: int | None = None

    @property
    def trajectory(self) -> Trajectory:
        """The checkpoints recorded so far (a live view).

        Raises:
            RuntimeError: Before training has started.
        """
        if self._recorder is None:
            raise RuntimeError("no trajectory yet: it is created when training starts")
        return self._recorder.trajectory

    def _start(self, model: nn.Module, step: int) -> None:
        """Creates the recorder (once) on the recorded module, and records ``step``."""
        if self._recorder is None:
            if not isinstance(model, nn.Module):
                raise TypeError(f"the trainer gave no nn.Module to record, but {type(model).__name__}")
            module = model if self._module_name is None else model.get_submodule(self._module_name)
            self._module = module
            self._recorder = TrajectoryRecorder(module, **self._options)
            if self.sweep_data is not None:
                self._theta0 = {k: v.detach().clone() for k, v in module.state_dict().items()}
        self._record(step)

    def _record(self, step: int) -> None:
        if self._recorder is not None and step != self._last:
            self._recorder.record(step)
            self._last = step

    def _step(self, step: int) -> None:
        if step % self.every_n_steps == 0:
            self._record(step)

    def _sweep(self, step: int) -> Sweep | None:
        """The line from θ0 to the current parameters, kept in :attr:`sweeps`; None without sweep_data."""
        if self.sweep_data is None or self._module is None or self._theta0 is None:
            return None
        # Only rank 0 sweeps here, so never on the process group (the other ranks would not join it).
        kwargs = {"alphas": self.alphas, "progress": False, "distributed": False, **self.sweep_kwargs}
        sweep = interpolate(self._module, self._theta0, self._module, self.sweep_data, **kwargs)
        self.sweeps.append((step, sweep))
        return sweep


def _monotonicity_gap(sweep: Sweep) -> float | None:
    """The loss's largest rise along the line on [0, 1] (first split), if the grid has two points there."""
    inside = (sweep.alphas >= 0.0) & (sweep.alphas <= 1.0)
    metric = "loss" if "loss" in sweep.values[sweep.splits[0]] else None
    if inside.sum() < 2 or metric is None:
        return None
    return sweep.monotonicity_gap(metric=metric)


def _lightning_callback() -> type:
    try:
        from lightning.pytorch import Callback
    except ImportError:
        try:
            from pytorch_lightning import Callback  # type: ignore[assignment]
        except ImportError:
            raise ImportError(
                "linpath.callbacks.TrajectoryCallback needs Lightning: pip install lightning"
            ) from None

    class TrajectoryCallback(_Recording, Callback):
        """Records a Lightning run's trajectory (see :class:`linpath.callbacks._Recording` for the
        arguments): θ0 at ``on_train_start``, every ``every_n_steps`` global steps, and at
        ``on_train_end``; with ``sweep_data``, a line sweep at each validation epoch's end (not
        during the sanity check), whose loss monotonicity gap on [0, 1] is logged as
        ``linpath/monotonicity_gap``."""

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            if trainer.is_global_zero:
                self._start(pl_module, int(trainer.global_step))

        def on_train_batch_end(
            self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
        ) -> None:
            self._step(int(trainer.global_step))

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            self._record(int(trainer.global_step))

        def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            if trainer.sanity_checking or not trainer.is_global_zero:
                return
            sweep = self._sweep(int(trainer.global_step))
            gap = None if sweep is None else _monotonicity_gap(sweep)
            if gap is not None:
                pl_module.log("linpath/monotonicity_gap", gap)

    return TrajectoryCallback


def _hf_callback() -> type:
    try:
        from transformers import TrainerCallback
    except ImportError:
        raise ImportError(
            "linpath.callbacks.HFTrajectoryCallback needs transformers: pip install transformers"
        ) from None

    class HFTrajectoryCallback(_Recording, TrainerCallback):
        """Records a Hugging Face ``Trainer`` run's trajectory (arguments as for
        :class:`TrajectoryCallback`): θ0 at ``on_train_begin``, every ``every_n_steps`` global
        steps, and at ``on_train_end``; with ``sweep_data``, a line sweep at each ``on_evaluate``."""

        def on_train_begin(
            self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any
        ) -> None:
            if state.is_world_process_zero:
                self._start(model, int(state.global_step))

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._step(int(state.global_step))

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._record(int(state.global_step))

        def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._sweep(int(state.global_step))

    return HFTrajectoryCallback


_FACTORIES = {"TrajectoryCallback": _lightning_callback, "HFTrajectoryCallback": _hf_callback}


def __getattr__(name: str) -> Any:
    """Creates a callback class on first use (importing its framework then, not before)."""
    if name not in _FACTORIES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    cls = _FACTORIES[name]()
    cls.__module__, cls.__qualname__ = __name__, name
    globals()[name] = cls
    return cls
