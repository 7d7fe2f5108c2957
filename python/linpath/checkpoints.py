"""Reading endpoints from files: state_dicts saved by ``torch.save``, Lightning ``.ckpt`` files,
safetensors files and Hugging Face model directories.

:func:`load` turns any of them into a state_dict (name → tensor, on the CPU). Every path that
``interpolate``, ``surface`` and ``project`` accept as an endpoint goes through it. Files are only
read, never written; ``torch.save`` files are unpickled with ``weights_only=True`` (no code from
the file runs), and safetensors files are parsed here, each tensor's place checked against the
file's size before it is read. A truncated or damaged file is a ValueError that names it.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ._io import open_regular

#: Files a Hugging Face model directory holds its weights in, in the order they are looked for.
HF_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)

#: Entries of a checkpoint dict that hold the model's state_dict (Lightning: ``state_dict``).
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model")

_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}


def load(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The state_dict stored at ``path``, as CPU tensors.

    Args:
        path: A file written by ``torch.save`` (a state_dict, or a dict holding one under
            ``"state_dict"`` (Lightning ``.ckpt``), ``"model_state_dict"`` or ``"model"``), a
            ``.safetensors`` file, or a Hugging Face model directory (``model.safetensors`` or
            ``pytorch_model.bin``, or their sharded ``.index.json`` forms).

    Returns:
        The tensors by name, in the file's order; entries that are not tensors are left out.

    Raises:
        ValueError: For a truncated or damaged file, one that holds no state_dict, or a directory
            without model weights (the message names the file).
        FileNotFoundError: If ``path`` does not exist.
    """
    target = Path(path)
    if target.is_dir():
        return _load_directory(target)
    with open_regular(target) as f:
        magic = f.read(8)
    if magic[:4] == b"PK\x03\x04" or magic[:1] == b"\x80":  # torch.save: a zip archive or a pickle
        return _state_dict_of(_torch_load(target), target)
    return _load_safetensors(target)


def _torch_load(path: Path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, its failures as a ValueError naming the file."""
    try:
        with open_regular(path) as f:
            return torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(
            f"{path} holds objects other than tensors and plain containers, which linpath does not unpickle "
            f"(weights_only=True): {_first_line(e)}; save the model's state_dict alone "
            "(torch.save(model.state_dict(), path))"
        ) from None
    except (RuntimeError, OSError, EOFError, zipfile.BadZipFile, struct.error, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is truncated or damaged; torch.load failed: {_first_line(e)}") from None


def load_saved(path: str | os.PathLike[str], what: str) -> Any:
    """A file linpath itself wrote with ``torch.save`` (a curve, a ZCA), read on the CPU with
    ``weights_only=True``; FileNotFoundError as it is, any other failure (torch raises many kinds for a
    damaged or foreign file) a ValueError saying the file is not a readable ``what`` file."""
    try:
        return torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:
        raise ValueError(f"{os.fspath(path)} is not a readable {what} file ({e})") from e


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def _state_dict_of(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The state_dict inside what ``torch.load`` returned: the object itself, or one of its
    :data:`STATE_DICT_KEYS` entries."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a state_dict")
    if any(isinstance(v, torch.Tensor) for v in obj.values()):
        return _tensors(obj, path)
    found = [k for k in STATE_DICT_KEYS if isinstance(obj.get(k), Mapping)]
    if len(found) != 1:
        what = "several" if found else "no"
        raise ValueError(
            f"{path} holds a dict with {what} state_dict entries among its keys {list(obj)[:10]}; linpath "
            f"reads a state_dict, or a dict with exactly one of {list(STATE_DICT_KEYS)} (a Lightning "
            ".ckpt): load it yourself and pass the state_dict"
        )
    return _tensors(obj[found[0]], path)


def _tensors(state: Mapping[Any, Any], path: Path) -> dict[str, torch.Tensor]:
    out = {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not out:
        raise ValueError(f"{path} holds no tensors")
    return out


def _load_directory(folder: Path) -> dict[str, torch.Tensor]:
    """The weights of a Hugging Face model directory (see :data:`HF_WEIGHTS`)."""
    for name in HF_WEIGHTS:
        file = folder / name
        if not file.is_file():
            continue
        if name.endswith(".index.json"):
            return _load_sharded(file)
        return load(file)
    raise ValueError(
        f"{folder} is a directory without model weights; linpath reads a Hugging Face model directory "
        f"holding one of {list(HF_WEIGHTS)}, or pass the checkpoint file itself"
    )


def _load_sharded(index: Path) -> dict[str, torch.Tensor]:
    """The tensors of a sharded checkpoint, from the shards its index's ``weight_map`` names."""
    try:
        with open_regular(index) as f:
            weight_map = json.loads(f.read().decode("utf-8"))["weight_map"]
        shards = sorted({str(v) for v in weight_map.values()})
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{index} is not a valid checkpoint index ({type(e).__name__}: {e})") from None
    out: dict[str, torch.Tensor] = {}
    for shard in shards:
        if Path(shard).name != shard:
            raise ValueError(f"{index} names a shard outside its directory: {shard!r}")
        out.update(load(index.parent / shard))
    missing = [k for k in weight_map if k not in out]
    if missing:
        raise ValueError(f"{index} lists tensors its shards lack, e.g. {missing[:3]}")
    return out


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file: an 8-byte little-endian header size, a JSON header, then the data."""
    with open_regular(path) as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path} is neither a torch.save nor a safetensors file (only {len(raw)} bytes)")
    (size,) = struct.unpack("<Q", raw[:8])
    if size > len(raw) - 8 or raw[8:9] != b"{":
        raise ValueError(
            f"{path} is neither a torch.save file nor a safetensors file (or it is truncated): its header "
            f"claims {size} bytes, the file has {len(raw)}"
        )
    try:
        header = json.loads(raw[8 : 8 + size].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"{path} has a damaged safetensors header ({e})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path} has a damaged safetensors header (not a JSON object)")
    data = memoryview(raw)[8 + size :]
    header.pop("__metadata__", None)
    out = {name: _safetensor(path, name, info, data) for name, info in header.items()}
    return _tensors(out, path)


def _safetensor(path: Path, name: str, info: Any, data: memoryview) -> torch.Tensor:
    """One tensor of a safetensors file, its dtype, shape and byte range checked first."""
    try:
        dtype = _SAFETENSORS_DTYPES[info["dtype"]]
        shape = [int(s) for s in info["shape"]]
        begin, end = (int(o) for o in info["data_offsets"])
    except (KeyError, TypeError, ValueError) as e:
        problem = f"the entry of tensor {name!r} is damaged or of an unknown dtype ({e!r})"
        raise ValueError(f"{path}: {problem}") from None
    numel = 1
    for s in shape:
        numel *= s
    itemsize = torch.empty((), dtype=dtype).element_size()
    if min(shape, default=0) < 0 or not 0 <= begin <= end <= len(data) or end - begin != numel * itemsize:
        raise ValueError(
            f"{path} is truncated or damaged: tensor {name!r} ({info['dtype']}, shape {shape}) claims bytes "
            f"{begin}..{end} of {len(data)}"
        )
    if numel == 0:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(data[begin:end]), dtype=dtype).reshape(shape)
