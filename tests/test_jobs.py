"""``python -m linpath sweep|surface`` (linpath/jobs.py): the files they write equal the results of
calling linpath.interpolate / linpath.surface directly; bad input is exit code 2 with a message."""

import argparse
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import linpath
from linpath import jobs

PYTHON_DIR = Path(linpath.__file__).parent.parent

FACTORY = """
import torch
from torch import nn


def model(width=12):
    return nn.Sequential(nn.Linear(6, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, 3))


def data(seed={seed}):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(80, 6, generator=g), torch.randint(0, 3, (80,), generator=g)
    return {{"train": (x, y), "valid": (0.5 * x[:30], y[:30])}}


def not_a_model():
    return [1, 2]


def model_from_helper(width):
    from {module}_helper import make  # imported only now: the current directory must stay importable

    return make(width)
"""

HELPER = """
from torch import nn


def make(width):
    return nn.Sequential(nn.Linear(6, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, 3))
"""


class Job:
    """A factory module and checkpoints in a temporary directory (the current directory)."""

    def __init__(self, folder: Path, seed: int):
        self.folder, self.seed = folder, seed
        self.module = f"lpfactory_{uuid.uuid4().hex[:12]}"  # fresh: in-process imports are cached
        (folder / f"{self.module}.py").write_text(FACTORY.format(seed=seed, module=self.module))
        (folder / f"{self.module}_helper.py").write_text(HELPER)
        self.states = [self._state(seed + k) for k in range(3)]
        for k, state in enumerate(self.states):
            torch.save(state, folder / f"e{k}.pt")

    def _state(self, seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        model = self.model()
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, 0.5)
            model[1].running_mean.normal_()
            model[1].running_var.uniform_(1.0, 2.0)  # stays positive on the α range used below
        return {k: v.clone() for k, v in model.state_dict().items()}

    def model(self) -> nn.Module:
        return nn.Sequential(nn.Linear(6, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 3))

    def data(self, seed: int | None = None) -> dict:
        g = torch.Generator().manual_seed(self.seed if seed is None else seed)
        x, y = torch.randn(80, 6, generator=g), torch.randint(0, 3, (80,), generator=g)
        return {"train": (x, y), "valid": (0.5 * x[:30], y[:30])}

    def factories(self) -> list[str]:
        return ["--model", f"{self.module}:model", "--data", f"{self.module}:data"]


@pytest.fixture
def job(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the command puts the current directory on it
    seed = int(np.random.SeedSequence().entropy % 2**31)
    print("seed", seed)
    return Job(tmp_path, seed)


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(PYTHON_DIR), "MPLBACKEND": "Agg"}
    env.pop("WORLD_SIZE", None)
    return subprocess.run(
        [sys.executable, "-m", "linpath", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _same(result, reference) -> None:
    assert result.splits == reference.splits
    for split in reference.splits:
        assert result.values[split].keys() == reference.values[split].keys()
        for metric, want in reference.values[split].items():
            np.testing.assert_allclose(result.values[split][metric], want, rtol=1e-6, atol=0)


def test_sweep_command_writes_the_sweep_interpolate_computes(job):
    done = _cli(
        ["sweep", *job.factories(), "--from", "e0.pt", "--to", "e1.pt", "--alphas=-0.5:1.5:9",
         "--out", "line.npz", "--plot", "line.png", "--quiet"],
        job.folder,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "wrote line.npz" in done.stdout and "9 points" in done.stdout
    sweep = linpath.Sweep.load(job.folder / "line.npz")
    reference = linpath.interpolate(
        job.model(),
        job.states[0],
        job.states[1],
        job.data(),
        alphas=np.linspace(-0.5, 1.5, 9),
        progress=False,
    )
    np.testing.assert_array_equal(sweep.alphas, np.linspace(-0.5, 1.5, 9))
    _same(sweep, reference)
    assert np.isfinite(reference.values["train"]["loss"]).all()
    assert (job.folder / "line.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_surface_command_with_random_directions_scaled_at_the_center(job):
    done = _cli(
        ["surface", *job.factories(), "--center", "e0.pt", "--random-directions", "7", "--grid=-1:1:4",
         "--ys", "0,0.5", "--metrics", "loss", "--out", "plane.npz"],
        job.folder,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "wrote plane.npz" in done.stdout and "8 points" in done.stdout
    surface = linpath.Surface.load(job.folder / "plane.npz")
    center = job.model()
    center.load_state_dict(job.states[0])
    pair = [linpath.directions.random(center, seed=s) for s in (7, 8)]
    xs, ys = np.linspace(-1, 1, 4), np.array([0.0, 0.5])
    reference = linpath.surface(center, job.states[0], pair, job.data(), grid=(xs, ys), metrics=["loss"])
    np.testing.assert_array_equal(surface.xs, xs)
    np.testing.assert_array_equal(surface.ys, ys)
    _same(surface, reference)
    np.testing.assert_allclose(surface.meta["direction_norms"], reference.meta["direction_norms"], rtol=1e-12)
    assert surface.has_plane


def test_surface_with_direction_files_in_process(job, capsys):
    argv = ["surface", *job.factories(), "--center", "e0.pt", "--directions", "e1.pt", "e2.pt",
            "--xs", "0,1", "--ys=-0.5,0.5", "--out", "plane.npz", "--no-plane", "--quiet"]  # fmt: skip
    assert jobs.main(argv) == 0
    line = capsys.readouterr().out
    assert line.startswith("linpath surface: wrote plane.npz; minimum train loss ") and "4 points" in line
    surface = linpath.Surface.load("plane.npz")
    grid = (np.array([0.0, 1.0]), np.array([-0.5, 0.5]))
    center = job.model()
    center.load_state_dict(job.states[0])  # the plane uses the model's own buffers: the center's
    reference = linpath.surface(center, job.states[0], job.states[1:], job.data(), grid=grid, progress=False)
    _same(surface, reference)
    assert not surface.has_plane
    x, y, value = reference.minimum("train")
    assert f"{value:.6g} at (x, y) = ({x:.4g}, {y:.4g})" in line


def test_current_buffers_are_those_of_the_start_checkpoint(job):
    argv = ["sweep", *job.factories(), "--from", "e0.pt", "--to", "e2.pt", "--alphas", "0:1:3",
            "--buffers", "current", "--out", "line.npz", "--quiet"]  # fmt: skip
    assert jobs.main(argv) == 0
    start = job.model()
    start.load_state_dict(job.states[0])
    reference = linpath.interpolate(
        start, job.states[0], job.states[2], job.data(), alphas=[0, 0.5, 1], buffers="current"
    )
    _same(linpath.Sweep.load("line.npz"), reference)


def test_factory_keyword_arguments_and_imports_made_by_the_factory(job):
    argv = ["sweep", "--model", f"{job.module}:model_from_helper", "--model-kwargs", '{"width": 12}',
            "--data", f"{job.module}:data", "--data-kwargs", f'{{"seed": {job.seed + 5}}}',
            "--from", "e1.pt", "--to", "e2.pt", "--alphas", "0.5", "--out", "line.npz",
            "--quiet"]  # fmt: skip
    assert jobs.main(argv) == 0
    reference = linpath.interpolate(
        job.model(), job.states[1], job.states[2], job.data(job.seed + 5), alphas=[0.5]
    )
    _same(linpath.Sweep.load("line.npz"), reference)
    assert (
        linpath.Sweep.load("line.npz").values["train"]["loss"]
        != linpath.interpolate(job.model(), job.states[1], job.states[2], job.data(), alphas=[0.5]).values[
            "train"
        ]["loss"]
    )  # the data-kwargs seed made a difference


def test_a_native_linpath_model_stays_on_the_cpu_and_runs_natively(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    seed = int(np.random.SeedSequence().entropy % 2**31)
    module = f"lpnative_{uuid.uuid4().hex[:12]}"
    Path(f"{module}.py").write_text(
        "import linpath, torch\n"
        "def model():\n    return linpath.models.MLP([5, 9, 3], seed=0)\n"
        f"def data():\n    g = torch.Generator().manual_seed({seed})\n"
        "    return torch.randn(70, 5, generator=g), torch.randint(0, 3, (70,), generator=g)\n"
    )
    states = [linpath.models.MLP([5, 9, 3], seed=seed + k).state_dict() for k in (1, 2)]
    for k, state in enumerate(states):
        torch.save(state, f"n{k}.pt")
    argv = ["sweep", "--model", f"{module}:model", "--data", f"{module}:data", "--from", "n0.pt",
            "--to", "n1.pt", "--alphas", "0:1:5", "--out", "line.npz", "--quiet"]  # fmt: skip
    assert jobs.main(argv) == 0
    g = torch.Generator().manual_seed(seed)
    data = torch.randn(70, 5, generator=g), torch.randint(0, 3, (70,), generator=g)
    reference = linpath.interpolate(linpath.models.MLP([5, 9, 3]), *states, data, alphas=np.linspace(0, 1, 5))
    sweep = linpath.Sweep.load("line.npz")
    assert sweep.meta["engine"] == reference.meta["engine"] == "native"
    _same(sweep, reference)


def test_a_lightning_checkpoint_is_read_with_prefix_auto(job, capsys):
    lightning = {"state_dict": {f"model.{k}": v for k, v in job.states[0].items()}, "epoch": 3}
    torch.save(lightning, "epoch=3.ckpt")
    argv = ["sweep", *job.factories(), "--from", "epoch=3.ckpt", "--to", "e1.pt", "--alphas", "0,0.25,1",
            "--out", "line.npz", "--quiet"]  # fmt: skip
    assert jobs.main(argv) == 0
    reference = linpath.interpolate(
        job.model(), job.states[0], job.states[1], job.data(), alphas=[0, 0.25, 1]
    )
    _same(linpath.Sweep.load("line.npz"), reference)
    assert reference.meta["buffers_interpolated"]
    capsys.readouterr()
    assert (
        jobs.main([*argv, "--prefix", ""]) == 2
    )  # names taken as they are: "model.0.weight" is no parameter
    assert capsys.readouterr().err.startswith("linpath sweep: error: start ")


def test_a_module_that_cannot_be_imported_is_exit_code_2_from_the_command_line(job):
    done = _cli(["sweep", "--model", "nosuch:f", "--data", f"{job.module}:data", "--from", "e0.pt", "--to",
                 "e1.pt", "--out", "x.npz"], job.folder)  # fmt: skip
    assert done.returncode == 2
    assert "linpath sweep: error: --model nosuch:f: cannot import 'nosuch'" in done.stderr
    assert "Traceback" not in done.stderr and not (job.folder / "x.npz").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--model": "{m}:not_a_model"}, "returned a list, not a torch.nn.Module"),
        ({"--model": "{m}:nothing"}, "has no attribute 'nothing'"),
        ({"--from": "missing.pt"}, "'missing.pt', where there is no file"),
        ({"--out": "no/such/dir/x.npz"}, "the directory no/such/dir does not exist"),
        ({"--model-kwargs": '{"depth": 3}'}, "unexpected keyword argument 'depth'"),
    ],
)
def test_bad_factories_and_files_are_exit_code_2_with_a_message(job, capsys, change, message):
    options = {
        "--model": "{m}:model",
        "--data": "{m}:data",
        "--from": "e0.pt",
        "--to": "e1.pt",
        "--out": "x.npz",
    }
    options |= change
    argv = ["sweep"] + [s.replace("{m}", job.module) for kv in options.items() for s in kv]
    assert jobs.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("linpath sweep: error: ") and message in err, err
    assert not Path("x.npz").exists()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--alphas", "1:0:0", "NUM must be at least 1"),
        ("--alphas", "0:1", "expected START:STOP:NUM"),
        ("--alphas", "0,nan", "must be finite"),
        ("--model", "no_colon", "expected MODULE:FUNCTION"),
        ("--model-kwargs", "[1]", "expected a JSON object"),
        ("--backend", "mpi", "invalid choice"),
    ],
)
def test_bad_options_are_argparse_errors(job, capsys, option, value, message):
    options = {"--model": f"{job.module}:model", "--data": f"{job.module}:data", "--from": "e0.pt"}
    options |= {"--to": "e1.pt", "--out": "x.npz", option: value}
    with pytest.raises(SystemExit) as exit_:
        jobs.main(["sweep", *(s for kv in options.items() for s in kv)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"linpath sweep: error: argument {option}" in err and message in err, err


def test_the_grid_options_parse_to_linspace_or_lists():
    np.testing.assert_array_equal(jobs.axis("-2:3:11"), np.linspace(-2, 3, 11))
    np.testing.assert_array_equal(jobs.axis("0.5"), [0.5])
    np.testing.assert_array_equal(jobs.axis("1,-1e-3,4"), [1, -1e-3, 4])


def test_backend_and_device_choice(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert jobs.choose("auto", "auto") == ("gloo", "cpu")
    with pytest.raises(ValueError, match="--backend nccl runs on GPUs only"):
        jobs.choose("nccl", "auto")
    with pytest.raises(ValueError, match="PyTorch sees no CUDA device"):
        jobs.choose("auto", "cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert jobs.choose("auto", "auto") == ("nccl", "cuda")
    assert jobs.choose("auto", "cpu") == ("gloo", "cpu")
    assert jobs.choose("gloo", "auto") == ("gloo", "cuda")


def test_the_group_torchrun_describes_is_joined_and_destroyed_also_on_error(monkeypatch):
    calls = []
    monkeypatch.setattr(
        torch.distributed, "init_process_group", lambda backend: calls.append(("init", backend))
    )
    monkeypatch.setattr(torch.distributed, "destroy_process_group", lambda: calls.append(("destroy",)))
    monkeypatch.setenv("WORLD_SIZE", "1")
    with jobs.process_group("auto", "cpu") as device:
        assert device == torch.device("cpu")
    assert calls == []  # one process: no group
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(KeyError), jobs.process_group("auto", "cpu"):
        assert calls == [("init", "gloo")]
        raise KeyError("boom")
    assert calls == [("init", "gloo"), ("destroy",)]
    monkeypatch.setenv("WORLD_SIZE", "two")
    with (
        pytest.raises(ValueError, match="WORLD_SIZE must be a positive integer"),
        jobs.process_group("auto", "cpu"),
    ):
        pass


def test_a_group_already_initialised_is_used_and_left_alone(tmp_path, monkeypatch):
    store = torch.distributed.FileStore(str(tmp_path / "store"), 1)
    torch.distributed.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        monkeypatch.setenv("WORLD_SIZE", "1")
        with jobs.process_group("auto", "cpu") as device:
            assert device == torch.device("cpu")
        assert torch.distributed.is_initialized()
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.parametrize("command", jobs.COMMANDS)
def test_every_option_reaches_the_command_through_torchrun(command, capsys):
    """torchrun's own parser (abbreviations allowed) must not take any of the command's options for
    one of its own: it fails on an ambiguous prefix such as --start (--start-method, --start_method)."""
    from torch.distributed.run import get_args_parser

    parser = argparse.ArgumentParser(prog="linpath")
    commands = parser.add_subparsers(dest="command")
    jobs.add_commands(commands)
    options = [
        s for a in commands.choices[command]._actions for s in a.option_strings if s not in ("-h", "--help")
    ]
    assert len(options) > 20
    argv = [command] + [x for option in options for x in (option, "1")]
    for spelling in (argv, [command] + [f"{option}=1" for option in options]):
        parsed = get_args_parser().parse_args(
            ["--standalone", "--nproc-per-node", "2", "-m", "linpath", *spelling]
        )
        assert parsed.module and parsed.training_script == "linpath"
        assert parsed.training_script_args == spelling
    with pytest.raises(SystemExit):
        get_args_parser().parse_args(["--nproc-per-node", "2", "-m", "linpath", "sweep", "--start", "a.pt"])
    assert "ambiguous option: --start" in capsys.readouterr().err


def test_the_summary_says_how_many_points_a_rerun_read_from_its_checkpoint():
    values = {"train": {"loss": np.array([2.0, 0.5, 1.0])}}
    args = argparse.Namespace(command="sweep", out=Path("line.npz"), checkpoint="run.lps")
    fresh = jobs.summary(args, linpath.Sweep(np.array([0.0, 0.5, 1.0]), values, {}), 1.25, 1)
    assert fresh == (
        "linpath sweep: wrote line.npz; minimum train loss 0.5 at alpha = 0.5; 3 points in 1.2 s on 1 process"
    )
    rerun = linpath.Sweep(np.array([0.0, 0.5, 1.0]), values, {"job": {"resumed_points": 2}})
    assert "; 3 points (1 computed, 2 read from run.lps) in 0.0 s on 4 processes" in jobs.summary(
        args, rerun, 0, 4
    )


@pytest.mark.parametrize("shard", ["points", "data"])
def test_surface_command_under_torchrun_with_a_checkpoint(job, shard):
    """Two gloo processes (one torch thread each) through torchrun's own launcher: the file rank 0
    writes equals the single-process surface, the result file holds every point, and a rerun of the
    same command reads them all and computes none."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "linpath",
    ]
    args = ["surface", *job.factories(), "--center", "e0.pt", "--random-directions", "3", "--grid=-1:1:5",
            "--checkpoint", "run.lps", "--shard", shard, "--out", "plane.npz", "--quiet"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(PYTHON_DIR), "OMP_NUM_THREADS": "1"}
    for attempt in range(2):
        done = subprocess.run(
            [*cmd, *args], cwd=job.folder, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.count("wrote plane.npz") == 1  # rank 0 only
        surface = linpath.Surface.load(job.folder / "plane.npz")
        info = surface.meta["job"]
        assert (info["world_size"], info["shard"]) == (2, shard)
        assert (info["resumed_points"], info["computed_points"]) == ((0, 25) if attempt == 0 else (25, 0))
    center = job.model()
    center.load_state_dict(job.states[0])
    pair = [linpath.directions.random(center, seed=s) for s in (3, 4)]
    axis = np.linspace(-1, 1, 5)
    _same(
        surface, linpath.surface(center, job.states[0], pair, job.data(), grid=(axis, axis), progress=False)
    )
    assert sorted(linpath.pointlog.read_points(job.folder / "run.lps")) == list(range(25))
