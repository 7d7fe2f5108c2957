"""Every notebook in notebooks/ is stored without outputs and runs top to bottom at a tiny size."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_there_is_a_quickstart_notebook():
    assert any(p.name == "01_quickstart.ipynb" for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name} has stored outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("LINPATH_SMOKE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors


def test_notebook_03_without_cifar10_skips_figure_6_and_says_how_to_get_it(tmp_path, monkeypatch):
    """A clone without the project's shared data: the Figure 6 cell explains instead of failing."""
    monkeypatch.setenv("LINPATH_SMOKE", "1")
    nb = nbformat.read(next(p for p in NOTEBOOKS if p.name == "03_advanced_networks.ipynb"), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    fig6 = next(c for c in code if "fig6" in c.source)
    hide = nbformat.v4.new_code_cell(
        "import linpath.datasets\nlinpath.datasets._cifar10_candidates = lambda: []"
    )
    nb.cells = [hide, code[0], fig6]
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    printed = "".join(o.get("text", "") for c in nb.cells for o in c.outputs if o.output_type == "stream")
    assert "Figure 6 skipped" in printed and "cifar-10-python.tar.gz" in printed
    assert not any(o.output_type == "error" for c in nb.cells for o in c.outputs)
