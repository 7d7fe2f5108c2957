"""Low-dimensional views of a training trajectory beyond the line: the paper's Figure 7 (right)
and the PCA plane that other tools draw.

* :func:`extreme_coordinates` picks the parameters whose values range widest over training; the
  paper plots the SGD iterates in two such coordinates with the objective on the vertical axis
  ("components of θ that capture the extrema of θ throughout the learning process").
* :func:`pca_plane` finds the plane of the top two principal directions of the displacements
  θ_t − θ_ref (Li et al. 2018 draw loss contours on it) and reports each iterate's residual norm
  off that plane: a contour plot on the plane shows J at the *projected* points, which can be far
  from the iterates when the residuals are large, which is why such pictures mislead.
* :func:`evaluate_checkpoints` gives J (and the error) at every recorded iterate.

Each has a plotting companion in :mod:`linpath.plotting`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ._guard import exclusive
from .engines import loss_and_error
from .params import ModelState, named_parameters, write_vector
from .trajectory import Trajectory, TrajectoryRecorder

#: Largest float32 matrix of stacked checkpoints that :func:`pca_plane` builds (bytes).
PCA_MEMORY = 2 << 30


def _checkpoints(trajectory: Trajectory | TrajectoryRecorder) -> Trajectory:
    if isinstance(trajectory, TrajectoryRecorder):
        trajectory = trajectory.trajectory
    if not isinstance(trajectory, Trajectory):
        raise TypeError(
            f"trajectory must be a linpath Trajectory or TrajectoryRecorder, got {type(trajectory).__name__}"
        )
    if len(trajectory) < 2:
        raise ValueError(f"the trajectory needs at least 2 checkpoints, it has {len(trajectory)}")
    return trajectory


def _flat64(vector: Any) -> np.ndarray:
    values = vector.numpy().astype(np.float64, copy=False)
    if not np.isfinite(values).all():
        raise ValueError("the trajectory holds NaN or infinite parameters")
    return values


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


def coordinates(trajectory: Trajectory | TrajectoryRecorder, indices: Sequence[int]) -> np.ndarray:
    """The values of the parameters at ``indices`` at every checkpoint: ``[checkpoints, len(indices)]``."""
    trajectory = _checkpoints(trajectory)
    index = np.asarray(indices)
    if index.dtype.kind not in "iu":
        raise TypeError(f"indices must be integers, got {index.dtype} values")
    if index.ndim != 1 or ((index < 0) | (index >= trajectory.numel)).any():
        raise ValueError(f"indices must be a 1-D list of parameter indices in [0, {trajectory.numel})")
    return np.stack([_flat64(c)[index] for c in trajectory])


@dataclass(frozen=True)
class Plane:
    """The top-two PCA plane of a trajectory's displacements from a reference point.

    Attributes:
        reference: θ_ref (float64, flat), the plane's origin.
        directions: ``[2, n_params]`` orthonormal directions, the first explaining the most.
        coords: ``[checkpoints, 2]`` coordinates of each θ_t − θ_ref on the directions.
        residuals: ``[checkpoints]`` norm of the part of θ_t − θ_ref off the plane.
        explained: Fraction of Σ‖θ_t − θ_ref‖² that the plane captures.
        steps: The checkpoints' step numbers.
    """

    reference: np.ndarray
    directions: np.ndarray
    coords: np.ndarray
    residuals: np.ndarray
    explained: float
    steps: np.ndarray

    @property
    def max_residual(self) -> float:
        """The largest distance of an iterate from the plane."""
        return float(self.residuals.max())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (without the long vectors)."""
        return {
            "explained": self.explained,
            "max_residual": self.max_residual,
            "coords": self.coords.tolist(),
            "residuals": self.residuals.tolist(),
            "steps": self.steps.tolist(),
        }


#: A second eigenvalue below this fraction of the first is rounding noise: no second direction.
PLANE_RTOL = 1e-12


def pca_plane(trajectory: Trajectory | TrajectoryRecorder, reference: str = "final") -> Plane:
    """The plane of the top two principal directions of θ_t − θ_ref over the checkpoints.

    As in Li et al. (2018), the displacements are taken from the final iterate (``"final"``), or
    from their mean (``"mean"``, ordinary centred PCA). The directions are the top two right
    singular vectors of the stacked displacements, found from their Gram matrix in float64.

    Args:
        trajectory: The recorded checkpoints.
        reference: ``"final"`` or ``"mean"``.

    Returns:
        A :class:`Plane`.
    """
    trajectory = _checkpoints(trajectory)
    if reference not in ("final", "mean"):
        raise ValueError(f"reference must be 'final' or 'mean', got {reference!r}")
    size = len(trajectory) * trajectory.numel * 4
    if size > PCA_MEMORY:
        raise ValueError(
            f"pca_plane stacks the checkpoints in memory ({size / 2**30:.1f} GiB > "
            f"{PCA_MEMORY / 2**30:.0f} GiB); "
            "record fewer checkpoints"
        )
    stacked = torch.stack([torch.from_numpy(_flat64(c)) for c in trajectory])
    if not bool(torch.isfinite(stacked).all()):
        raise ValueError("the trajectory has NaN or infinite values; there is no plane to fit")
    origin = stacked[-1] if reference == "final" else stacked.mean(dim=0)
    # In units of the largest displacement, so that squares neither overflow nor underflow.
    scale = float((stacked - origin).abs().max())
    unit = (stacked - origin) / (scale if scale > 0 else 1.0)
    eigenvalues, eigenvectors = torch.linalg.eigh(unit @ unit.T)
    top = torch.argsort(eigenvalues, descending=True)[:2]
    lam = eigenvalues[top].clamp_min(0)
    # Relative to the largest: rounding leaves ~1e-16·λ1 in the second eigenvalue of a line's Gram matrix.
    if float(lam[1]) <= PLANE_RTOL * float(lam[0]):
        raise ValueError("the trajectory spans fewer than two directions; there is no plane to fit")
    directions = (unit.T @ eigenvectors[:, top]) / lam.sqrt()
    coords = unit @ directions
    # Off the plane directly (not as sqrt(‖x‖² − ‖c‖²), which keeps only half the digits).
    residuals = torch.linalg.vector_norm(unit - coords @ directions.T, dim=1)
    return Plane(
        reference=origin.numpy(),
        directions=directions.T.contiguous().numpy(),
        coords=(coords * scale).numpy(),
        residuals=(residuals * scale).numpy(),
        explained=float(lam.sum()) / float((unit**2).sum()),
        steps=np.asarray(trajectory.steps),
    )


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
