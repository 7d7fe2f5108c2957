"""The two ways :func:`linpath.align` finds permutations: weight matching (Ainsworth et al. 2022,
Algorithm 1) and activation matching (correlations of hidden activations on data); and running models
with forward hooks on the modules a :class:`~linpath.permspec.PermutationSpec` names."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .batches import input_dtype
from .data import Split
from .lap import linear_sum_assignment
from .permspec import PermutationSpec, permute_axis

#: Activation matching reads at most this many batches (an (X, Y) pair is cut into batches of ACT_BATCH).
ACT_BATCHES = 10
ACT_BATCH = 512


# ---- weight matching ----------------------------------------------------------------------------------


def weight_matching(
    spec: PermutationSpec,
    state_a: Mapping[str, torch.Tensor],
    state_b: Mapping[str, torch.Tensor],
    sizes: Mapping[str, int],
    params: set[str],
    seed: int = 0,
    max_iter: int = 100,
) -> tuple[dict[str, torch.Tensor], list[float]]:
    """Ainsworth et al.'s Algorithm 1: coordinate descent over the groups, each a linear assignment.

    Each sweep visits the groups in a random order (from ``seed``) and sets each group's permutation
    to the one maximising Σ ⟨W_a, π(W_b)⟩ over the parameters in ``params`` it acts on, the other
    groups held fixed; a group keeps its permutation unless the new one is strictly better. It stops
    after a sweep that changes nothing, or after ``max_iter`` sweeps.

    Returns:
        The permutations and the objective before the first sweep and after each.

    Raises:
        RuntimeError: If the objective ever decreases beyond float64 rounding (it cannot, for an
            optimal assignment: that would be a solver defect).
    """
    a = {n: t.to(torch.float64) for n, t in state_a.items() if n in params}
    b = {n: state_b[n].to(device=a[n].device, dtype=torch.float64) for n in a}
    by_tensor = {n: e for n, e in spec.by_tensor().items() if n in a}
    device = next(iter(a.values())).device if a else torch.device("cpu")
    perms = {g: torch.arange(n, device=device) for g, n in sizes.items()}
    history = [_objective(a, b, by_tensor, perms)]
    rng = np.random.default_rng(seed)
    for _ in range(max_iter):
        changed = False
        for g in rng.permutation(sorted(sizes)):
            changed |= _improve(str(g), a, b, by_tensor, perms)
        history.append(_objective(a, b, by_tensor, perms))
        _check_monotone(history)
        if not changed:
            break
    return {g: p.cpu() for g, p in perms.items()}, history


def _improve(
    g: str,
    a: Mapping[str, torch.Tensor],
    b: Mapping[str, torch.Tensor],
    by_tensor: Mapping[str, list[tuple[int, str, int]]],
    perms: dict[str, torch.Tensor],
) -> bool:
    """Solves group ``g``'s assignment problem; True when its permutation changed for a better one."""
    cost = _cost(g, a, b, by_tensor, perms).cpu().numpy()
    _, cols = linear_sum_assignment(cost, maximize=True)
    rows = np.arange(len(cost))
    old, new = float(cost[rows, perms[g].cpu().numpy()].sum()), float(cost[rows, cols].sum())
    slack = 1e-12 * max(1.0, float(np.abs(cost).sum()))
    if new < old - slack:
        raise RuntimeError(
            f"the assignment solver returned a worse permutation for group {g!r} ({new} < {old})"
        )
    if new <= old + slack:
        return False
    perms[g] = torch.as_tensor(cols, device=perms[g].device)
    return True


def _cost(
    g: str,
    a: Mapping[str, torch.Tensor],
    b: Mapping[str, torch.Tensor],
    by_tensor: Mapping[str, list[tuple[int, str, int]]],
    perms: Mapping[str, torch.Tensor],
) -> torch.Tensor:
    """C[i, j] = Σ over the tensors group ``g`` acts on of ⟨A slice i, B slice j⟩, B's other axes permuted."""
    n = perms[g].numel()
    cost = torch.zeros(n, n, dtype=torch.float64, device=perms[g].device)
    for name, entries in by_tensor.items():
        for axis, group, block in entries:
            if group != g:
                continue
            wb = b[name]
            for other_axis, other, other_block in entries:
                if other != g:
                    wb = permute_axis(wb, other_axis, perms[other], other_block)
            cost += _rows(a[name], axis, n, block) @ _rows(wb, axis, n, block).T
    return cost


def _rows(t: torch.Tensor, axis: int, n: int, block: int) -> torch.Tensor:
    """``t`` as an ``[n, -1]`` matrix whose row ``i`` is unit ``i``'s slice (its block) along ``axis``."""
    blocks = t.reshape(*t.shape[:axis], n, block, *t.shape[axis + 1 :])
    return blocks.movedim(axis, 0).reshape(n, -1)


def _objective(
    a: Mapping[str, torch.Tensor],
    b: Mapping[str, torch.Tensor],
    by_tensor: Mapping[str, list[tuple[int, str, int]]],
    perms: Mapping[str, torch.Tensor],
) -> float:
    """Σ ⟨W_a, π(W_b)⟩ over the parameters the groups act on, computed from scratch."""
    total = 0.0
    for name, entries in by_tensor.items():
        wb = b[name]
        for axis, g, block in entries:
            wb = permute_axis(wb, axis, perms[g], block)
        total += float((a[name] * wb).sum())
    return total


def _check_monotone(history: Sequence[float]) -> None:
    before, after = history[-2], history[-1]
    if after < before - 1e-9 * max(1.0, abs(before)):
        raise RuntimeError(
            f"weight matching's objective decreased from {before!r} to {after!r} in one sweep; this is a "
            "defect in linpath (please report it)"
        )


# ---- activation matching ------------------------------------------------------------------------------


class _Moments:
    """Running float64 sums for the correlation of two sets of ``n`` units."""

    def __init__(self) -> None:
        self.count = 0
        self.sums: list[torch.Tensor] = []

    def add(self, xa: torch.Tensor, xb: torch.Tensor) -> None:
        xa, xb = xa.to(torch.float64), xb.to(torch.float64)
        parts = [xa.sum(0), xb.sum(0), (xa * xa).sum(0), (xb * xb).sum(0), xa.T @ xb]
        self.sums = parts if not self.sums else [s + p for s, p in zip(self.sums, parts, strict=True)]
        self.count += len(xa)

    def correlation(self) -> torch.Tensor:
        """Pearson correlations ``[n_a, n_b]`` (0 for a unit that never varies)."""
        sa, sb, saa, sbb, sab = (s / self.count for s in self.sums)
        cov = sab - sa[:, None] * sb[None, :]
        std_a = (saa - sa * sa).clamp_min(0).sqrt()
        std_b = (sbb - sb * sb).clamp_min(0).sqrt()
        denom = std_a[:, None] * std_b[None, :]
        return torch.where(denom > 0, cov / denom.clamp_min(1e-300), torch.zeros_like(cov))


def activation_matching(
    spec: PermutationSpec, model_a: nn.Module, model_b: nn.Module, data: Any, sizes: Mapping[str, int]
) -> tuple[dict[str, torch.Tensor], list[float]]:
    """Pairs each group's units by the correlation of their activations on up to 10 batches of ``data``.

    Both models run in eval mode; each group's units are read at its activation points
    (:meth:`PermutationSpec.activation_points`, along dim 1, every spatial position a sample), and one
    linear assignment per group maximises the summed correlation (over its points) of matched units.

    Returns:
        The permutations and the summed correlation of matched units, before (identity) and after.
    """
    points = spec.activation_points(model_a)
    for g, names in points.items():
        if not names:
            raise ValueError(
                f"activation matching has no module to read group {g!r} at; add it to the spec's points"
            )
    moments = _collect(points, sizes, model_a, model_b, data)
    perms, before, after = {}, 0.0, 0.0
    for g, names in points.items():
        corr = torch.stack([moments[(g, name)].correlation() for name in names]).sum(0)
        _, cols = linear_sum_assignment(corr.cpu().numpy(), maximize=True)
        perms[g] = torch.as_tensor(cols, dtype=torch.int64)
        before += float(corr.diagonal().sum())
        after += float(corr[torch.arange(len(cols)), perms[g].to(corr.device)].sum())
    return perms, [before, after]


def _collect(
    points: Mapping[str, list[str]],
    sizes: Mapping[str, int],
    model_a: nn.Module,
    model_b: nn.Module,
    data: Any,
) -> dict[tuple[str, str], _Moments]:
    """The moments of every (group, point) over the first batches of ``data``."""
    wanted = {name: g for g, names in points.items() for name in names}
    moments = {(g, name): _Moments() for name, g in wanted.items()}
    model_a.eval()
    model_b.eval()
    for k, batch in enumerate(batches_of(data, device_of(model_a), input_dtype(model_a))):
        if k == ACT_BATCHES:
            break
        with torch.no_grad():
            _, outs_a = recorded(model_a, batch, set(wanted))
            _, outs_b = recorded(model_b, batch, set(wanted))
        for name, g in wanted.items():
            if not outs_a.get(name):
                raise ValueError(
                    f"activation matching: module {name!r} (group {g!r}) did not run on the data"
                )
            for oa, ob in zip(outs_a[name], outs_b[name], strict=True):
                moments[(g, name)].add(_units(oa, sizes[g], name), _units(ob, sizes[g], name))
    return moments


def _units(out: Any, n: int, name: str) -> torch.Tensor:
    """A module's output as ``[samples, n]``: units along dim 1 (blocks of them after a Flatten)."""
    if not isinstance(out, torch.Tensor) or out.dim() < 2 or out.shape[1] % n:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"module {name!r}'s output ({shape}) does not hold {n} units along dim 1; fix the spec"
        )
    return out.reshape(len(out), n, -1).transpose(1, 2).reshape(-1, n)


# ---- running models -----------------------------------------------------------------------------------


def device_of(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def batches_of(data: Any, device: torch.device, dtype: torch.dtype | None = None) -> Iterator[Any]:
    """The batches of ``data`` (an (X, Y) pair cut into batches of ACT_BATCH, or a DataLoader's)."""
    yield from Split("data", data, ACT_BATCH).batches(device, dtype)


def _call(model: nn.Module, batch: Any) -> Any:
    """The model on a batch: ``model(x)`` for a tensor or an ``(x, ...)`` tuple, ``model(**batch)``
    for a dict."""
    if isinstance(batch, Mapping):
        return model(**batch)
    if isinstance(batch, tuple | list):
        return model(batch[0])
    return model(batch)


def recorded(model: nn.Module, batch: Any, names: set[str]) -> tuple[Any, dict[str, list[Any]]]:
    """The model's output and the outputs of the modules in ``names``, each call in order
    (also as ``"#order"``: the names in the order they ran)."""
    outs: dict[str, list[Any]] = {"#order": []}

    def hook(name: str) -> Any:
        def record(_m: nn.Module, _i: Any, out: Any) -> None:
            outs.setdefault(name, []).append(out.detach().clone() if isinstance(out, torch.Tensor) else out)
            outs["#order"].append(name)

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n in names]
    try:
        return _call(model, batch), outs
    finally:
        for h in handles:
            h.remove()
