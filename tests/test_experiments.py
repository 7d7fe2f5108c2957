"""The paper's Figures 1-5 at smoke scale: files, findings, run cache, command line, bad input."""

import dataclasses
import json
import os

import numpy as np
import pytest

import linpath
from linpath import experiments
from linpath.__main__ import main
from linpath.experiments import findings as F
from linpath.experiments import report
from linpath.experiments import runs as R
from linpath.experiments.report import claims, claims_markdown

FIGS = ("fig1", "fig2", "fig3", "fig4", "fig5")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One smoke-scale run of every figure (about 5 s), shared by the tests below."""
    out = tmp_path_factory.mktemp("reproduce")
    summary = experiments.reproduce(list(FIGS), scale="smoke", out=out, progress=False)
    return out, summary


def load(out, name):
    return json.loads((out / f"{name}.json").read_text())


def test_every_figure_writes_a_png_and_a_json(smoke):
    out, summary = smoke
    for name in FIGS:
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        record = load(out, name)
        assert record["figure"] == name and record["scale"] == "smoke"
        assert record["findings"] == summary["figures"][name]["findings"]
        assert summary["figures"][name]["seconds"] < 60
    assert json.loads((out / "summary.json").read_text()) == summary
    assert claims_markdown(summary) in (out / "claims.md").read_text()


def check_line(line):
    assert isinstance(line["monotone_on_0_1"], bool)
    assert isinstance(line["max_rise_on_0_1"], float) and line["max_rise_on_0_1"] >= 0.0
    assert 0.0 <= line["max_rise_relative"] <= 1.0
    assert (line["max_rise_relative"] == 0.0) == line["monotone_on_0_1"]
    assert set(line["minimum"]) == {"alpha", "value"}
    assert isinstance(line["local_minima_above_noise"], int)
    for m in line["local_minima"]:
        assert set(m) == {"alpha", "value", "prominence", "above_noise"}
        assert isinstance(m["above_noise"], bool) and m["prominence"] > 0.0
    assert line["value_at_0"] > 0.0 and line["value_at_1"] > 0.0


def test_fig1_findings(smoke):
    out, _ = smoke
    record = load(out, "fig1")
    f = record["findings"]
    check_line(f["train_line"])
    check_line(f["valid_line"])
    assert 0.0 <= f["test_error"] <= 1.0
    assert f["test_mistakes"] == round(f["test_error"] * record["run"]["test_examples"])
    assert len(f["learning_curve_valid_error"]) == record["run"]["spec"]["epochs"] + 1
    sweep = record["sweep"]
    assert len(sweep["alphas"]) == experiments.SCALES["smoke"].line_points
    assert min(sweep["alphas"]) == -0.5 and max(sweep["alphas"]) == 1.5
    assert record["run"]["spec"]["activation"] == "maxout" and record["run"]["spec"]["max_norm"] == 1.9365


def test_fig1_line_starts_and_ends_at_the_run(smoke):
    """The line's values at α = 0 and 1 equal a direct evaluation of θi and θf (independent code)."""
    out, _ = smoke
    ctx = experiments.Context(experiments.get_scale("smoke"), out)
    run = ctx.run("maxout")
    model = run.model()
    x, y = ctx.data.train
    f = load(out, "fig1")["findings"]["train_line"]
    for params, key in ((run.initial, "value_at_0"), (run.final, "value_at_1")):
        twin = model.to_torch().double().eval()
        linpath.assign(twin, params)
        with __import__("torch").no_grad():
            loss = __import__("torch").nn.functional.cross_entropy(twin(x.double()), y).item()
        assert f[key] == pytest.approx(loss, rel=1e-5)


def test_run_facts_report_the_parameter_norms(smoke):
    """‖θi‖, ‖θf‖ and ‖θf − θi‖/‖θi‖ against NumPy float64 on the run's own checkpoints."""
    out, _ = smoke
    run = experiments.Context(experiments.get_scale("smoke"), out).run("maxout")
    facts = load(out, "fig1")["run"]
    start, end = run.initial.numpy().astype(np.float64), run.final.numpy().astype(np.float64)
    assert facts["theta_initial_norm"] == pytest.approx(np.linalg.norm(start), rel=1e-12)
    assert facts["theta_final_norm"] == pytest.approx(np.linalg.norm(end), rel=1e-12)
    assert facts["relative_distance"] == pytest.approx(
        np.linalg.norm(end - start) / np.linalg.norm(start), rel=1e-12
    )
    assert facts["relative_distance"] > 0


def test_fig2_has_both_activations(smoke):
    out, _ = smoke
    f = load(out, "fig2")["findings"]
    assert set(f) == {"sigmoid", "relu_dropout"}
    for entry in f.values():
        check_line(entry["train_line"])


def test_fig3_panels(smoke):
    out, _ = smoke
    record = load(out, "fig3")
    n = experiments.SCALES["smoke"].zoom_points
    for key, (lo, hi) in {"a": (0, 1), "c": (0, 0.01), "d": (0.99, 1)}.items():
        alphas = record["sweeps"][key]["alphas"]
        assert len(alphas) == n and alphas[0] == lo and alphas[-1] == hi
        panel = record["findings"][key]
        assert isinstance(panel["monotone"], bool) and panel["max_rise"] >= 0.0
        assert list(record["sweeps"][key]["values"]) == ["train"]
    assert isinstance(record["findings"]["local_minima_above_noise"], int)


def test_fig4_barriers(smoke):
    out, _ = smoke
    f = load(out, "fig4")["findings"]
    for part in ("two_solutions", "random_to_solution"):
        barrier = f[part]["barrier_train"]
        assert set(barrier) == {"loss_midpoint", "loss_linear", "error_midpoint", "error_linear"}
        assert all(isinstance(v, float) for v in barrier.values())
        check_line(f[part]["train_line"])
    # The two solutions differ: different seeds give different parameters and a nonzero barrier.
    assert f["two_solutions"]["barrier_train"]["loss_linear"] > 0.0


def test_fig5_matches_a_numpy_projection(smoke):
    out, _ = smoke
    f = load(out, "fig5")["findings"]
    run = experiments.Context(experiments.get_scale("smoke"), out).run("maxout")
    points = np.stack([p.tensor.double().numpy() for p in run.trajectory])
    disp = points - points[0]
    d = disp[-1]
    coord = disp @ d / (d @ d)
    residual = np.linalg.norm(disp - coord[:, None] * d, axis=1)
    explained = np.sum((coord * np.linalg.norm(d)) ** 2) / np.sum(disp**2)
    assert f["checkpoints"] == len(points) > 3
    assert f["explained"] == pytest.approx(explained, rel=1e-9)
    assert f["max_residual"] == pytest.approx(residual.max(), rel=1e-9)
    assert f["path_length"] == pytest.approx(np.sum(np.abs(np.diff(coord))) * np.linalg.norm(d), rel=1e-9)
    # The variance about the mean point along the line's direction, and the random walk's values.
    centred = points - points.mean(axis=0)
    along = centred @ (d / np.linalg.norm(d))
    assert f["variance_share"] == pytest.approx(np.sum(along**2) / np.sum(centred**2), rel=1e-9)
    w = f["random_walk"]
    assert (w["checkpoints"], w["dim"], w["method"]) == (len(points), points.shape[1], "simulation")
    n = len(points) - 1  # evenly spaced checkpoints: the large-P limit in closed form
    assert w["explained_limit"] == pytest.approx((2 * n + 1) / (3 * n))
    assert w["variance_share_limit"] == pytest.approx((n + 1) / (2 * n))
    assert abs(w["explained"] - w["explained_limit"]) < 0.05


def test_fig5_claim_is_not_comparable_and_gives_every_number():
    findings = {
        "explained": 0.6123,
        "variance_share": 0.4321,
        "checkpoints": 21,
        "random_walk": {"explained": 0.6834, "variance_share": 0.5234, "method": "large-P limit"},
    }
    text, verdict = report._fig5(findings, "smoke")
    assert verdict == "not comparable"
    for number in ("61.2%", "43.2%", "21 checkpoints", "68.3%", "52.3%", "large-P limit"):
        assert number in text


def test_claims_table_reads_every_claim(smoke):
    _, summary = smoke
    rows = claims(summary)
    assert len(rows) == 7 and {r["figure"] for r in rows} == set(FIGS)
    verdicts = ("yes", "nearly", "no", "not at this scale", "not comparable")
    assert all(r["holds"] in verdicts and r["measured"] for r in rows)
    assert rows[1]["holds"] == "not at this scale"  # 94 mistakes is a claim about the paper's full run
    assert [r["holds"] for r in rows if r["figure"] == "fig5"] == ["not comparable"]  # "2/3" is undefined
    table = claims_markdown(summary)
    assert table.count("\n") == len(rows) + 1 and "94 test mistakes" in table
    for row, line in zip(rows, table.splitlines()[2:], strict=True):
        assert line.endswith(f"| {row['holds']} |") and row["measured"] in line


def test_runs_are_reused_from_disk(smoke, monkeypatch):
    out, summary = smoke

    def no_training(*args, **kwargs):
        raise AssertionError("a cached run was trained again")

    monkeypatch.setattr(R, "train", no_training)
    again = experiments.reproduce("fig5", scale="smoke", out=out, progress=False)
    assert again["figures"]["fig5"]["findings"] == summary["figures"]["fig5"]["findings"]
    assert set(again["figures"]) == set(FIGS)  # the summary keeps the other figures


def test_a_changed_spec_trains_a_new_run(tmp_path):
    scale = experiments.get_scale("smoke")
    spec = dataclasses.replace(scale.runs["relu"], epochs=1)
    changed = dataclasses.replace(scale, runs={**scale.runs, "relu": spec})
    assert spec.key() != scale.runs["relu"].key()
    ctx = experiments.Context(changed, tmp_path)
    run = ctx.run("relu")
    assert run.spec == spec and len(run.history["epoch"]) == 2
    assert (tmp_path / "runs" / f"relu-{spec.key()}" / "run.json").exists()


def test_same_seed_same_numbers(smoke, tmp_path):
    out, summary = smoke
    again = experiments.reproduce("fig4", scale="smoke", out=tmp_path, progress=False)
    assert again["figures"]["fig4"]["findings"] == summary["figures"]["fig4"]["findings"]


def test_a_damaged_cache_is_trained_again(tmp_path):
    ctx = experiments.Context(experiments.get_scale("smoke"), tmp_path)
    first = ctx.run("relu")
    folder = tmp_path / "runs" / f"relu-{first.spec.key()}"
    (folder / "run.json").write_text("{ not json")
    again = experiments.Context(experiments.get_scale("smoke"), tmp_path).run("relu")
    assert again.test_error == first.test_error
    assert json.loads((folder / "run.json").read_text())["format"] == R.RUN_FORMAT


def test_command_line(tmp_path, capsys):
    assert main(["reproduce", "fig5", "fig1", "--scale", "smoke", "--out", str(tmp_path), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "fig5" in printed and "the line captures" in printed
    assert (tmp_path / "fig1.png").exists() and (tmp_path / "fig5.json").exists()
    assert not (tmp_path / "fig2.png").exists()


@pytest.mark.parametrize(
    "argv", [["reproduce", "fig9"], ["reproduce", "fig1", "--scale", "huge"], ["reproduce"]]
)
def test_command_line_rejects_bad_arguments(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "usage" in capsys.readouterr().err


def test_command_line_reports_unusable_outputs_without_a_traceback(tmp_path, capsys):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    assert main(["reproduce", "fig5", "--scale", "smoke", "--out", str(not_a_folder), "--quiet"]) == 2
    assert "linpath reproduce: error:" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--smoke", "--out", str(not_a_folder), "--seed", "-1"])
    assert exit_info.value.code == 2 and "linpath demo: error: seed must lie in" in capsys.readouterr().err


def test_a_damaged_summary_from_an_earlier_run_is_ignored(tmp_path):
    (tmp_path / "summary.json").write_text(
        json.dumps({"scale": "smoke", "figures": {"fig2": "x", "fig77": {}}})
    )
    summary = experiments.reproduce(["fig5"], "smoke", tmp_path, progress=False)
    assert list(summary["figures"]) == ["fig5"]
    assert "fig5" in (tmp_path / "claims.md").read_text()


def test_bad_figure_or_scale(tmp_path):
    with pytest.raises(ValueError, match=r"unknown figure\(s\) \['fig9'\]"):
        experiments.reproduce(["fig1", "fig9"], scale="smoke", out=tmp_path)
    with pytest.raises(ValueError, match="unknown scale 'huge'"):
        experiments.reproduce("fig1", scale="huge", out=tmp_path)
    with pytest.raises(ValueError, match="no figure asked for"):
        experiments.reproduce([], scale="smoke", out=tmp_path)


def test_line_grid_has_exact_endpoints():
    for points in (5, 21, 101, 201, 401):
        grid = F.line_grid(-0.5, 1.5, points)
        assert 0.0 in grid and 1.0 in grid and len(grid) == points
    assert 0.0 not in F.line_grid(0.05, 0.95, 10)


def test_zoom_grid_is_zero_then_log_spaced_from_low_to_high():
    for low, high, points in ((1e-4, 0.3, 40), (1e-3, 1.0, 2), (0.01, 0.02, 7)):
        grid = F.zoom_grid(low, high, points)
        by_hand = [low * (high / low) ** (k / (points - 1)) for k in range(points)]
        assert grid.dtype == np.float64 and len(grid) == points + 1
        assert grid[0] == 0.0 and grid[1] == low and grid[-1] == high
        np.testing.assert_allclose(grid[1:], by_hand, rtol=1e-13)
        np.testing.assert_allclose(grid[1:], np.geomspace(low, high, points), rtol=1e-13)
        assert np.all(np.diff(grid) > 0)
        np.testing.assert_allclose(np.diff(np.log(grid[1:])), np.log(high / low) / (points - 1), rtol=1e-9)
    default = F.zoom_grid()
    assert (default[1], default[-1], len(default)) == (1e-4, 0.3, F.ZOOM_POINTS + 1)


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((0.0, 0.3, 10), ValueError, "0 < low < high"),
        ((-1e-4, 0.3, 10), ValueError, "0 < low < high"),
        ((0.3, 0.3, 10), ValueError, "0 < low < high"),
        ((0.3, 1e-4, 10), ValueError, "0 < low < high"),
        ((1e-4, float("inf"), 10), ValueError, "finite"),
        ((float("nan"), 0.3, 10), ValueError, "finite"),
        ((1e-4, 0.3, 1), ValueError, "points must be at least 2"),
        ((1e-4, 0.3, 2.5), TypeError, "points must be an integer"),
        (("1e-4", 0.3, 10), TypeError, "low must be a number"),
        ((1.0, 1.0 + 2e-16, 5), ValueError, "not distinct"),
    ],
)
def test_zoom_grid_rejects_bad_ranges(args, error, match):
    with pytest.raises(error, match=match):
        F.zoom_grid(*args)


def test_line_grid_with_zoom_adds_the_zoom_points_inside_its_range():
    plain = F.line_grid(-0.5, 1.5, 21)
    zoomed = F.line_grid(-0.5, 1.5, 21, zoom=True)
    assert np.all(np.diff(zoomed) > 0) and zoomed.dtype == np.float64
    assert set(plain) <= set(zoomed) and set(F.zoom_grid()) <= set(zoomed)
    assert len(zoomed) == len(set(plain) | set(F.zoom_grid()))
    inner = F.line_grid(0.05, 0.95, 10, zoom=True)
    assert inner.min() == 0.05 and inner.max() == 0.95 and 0.0 not in inner
    assert set(F.zoom_grid()[(F.zoom_grid() >= 0.05) & (F.zoom_grid() <= 0.95)]) <= set(inner)
    assert np.array_equal(F.line_grid(-0.5, 1.5, 21, zoom=False), plain)


def brute_prominence(v, i):
    left = [v[j] for j in range(i - 1, -1, -1)]
    right = [v[j] for j in range(i + 1, len(v))]
    rises = []
    for side in (left, right):
        peak = v[i]
        for x in side:
            if x < v[i]:
                break
            peak = max(peak, x)
        rises.append(peak - v[i])
    return min(rises)


@pytest.mark.parametrize("seed", range(4))
def test_prominence_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    alphas = np.linspace(0, 1, 30)
    values = rng.standard_normal(30)
    sweep = linpath.Sweep(alphas, {"t": {"loss": values}})
    shuffled = rng.permutation(30)
    for alpha, value in sweep.local_minima():
        i = int(np.flatnonzero(alphas == alpha)[0])
        assert F.prominence(alphas[shuffled], values[shuffled], alpha) == brute_prominence(values, i)
        assert value == values[i]


def test_minima_below_the_noise_floor_are_flagged():
    alphas = np.linspace(0, 1, 5)
    values = np.array([3.0, 1.0, 2.0, 2.0 - 1e-9, 2.5])
    sweep = linpath.Sweep(alphas, {"t": {"loss": values}})
    found = F.minima_of(sweep, "t", "loss", None)
    assert [m["alpha"] for m in found] == [0.25, 0.75]
    assert [m["prominence"] for m in found] == [1.5, pytest.approx(1e-9, rel=1e-6)]
    assert [m["above_noise"] for m in found] == [True, False]  # 1e-9 deep: rounding noise, not structure


def test_maxima_are_bumps_with_their_height_from_the_left():
    alphas = np.linspace(0, 1, 9)
    values = np.array([5.0, 4.0, 4.5, 3.0, 2.0, 2.2, 1.0, 1.0 + 1e-9, 0.5])
    sweep = linpath.Sweep(alphas, {"t": {"loss": values}})
    found = F.maxima_of(sweep, "t", "loss", None)
    assert [m["alpha"] for m in found] == [0.25, 0.625, 0.875]
    assert [m["value"] for m in found] == [4.5, 2.2, 1.0 + 1e-9]
    expected = [pytest.approx(0.5), pytest.approx(0.2), pytest.approx(1e-9, rel=1e-6)]
    assert [m["height"] for m in found] == expected
    assert [m["prominence"] for m in found] == expected
    assert [m["above_noise"] for m in found] == [True, True, False]
    assert found[0]["height_relative"] == pytest.approx(0.5 / 4.5)
    inside = F.maxima_of(sweep, "t", "loss", (0.3, 1.0))
    assert [m["alpha"] for m in inside] == [0.625, 0.875]
    assert inside[0]["height"] == pytest.approx(0.2)  # from the lowest point of the interval before it


def test_findings_of_a_curve_with_nan_say_unknown_never_a_verdict():
    alphas = np.linspace(0, 1, 6)
    values = np.array([3.0, 2.0, np.nan, 1.5, 1.2, 1.0])  # a NaN inside [0, 1]
    sweep = linpath.Sweep(alphas, {"train": {"loss": values}})
    with pytest.warns(RuntimeWarning, match="unknown"):
        found = F.line_findings(sweep)
    assert found["nonfinite_alphas"] == [0.4]
    assert found["monotone_on_0_1"] is None and np.isnan(found["max_rise_on_0_1"])
    assert np.isnan(found["max_rise_relative"])
    assert np.isnan(found["minimum"]["value"])
    text, verdict = report._smooth({"train_line": found}, "small")
    assert verdict == "unknown (NaN)" and "NaN or inf at α=0.4" in text
    assert report._fig2({"relu": {"train_line": found}}, "small")[1] == "unknown (NaN)"


def test_torch_trainer_follows_the_spec(tmp_path):
    """The PyTorch trainer (the GPU path), run on the CPU: same history keys, max-norm, reproducible."""
    scale = experiments.get_scale("smoke")
    ctx = experiments.Context(scale, tmp_path / "a", device="cpu", trainer="torch")
    run = ctx.run("maxout")
    spec = scale.runs["maxout"]
    assert set(run.history) == {
        "epoch",
        "train_loss",
        "train_error",
        "valid_loss",
        "valid_error",
        "step_loss",
    }
    assert run.history["epoch"] == list(range(spec.epochs + 1))
    assert len(run.history["step_loss"]) == spec.epochs * 20  # 2,000 examples in batches of 100
    assert run.history["valid_error"][-1] < run.history["valid_error"][0]
    final = run.model().to_torch()
    for layer in final.layers:
        assert layer.weight.norm(dim=1).max() <= spec.max_norm * (1 + 1e-6)
    assert list(run.trajectory.steps) == list(range(0, spec.epochs * 20 + 1, 5))  # 4 records per epoch
    again = experiments.Context(scale, tmp_path / "b", device="cpu", trainer="torch").run("maxout")
    assert again.final.tensor.equal(run.final.tensor) and again.history == run.history
    # Cached apart from the native run of the same spec.
    assert (tmp_path / "a" / "runs" / f"maxout-{spec.key()}-torch-cpu" / "run.json").exists()


def test_torch_trainer_figures(tmp_path):
    from linpath.experiments.mnist import fig1, fig5

    ctx = experiments.Context(experiments.get_scale("smoke"), tmp_path, device="cpu", trainer="torch")
    f1, f5 = fig1(ctx), fig5(ctx)
    check_line(f1["train_line"])
    assert 0.0 < f5["explained"] <= 1.0
    assert json.loads((tmp_path / "fig1.json").read_text())["findings"] == f1


def test_bad_device_or_trainer(tmp_path):
    scale = experiments.get_scale("smoke")
    with pytest.raises(ValueError, match="native trainer runs on the CPU"):
        experiments.Context(scale, tmp_path, device="meta", trainer="native")
    with pytest.raises(ValueError, match="unknown trainer 'jax'"):
        experiments.Context(scale, tmp_path, trainer="jax")
    if not __import__("torch").cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            experiments.reproduce("fig1", scale="smoke", out=tmp_path, device="cuda")


def test_a_run_never_writes_through_symlinks_planted_in_its_folder(tmp_path):
    """Symlinks planted (say, by another user of a shared folder) at the run's files and at the names
    its trajectory used to be written under are replaced or left alone, never followed."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    scale = experiments.get_scale("smoke")
    folder = tmp_path / "out" / "runs" / f"relu-{scale.runs['relu'].key()}"
    folder.mkdir(parents=True)
    pid = os.getpid()
    for name in ("run.json", "trajectory.lpt", f".trajectory.{pid}.lpt", f"..trajectory.{pid}.lpt.{pid}.tmp"):
        (folder / name).symlink_to(victim)
    run = experiments.Context(scale, tmp_path / "out").run("relu")
    assert victim.read_bytes() == b"precious"
    for name in ("run.json", "trajectory.lpt"):
        assert not (folder / name).is_symlink(), name
    assert json.loads((folder / "run.json").read_text())["format"] == R.RUN_FORMAT
    assert len(linpath.Trajectory.open(folder / "trajectory.lpt")) == len(run.trajectory) >= 2


def test_two_reproduce_calls_into_one_folder_keep_each_others_figures(tmp_path, monkeypatch):
    """summary.json is re-read under a lock before each figure is added, so a second process writing
    the same folder (fig6 and fig7 run at once) does not drop the first one's figures."""
    import linpath.experiments as exp

    monkeypatch.setattr(exp, "claims_markdown", lambda summary: "|".join(sorted(summary["figures"])))
    first = exp._previous_summary(tmp_path, "smoke")  # what a process read when it started
    exp._record_figure(tmp_path, "smoke", "fig6", {"findings": {"a": 1}, "seconds": 1.0})
    assert first["figures"] == {}  # the other process's copy is stale...
    summary = exp._record_figure(tmp_path, "smoke", "fig7", {"findings": {"b": 2}, "seconds": 2.0})
    assert set(summary["figures"]) == {"fig6", "fig7"}  # ...but the file keeps both
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == summary and "fig6|fig7" in (tmp_path / "claims.md").read_text()
