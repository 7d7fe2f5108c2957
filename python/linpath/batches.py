"""Batches of any shape: how the module engine moves a batch to the model, runs the model on it and
measures it (:func:`measure_batch`), and how it adds the batches of a split up (:class:`Totals`).

What a batch may be, and what the default path does with it (no ``step=``):

* an ``(x, y)`` pair (tuple or list of two): ``model(x)``, then ``loss(output, y)``; the batch mean
  counts ``len(y)`` examples;
* a dict (Hugging Face style: ``input_ids``, ``attention_mask``, ``labels``...): ``model(**batch)``,
  the ``labels`` key included, as Hugging Face models expect. When the output carries a ``loss``
  (a ``ModelOutput`` or dict with a ``"loss"`` entry) and no ``loss=`` was given, that loss is the
  batch's, weighted by the number of labels it averages over (see :func:`label_count`); otherwise
  the default loss scores the output's logits against ``batch["labels"]``;
* anything else (tuples of three or more, custom objects): refused with a message asking for
  ``step=fn(model, batch)``, since which part is the input and which the target would be a guess.

Model outputs: a tensor is the logits; a dict or ``ModelOutput`` with a ``"logits"`` entry gives
them; a tuple or list gives them only when exactly one of its top-level items is a floating-point
tensor with one row per example (so ``(loss, logits)`` works and ``(logits, features)`` is refused).
Anything else is refused with a ValueError naming the type and saying to pass ``loss=`` or ``step=``.

With ``step=fn(model, batch)`` the batch (moved to the model's device) goes to ``fn`` as it is, and
``fn`` returns the batch's loss: a scalar (the batch mean, over :func:`default_count` items), a
``(mean, count)`` pair, or a dict of named scalar means with an optional ``"count"``.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from .affine import AffineInputs

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
DEFAULT_LOSS: LossFn = torch.nn.functional.cross_entropy
#: The label value Hugging Face losses (and ``cross_entropy``'s default) ignore.
IGNORE_INDEX = -100
#: The dict key holding the targets of a dict batch.
LABELS = "labels"
#: The dict key of a step's result that says how many items its means average over.
COUNT = "count"

#: One batch's measurements: ``{metric: (sum of the metric over the batch's items, item count)}``,
#: sums in float64 on the model's device. :func:`measure_batch` gives None for an empty batch (it
#: counts for nothing).
BatchMeasure = dict[str, tuple[torch.Tensor, Any]]


class Step:
    """A user's ``step(model, batch)`` that returns a batch's loss (or named metrics), carried
    through the engines where a loss function would go. Calls ``fn(model, batch)``."""

    def __init__(self, fn: Callable[[nn.Module, Any], Any]) -> None:
        if not callable(fn):
            raise TypeError(f"step must be callable as step(model, batch), got {type(fn).__name__}")
        self.fn = fn
        self.__name__ = getattr(fn, "__name__", type(fn).__name__)

    def __call__(self, model: Any, batch: Any) -> Any:
        return self.fn(model, batch)


@dataclasses.dataclass(frozen=True)
class Where:
    """Which batch is being measured: its split, its position, and whether the split is an
    ``(X, Y)`` pair (the same rows at every point, so input layers may be cached)."""

    split: str
    index: int
    pair: bool = False

    @property
    def name(self) -> str:
        return f"batch {self.index} of split {self.split!r}"


def to_device(batch: Any, device: torch.device, dtype: torch.dtype | None = None) -> Any:
    """``batch`` with its tensors (inside dicts, tuples, lists and dataclasses too) on ``device``.

    With ``dtype`` (the parameters' half precision), the floating-point *inputs* are cast to it: the
    ``x`` of an ``(x, y)`` pair and every entry of a dict batch but ``labels``; targets and the parts
    of other batches keep their dtype (a step casts what it needs).
    """
    if isinstance(batch, tuple | list) and len(batch) == 2 and not _is_namedtuple(batch):
        pair = (_moved(batch[0], device, dtype), _moved(batch[1], device, None))
        return pair if isinstance(batch, tuple) else list(pair)
    if isinstance(batch, Mapping):
        return {k: _moved(v, device, None if k == LABELS else dtype) for k, v in batch.items()}
    return _moved(batch, device, None)


def _is_namedtuple(obj: Any) -> bool:
    return isinstance(obj, tuple) and hasattr(obj, "_fields")


def _moved(obj: Any, device: torch.device, dtype: torch.dtype | None) -> Any:
    """``obj`` moved to ``device`` (recursively), floating tensors cast to ``dtype`` when given."""
    if isinstance(obj, torch.Tensor):
        cast = dtype is not None and obj.is_floating_point() and obj.dtype != dtype
        return obj.to(device, dtype) if cast else obj.to(device)
    if isinstance(obj, Mapping):
        return {k: _moved(v, device, dtype) for k, v in obj.items()}
    if _is_namedtuple(obj):
        return type(obj)(*(_moved(v, device, dtype) for v in obj))
    if isinstance(obj, tuple | list):
        return type(obj)(_moved(v, device, dtype) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = {
            f.name: _moved(getattr(obj, f.name), device, dtype) for f in dataclasses.fields(obj) if f.init
        }
        return dataclasses.replace(obj, **fields)
    return obj


def input_dtype(model: nn.Module) -> torch.dtype | None:
    """bfloat16 or float16 when every floating-point parameter of ``model`` has that one dtype
    (floating inputs are then cast to it), else None."""
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    if len(dtypes) == 1 and (dtype := dtypes.pop()) in (torch.bfloat16, torch.float16):
        return dtype
    return None


def check_model(model: nn.Module, step: Step | None) -> None:
    """TypeError for a module the default path cannot run (no ``forward``), ValueError for one whose
    parameters lie on several devices (a sweep writes and runs them on one)."""
    devices = sorted({str(p.device) for p in model.parameters()})
    if len(devices) > 1:
        raise ValueError(
            f"the model's parameters lie on several devices ({', '.join(devices)}); linpath evaluates a "
            "model on one device: move it there first (model.to(device)), or sweep a copy that fits on one"
        )
    has_forward = "forward" in vars(model) or type(model).forward is not nn.Module.forward
    if step is None and not has_forward:
        raise TypeError(
            f"{type(model).__name__} has no forward method, so model(batch) cannot run; define forward, "
            "or pass step=fn(model, batch) returning the batch's loss through the methods it has"
        )


def describe(obj: Any) -> str:
    """``obj``'s type, and its shape or keys, for messages."""
    kind = type(obj).__name__
    if isinstance(obj, torch.Tensor):
        return f"a Tensor of shape {tuple(obj.shape)} and dtype {obj.dtype}"
    if isinstance(obj, Mapping):
        return f"a {kind} with keys {list(obj)}"
    if isinstance(obj, tuple | list):
        return f"a {kind} of {len(obj)} items ({', '.join(type(v).__name__ for v in obj)})"
    return f"a {kind}"


def find_logits(out: Any, n: int) -> torch.Tensor | None:
    """The logits in a model's output when they are unambiguous (see the module docstring), else None."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, Mapping):
        logits = out.get("logits")
        return logits if isinstance(logits, torch.Tensor) else None
    if isinstance(out, tuple | list):
        rows = [
            t
            for t in out
            if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dim() >= 1 and len(t) == n
        ]
        return rows[0] if len(rows) == 1 else None
    return None


def own_loss(out: Any) -> torch.Tensor | None:
    """The loss a model computed itself (a ``ModelOutput``'s or dict's ``"loss"`` entry), or None."""
    loss = out.get("loss") if isinstance(out, Mapping) else None
    return loss if isinstance(loss, torch.Tensor) else None


def is_causal_lm(model: nn.Module) -> bool:
    """True for a Hugging Face causal language model (its loss compares position t's logits with
    the label at t + 1): listed in transformers' causal-LM mapping, or declaring that loss type."""
    model = _unwrapped(model)
    if "transformers" not in sys.modules or not _from_transformers(model):
        return False
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    names = {
        n for v in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values() for n in ((v,) if isinstance(v, str) else v)
    }
    return type(model).__name__ in names or getattr(model, "loss_type", None) == "ForCausalLM"


def _unwrapped(model: nn.Module) -> nn.Module:
    """The module a ``torch.compile`` wrapper holds (its ``_orig_mod``), else ``model``."""
    inner = getattr(model, "_orig_mod", None)
    return inner if isinstance(inner, nn.Module) else model


def _from_transformers(model: nn.Module) -> bool:
    return type(model).__module__.startswith("transformers.")


def label_count(model: nn.Module, labels: torch.Tensor) -> Any:
    """How many labels a Hugging Face-style loss averages over: integer labels that are not
    :data:`IGNORE_INDEX` (for a causal LM, those from the second position on: the first predicts
    nothing), or one per example for floating-point (regression) labels. An int64 tensor or an int.

    Raises:
        ValueError: For per-token labels (two or more dimensions) of a model that is not from
            transformers: whether its loss shifts them cannot be known.
    """
    if labels.is_floating_point() or labels.dim() == 0:
        return int(labels.shape[0]) if labels.dim() else 1
    if labels.dim() >= 2 and not _from_transformers(_unwrapped(model)):
        raise ValueError(
            f"cannot tell how many of the labels (shape {tuple(labels.shape)}) the loss of "
            f"{type(model).__name__} averages over (shifted as in a causal LM, or not); pass "
            "step=fn(model, batch) returning (mean, count)"
        )
    if labels.dim() >= 2 and is_causal_lm(model):
        labels = labels[..., 1:]
    return (labels != IGNORE_INDEX).sum()


def example_count(batch: Any) -> int | None:
    """The number of examples in a batch: the first dimension of its first tensor (of a dict's
    values, a tuple's or list's items, a dataclass's fields), or None when it holds no tensor at
    the top level."""
    items: Any = [batch]
    if isinstance(batch, Mapping):
        items = batch.values()
    elif isinstance(batch, tuple | list):
        items = batch
    elif dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        items = [getattr(batch, f.name) for f in dataclasses.fields(batch)]
    first = next((t for t in items if isinstance(t, torch.Tensor)), None)
    if first is None:
        return None
    return int(first.shape[0]) if first.dim() else 1


def default_count(model: nn.Module, batch: Any) -> Any:
    """What a step's bare mean averages over: for a dict with integer ``labels``, their
    :func:`label_count` (tokens for a language model); for an ``(x, y)`` pair, ``len(y)``;
    otherwise the batch's :func:`example_count`. None when unknown."""
    labels = batch.get(LABELS) if isinstance(batch, Mapping) else None
    if isinstance(labels, torch.Tensor):
        return label_count(model, labels)
    if isinstance(batch, tuple | list) and len(batch) == 2 and isinstance(batch[1], torch.Tensor):
        return int(batch[1].shape[0]) if batch[1].dim() else 1
    return example_count(batch)


def weighted(value: Any, count: Any, what: str) -> tuple[torch.Tensor, Any]:
    """``(value · count in float64, count)`` for a batch mean ``value``; a batch of count 0 adds
    nothing (its mean is NaN, 0/0)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = torch.tensor(float(value), dtype=torch.float64)
    if not isinstance(value, torch.Tensor) or value.numel() != 1 or not value.is_floating_point():
        got = describe(value)
        raise ValueError(
            f"{what} must be a real floating-point scalar tensor or a float (the batch mean), got {got}"
        )
    mean = value.detach().to(torch.float64).reshape(())
    if isinstance(count, torch.Tensor):
        return torch.where(count > 0, mean * count, 0.0), count
    return (mean * count if count else torch.zeros_like(mean)), count


def measure_batch(
    model: nn.Module,
    batch: Any,
    loss_fn: LossFn,
    metrics: tuple[str, ...],
    where: Where,
    affine: AffineInputs | None = None,
) -> BatchMeasure | None:
    """The sums and counts of ``metrics`` on one batch (already on the model's device).

    Args:
        model: The model, at the point being evaluated (eval mode, no_grad, set up by the engine).
        batch: The batch (see the module docstring for the shapes it may take).
        loss_fn: ``loss(output, target)`` returning the batch mean, or a :class:`Step`.
        metrics: The metrics asked for (with a step: ignored, every metric it returns is measured).
        where: Which batch this is (for messages, and the affine cache's key).
        affine: The module engine's cache of input layers, when sweeping.

    Returns:
        ``{metric: (sum, count)}`` (see :data:`BatchMeasure`), or None for an empty batch.
    """
    if isinstance(loss_fn, Step):
        return _measure_step(model, batch, loss_fn, where, affine)
    if isinstance(batch, Mapping):
        return _measure_dict(model, batch, loss_fn, metrics, where, affine)
    x, y = _pair_of(batch, where)
    if len(y) == 0:
        return None
    out = _run(model, where, x, affine, lambda: model(x))
    return score(out, y, loss_fn, metrics, where)


def _pair_of(batch: Any, where: Where) -> tuple[Any, torch.Tensor]:
    """``(x, y)`` of a batch the default path takes as a pair, with tensor targets of one or more rows."""
    if not isinstance(batch, tuple | list) or len(batch) != 2:
        what = f"a {type(batch).__name__}" if isinstance(batch, torch.Tensor) else describe(batch)
        raise TypeError(
            f"split {where.split!r}: batch {where.index} is {what}; each batch must be an "
            "(inputs, targets) pair or a dict of model inputs (labels included); for other batches pass "
            "step=fn(model, batch) returning the batch's loss"
        )
    x, y = batch
    if not isinstance(y, torch.Tensor):
        raise TypeError(
            f"split {where.split!r}: the targets of batch {where.index} are a {type(y).__name__}, "
            "not a tensor"
        )
    if y.dim() == 0:
        raise ValueError(
            f"split {where.split!r}: batch {where.index} holds a single example (0-d targets); batch the "
            "examples (e.g. a DataLoader with a batch_size, not batch_size=None)"
        )
    return x, y


def _measure_dict(
    model: nn.Module,
    batch: Mapping[str, Any],
    loss_fn: LossFn,
    metrics: tuple[str, ...],
    where: Where,
    affine: AffineInputs | None,
) -> BatchMeasure | None:
    """A dict batch: ``model(**batch)``, scored by the model's own loss or ``loss_fn`` on ``labels``."""
    n = example_count(batch)
    if n == 0:
        return None
    out = _run(model, where, batch, affine, lambda: model(**batch))
    labels = batch.get(LABELS)
    mine = own_loss(out)
    if loss_fn is DEFAULT_LOSS and mine is not None and isinstance(labels, torch.Tensor):
        measured = {"loss": weighted(mine, label_count(model, labels), "the model's own loss")}
        if "error" in metrics:
            measured.update(score(out, labels, None, ("error",), where))
        return {m: v for m, v in measured.items() if m in metrics}
    if not isinstance(labels, torch.Tensor):
        raise ValueError(
            f"{where.name} is a dict without a {LABELS!r} tensor and the model's output ({describe(out)}) "
            "has no loss; add the labels to the batch, or pass step=fn(model, batch) returning its loss"
        )
    return score(out, labels, loss_fn, metrics, where)


def score(
    out: Any, y: torch.Tensor, loss_fn: LossFn | None, metrics: tuple[str, ...], where: Where
) -> BatchMeasure:
    """``{"loss": ..., "error": ...}`` of a model's output ``out`` against targets ``y`` (``loss_fn``
    None: the error rate only). The default loss scores the output's logits (:func:`find_logits`), a
    user's loss the output as it came out."""
    n = len(y)
    logits = find_logits(out, n)
    measured: BatchMeasure = {}
    if loss_fn is DEFAULT_LOSS and logits is not None:
        check_class_targets(logits, y, where.split)
    if "loss" in metrics and loss_fn is not None:
        if loss_fn is DEFAULT_LOSS and logits is None:
            raise ValueError(
                f"the model's output on {where.name} is {describe(out)}, and the default loss needs its "
                "logits (a tensor, a dict or ModelOutput with 'logits', or a tuple with exactly one "
                "tensor of one row per example); pass loss=lambda out, y: ... that takes this output, "
                "or step=fn(model, batch) returning the batch's loss"
            )
        value = batch_loss(loss_fn, logits if loss_fn is DEFAULT_LOSS else out, y, where)
        measured["loss"] = weighted(value, n, "the loss")
    # Next to a loss of your own, a tuple's tensor is not known to be logits: no error rate from it.
    named = loss_fn is DEFAULT_LOSS or loss_fn is None or not isinstance(out, tuple | list)
    if "error" in metrics and named and logits is not None and is_class_target(logits, y):
        wrong = (logits.argmax(dim=1) != y).sum().to(torch.float64)
        # NaN or +inf scores have no meaningful argmax; -inf (a masked class) is fine.
        undefined = (torch.isnan(logits) | torch.isposinf(logits)).any()
        measured["error"] = (torch.where(undefined, math.nan, wrong), n)
    return measured


def is_class_target(out: Any, y: torch.Tensor) -> bool:
    """True when ``out`` holds a score per class (at least two) and ``y`` a class index per row:
    then the error rate (argmax ≠ target) means something. A single logit per row (a binary
    model scored with a BCE-style loss) has no argmax to compare."""
    return (
        isinstance(out, torch.Tensor)
        and out.dim() == 2
        and out.shape[1] >= 2
        and y.dim() == 1
        and len(y) == len(out)
        and not y.is_floating_point()
        and not y.is_complex()
        and y.dtype != torch.bool
    )


def check_class_targets(out: Any, y: torch.Tensor, split: str) -> None:
    """For the default cross-entropy: targets must be class indices within the model's outputs."""
    if not is_class_target(out, y):
        return
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= out.shape[1]:
        raise ValueError(
            f"split {split!r} has class targets in [{low}, {high}] but the model has {out.shape[1]} outputs; "
            "targets must be class indices 0..n_classes-1 (or pass loss= for other targets)"
        )


def batch_loss(loss_fn: LossFn, out: Any, y: torch.Tensor, where: Where) -> Any:
    """``loss_fn(out, y)``. The default loss's complaints about the targets become a ValueError that
    says what it needs; a user's loss that fails on an output that is not a tensor, a ValueError
    naming what came out (a user's loss on tensors raises whatever it raises)."""
    try:
        return loss_fn(out, y)
    except (RuntimeError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        if loss_fn is DEFAULT_LOSS:
            got = f"targets of shape {tuple(y.shape)} and dtype {y.dtype}"
            if isinstance(out, torch.Tensor):
                got = f"outputs of shape {tuple(out.shape)}, " + got
            raise ValueError(
                f"the default loss (cross-entropy) cannot score split {where.split!r} ({got}): it needs "
                "int64 class indices [n] or class probabilities [n, classes]; convert the targets or pass "
                f"loss= ({e})"
            ) from e
        if isinstance(out, torch.Tensor):
            raise
        raise ValueError(
            f"the loss could not take the model's output on {where.name}, {describe(out)} ({e}); pass "
            "a loss= that takes this output (e.g. lambda out, y: F.cross_entropy(out.logits, y)), or "
            "step=fn(model, batch)"
        ) from e


def _run(model: nn.Module, where: Where, x: Any, affine: AffineInputs | None, call: Callable[[], Any]) -> Any:
    """``call()`` (the model on batch ``x``), through the affine cache for ``(X, Y)`` splits; a
    RuntimeError (shapes that do not fit) or a TypeError of a dict batch's keys becomes a ValueError."""
    try:
        if affine is None:
            return call()
        with affine.batch((where.split, where.index) if where.pair else None, x):
            return call()
    except RuntimeError as e:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else describe(x)
        raise ValueError(
            f"the model could not evaluate a batch of split {where.split!r} "
            f"(inputs of shape {shape}); does the data fit the model? ({e})"
        ) from e
    except TypeError as e:
        if not isinstance(x, Mapping):
            raise
        raise TypeError(
            f"{type(model).__name__}(**batch) failed on {where.name}, {describe(x)} ({e}); make the "
            "dict's keys the forward's arguments, or pass step=fn(model, batch)"
        ) from e


def _measure_step(
    model: nn.Module, batch: Any, step: Step, where: Where, affine: AffineInputs | None
) -> BatchMeasure | None:
    """``step(model, batch)``'s metrics, weighted by its count (see :func:`step_result`)."""
    if example_count(batch) == 0:
        return None
    if affine is None:
        got = step(model, batch)
    else:  # an (X, Y) split's inputs may come from the affine cache, when the step passes them as they are
        with affine.batch(
            (where.split, where.index) if where.pair else None, batch[0] if where.pair else batch
        ):
            got = step(model, batch)
    return step_result(got, lambda: default_count(model, batch), where)


def step_result(got: Any, count_of: Callable[[], Any], where: Where) -> BatchMeasure:
    """A step's return value as :data:`BatchMeasure`: a scalar mean, ``(mean, count)``, or a dict of
    scalar means with an optional ``"count"``; ``count_of()`` gives the count when none is returned."""
    if isinstance(got, Mapping):
        means, count = {k: v for k, v in got.items() if k != COUNT}, got.get(COUNT)
        bad = [k for k in means if not isinstance(k, str) or not k]
        if bad or not means:
            raise ValueError(
                f"step returned a dict with keys {list(got)}; use metric names (str) and 'count'"
            )
    elif isinstance(got, tuple | list) and len(got) == 2:
        means, count = {"loss": got[0]}, got[1]
    else:
        means, count = {"loss": got}, None
    if count is None:
        count = count_of()
        if count is None:
            raise ValueError(
                f"step returned a bare mean for {where.name}, a batch whose size linpath cannot tell; "
                "return (mean, count) or a dict with 'count'"
            )
    count = _check_count(count, where)
    return {name: weighted(v, count, f"step's {name!r} on {where.name}") for name, v in means.items()}


def _check_count(count: Any, where: Where) -> Any:
    """A step's count: a non-negative integer or integer tensor (kept on the device)."""
    if isinstance(count, torch.Tensor) and count.numel() == 1 and not count.is_floating_point():
        return count.reshape(())
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        return count
    raise ValueError(f"step's count for {where.name} must be a non-negative integer, got {describe(count)}")


class Totals:
    """Adds up the :data:`BatchMeasure` of a split's batches into its metrics.

    A metric missing from some non-empty batches is dropped (``error`` on non-class targets), except
    a step's own metrics, which must come from every batch.
    """

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, Any] = {}
        self.seen: dict[str, int] = {}
        self.batches = 0

    def add(self, measured: BatchMeasure | None) -> None:
        """Adds one batch (an empty one, None, counts for nothing)."""
        if measured is None:
            return
        self.batches += 1
        for name, (total, count) in measured.items():
            if name in self.sums:
                self.sums[name] = self.sums[name] + total
                self.counts[name] = self.counts[name] + count
            else:
                self.sums[name], self.counts[name] = total, count
            self.seen[name] = self.seen.get(name, 0) + 1

    def result(self, split: str, step: bool = False) -> dict[str, float]:
        """``{metric: mean}`` over the split (each metric's sum over its count)."""
        if self.batches == 0:
            raise ValueError(f"split {split!r} yielded no examples")
        result = {}
        for name, total in self.sums.items():
            if self.seen[name] != self.batches:
                if step and name not in ("error",):
                    raise ValueError(
                        f"step returned {name!r} for some batches of split {split!r} but not for others"
                    )
                continue
            count = self.counts[name]
            count = int(count.item()) if isinstance(count, torch.Tensor) else count
            if count == 0:
                raise ValueError(
                    f"split {split!r} has nothing to average {name!r} over (count 0: all labels ignored?)"
                )
            result[name] = total.item() / count
        return result
