"""The paper's models, backed by LibTorch in Rust.

Each is an ``nn.Module`` whose parameters are the very tensors of a Rust model (shared storage, no
copies): ``linpath.flatten``, ``assign``, ``interpolate``, ``TrajectoryRecorder`` and state_dicts
work on them as on any module, while :func:`linpath.train` and ``interpolate`` run them natively in
Rust. Where PyTorch has an equivalent, ``to_torch()`` returns the plain-PyTorch twin (same parameter
names and outputs).
"""

from .conv_maxout import ConvMaxout, TorchConvMaxout
from .lstm import LSTMLanguageModel, TorchLSTMLanguageModel
from .mlp import ACTIVATIONS, MLP, Maxout, TorchMLP
from .mpdbm import MPDBM
from .native import NativeModel

__all__ = [
    "ACTIVATIONS",
    "ConvMaxout",
    "LSTMLanguageModel",
    "MLP",
    "MPDBM",
    "Maxout",
    "NativeModel",
    "TorchConvMaxout",
    "TorchLSTMLanguageModel",
    "TorchMLP",
]
