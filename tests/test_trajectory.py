"""Tests of the trajectory store (src/trajectory.rs) and its Python face (python/linpath/trajectory.py).

Every stored value is checked against the model's parameters flattened independently with plain torch
at record time, and the on-disk layout is checked with an independent NumPy reader of the documented
file format (and its checksums with zlib's CRC32); version-1 files come from an independent writer.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import struct
from pathlib import Path

import lpt_format
import numpy as np
import pytest
import torch
from torch import nn

import linpath
from linpath import _linpath

MAGIC = lpt_format.MAGIC


class OddModel(nn.Module):
    """Parameters with awkward shapes: a 0-d scalar, a 3-D tensor, and two Linear layers."""

    def __init__(self, gen: torch.Generator, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.fc1 = nn.Linear(7, 5)
        self.fc2 = nn.Linear(5, 3)
        self.scale = nn.Parameter(torch.randn((), generator=gen))
        self.cube = nn.Parameter(torch.randn(2, 3, 4, generator=gen) * 0.1)
        with torch.no_grad():
            for p in (self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        self.to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.fc1(x))
        return self.fc2(h) * self.scale + self.cube.sum()


def make_model(seed: int, dtype: torch.dtype = torch.float32) -> OddModel:
    return OddModel(torch.Generator().manual_seed(seed), dtype)


def sgd_steps(model: nn.Module, gen: torch.Generator, steps: int = 3) -> None:
    """A few plain SGD steps on random regression data, so consecutive checkpoints differ."""
    dtype = next(model.parameters()).dtype
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(steps):
        x = torch.randn(16, 7, generator=gen, dtype=dtype)
        y = torch.randn(16, 3, generator=gen, dtype=dtype)
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()


def reference_flat(model: nn.Module, dtype: torch.dtype) -> np.ndarray:
    """The parameters flattened the obvious way: named_parameters order, row-major, cast to dtype."""
    return torch.cat([p.detach().reshape(-1).to(dtype) for _, p in model.named_parameters()]).numpy().copy()


def record_run(
    recorder: linpath.TrajectoryRecorder,
    model: nn.Module,
    gen: torch.Generator,
    count: int,
    steps: list[int] | None = None,
    dtype: torch.dtype = torch.float32,
) -> list[np.ndarray]:
    """Records `count` checkpoints with SGD in between; returns the reference vectors."""
    refs = []
    for i in range(count):
        refs.append(reference_flat(model, dtype))
        expected = len(recorder) if steps is None else steps[i]
        got = recorder.record() if steps is None else recorder.record(steps[i])
        assert got == expected
        sgd_steps(model, gen)
    return refs


def read_trajectory_file(path: Path) -> tuple[dict, np.ndarray, np.ndarray]:
    """An independent reader of the documented format: (header, steps, values[count, numel]).

    It checks the version-2 layout: the header CRC, and each record's CRC and zero padding.
    """
    header, steps, values, version = lpt_format.read(path.read_bytes())
    assert version == 2
    return header, steps, values


def assert_same_trajectory(a: linpath.Trajectory, b: linpath.Trajectory) -> None:
    assert len(a) == len(b)
    np.testing.assert_array_equal(a.steps, b.steps)
    assert a.names == b.names and a.shapes == b.shapes and a.numel == b.numel and a.dtype == b.dtype
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.tensor, y.tensor)


# --- recording in memory -------------------------------------------------------------------------------


def test_in_memory_default_steps_and_metadata():
    model, gen = make_model(1), torch.Generator().manual_seed(11)
    recorder = linpath.TrajectoryRecorder(model)
    refs = record_run(recorder, model, gen, 4)
    traj = recorder.trajectory

    assert len(traj) == len(recorder) == 4
    assert isinstance(traj.steps, np.ndarray) and traj.steps.dtype == np.int64
    np.testing.assert_array_equal(traj.steps, [0, 1, 2, 3])
    # A module's own parameters come before its submodules' in named_parameters().
    assert traj.names == ["scale", "cube", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert traj.names == [n for n, _ in model.named_parameters()]
    assert traj.shapes == [(), (2, 3, 4), (5, 7), (5,), (3, 5), (3,)]
    assert traj.numel == sum(p.numel() for p in model.parameters()) == 35 + 5 + 15 + 3 + 1 + 24
    assert traj.dtype == torch.float32
    assert traj.path is None
    # SGD really moved the parameters, so each index is tested against a distinct reference.
    assert all(not np.array_equal(refs[i], refs[i + 1]) for i in range(3))

    for i, ref in enumerate(refs):
        vec = traj[i]
        assert isinstance(vec, linpath.ParamVector)
        assert vec.names == traj.names and vec.shapes == traj.shapes
        assert vec.tensor.dim() == 1 and vec.tensor.dtype == torch.float32
        np.testing.assert_array_equal(vec.numpy(), ref)
        np.testing.assert_array_equal(traj[i - 4].numpy(), ref)  # negative index: i - 4 in -4..-1
    np.testing.assert_array_equal(traj[-1].numpy(), refs[-1])
    for got, ref in zip(traj, refs, strict=True):
        np.testing.assert_array_equal(got.numpy(), ref)
    assert [v.numpy().tolist() for v in iter(traj)] == [r.tolist() for r in refs]


def test_checkpoint_cuts_back_into_the_model_layout():
    model = make_model(2)
    recorder = linpath.TrajectoryRecorder(model)
    recorder.record()
    state = recorder.trajectory[0].to_state_dict()
    for name, p in model.named_parameters():
        assert torch.equal(state[name], p.detach())


def test_explicit_steps_and_default_after_explicit():
    model, gen = make_model(3), torch.Generator().manual_seed(12)
    recorder = linpath.TrajectoryRecorder(model)
    refs = record_run(recorder, model, gen, 4, steps=[10, 250, -7, 2**62])
    assert recorder.record(np.int64(99)) == 99
    # The default is the number of checkpoints so far, whatever the explicit steps were.
    assert recorder.record() == 5
    traj = recorder.trajectory
    assert traj.steps.dtype == np.int64
    np.testing.assert_array_equal(traj.steps, [10, 250, -7, 2**62, 99, 5])
    for i, ref in enumerate(refs):
        np.testing.assert_array_equal(traj[i].numpy(), ref)


def test_trajectory_is_a_live_view():
    model, gen = make_model(4), torch.Generator().manual_seed(13)
    recorder = linpath.TrajectoryRecorder(model)
    traj = recorder.trajectory
    assert len(traj) == 0
    refs = record_run(recorder, model, gen, 3)
    assert len(traj) == 3
    np.testing.assert_array_equal(traj[2].numpy(), refs[2])


@pytest.mark.parametrize(
    ("model_dtype", "dtype", "stored"),
    [
        (torch.float32, None, torch.float32),
        (torch.float64, None, torch.float64),
        (torch.float32, torch.float64, torch.float64),
        (torch.float64, torch.float32, torch.float32),
    ],
)
@pytest.mark.parametrize("on_disk", [False, True])
def test_stored_dtype(tmp_path, model_dtype, dtype, stored, on_disk):
    model, gen = make_model(5, model_dtype), torch.Generator().manual_seed(14)
    path = tmp_path / "t.lpt" if on_disk else None
    recorder = linpath.TrajectoryRecorder(model, path, dtype=dtype)
    refs = record_run(recorder, model, gen, 3, dtype=stored)
    traj = recorder.trajectory
    assert traj.dtype == stored
    for i, ref in enumerate(refs):
        assert traj[i].dtype == stored
        # float32 -> float64 is exact; float64 -> float32 is the usual round-to-nearest cast.
        np.testing.assert_array_equal(traj[i].numpy(), ref)
    if on_disk:
        reopened = linpath.Trajectory.open(path)
        assert reopened.dtype == stored
        assert_same_trajectory(traj, reopened)


def test_mixed_precision_model_is_stored_as_float32():
    model = make_model(6)
    model.fc2.double()
    recorder = linpath.TrajectoryRecorder(model)
    recorder.record()
    traj = recorder.trajectory
    assert traj.dtype == torch.float32
    np.testing.assert_array_equal(traj[0].numpy(), reference_flat(model, torch.float32))


@pytest.mark.parametrize("dtype", [torch.int64, torch.float16, torch.bfloat16, torch.int32, torch.bool])
def test_invalid_dtype_is_a_type_error(tmp_path, dtype):
    with pytest.raises(TypeError, match="float32 or torch.float64"):
        linpath.TrajectoryRecorder(make_model(7), dtype=dtype)
    with pytest.raises(TypeError):
        linpath.TrajectoryRecorder(make_model(7), tmp_path / "x.lpt", dtype=dtype)
    assert not (tmp_path / "x.lpt").exists()


@pytest.mark.parametrize("step", [1.5, 2.0, "3", True, np.float64(4.0), [1]])
def test_non_integer_step_is_a_type_error(step):
    model = make_model(8)
    recorder = linpath.TrajectoryRecorder(model)
    recorder.record(0)
    with pytest.raises(TypeError, match="step must be an integer"):
        recorder.record(step)
    assert len(recorder) == 1  # nothing was appended


def test_recorder_needs_a_module_with_parameters():
    with pytest.raises(TypeError):
        linpath.TrajectoryRecorder(torch.zeros(3))
    with pytest.raises(ValueError, match="no parameters"):
        linpath.TrajectoryRecorder(nn.ReLU())


def test_index_errors():
    model = make_model(9)
    recorder = linpath.TrajectoryRecorder(model)
    recorder.record()
    recorder.record()
    traj = recorder.trajectory
    for bad in (2, 3, -3, 10**6):
        with pytest.raises(IndexError, match="out of range"):
            traj[bad]
    for bad in (1.0, "0", slice(0, 1)):
        with pytest.raises(TypeError):
            traj[bad]
    np.testing.assert_array_equal(traj[np.int64(-2)].numpy(), traj[0].numpy())
    with pytest.raises(IndexError):
        linpath.TrajectoryRecorder(model).trajectory[0]


# --- recording to a file -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_file_round_trip_and_on_disk_format(tmp_path, dtype):
    model, gen = make_model(10, dtype), torch.Generator().manual_seed(15)
    path = tmp_path / "run.lpt"
    recorder = linpath.TrajectoryRecorder(model, path)
    assert os.listdir(tmp_path) == ["run.lpt"]  # the temporary name used while creating it is gone
    steps = [0, 5, 17, 40, 41]
    refs = record_run(recorder, model, gen, 5, steps=steps, dtype=dtype)
    traj = recorder.trajectory
    assert traj.path == path
    assert isinstance(traj.path, Path)
    assert "run.lpt" in repr(traj)

    # The documented format, read independently.
    header, disk_steps, disk_values = read_trajectory_file(path)
    assert header == {
        "numel": traj.numel,
        "dtype": "float32" if dtype == torch.float32 else "float64",
        "names": traj.names,
        "shapes": [list(s) for s in traj.shapes],
    }
    np.testing.assert_array_equal(disk_steps, steps)
    np.testing.assert_array_equal(disk_values, np.stack(refs))

    for opened in (linpath.Trajectory.open(path), linpath.Trajectory.open(str(path))):
        assert opened.path == path
        assert opened.dtype == dtype
        np.testing.assert_array_equal(opened.steps, steps)
        assert_same_trajectory(traj, opened)
        for i, ref in enumerate(refs):
            np.testing.assert_array_equal(opened[i].numpy(), ref)
            np.testing.assert_array_equal(opened[i - 5].numpy(), ref)
        with pytest.raises(IndexError):
            opened[5]


def test_empty_file_trajectory_reopens(tmp_path):
    path = tmp_path / "empty.lpt"
    recorder = linpath.TrajectoryRecorder(make_model(11), path)
    traj = linpath.Trajectory.open(path)
    assert len(traj) == 0 and traj.numel == recorder.trajectory.numel
    assert traj.steps.shape == (0,) and traj.steps.dtype == np.int64


def test_reopened_file_is_a_snapshot_and_recording_continues(tmp_path):
    model, gen = make_model(12), torch.Generator().manual_seed(16)
    path = tmp_path / "live.lpt"
    recorder = linpath.TrajectoryRecorder(model, path)
    refs = record_run(recorder, model, gen, 2)
    early = linpath.Trajectory.open(path)
    refs += record_run(recorder, model, gen, 2)
    assert len(early) == 2
    late = linpath.Trajectory.open(path)
    assert len(late) == 4
    for i, ref in enumerate(refs):
        np.testing.assert_array_equal(late[i].numpy(), ref)
    np.testing.assert_array_equal(late.steps, [0, 1, 2, 3])


def test_recorder_never_overwrites_an_existing_file(tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_bytes(b"do not touch")
    with pytest.raises(ValueError, match="already exists"):
        linpath.TrajectoryRecorder(make_model(13), precious)
    assert precious.read_bytes() == b"do not touch"

    model, gen = make_model(14), torch.Generator().manual_seed(17)
    path = tmp_path / "run.lpt"
    recorder = linpath.TrajectoryRecorder(model, path)
    record_run(recorder, model, gen, 2)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="already exists"):
        linpath.TrajectoryRecorder(model, path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["precious.txt", "run.lpt"]


def test_recorder_into_a_missing_directory_is_an_os_error(tmp_path):
    with pytest.raises(OSError):
        linpath.TrajectoryRecorder(make_model(15), tmp_path / "no" / "such" / "dir.lpt")


# --- damaged files -------------------------------------------------------------------------------------


def write_file_trajectory(path: Path, count: int = 3, dtype=torch.float64) -> list[np.ndarray]:
    model, gen = make_model(20, dtype), torch.Generator().manual_seed(21)
    recorder = linpath.TrajectoryRecorder(model, path)
    return record_run(recorder, model, gen, count, steps=[3 * i + 1 for i in range(count)], dtype=dtype)


def header_end(path: Path) -> tuple[int, int]:
    """(end of the JSON header, start of the data) of a trajectory file."""
    lay = lpt_format.layout(path.read_bytes())
    return lay.json_end, lay.data_start


@pytest.mark.parametrize("cut", [1, 5, 8, 9, 100, "step"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_truncated_file(tmp_path, cut, dtype):
    """Cut `cut` bytes off the end: inside the last checkpoint's values, or ("step") inside its step."""
    path = tmp_path / "cut.lpt"
    refs = write_file_trajectory(path, 3, dtype)
    size = path.stat().st_size
    record = (size - header_end(path)[1]) // 3
    if cut == "step":
        cut = record - 3  # 3 bytes of the last record's 8-byte step number remain
    assert cut < record
    os.truncate(path, size - cut)
    with pytest.raises(ValueError, match="truncated") as info:
        linpath.Trajectory.open(path)
    assert "allow_partial" in str(info.value) and str(path) in str(info.value)

    partial = linpath.Trajectory.open(path, allow_partial=True)
    assert len(partial) == 2
    np.testing.assert_array_equal(partial.steps, [1, 4])
    for i in range(2):
        np.testing.assert_array_equal(partial[i].numpy(), refs[i])
    with pytest.raises(IndexError):
        partial[2]
    assert path.stat().st_size == size - cut  # the file itself is never modified


def test_truncated_inside_the_first_checkpoint(tmp_path):
    path = tmp_path / "cut.lpt"
    write_file_trajectory(path, 1)
    os.truncate(path, path.stat().st_size - 3)
    with pytest.raises(ValueError, match="truncated"):
        linpath.Trajectory.open(path)
    assert len(linpath.Trajectory.open(path, allow_partial=True)) == 0


def test_cut_on_a_record_boundary_is_a_shorter_trajectory(tmp_path):
    path = tmp_path / "short.lpt"
    refs = write_file_trajectory(path, 3)
    data_start = header_end(path)[1]
    record = (path.stat().st_size - data_start) // 3
    os.truncate(path, data_start + 2 * record)
    traj = linpath.Trajectory.open(path)
    assert len(traj) == 2
    np.testing.assert_array_equal(traj[1].numpy(), refs[1])


@pytest.mark.parametrize("keep", ["prefix", "json", "padding"])
def test_file_cut_inside_the_header(tmp_path, keep):
    path = tmp_path / "head.lpt"
    write_file_trajectory(path, 2)
    json_end, data_start = header_end(path)
    assert data_start - json_end >= 2, "the header must end before the padding for this test"
    size = {"prefix": 20, "json": (24 + json_end) // 2, "padding": json_end + 1}[keep]
    os.truncate(path, size)
    with pytest.raises(ValueError, match="not a linpath trajectory file|truncated or damaged header"):
        linpath.Trajectory.open(path)
    with pytest.raises(ValueError, match="not a linpath trajectory file|truncated or damaged header"):
        linpath.Trajectory.open(path, allow_partial=True)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.lpt"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="not a linpath trajectory file"):
        linpath.Trajectory.open(path)


def test_foreign_files(tmp_path):
    rng = np.random.default_rng(22)
    noise = tmp_path / "noise.bin"
    noise.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    text = tmp_path / "notes.txt"
    text.write_text("epoch,loss\n" + "".join(f"{i},{rng.random():.6f}\n" for i in range(200)))
    npy = tmp_path / "weights.npy"
    np.save(npy, rng.standard_normal(100))
    for path in (noise, text, npy):
        with pytest.raises(ValueError, match="not a linpath trajectory file .wrong magic bytes.") as info:
            linpath.Trajectory.open(path)
        assert str(path) in str(info.value)


@pytest.mark.parametrize("where", [0, 1, "colon", "middle", -1])
def test_damaged_header_json(tmp_path, where):
    path = tmp_path / "damaged.lpt"
    write_file_trajectory(path, 2)
    raw = bytearray(path.read_bytes())
    json_end, _ = header_end(path)
    text = raw[32:json_end]
    offset = {
        0: 0,  # the opening brace
        1: 1,  # the opening quote of the first key
        "colon": text.index(b":"),
        "middle": text.index(b'"names":[') + 8,  # the list bracket
        -1: len(text) - 1,  # the closing brace
    }[where]
    raw[32 + offset] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="damaged header"):
        linpath.Trajectory.open(path)
    lpt_format.fix_header_crc(raw)  # the same damage, with a checksum to match: the JSON parser sees it
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"damaged header \("):
        linpath.Trajectory.open(path)


def test_header_whose_sizes_do_not_add_up(tmp_path):
    path = tmp_path / "sizes.lpt"
    write_file_trajectory(path, 2)
    raw = path.read_bytes()
    json_end, _ = header_end(path)
    header = json.loads(raw[32:json_end])
    numel = header["numel"]
    bad = raw[32:json_end].replace(f'"numel":{numel}'.encode(), f'"numel":{numel + 1}'.encode())
    assert len(bad) == json_end - 32 and bad != raw[32:json_end]  # same length: offsets unchanged
    crafted = bytearray(raw[:32] + bad + raw[json_end:])
    lpt_format.fix_header_crc(crafted)  # a consistent checksum: only the size check can catch it
    path.write_bytes(bytes(crafted))
    with pytest.raises(ValueError, match="header sizes do not add up"):
        linpath.Trajectory.open(path)


@pytest.mark.parametrize("version", [0, 3, 2**32 - 1])
def test_wrong_format_version(tmp_path, version):
    path = tmp_path / "v3.lpt"
    write_file_trajectory(path, 1)
    raw = bytearray(path.read_bytes())
    raw[16:20] = struct.pack("<I", version)
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=f"format version {version}; this linpath reads versions 1 and 2"):
        linpath.Trajectory.open(path)


def test_version_2_file_whose_version_reads_1_is_refused(tmp_path):
    """Damage that turns the version into 1 must not make the records readable without their checks:
    a version-1 reading looks for the JSON at byte 24, where version 2 keeps its header checksum."""
    path = tmp_path / "v1?.lpt"
    write_file_trajectory(path, 2)
    raw = bytearray(path.read_bytes())
    raw[16:20] = struct.pack("<I", 1)
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="damaged header"):
        linpath.Trajectory.open(path)


def test_header_length_beyond_the_file(tmp_path):
    path = tmp_path / "hlen.lpt"
    write_file_trajectory(path, 1)
    raw = bytearray(path.read_bytes())
    raw[20:24] = struct.pack("<I", 0xFFFFFFF0)
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="truncated or damaged header"):
        linpath.Trajectory.open(path)


def _crafted_file(path: Path, header: dict, payload: bytes) -> None:
    js = json.dumps(header).encode()
    raw = MAGIC + struct.pack("<II", 1, len(js)) + js
    raw += b"\0" * (-len(raw) % 64)
    path.write_bytes(raw + payload)


@pytest.mark.parametrize(
    ("header", "payload"),
    [
        # numel * 4 bytes overflows a u64: the record length wraps to 8 bytes, so the 1 KiB after the
        # header reads as 128 checkpoints.
        ({"numel": 2**62, "dtype": "float32", "names": ["a"], "shapes": [[2**31, 2**31]]}, 1024),
        # The shapes' product overflows (2**64 + 2**32 wraps to 2**32 = numel).
        ({"numel": 2**32, "dtype": "float32", "names": ["a"], "shapes": [[2**32, 2**32 + 1]]}, 0),
    ],
)
def test_header_with_absurd_sizes_is_a_value_error(tmp_path, header, payload):
    """A damaged header whose sizes overflow 64-bit arithmetic must be rejected when the file is opened.

    (A checkpoint of 2**62 float32 values can never have been written; such a header is damage.)
    """
    path = tmp_path / "absurd.lpt"
    _crafted_file(path, header, bytes(range(256)) * (payload // 256))
    with pytest.raises(ValueError, match="header sizes do not add up|damaged header|too large"):
        traj = linpath.Trajectory.open(path)
        # Were it accepted, reading must still not panic.
        traj[0]


def test_unknown_dtype_in_header(tmp_path):
    path = tmp_path / "f16.lpt"
    _crafted_file(path, {"numel": 3, "dtype": "float16", "names": ["a"], "shapes": [[3]]}, b"")
    with pytest.raises(ValueError, match="float16"):
        linpath.Trajectory.open(path)


def test_missing_file_is_an_os_error(tmp_path):
    path = tmp_path / "nowhere.lpt"
    with pytest.raises(OSError, match="nowhere.lpt"):
        linpath.Trajectory.open(path)
    with pytest.raises(OSError):
        linpath.Trajectory.open(path, allow_partial=True)


# --- checksums (format version 2) ----------------------------------------------------------------------


def checkpoint_offsets(path: Path, k: int) -> dict[str, int]:
    """Byte offsets in the file of parts of checkpoint k's record."""
    lay = lpt_format.layout(path.read_bytes())
    at = lay.data_start + k * lay.record
    offsets = {"step": at + 3, "first value": at + 8, "last value": at + 8 + lay.values - 1}
    offsets["crc"] = at + 8 + lay.values + 2
    if lay.record - 8 - lay.values == 8:
        offsets["padding"] = at + lay.record - 1
    return offsets


def flip(path: Path, offset: int, mask: int = 0x10) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= mask
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_format_version_and_aligned_records(tmp_path, dtype):
    path = tmp_path / "v2.lpt"
    write_file_trajectory(path, 3, dtype)
    traj = linpath.Trajectory.open(path)
    assert traj.format_version == _linpath.TRAJECTORY_FORMAT_VERSION == 2
    assert linpath.TrajectoryRecorder(make_model(30)).trajectory.format_version is None
    lay = lpt_format.layout(path.read_bytes())
    # Records of 8-byte multiples from a 64-byte boundary: every float64 value is 8-byte aligned.
    assert lay.data_start % 64 == 0 and lay.record % 8 == 0
    assert lay.record == lpt_format.padded(8 + traj.numel * (4 if dtype == torch.float32 else 8) + 4, 8)
    # An odd count of float32 values needs no padding after the CRC; an even one needs 4 bytes.
    small = tmp_path / "even.lpt"
    recorder = linpath.TrajectoryRecorder(nn.Linear(3, 2, bias=False), small, dtype=torch.float32)
    recorder.record(7)
    assert lpt_format.layout(small.read_bytes()).record == 8 + 6 * 4 + 8
    header, steps, values = read_trajectory_file(small)
    assert steps.tolist() == [7] and header["numel"] == 6


@pytest.mark.parametrize(
    ("dtype", "part"),
    [(torch.float32, p) for p in ("step", "first value", "last value", "crc")]
    + [(torch.float64, p) for p in ("step", "first value", "last value", "crc", "padding")],
)
def test_damaged_checkpoint_is_a_value_error(tmp_path, dtype, part):
    """A flipped bit anywhere in a record: reading that checkpoint, projecting and the steps all say the
    file is damaged and name it and the checkpoint; the other checkpoints still read as recorded."""
    path = tmp_path / "flipped.lpt"
    refs = write_file_trajectory(path, 4, dtype)
    flip(path, checkpoint_offsets(path, 2)[part])  # (83 float32 values need no padding; float64 do)
    traj = linpath.Trajectory.open(path)
    message = rf"{path}: the file is damaged: checkpoint 2 does not match its CRC32 checksum"
    with pytest.raises(ValueError, match=message):
        traj[2]
    with pytest.raises(ValueError, match=message):
        _ = traj.steps
    with pytest.raises(ValueError, match=message):
        linpath.project(traj, refs[0], refs[-1])
    for i in (0, 1, 3):
        np.testing.assert_array_equal(traj[i].numpy(), refs[i])


def test_damaged_header_that_still_parses(tmp_path):
    """A changed letter in a parameter name leaves valid JSON; the header checksum catches it."""
    path = tmp_path / "renamed.lpt"
    write_file_trajectory(path, 2)
    raw = path.read_bytes()
    at = raw.index(b'"fc1.weight"') + 1
    path.write_bytes(raw[:at] + b"g" + raw[at + 1 :])
    with pytest.raises(ValueError, match="damaged header .it does not match its CRC32 checksum"):
        linpath.Trajectory.open(path)


def test_steps_are_checked_once(tmp_path):
    """The first `steps` checks every record; a later one does not read the file again (so damage done
    after that shows only when the checkpoint is read); a projection's check counts as well."""
    path = tmp_path / "once.lpt"
    refs = write_file_trajectory(path, 3)
    for check_with in ("steps", "project"):
        traj = linpath.Trajectory.open(path)
        if check_with == "steps":
            np.testing.assert_array_equal(traj.steps, [1, 4, 7])
        else:
            linpath.project(traj, refs[0], refs[-1])
        flip(path, checkpoint_offsets(path, 1)["first value"])
        np.testing.assert_array_equal(traj.steps, [1, 4, 7])
        with pytest.raises(ValueError, match="checkpoint 1 does not match"):
            traj[1]
        flip(path, checkpoint_offsets(path, 1)["first value"])  # repaired
        np.testing.assert_array_equal(traj[1].numpy(), refs[1])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_version_1_files_still_open(tmp_path, dtype):
    """Files of format version 1 (no checksums), written here without linpath, read as before."""
    rng = np.random.default_rng(31)
    names, shapes = ["a", "b.weight", "c"], [(2, 3), (5,), ()]
    steps = [0, -3, 2**63 - 1, 17]
    values = rng.standard_normal((4, 12)).astype(dtype)
    path = tmp_path / "old.lpt"
    lpt_format.write(path, names, shapes, dtype, steps, values, version=1)
    traj = linpath.Trajectory.open(path)
    assert traj.format_version == 1
    assert traj.names == names and traj.shapes == shapes and len(traj) == 4
    np.testing.assert_array_equal(traj.steps, steps)
    for i in range(4):
        np.testing.assert_array_equal(traj[i].numpy(), values[i])
    proj = linpath.project(traj, traj[0], traj[-1])
    assert (proj.coordinate[-1], proj.residual[-1]) == (1.0, 0.0)
    # Nothing in a version-1 file can be checked: a flipped bit reads as another value (documented).
    flip(path, lpt_format.layout(path.read_bytes()).data_start + 8)
    assert not np.array_equal(linpath.Trajectory.open(path)[0].numpy(), values[0])


def test_version_1_file_is_not_opened_for_appending(tmp_path):
    path = tmp_path / "old.lpt"
    lpt_format.write(path, ["w"], [(3,)], "float32", [0], np.ones((1, 3), np.float32), version=1)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="version-1 trajectory file, which has no checksums"):
        _linpath.TrajectoryStore.open(str(path), False, True)
    assert path.read_bytes() == before
    assert len(_linpath.TrajectoryStore.open(str(path), False, False)) == 1


def test_version_2_file_reopened_for_appending(tmp_path):
    path = tmp_path / "more.lpt"
    refs = write_file_trajectory(path, 2)
    store = _linpath.TrajectoryStore.open(str(path), False, True)
    extra = torch.from_numpy(refs[0] * 2)
    store.append(99, extra)
    header, steps, values = read_trajectory_file(path)  # with every checksum right
    np.testing.assert_array_equal(steps, [1, 4, 99])
    np.testing.assert_array_equal(values, np.stack([refs[0], refs[1], refs[0] * 2]))
    np.testing.assert_array_equal(linpath.Trajectory.open(path)[2].numpy(), refs[0] * 2)


# --- creating a file safely ----------------------------------------------------------------------------


def test_symlink_at_a_predictable_temporary_name_is_not_followed(tmp_path):
    """Symbolic links planted where a predictable temporary file would go (the old `.<name>.<pid>.tmp`
    and a few other guesses) are never written through: the victim keeps its bytes, and the trajectory
    works."""
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious data\n")
    name = "run.lpt"
    pid = os.getpid()
    guesses = [f".{name}.{pid}.tmp", f".{name}.{pid + 1}.tmp", f".{name}.tmp", f"{name}.tmp", f".{name}"]
    for guess in guesses:
        (tmp_path / guess).symlink_to(victim)
    model, gen = make_model(40), torch.Generator().manual_seed(41)
    recorder = linpath.TrajectoryRecorder(model, tmp_path / name)
    refs = record_run(recorder, model, gen, 3)
    assert victim.read_bytes() == b"precious data\n"
    assert not (tmp_path / name).is_symlink()
    header, steps, values = read_trajectory_file(tmp_path / name)
    np.testing.assert_array_equal(values, np.stack(refs))
    assert sorted(os.listdir(tmp_path)) == sorted([*guesses, name, "victim.txt"])


@pytest.mark.parametrize("dangling", [False, True])
def test_symlink_at_the_target_is_refused(tmp_path, dangling):
    """A symbolic link at the path itself counts as an existing file, dangling or not: it is never
    replaced or followed."""
    victim = tmp_path / "victim.txt"
    if not dangling:
        victim.write_bytes(b"precious data\n")
    target = tmp_path / "run.lpt"
    target.symlink_to(victim)
    with pytest.raises(ValueError, match="already exists"):
        linpath.TrajectoryRecorder(make_model(42), target)
    assert target.is_symlink() and os.readlink(target) == str(victim)
    if dangling:
        assert not victim.exists()
    else:
        assert victim.read_bytes() == b"precious data\n"
    assert sorted(os.listdir(tmp_path)) == (["run.lpt"] if dangling else ["run.lpt", "victim.txt"])


def test_no_temporary_file_is_left_behind(tmp_path):
    """Neither after creating a file, nor after each way creating one can fail."""
    model = make_model(43)
    linpath.TrajectoryRecorder(model, tmp_path / "ok.lpt").record()
    with pytest.raises(ValueError, match="already exists"):
        linpath.TrajectoryRecorder(model, tmp_path / "ok.lpt")
    (tmp_path / "dir.lpt").mkdir()
    with pytest.raises((ValueError, OSError)):
        linpath.TrajectoryRecorder(model, tmp_path / "dir.lpt")
    (tmp_path / "locked").mkdir(mode=0o500)
    if os.geteuid() != 0:  # root may write into a read-only directory
        with pytest.raises(PermissionError):
            linpath.TrajectoryRecorder(model, tmp_path / "locked" / "t.lpt")
    assert sorted(os.listdir(tmp_path)) == ["dir.lpt", "locked", "ok.lpt"]
    assert os.listdir(tmp_path / "dir.lpt") == [] and os.listdir(tmp_path / "locked") == []


def test_new_file_has_the_usual_permissions(tmp_path):
    """Like any new file: 0o666 less the umask (a private temporary file's 0o600 must not leak)."""
    umask = os.umask(0o022)
    os.umask(umask)
    path = tmp_path / "mode.lpt"
    linpath.TrajectoryRecorder(make_model(44), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_the_trainer_writes_version_2(tmp_path):
    """linpath.train creates its file through the same store: checksums included."""
    model = linpath.models.MLP([5, 4, 3], seed=0)
    gen = torch.Generator().manual_seed(45)
    data = (torch.randn(40, 5, generator=gen), torch.randint(0, 3, (40,), generator=gen))
    path = tmp_path / "trained.lpt"
    linpath.train(model, data, epochs=1, batch_size=10, lr=0.1, record_every=2, trajectory=path)
    header, steps, values = read_trajectory_file(path)  # every checksum right
    traj = linpath.Trajectory.open(path)
    assert traj.format_version == 2
    np.testing.assert_array_equal(traj.steps, steps)
    np.testing.assert_array_equal(traj[-1].numpy(), values[-1])


def test_a_recorder_in_a_missing_folder_is_a_file_not_found_error_naming_the_folder(tmp_path):
    missing = tmp_path / "no" / "such"
    with pytest.raises(FileNotFoundError) as info:
        linpath.TrajectoryRecorder(nn.Linear(3, 2), missing / "run.lpt")
    assert info.value.errno == errno.ENOENT and str(missing) in str(info.value)


def test_a_bool_is_not_a_checkpoint_index():
    recorder = linpath.TrajectoryRecorder(nn.Linear(2, 2))
    recorder.record()
    recorder.record()
    with pytest.raises(TypeError, match="trajectory indices must be integers"):
        recorder.trajectory[True]


def test_a_recorder_follows_parameters_replaced_after_it_was_made():
    model = nn.Linear(3, 2)
    recorder = linpath.TrajectoryRecorder(model)
    recorder.record(0)
    model.load_state_dict({k: torch.full_like(v, 7.0) for k, v in model.state_dict().items()}, assign=True)
    recorder.record(1)
    assert torch.equal(recorder.trajectory[1].tensor, torch.full((8,), 7.0))
    model.weight = nn.Parameter(torch.zeros(3, 3))  # another layout: refused, not recorded wrongly
    with pytest.raises(ValueError, match="the model now: tensor 'weight' has shape"):
        recorder.record(2)
    assert len(recorder) == 2


# --- floating-point buffers (BatchNorm statistics) recorded with the checkpoints -----------------------


def _bn_training_run(recorder_path, seed, **kw):
    """A BatchNorm MLP trained a few SGD steps on fresh random data, recorded at every step; returns
    (model, recorder, the state_dicts copied at each record)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    recorder = linpath.TrajectoryRecorder(model, recorder_path, **kw)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    states = []
    for step in range(4):
        recorder.record(step)
        states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        x = torch.randn(16, 6, generator=gen) * 2 + 1
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), torch.randint(0, 3, (16,), generator=gen)).backward()
        opt.step()
    return model, recorder, states


@pytest.mark.parametrize("on_disk", [False, True], ids=["memory", "file"])
def test_buffers_are_recorded_by_default(tmp_path, on_disk):
    path = tmp_path / "run.lpt" if on_disk else None
    _, recorder, states = _bn_training_run(path, int(np.random.default_rng().integers(1 << 30)))
    traj = linpath.Trajectory.open(path) if on_disk else recorder.trajectory
    assert traj.buffer_names == ["1.running_mean", "1.running_var"]
    for checkpoint, state in zip(traj, states, strict=True):
        assert isinstance(checkpoint, linpath.trajectory.Checkpoint)
        assert sorted(checkpoint.buffers) == traj.buffer_names  # num_batches_tracked is an integer
        for name, value in checkpoint.buffers.items():
            assert torch.equal(value, state[name])
        for name, value in checkpoint.to_state_dict().items():
            assert torch.equal(value, state[name])
    if on_disk:  # both files are ordinary trajectory files (the independent reader checks them)
        header, steps, values, version = lpt_format.read(path.read_bytes())
        assert header["names"] == traj.names and version == 2 and steps.tolist() == [0, 1, 2, 3]
        header, steps, values, _ = lpt_format.read((tmp_path / "run.lpt.buffers").read_bytes())
        assert header["names"] == traj.buffer_names and steps.tolist() == [0, 1, 2, 3]
        want = [torch.cat([state[n].reshape(-1) for n in traj.buffer_names]).numpy() for state in states]
        np.testing.assert_array_equal(values, np.stack(want))


def test_without_buffers_the_file_reads_as_before(tmp_path):
    path = tmp_path / "run.lpt"
    _bn_training_run(path, 1, buffers=False)
    assert not (tmp_path / "run.lpt.buffers").exists()
    traj = linpath.Trajectory.open(path)
    assert traj.buffer_names == [] and type(traj[0]) is linpath.ParamVector


def test_project_ignores_the_buffers(tmp_path):
    _, with_buffers, _ = _bn_training_run(None, 2)
    _, without, _ = _bn_training_run(None, 2, buffers=False)
    a = linpath.project(with_buffers, with_buffers.trajectory[0], with_buffers.trajectory[-1])
    b = linpath.project(without, without.trajectory[0], without.trajectory[-1])
    np.testing.assert_array_equal(a.coordinate, b.coordinate)
    np.testing.assert_array_equal(a.residual, b.residual)


def test_interpolate_between_checkpoints_uses_their_buffers(tmp_path):
    model, _, states = _bn_training_run(tmp_path / "run.lpt", 3)
    traj = linpath.Trajectory.open(tmp_path / "run.lpt")
    gen = torch.Generator().manual_seed(4)
    data = (torch.randn(40, 6, generator=gen) + 1, torch.randint(0, 3, (40,), generator=gen))
    alphas = [-0.25, 0.0, 0.5, 1.0]
    got = linpath.interpolate(model, traj[0], traj[-1], data, alphas=alphas, progress=False)
    assert got.meta["buffers_interpolated"] is True
    ref = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    for k, a in enumerate(alphas):  # by hand: load_state_dict of the interpolated state
        ref.load_state_dict(
            {
                n: ((1 - a) * v.double() + a * states[-1][n].double()).float() if v.is_floating_point() else v
                for n, v in states[0].items()
            }
        )
        ref.eval()
        with torch.no_grad():
            want = float(nn.functional.cross_entropy(ref(data[0]), data[1]))
        assert got.values["data"]["loss"][k] == pytest.approx(want, rel=1e-5)


def test_buffer_recording_refusals(tmp_path):
    with pytest.raises(ValueError, match="no floating-point buffers"):
        linpath.TrajectoryRecorder(nn.Linear(3, 2), buffers=True)
    (tmp_path / "run.lpt.buffers").write_bytes(b"")
    with pytest.raises(FileExistsError, match="run.lpt.buffers"):
        linpath.TrajectoryRecorder(nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)), tmp_path / "run.lpt")
    assert not (tmp_path / "run.lpt").exists()


def test_buffers_follow_overwrite_and_append(tmp_path):
    path = tmp_path / "run.lpt"
    model, _, states = _bn_training_run(path, 5)
    side = tmp_path / "run.lpt.buffers"
    again = linpath.TrajectoryRecorder(model, path, append=True)
    again.record(10)
    traj = linpath.Trajectory.open(path)
    assert len(traj) == 5 and lpt_format.read(side.read_bytes())[1].tolist() == [0, 1, 2, 3, 10]
    assert torch.equal(traj[-1].buffers["1.running_var"], model[1].running_var)
    with pytest.raises(ValueError, match="append them too"):
        linpath.TrajectoryRecorder(model, path, append=True, buffers=False)
    linpath.TrajectoryRecorder(model, path, overwrite=True, buffers=False).record(0)
    assert not side.exists() and linpath.Trajectory.open(path).buffer_names == []
    with pytest.raises(ValueError, match="recorded without buffers"):
        linpath.TrajectoryRecorder(model, path, append=True)
