"""Atomic file writes: a file appears whole under its name, or not at all.

Every file the package writes goes through :func:`atomic_write`. The data goes to a file with no
name (Linux's ``O_TMPFILE``) or, where the filesystem has none, to a new file
``.<name>.<pid>.<random>.tmp`` created exclusively (never through a symlink planted at that name);
only once it is complete and on disk is it renamed over the target, in one step. A writer killed
midway (SIGKILL, a power cut) leaves nothing, or a temporary file that the next write to the same
target removes once its writer is dead.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

# The tail of a temporary name after ".<target name>.": the writer's pid and 64 random bits.
_TEMP_TAIL = re.compile(r"(?P<pid>[0-9]{1,10})\.[0-9a-f]{16}\.tmp")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], *, text: bool = False) -> Iterator[IO[Any]]:
    """Yields a new, unnamed or exclusive temporary file beside ``path``; on success it replaces
    ``path`` in one step (a symlink at ``path`` is replaced itself, never followed).

    A new file gets the usual permissions (0666 less the umask); a regular file that is replaced
    keeps its own. A ``path`` that is a directory, device or pipe is refused (ValueError). On any
    error (or Ctrl-C) the temporary file is removed and ``path`` is left untouched. Text is written
    as UTF-8.
    """
    if os.fspath(path).endswith(os.sep):
        raise ValueError(f"{os.fspath(path)!r} names a directory; give the path of a file")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    dir_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        mode = _existing_mode(dir_fd, target)
        _remove_stale_temps(dir_fd, target.name)
        fd, tmp = _create_temp(dir_fd, target.name)
        if mode is not None:
            os.fchmod(fd, mode)  # replacing a file keeps its permissions (a private file stays private)
        try:
            with os.fdopen(fd, "w" if text else "wb", encoding="utf-8" if text else None) as f:
                yield f
                f.flush()
                os.fsync(fd)
                if tmp is None:
                    tmp = _link_unnamed(dir_fd, fd, target.name)
                os.replace(tmp, target.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                tmp = None
        except BaseException:
            if tmp is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp, dir_fd=dir_fd)
            raise
        with contextlib.suppress(OSError):  # some filesystems cannot sync a directory
            os.fsync(dir_fd)  # the rename itself survives a power cut
    finally:
        os.close(dir_fd)


def open_regular(path: str | os.PathLike[str]) -> IO[bytes]:
    """``path`` opened for reading in binary, if it is a regular file: a pipe, device or directory
    is refused with ValueError at once (reading one could block forever or never end)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO opens without a writer
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{os.fspath(path)} is not a regular file (a directory, device or pipe)")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def _existing_mode(dir_fd: int, target: Path) -> int | None:
    """The permission bits of the regular file at ``target``, or None where there is none (or a
    symlink, which is replaced itself). Anything else (a device, a pipe, a directory) is refused:
    replacing it is never what a user saving results meant."""
    try:
        st = os.stat(target.name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(
            f"{target} exists and is not a regular file (a directory, device or pipe); choose another path"
        )
    return stat.S_IMODE(st.st_mode)


def temp_path(path: str | os.PathLike[str]) -> Path:
    """An unpredictable, unused name beside ``path`` for a temporary file that another writer
    creates exclusively (the trajectory store), after removing dead writers' leftovers for ``path``.
    """
    target = Path(path)
    dir_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _remove_stale_temps(dir_fd, target.name)
    finally:
        os.close(dir_fd)
    return target.parent / _temp_name(target.name)


def _temp_name(name: str) -> str:
    return f".{name}.{os.getpid()}.{secrets.token_hex(8)}.tmp"


def _create_temp(dir_fd: int, name: str) -> tuple[int, str | None]:
    """``(fd, None)`` for an unnamed file in the directory, else ``(fd, name)`` for an exclusive one.

    The file is locked (``flock``) while its writer lives, so that no other writer takes it for a
    leftover.
    """
    flags = os.O_WRONLY | os.O_CLOEXEC
    fd, tmp = None, None
    if hasattr(os, "O_TMPFILE"):
        with contextlib.suppress(OSError):  # a filesystem or kernel without unnamed files
            fd = os.open(".", flags | os.O_TMPFILE, 0o666, dir_fd=dir_fd)
        if fd is not None and not os.path.exists(f"/proc/self/fd/{fd}"):
            os.close(fd)  # without /proc it could not be given a name
            fd = None
    if fd is None:
        tmp = _temp_name(name)
        fd = os.open(tmp, flags | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666, dir_fd=dir_fd)
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd, tmp


def _link_unnamed(dir_fd: int, fd: int, name: str) -> str:
    """Gives the unnamed file ``fd`` a new temporary name (linkat never follows a symlink there)."""
    tmp = _temp_name(name)
    os.link(f"/proc/self/fd/{fd}", tmp, dst_dir_fd=dir_fd, follow_symlinks=True)
    return tmp


def _remove_stale_temps(dir_fd: int, name: str) -> None:
    """Removes temporary files for ``name`` left by writers that died (killed, power cut)."""
    prefix = f".{name}."
    for entry in os.listdir(dir_fd):
        match = _TEMP_TAIL.fullmatch(entry, len(prefix)) if entry.startswith(prefix) else None
        if match and not _alive(int(match["pid"])):
            _remove_if_unlocked(dir_fd, entry)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (or might: one of another user's, an impossible pid)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):
        return True
    return True


def _remove_if_unlocked(dir_fd: int, entry: str) -> None:
    """Removes ``entry`` if it is a regular file of ours that no live writer holds locked."""
    try:
        fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return  # gone, a symlink, or not ours to read
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid():
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.unlink(entry, dir_fd=dir_fd)
    except OSError:
        pass  # locked by a live writer (in another pid namespace), or already gone
    finally:
        os.close(fd)


def save_json(obj: Any, path: str | os.PathLike[str]) -> None:
    """Writes ``obj`` as indented JSON, atomically."""
    with atomic_write(path, text=True) as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
