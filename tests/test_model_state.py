"""ModelState (python/linpath/params.py): every sweep puts the model back exactly as it was, even when
the model swaps its own tensors in forward, or a second Ctrl-C lands as the restoration begins."""

import sys

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import linpath


class Counting(nn.Module):
    """Replaces its buffer (out of place) and its bias parameter object in every forward."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.register_buffer("seen", torch.zeros(()))

    def forward(self, x):
        self.seen = self.seen + len(x)
        return self.fc(x)


def state_of(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.filterwarnings("ignore:start and end do not both carry")
def test_tensors_a_module_replaces_in_forward_come_back():
    model = Counting().train()
    tensors = {name: t for name, t in [*model.named_parameters(), *model.named_buffers()]}
    before = state_of(model)
    end = torch.cat([p.detach().flatten() + 1 for p in model.parameters()])
    x, y = torch.randn(10, 4), torch.randint(0, 3, (10,))
    linpath.interpolate(model, model, end, (x, y), alphas=[0.0, 0.5, 1.0], progress=False)
    after = dict([*model.named_parameters(), *model.named_buffers()])
    assert all(after[name] is t for name, t in tensors.items())  # the same objects
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert model.seen.item() == 0.0 and model.training


def test_a_second_ctrl_c_as_the_restoration_starts_still_restores_the_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).train()
    before = state_of(model)
    x, y = torch.randn(20, 4), torch.randint(0, 3, (20,))
    end = torch.cat([p.detach().flatten() + 1 for p in model.parameters()])
    calls = 0

    def second_ctrl_c(frame, event, arg):
        if event == "call" and frame.f_code.co_name == "interrupts_deferred":
            sys.settrace(None)
            raise KeyboardInterrupt  # before the handler that holds Ctrl-C back is installed
        return None

    def loss(out, target):
        nonlocal calls
        calls += 1
        if calls == 3:
            sys.settrace(second_ctrl_c)
            raise KeyboardInterrupt
        return F.cross_entropy(out, target)

    with pytest.raises(KeyboardInterrupt):
        linpath.interpolate(model, model, end, (x, y), alphas=np.linspace(0, 1, 5), loss=loss, progress=False)
    sys.settrace(None)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert model.training
