"""linpath: the objective of neural-network training along lines in parameter space.

Implements the analyses of Goodfellow, Vinyals & Saxe, "Qualitatively characterizing neural
network optimization problems" (ICLR 2015) for any PyTorch model: the loss along the straight
line θ(α) = θ0 + α·(θ1 − θ0), and the training trajectory projected onto that line; and the views
later work uses: the loss on a plane θ0 + a·d1 + b·d2 (``surface``; random filter-normalised, PCA
and three-solution directions in ``linpath.directions``) with the trajectory drawn on it.

Quick start::

    import linpath
    recorder = linpath.TrajectoryRecorder(model)         # before training
    ...  # train, calling recorder.record() now and then
    traj = recorder.trajectory
    sweep = linpath.interpolate(model, traj[0], traj[-1], {"train": (X, Y)})
    sweep.plot()
    linpath.project(traj, traj[0], traj[-1]).plot()
"""

# torch is imported before the native module. An installed wheel's extension finds libtorch on
# its own (its RPATH is $ORIGIN/../torch/lib, the torch package beside it in site-packages), but a
# build copied into the source tree (python/linpath/, `make dev`) has no torch beside it and loads
# only once torch's shared libraries are loaded; importing torch first is harmless for the wheel.
import torch  # noqa: F401  (import order matters; see above)

# The submodules too, so that e.g. ``linpath.views.pca_plane(...)`` works after ``import linpath``.
from . import (
    _linpath,
    callbacks,
    checkpoints,
    curves,
    datasets,
    directions,
    experiments,
    metrics,
    models,
    permspec,
    plotting,
    pointlog,
    preprocess,
    surfaces,
    views,
)
from .alignment import Aligned, align
from .estimate import Estimate, estimate
from .params import ParamVector, assign, flatten
from .planes import surface
from .surfaces import Surface
from .sweep import Sweep, interpolate
from .train import TrainResult, train
from .trajectory import Projection, Trajectory, TrajectoryRecorder, project

__version__ = _linpath.__version__

__all__ = [
    "Aligned",
    "Estimate",
    "ParamVector",
    "Projection",
    "Surface",
    "Sweep",
    "TrainResult",
    "Trajectory",
    "TrajectoryRecorder",
    "__version__",
    "align",
    "assign",
    "callbacks",
    "checkpoints",
    "curves",
    "datasets",
    "directions",
    "estimate",
    "experiments",
    "flatten",
    "interpolate",
    "metrics",
    "models",
    "permspec",
    "plotting",
    "pointlog",
    "preprocess",
    "project",
    "surface",
    "surfaces",
    "train",
    "views",
]
