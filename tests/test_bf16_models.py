"""bf16 on the module engine for models nobody here wrote (acceptance 1 of issue 12): torchvision's
ResNet-18 and a small timm ViT, on real CIFAR-10 images, equal their float32 sweep within bf16 rounding
(2e-2 relative) at every α of a 21-point grid. ``bench/models.py`` times them at a larger size."""

import time

import numpy as np
import pytest
import torch

import linpath
from linpath import datasets

GRID = np.linspace(-0.5, 1.5, 21)


def resnet18(seed):
    import torchvision

    torch.manual_seed(seed)
    return torchvision.models.resnet18(num_classes=10).eval()


def vit(seed):
    timm = pytest.importorskip("timm")
    torch.manual_seed(seed)
    # vit_tiny from its config (no download); 8x8 patches of a 32x32 image keep the test short.
    return timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, num_classes=10
    ).eval()


@pytest.fixture(scope="module")
def images():
    if not datasets.cifar10_available():
        pytest.skip("CIFAR-10 is not available: " + datasets.CIFAR10_HOWTO)
    from test_buffers import cifar10_head

    return cifar10_head(16)


@pytest.mark.parametrize("build", [resnet18, vit], ids=["resnet18", "vit_tiny"])
def test_bf16_module_engine_equals_float32(build, images):
    model, start, end = build(0), build(1), build(2)
    data = {"train": images}
    times, sweeps = {}, {}
    for precision in ("float32", "bf16"):
        t = time.perf_counter()
        sweeps[precision] = linpath.interpolate(
            model, start, end, data, alphas=GRID, precision=precision, engine="module", progress=False
        )
        times[precision] = time.perf_counter() - t
    ref, got = sweeps["float32"].values["train"]["loss"], sweeps["bf16"].values["train"]["loss"]
    assert np.isfinite(ref).all()
    rel = np.abs(got - ref) / np.abs(ref)
    print(
        f"\n{build.__name__}: float32 {times['float32']:.1f} s, bf16 {times['bf16']:.1f} s "
        f"(ratio {times['bf16'] / times['float32']:.2f}), largest relative deviation {rel.max():.2e}"
    )
    assert rel.max() <= 2e-2
    assert sweeps["bf16"].precision_check["ok"]
