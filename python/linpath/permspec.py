"""Permutation specs: which tensor axes each hidden-unit permutation acts on (for :func:`linpath.align`).

Permuting the hidden units of a network leaves its function unchanged when every tensor that reads or
writes those units is permuted with them. A :class:`PermutationSpec` lists, for each *group* (one
permutation of one set of hidden units), every ``(tensor name, axis)`` it acts on: Ainsworth et al.'s
``perm_to_axes``. The format, by hand::

    spec = PermutationSpec(
        groups={
            "h1": [("0.weight", 0), ("0.bias", 0), ("2.weight", 1)],  # Linear 0's outputs, Linear 2's inputs
            "h2": [("2.weight", 0), ("2.bias", 0), ("4.weight", 1)],
        },
        fixed=["4.bias"],              # tensors no group acts on (every float tensor must be named once)
    )

A third element ``block`` in an axis entry, ``("fc.weight", 1, 49)``, says that unit ``i`` of the group
owns ``block`` consecutive entries ``i*block ... i*block+block-1`` along that axis: a ``Flatten``
between a ``[C, 7, 7]`` feature map and a Linear layer gives each channel 49 input features.

``outputs`` (optional) maps module names to the group that permutes their output along dim 1 (``None``:
not permuted); when it is left out it is read from the parameters (a Linear/Conv/norm layer's output is
permuted like axis 0 of its weight). :func:`linpath.align` uses it to name the first layer whose output
no longer matches when a spec breaks the function. ``points`` (optional) maps each group to the modules
whose outputs activation matching correlates (default: the last module of ``outputs`` in that group).

:func:`spec_for` writes the spec for MLPs, plain CNNs and torchvision ResNets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .models.mlp import MLP, TorchMLP

#: Where to read about the format, for error messages.
FORMAT_HINT = "see linpath.permspec.PermutationSpec for the format"

#: Leaf modules that act on each unit separately (their output is permuted like their input).
ELEMENTWISE = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Tanh, nn.Sigmoid,
    nn.Softplus, nn.Softsign, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.LogSigmoid, nn.Tanhshrink,
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)  # fmt: skip
#: Leaf modules whose parameters (and running statistics) follow their input's channels (dim 0).
PER_CHANNEL = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm)
WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)

Axis = tuple[str, int, int]  # (tensor name, axis, block)


@dataclass
class PermutationSpec:
    """The tensor axes each permutation group acts on (see the module docstring for the format).

    Attributes:
        groups: ``{group: [(tensor name, axis) or (tensor name, axis, block), ...]}``.
        fixed: Names of the floating-point parameters and buffers that no group acts on.
        outputs: ``{module name: group or None}``, the group that permutes each module's output
            along dim 1 (read from the parameters where not given).
        points: ``{group: [module name, ...]}``, where activation matching reads each group's units.
    """

    groups: dict[str, list[Axis]]
    fixed: list[str] = field(default_factory=list)
    outputs: dict[str, str | None] = field(default_factory=dict)
    points: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.groups, Mapping):
            raise TypeError(f"groups must be a dict of group name -> list of axes; {FORMAT_HINT}")
        self.groups = {str(g): [_axis(g, e) for e in axes] for g, axes in self.groups.items()}
        self.fixed = [str(n) for n in self.fixed]
        self.outputs = {str(k): (None if v is None else str(v)) for k, v in dict(self.outputs).items()}
        self.points = {str(g): [str(m) for m in ms] for g, ms in dict(self.points).items()}

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain lists and dicts (JSON-ready); :meth:`from_dict` reads it back."""
        return {
            "groups": {g: [list(a) for a in axes] for g, axes in self.groups.items()},
            "fixed": list(self.fixed),
            "outputs": dict(self.outputs),
            "points": {g: list(ms) for g, ms in self.points.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PermutationSpec:
        """The spec :meth:`to_dict` wrote."""
        unknown = set(d) - {"groups", "fixed", "outputs", "points"}
        if unknown or "groups" not in d:
            raise ValueError(f"a spec dict has the keys groups, fixed, outputs, points; got {sorted(d)}")
        return cls(d["groups"], d.get("fixed", []), d.get("outputs", {}), d.get("points", {}))

    def by_tensor(self) -> dict[str, list[tuple[int, str, int]]]:
        """``{tensor name: [(axis, group, block), ...]}``: Ainsworth et al.'s ``axes_to_perm``."""
        out: dict[str, list[tuple[int, str, int]]] = {}
        for g, axes in self.groups.items():
            for name, axis, block in axes:
                out.setdefault(name, []).append((axis, g, block))
        return out

    def sizes(self, state: Mapping[str, torch.Tensor]) -> dict[str, int]:
        """Checks the spec against a model's tensors and returns the number of units of each group.

        Raises:
            ValueError: Naming the tensor: one the model lacks, an axis out of range or of a size
                unlike the group's, a group acting twice on one tensor, or a floating-point tensor
                of the model that the spec leaves out (neither in a group nor in ``fixed``).
        """
        sizes: dict[str, int] = {}
        for g, axes in self.groups.items():
            if not axes:
                raise ValueError(f"group {g!r} acts on no tensor; give it its axes or leave it out")
            for name, axis, block in axes:
                t = _tensor(state, name, f"group {g!r}")
                if not 0 <= axis < t.dim():
                    raise ValueError(
                        f"group {g!r} acts on axis {axis} of {name!r}, which has shape {_shape(t)}"
                    )
                n, rest = divmod(t.shape[axis], block)
                if rest or sizes.setdefault(g, n) != n:
                    raise ValueError(
                        f"group {g!r} has {sizes[g]} units, but axis {axis} of {name!r} (shape {_shape(t)}, "
                        f"block {block}) has {t.shape[axis]} entries; the spec's sizes are inconsistent"
                    )
        for name, entries in self.by_tensor().items():
            if len({axis for axis, _, _ in entries}) < len(entries) or len({g for _, g, _ in entries}) < len(
                entries
            ):
                raise ValueError(f"{name!r} appears twice in the spec with one axis or one group ({entries})")
        for name in self.fixed:
            _tensor(state, name, "fixed")
        self._check_coverage(state)
        return sizes

    def _check_coverage(self, state: Mapping[str, torch.Tensor]) -> None:
        named = set(self.by_tensor()) | set(self.fixed)
        for name, t in state.items():
            if t.is_floating_point() and name not in named:
                raise ValueError(
                    f"the permutation spec does not cover {name!r} (shape {_shape(t)}): add the axes a "
                    f"group acts on to that group, or its name to fixed= if no permutation touches it; "
                    f"{FORMAT_HINT}"
                )

    def layer_groups(self, model: nn.Module) -> dict[str, str | None]:
        """``{module name: group or None}`` for the modules whose output permutation is known:
        :attr:`outputs`, completed from the weights of Linear, Conv and norm layers."""
        by_tensor, fixed = self.by_tensor(), set(self.fixed)
        out: dict[str, str | None] = {}
        for name, module in model.named_modules():
            key = f"{name}.weight" if name else "weight"
            if isinstance(module, WEIGHTED + PER_CHANNEL) and (key in by_tensor or key in fixed):
                out[name] = next((g for axis, g, _ in by_tensor.get(key, []) if axis == 0), None)
        out.update(self.outputs)
        return out

    def activation_points(self, model: nn.Module) -> dict[str, list[str]]:
        """``{group: [module name, ...]}``: :attr:`points`, else the last module in each group."""
        last: dict[str, str] = {}
        for name, g in self.layer_groups(model).items():
            if g is not None:
                last[g] = name
        return {g: self.points.get(g, [last[g]] if g in last else []) for g in self.groups}


def _axis(group: Any, entry: Any) -> Axis:
    ok = isinstance(entry, Sequence) and not isinstance(entry, str) and len(entry) in (2, 3)
    if not ok or not all(isinstance(v, int) and not isinstance(v, bool) for v in entry[1:]):
        raise ValueError(
            f"group {group!r}: each axis is (tensor name, axis) or (tensor name, axis, block), "
            f"got {entry!r}; {FORMAT_HINT}"
        )
    block = int(entry[2]) if len(entry) == 3 else 1
    if block < 1:
        raise ValueError(f"group {group!r}: block must be positive in {entry!r}")
    return (str(entry[0]), int(entry[1]), block)


def _tensor(state: Mapping[str, torch.Tensor], name: str, where: str) -> torch.Tensor:
    if name not in state:
        close = [k for k in state if k.split(".")[-1] == name.split(".")[-1]][:3]
        raise ValueError(
            f"the spec ({where}) names {name!r}, which the model does not have (similar: {close})"
        )
    return state[name]


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def permute_axis(t: torch.Tensor, axis: int, perm: torch.Tensor, block: int = 1) -> torch.Tensor:
    """``t`` with slice ``i`` along ``axis`` (a block of ``block`` entries) taken from slice ``perm[i]``."""
    n = perm.numel()
    shape = t.shape
    blocks = t.reshape(*shape[:axis], n, block, *shape[axis + 1 :])
    return blocks.index_select(axis, perm.to(t.device)).reshape(shape)


def permute_state(
    spec: PermutationSpec, state: Mapping[str, torch.Tensor], perms: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """A new state_dict: every tensor of ``state`` copied, the spec's axes permuted by ``perms``."""
    by_tensor = spec.by_tensor()
    out = {}
    for name, t in state.items():
        t = t.detach().clone()
        for axis, g, block in by_tensor.get(name, []):
            t = permute_axis(t, axis, perms[g], block)
        out[name] = t
    return out


# ---- written automatically ---------------------------------------------------------------------------


class _Builder:
    """Collects a spec while walking a model's layers."""

    def __init__(self) -> None:
        self.groups: dict[str, list[Axis]] = {}
        self.fixed: list[str] = []
        self.outputs: dict[str, str | None] = {}
        self.points: dict[str, list[str]] = {}
        self.sizes: dict[str, int] = {}

    def add(self, group: str | None, name: str, axis: int, block: int = 1) -> None:
        if group is None:
            return
        self.groups.setdefault(group, []).append((name, axis, block))

    def per_channel(self, module: nn.Module, prefix: str, group: str | None) -> None:
        """A norm layer's parameters and running statistics, axis 0 (fixed when ``group`` is None)."""
        for key, t in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
            if t is not None and t.is_floating_point():
                if group is None:
                    self.fixed.append(f"{prefix}{key}")
                else:
                    self.add(group, f"{prefix}{key}", 0)

    def layer(
        self, module: nn.Module, prefix: str, into: str | None, out: str | None, block: int = 1
    ) -> None:
        """A Linear or Conv layer reading units of ``into`` and writing units of ``out``."""
        if into is None and out is None:
            self.fixed.append(f"{prefix}weight")
        self.add(out, f"{prefix}weight", 0)
        self.add(into, f"{prefix}weight", 1, block)
        if out is not None:
            self.sizes[out] = int(module.get_parameter("weight").shape[0])
        if module.bias is not None:
            if out is None:
                self.fixed.append(f"{prefix}bias")
            else:
                self.add(out, f"{prefix}bias", 0)

    def spec(self) -> PermutationSpec:
        return PermutationSpec(self.groups, self.fixed, self.outputs, self.points)


def spec_for(model: nn.Module) -> PermutationSpec:
    """The permutation spec of ``model``, written automatically.

    Handles MLPs (Linear layers with elementwise activations and Dropout between them, optionally
    LayerNorm/BatchNorm1d; :class:`linpath.models.MLP` and its twin, maxout units included), plain
    CNNs (Conv/BatchNorm/activation/pooling layers, a Flatten, Linear layers), both as
    ``nn.Sequential`` or as modules whose layers are registered in the order they run, and
    torchvision ResNets (``BasicBlock`` or ``Bottleneck``): each residual stream shares one
    permutation (the stem's conv1/bn1, every block's last conv/bn, the downsample conv/bn and the
    next blocks' inputs), each block's inner channels have their own, and fc reads the last stream.

    Raises:
        ValueError: For a model it cannot write a spec for (pass ``spec=`` to :func:`linpath.align`).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"spec_for takes an nn.Module, got {type(model).__name__}")
    if _is_resnet(model):
        return _resnet_spec(model)
    if isinstance(model, MLP | TorchMLP):
        return _linpath_mlp_spec(model)
    return _chain_spec(model)


def _refuse(name: str, module: nn.Module, why: str) -> ValueError:
    return ValueError(
        f"linpath cannot write a permutation spec for layer {name!r} ({type(module).__name__}): {why}; "
        f"pass spec= to linpath.align ({FORMAT_HINT})"
    )


def _chain_spec(model: nn.Module) -> PermutationSpec:
    """MLPs and plain CNNs: the leaf layers in order, one group per hidden Linear/Conv layer."""
    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children())]
    weighted = [n for n, m in leaves if isinstance(m, WEIGHTED)]
    if not weighted:
        raise _refuse("", model, "it has no Linear or Conv layer")
    b, cur, flat_from = _Builder(), None, None  # flat_from: channels before a Flatten
    for name, m in leaves:
        prefix = f"{name}." if name else ""
        if isinstance(m, WEIGHTED):
            cur, flat_from = _chain_layer(b, name, m, cur, flat_from, last=name == weighted[-1])
        elif isinstance(m, PER_CHANNEL):
            _check_norm(name, m)
            b.per_channel(m, prefix, cur)
        elif isinstance(m, nn.Flatten):
            if m.start_dim != 1 or m.end_dim != -1:
                raise _refuse(name, m, "only Flatten(start_dim=1, end_dim=-1) is understood")
            flat_from = cur
        elif isinstance(m, ELEMENTWISE) or (isinstance(m, nn.Softmax | nn.LogSoftmax) and cur is None):
            pass
        else:
            raise _refuse(name, m, "it is not a layer of an MLP or plain CNN that linpath knows")
        b.outputs[name] = cur
        if cur is not None:
            b.points[cur] = [name]
    return b.spec()


def _chain_layer(
    b: _Builder, name: str, m: nn.Module, cur: str | None, flat_from: str | None, last: bool
) -> tuple[str | None, None]:
    prefix = f"{name}." if name else ""
    if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d) and m.groups != 1:
        raise _refuse(name, m, "grouped or depthwise convolutions are not handled automatically")
    block = 1
    if isinstance(m, nn.Linear) and flat_from is not None:
        channels = b.sizes[flat_from]
        if m.in_features % channels:
            raise _refuse(
                name, m, f"its {m.in_features} inputs are not a whole number of {channels} channels"
            )
        block = m.in_features // channels
    out = None if last else name
    b.layer(m, prefix, cur, out, block)
    return out, None


def _check_norm(name: str, m: nn.Module) -> None:
    if isinstance(m, nn.LayerNorm) and len(m.normalized_shape) != 1:
        raise _refuse(name, m, "a LayerNorm over more than the last dimension")


def _is_resnet(model: nn.Module) -> bool:
    """A torchvision-style ResNet: stem, four stages of BasicBlock/Bottleneck, avgpool, fc."""
    parts = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc")
    named = any(cls.__name__ == "ResNet" for cls in type(model).__mro__)
    return named and all(hasattr(model, p) for p in parts)


#: The convolutions of each block kind, in order (the last writes the residual stream).
_BLOCK_CONVS = {"BasicBlock": ("conv1", "conv2"), "Bottleneck": ("conv1", "conv2", "conv3")}


def _resnet_spec(model: nn.Module) -> PermutationSpec:
    """torchvision ResNets: one group per residual stream, one per block-internal layer."""
    b = _Builder()
    stream = "stem"  # the stem's stream, carried through the stage(s) that do not downsample
    b.layer(model.get_submodule("conv1"), "conv1.", None, stream)
    b.per_channel(model.get_submodule("bn1"), "bn1.", stream)
    b.outputs.update(dict.fromkeys(("conv1", "bn1", "relu", "maxpool"), stream))
    b.points[stream] = ["maxpool"]
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        for k, block in enumerate(getattr(model, stage)):
            stream = _resnet_block(b, f"{stage}.{k}", block, stream, new_stream=stage)
    b.outputs["avgpool"] = stream
    fc = model.get_submodule("fc")
    if not isinstance(fc, nn.Linear):
        raise _refuse("fc", fc, "a torchvision ResNet's fc should be a Linear layer")
    b.layer(fc, "fc.", stream, None)
    b.outputs["fc"] = None
    return b.spec()


def _resnet_block(b: _Builder, name: str, block: nn.Module, into: str, new_stream: str) -> str:
    """Adds one residual block; returns the stream it writes (``new_stream`` when it downsamples)."""
    convs = _BLOCK_CONVS.get(type(block).__name__)
    parts = [*(convs or ()), *(f"bn{i + 1}" for i in range(len(convs or ()))), "downsample"]
    if convs is None or not all(hasattr(block, p) for p in parts):
        raise _refuse(name, block, "a ResNet block that is neither torchvision's BasicBlock nor Bottleneck")
    down = getattr(block, "downsample", None)
    out = into if down is None else new_stream
    cur = into
    for i, conv in enumerate(convs):
        writes = out if i == len(convs) - 1 else f"{name}.{conv}"
        b.layer(block.get_submodule(conv), f"{name}.{conv}.", cur, writes)
        b.per_channel(block.get_submodule(f"bn{i + 1}"), f"{name}.bn{i + 1}.", writes)
        b.outputs.update({f"{name}.{conv}": writes, f"{name}.bn{i + 1}": writes})
        if writes != out:
            b.points[writes] = [f"{name}.bn{i + 1}"]  # its ReLU is shared with the block's output
        cur = writes
    if down is not None:
        if not (isinstance(down, nn.Sequential) and len(down) == 2 and isinstance(down[0], nn.Conv2d)):
            raise _refuse(
                f"{name}.downsample", down, "a downsample other than Sequential(Conv2d, BatchNorm2d)"
            )
        b.layer(down[0], f"{name}.downsample.0.", into, out)
        b.per_channel(down[1], f"{name}.downsample.1.", out)
        b.outputs.update({f"{name}.downsample.0": out, f"{name}.downsample.1": out})
    b.outputs[name] = out
    b.points[out] = [*b.points.get(out, []), name] if out == into else [name]
    return out


def _linpath_mlp_spec(model: MLP | TorchMLP) -> PermutationSpec:
    """linpath's MLP (native or its ``to_torch()`` twin): one group per hidden layer; a maxout unit
    owns its ``pieces`` consecutive rows (``layers.{i}.weight`` is ``[out·pieces, in]``)."""
    pieces = model.pieces if isinstance(model, MLP) else int(getattr(model.activation, "pieces", 1))
    depth = len(model.layers)
    b, into = _Builder(), None
    for i in range(depth):
        name, out = f"layers.{i}", (None if i == depth - 1 else f"layers.{i}")
        for key in ("weight", "bias"):
            if out is None and (key == "bias" or into is None):
                b.fixed.append(f"{name}.{key}")
            b.add(out, f"{name}.{key}", 0, pieces)
        b.add(into, f"{name}.weight", 1)
        b.outputs[name] = out
        if out is not None:
            b.points[out] = [name]
        into = out
    return b.spec()
