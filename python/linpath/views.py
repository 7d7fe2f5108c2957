"""Low-dimensional views of a training trajectory beyond the line: the paper's Figure 7 (right)
and the PCA plane that other tools draw.

* :func:`extreme_coordinates` picks the parameters whose values range widest over training; the
  paper plots the SGD iterates in two such coordinates with the objective on the vertical axis
  ("components of θ that capture the extrema of θ throughout the learning process").
* :func:`pca_plane` (:func:`linpath.directions.pca`) finds the plane of the top two principal
  directions of the displacements θ_t − θ_ref (Li et al. 2018 draw loss contours on it) and
  reports each iterate's residual norm off that plane: a contour plot on the plane shows J at
  the *projected* points, which can be far from the iterates when the residuals are large,
  which is why such pictures mislead.
* :func:`evaluate_checkpoints` gives J (and the error) at every recorded iterate.

Each has a plotting companion in :mod:`linpath.plotting`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ._guard import exclusive
from .directions import Plane, _checkpoints, _flat64, pca
from .engines import loss_and_error
from .params import ModelState, named_parameters, write_vector
from .trajectory import Trajectory, TrajectoryRecorder


def extreme_coordinates(trajectory: Trajectory | TrajectoryRecorder, count: int = 2) -> np.ndarray:
    """The indices (into the flat parameter vector) of the ``count`` parameters whose values range
    widest (max − min) over the recorded checkpoints, widest first.

    Args:
        trajectory: The recorded checkpoints.
        count: How many coordinates (1 to the number of parameters).

    Returns:
        An int64 array of ``count`` indices.
    """
    trajectory = _checkpoints(trajectory)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= trajectory.numel:
        raise ValueError(f"count must be an integer in [1, {trajectory.numel}], got {count!r}")
    low = high = _flat64(trajectory[0])
    for checkpoint in list(trajectory)[1:]:
        values = _flat64(checkpoint)
        low, high = np.minimum(low, values), np.maximum(high, values)
    spread = high - low
    order = np.argsort(-spread, kind="stable")
    return order[:count].astype(np.int64)


def coordinates(
    trajectory: Trajectory | TrajectoryRecorder, indices: Sequence[int] | np.ndarray
) -> np.ndarray:
    """The values of the parameters at ``indices`` at every checkpoint: ``[checkpoints, len(indices)]``."""
    trajectory = _checkpoints(trajectory)
    index = np.asarray(indices)
    if index.dtype.kind not in "iu":
        raise TypeError(f"indices must be integers, got {index.dtype} values")
    if index.ndim != 1 or ((index < 0) | (index >= trajectory.numel)).any():
        raise ValueError(f"indices must be a 1-D list of parameter indices in [0, {trajectory.numel})")
    return np.stack([_flat64(c)[index] for c in trajectory])


def pca_plane(trajectory: Trajectory | TrajectoryRecorder, reference: str = "final") -> Plane:
    """:func:`linpath.directions.pca` with ``k=2`` (kept here for existing code); see there."""
    return pca(trajectory, reference=reference)


def evaluate_checkpoints(
    model: torch.nn.Module,
    trajectory: Trajectory | TrajectoryRecorder,
    data: tuple[torch.Tensor, torch.Tensor],
    progress: Any = None,
) -> dict[str, np.ndarray]:
    """J and the error rate of ``model`` at every checkpoint of ``trajectory`` on ``data``.

    linpath's native models are evaluated on their own objective (``model.evaluate``), other
    modules on the mean cross-entropy. The model is left exactly as it was.

    Args:
        model: A module whose parameters have the trajectory's layout.
        trajectory: The recorded checkpoints.
        data: An ``(X, Y)`` pair.
        progress: An optional callable ``progress(done, total)``.

    Returns:
        ``{"loss": [...], "error": [...]}``, one value per checkpoint.
    """
    trajectory = _checkpoints(trajectory)
    losses, errors = [], []
    names, params = named_parameters(model)
    with exclusive(params, "evaluate checkpoints in the model", "evaluating checkpoints in"):
        state = ModelState(model)
        try:
            for i, checkpoint in enumerate(trajectory):
                write_vector(params, names, checkpoint)
                loss, error = loss_and_error(model, data)
                losses.append(loss)
                errors.append(error)
                if progress is not None:
                    progress(i + 1, len(trajectory))
        finally:
            state.restore()
    return {"loss": np.asarray(losses), "error": np.asarray(errors)}
