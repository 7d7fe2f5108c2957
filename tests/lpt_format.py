"""An independent reader and writer of the trajectory file format documented in src/trajectory.rs.

Plain struct, json, zlib (whose crc32 is the CRC-32 the format names) and NumPy: no linpath code, so the
tests can check what linpath writes byte by byte, and hand it files of either version.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = b"\x89LINPATH-TRJ\r\n\x1a\n"
DTYPES = {"float32": np.dtype("<f4"), "float64": np.dtype("<f8")}


@dataclass
class Layout:
    """Where things are in a trajectory file."""

    version: int
    json_start: int
    json_end: int
    data_start: int
    record: int  # bytes per record
    values: int  # bytes of values per record (they start 8 bytes into the record)


def padded(n: int, to: int) -> int:
    return -(-n // to) * to


def header_crc(head: bytes) -> int:
    """The version-2 header CRC: bytes 0..24 and 28..data_start."""
    return zlib.crc32(head[28:], zlib.crc32(head[:24]))


def record_crc(step: int, values: bytes) -> int:
    return zlib.crc32(values, zlib.crc32(struct.pack("<q", step)))


def record_len(version: int, numel: int, dtype: np.dtype) -> int:
    unchecked = 8 + numel * dtype.itemsize
    return unchecked if version == 1 else padded(unchecked + 4, 8)


def encode(header: dict, steps, values: np.ndarray, version: int = 2) -> bytes:
    """The bytes of a trajectory file: ``values`` is [count, numel] of the header's dtype."""
    dtype = DTYPES[header["dtype"]]
    js = json.dumps(header, separators=(",", ":")).encode()  # compact, as linpath writes it
    json_start = 24 if version == 1 else 32
    head = bytearray(MAGIC + struct.pack("<II", version, len(js)))
    if version != 1:
        head += b"\0" * 8
    head += js
    head += b"\0" * (padded(len(head), 64) - len(head))
    assert len(head) == padded(json_start + len(js), 64)
    if version != 1:
        head[24:28] = struct.pack("<I", header_crc(bytes(head)))
    out = bytearray(head)
    numel = header["numel"]
    for step, row in zip(steps, values, strict=True):
        body = np.ascontiguousarray(row, dtype=dtype).tobytes()
        assert len(body) == numel * dtype.itemsize
        record = struct.pack("<q", step) + body
        if version != 1:
            record += struct.pack("<I", record_crc(step, body))
            record += b"\0" * (record_len(version, numel, dtype) - len(record))
        out += record
    return bytes(out)


def write(path: Path, names, shapes, dtype: str, steps, values: np.ndarray, version: int = 2) -> None:
    """Writes a trajectory file of ``version`` (1 or 2) without linpath."""
    numel = int(sum(int(np.prod(s)) for s in shapes))
    header = {"numel": numel, "dtype": dtype, "names": list(names), "shapes": [list(s) for s in shapes]}
    values = np.asarray(values).reshape(len(steps), numel)
    path.write_bytes(encode(header, list(steps), values, version))


def layout(raw: bytes) -> Layout:
    """The layout of a well-formed file (its header must parse)."""
    version, hlen = struct.unpack("<II", raw[16:24])
    json_start = 24 if version == 1 else 32
    header = json.loads(raw[json_start : json_start + hlen])
    dtype = DTYPES[header["dtype"]]
    return Layout(
        version,
        json_start,
        json_start + hlen,
        padded(json_start + hlen, 64),
        record_len(version, header["numel"], dtype),
        header["numel"] * dtype.itemsize,
    )


def read(raw: bytes) -> tuple[dict, np.ndarray, np.ndarray, int]:
    """(header, steps, values[count, numel], version), checking the format (and every CRC of version 2)."""
    assert raw[:16] == MAGIC
    lay = layout(raw)
    assert lay.version in (1, 2)
    header = json.loads(raw[lay.json_start : lay.json_end])
    assert raw[lay.json_end : lay.data_start] == b"\0" * (lay.data_start - lay.json_end)
    if lay.version == 2:
        assert raw[28:32] == b"\0" * 4
        assert struct.unpack("<I", raw[24:28])[0] == header_crc(raw[: lay.data_start])
    dtype = DTYPES[header["dtype"]]
    assert (len(raw) - lay.data_start) % lay.record == 0
    count = (len(raw) - lay.data_start) // lay.record
    steps, rows = [], []
    for i in range(count):
        at = lay.data_start + i * lay.record
        (step,) = struct.unpack_from("<q", raw, at)
        body = raw[at + 8 : at + 8 + lay.values]
        if lay.version == 2:
            tail = raw[at + 8 + lay.values : at + lay.record]
            assert struct.unpack("<I", tail[:4])[0] == record_crc(step, body)
            assert tail[4:] == b"\0" * (len(tail) - 4)
        steps.append(step)
        rows.append(np.frombuffer(body, dtype))
    values = np.stack(rows) if rows else np.empty((0, header["numel"]), dtype)
    return header, np.array(steps, dtype=np.int64), values, lay.version


def fix_header_crc(raw: bytearray) -> None:
    """Recomputes the header CRC of a version-2 file in place (to craft a consistent header)."""
    data_start = padded(32 + struct.unpack("<I", raw[20:24])[0], 64)
    raw[24:28] = struct.pack("<I", header_crc(bytes(raw[:data_start])))
