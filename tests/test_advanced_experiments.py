"""Figures 6 to 8 (linpath/experiments/advanced.py) at the smoke scale: files, findings, and the
line's ends checked against an independent float64 evaluation of the trained runs."""

import json

import numpy as np
import pytest
import torch

import linpath
from linpath import datasets, experiments
from linpath.__main__ import main
from linpath.experiments.report import claims

FIGS = ("fig6", "fig7", "fig8")
VERDICTS = {"yes", "nearly", "no", "not at this scale"}


def _cifar_available() -> bool:
    return any(p.exists() for p in datasets._cifar10_candidates())


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One smoke-scale run of Figures 6 to 8 (Figure 6 only where CIFAR-10 is on the machine)."""
    out = tmp_path_factory.mktemp("advanced")
    figures = [f for f in FIGS if f != "fig6" or _cifar_available()]
    summary = experiments.reproduce(figures, scale="smoke", out=out, progress=False)
    return out, summary


def load(out, name):
    return json.loads((out / f"{name}.json").read_text())


def _need(summary, name):
    if name not in summary["figures"]:
        pytest.skip("CIFAR-10 is not on this machine (it is on the developers' and CI's)")


def test_each_figure_writes_a_png_a_json_and_its_claims(smoke):
    out, summary = smoke
    for name in summary["figures"]:
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        record = load(out, name)
        assert record["figure"] == name and record["findings"] == summary["figures"][name]["findings"]
        assert summary["figures"][name]["seconds"] < 120
    rows = [r for r in claims(summary) if r["figure"] in FIGS]
    assert {r["figure"] for r in rows} == set(summary["figures"])
    assert all(r["holds"] in VERDICTS and r["measured"] for r in rows)


def _torch_loss(model, params, pair):
    """Mean cross-entropy and error of the plain-PyTorch twin at ``params`` in float64."""
    twin = model.to_torch().double().eval()
    linpath.assign(twin, params)
    x, y = pair
    with torch.no_grad():
        logits = twin(x.double() if x.is_floating_point() else x)
        logits = logits.reshape(-1, logits.shape[-1])
        return torch.nn.functional.cross_entropy(logits, y.reshape(-1)).item()


@pytest.mark.parametrize("name, run_name", [("fig6", "conv_maxout"), ("fig8", "lstm")])
def test_line_ends_equal_a_float64_torch_evaluation(smoke, name, run_name):
    out, summary = smoke
    _need(summary, name)
    ctx = experiments.Context(experiments.get_scale("smoke"), out)
    run = ctx.run(run_name)
    data = ctx.data_for(run.spec)
    m = len(data.valid[1])
    train = tuple(t[:m] for t in data.train)
    line = load(out, name)["findings"]["train_line"]
    for params, key in ((run.initial, "value_at_0"), (run.final, "value_at_1")):
        assert line[key] == pytest.approx(_torch_loss(run.model(), params, train), rel=1e-5)


def test_fig6_zoom_and_barriers(smoke):
    out, summary = smoke
    _need(summary, "fig6")
    record = load(out, "fig6")
    zoom = record["sweeps"]["zoom"]["alphas"]
    assert min(zoom) == 0.0 and max(zoom) == pytest.approx(0.2)
    for bump in record["findings"]["barriers_on_0_1"]:
        assert 0.0 < bump["alpha"] < 1.0 and bump["height"] >= 0.0


def test_fig7_views_are_consistent(smoke):
    out, _ = smoke
    record = load(out, "fig7")
    f = record["findings"]
    ctx = experiments.Context(experiments.get_scale("smoke"), out)
    run = ctx.run("mpdbm")
    assert len(f["checkpoint_objective"]) == len(run.trajectory)
    # J at the last checkpoint is J(θf): the line's value at α = 1 on the same data.
    assert f["checkpoint_objective"][-1] == pytest.approx(f["train_line"]["value_at_1"], rel=1e-6)
    sweep = record["sweep"]
    assert min(sweep["alphas"]) == 0.0 and max(sweep["alphas"]) == 2.0
    assert 0.0 < f["pca_plane"]["explained"] <= 1.0
    index = f["extreme_coordinates"]["indices"]
    values = np.stack([c.numpy()[index] for c in run.trajectory])
    spreads = values.max(axis=0) - values.min(axis=0)
    every = np.stack([c.numpy() for c in run.trajectory])
    assert spreads.min() >= np.sort(every.max(axis=0) - every.min(axis=0))[-2] - 1e-12
    second, near = f["secondary_minimum"], f["sgd_closest_approach"]
    if second is not None:  # the closest approach, recomputed with NumPy from the trajectory
        t0, t1 = run.initial.numpy().astype(np.float64), run.final.numpy().astype(np.float64)
        point = t0 + second["alpha"] * (t1 - t0)
        distances = [np.linalg.norm(c.numpy().astype(np.float64) - point) for c in run.trajectory]
        assert near["distance"] == pytest.approx(min(distances), rel=1e-6)


def test_fig8_perplexity(smoke):
    out, _ = smoke
    record = load(out, "fig8")
    f = record["findings"]
    assert "test_mistakes" not in record["run"]  # the error is per word: count words, not windows
    assert record["run"]["test_words"] == record["run"]["test_examples"] * 20
    assert f["valid_perplexity_at_1"] == pytest.approx(np.exp(f["valid_line"]["value_at_1"]))
    assert f["valid_line"]["value_at_0"] == pytest.approx(np.log(10_000), rel=0.02)  # init ±0.1: near uniform


def test_the_cli_reuses_the_cached_runs(smoke, capsys):
    out, _ = smoke
    assert main(["reproduce", "fig8", "--scale", "smoke", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "fig8" in printed and "LSTM" in printed


def test_advanced_figures_refuse_a_cuda_trainer(tmp_path):
    ctx = experiments.Context(experiments.get_scale("smoke"), tmp_path, device="cpu", trainer="torch")
    with pytest.raises(ValueError, match="natively on the CPU"):
        ctx.run("mpdbm")
