"""linpath.callbacks in real training runs (Lightning on MNIST, a Hugging Face Trainer), and a sweep
between two Lightning .ckpt files against a hand-written load_state_dict loop."""

import copy
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import linpath


def test_importing_linpath_imports_no_training_framework():
    code = (
        "import sys, linpath, linpath.callbacks; "
        "tops = {m.split('.')[0] for m in sys.modules}; "
        "print(sorted(tops & {'lightning', 'pytorch_lightning', 'transformers', 'accelerate'}))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match=r"every_n_steps must lie in \[1, "):
        linpath.callbacks.HFTrajectoryCallback(every_n_steps=0)
    with pytest.raises(TypeError, match="module must be the name of a submodule"):
        linpath.callbacks.TrajectoryCallback(module=nn.Linear(2, 2))
    with pytest.raises(RuntimeError, match="no trajectory yet"):
        linpath.callbacks.TrajectoryCallback().trajectory  # noqa: B018
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        linpath.callbacks.Nothing  # noqa: B018


def _hand_loop(model, sd0, sd1, x, y, alphas):
    """Mean cross-entropy at θ0 + α(θ1 − θ0), by load_state_dict into a copy of the plain module."""
    m = copy.deepcopy(model).eval()
    out = []
    for a in alphas:
        m.load_state_dict(
            {k: (sd0[k].double() + a * (sd1[k].double() - sd0[k].double())).float() for k in sd0}
        )
        with torch.no_grad():
            out.append(float(F.cross_entropy(m(x), y)))
    return np.array(out)


@pytest.fixture(scope="module")
def mnist_subset():
    data = linpath.datasets.mnist()
    seed = int(np.random.SeedSequence().entropy % 2**31)
    g = torch.Generator().manual_seed(seed)
    train = torch.randperm(len(data.train[0]), generator=g)[:320]
    valid = torch.randperm(len(data.valid[0]), generator=g)[:200]
    return (data.train[0][train], data.train[1][train]), (data.valid[0][valid], data.valid[1][valid])


def test_lightning_run_records_a_trajectory_and_sweeps_between_its_ckpt_files(tmp_path, mnist_subset):
    L = pytest.importorskip("lightning.pytorch")
    (xt, yt), (xv, yv) = mnist_subset

    class Classifier(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))

        def training_step(self, batch, _):
            x, y = batch
            return F.cross_entropy(self.model(x), y)

        def validation_step(self, batch, _):
            x, y = batch
            self.log("val_loss", F.cross_entropy(self.model(x), y))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.2)

    torch.manual_seed(int(np.random.SeedSequence().entropy % 2**31))
    lit = Classifier()
    theta0 = {k: v.detach().clone() for k, v in lit.model.state_dict().items()}
    loader = lambda x, y, shuffle: torch.utils.data.DataLoader(  # noqa: E731
        torch.utils.data.TensorDataset(x, y), batch_size=32, shuffle=shuffle
    )
    callback = linpath.callbacks.TrajectoryCallback(
        tmp_path / "run.lpt", every_n_steps=2, module="model", sweep_data=(xv, yv), alphas=[0.0, 0.5, 1.0]
    )
    saver = L.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=4, save_top_k=-1)
    trainer = L.Trainer(
        max_steps=8,
        accelerator="cpu",
        logger=False,
        callbacks=[callback, saver],
        val_check_interval=4,
        num_sanity_val_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(lit, loader(xt, yt, True), loader(xv, yv, False))

    trajectory = linpath.Trajectory.open(tmp_path / "run.lpt")
    np.testing.assert_array_equal(trajectory.steps, [0, 2, 4, 6, 8])
    assert trajectory.names == ["0.weight", "0.bias", "2.weight", "2.bias"]
    np.testing.assert_array_equal(trajectory[0].numpy(), linpath.flatten(theta0).numpy())
    np.testing.assert_array_equal(trajectory[-1].numpy(), linpath.flatten(lit.model).numpy())

    files = sorted(os.listdir(tmp_path / "ckpt"), key=lambda f: int(f.split("step=")[1].split(".")[0]))
    assert files == ["epoch=0-step=4.ckpt", "epoch=0-step=8.ckpt"]
    a, b = (tmp_path / "ckpt" / f for f in files)
    sd = [
        {k.removeprefix("model."): v for k, v in torch.load(p, weights_only=True)["state_dict"].items()}
        for p in (a, b)
    ]
    np.testing.assert_array_equal(trajectory[2].numpy(), linpath.flatten(sd[0]).numpy())  # step 4

    # the sweep between the two .ckpt files, on the plain nn.Module, against a load_state_dict loop
    net = copy.deepcopy(lit.model)
    alphas = [0.0, 0.5, 1.0]
    got = linpath.interpolate(net, a, b, (xv, yv), alphas=alphas, progress=False).values["data"]["loss"]
    want = _hand_loop(net, sd[0], sd[1], xv, yv, alphas)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert want[0] != want[-1]

    # the sweeps at validation (steps 4 and 8; none in the sanity check), from θ0 to the parameters then
    assert [step for step, _ in callback.sweeps] == [4, 8]
    for (step, sweep), i in zip(callback.sweeps, [2, 4], strict=True):
        at = dict(
            zip(trajectory.names, (t.clone() for t in trajectory[i].to_state_dict().values()), strict=True)
        )
        want = _hand_loop(net, theta0, at, xv, yv, alphas)
        np.testing.assert_allclose(
            sweep.values["data"]["loss"], want, rtol=1e-5, atol=1e-6, err_msg=str(step)
        )
    assert "linpath/monotonicity_gap" in trainer.callback_metrics


def test_hugging_face_trainer_records_a_trajectory(tmp_path):
    transformers = pytest.importorskip("transformers")
    seed = int(np.random.SeedSequence().entropy % 2**31)
    torch.manual_seed(seed)
    config = transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=40, n_positions=16)
    model = transformers.GPT2LMHeadModel(config)
    theta0 = linpath.flatten(model).numpy()
    g = torch.Generator().manual_seed(seed)
    rows = [{"input_ids": ids, "labels": ids} for ids in torch.randint(0, 40, (24, 12), generator=g)]
    ids = torch.stack([r["input_ids"] for r in rows[:8]])

    def next_token_loss(out, y):
        return F.cross_entropy(out.logits[:, :-1].reshape(-1, 40), y[:, 1:].reshape(-1))

    callback = linpath.callbacks.HFTrajectoryCallback(
        every_n_steps=2, sweep_data=(ids, ids), alphas=[0.0, 1.0], sweep_kwargs={"loss": next_token_loss}
    )
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=5,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
    )
    trainer = transformers.Trainer(model=model, args=args, train_dataset=rows, callbacks=[callback])
    trainer.train()
    trajectory = callback.trajectory
    np.testing.assert_array_equal(trajectory.steps, [0, 2, 4, 5])
    np.testing.assert_array_equal(trajectory[0].numpy(), theta0)
    np.testing.assert_array_equal(trajectory[-1].numpy(), linpath.flatten(model).numpy())
    assert not np.array_equal(trajectory[1].numpy(), theta0)
    assert trajectory.names == [n for n, _ in model.named_parameters()]

    trainer.evaluate(eval_dataset=rows[:8])  # on_evaluate: the line from θ0 to the trained model
    [(step, sweep)] = callback.sweeps
    model.eval()
    with torch.no_grad():
        own = float(model(input_ids=ids, labels=ids).loss)  # the model's own .loss at α = 1
        model.load_state_dict(
            dict(zip(trajectory.names, trajectory[0].to_state_dict().values(), strict=True)), strict=False
        )
        own0 = float(model(input_ids=ids, labels=ids).loss)
    assert step == 5
    np.testing.assert_allclose(sweep.values["data"]["loss"], [own0, own], rtol=1e-5)
