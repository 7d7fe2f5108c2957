"""Resumable result files: the finished points of a line or surface, appended one record each.

A file (``run.lps``; rank r > 0 writes its own part file ``run.lps.part<r>``) is, all integers
little-endian::

    b"linpath.PointLog 1\\n"        the format's name and version, one line
    frame(b"LPHD", header JSON)     format, version, kind, settings, hashes, layout, grid
    frame(b"LPPT", point JSON)      one per finished point, in the order they finished
    ...

    frame(tag, payload) = tag (4 bytes) | u32 payload length | u32 CRC-32 of payload | payload

A point's JSON is ``{"point": i, "coords": grid[i], "values": {split: {metric: value}}}``; a finite
value is a JSON number (Python writes the shortest text that reads back to the same float64, -0.0
included), a NaN or infinity the 16 hex digits of its IEEE 754 bits (``"fff8000000000000"``), so
every value reads back bit for bit.

The header is complete before the file has its name (:func:`linpath._io.atomic_write`); each record
is one ``os.write`` to a file opened for appending, then synced. A file cut at any byte therefore
reads as its header and every complete record before the cut: reading stops at the first record
that is incomplete, has another tag or fails its CRC (a torn or garbage tail), and
:meth:`PointLog.open` truncates such a tail before it appends. Ranks never write the same file; a
writer holds an exclusive ``flock`` on its file, so a second writer of it is refused.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import re
import stat
import struct
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from linpath import _checks, _io

FORMAT = "linpath.PointLog"
VERSION = 1

_FIRST_LINE = f"{FORMAT} {VERSION}\n".encode()
_HEADER_TAG = b"LPHD"
_POINT_TAG = b"LPPT"
_FRAME = struct.Struct("<4sII")  # tag, payload length, CRC-32 of the payload
_MAX_HEADER = 1 << 30  # a header frame claiming more is damaged, not cut
#: kind -> coordinates per grid point; a curve's (linpath.curves) are its bends + 1 weights, 2 to 8.
_KINDS = {"line": 1, "surface": 2, "curve": 0}
_HEX_BITS = re.compile(r"[0-9a-f]{16}")
_SHORT = 60  # characters of a value quoted in a message
_FIELD_ORDER = {
    k: i for i, k in enumerate(["format", "version", "kind", "settings", "hashes", "layout", "grid"])
}

Values = dict[str, dict[str, float]]


def part_path(path: str | os.PathLike[str], rank: int) -> Path:
    """The file that ``rank`` writes: ``path`` itself for rank 0, else ``<path>.part<rank>``."""
    rank = _checks.integer("rank", rank, 0)
    return Path(path) if rank == 0 else Path(f"{os.fspath(path)}.part{rank}")


def part_files(path: str | os.PathLike[str]) -> list[Path]:
    """The part files ``<path>.part<r>`` (r >= 1) beside ``path``, by rank."""
    main = Path(path)
    pattern = re.compile(re.escape(main.name) + r"\.part([1-9][0-9]*)")
    try:
        names = os.listdir(main.parent)
    except FileNotFoundError:
        return []
    ranks = sorted(int(m[1]) for name in names if (m := pattern.fullmatch(name)))
    return [part_path(main, r) for r in ranks]


class PointLog:
    """One rank's result file, open for appending finished points (see the module's docstring).

    Attributes:
        path: The file this rank writes (``path`` or its part file).
        header: The header, as stored (grid coordinates as floats).
        rank: The writer's rank.
    """

    def __init__(self, path: Path, header: dict[str, Any], rank: int, fd: int, end: int) -> None:
        """Use :meth:`open`."""
        self.path, self.header, self.rank = path, header, rank
        self._fd: int | None = fd
        self._end = end  # the offset after the last complete record

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], header: Mapping[str, Any], *, rank: int = 0, create: bool = True
    ) -> PointLog:
        """Opens (creating when absent and ``create``) the result file that ``rank`` writes.

        Args:
            path: The result file; rank 0 writes it, rank r > 0 its part file ``<path>.part<r>``.
            header: ``{"kind": "line" | "surface", "settings": {name: JSON value}, "hashes":
                {name: str}, "layout": [[name, shape], ...], "grid": [[coords of point 0], ...]}``.
            rank: The writer's rank (an integer >= 0).
            create: Create the file when it is absent (else FileNotFoundError).

        Raises:
            ValueError: If the file exists with other settings (naming each that differs), is not
                a linpath result file, is damaged, is not a regular file, or is open in another
                writer; or if ``header`` is malformed.
        """
        expected = normal_header(header)
        file = part_path(path, rank)
        fd, end = _open_for_append(file, expected, create)
        return cls(file, expected, rank, fd, end)

    def append(self, points: Iterable[tuple[int, Mapping[str, Mapping[str, float]]]]) -> None:
        """Appends one record per finished point ``(index into the grid, {split: {metric: value}})``.

        Every point is checked before any is written. Each record is one ``os.write``; the file is
        synced before this returns. A failed write is cut back off the file, so that a later record
        never follows a torn one.
        """
        if self._fd is None:
            raise ValueError(f"the PointLog of {self.path} is closed")
        records = [_record(self.header, *_checked_point(self.header, point)) for point in points]
        for record in records:
            self._write(record)
        os.fsync(self._fd)

    def _write(self, record: bytes) -> None:
        assert self._fd is not None
        try:
            written = os.write(self._fd, record)
            while written < len(record):  # a regular file writes short only when interrupted or full
                written += os.write(self._fd, record[written:])
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._end)
            raise
        self._end += len(record)

    def close(self) -> None:
        """Closes the file (its lock goes with it). Closing twice is harmless."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> PointLog:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def read_points(path: str | os.PathLike[str], header: Mapping[str, Any] | None = None) -> dict[int, Values]:
    """Every complete point in ``path`` and its part files, merged, by grid index.

    Args:
        path: The result file (absent: no points).
        header: When given, each file's header must match it (as in :meth:`PointLog.open`); else
            each part file's header must match that of the first file read.

    Raises:
        ValueError: If a file is not a linpath result file or is damaged, if the files' settings
            differ, or if a point is recorded twice with different values.
    """
    expected = None if header is None else normal_header(header)
    return _read_all([Path(path), *part_files(path)], expected)


def read_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The header of the result file ``path`` (FileNotFoundError if it is absent).

    Raises:
        ValueError: If it is not a linpath result file, is damaged or ends within its header.
    """
    with _io.open_regular(path) as f:
        contents = _parse(f.read(), Path(path))
    if contents.header is None:
        raise ValueError(f"{path} ends within its header (cut while it was created); it holds no points")
    return contents.header


def finish(path: str | os.PathLike[str], header: Mapping[str, Any]) -> None:
    """Merges ``path`` and its part files into ``path``, points in index order; removes the parts.

    For rank 0 once every rank has closed its :class:`PointLog`. ``path`` is replaced in one step
    before any part file is removed, so a kill at any moment loses nothing; running it again
    rewrites the same bytes.

    Raises:
        ValueError: As :func:`read_points` does, or if a file is still open in a writer.
    """
    expected = normal_header(header)
    files = [Path(path), *part_files(path)]
    with contextlib.ExitStack() as locks:
        for file in files:
            with contextlib.suppress(FileNotFoundError):
                locks.enter_context(_locked(file))
        points = _read_all(files, expected)
        with _io.atomic_write(path) as f:
            f.write(_preamble(expected))
            for index in sorted(points):
                f.write(_record(expected, index, points[index]))
        for part in files[1:]:
            part.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# The header


def normal_header(header: Mapping[str, Any]) -> dict[str, Any]:
    """``header`` checked, with format and version, as the file stores it (a JSON round trip).

    Raises:
        TypeError: If it is not a mapping of JSON values.
        ValueError: If a field is missing or malformed (saying which).
    """
    if not isinstance(header, Mapping):
        raise TypeError(f"the result file's header must be a dict, got {type(header).__name__}")
    missing = {"kind", "settings", "hashes", "layout", "grid"} - set(header)
    if missing:
        raise ValueError(f"the result file's header lacks {sorted(missing)}")
    out = {**header, "format": FORMAT, "version": VERSION}
    try:
        out = json.loads(json.dumps(out))
    except (TypeError, ValueError) as e:
        raise TypeError(f"the result file's header must hold only JSON values ({e})") from e
    _check_header_fields(out)
    out["grid"] = [[float(c) for c in point] for point in out["grid"]]
    return out


def _check_header_fields(header: dict[str, Any]) -> None:
    """ValueError naming the first malformed field of a header (a JSON round trip)."""
    dims = _KINDS.get(header["kind"]) if isinstance(header["kind"], str) else None
    if dims is None:
        raise ValueError(f"the header's kind must be one of {sorted(_KINDS)}, got {header['kind']!r}")
    if not isinstance(header["settings"], dict):
        raise ValueError("the header's settings must be a dict")
    hashes = header["hashes"]
    if not isinstance(hashes, dict) or not all(isinstance(v, str) for v in hashes.values()):
        raise ValueError("the header's hashes must be a dict of strings")
    layout = header["layout"]
    if not isinstance(layout, list) or not all(_layout_entry(e) for e in layout):
        raise ValueError("the header's layout must be a list of [parameter name, shape] pairs")
    grid = header["grid"]
    if dims == 0 and isinstance(grid, list) and grid and isinstance(grid[0], list) and 2 <= len(grid[0]) <= 8:
        dims = len(grid[0])  # a curve: every point as long as the first
    if not isinstance(grid, list) or not grid or not all(_grid_point(p, dims) for p in grid):
        raise ValueError(
            f"the header's grid must be a non-empty list of points of {dims} finite coordinate(s) "
            f"for a {header['kind']}"
        )


def _layout_entry(entry: Any) -> bool:
    return (
        isinstance(entry, list)
        and len(entry) == 2
        and isinstance(entry[0], str)
        and isinstance(entry[1], list)
        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in entry[1])
    )


def _grid_point(point: Any, dims: int) -> bool:
    return (
        isinstance(point, list)
        and len(point) == dims
        and all(isinstance(c, int | float) and not isinstance(c, bool) and math.isfinite(c) for c in point)
    )


def _check_same(file: Path, found: dict[str, Any], expected: dict[str, Any], reference: str = "") -> None:
    """ValueError naming every field in which ``file``'s header ``found`` differs from ``expected``."""
    differences = _differences(found, expected)
    if differences:
        than = f" than {reference}" if reference else ""
        raise ValueError(
            f"checkpoint {file} was written with other settings{than}: {'; '.join(differences)}; "
            "pass another checkpoint path, or delete the file and its .part files to start over"
        )


def _differences(found: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """One phrase per differing field: each setting and hash by name, the layout, the grid."""
    out = []
    for key in sorted(set(found) | set(expected), key=lambda k: (_FIELD_ORDER.get(k, len(_FIELD_ORDER)), k)):
        a, b = found.get(key), expected.get(key)
        if _canonical(a) == _canonical(b):
            continue
        if key == "settings" and isinstance(a, dict) and isinstance(b, dict):
            out += [f"{k} ({_pair(a, b, k)})" for k in _differing_keys(a, b)]
        elif key == "hashes" and isinstance(a, dict) and isinstance(b, dict):
            out += [f"hashes.{k} differs ({_pair(a, b, k)})" for k in _differing_keys(a, b)]
        elif key == "layout" and isinstance(a, list) and isinstance(b, list):
            out.append(_layout_difference(a, b))
        elif key == "grid" and isinstance(a, list) and isinstance(b, list):
            out.append(_grid_difference(a, b))
        else:
            out.append(f"{key} (file {_short(a)}, now {_short(b)})")
    return out


def _differing_keys(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return [
        k for k in sorted(set(a) | set(b)) if k not in a or k not in b or _canonical(a[k]) != _canonical(b[k])
    ]


def _pair(a: dict[str, Any], b: dict[str, Any], key: str) -> str:
    def shown(d: dict[str, Any]) -> str:
        return _short(d[key]) if key in d else "absent"

    return f"file {shown(a)}, now {shown(b)}"


def _layout_difference(a: list[Any], b: list[Any]) -> str:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"layout: parameter {i} (file {_short(x)}, now {_short(y)})"
    return f"layout (file {len(a)} parameters, now {len(b)})"


def _grid_difference(a: list[Any], b: list[Any]) -> str:
    if len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if _canonical(x) != _canonical(y):
                return f"grid point {i} (file {_short(x)}, now {_short(y)})"
    return f"grid (file {_grid_size(a)}, now {_grid_size(b)})"


def _grid_size(grid: list[Any]) -> str:
    """``"21 x 21 points"`` for a full product grid of 2-D points, else ``"<n> points"``."""
    try:
        counts = [len({p[k] for p in grid}) for k in range(len(grid[0]))]
    except (TypeError, IndexError, KeyError):
        return f"{len(grid)} points"
    if len(counts) == 2 and math.prod(counts) == len(grid):
        return f"{counts[0]} x {counts[1]} points"
    return f"{len(grid)} points"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= _SHORT else text[: _SHORT - 1] + "…"


# ---------------------------------------------------------------------------------------------
# Records


def _frame(tag: bytes, payload: bytes) -> bytes:
    return _FRAME.pack(tag, len(payload), zlib.crc32(payload)) + payload


def _preamble(header: dict[str, Any]) -> bytes:
    """The first line and the header frame: a new file's whole content."""
    return _FIRST_LINE + _frame(_HEADER_TAG, json.dumps(header).encode())


def _record(header: dict[str, Any], index: int, values: Mapping[str, Mapping[str, float]]) -> bytes:
    """The framed record of point ``index``."""
    encoded = {s: {m: _encode(v) for m, v in mv.items()} for s, mv in values.items()}
    body = {"point": index, "coords": header["grid"][index], "values": encoded}
    return _frame(_POINT_TAG, json.dumps(body, allow_nan=False, separators=(",", ":")).encode())


def _encode(value: float) -> float | str:
    """A finite value as itself (JSON writes it exactly), another as its IEEE 754 bits in hex."""
    return value if math.isfinite(value) else struct.pack(">d", value).hex()


def _decode(value: Any) -> float:
    """The float a record's value encodes (ValueError for anything :func:`_encode` never writes)."""
    if isinstance(value, float | int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and _HEX_BITS.fullmatch(value):
        number: float = struct.unpack(">d", bytes.fromhex(value))[0]
        if not math.isfinite(number):
            return number
    raise ValueError(f"value {_short(value)} is neither a number nor the bits of a NaN or infinity")


def _checked_point(header: dict[str, Any], point: Any) -> tuple[int, Values]:
    """``(index, values)`` of an appended point, checked (TypeError/ValueError saying what is wrong)."""
    if not isinstance(point, tuple | list) or len(point) != 2:
        raise TypeError(
            f"each point must be a pair (grid index, {{split: {{metric: value}}}}), got {point!r}"
        )
    index = _checks.integer("the point's grid index", point[0], 0, len(header["grid"]))
    values = point[1]
    if not isinstance(values, Mapping) or not all(
        isinstance(s, str) and isinstance(mv, Mapping) and all(isinstance(m, str) for m in mv)
        for s, mv in values.items()
    ):
        raise TypeError(f"point {index}'s values must be {{split: {{metric: value}}}} with string names")
    return index, {
        s: {m: _checks.real(f"point {index}'s {s}/{m}", v) for m, v in mv.items()} for s, mv in values.items()
    }


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass
class _Contents:
    """What a file holds: its header (None where the file ends within it), its complete points in
    file order, and the offset after the last complete record."""

    header: dict[str, Any] | None
    points: list[tuple[int, Values]] = field(default_factory=list)
    end: int = 0


def _parse(data: bytes, file: Path) -> _Contents:
    """The header and every complete record of a file's bytes ``data``.

    Raises:
        ValueError: If ``data`` is not a linpath result file (cut or not), its header is damaged,
            or a record that passes its CRC is malformed.
    """
    start = _after_first_line(data, file)
    if start is None:
        return _Contents(None)
    header_frame = _frame_at(data, start)
    if header_frame is None:
        return _Contents(None)
    tag, payload, pos, crc_ok = header_frame
    if tag != _HEADER_TAG or not crc_ok:
        raise ValueError(
            f"{file} is damaged: its header is missing or fails its CRC; it is not a readable linpath "
            "result file"
        )
    contents = _Contents(_stored_header(payload, file), end=pos)
    assert contents.header is not None
    while (frame := _frame_at(data, pos)) is not None:
        tag, payload, after, crc_ok = frame
        if tag != _POINT_TAG or not crc_ok:
            break  # a torn record or garbage: every record before it counts
        contents.points.append(_point(payload, contents.header, file, pos))
        pos = contents.end = after
    return contents


def _after_first_line(data: bytes, file: Path) -> int | None:
    """The offset after the first line, or None where ``data`` is a cut first line."""
    if data.startswith(_FIRST_LINE):
        return len(_FIRST_LINE)
    if _FIRST_LINE.startswith(data):
        return None
    name = FORMAT.encode() + b" "
    if data.startswith(name):
        version = data[len(name) : data.find(b"\n", 0, 64)].decode(errors="replace")
        raise ValueError(
            f"{file} is a linpath result file of format version {version!r}; this linpath reads "
            f"version {VERSION} (upgrade linpath, or pass another checkpoint path)"
        )
    raise ValueError(
        f"{file} is not a linpath result file (a saved Sweep or Surface is another kind of file); "
        "pass another checkpoint path"
    )


def _frame_at(data: bytes, pos: int) -> tuple[bytes, bytes, int, bool] | None:
    """``(tag, payload, offset after, CRC holds)`` of the frame at ``pos``; None if it is incomplete."""
    if len(data) - pos < _FRAME.size:
        return None
    tag, length, crc = _FRAME.unpack_from(data, pos)
    start = pos + _FRAME.size
    if tag == _HEADER_TAG and length > _MAX_HEADER:
        return tag, b"", start, False
    if len(data) - start < length:
        return None
    payload = data[start : start + length]
    return tag, payload, start + length, zlib.crc32(payload) == crc


def _stored_header(payload: bytes, file: Path) -> dict[str, Any]:
    """The header a file stores, checked as :func:`normal_header` checks a new one."""
    try:
        header = json.loads(payload)
        if not isinstance(header, dict) or (header.get("format"), header.get("version")) != (FORMAT, VERSION):
            raise ValueError("it names another format or version")
        return normal_header(header)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{file} is damaged: its header is malformed ({e})") from e


def _point(payload: bytes, header: dict[str, Any], file: Path, pos: int) -> tuple[int, Values]:
    """The ``(index, values)`` of a record whose CRC holds (ValueError if it is malformed)."""
    try:
        body = json.loads(payload)
        if not isinstance(body, dict) or set(body) != {"point", "coords", "values"}:
            raise ValueError("its fields are not point, coords and values")
        index = body["point"]
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(header["grid"]):
            raise ValueError(f"point {index!r} is not an index into the grid of {len(header['grid'])} points")
        if not _same_coords(body["coords"], header["grid"][index]):
            raise ValueError(
                f"point {index} has coordinates {_short(body['coords'])}, the grid {header['grid'][index]}"
            )
        values = body["values"]
        if not isinstance(values, dict) or not all(isinstance(mv, dict) for mv in values.values()):
            raise ValueError("its values are not {split: {metric: value}}")
        return index, {s: {m: _decode(v) for m, v in mv.items()} for s, mv in values.items()}
    except ValueError as e:
        raise ValueError(f"{file} is damaged: the record at byte {pos} is malformed ({e})") from e


def _same_coords(coords: Any, expected: list[float]) -> bool:
    return (
        isinstance(coords, list)
        and len(coords) == len(expected)
        and all(
            isinstance(c, int | float) and not isinstance(c, bool) and _same_bits(float(c), e)
            for c, e in zip(coords, expected, strict=True)
        )
    )


def _same_bits(a: float, b: float) -> bool:
    return struct.pack("<d", a) == struct.pack("<d", b)


def _same_value(a: float, b: float) -> bool:
    """Equal bit for bit, or both NaN (whose sign and payload hardware need not reproduce)."""
    return _same_bits(a, b) or (math.isnan(a) and math.isnan(b))


def _read_all(files: list[Path], expected: dict[str, Any] | None) -> dict[int, Values]:
    """The points of ``files`` merged; headers checked against ``expected`` or the first one read."""
    merged: dict[int, Values] = {}
    sources: dict[int, Path] = {}
    reference = None
    for file in files:
        try:
            with _io.open_regular(file) as f:
                contents = _parse(f.read(), file)
        except FileNotFoundError:
            continue
        if contents.header is None:
            continue
        if expected is None:
            expected, reference = contents.header, file
        _check_same(file, contents.header, expected, "" if reference is None else str(reference))
        for index, values in contents.points:
            _merge(merged, sources, index, values, file)
    return dict(sorted(merged.items()))


def _merge(
    merged: dict[int, Values], sources: dict[int, Path], index: int, values: Values, file: Path
) -> None:
    """Adds a point; one recorded before must hold the same splits, metrics and values."""
    if index not in merged:
        merged[index], sources[index] = values, file
        return
    old = merged[index]
    same_names = {s: set(mv) for s, mv in old.items()} == {s: set(mv) for s, mv in values.items()}
    if same_names and all(_same_value(old[s][m], v) for s, mv in values.items() for m, v in mv.items()):
        return
    raise ValueError(
        f"point {index} is recorded twice with different values (in {sources[index]}: {_short(old)}; "
        f"in {file}: {_short(values)}): the runs that wrote them did not compute the same thing; "
        "delete the checkpoint and its .part files to start over"
    )


# ---------------------------------------------------------------------------------------------
# Opening for appending


def _open_for_append(file: Path, expected: dict[str, Any], create: bool) -> tuple[int, int]:
    """``(fd, end)``: ``file`` open for appending after its last complete record, locked, checked.

    A missing file (when ``create``), or one that ends within its header, is written anew holding
    the header alone; an incomplete last record is cut off.
    """
    fd, contents = _open_locked(file, expected, create)
    try:
        if contents.header is None:  # no point to lose: start the file over
            os.close(fd)
            _create(file, expected)
            fd, contents = _open_locked(file, expected, create)
        assert contents.header is not None
        _check_same(file, contents.header, expected)
        if os.fstat(fd).st_size != contents.end:
            os.ftruncate(fd, contents.end)
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        raise
    return fd, contents.end


def _open_locked(file: Path, expected: dict[str, Any], create: bool) -> tuple[int, _Contents]:
    """``file`` (created when absent and ``create``) open read-write for appending, locked, parsed."""
    try:
        _io.open_regular(file).close()  # a directory, device or pipe: a clear ValueError
    except FileNotFoundError:
        if not create:
            raise FileNotFoundError(f"checkpoint {file} does not exist") from None
        _create(file, expected)
    fd = os.open(file, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{file} is not a regular file (a directory, device or pipe)")
        _lock(fd, file)
        return fd, _parse(_read_fd(fd), file)
    except BaseException:
        os.close(fd)
        raise


def _create(file: Path, header: dict[str, Any]) -> None:
    """Writes a new ``file`` holding the header alone; it has its name only once complete."""
    with _io.atomic_write(file) as f:
        f.write(_preamble(header))


def _read_fd(fd: int) -> bytes:
    chunks, offset = [], 0
    while chunk := os.pread(fd, 1 << 20, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _lock(fd: int, file: Path) -> None:
    """An exclusive ``flock`` on ``fd`` (ValueError if another writer holds one; none where the
    filesystem has no locks)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
            raise ValueError(
                f"checkpoint {file} is open in another writer (another job, or a PointLog not yet "
                "closed); pass another checkpoint path or wait for it to end"
            ) from e


@contextlib.contextmanager
def _locked(file: Path) -> Any:
    """``file`` locked as a writer locks it, for the duration of the block."""
    with _io.open_regular(file) as f:
        _lock(f.fileno(), file)
        yield
