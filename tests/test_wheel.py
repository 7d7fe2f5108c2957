"""The wheel users install: built with maturin, tagged manylinux, libtorch found through the RPATH
to the torch package, installed into a fresh venv with ``[data]`` where the README quick start runs.

torch 2.13.0 with its CUDA wheels is about 4.5 GB; downloading it into every fresh venv took far
longer than a test may here, so by default torch and its own dependencies are symlinked into the
fresh venv from the one running the tests (pip sees torch==2.13.0 installed and keeps it; all else
linpath needs installs from the wheel's metadata). LINPATH_WHEEL_REAL_TORCH=1 installs torch for
real instead.
"""

import importlib.metadata as md
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
SO = "_linpath.cpython-311-x86_64-linux-gnu.so"
# Libraries every manylinux policy lets a wheel take from the system.
SYSTEM_LIBS = {"libc.so.6", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1", "ld-linux-x86-64.so.2"}
SYSTEM_LIBS |= {"libpthread.so.0", "libdl.so.2", "librt.so.1"}


def run(cmd, **kwargs):
    done = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{cmd}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def build_wheel(out: Path) -> Path:
    """``maturin build`` into ``out`` from the venv running the tests (where torch is)."""
    bin_dir = Path(sys.prefix) / "bin"
    if shutil.which("maturin", path=str(bin_dir)) is None:
        pytest.skip(f"maturin is not installed in {sys.prefix} (`make test` installs it)")
    env = {**os.environ, "VIRTUAL_ENV": sys.prefix, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    run([bin_dir / "maturin", "build", "--release", "--locked", "--out", out], cwd=ROOT, env=env)
    (wheel,) = out.glob("linpath-*.whl")
    return wheel


def torch_closure() -> list[md.Distribution]:
    """torch and everything it requires here (extras followed), as installed distributions."""
    found: dict[tuple[str, frozenset[str]], md.Distribution] = {}
    todo = [Requirement("torch")]
    while todo:
        req = todo.pop()
        dist = md.distribution(req.name)
        key = (dist.metadata["Name"].lower(), frozenset(req.extras))
        if key in found:
            continue
        found[key] = dist
        environments = [{"extra": e} for e in req.extras] or [{"extra": ""}]
        for text in dist.requires or []:
            sub = Requirement(text)
            if sub.marker is None or any(sub.marker.evaluate(e) for e in environments):
                todo.append(sub)
    return list({name: dist for (name, _), dist in found.items()}.values())


def link_torch(site: Path) -> None:
    """Symlinks torch and its dependencies (their top-level files and dist-info) into ``site``."""
    for dist in torch_closure():
        base = Path(str(dist.locate_file("")))
        for top in {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}:
            if not (site / top).exists() and top != "__pycache__":
                (site / top).symlink_to(base / top)


def quickstart() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert blocks, "the README has no python block"
    return blocks[0]


def needed_and_runpath(so: Path) -> tuple[list[str], list[str]]:
    dynamic = run(["readelf", "-d", so])
    needed = re.findall(r"\(NEEDED\).*\[(.+)\]", dynamic)
    runpath = re.findall(r"\((?:RUNPATH|RPATH)\).*\[(.+)\]", dynamic)
    return needed, runpath


def test_wheel_installs_into_a_fresh_venv_and_runs_the_quickstart(tmp_path):
    t0 = time.perf_counter()
    wheel = build_wheel(tmp_path / "dist")
    built = time.perf_counter() - t0

    # The tag: manylinux_2_X, and X covers every versioned glibc symbol the extension uses.
    tag = re.fullmatch(r"linpath-[\d.]+-cp311-cp311-manylinux_2_(\d+)_x86_64\.whl", wheel.name)
    assert tag, wheel.name
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        z.extract(f"linpath/{SO}", tmp_path / "unpacked")
    assert "linpath/py.typed" in names and "linpath/_linpath.pyi" in names
    assert not [n for n in names if "libtorch" in n or "nvidia" in n]  # libtorch is not grafted in
    so = tmp_path / "unpacked" / "linpath" / SO
    glibc = {int(v) for v in re.findall(r"GLIBC_2\.(\d+)", run(["readelf", "-V", so]))}
    assert max(glibc) <= int(tag.group(1)), (sorted(glibc), wheel.name)
    needed, runpath = needed_and_runpath(so)
    assert runpath == ["$ORIGIN/../torch/lib"]

    # A fresh venv; torch from the running venv (see the module docstring) unless asked otherwise.
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv])
    python = venv / "bin" / "python"
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).strip())
    if os.environ.get("LINPATH_WHEEL_REAL_TORCH") != "1":
        link_torch(site)
    t1 = time.perf_counter()
    run([python, "-m", "pip", "install", "--quiet", f"{wheel}[data]"], timeout=1200)
    installed = time.perf_counter() - t1

    # The extension loads on its own, before torch (through its RPATH), as the package does.
    path = site / "linpath" / SO
    code = (
        "import importlib.machinery as m, importlib.util as u, sys\n"
        f"loader = m.ExtensionFileLoader('linpath._linpath', {str(path)!r})\n"
        "mod = u.module_from_spec(u.spec_from_loader('linpath._linpath', loader)); loader.exec_module(mod)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print(mod.__version__)"
    )
    env = {"PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"}
    assert run([python, "-c", code], env=env, cwd=tmp_path).strip() == "0.1.0"
    run([python, "-c", "import linpath._linpath, linpath; print(linpath.__version__)"], env=env, cwd=tmp_path)

    # ldd resolves libtorch (and every other library) through the RPATH, into this venv's torch.
    ldd = run(["ldd", path], env=env)
    assert "not found" not in ldd, ldd
    resolved = {name: Path(os.path.normpath(where)) for name, where in re.findall(r"(\S+) => (\S+) \(", ldd)}
    torch_libs = [lib for lib in needed if lib not in SYSTEM_LIBS]
    assert {"libtorch_cpu.so", "libc10.so", "libtorch_python.so"} <= set(torch_libs), needed
    for lib in torch_libs:
        assert resolved[lib] == site / "torch" / "lib" / lib, (lib, ldd)

    # The README quick start, as written, in that venv.
    (tmp_path / "quickstart.py").write_text(quickstart())
    t2 = time.perf_counter()
    out = run([python, "quickstart.py"], env=env, cwd=tmp_path, timeout=600)
    ran = time.perf_counter() - t2
    assert "True" in out or "False" in out
    print(
        f"\nwheel {wheel.name}: {wheel.stat().st_size / 1e6:.2f} MB; build {built:.0f} s, "
        f"install [data] {installed:.0f} s, quick start {ran:.0f} s\n"
        + "\n".join(line for line in ldd.splitlines() if "torch" in line)
    )
