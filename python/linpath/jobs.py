"""Command line for cluster jobs: ``python -m linpath sweep`` and ``python -m linpath surface``.

Both take a model factory and a data factory (``MODULE:FUNCTION``, imported from the current
directory or ``PYTHONPATH``), the endpoints or the plane's center as checkpoint files, and the grid;
they write the :class:`~linpath.Sweep` / :class:`~linpath.Surface` with ``.save``. Launched by
``torchrun`` (``WORLD_SIZE`` > 1 in the environment) they join the process group that torchrun
describes, compute their share of the grid, and rank 0 writes the result; they never start
processes themselves. ``--checkpoint`` makes a job resumable: the same command run again computes
only the points that are missing from that file.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from . import directions
from ._validate import model_endpoint
from .distributed import SHARDS
from .models import NativeModel
from .params import assign, named_parameters
from .planes import surface
from .surfaces import Surface
from .sweep import Sweep, interpolate

COMMANDS = ("sweep", "surface")

_FACTORY_HELP = (
    "a function of MODULE (imported from the current directory or PYTHONPATH) called with no arguments"
)
_AXIS_HELP = "START:STOP:NUM (np.linspace) or a comma-separated list; a negative START needs '=', e.g. "


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Adds the ``sweep`` and ``surface`` subcommands to ``python -m linpath``'s parser."""
    sweep = commands.add_parser(
        "sweep",
        help="the loss along the line between two checkpoints (torchrun-ready)",
        description="Evaluate J(θ0 + α·(θ1 − θ0)) on the data for every α and write the Sweep (.npz). "
        "Run it under torchrun to share the points among processes.",
    )
    _add_factories(sweep)
    ends = sweep.add_argument_group("line")
    # Not --start: torchrun's own parser takes that for an abbreviation of its --start-method.
    ends.add_argument(
        "--from", dest="start", required=True, metavar="FILE", help="θ0 (α = 0): a checkpoint file"
    )
    ends.add_argument("--to", dest="end", required=True, metavar="FILE", help="θ1 (α = 1): a checkpoint file")
    ends.add_argument(
        "--alphas", type=axis, default="0:1:51", help=_AXIS_HELP + "--alphas=-0.5:1.5:41 (default 0:1:51)"
    )
    _add_common(sweep)
    surface = commands.add_parser(
        "surface",
        help="the loss on a plane through a checkpoint (torchrun-ready)",
        description="Evaluate J(θ0 + a·d1 + b·d2) on the data on a grid of (a, b) and write the Surface "
        "(.npz). Run it under torchrun to share the points among processes.",
    )
    _add_factories(surface)
    _add_plane(surface)
    _add_common(surface)


def _add_factories(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model and data")
    group.add_argument(
        "--model",
        required=True,
        type=factory,
        metavar="MODULE:FUNCTION",
        help=f"model factory: {_FACTORY_HELP}, returning the torch.nn.Module to evaluate",
    )
    group.add_argument(
        "--model-kwargs",
        type=json_object,
        default={},
        metavar="JSON",
        help="keyword arguments of the model factory, a JSON object, e.g. '{\"width\": 512}'",
    )
    group.add_argument(
        "--data",
        required=True,
        type=factory,
        metavar="MODULE:FUNCTION",
        help=f"data factory: {_FACTORY_HELP}, "
        "returning an (X, Y) pair, a DataLoader or a dict of splits such as {'train': ..., 'valid': ...}",
    )
    group.add_argument(
        "--data-kwargs",
        type=json_object,
        default={},
        metavar="JSON",
        help="keyword arguments of the data factory, a JSON object",
    )


def _add_plane(parser: argparse.ArgumentParser) -> None:
    plane = parser.add_argument_group("plane")
    plane.add_argument(
        "--center", required=True, metavar="FILE", help="θ0, the grid's (0, 0): a checkpoint file"
    )
    which = plane.add_mutually_exclusive_group(required=True)
    which.add_argument("--directions", nargs=2, metavar="FILE", help="d1 and d2 as two checkpoint files")
    which.add_argument(
        "--random-directions",
        type=int,
        metavar="SEED",
        help="d1, d2 = linpath.directions.random(model at the "
        "center, seed=SEED) and seed=SEED+1 (filter-normalised Gaussians, Li et al. 2018)",
    )
    plane.add_argument(
        "--normalization",
        choices=("filter", "layer", "none"),
        default="filter",
        help="scaling of the random directions (default filter)",
    )
    plane.add_argument(
        "--ignore",
        choices=("biasbn", "none"),
        default="biasbn",
        help="biasbn (default): "
        "random directions are 0 on biases and norm layers; none: they hold the center's values",
    )
    plane.add_argument(
        "--grid",
        type=axis,
        default="-1:1:21",
        help="both axes: " + _AXIS_HELP + "--grid=-2:2:51 (default -1:1:21)",
    )
    plane.add_argument(
        "--xs", type=axis, metavar="AXIS", help="the coordinates along d1 (instead of --grid's)"
    )
    plane.add_argument(
        "--ys", type=axis, metavar="AXIS", help="the coordinates along d2 (instead of --grid's)"
    )
    plane.add_argument(
        "--no-plane",
        action="store_true",
        help="leave the plane's origin and directions "
        "(3 x 8 bytes per parameter, needed by Surface.project) out of --out",
    )


def _add_common(parser: argparse.ArgumentParser) -> None:
    run = parser.add_argument_group("evaluation (as the keyword arguments of linpath.interpolate)")
    run.add_argument(
        "--prefix",
        default="auto",
        help="name prefix to strip from the checkpoints' keys: auto "
        "(default; module., _orig_mod., model. when exactly one fits), '' for none, or e.g. net.",
    )
    run.add_argument("--metrics", nargs="+", metavar="METRIC", help="loss and/or error (default both)")
    run.add_argument("--batch-size", type=int, help="batch size for (X, Y) data (default 1024)")
    run.add_argument("--precision", choices=("float32", "bf16"), default="float32", help="default float32")
    run.add_argument("--engine", choices=("auto", "native", "module"), default="auto", help="default auto")
    run.add_argument(
        "--buffers",
        choices=("interpolate", "current", "recompute"),
        default="interpolate",
        help="BatchNorm statistics at each point: interpolate (default), current (those of --from "
        "or --center: the model is put there first) or recompute",
    )
    run.add_argument(
        "--recompute-batches", type=int, metavar="N", help="batches per point for --buffers recompute"
    )
    run.add_argument("--recompute-split", metavar="SPLIT", help="split to recompute the statistics from")
    run.add_argument("--order", choices=("auto", "points", "batches"), default="auto", help="default auto")
    job = parser.add_argument_group("job")
    job.add_argument(
        "--out", required=True, type=Path, metavar="PATH", help="result file (.npz), written by rank 0"
    )
    job.add_argument("--plot", type=Path, metavar="PNG", help="also draw the result into this PNG (rank 0)")
    job.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="resumable result file (.lps): finished points are "
        "kept there, and the same command run again computes only the missing ones",
    )
    job.add_argument(
        "--shard",
        choices=SHARDS,
        default="points",
        help="across processes, deal "
        "out the grid points (default) or split each split's examples (models too large to replicate)",
    )
    job.add_argument(
        "--backend",
        choices=("auto", "gloo", "nccl"),
        default="auto",
        help="process group backend under torchrun: auto (default) is nccl on GPUs, gloo on CPUs",
    )
    job.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto (default): a GPU when there is one (under torchrun cuda:LOCAL_RANK)",
    )
    job.add_argument("--quiet", action="store_true", help="no progress bar")


def main(argv: list[str] | None = None) -> int:
    """``python -m linpath sweep|surface ...`` without the other subcommands (for scripts and tests)."""
    parser = argparse.ArgumentParser(prog="linpath", description=__doc__)
    add_commands(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(argv))


def axis(text: str) -> np.ndarray:
    """An axis or α grid from ``START:STOP:NUM`` (``np.linspace``) or a comma-separated list.

    Raises:
        argparse.ArgumentTypeError: For anything else, NUM below 1, or values that are not finite.
    """
    try:
        if ":" in text:
            start, stop, num = text.split(":")
            values = np.linspace(float(start), float(stop), _count(num))
        else:
            values = np.array([float(v) for v in text.split(",")], dtype=np.float64)
    except ValueError as e:
        raise argparse.ArgumentTypeError(
            f"expected START:STOP:NUM (e.g. 0:1:51) or a comma-separated list of numbers, got {text!r} ({e})"
        ) from None
    if not np.isfinite(values).all():
        raise argparse.ArgumentTypeError(f"the values must be finite, got {text!r}")
    return values


def _count(text: str) -> int:
    num = int(text)
    if num < 1:
        raise ValueError(f"NUM must be at least 1, got {num}")
    return num


def factory(text: str) -> str:
    """``text`` checked to have the form ``MODULE:FUNCTION`` (the import happens later, in :func:`run`)."""
    module, sep, function = text.partition(":")
    if not sep or not module or not function or ":" in function:
        raise argparse.ArgumentTypeError(f"expected MODULE:FUNCTION, e.g. mymodels:make_resnet, got {text!r}")
    return text


def json_object(text: str) -> dict[str, Any]:
    """A JSON object (the keyword arguments of a factory)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"width\": 512}}', got {text!r}")
    return value


def call_factory(spec: str, kwargs: dict[str, Any], option: str) -> Any:
    """Imports ``MODULE`` of ``spec`` = ``MODULE:FUNCTION`` (the current directory first, as with
    ``python -m``) and returns ``FUNCTION(**kwargs)``.

    Raises:
        ImportError: When the module cannot be imported or has no such function.
        TypeError: When it is not callable.
    """
    name, _, function = spec.partition(":")
    _cwd_importable()
    try:
        module = importlib.import_module(name)
    except ImportError as e:
        raise ImportError(
            f"{option} {spec}: cannot import {name!r} ({e}); run the job from the directory that holds "
            "it or add that directory to PYTHONPATH"
        ) from e
    target: Any = module
    for part in function.split("."):
        if not hasattr(target, part):
            raise ImportError(f"{option} {spec}: {name!r} has no attribute {function!r}")
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"{option} {spec}: {function!r} is a {type(target).__name__}, not a function")
    return target(**kwargs)


def _cwd_importable() -> None:
    """Puts the current directory first on ``sys.path``, as ``python -m`` has it (the ``linpath``
    script has not), and leaves it there: a factory may import more later, and DataLoader workers
    started with ``spawn`` take the parent's ``sys.path``."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def make_model(args: argparse.Namespace) -> nn.Module:
    """The model the ``--model`` factory returns; TypeError when it is not an ``nn.Module``."""
    model = call_factory(args.model, args.model_kwargs, "--model")
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"--model {args.model} returned a {type(model).__name__}, not a torch.nn.Module: the factory "
            "must return the model to evaluate"
        )
    return model


def _place(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` on ``device``; one that is there already is left as it is (a linpath model cannot move)."""
    tensors = [*model.parameters(), *model.buffers()]
    if all(t.device == device for t in tensors):
        return model
    return model.to(device)


def launched_world() -> int:
    """The ``WORLD_SIZE`` that torchrun puts in each process's environment (1 when there is none)."""
    text = os.environ.get("WORLD_SIZE", "1")
    try:
        world = int(text)
    except ValueError:
        world = 0
    if world < 1:
        raise ValueError(f"the environment's WORLD_SIZE must be a positive integer, got {text!r}")
    return world


def choose(backend: str, device: str) -> tuple[str, str]:
    """``(backend, device kind)`` for ``--backend`` and ``--device``: ``auto`` means nccl and cuda when
    PyTorch sees a GPU (and ``--device`` is not cpu), else gloo and cpu.

    Raises:
        ValueError: For ``--device cuda`` without a GPU, or nccl without one.
    """
    cuda = torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise ValueError("--device cuda, but PyTorch sees no CUDA device here; use --device cpu or auto")
    kind = "cuda" if device == "cuda" or (device == "auto" and cuda) else "cpu"
    name = backend if backend != "auto" else ("nccl" if kind == "cuda" else "gloo")
    if name == "nccl" and kind != "cuda":
        raise ValueError("--backend nccl runs on GPUs only, and this job runs on the CPU; use --backend gloo")
    return name, kind


def _rank_device(kind: str) -> torch.device:
    """This process's device in a group: ``cuda:LOCAL_RANK`` (made current) or the CPU."""
    if kind == "cpu":
        return torch.device("cpu")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    count = torch.cuda.device_count()
    if not 0 <= local < count:
        raise ValueError(
            f"LOCAL_RANK is {local}, but this node has {count} GPU(s): start at most one process per GPU "
            "(torchrun --nproc-per-node)"
        )
    torch.cuda.set_device(local)
    return torch.device("cuda", local)


@contextlib.contextmanager
def process_group(backend: str, device: str) -> Iterator[torch.device]:
    """Joins the process group torchrun describes, when it says ``WORLD_SIZE`` > 1, and yields this
    process's device; the group is destroyed at the end, also on error.

    A group that is already initialised is used as it is (and left alone); a single process
    yields ``cpu`` or ``cuda`` and initialises nothing. The rendezvous is ``env://`` (torchrun's
    ``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``, ``WORLD_SIZE``).
    """
    name, kind = choose(backend, device)
    joined = dist.is_available() and dist.is_initialized()
    world = launched_world()
    if world == 1 and not joined:
        yield torch.device(kind)
        return
    target = _rank_device(kind)
    if joined:
        yield target
        return
    if not dist.is_available():
        raise ValueError(f"WORLD_SIZE is {world}, but this PyTorch build has no torch.distributed")
    dist.init_process_group(backend=name)
    try:
        yield target
    finally:
        dist.destroy_process_group()


def _grouped() -> bool:
    """Whether a process group of more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def run(args: argparse.Namespace) -> int:
    """Runs a parsed ``sweep`` or ``surface`` command.

    Returns:
        0, or 2 (with ``linpath COMMAND: error: ...`` on stderr) when the factories, the files or
        the settings are refused with a ValueError, TypeError, OSError or ImportError.
    """
    try:
        return _job(args)
    except (ValueError, TypeError, OSError, ImportError) as e:
        print(f"linpath {args.command}: error: {e}", file=sys.stderr)
        return 2


def _job(args: argparse.Namespace) -> int:
    for option, path in (("--out", args.out), ("--plot", args.plot)):
        if path is not None and not path.parent.is_dir():
            raise FileNotFoundError(f"{option} {path}: the directory {path.parent} does not exist")
    model = make_model(args)
    native = isinstance(model, NativeModel)  # lives on the CPU: "auto" means the CPU for it
    with process_group(args.backend, "cpu" if native and args.device == "auto" else args.device) as device:
        model = _place(model, device)
        data = call_factory(args.data, args.data_kwargs, "--data")
        began = time.perf_counter()
        result = evaluate(args, model, data)
        seconds = time.perf_counter() - began
        world = dist.get_world_size() if _grouped() else 1
        if not _grouped() or dist.get_rank() == 0:
            write(args, result)
            print(summary(args, result, seconds, world))
    return 0


def evaluate(args: argparse.Namespace, model: nn.Module, data: Any) -> Sweep | Surface:
    """The one call of :func:`linpath.interpolate` (``sweep``) or :func:`linpath.surface` that the
    commands make, with the model put at ``--from`` / ``--center`` first (see :func:`endpoints`).
    ``distributed=``, ``shard=`` and ``checkpoint=`` are passed only when they differ from the
    defaults: True inside a group of several processes, the options' values otherwise."""
    first, other = endpoints(args, model)
    options: dict[str, Any] = {
        "metrics": args.metrics,
        "batch_size": args.batch_size,
        "progress": False if args.quiet else None,
        "precision": args.precision,
        "engine": args.engine,
        "buffers": args.buffers,
        "recompute_batches": args.recompute_batches,
        "recompute_split": args.recompute_split,
        "prefix": "",  # the checkpoints are keyed by the model's own names already
        "order": args.order,
    }
    if _grouped():
        options["distributed"] = True
    if args.shard != "points":
        options["shard"] = args.shard
    if args.checkpoint is not None:
        options["checkpoint"] = args.checkpoint
    if args.command == "sweep":
        return interpolate(model, first, other, data, alphas=args.alphas, **options)
    grid = (args.grid if args.xs is None else args.xs, args.grid if args.ys is None else args.ys)
    return surface(model, first, other, data, grid=grid, **options)


def endpoints(args: argparse.Namespace, model: nn.Module) -> tuple[dict[str, Any], Any]:
    """``(start, end)`` or ``(center, [d1, d2])``, read and keyed by the model's names (``--prefix``).

    The model is put at ``--from`` / ``--center`` (parameters and float buffers) before anything
    else: the random directions are scaled to the center's weights, and the model's "own" buffers
    (``--buffers current``, or a plane whose directions carry no buffers) are the checkpoint's, not
    those the factory initialised.
    """
    first = _read(model, args.start if args.command == "sweep" else args.center, args)
    _move_to(model, first)
    if args.command == "sweep":
        return first, _read(model, args.end, args, "end")
    if args.directions is not None:
        return first, [_read(model, path, args, f"direction {k}") for k, path in enumerate(args.directions)]
    seeds = (args.random_directions, args.random_directions + 1)
    ignore = None if args.ignore == "none" else args.ignore
    pair = [directions.random(model, seed=s, normalization=args.normalization, ignore=ignore) for s in seeds]
    return first, pair


def _read(model: nn.Module, path: str, args: argparse.Namespace, what: str | None = None) -> dict[str, Any]:
    """The checkpoint at ``path``, its names matched to the model's (as ``interpolate`` matches them)."""
    what = what or ("start" if args.command == "sweep" else "center")
    return dict(model_endpoint(model, path, what, args.prefix))


def _move_to(model: nn.Module, point: dict[str, Any]) -> None:
    """Writes the parameters and the float buffers of ``point`` into ``model``."""
    names, _ = named_parameters(model)
    assign(model, {n: point[n] for n in names})
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            value = point.get(name)
            if not buffer.is_floating_point() or value is None:
                continue
            if tuple(value.shape) != tuple(buffer.shape):
                raise ValueError(
                    f"buffer {name!r} has shape {list(value.shape)} in the checkpoint and "
                    f"{list(buffer.shape)} in the model: the checkpoint is not of this model"
                )
            buffer.copy_(value)


def write(args: argparse.Namespace, result: Sweep | Surface) -> None:
    """Saves the result to ``--out`` (atomically) and draws it into ``--plot`` when given."""
    if isinstance(result, Surface):
        result.save(args.out, plane=not args.no_plane)
    else:
        result.save(args.out)
    if args.plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        from .plotting import save_figure

        save_figure(result.plot().figure, args.plot)


def summary(args: argparse.Namespace, result: Sweep | Surface, seconds: float, world: int) -> str:
    """One line: where the result went, its minimum (first split; loss, else the first metric),
    the number of points and the time."""
    split = result.splits[0]
    metric = "loss" if "loss" in result.values[split] else next(iter(result.values[split]))
    if isinstance(result, Surface):
        x, y, value = result.minimum(split, metric)
        where, points = f"(x, y) = ({x:.4g}, {y:.4g})", len(result.xs) * len(result.ys)
    else:
        alpha, value = result.minimum(split, metric)
        where, points = f"alpha = {alpha:.4g}", len(result.alphas)
    processes = f"{world} process" + ("es" if world > 1 else "")
    resumed = result.meta.get("job", {}).get("resumed_points")  # a rerun of a --checkpoint job
    done = f" ({points - resumed} computed, {resumed} read from {args.checkpoint})" if resumed else ""
    return (
        f"linpath {args.command}: wrote {args.out}; minimum {split} {metric} {value:.6g} at {where}; "
        f"{points} points{done} in {seconds:.1f} s on {processes}"
    )
