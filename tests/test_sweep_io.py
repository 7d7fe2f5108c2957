"""Sweep.save / Sweep.load (python/linpath/sweep.py) against damaged, hostile and random files."""

import io
import json
import re
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.lib import format as npy_format

from linpath import Sweep

N = 7
ALPHAS = np.linspace(-0.5, 1.5, N)
HEADER = {
    "format": "linpath.Sweep",
    "version": 1,
    "splits": ["train"],
    "index": [["train", "loss", "v0"]],
    "meta": {"a": 1},
}


def npy(array, **claims) -> bytes:
    """``array`` as an .npy member, its header claiming ``claims`` (descr, shape) instead of the truth."""
    array = np.asarray(array)
    d = {**npy_format.header_data_from_array_1_0(array), **claims}
    f = io.BytesIO()
    npy_format.write_array_header_1_0(f, d)
    return f.getvalue() + array.tobytes()


def members(json_header=HEADER, **replace) -> dict[str, bytes]:
    """The members of a one-series sweep file with header ``json_header``, some members replaced."""
    good = {
        "alphas.npy": npy(ALPHAS),
        "v0.npy": npy(np.arange(N, dtype=np.float64)),
        "header.npy": npy(np.array(json.dumps(json_header))),
    }
    return {**good, **{f"{k}.npy": v for k, v in replace.items()}}


def write_zip(path, files, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path


def test_handmade_good_file_loads(tmp_path):
    sweep = Sweep.load(write_zip(tmp_path / "s.npz", members()))
    assert sweep == Sweep(ALPHAS, {"train": {"loss": np.arange(N, dtype=np.float64)}}, {"a": 1})


def test_a_file_of_an_earlier_version_without_the_split_list_loads(tmp_path):
    header = {k: v for k, v in HEADER.items() if k != "splits"}
    sweep = Sweep.load(write_zip(tmp_path / "s.npz", members(header)))
    assert sweep.splits == ["train"] and sweep.meta == {"a": 1}


def test_a_split_without_metrics_survives_the_round_trip(tmp_path):
    sweep = Sweep(ALPHAS, {"a": {}, "b": {"loss": ALPHAS * 2}})
    sweep.save(tmp_path / "s.npz")
    assert Sweep.load(tmp_path / "s.npz").splits == ["a", "b"]


def test_only_a_one_dimensional_grid_is_saved(tmp_path):
    with pytest.raises(ValueError, match=r"alphas must be a 1-D array"):
        Sweep(np.float64(0.5), {"t": {"loss": 1.0}})
    sweep = Sweep(np.zeros(2), {"t": {"loss": np.zeros(2)}})
    sweep.alphas = np.float64(0.5)  # changed after construction
    with pytest.raises(ValueError, match=r"alphas must be 1-D to save a sweep, got shape \(\)"):
        sweep.save(tmp_path / "s.npz")
    assert not (tmp_path / "s.npz").exists()


BIG = 2**40  # elements: 8 TiB of float64
HOSTILE = {
    "values_claim_8TiB": (dict(v0=npy(np.zeros(N), shape=(BIG,))), r"'v0' claims shape \(1099511627776,\)"),
    "alphas_claim_8TiB": (dict(alphas=npy(ALPHAS, shape=(BIG,))), r"'alphas' claims shape"),
    "alphas_2d": (dict(alphas=npy(ALPHAS, shape=(N, 1))), r"'alphas' claims shape \(7, 1\).*1-D grid"),
    "negative_shape": (dict(alphas=npy(ALPHAS, shape=(-1,))), r"'alphas' claims shape \(-1,\)"),
    "short_values": (dict(v0=npy(np.zeros(N - 1))), r"'v0' claims shape \(6,\).*expected shape \(7,\)"),
    "int64_values": (dict(v0=npy(np.zeros(N, dtype=np.int64))), "'v0' holds int64, not float64"),
    "float32_alphas": (dict(alphas=npy(ALPHAS.astype(np.float32))), "'alphas' holds float32"),
    "object_values": (dict(v0=npy(np.zeros(N), descr="|O")), "'v0' holds object, not float64"),
    "header_not_text": (dict(header=npy(np.zeros(3))), "'header' is not a string"),
    "header_claims_400MB": (
        dict(header=npy(np.array(json.dumps(HEADER)), descr="<U100000000")),
        "'header' is not a string",
    ),
    "header_bad_code_point": (dict(header=npy(np.array("{}")).replace(b"{\0\0\0", b"\xff" * 4)), "utf"),
    "npy_version_9": (dict(v0=npy(np.zeros(N)).replace(b"\x01\x00", b"\x09\x00", 1)), "version"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_members_are_value_errors_before_anything_large_is_allocated(case, tmp_path):
    replace, match = HOSTILE[case]
    path = write_zip(tmp_path / "s.npz", members(**replace))
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=match) as e:
            Sweep.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "is not a readable linpath Sweep file" in str(e.value)
    assert peak < 20_000_000


def header_with(**fields):
    return {**HEADER, **fields}


BAD_HEADERS = {
    "index_pair": (header_with(index=[["train", "loss"]]), "index is not a list of"),
    "index_number": (header_with(index=[["train", "loss", 0]]), "index is not a list of"),
    "index_dict": (header_with(index={"train": "v0"}), "index is not a list of"),
    "no_index": ({k: v for k, v in HEADER.items() if k != "index"}, "index is not a list of"),
    "twice": (header_with(index=[["train", "loss", "v0"]] * 2), "names a split and metric twice"),
    "meta_pairs": (header_with(meta=[["a", 1]]), "meta is not a dict"),
    "no_meta": ({k: v for k, v in HEADER.items() if k != "meta"}, "meta is not a dict"),
    "splits_twice": (header_with(splits=["train", "train"]), "splits are not a list of distinct"),
    "splits_text": (header_with(splits="train"), "splits are not a list of distinct"),
    "missing_member": (header_with(index=[["train", "loss", "v9"]]), "v9.npy"),
    "version_2": (header_with(version=2), "unknown format or version"),
}


@pytest.mark.parametrize("case", list(BAD_HEADERS))
def test_malformed_header_entries_are_value_errors(case, tmp_path):
    header, match = BAD_HEADERS[case]
    with pytest.raises(ValueError, match=match):
        Sweep.load(write_zip(tmp_path / "s.npz", members(header)))


def test_compressed_members_are_refused(tmp_path):
    """A deflated member could be a zip bomb, expanding to far more than the file's size."""
    path = write_zip(tmp_path / "s.npz", members(), zipfile.ZIP_DEFLATED)
    with pytest.raises(ValueError, match="'header' is compressed"):
        Sweep.load(path)


def central_entries(raw) -> list[int]:
    """Where the zip's central directory entries start."""
    return [m.start() for m in re.finditer(b"PK\x01\x02", raw)]


def test_a_member_claiming_more_bytes_than_the_file_is_refused(tmp_path):
    raw = bytearray(write_zip(tmp_path / "good.npz", members()).read_bytes())
    entry = next(e for e in central_entries(raw) if raw[e + 46 : e + 52] == b"v0.npy")
    struct.pack_into("<II", raw, entry + 20, 2**31, 2**31)  # its compressed and uncompressed sizes
    (tmp_path / "bad.npz").write_bytes(raw)
    with pytest.raises(ValueError, match=r"'v0' claims 2147483648 bytes"):
        Sweep.load(tmp_path / "bad.npz")


# --- fuzzing: every damaged file is a ValueError or loads equal to the original -------------------------


def mutate(raw: bytes, rng: np.random.Generator, hot: list[int]) -> bytes:
    """One random flip, overwrite, truncation, insertion or extension, half of them near a zip or npy
    header."""
    b = bytearray(raw)
    i = int(rng.integers(len(b)))
    if rng.random() < 0.5:
        i = min(hot[rng.integers(len(hot))] + int(rng.integers(140)), len(b) - 1)
    kind = rng.integers(6)
    if kind == 0:
        b[i] ^= 1 << int(rng.integers(8))
    elif kind == 1:
        b[i] = int(rng.integers(256))
    elif kind == 2:
        b[i : i + 8] = rng.bytes(8)
    elif kind == 3:
        del b[i:]
    elif kind == 4:
        b[i:i] = rng.bytes(int(rng.integers(1, 40)))
    else:
        b += rng.bytes(int(rng.integers(1, 100)))
    return bytes(b)


def test_fuzzed_files_are_value_errors_or_load_equal(tmp_path):
    sweep = Sweep(
        ALPHAS,
        {"train": {"loss": np.arange(N) / 3, "error": np.full(N, np.nan)}, "vä lid": {"loss": -ALPHAS}},
        {"a": 1, "b": [1.5, "ü", None]},
    )
    sweep.save(tmp_path / "good.npz")
    raw = (tmp_path / "good.npz").read_bytes()
    hot = [m.start() for m in re.finditer(rb"PK\x03\x04|PK\x01\x02|PK\x05\x06|\x93NUMPY", raw)]
    rng = np.random.default_rng(20261130)
    bad, outcomes = tmp_path / "bad.npz", {"ValueError": 0, "equal": 0}
    for trial in range(400):
        damaged = mutate(raw, rng, hot)
        bad.write_bytes(damaged)
        try:
            loaded = Sweep.load(bad)
        except ValueError:
            outcomes["ValueError"] += 1
            continue
        assert loaded == sweep, f"mutation {trial} loaded with different content"
        outcomes["equal"] += 1
    assert outcomes["ValueError"] > 200  # the mutations really damage the file


# --- property: random sweeps round-trip exactly --------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def sweeps(draw) -> Sweep:
    n = draw(st.integers(0, 9))
    alphas = draw(hnp.arrays(np.float64, n, elements=st.floats(allow_nan=False, allow_infinity=False)))
    series = hnp.arrays(np.float64, n, elements=st.floats(allow_nan=True, allow_infinity=True))
    values = draw(st.dictionaries(st.text(), st.dictionaries(st.text(), series, max_size=3), max_size=3))
    meta = draw(st.dictionaries(st.text(), JSON, max_size=4))
    return Sweep(alphas, values, meta)


@settings(
    max_examples=60,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(sweep=sweeps())
def test_random_sweeps_round_trip_exactly(sweep, tmp_path_factory):
    path = tmp_path_factory.mktemp("roundtrip") / "s.npz"
    sweep.save(path)
    loaded = Sweep.load(path)
    assert loaded == sweep
    assert loaded.splits == sweep.splits and loaded.meta == sweep.meta
    assert loaded.alphas.tobytes() == sweep.alphas.tobytes()  # bit for bit: NaN payloads, -0.0
    for s, mv in sweep.values.items():
        assert list(loaded.values[s]) == list(mv)
        for m, v in mv.items():
            assert loaded.values[s][m].dtype == np.float64 and loaded.values[s][m].tobytes() == v.tobytes()
