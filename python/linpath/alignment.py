"""Permutation alignment of two solutions (Ainsworth et al. 2022, "Git Re-Basin"; Entezari et al. 2021).

:func:`align` permutes the hidden units of ``model_b`` to match ``model_a``, either by *weight matching*
(coordinate descent over one linear assignment problem per permutation group, maximising
Σ ⟨W_a, π(W_b)⟩; Algorithm 1 of Ainsworth et al.) or by *activation matching* (each group's units
paired by the correlation of their activations on data). Which tensor axes each group acts on comes
from a :class:`linpath.permspec.PermutationSpec`, written automatically for MLPs, plain CNNs and
torchvision ResNets. Every alignment is checked: the permuted B must compute B's function (in float64,
to 1e-5), or :func:`align` refuses, naming the first layer whose output no longer matches.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from . import _validate
from .batches import to_device
from .matching import activation_matching, batches_of, device_of, recorded, weight_matching
from .models.native import NativeModel
from .permspec import FORMAT_HINT, PermutationSpec, permute_axis, permute_state, spec_for

#: Outputs of B and π(B) (both in float64) must agree to this, relative and absolute.
TOLERANCE = 1e-5
USER_SPEC_HINT = f"the spec misses or misplaces an axis of that layer; {FORMAT_HINT}"
AUTO_SPEC_HINT = (
    "the spec linpath wrote for this model does not describe it (its forward is not the plain chain of "
    f"layers or the torchvision ResNet that spec_for assumes): pass spec= ({FORMAT_HINT})"
)


@dataclass
class Aligned:
    """The result of :func:`align`.

    Attributes:
        state_dict: B's parameters and buffers with its hidden units permuted (new tensors, on B's
            devices and dtypes; integer buffers such as ``num_batches_tracked`` as they were). It is
            an endpoint as it is: ``linpath.interpolate(model, a, aligned.state_dict, data)``.
        permutations: ``{group: int64 tensor}``; unit ``i`` of π(B) is unit ``perm[i]`` of B.
        objective: Weight matching: Σ ⟨W_a, π(W_b)⟩ over the parameters the groups act on, before
            the first sweep and after each (non-decreasing). Activation matching: the summed
            correlation of matched units, before (identity) and after.
        spec: The permutation spec used.
        method: ``"weights"`` or ``"activations"``.
        max_deviation: The largest |π(B)(x) − B(x)| on the check batch (float64).
    """

    state_dict: dict[str, torch.Tensor]
    permutations: dict[str, torch.Tensor]
    objective: list[float]
    spec: PermutationSpec
    method: str
    max_deviation: float
    _template: nn.Module = field(repr=False)

    def apply(self, model: nn.Module) -> nn.Module:
        """A copy of ``model`` (same architecture as B) holding the aligned state; ``model`` is untouched."""
        out = copy.deepcopy(model)
        out.load_state_dict(self.state_dict)
        return out

    def model(self) -> nn.Module:
        """The permuted B as a module (a new copy each call)."""
        return self.apply(self._template)


def align(
    model_a: nn.Module,
    model_b: Any,
    *,
    method: str = "weights",
    data: Any = None,
    spec: PermutationSpec | Mapping[str, Any] | None = None,
    seed: int = 0,
    max_iter: int = 100,
    check_input: Any = None,
) -> Aligned:
    """Permutes the hidden units of ``model_b`` to line them up with ``model_a``'s.

    Args:
        model_a: The reference model (an ``nn.Module``); never modified.
        model_b: A model of the same architecture, or its state_dict, or a checkpoint path (read with
            :func:`linpath.checkpoints.load`); never modified.
        method: ``"weights"`` (weight matching, no data needed) or ``"activations"`` (needs ``data``).
        data: ``(X, Y)`` or a DataLoader/list of batches: activation matching reads up to 10 batches;
            the functional check uses the first batch unless ``check_input`` is given.
        spec: A :class:`~linpath.permspec.PermutationSpec` (or its ``to_dict()`` form); default
            :func:`linpath.permspec.spec_for` of ``model_a``.
        seed: Seeds the random order in which weight matching visits the groups.
        max_iter: The most sweeps of weight matching (it stops earlier once a sweep changes nothing).
        check_input: Inputs (a tensor, or a batch as ``data`` holds them) on which π(B) must compute
            B's outputs. Default: the first batch of ``data``; for an MLP without data, 8 random inputs.

    Returns:
        An :class:`Aligned`.

    Raises:
        ValueError: Models of different architectures (naming the first differing parameter or
            layer), a spec that misses or misnames a tensor or has inconsistent sizes (naming it), a
            permutation that changes B's function (naming the first layer whose output differs),
            NaN/inf parameters, or a CNN without ``check_input`` or ``data``.
        TypeError: For a ``model_a`` that is not a module, a ``model_b`` that is neither a module, a
            state_dict nor a path, or ``data`` given as a dict of splits.
    """
    if not isinstance(model_a, nn.Module):
        raise TypeError(f"model_a must be an nn.Module, got {type(model_a).__name__}")
    if method not in ("weights", "activations"):
        raise ValueError(f"method must be 'weights' or 'activations', got {method!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(data, Mapping):
        raise TypeError(
            "data must be one dataset (an (X, Y) pair, or a DataLoader or list of batches), not a dict of "
            "splits: pass e.g. data=splits['train']"
        )
    if method == "activations" and data is None:
        raise ValueError("activation matching needs data= (an (X, Y) pair or a DataLoader)")
    # The user's modules are only read (state_dict, named_modules): every forward pass runs on copies,
    # so they come back exactly as they were, autograd version counters included, also on error.
    return _align(model_a, model_b, method, data, spec, seed, max_iter, check_input)


def _align(
    model_a: nn.Module,
    model_b: Any,
    method: str,
    data: Any,
    spec: Any,
    seed: int,
    max_iter: int,
    check_input: Any,
) -> Aligned:
    state_a = _state(model_a)
    state_b, template = _state_of_b(model_a, model_b)
    auto = spec is None
    spec = _as_spec(spec, model_a)
    sizes = spec.sizes(state_a)
    params = {n for n, _ in model_a.named_parameters()}
    if method == "weights":
        perms, objective = weight_matching(spec, state_a, state_b, sizes, params, seed, max_iter)
    else:
        copy_a, copy_b = _loaded(model_a, state_a), _loaded(template, state_b)
        perms, objective = activation_matching(spec, copy_a, copy_b, data, sizes)
    permuted = permute_state(spec, state_b, perms)
    x = _check_batch(check_input, data, model_a)
    hint = AUTO_SPEC_HINT if auto else USER_SPEC_HINT
    deviation = check_function(template, state_b, permuted, spec, perms, x, hint)
    return Aligned(permuted, perms, objective, spec, method, deviation, template)


def _as_spec(spec: Any, model: nn.Module) -> PermutationSpec:
    if spec is None:
        return spec_for(model)
    if isinstance(spec, PermutationSpec):
        return spec
    if isinstance(spec, Mapping):
        return PermutationSpec.from_dict(spec)
    raise TypeError(
        f"spec must be a PermutationSpec or its to_dict() form, got {type(spec).__name__}; {FORMAT_HINT}"
    )


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    state = {k: v.detach() for k, v in model.state_dict().items()}
    _check_finite(state, "model_a")
    return state


def _check_finite(state: Mapping[str, torch.Tensor], what: str) -> None:
    for name, t in state.items():
        # A finite sum means finite entries (the exact test runs only when it is not).
        if t.is_floating_point() and not torch.isfinite(t.sum()) and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{what}'s {name!r} holds NaN or infinite values; there is nothing to align")


def _state_of_b(model_a: nn.Module, model_b: Any) -> tuple[dict[str, torch.Tensor], nn.Module]:
    """B's tensors by A's names (checked to match A's layout), and a module of B's architecture."""
    if isinstance(model_b, nn.Module):
        _same_layers(model_a, model_b)
        table, template = dict(model_b.state_dict()), model_b
    elif isinstance(model_b, Mapping | str | os.PathLike):
        table, template = dict(_validate.model_endpoint(model_a, model_b, "model_b")), model_a
    else:
        raise TypeError(
            f"model_b must be an nn.Module, a state_dict or a checkpoint path, got {type(model_b).__name__}"
        )
    state_a = model_a.state_dict()
    for name, t in state_a.items():
        if name not in table:
            raise ValueError(f"model_a and model_b differ: model_b has no {name!r} ({_layer(name)})")
        if tuple(table[name].shape) != tuple(t.shape):
            raise ValueError(
                f"model_a and model_b differ at {name!r} ({_layer(name)}): shape {tuple(t.shape)} in "
                f"model_a, {tuple(table[name].shape)} in model_b; align needs two models of one architecture"
            )
    extra = [k for k in table if k not in state_a]
    if extra and isinstance(model_b, nn.Module | Mapping):
        raise ValueError(f"model_a and model_b differ: model_b has {extra[0]!r}, which model_a lacks")
    state = {k: table[k].detach() for k in state_a}
    _check_finite(state, "model_b")
    return state, template


def _layer(name: str) -> str:
    return f"layer {name.rpartition('.')[0]!r}" if "." in name else "a top-level tensor"


def _same_layers(model_a: nn.Module, model_b: nn.Module) -> None:
    """ValueError naming the first layer that differs in name or type."""
    mods_a, mods_b = list(model_a.named_modules()), list(model_b.named_modules())
    for (na, ma), (nb, mb) in zip(mods_a, mods_b, strict=False):
        if na != nb or type(ma) is not type(mb):
            raise ValueError(
                f"model_a and model_b differ at layer {na!r}: a {type(ma).__name__} in model_a, "
                f"{nb!r} (a {type(mb).__name__}) in model_b; align needs two models of one architecture"
            )
    if len(mods_a) != len(mods_b):
        longer, what = (mods_a, "model_a") if len(mods_a) > len(mods_b) else (mods_b, "model_b")
        extra = longer[min(len(mods_a), len(mods_b))][0]
        raise ValueError(f"model_a and model_b differ: {what} has the extra layer {extra!r}")


def _loaded(template: nn.Module, state: Mapping[str, torch.Tensor]) -> nn.Module:
    """A new module of ``template``'s architecture holding ``state``: a deep copy, or for linpath's
    native models (which run in Rust, out of reach of forward hooks) their plain-PyTorch twin."""
    to_torch = getattr(template, "to_torch", None)
    out = to_torch() if isinstance(template, NativeModel) and callable(to_torch) else copy.deepcopy(template)
    out.load_state_dict(state)
    return out


# ---- the functional check -----------------------------------------------------------------------------


def _check_batch(check_input: Any, data: Any, model: nn.Module) -> Any:
    """What π(B) is checked on: ``check_input``, else the first batch of ``data``, else for an MLP
    8 random inputs of its first layer's width."""
    if check_input is not None:
        return check_input
    if data is not None:
        return next(batches_of(data, torch.device("cpu")))
    to_torch = getattr(model, "to_torch", None)
    if isinstance(model, NativeModel) and callable(to_torch):
        model = to_torch()  # its layers as nn.Linear
    layers = [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d)]
    if layers and all(isinstance(m, nn.Linear) for m in layers):
        gen = torch.Generator().manual_seed(0)
        return torch.randn(8, int(layers[0].get_parameter("weight").shape[1]), generator=gen)
    raise ValueError(
        "align checks that the permuted model computes the same function on a batch of inputs: pass "
        "check_input= (e.g. a few inputs of the right shape) or data="
    )


def check_function(
    template: nn.Module,
    state_b: Mapping[str, torch.Tensor],
    permuted: Mapping[str, torch.Tensor],
    spec: PermutationSpec,
    perms: Mapping[str, torch.Tensor],
    batch: Any,
    hint: str = USER_SPEC_HINT,
) -> float:
    """The largest |π(B)(x) − B(x)| on ``batch`` (float64 copies, eval mode), checked to :data:`TOLERANCE`.

    ``hint`` ends the error message (what to do about it).

    Raises:
        ValueError: When the outputs differ, naming the first module (in the order they run) whose
            output differs from B's permuted by the spec's group for that module.
    """
    layer_groups = spec.layer_groups(template)
    with torch.no_grad():
        (out_b, rec_b), (out_p, rec_p) = _run_pair(template, state_b, permuted, batch, set(layer_groups))
    deviation = _deviation(out_p, out_b)
    if deviation is not None:
        return deviation
    for k, name in enumerate(rec_p["#order"]):
        call = rec_p["#order"][:k].count(name)
        expected = _permuted_output(rec_b[name][call], layer_groups[name], perms, name)
        if _deviation(rec_p[name][call], expected) is None:
            raise ValueError(
                f"the permutation changes the model's function: layer {name!r} ({_type(template, name)}) is "
                f"the first whose output no longer matches model_b's (permuted by group "
                f"{layer_groups[name]!r}); {hint}"
            )
    raise ValueError(
        "the permutation changes the model's function (its outputs differ from model_b's), though no layer "
        f"the spec describes is off (give the spec's outputs= for more layers to locate it); {hint}"
    )


def _run_pair(
    template: nn.Module,
    state_b: Mapping[str, torch.Tensor],
    permuted: Mapping[str, torch.Tensor],
    batch: Any,
    names: set[str],
) -> tuple[tuple[Any, dict[str, list[Any]]], tuple[Any, dict[str, list[Any]]]]:
    """B and π(B) on ``batch``, in float64 (in their own dtype when the model does not run in float64)."""
    for dtype in (torch.float64, None):
        try:
            runs = []
            for state in (state_b, permuted):
                model = _loaded(template, state).eval()
                model = model.to(dtype) if dtype is not None else model
                runs.append(recorded(model, _cast(batch, device_of(model), dtype), names))
            return runs[0], runs[1]
        except (RuntimeError, TypeError):
            if dtype is None:
                raise
    raise AssertionError("unreachable")


def _cast(batch: Any, device: torch.device, dtype: torch.dtype | None) -> Any:
    if isinstance(batch, torch.Tensor):
        return (
            batch.to(device, dtype) if dtype is not None and batch.is_floating_point() else batch.to(device)
        )
    return to_device(batch, device, dtype)


def _leaves(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, Mapping):
        return [t for v in out.values() for t in _leaves(v)]
    if isinstance(out, tuple | list):
        return [t for v in out for t in _leaves(v)]
    return []


def _deviation(got: Any, expected: Any) -> float | None:
    """The largest absolute difference, or None when some entry differs beyond :data:`TOLERANCE`."""
    worst = 0.0
    pairs = list(zip(_leaves(got), _leaves(expected), strict=False))
    if len(_leaves(got)) != len(_leaves(expected)):
        return None
    for g, e in pairs:
        if g.shape != e.shape:
            return None
        g64, e64 = g.to(torch.float64), e.to(g.device, torch.float64)
        diff = (g64 - e64).abs()
        if not bool((diff <= TOLERANCE + TOLERANCE * e64.abs()).all()):
            return None
        worst = max(worst, float(diff.max()) if diff.numel() else 0.0)
    return worst


def _permuted_output(out: Any, group: str | None, perms: Mapping[str, torch.Tensor], name: str) -> Any:
    """B's output of module ``name`` as π(B)'s should be: permuted along dim 1 by ``group``."""
    if group is None or not isinstance(out, torch.Tensor):
        return out
    perm = perms[group]
    if out.dim() < 2 or out.shape[1] % perm.numel():
        return None  # no such permutation of this output: the layer is reported
    return permute_axis(out, 1, perm, out.shape[1] // perm.numel())


def _type(model: nn.Module, name: str) -> str:
    return type(model.get_submodule(name)).__name__
