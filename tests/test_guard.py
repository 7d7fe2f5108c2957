"""One linpath operation per model at a time (python/linpath/_guard.py): a second sweep of a model
that is being swept, from another thread or from inside the first, is refused, never run on top."""

import threading

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import linpath
from linpath.models import MLP


def wide_mlp(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(20, 256), nn.ReLU(), nn.Linear(256, 10))


def run_in_threads(target, n=2):
    results = [None] * n

    def worker(i):
        try:
            results[i] = target()
        except Exception as e:  # noqa: BLE001 (collected and checked by the test)
            results[i] = e

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.mark.parametrize("engine", ["module", "native"])
def test_two_threads_sweeping_one_model_get_right_values_or_a_clear_refusal(engine):
    if engine == "native":
        start, end = MLP([20, 64, 10], seed=0), MLP([20, 64, 10], seed=1)
        model = start
    else:
        start, end = wide_mlp(0), wide_mlp(1)
        model = wide_mlp(0)
    g = torch.Generator().manual_seed(0)
    data = (torch.randn(4000, 20, generator=g), torch.randint(0, 10, (4000,), generator=g))
    run = {"alphas": np.linspace(0, 1, 21), "engine": engine, "progress": False}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    alone = linpath.interpolate(model, start, end, data, **run)
    results = run_in_threads(lambda: linpath.interpolate(model, start, end, data, **run))
    refused = [r for r in results if isinstance(r, RuntimeError)]
    done = [r for r in results if isinstance(r, linpath.Sweep)]
    assert len(refused) + len(done) == 2 and done
    for sweep in done:  # whoever ran got exactly the values of a sweep on its own
        np.testing.assert_array_equal(sweep.values["data"]["loss"], alone.values["data"]["loss"])
    for err in refused:
        assert "linpath is sweeping this model right now" in str(err) and "copy.deepcopy" in str(err)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_sweep_from_inside_a_sweep_of_the_same_model_is_refused(make_mlp, make_data):
    model, start, end, data = make_mlp(0), make_mlp(0), make_mlp(1), make_data(50, 1)

    def nested_loss(out, y):
        linpath.interpolate(model, start, end, data, progress=False)
        return F.cross_entropy(out, y)

    with pytest.raises(RuntimeError, match="linpath is sweeping this model"):
        linpath.interpolate(model, start, end, data, loss=nested_loss, progress=False)
    # The guard is released afterwards: the same model sweeps again.
    linpath.interpolate(model, start, end, data, progress=False)


def test_models_sharing_parameters_are_guarded_together(make_mlp, make_data):
    model = make_mlp(0)
    wrapper = nn.Sequential(model)  # the same parameters under another module
    data = make_data(50, 1)

    def nested_loss(out, y):
        linpath.interpolate(
            wrapper, nn.Sequential(make_mlp(0)), nn.Sequential(make_mlp(1)), data, progress=False
        )
        return F.cross_entropy(out, y)

    with pytest.raises(RuntimeError, match="linpath is sweeping this model"):
        linpath.interpolate(model, make_mlp(0), make_mlp(1), data, loss=nested_loss, progress=False)


def test_copies_of_a_model_sweep_in_parallel_threads(make_mlp, make_data):
    import copy

    start, end, data = make_mlp(0), make_mlp(1), make_data(2000, 2)
    alone = linpath.interpolate(make_mlp(0), start, end, data, progress=False)
    results = run_in_threads(
        lambda: linpath.interpolate(copy.deepcopy(start), start, end, data, progress=False)
    )
    for sweep in results:
        np.testing.assert_array_equal(sweep.values["data"]["loss"], alone.values["data"]["loss"])


def test_recording_a_model_while_linpath_sweeps_it_is_refused(make_mlp, make_data):
    model = make_mlp(0)
    recorder = linpath.TrajectoryRecorder(model)

    def recording_loss(out, y):
        recorder.record()  # the parameters hold a point of the line now, not the trained ones
        return F.cross_entropy(out, y)

    with pytest.raises(RuntimeError, match="cannot record the model's parameters: linpath is sweeping"):
        linpath.interpolate(
            model, make_mlp(0), make_mlp(1), make_data(30, 1), loss=recording_loss, progress=False
        )
    assert len(recorder) == 0
    recorder.record()  # free again afterwards
    assert torch.equal(recorder.trajectory[0].tensor, linpath.flatten(make_mlp(0)).tensor)


def test_training_and_sweeping_one_model_refuse_each_other(make_data):
    from linpath import _guard

    model = MLP([20, 64, 10], seed=0)
    x, y = make_data(2000, 3)
    result = {}
    trainer = threading.Thread(
        target=lambda: result.update(
            r=linpath.train(model, (x, y), epochs=30, batch_size=10, lr=0.01, progress=False)
        )
    )
    trainer.start()
    while not _guard._in_use and trainer.is_alive():
        pass
    with pytest.raises(RuntimeError, match="linpath is training this model"):
        linpath.interpolate(model, model, MLP([20, 64, 10], seed=1), (x, y), engine="module", progress=False)
    trainer.join()
    trained = result["r"]
    assert torch.equal(trained.final.tensor, linpath.flatten(model).tensor)  # nothing undid the training

    def training_loss(out, target):
        linpath.train(model, (x, y), epochs=1, batch_size=10, lr=0.01, progress=False)
        return F.cross_entropy(out, target)

    with pytest.raises(RuntimeError, match="cannot train the model: linpath is sweeping"):
        linpath.interpolate(
            model, model, MLP([20, 64, 10], seed=1), (x, y), loss=training_loss, progress=False
        )
    assert torch.equal(trained.final.tensor, linpath.flatten(model).tensor)


def test_assigning_or_flattening_a_model_while_linpath_sweeps_it_is_refused(make_mlp, make_data):
    model = make_mlp(0)
    for call, action in (
        (lambda: linpath.assign(model, linpath.flatten(make_mlp(2))), "assign to the model"),
        (lambda: linpath.flatten(model), "flatten the model"),
    ):

        def loss(out, y, call=call):
            call()
            return F.cross_entropy(out, y)

        with pytest.raises(RuntimeError, match=f"cannot {action}: linpath is sweeping"):
            linpath.interpolate(model, make_mlp(0), make_mlp(1), make_data(30, 1), loss=loss, progress=False)
        assert torch.equal(linpath.flatten(model).tensor, linpath.flatten(make_mlp(0)).tensor)
