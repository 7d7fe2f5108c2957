"""Endpoints from files (linpath.checkpoints) and from other namespaces (prefix=), against hand-written
references: the files written by torch.save / safetensors / transformers themselves, and sweeps compared
with a plain ``load_state_dict`` loop."""

import copy
import os
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from torch.nn import functional as F

import linpath
from linpath import checkpoints

ALPHAS = [0.0, 0.5, 1.0]


def _seed() -> int:
    return int(np.random.SeedSequence().entropy % 2**31)  # fresh inputs each run, printed on failure


def _hand_loop(model, sd0, sd1, x, y, alphas=ALPHAS):
    """Mean cross-entropy at θ0 + α(θ1 − θ0) the slow, obvious way: load_state_dict into a copy."""
    m = copy.deepcopy(model).eval()
    out = []
    for a in alphas:
        point = {
            k: (sd0[k].double() + a * (sd1[k].double() - sd0[k].double())).to(v.dtype)
            if v.is_floating_point()
            else v
            for k, v in m.state_dict().items()
        }
        m.load_state_dict(point)
        with torch.no_grad():
            out.append(float(F.cross_entropy(m(x), y)))
    return np.array(out)


def _pair(make_mlp, seed, batchnorm=False):
    """Two state_dicts of one architecture (BatchNorm statistics differing too) and the model."""
    model = make_mlp(seed, batchnorm=batchnorm)
    other = make_mlp(seed + 1, batchnorm=batchnorm)
    if batchnorm:
        with torch.no_grad():
            other[1].running_mean.normal_()
            other[1].running_var.uniform_(0.5, 2.0)
    clone = lambda m: {k: v.detach().clone() for k, v in m.state_dict().items()}  # noqa: E731
    return model, clone(model), clone(other)


def _sweep(model, start, end, data, **kw):
    return linpath.interpolate(
        model, start, end, data, alphas=ALPHAS, metrics=("loss",), progress=False, **kw
    )


def _loss(sweep):
    return sweep.values["data"]["loss"]


# --- reading files -------------------------------------------------------------------------------


def test_torch_save_and_lightning_style_files_round_trip(tmp_path):
    g = torch.Generator().manual_seed(_seed())
    sd = {"a.weight": torch.randn(3, 4, generator=g), "a.bias": torch.randn(3, generator=g).double()}
    sd["steps"] = torch.tensor(7)
    torch.save(sd, tmp_path / "plain.pt")
    torch.save({"epoch": 1, "state_dict": sd, "hyper_parameters": {"lr": 0.1}}, tmp_path / "l.ckpt")
    torch.save({"model_state_dict": sd, "optimizer_state_dict": {}}, tmp_path / "custom.pt")
    torch.save(sd, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)  # a bare pickle
    for name in ("plain.pt", "l.ckpt", "custom.pt", "legacy.pt"):
        got = checkpoints.load(tmp_path / name)
        assert list(got) == list(sd)
        for k, v in sd.items():
            assert got[k].dtype == v.dtype and torch.equal(got[k], v)


def test_safetensors_files_are_read_exactly(tmp_path):
    g = torch.Generator().manual_seed(_seed())
    sd = {
        "f32": torch.randn(2, 3, generator=g),
        "f64": torch.randn(5, generator=g).double(),
        "bf16": torch.randn(4, 4, generator=g).bfloat16(),
        "f16": torch.randn(7, generator=g).half(),
        "i64": torch.randint(-9, 9, (3,), generator=g),
        "empty": torch.zeros(0, 3),
        "scalar": torch.tensor(2.5),
    }
    save_file(sd, tmp_path / "w.safetensors", metadata={"format": "pt"})
    got = checkpoints.load(tmp_path / "w.safetensors")
    assert set(got) == set(sd)
    for k, v in sd.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape and torch.equal(got[k], v), k


@pytest.mark.parametrize("safe", [True, False])
@pytest.mark.parametrize("shard", [None, "20KB"])
def test_hugging_face_directories(tmp_path, safe, shard):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(_seed())
    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=16, vocab_size=50, n_positions=16)
    model = transformers.GPT2LMHeadModel(config)
    kw = {} if shard is None else {"max_shard_size": shard}
    model.save_pretrained(tmp_path, safe_serialization=safe, **kw)
    if shard is not None:
        assert any(f.endswith(".index.json") for f in os.listdir(tmp_path))
    got = checkpoints.load(tmp_path)
    for name, p in model.named_parameters():  # the tied lm_head is saved once, as transformer.wte
        assert torch.equal(got[name], p.detach()), name


def test_hugging_face_directory_as_endpoint(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(_seed())
    config = transformers.BertConfig(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        vocab_size=40,
        num_labels=3,
    )
    a = transformers.BertForSequenceClassification(config).eval()
    b = transformers.BertForSequenceClassification(config).eval()
    a.save_pretrained(tmp_path / "a")
    b.save_pretrained(tmp_path / "b")
    ids, labels = torch.randint(0, 40, (6, 5)), torch.randint(0, 3, (6,))
    model = copy.deepcopy(a)
    loss = lambda out, y: F.cross_entropy(out.logits, y)  # noqa: E731
    got = linpath.interpolate(
        model,
        tmp_path / "a",
        str(tmp_path / "b"),
        (ids, labels),
        alphas=ALPHAS,
        loss=loss,
        metrics=("loss",),
        progress=False,
    )
    want = []
    for alpha in ALPHAS:
        m = copy.deepcopy(a)
        sd_a, sd_b = a.state_dict(), b.state_dict()
        m.load_state_dict(
            {k: v + alpha * (sd_b[k] - v) if v.is_floating_point() else v for k, v in sd_a.items()}
        )
        with torch.no_grad():
            want.append(float(F.cross_entropy(m(ids).logits, labels)))
    np.testing.assert_allclose(_loss(got), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["torch", "safetensors"])
def test_truncated_or_damaged_files_are_value_errors_naming_the_file(tmp_path, kind):
    sd = {"w": torch.randn(64, 64), "b": torch.randn(64)}
    path = tmp_path / ("w.pt" if kind == "torch" else "w.safetensors")
    (torch.save if kind == "torch" else save_file)(sd, path)
    whole = path.read_bytes()
    for cut in (len(whole) // 2, len(whole) - 3, 9):
        path.write_bytes(whole[:cut])
        with pytest.raises(ValueError, match=str(path.name)):
            checkpoints.load(path)
    damaged = bytearray(whole)
    damaged[12:40] = b"\xff" * 28
    path.write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match=str(path.name)):
        checkpoints.load(path)
    assert os.listdir(tmp_path) == [path.name]  # nothing written beside it


def test_other_files_and_directories_are_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="notes.txt is neither a torch.save nor a safetensors file"):
        checkpoints.load(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="directory without model weights"):
        checkpoints.load(tmp_path / "empty")
    torch.save([torch.ones(2)], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="holds a list, not a state_dict"):
        checkpoints.load(tmp_path / "list.pt")
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "meta.pt")
    with pytest.raises(ValueError, match="no state_dict entries"):
        checkpoints.load(tmp_path / "meta.pt")
    with pytest.raises(FileNotFoundError, match="start is the path .*missing.pt"):
        linpath.interpolate(
            nn.Linear(2, 2),
            tmp_path / "missing.pt",
            nn.Linear(2, 2),
            (torch.ones(1, 2), torch.zeros(1).long()),
        )


class _Payload:
    ran = False

    def __reduce__(self):
        return (_mark, ())


def _mark():
    _Payload.ran = True
    return {}


def test_files_are_unpickled_with_weights_only(tmp_path):
    """A file holding arbitrary objects is refused, and no code from it runs."""
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.ones(2), "x": _Payload()}, path, pickle_module=pickle)
    _Payload.ran = False
    with pytest.raises(ValueError, match="weights_only=True"):
        checkpoints.load(path)
    assert not _Payload.ran


# --- endpoints in interpolate, surface and project -------------------------------------------------


@pytest.mark.parametrize("fmt", ["pt", "ckpt", "safetensors"])
def test_sweep_between_files_equals_a_load_state_dict_loop(tmp_path, make_mlp, make_data, fmt):
    seed = _seed()
    model, sd0, sd1 = _pair(make_mlp, seed % 1000, batchnorm=True)
    x, y = make_data(50, seed)
    paths = []
    for i, sd in enumerate((sd0, sd1)):
        path = tmp_path / f"{i}.{fmt}"
        if fmt == "pt":
            torch.save(sd, path)
        elif fmt == "ckpt":  # as Lightning writes it: the LightningModule's `model.` attribute
            torch.save({"epoch": 0, "state_dict": {f"model.{k}": v for k, v in sd.items()}}, path)
        else:
            save_file({f"module.{k}": v.contiguous() for k, v in sd.items()}, path)
        paths.append(path)
    before = copy.deepcopy(model.state_dict())
    got = _sweep(model, *paths, (x, y))
    np.testing.assert_allclose(_loss(got), _hand_loop(model, sd0, sd1, x, y), rtol=1e-5, atol=1e-6)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in paths)


def test_a_user_prefix_is_stripped_and_a_wrong_one_refused(make_mlp, make_data):
    seed = _seed()
    model, sd0, sd1 = _pair(make_mlp, seed % 1000)
    x, y = make_data(30, seed)
    net = lambda sd: {f"net.{k}": v for k, v in sd.items()}  # noqa: E731
    got = _sweep(model, net(sd0), net(sd1), (x, y), prefix="net.")
    np.testing.assert_allclose(_loss(got), _hand_loop(model, sd0, sd1, x, y), rtol=1e-5, atol=1e-6)
    with pytest.raises(
        ValueError, match=r"start \(a state_dict\) lacks 4 of the parameters.*'net.0.weight'.*prefix="
    ):
        _sweep(model, net(sd0), sd1, (x, y))
    with pytest.raises(ValueError, match=r"lacks 4 of the parameters with prefix='model.'"):
        _sweep(model, net(sd0), net(sd1), (x, y), prefix="model.")
    with pytest.raises(TypeError, match="prefix must be a string"):
        _sweep(model, sd0, sd1, (x, y), prefix=None)


def test_two_readings_are_an_error_listing_both(make_mlp, make_data):
    """A state_dict holding both `0.weight` and `model.0.weight`: never guessed; prefix= decides."""
    seed = _seed()
    model, sd0, sd1 = _pair(make_mlp, seed % 1000)
    x, y = make_data(30, seed)
    both = {**sd0, **{f"model.{k}": v for k, v in sd1.items()}}
    with pytest.raises(
        ValueError, match=r"2 ways \('0.weight' <- '0.weight'; '0.weight' <- 'model.0.weight'\)"
    ):
        _sweep(model, both, sd1, (x, y))
    as_is = _sweep(model, both, sd1, (x, y), prefix="")
    stripped = _sweep(model, both, {f"model.{k}": v for k, v in sd0.items()}, (x, y), prefix="model.")
    np.testing.assert_allclose(_loss(as_is), _hand_loop(model, sd0, sd1, x, y), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_loss(stripped), _hand_loop(model, sd1, sd0, x, y), rtol=1e-5, atol=1e-6)


def test_wrapped_models_and_wrapped_endpoints(make_mlp, make_data):
    """DataParallel-style `module.` on the model's side, and on the endpoints' side, either way round."""
    seed = _seed()
    model, sd0, sd1 = _pair(make_mlp, seed % 1000, batchnorm=True)
    x, y = make_data(40, seed)
    want = _hand_loop(model, sd0, sd1, x, y)
    wrapped = nn.DataParallel(copy.deepcopy(model))  # on the CPU: names `module.0.weight`, runs the module
    np.testing.assert_allclose(_loss(_sweep(wrapped, sd0, sd1, (x, y))), want, rtol=1e-5, atol=1e-6)
    w0, w1 = wrapped.state_dict(), {f"module.{k}": v for k, v in sd1.items()}
    np.testing.assert_allclose(
        _loss(_sweep(model, w0, w1, (x, y))), _hand_loop(model, sd0, sd1, x, y), rtol=1e-5, atol=1e-6
    )


def test_a_compiled_model_with_endpoints_from_the_original(make_mlp, make_data):
    """torch.compile (backend="eager", which traces with dynamo as any backend does, without the
    inductor's minutes of code generation on this machine): the compiled model's names carry
    `_orig_mod.`; endpoints that are the original module, its state_dict or its trajectory work."""
    seed = _seed()
    model, sd0, sd1 = _pair(make_mlp, seed % 1000, batchnorm=True)
    x, y = make_data(40, seed)
    original = copy.deepcopy(model)
    original.load_state_dict(sd1)
    recorder = linpath.TrajectoryRecorder(original)
    recorder.record()
    compiled = torch.compile(model, backend="eager")
    assert next(iter(dict(compiled.named_parameters()))) == "_orig_mod.0.weight"
    before = {k: v.clone() for k, v in compiled.state_dict().items()}
    want = _hand_loop(model, sd0, sd1, x, y)
    np.testing.assert_allclose(_loss(_sweep(compiled, sd0, original, (x, y))), want, rtol=1e-5, atol=1e-6)
    # the trajectory has no buffers: the model's own (those of sd0) are used at every α
    traj = _sweep(compiled, recorder.trajectory[0], sd0, (x, y))
    sd1_own_stats = {**sd1, **{k: v for k, v in sd0.items() if "running" in k}}
    np.testing.assert_allclose(_loss(traj), _hand_loop(model, sd1_own_stats, sd0, x, y), rtol=1e-5, atol=1e-6)
    for k, v in compiled.state_dict().items():
        assert torch.equal(v, before[k])
    # and the other way round: a plain model, endpoints from the compiled one
    got = _sweep(model, compiled.state_dict(), sd1, (x, y))
    np.testing.assert_allclose(_loss(got), want, rtol=1e-5, atol=1e-6)


def test_surface_reads_center_and_directions_from_files(tmp_path, make_mlp, make_data):
    seed = _seed()
    model, sd0, sd1 = _pair(make_mlp, seed % 1000)
    x, y = make_data(30, seed)
    g = torch.Generator().manual_seed(seed)
    d2 = {k: torch.randn(v.shape, generator=g) for k, v in sd0.items()}
    d1 = {k: sd1[k] - sd0[k] for k in sd0}
    torch.save({"state_dict": {f"model.{k}": v for k, v in sd0.items()}}, tmp_path / "c.ckpt")
    save_file({f"model.{k}": v.contiguous() for k, v in d1.items()}, tmp_path / "d1.safetensors")
    grid = ([0.0, 0.5, 1.0], [0.0, 0.25])
    got = linpath.surface(
        model,
        tmp_path / "c.ckpt",
        [tmp_path / "d1.safetensors", {f"model.{k}": v for k, v in d2.items()}],
        (x, y),
        grid=grid,
        metrics=("loss",),
        progress=False,
        prefix="model.",
    )
    plain = linpath.surface(model, sd0, [d1, d2], (x, y), grid=grid, metrics=("loss",), progress=False)
    np.testing.assert_array_equal(got.values["data"]["loss"], plain.values["data"]["loss"])
    end = {k: sd0[k] + 0.25 * d2[k] for k in sd0}  # the row b = 0.25 as a line of its own, by hand
    np.testing.assert_allclose(
        got.values["data"]["loss"][1],
        _hand_loop(model, end, {k: end[k] + d1[k] for k in sd0}, x, y),
        rtol=1e-5,
        atol=1e-6,
    )


def test_project_reads_paths(tmp_path, make_mlp):
    model, sd0, sd1 = _pair(make_mlp, _seed() % 1000)
    recorder = linpath.TrajectoryRecorder(model)
    model.load_state_dict(sd0)
    recorder.record()
    model.load_state_dict(sd1)
    recorder.record()
    torch.save({f"module.{k}": v for k, v in sd0.items()}, tmp_path / "0.pt")
    save_file(sd1, tmp_path / "1.safetensors")
    proj = linpath.project(recorder, tmp_path / "0.pt", tmp_path / "1.safetensors")
    np.testing.assert_allclose(proj.coordinate, [0.0, 1.0], atol=1e-12)
