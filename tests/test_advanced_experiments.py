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

FIGS = ("fig6", "fig7", "fig8", "fig6_init", "fig7_init")
VERDICTS = {"yes", "nearly", "no", "not at this scale"}
CIFAR_FIGS = {"fig6", "fig6_init"}


def _cifar_available() -> bool:
    return any(p.exists() for p in datasets._cifar10_candidates())


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One smoke-scale run of Figures 6 to 8 (Figure 6 only where CIFAR-10 is on the machine)."""
    out = tmp_path_factory.mktemp("advanced")
    figures = [f for f in FIGS if f not in CIFAR_FIGS or _cifar_available()]
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
        assert summary["figures"][name]["seconds"] < 300  # seconds to a few minutes on a loaded machine
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


def test_fig6_has_every_seed_with_the_zoom_and_a_bootstrap_floor(smoke):
    out, summary = smoke
    _need(summary, "fig6")
    record = load(out, "fig6")
    scale = experiments.get_scale("smoke")
    seeds = record["findings"]["seeds"]
    assert [s["seed"] for s in seeds] == list(range(scale.seeds)) and len(record["sweeps"]) == scale.seeds
    alphas = np.array(record["sweeps"]["seed0"]["alphas"])
    zoom = experiments.zoom_grid()
    assert np.isin(zoom, alphas).all() and alphas.min() == -0.25 and alphas.max() == 1.25
    assert record["sweeps"]["seed0"]["meta"]["train_blocks"] == scale.bootstrap_blocks
    for seed in seeds:
        assert seed["noise"]["tau"] > 0.0
        for bump in seed["barriers_near_init"]:
            assert 0.0 < bump["alpha"] <= 0.3 and bump["tau"] > 0.0
            assert bump["above_floor"] == (bump["height"] > bump["tau"])  # its own floor, on the zoom


def test_the_recipe_runs_keep_the_per_layer_max_norms(smoke):
    out, summary = smoke
    _need(summary, "fig6")
    ctx = experiments.Context(experiments.get_scale("smoke"), out)
    run = ctx.run("conv_maxout")
    norms = dict(run.spec.max_norms)
    final = run.model()
    for name, weight in final.named_parameters():
        if name in norms:
            rows = weight.detach().double().flatten(1).norm(dim=1)
            assert rows.max().item() <= norms[name] * (1 + 1e-5), name


def test_fig6_init_reports_each_setting_and_the_pre_check(smoke):
    out, summary = smoke
    _need(summary, "fig6_init")
    findings = load(out, "fig6_init")["findings"]
    scale = experiments.get_scale("smoke")
    assert [r["label"] for r in findings["runs"]] == [n.removeprefix("conv_") for n in scale.conv_ablation]
    assert [c["start_scale"] for c in findings["pre_check"]] == [0.0, 0.1, 1.0]
    for entry in findings["runs"] + findings["pre_check"]:
        heights = [b["height"] for b in entry["barriers_near_init"]]
        assert all(h > entry["tau"] for h in heights)
        assert entry["barrier"] is None if not heights else entry["barrier"]["height"] == max(heights)
    ctx = experiments.Context(scale, out)
    start = ctx.run("conv_irange0.0005").initial.tensor
    assert start.abs().max().item() <= 0.0005  # every weight uniform in ±irange, biases 0


def test_fig7_init_covers_every_sparse_scale_with_and_without_max_norm(smoke):
    out, _ = smoke
    findings = load(out, "fig7_init")["findings"]
    labels = [r["label"] for r in findings["runs"]]
    assert sorted(labels) == sorted(f"sparse{s}_{c}" for s in ("0.25", "1", "4") for c in ("maxnorm", "free"))
    ctx = experiments.Context(experiments.get_scale("smoke"), out)
    bound, free = ctx.run("mpdbm_sparse4_maxnorm").final, ctx.run("mpdbm_sparse4_free").final
    model = ctx.run("mpdbm_sparse4_maxnorm").model()
    names = [n for n, _ in model.named_parameters()]
    limits = {"w1": 1.809978, "w2": 2.666304, "w3": 5.175683}
    for vector, capped in ((bound, True), (free, False)):
        linpath.assign(model, vector)
        worst = max(
            dict(model.named_parameters())[n].detach().norm(dim=1).max().item() / limits[n] for n in limits
        )
        assert (worst <= 1 + 1e-5) == capped, (names, worst)


def test_fig7_views_are_consistent(smoke):
    out, _ = smoke
    record = load(out, "fig7")
    f = record["findings"]
    views = f["views"]
    ctx = experiments.Context(experiments.get_scale("smoke"), out)
    run = ctx.run("mpdbm" if views["seed"] == 0 else f"mpdbm_seed{views['seed']}")
    assert len(views["checkpoint_objective"]) == len(run.trajectory)
    # J at the last checkpoint is J(θf) on the evaluation examples, computed by the model itself.
    data = ctx.data_for(run.spec)
    train = tuple(t[: len(data.valid[1])] for t in data.train)
    assert views["checkpoint_objective"][-1] == pytest.approx(run.model().evaluate(*train)[0], rel=1e-5)
    sweep = record["sweeps"]["seed0"]
    assert min(sweep["alphas"]) == 0.0 and max(sweep["alphas"]) == 2.0
    assert len(f["seeds"]) == experiments.get_scale("smoke").seeds
    assert 0.0 < views["pca_plane"]["explained"] <= 1.0
    index = views["extreme_coordinates"]["indices"]
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
