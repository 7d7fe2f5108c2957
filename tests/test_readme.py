"""The README's quick start runs as written, and its two commands are the Makefile's."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_quickstart_runs_as_written(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert blocks, "the README has no python block"
    script = tmp_path / "quickstart.py"
    script.write_text(blocks[0])
    env = {"MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "True" in done.stdout or "False" in done.stdout


def test_readme_commands_are_make_targets_and_ci_runs_make_test():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("demo", "test", "lint", "dev"):
        assert re.search(rf"^{target}:", makefile, flags=re.M), target
    assert "make demo" in README and "make test" in README
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_the_submodules_the_readme_names_are_reachable_after_import_linpath():
    import subprocess
    import sys

    code = (
        "import linpath; "
        "print(linpath.views.pca_plane, linpath.experiments.reproduce, linpath.plotting.plot_sweep, "
        "linpath.datasets.mnist, linpath.models.MLP)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
