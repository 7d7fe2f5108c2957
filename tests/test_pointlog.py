"""Resumable result files (python/linpath/pointlog.py): exact round trips, files cut at every byte,
garbage tails, refused settings, part files of several ranks, finish."""

import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

import linpath
from linpath import pointlog
from linpath.pointlog import PointLog, finish, read_header, read_points


def surface_header(n: int = 3, m: int = 2, **replace) -> dict:
    grid = [[float(x), float(y)] for x in np.linspace(-1, 1, n) for y in np.linspace(0, 2, m)]
    header = {
        "kind": "surface",
        "settings": {"metrics": ["loss"], "splits": ["train", "test"], "lr": 0.1},
        "hashes": {"origin": "ab" * 16, "directions": "cd" * 16},
        "layout": [["fc.weight", [4, 3]], ["fc.bias", [4]]],
        "grid": grid,
    }
    return {**header, **replace}


def random_values(rng: np.random.Generator, splits=("train", "test"), metrics=("loss", "error")) -> dict:
    """Values of every kind of float64: random bit patterns (NaNs of any sign and payload,
    infinities, subnormals) and the special ones, as Python floats."""
    bits = rng.integers(0, 2**64, size=len(splits) * len(metrics), dtype=np.uint64)
    special = np.array([np.nan, -np.nan, np.inf, -np.inf, -0.0, 0.0, 5e-324, rng.standard_normal()])
    floats = np.where(rng.random(bits.size) < 0.5, bits.view(np.float64), rng.choice(special, bits.size))
    it = iter(floats.tolist())
    return {s: {m: next(it) for m in metrics} for s in splits}


def bits(values: dict) -> dict:
    """The IEEE 754 bits of every value: equal bits, equal floats, NaNs included."""
    return {s: {m: struct.pack("<d", v) for m, v in mv.items()} for s, mv in values.items()}


def all_bits(points: dict) -> dict:
    return {i: bits(v) for i, v in points.items()}


def frames(raw: bytes) -> list[tuple[int, int, bytes, bytes]]:
    """An independent reader of the documented layout: ``(start, end, tag, payload)`` of every
    complete frame after the first line, stopping at the first bad one."""
    line = b"linpath.PointLog 1\n"
    assert raw.startswith(line)
    out, pos = [], len(line)
    while len(raw) - pos >= 12:
        tag, length, crc = struct.unpack_from("<4sII", raw, pos)
        payload = raw[pos + 12 : pos + 12 + length]
        if len(payload) < length or zlib.crc32(payload) != crc:
            break
        out.append((pos, pos + 12 + length, tag, payload))
        pos += 12 + length
    return out


def frame(tag: bytes, body) -> bytes:
    payload = json.dumps(body).encode()
    return struct.pack("<4sII", tag, len(payload), zlib.crc32(payload)) + payload


def handmade(header: dict, records: list[dict]) -> bytes:
    stored = {"format": "linpath.PointLog", "version": 1, **header}
    return b"linpath.PointLog 1\n" + frame(b"LPHD", stored) + b"".join(frame(b"LPPT", r) for r in records)


# A child that appends one point at a time to a line's result file until it is killed.
CHILD = r"""
import sys
from linpath.pointlog import PointLog

path, n = sys.argv[1], int(sys.argv[2])
header = {"kind": "line", "settings": {}, "hashes": {}, "layout": [], "grid": [[i / n] for i in range(n)]}
with PointLog.open(path, header, rank=1) as log:
    for i in range(n):
        log.append([(i, {"t": {"loss": i * 0.25, "error": float("nan") if i % 3 == 0 else -i}})])
        if i == 0:
            print("started", flush=True)
"""


def line_values(i: int) -> dict:
    return {"t": {"loss": i * 0.25, "error": float("nan") if i % 3 == 0 else float(-i)}}


def write_log(path, header, points) -> bytes:
    with PointLog.open(path, header) as log:
        log.append(points)
    return path.read_bytes()


@pytest.fixture
def rng() -> np.random.Generator:
    seed = int(np.random.SeedSequence().entropy % 2**32)
    print(f"seed {seed}")
    return np.random.default_rng(seed)


def test_values_round_trip_bit_for_bit(tmp_path, rng):
    header = surface_header(4, 3)
    points = {int(i): random_values(rng) for i in rng.permutation(12)[:9]}
    order = list(points.items())
    with PointLog.open(tmp_path / "run.lps", header) as log:
        log.append(order[:4])
        log.append(order[4:])
    read = read_points(tmp_path / "run.lps", header)
    assert list(read) == sorted(points)
    assert all_bits(read) == all_bits(points)
    assert all_bits(read_points(tmp_path / "run.lps")) == all_bits(read)  # the file's own header
    assert read_header(tmp_path / "run.lps") == {"format": "linpath.PointLog", "version": 1, **header}


def test_the_file_has_the_documented_layout(tmp_path, rng):
    header = surface_header()
    values = random_values(rng)
    raw = write_log(tmp_path / "run.lps", header, [(3, values)])
    (start, head_end, tag, payload), (_, end, point_tag, record) = frames(raw)
    assert (tag, point_tag, end) == (b"LPHD", b"LPPT", len(raw))
    assert json.loads(payload) == {"format": "linpath.PointLog", "version": 1, **header}
    body = json.loads(record)
    assert (body["point"], body["coords"]) == (3, header["grid"][3])
    for split, metrics in values.items():
        for metric, v in metrics.items():
            stored = body["values"][split][metric]
            if np.isfinite(v):
                assert struct.pack("<d", stored) == struct.pack("<d", v)
            else:
                assert stored == struct.pack(">d", v).hex()
    # and a file made by hand from the documentation reads back
    hand = tmp_path / "hand.lps"
    hand.write_bytes(
        handmade(header, [{"point": 5, "coords": header["grid"][5], "values": {"t": {"loss": 2.5}}}])
    )
    assert read_points(hand, header) == {5: {"t": {"loss": 2.5}}}


def three_point_file(tmp_path, rng):
    header = surface_header()
    points = {2: random_values(rng), 0: random_values(rng), 5: random_values(rng)}
    raw = write_log(tmp_path / "run.lps", header, list(points.items()))
    return header, points, raw, frames(raw)


def test_a_file_cut_at_every_byte_of_its_last_record_gives_the_complete_points(tmp_path, rng):
    header, points, raw, found = three_point_file(tmp_path, rng)
    last_start = found[-1][0]
    before = {i: points[i] for i in (2, 0)}
    new = random_values(rng)
    path = tmp_path / "cut.lps"
    for cut in range(last_start, len(raw)):
        path.write_bytes(raw[:cut])
        assert all_bits(read_points(path, header)) == all_bits(before), cut
        with PointLog.open(path, header) as log:
            log.append([(4, new)])
        resumed = path.read_bytes()
        assert resumed[:last_start] == raw[:last_start]  # the torn record is gone, the rest untouched
        assert [f[1] for f in frames(resumed)][-1] == len(resumed)  # no garbage anywhere
        assert all_bits(read_points(path, header)) == all_bits({**before, 4: new}), cut


def test_a_file_cut_within_its_header_holds_no_point_and_starts_over(tmp_path, rng):
    header, _, raw, found = three_point_file(tmp_path, rng)
    header_end = found[0][1]
    new = random_values(rng)
    path = tmp_path / "cut.lps"
    for cut in range(header_end):
        path.write_bytes(raw[:cut])
        assert read_points(path, header) == {}
        assert read_points(path) == {}
        with pytest.raises(ValueError, match="ends within its header"):
            read_header(path)
        with PointLog.open(path, header) as log:
            log.append([(1, new)])
        assert all_bits(read_points(path, header)) == all_bits({1: new})
        assert path.read_bytes()[:header_end] == raw[:header_end]


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00",
        b"LPPT",
        b"LPPT" + struct.pack("<II", 10, 0) + b"0123456789",  # wrong CRC
        b"LPPT" + struct.pack("<II", 2**31, 0),  # claims more bytes than there are
        b"LPHD" + b"\xff" * 40,
        "random",
    ],
)
def test_garbage_after_the_last_record_is_ignored_then_cut_off(garbage, tmp_path, rng):
    header, points, raw, _ = three_point_file(tmp_path, rng)
    if garbage == "random":
        garbage = rng.bytes(int(rng.integers(1, 500)))
    path = tmp_path / "run.lps"
    path.write_bytes(raw + garbage)
    assert all_bits(read_points(path, header)) == all_bits(points)
    new = random_values(rng)
    with PointLog.open(path, header) as log:
        log.append([(1, new)])
    assert path.read_bytes()[: len(raw)] == raw
    assert all_bits(read_points(path, header)) == all_bits({**points, 1: new})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"PK\x03\x04 a saved Surface", "is not a linpath result file"),
        (b"linpath.PointLog 7\n", "format version '7'"),
        (
            b"linpath.PointLog 1\n" + b"LPHD" + struct.pack("<II", 4, 0) + b"{}{}",
            "its header is missing or fails its CRC",
        ),
        (b"linpath.PointLog 1\n" + frame(b"LPHD", {"format": "linpath.PointLog", "version": 1}), "lacks"),
        (b"linpath.PointLog 1\n" + frame(b"LPPT", {}), "header is missing"),
    ],
)
def test_a_file_that_is_not_a_readable_result_file_is_refused(content, message, tmp_path):
    path = tmp_path / "run.lps"
    path.write_bytes(content)
    for call in (
        lambda: read_points(path),
        lambda: read_header(path),
        lambda: PointLog.open(path, surface_header()),
    ):
        with pytest.raises(ValueError, match=message):
            call()
    assert path.read_bytes() == content  # never overwritten


def test_a_directory_or_pipe_is_refused(tmp_path):
    (tmp_path / "dir.lps").mkdir()
    os.mkfifo(tmp_path / "pipe.lps")
    for name in ("dir.lps", "pipe.lps"):
        with pytest.raises(ValueError, match="not a regular file"):
            read_points(tmp_path / name)
        with pytest.raises(ValueError, match="not a regular file"):
            PointLog.open(tmp_path / name, surface_header())


def test_other_settings_are_refused_naming_each_difference(tmp_path, rng):
    header = surface_header(3, 2)
    write_log(tmp_path / "run.lps", header, [(0, random_values(rng))])
    other = surface_header(
        4,
        2,
        settings={**header["settings"], "metrics": ["loss", "error"], "seed": 3},
        hashes={**header["hashes"], "origin": "ef" * 16},
        layout=[["fc.weight", [4, 5]], ["fc.bias", [4]]],
    )
    with pytest.raises(ValueError) as e:
        PointLog.open(tmp_path / "run.lps", other)
    message = str(e.value)
    for phrase in (
        f"checkpoint {tmp_path / 'run.lps'} was written with other settings",
        'metrics (file ["loss"], now ["loss", "error"])',
        "seed (file absent, now 3)",
        "hashes.origin differs",
        'layout: parameter 0 (file ["fc.weight", [4, 3]], now ["fc.weight", [4, 5]])',
        "grid (file 3 x 2 points, now 4 x 2 points)",
        "delete the file",
    ):
        assert phrase in message
    for same in ("lr", "splits", "hashes.directions"):
        assert same not in message
    with pytest.raises(ValueError, match="was written with other settings"):
        read_points(tmp_path / "run.lps", other)


def test_a_moved_grid_point_and_another_kind_are_named(tmp_path, rng):
    header = surface_header()
    write_log(tmp_path / "run.lps", header, [])
    moved = [list(p) for p in header["grid"]]
    moved[4][1] += 1e-12
    with pytest.raises(ValueError, match=r"grid point 4 \(file \[1\.0, 0\.0\], now \[1\.0, 1e-12\]\)"):
        PointLog.open(tmp_path / "run.lps", {**header, "grid": moved})
    line = {**header, "kind": "line", "grid": [[0.0], [1.0]]}
    with pytest.raises(
        ValueError, match=r'kind \(file "surface", now "line"\).*grid \(file 3 x 2 points, now 2'
    ):
        PointLog.open(tmp_path / "run.lps", line)
    assert read_points(tmp_path / "run.lps", header) == {}  # nothing was written


def test_settings_compare_as_json_so_1_is_not_true(tmp_path):
    header = surface_header(settings={"flag": True})
    write_log(tmp_path / "run.lps", header, [])
    with pytest.raises(ValueError, match=r"flag \(file true, now 1\)"):
        PointLog.open(tmp_path / "run.lps", surface_header(settings={"flag": 1}))
    PointLog.open(tmp_path / "run.lps", json.loads(json.dumps(header))).close()


def test_part_files_of_all_ranks_merge_on_read(tmp_path, rng):
    header = surface_header(5, 4)
    points = {i: random_values(rng) for i in range(20) if rng.random() < 0.8}
    for rank in range(4):
        mine = [(i, v) for i, v in points.items() if i % 4 == rank]  # dealt interleaved
        with PointLog.open(tmp_path / "run.lps", header, rank=rank) as log:
            assert log.path == (tmp_path / "run.lps" if rank == 0 else tmp_path / f"run.lps.part{rank}")
            log.append(mine)
    assert sorted(os.listdir(tmp_path)) == ["run.lps", "run.lps.part1", "run.lps.part2", "run.lps.part3"]
    assert all_bits(read_points(tmp_path / "run.lps", header)) == all_bits(points)


def test_part_files_of_ranks_that_no_longer_exist_still_read(tmp_path, rng):
    header = surface_header()
    early = {1: random_values(rng), 4: random_values(rng)}
    write_log(tmp_path / "run.lps.part7", header, [(1, early[1])])  # a run on 8 ranks
    write_log(tmp_path / "run.lps.part12", header, [(4, early[4])])
    (tmp_path / "run.lps.part01").write_bytes(b"not a part file: its rank is not written so")
    (tmp_path / "run.lps.partial").write_bytes(b"nor this")
    assert all_bits(read_points(tmp_path / "run.lps", header)) == all_bits(early)  # no rank-0 file yet
    late = {0: random_values(rng)}
    write_log(tmp_path / "run.lps", header, list(late.items()))  # a rerun on 1 rank
    assert all_bits(read_points(tmp_path / "run.lps")) == all_bits({**early, **late})


def test_a_part_file_with_other_settings_is_refused_by_name(tmp_path, rng):
    write_log(tmp_path / "run.lps", surface_header(), [(0, random_values(rng))])
    write_log(tmp_path / "run.lps.part1", surface_header(4, 2), [(1, random_values(rng))])
    with pytest.raises(ValueError, match=rf"checkpoint {tmp_path}/run.lps.part1 was written with other"):
        read_points(tmp_path / "run.lps", surface_header())
    with pytest.raises(
        ValueError, match=rf"part1 was written with other settings than {tmp_path}/run.lps: grid"
    ):
        read_points(tmp_path / "run.lps")


def test_finish_merges_in_index_order_removes_the_parts_and_is_idempotent(tmp_path, rng):
    header = surface_header(4, 4)
    points = {i: random_values(rng) for i in rng.permutation(16)[:11].tolist()}
    for rank in range(3):
        with PointLog.open(tmp_path / "run.lps", header, rank=rank) as log:
            log.append([(i, v) for i, v in points.items() if i % 3 == rank])
    with open(tmp_path / "run.lps.part2", "ab") as f:
        f.write(b"LPPT\x01")  # a torn record of a killed rank
    finish(tmp_path / "run.lps", header)
    assert os.listdir(tmp_path) == ["run.lps"]
    raw = (tmp_path / "run.lps").read_bytes()
    assert [json.loads(p)["point"] for *_, p in frames(raw)[1:]] == sorted(points)
    assert frames(raw)[-1][1] == len(raw)
    assert all_bits(read_points(tmp_path / "run.lps", header)) == all_bits(points)
    finish(tmp_path / "run.lps", header)
    assert (tmp_path / "run.lps").read_bytes() == raw
    with pytest.raises(ValueError, match="other settings"):
        finish(tmp_path / "run.lps", surface_header(4, 3))
    assert (tmp_path / "run.lps").read_bytes() == raw


def test_a_point_recorded_twice_must_hold_the_same_values(tmp_path, rng):
    header = surface_header()
    values = random_values(rng)
    write_log(tmp_path / "run.lps", header, [(3, values)])
    write_log(tmp_path / "run.lps.part1", header, [(3, values), (3, values)])  # a rerun after a kill
    assert all_bits(read_points(tmp_path / "run.lps", header)) == all_bits({3: values})
    changed = {s: dict(mv) for s, mv in values.items()}
    changed["test"]["loss"] = float(np.nextafter(values["test"]["loss"], np.inf))
    if not np.isfinite(values["test"]["loss"]):  # nextafter(inf, inf) is inf itself
        changed["test"]["loss"] = 1.0
    write_log(tmp_path / "run.lps.part2", header, [(3, changed)])
    with pytest.raises(ValueError, match=r"point 3 is recorded twice with different values"):
        read_points(tmp_path / "run.lps", header)
    with pytest.raises(ValueError, match="point 3 is recorded twice"):
        finish(tmp_path / "run.lps", header)


def test_zeros_of_another_sign_are_another_value(tmp_path):
    header = surface_header()
    write_log(tmp_path / "run.lps", header, [(0, {"t": {"loss": 0.0}})])
    write_log(tmp_path / "run.lps.part1", header, [(0, {"t": {"loss": -0.0}})])
    with pytest.raises(ValueError, match="point 0 is recorded twice"):
        read_points(tmp_path / "run.lps", header)


def test_nans_of_another_sign_or_payload_are_the_same_value(tmp_path):
    header = surface_header()
    a, b = (
        struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000000))[0],
        struct.unpack("<d", b"\x01\0\0\0\0\0\xf8\xff")[0],
    )
    write_log(tmp_path / "run.lps", header, [(0, {"t": {"loss": a}})])
    write_log(tmp_path / "run.lps.part1", header, [(0, {"t": {"loss": b}})])
    assert np.isnan(read_points(tmp_path / "run.lps", header)[0]["t"]["loss"])
    write_log(tmp_path / "run.lps.part2", header, [(0, {"t": {"loss": a, "error": a}})])
    with pytest.raises(ValueError, match="recorded twice"):
        read_points(tmp_path / "run.lps", header)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"point": 4, "coords": [0.0, 2.0], "values": {}}, r"point 4 has coordinates \[0.0, 2.0\]"),
        ({"point": 4, "coords": [0.5], "values": {}}, "point 4 has coordinates"),
        ({"point": 6, "coords": [0.0, 0.0], "values": {}}, "not an index into the grid of 6 points"),
        ({"point": 0, "coords": [-1.0, 0.0], "values": {"t": {"loss": "nan"}}}, "neither a number"),
        ({"point": 0, "coords": [-1.0, 0.0], "values": {"t": {"loss": "3ff0000000000000"}}}, "neither"),
        ({"point": 0, "coords": [-1.0, 0.0]}, "fields are not"),
    ],
)
def test_a_record_that_passes_its_crc_but_disagrees_with_the_header_is_refused(record, message, tmp_path):
    header = surface_header()
    good = {"point": 1, "coords": header["grid"][1], "values": {"t": {"loss": 1.0}}}
    path = tmp_path / "run.lps"
    path.write_bytes(handmade(header, [good, record]))
    with pytest.raises(ValueError, match=message):
        read_points(path, header)
    with pytest.raises(ValueError, match="is damaged: the record at byte"):
        PointLog.open(path, header)


@pytest.mark.parametrize(
    ("points", "error", "message"),
    [
        ([(6, {"t": {"loss": 1.0}})], ValueError, "grid index must lie in"),
        ([(True, {"t": {"loss": 1.0}})], TypeError, "grid index must be an integer"),
        ([(0, {"t": {"loss": "1"}})], TypeError, "point 0's t/loss must be a number"),
        ([(0, {"t": {1: 1.0}})], TypeError, "string names"),
        ([(0, {"t": {"loss": 1.0}}, 3)], TypeError, "must be a pair"),
    ],
)
def test_bad_points_are_refused_before_anything_is_written(points, error, message, tmp_path):
    path = tmp_path / "run.lps"
    with PointLog.open(path, surface_header()) as log:
        log.append([(1, {"t": {"loss": 1.0}})])
        before = path.read_bytes()
        with pytest.raises(error, match=message):
            log.append([(2, {"t": {"loss": 2.0}}), *points])
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        ({"kind": "volume"}, "kind must be one of"),
        ({"grid": []}, "non-empty list of points of 2"),
        ({"grid": [[0.0]]}, "points of 2 finite"),
        ({"grid": [[0.0, float("nan")]]}, "finite"),
        ({"hashes": {"origin": 3}}, "dict of strings"),
        ({"layout": [["w", [-1]]]}, "layout"),
        ({"settings": {"f": object()}}, "only JSON values"),
    ],
)
def test_a_malformed_header_is_refused(replace, message, tmp_path):
    with pytest.raises((TypeError, ValueError), match=message):
        PointLog.open(tmp_path / "run.lps", surface_header(**replace))
    assert not (tmp_path / "run.lps").exists()


def test_one_writer_per_file_and_finish_waits_for_every_writer(tmp_path):
    header = surface_header()
    with PointLog.open(tmp_path / "run.lps", header, rank=1) as log:
        with pytest.raises(ValueError, match="open in another writer"):
            PointLog.open(tmp_path / "run.lps", header, rank=1)
        with pytest.raises(ValueError, match="open in another writer"):
            finish(tmp_path / "run.lps", header)
        log.append([(0, {"t": {"loss": 1.0}})])
    finish(tmp_path / "run.lps", header)
    assert read_points(tmp_path / "run.lps") == {0: {"t": {"loss": 1.0}}}


def test_an_absent_file_holds_no_point_and_is_created_only_when_asked(tmp_path):
    assert read_points(tmp_path / "run.lps") == {}
    with pytest.raises(FileNotFoundError, match="does not exist"):
        PointLog.open(tmp_path / "run.lps", surface_header(), create=False)
    with pytest.raises(FileNotFoundError):
        read_header(tmp_path / "run.lps")
    log = PointLog.open(tmp_path / "sub" / "run.lps", surface_header())
    log.close()
    log.close()
    with pytest.raises(ValueError, match="is closed"):
        log.append([])
    assert pointlog.part_files(tmp_path / "sub" / "run.lps") == []


def test_a_writer_killed_at_a_random_moment_leaves_every_point_it_finished(tmp_path, rng):
    n = 20_000
    env = {**os.environ, "PYTHONPATH": str(Path(linpath.__file__).parents[1])}
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path / "run.lps"), str(n)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    ) as child:
        watchdog = threading.Timer(120, child.kill)
        watchdog.start()
        try:
            said = child.stdout.readline().strip()
            time.sleep(rng.uniform(0, 0.1))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
            watchdog.cancel()
    assert said == "started"
    header = read_header(tmp_path / "run.lps.part1")
    points = read_points(tmp_path / "run.lps", header)
    done = len(points)
    print(f"{done} points finished before the kill")
    assert 1 <= done < n
    assert all_bits(points) == all_bits({i: line_values(i) for i in range(done)})
    with PointLog.open(tmp_path / "run.lps", header, rank=1) as log:  # the dead writer's lock is gone
        log.append([(done, line_values(done))])
    assert all_bits(read_points(tmp_path / "run.lps", header)) == all_bits(
        {i: line_values(i) for i in range(done + 1)}
    )
