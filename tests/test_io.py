"""Atomic writes (python/linpath/_io.py): kills midway, leftovers, permissions, planted symlinks."""

import fcntl
import os
import re
import stat
import subprocess
import sys
import threading
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

import linpath
from linpath import Sweep, _io
from linpath._io import atomic_write, save_json
from linpath.plotting import save_figure

# A child that saves a 50 MB sweep and reports (then waits to be killed) midway through the data
# ("writing": after the first 25 MB member) or once everything is written ("syncing": at fsync).
CHILD = r"""
import os, sys, time
import numpy as np
from numpy.lib import format as npy_format
import linpath

path, mode, point = sys.argv[1:]
if mode == "named":
    del os.O_TMPFILE  # as on a filesystem without unnamed files
n = 3_125_000
sweep = linpath.Sweep(np.arange(n, dtype=np.float64), {"train": {"loss": np.ones(n)}})


def pause(what):
    print(what, flush=True)
    time.sleep(600)


if point == "writing":
    write_array = npy_format.write_array

    def write_then_pause(fp, array, *args, **kwargs):
        write_array(fp, array, *args, **kwargs)
        if array.size == n:
            pause(point)

    npy_format.write_array = write_then_pause
else:
    os.fsync = lambda fd: pause(point)
sweep.save(path)
"""


def unnamed_files_supported(folder: Path) -> bool:
    try:
        os.close(os.open(folder, os.O_WRONLY | os.O_TMPFILE, 0o600))
    except (AttributeError, OSError):
        return False
    return True


def small_sweep(tag: float) -> Sweep:
    return Sweep(np.linspace(0, 1, 5), {"t": {"loss": np.arange(5.0) + tag}}, {"tag": tag})


@pytest.mark.parametrize(("mode", "point"), [("unnamed", "writing"), ("named", "syncing")])
def test_a_save_killed_midway_leaves_the_old_file_and_no_leftovers(mode, point, tmp_path):
    path = tmp_path / "sweep.npz"
    old = small_sweep(1.0)
    old.save(path)
    env = {**os.environ, "PYTHONPATH": str(Path(linpath.__file__).parents[1])}
    argv = [sys.executable, "-c", CHILD, str(path), mode, point]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env) as child:
        watchdog = threading.Timer(120, child.kill)
        watchdog.start()
        try:
            said = child.stdout.readline().strip()
        finally:
            child.kill()  # SIGKILL
            child.wait()
            watchdog.cancel()
    assert said == point, "the child did not reach the point where it is killed"
    leftovers = sorted(p for p in os.listdir(tmp_path) if p != "sweep.npz")
    if mode == "named":  # an exclusive temporary file that names its writer, with 50 MB in it
        assert len(leftovers) == 1 and leftovers[0].startswith(f".sweep.npz.{child.pid}.")
        assert (tmp_path / leftovers[0]).stat().st_size > 50_000_000
    elif unnamed_files_supported(tmp_path):
        assert leftovers == []  # the unnamed file died with its writer
    assert Sweep.load(path) == old
    new = small_sweep(2.0)
    new.save(path)  # removes what a dead writer left
    assert os.listdir(tmp_path) == ["sweep.npz"]
    assert Sweep.load(path) == new


def dead_pid() -> int:
    with subprocess.Popen([sys.executable, "-c", "pass"]) as p:
        p.wait()
    return p.pid


def test_only_dead_writers_leftovers_for_the_same_target_are_removed(tmp_path):
    def leftover(name, pid):
        path = tmp_path / f".{name}.{pid}.{os.urandom(8).hex()}.tmp"
        path.write_bytes(b"half a file")
        return path

    dead = leftover("x.json", dead_pid())
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as live_writer:
        try:
            alive = leftover("x.json", live_writer.pid)
            locked = leftover("x.json", dead_pid())  # its writer lives in another pid namespace
            other_target = leftover("y.json", dead_pid())
            victim = tmp_path / "victim"
            victim.write_text("keep me")
            planted = tmp_path / f".x.json.{dead_pid()}.{'0' * 16}.tmp"
            planted.symlink_to(victim)
            with open(locked, "rb") as held:
                fcntl.flock(held, fcntl.LOCK_EX)
                save_json({"a": 1}, tmp_path / "x.json")
        finally:
            live_writer.kill()
    assert not dead.exists()
    assert alive.exists() and locked.exists() and other_target.exists()
    assert planted.is_symlink() and victim.read_text() == "keep me"


@pytest.fixture(params=["unnamed", "named"])
def mode(request, monkeypatch, tmp_path):
    """Both ways of making the temporary file: unnamed (O_TMPFILE) where possible, or named."""
    if request.param == "named":
        monkeypatch.delattr(os, "O_TMPFILE", raising=False)
    elif not unnamed_files_supported(tmp_path):
        pytest.skip("this filesystem has no unnamed temporary files")
    return request.param


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o027])
def test_files_get_the_usual_permissions(umask, mode, tmp_path):
    old = os.umask(umask)
    try:
        save_json([1], tmp_path / "a.json")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_an_error_midway_leaves_the_old_file_and_nothing_else(mode, tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_write(path, text=True) as f:
        f.write("new, but only half of it")
        raise KeyboardInterrupt
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["a.txt"]
    with atomic_write(path, text=True) as f:
        f.write("nëw")
    assert path.read_bytes() == "nëw".encode() and os.listdir(tmp_path) == ["a.txt"]


def write_sweep(path: Path) -> None:
    small_sweep(3.0).save(path)


def write_json(path: Path) -> None:
    save_json({"b": 2}, path)


def write_figure(path: Path) -> None:
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    save_figure(fig, path)


def write_claims(path: Path) -> None:
    from linpath.experiments import _write_summary

    _write_summary({"scale": "smoke", "notes": [], "figures": {}}, path.parent)


WRITERS = {
    "sweep.npz": write_sweep,
    "summary.json": write_json,
    "fig1.png": write_figure,
    "claims.md": write_claims,
}


@pytest.mark.parametrize("name", list(WRITERS))
def test_a_symlink_at_the_final_name_is_replaced_not_followed(name, mode, tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / name).symlink_to(victim)
    WRITERS[name](out / name)
    assert victim.read_bytes() == b"precious"
    assert not (out / name).is_symlink() and (out / name).stat().st_size > 0
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("name", list(WRITERS))
def test_a_symlink_at_the_temporary_name_is_never_followed(name, mode, tmp_path, monkeypatch):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    out = tmp_path / "out"
    out.mkdir()
    WRITERS[name](out / name)
    before = (out / name).read_bytes()
    # Someone who could guess the random part of the temporary name plants a symlink there.
    monkeypatch.setattr(_io.secrets, "token_hex", lambda n: "0123456789abcdef")
    planted = out / f".{name}.{os.getpid()}.0123456789abcdef.tmp"
    planted.symlink_to(victim)
    with pytest.raises(FileExistsError):
        WRITERS[name](out / name)
    assert victim.read_bytes() == b"precious" and planted.is_symlink()
    assert (out / name).read_bytes() == before


def test_temp_path_is_unpredictable_and_removes_dead_writers_leftovers(tmp_path):
    stale = tmp_path / f".trajectory.lpt.{dead_pid()}.{'a' * 16}.tmp"
    stale.write_bytes(b"an unfinished trajectory")
    names = {_io.temp_path(tmp_path / "trajectory.lpt") for _ in range(20)}
    assert len(names) == 20 and not stale.exists()
    for p in names:
        assert p.parent == tmp_path and not p.exists()
        assert re.fullmatch(rf"\.trajectory\.lpt\.{os.getpid()}\.[0-9a-f]{{16}}\.tmp", p.name)


def _sweep():
    return Sweep(np.array([0.0, 1.0]), {"a": {"loss": np.array([1.0, 2.0])}})


def test_pipes_and_directories_are_never_replaced_or_read(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="is not a regular file"):
        _sweep().save(fifo)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # still the pipe
    (tmp_path / "folder").mkdir()
    with pytest.raises(ValueError, match="is not a regular file"):
        _sweep().save(tmp_path / "folder")
    with pytest.raises(ValueError, match="names a directory"):
        _sweep().save(f"{tmp_path}/new/")
    for path in (fifo, "/dev/zero"):  # a pipe would block forever, /dev/zero never ends
        with pytest.raises(ValueError, match="is not a regular file"):
            Sweep.load(path)
        with pytest.raises(ValueError, match="not a regular file"):
            linpath.Trajectory.open(path)


def test_replacing_a_file_keeps_its_permissions(tmp_path):
    path = tmp_path / "private.npz"
    _sweep().save(path)
    os.chmod(path, 0o600)
    _sweep().save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert Sweep.load(path) == _sweep()
