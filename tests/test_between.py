"""linpath.experiments.between (``reproduce align``) at smoke scale: the files, the findings read
back from the recorded sweeps, the aligned endpoints equal to B as functions, the claims rows."""

from __future__ import annotations

import json

import numpy as np
import pytest

import linpath
from linpath import experiments
from linpath.experiments.report import claims


def _sweep(recorded: dict) -> linpath.Sweep:
    """A sweep from its JSON record (``Sweep.to_dict``)."""
    return linpath.Sweep(np.asarray(recorded["alphas"]), recorded["values"], recorded["meta"])


@pytest.fixture(scope="module")
def align_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("align")
    summary = experiments.reproduce("align", scale="smoke", out=out, progress=False)
    return out, summary


def test_align_writes_its_figure_and_findings(align_run):
    out, summary = align_run
    assert (out / "align.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads((out / "align.json").read_text())
    findings = record["findings"]
    widths = list(experiments.SCALES["smoke"].align_widths)
    assert findings["widths"] == widths and set(findings["barriers"]) == {str(w) for w in widths}
    for w in widths:
        for name in ("naive", "weights", "activations"):
            sweep = _sweep(record["sweeps"][str(w)][name])
            np.testing.assert_array_equal(sweep.alphas, np.linspace(0, 1, 25))
            barriers = findings["barriers"][str(w)][name]
            assert barriers["train_loss_linear"] == sweep.barrier("train", "loss", "linear")
            assert barriers["test_error_midpoint"] == sweep.barrier("test", "error", "midpoint")
            # both ends of every line are the two trained solutions: A at 0 and (a permuted) B at 1
            assert sweep.values["train"]["loss"][0] == pytest.approx(
                _sweep(record["sweeps"][str(w)]["naive"]).values["train"]["loss"][0]
            )
    widest = str(widths[-1])
    naive = _sweep(record["sweeps"][widest]["naive"])
    for name in ("weights", "activations"):
        aligned = _sweep(record["sweeps"][widest][name])
        # π(B) computes B's function: the same loss at α = 1 (float32 products in another order)
        assert aligned.values["train"]["loss"][-1] == pytest.approx(
            naive.values["train"]["loss"][-1], rel=1e-5
        )
    curve = _sweep(record["curve_sweep"])
    assert curve.values["train"]["loss"][[0, -1]] == pytest.approx(
        naive.values["train"]["loss"][[0, -1]], rel=1e-5
    )
    assert findings["curve"]["train_loss_linear"] == curve.barrier("train", "loss", "linear")
    objective = record["alignment"][widest]["weight_matching"]["objective"]
    assert all(b >= a - 1e-9 * abs(a) for a, b in zip(objective, objective[1:], strict=False))
    rows = [r for r in claims(summary) if r["figure"] == "align"]
    assert len(rows) == 4 and all(r["holds"] in ("yes", "nearly", "no") and r["measured"] for r in rows)
    assert "align" in summary["figures"] and "fig1" not in summary["figures"]


def test_all_names_the_papers_figures_only():
    assert experiments.FIGURES["align"] is not None
    assert "align" not in experiments.PAPER_FIGURES
