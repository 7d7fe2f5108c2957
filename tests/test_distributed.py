"""linpath.distributed and linpath.runner: interpolate and surface on a torch.distributed process
group. The multi-process cases run ``torchrun --nproc-per-node 2`` (gloo, one torch thread per
process) on tests/dist_worker.py, which saves every rank's result; each is compared here with a
single-process run of the same case."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import dist_worker
import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, TensorDataset

import linpath
from linpath import distributed, pointlog, runner

HERE = Path(__file__).parent


def torchrun(
    out: Path, *jobs: str, timeout: float = 600, processes: int = 2, backend: str = "gloo"
) -> subprocess.CompletedProcess:
    """Runs tests/dist_worker.py on ``processes`` processes (gloo: one torch thread each)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(HERE), LINPATH_TEST_BACKEND=backend)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)]
    done = subprocess.run(
        [*cmd, str(HERE / "dist_worker.py"), str(out), *jobs],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise AssertionError(f"torchrun failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return done


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One torchrun launch for every sharded job and every disagreement."""
    out = tmp_path_factory.mktemp("dist")
    torchrun(out, *dist_worker.JOBS, *(f"disagree-{f}" for f in dist_worker.DISAGREE))
    return out


def assert_same(got: dict, ref: dict, rtol: float) -> None:
    assert sorted(got) == sorted(ref)
    for split, mv in ref.items():
        assert sorted(got[split]) == sorted(mv)
        for metric, v in mv.items():
            np.testing.assert_allclose(got[split][metric], v, rtol=rtol, atol=0, err_msg=f"{split}/{metric}")


@pytest.mark.parametrize("job", dist_worker.JOBS)
def test_every_rank_returns_the_single_process_result(launched: Path, job: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the BatchNorm cases warn about negative variances alike
        ref = dist_worker.run(job, distributed=False)
    cls = linpath.Sweep if job.startswith("line") else linpath.Surface
    shard = job.rsplit("-", 1)[1]
    for rank in (0, 1):
        got = cls.load(launched / f"{job}.rank{rank}.npz")
        # Points: each point is computed exactly as alone; data: float64 sums in another order
        # (and other float32 batch boundaries for the pair split).
        assert_same(got.values, ref.values, rtol=1e-6 if shard == "data" else 0)
        info = got.meta["job"]
        assert (info["world_size"], info["rank"], info["shard"]) == (2, rank, shard)
        assert info["computed_points"] == ref.values[ref.splits[0]]["loss"].size
        assert 0 <= info["collective_seconds"] <= info["seconds"]
        if isinstance(ref, linpath.Surface):
            assert got.values["train"]["loss"].shape == (21, 21)


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="the NCCL case needs CUDA GPUs; this machine has none"
)
def test_nccl_on_the_gpus_gives_the_single_process_result(tmp_path: Path) -> None:
    """The BatchNorm cases on NCCL, one process per GPU (two when there are two or more), against
    the single-process CPU result (float32 on another device: 1e-5 relative)."""
    jobs = [job for job in dist_worker.JOBS if "-bn-" in job]
    processes = min(2, torch.cuda.device_count())
    torchrun(tmp_path, *jobs, processes=processes, backend="nccl")
    for job in jobs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = dist_worker.run(job, distributed=False)
        cls = linpath.Sweep if job.startswith("line") else linpath.Surface
        for rank in range(processes):
            got = cls.load(tmp_path / f"{job}.rank{rank}.npz")
            assert got.meta["job"]["backend"] == "nccl"
            assert_same(got.values, ref.values, rtol=1e-5)


@pytest.mark.parametrize("fact", dist_worker.DISAGREE)
def test_ranks_that_disagree_all_fail_with_the_same_message(launched: Path, fact: str) -> None:
    messages = [(launched / f"disagree-{fact}.rank{r}.txt").read_text() for r in (0, 1)]
    assert messages[0] == messages[1]
    assert "disagree before any evaluation" in messages[0]
    expected = {
        "grid": "grid of points",
        "settings": "the settings",
        "layout": "parameter layout",
        "origin": "θ0",
        "data": "the data",
    }[fact]
    assert expected in messages[0]
    if fact in ("settings", "data"):
        assert "θ0" not in messages[0] and "layout" not in messages[0]


@pytest.fixture
def single_rank_group():
    """A gloo process group of one process, in this process."""
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_a_group_of_one_runs_the_job_driver_with_the_same_numbers(single_rank_group) -> None:
    c = dist_worker.case("bn")
    kw = {"alphas": [0.0, 0.5, 1.0], "batch_size": 64, "progress": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = linpath.interpolate(c["model"], c["a"], c["b"], c["data"], distributed=False, **kw)
        for shard in distributed.SHARDS:
            one = linpath.interpolate(
                c["model"], c["a"], c["b"], c["data"], distributed=True, shard=shard, **kw
            )
            assert_same(one.values, plain.values, rtol=0)
            assert one.meta["job"]["world_size"] == 1
        assert "job" not in linpath.interpolate(c["model"], c["a"], c["b"], c["data"], **kw).meta


def test_distributed_true_without_a_group_says_how_to_launch() -> None:
    c = dist_worker.case("mlp")
    with pytest.raises(ValueError, match="torchrun"):
        linpath.interpolate(c["model"], c["a"], c["b"], c["data"], alphas=[0, 1], distributed=True)


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        ({"shard": "batches"}, ValueError, "shard must be one of"),
        ({"distributed": "yes"}, TypeError, "distributed must be None, True or False"),
        ({"checkpoint": 3}, TypeError, "checkpoint must be a path"),
    ],
)
def test_bad_job_arguments(kw: dict, error: type, match: str) -> None:
    c = dist_worker.case("mlp")
    with pytest.raises(error, match=match):
        linpath.interpolate(c["model"], c["a"], c["b"], c["data"], alphas=[0, 1], **kw)


def test_data_shard_refuses_a_shuffling_loader_and_too_few_examples() -> None:
    group = distributed.Group(rank=1, world=3, backend="gloo")
    x, y = torch.randn(40, 3), torch.randint(0, 2, (40,))
    shuffled = linpath.data.Split("valid", DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True), None)
    with pytest.raises(ValueError, match="shuffle=False"):
        distributed.ShardedSplit(shuffled, group)
    with pytest.raises(ValueError, match="holds 2; use shard='points'"):
        distributed.ShardedSplit(linpath.data.Split("t", (x[:2], y[:2]), 8), group)


def test_data_shard_deals_every_batch_to_exactly_one_rank() -> None:
    x, y = torch.randn(83, 3), torch.randint(0, 2, (83,))
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    listed = [(x[i : i + 8], y[i : i + 8]) for i in range(0, 83, 8)]
    for source in (loader, listed):
        seen = []
        for rank in range(3):
            split = distributed.ShardedSplit(
                linpath.data.Split("v", source, None), distributed.Group(rank, 3, "gloo")
            )
            seen += [b[0] for b in split.batches(torch.device("cpu"))]
            assert len(split.source) == len(range(rank, 11, 3))
        got = torch.cat(sorted(seen, key=lambda t: float(t[0, 0])))
        assert torch.equal(got, torch.cat(sorted(torch.split(x, 8), key=lambda t: float(t[0, 0]))))


def test_pair_shards_cover_every_example_once() -> None:
    x, y = torch.randn(101, 4), torch.randint(0, 3, (101,))
    parts = [
        distributed.ShardedSplit(linpath.data.Split("t", (x, y), 16), distributed.Group(r, 4, "gloo")).pair
        for r in range(4)
    ]
    assert torch.equal(torch.cat([p[0] for p in parts]), x) and torch.equal(
        torch.cat([p[1] for p in parts]), y
    )


def test_assemble_drops_a_metric_missing_at_some_point() -> None:
    values = {
        0: {"s": {"loss": 1.0, "error": 0.5}},
        1: {"s": {"loss": 2.0}},
        2: {"s": {"loss": 3.0, "error": 0.1}},
    }
    passes = [(np.zeros((2, 1)), "bf16"), (np.zeros((1, 1)), "float32")]
    got = runner.assemble(passes, values, ["s"])
    assert got == [{"s": {"loss": [1.0, 2.0]}}, {"s": {"loss": [3.0], "error": [0.1]}}]


def test_a_rank_killed_midway_leaves_a_file_that_the_rerun_completes(tmp_path: Path) -> None:
    """SIGKILL one rank of a checkpointed 21x21 surface: torchrun fails; the same command again
    computes only the points the files lack and gives the uninterrupted surface."""
    checkpoint = tmp_path / "run.lps"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(HERE), LINPATH_CHECKPOINT_SECONDS="0.2")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += [str(HERE / "dist_worker.py"), str(tmp_path), f"resume:{checkpoint}"]
    job = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(pointlog.read_points(checkpoint)) < 60:
            time.sleep(0.05)
        os.kill(int((tmp_path / "pid.rank1").read_text()), signal.SIGKILL)
        _, stderr = job.communicate(timeout=120)
    finally:
        job.kill()
    assert job.returncode != 0, "torchrun must fail when a rank is killed"
    assert not (tmp_path / "resume.rank0.npz").exists()
    kept = len(pointlog.read_points(checkpoint))
    print(f"rank 1 killed with {kept} of 441 points in the files")
    assert 60 <= kept < 441, kept
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = dist_worker.run("surface-bn-points", distributed=False)
    for rank in (0, 1):
        got = linpath.Surface.load(tmp_path / f"resume.rank{rank}.npz")
        assert (got.meta["job"]["resumed_points"], got.meta["job"]["computed_points"]) == (kept, 441 - kept)
        assert_same(got.values, ref.values, rtol=1e-6)
    assert sorted(pointlog.read_points(checkpoint)) == list(range(441))
    assert pointlog.part_files(checkpoint) == []  # merged into run.lps by rank 0


def _line(checkpoint: Path | None, **kw: object) -> linpath.Sweep:
    c = dist_worker.case("bn")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return linpath.interpolate(
            c["model"],
            c["a"],
            c["b"],
            c["data"],
            alphas=np.linspace(0, 1, 6),
            batch_size=64,
            progress=False,
            checkpoint=checkpoint,
            **kw,
        )


def test_a_file_cut_at_every_byte_of_its_last_record_resumes_with_one_point(tmp_path: Path) -> None:
    checkpoint = tmp_path / "run.lps"
    whole = _line(checkpoint)
    assert whole.meta["job"] == {"resumed_points": 0, "computed_points": 6, "checkpoint": str(checkpoint)}
    assert_same(whole.values, _line(None).values, rtol=1e-6)
    data = checkpoint.read_bytes()
    start = len(data)  # where the last record starts: the shortest cut that still holds 5 points
    while len(pointlog.read_points(checkpoint)) >= 5:
        start -= 1
        checkpoint.write_bytes(data[:start])
    start += 1
    assert len(data) - start > 100  # a whole record (header, CRC, values), not one byte
    for cut in range(start, len(data)):
        checkpoint.write_bytes(data[:cut])
        again = _line(checkpoint)
        assert (again.meta["job"]["resumed_points"], again.meta["job"]["computed_points"]) == (5, 1), cut
        assert_same(again.values, whole.values, rtol=1e-6)
    done = _line(checkpoint)
    assert done.meta["job"]["computed_points"] == 0
    assert_same(done.values, whole.values, rtol=0)


def test_a_checkpoint_of_other_settings_is_refused_naming_them(tmp_path: Path) -> None:
    checkpoint = tmp_path / "run.lps"
    _line(checkpoint)
    before = checkpoint.read_bytes()
    with pytest.raises(ValueError, match="metrics") as info:
        _line(checkpoint, metrics=("loss",))
    assert "other settings" in str(info.value)
    with pytest.raises(ValueError, match="buffers"):
        _line(checkpoint, buffers="current")
    assert checkpoint.read_bytes() == before  # nothing the user saved is lost


def test_rank_0_alone_sweeping_in_a_training_callback_never_enters_a_collective(
    monkeypatch, tmp_path
) -> None:
    """Training callbacks sweep on rank 0 only: under a group of two, their sweep must stay local
    (a collective there would wait forever for rank 1)."""
    from linpath.callbacks import _Recording

    def no_collective(*_: object, **__: object) -> None:
        raise AssertionError("a collective was entered")

    c = dist_worker.case("mlp")
    recording = _Recording(tmp_path / "run.lpt", sweep_data=c["data"]["train"], alphas=[0.0, 1.0])
    recording._start(c["model"], 0)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda *_: 2)
    monkeypatch.setattr(dist, "get_rank", lambda *_: 0)
    monkeypatch.setattr(dist, "get_backend", lambda *_: "gloo")
    monkeypatch.setattr(dist, "all_gather_object", no_collective)
    with pytest.raises(AssertionError, match="collective"):  # the fake group is seen by interpolate
        linpath.interpolate(c["model"], c["a"], c["b"], c["data"], alphas=[0, 1], progress=False)
    sweep = recording._sweep(1)
    assert sweep is not None and "job" not in sweep.meta
