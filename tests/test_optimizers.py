"""trainer/optimizers.py: torch's optimizers without torch._dynamo compute bit-identical updates,
share their state dicts, and training with them (and seed_everything) never imports dynamo."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainer.optimizers import OPTIMIZERS, optimizer_class

ROOT = Path(__file__).resolve().parents[1]


def trained(optimizer_cls, steps=6, state=None, **args):
    """Parameters and optimizer state after ``steps`` steps of a fixed tiny problem (StepLR halving)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    optimizer = optimizer_cls(model.parameters(), **args)
    if state is not None:
        optimizer.load_state_dict(state)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        optimizer.zero_grad()
        x = torch.randn(8, 5, generator=gen)
        torch.nn.functional.cross_entropy(model(x), torch.randint(0, 3, (8,), generator=gen)).backward()
        optimizer.step()
        scheduler.step()
    return [p.detach().clone() for p in model.parameters()], optimizer.state_dict()


@pytest.mark.parametrize("name,args", [
    ("Adam", {"lr": 1e-2}),
    ("Adam", {"lr": 1e-2, "weight_decay": 1e-3, "amsgrad": True}),
    ("AdamW", {"lr": 1e-2}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
])
def test_updates_are_bit_identical_to_torch(name, args):
    ours, our_state = trained(getattr(OPTIMIZERS, name), **args)
    theirs, their_state = trained(getattr(torch.optim, name), **args)
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)
    assert our_state["param_groups"] == their_state["param_groups"]
    for k, s in their_state["state"].items():
        for key, value in s.items():
            assert torch.equal(torch.as_tensor(our_state["state"][k][key]), torch.as_tensor(value)), key


def test_state_dicts_load_across():
    _, torch_state = trained(torch.optim.Adam, lr=1e-2)
    _, our_state = trained(OPTIMIZERS.Adam, lr=1e-2)
    resumed_ours, _ = trained(OPTIMIZERS.Adam, steps=2, state=torch_state, lr=1e-2)
    resumed_torch, _ = trained(torch.optim.Adam, steps=2, state=our_state, lr=1e-2)
    for a, b in zip(resumed_ours, resumed_torch):
        assert torch.equal(a, b)


def test_lookup_names_what_torch_has():
    assert issubclass(OPTIMIZERS.Adam, torch.optim.Adam)
    assert OPTIMIZERS.Adam is OPTIMIZERS.Adam
    assert optimizer_class("Optimizer") is None and optimizer_class("Adamm") is None
    with pytest.raises(AttributeError):
        OPTIMIZERS.lr_scheduler


def test_an_optimizer_with_its_own_state_dict_is_left_as_torch_has_it(monkeypatch):
    class OwnStateDict(torch.optim.SGD):
        def state_dict(self):
            return {"own": True}
    monkeypatch.setattr(torch.optim, "OwnStateDict", OwnStateDict, raising=False)
    optimizer_class.cache_clear()
    try:
        assert optimizer_class("OwnStateDict") is OwnStateDict
        assert optimizer_class("SGD") is not torch.optim.SGD
    finally:
        optimizer_class.cache_clear()


def test_training_and_seeding_do_not_import_dynamo():
    code = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
import torch
from trainer.optimizers import OPTIMIZERS
from utils.seeding import seed_everything
seed_everything(3)
model = torch.nn.Linear(4, 2)
opt = OPTIMIZERS.Adam(model.parameters(), lr=1e-3)
sched = torch.optim.lr_scheduler.StepLR(opt, 1)
for _ in range(2):
    opt.zero_grad(); model(torch.randn(3, 4)).sum().backward(); opt.step(); sched.step()
opt.load_state_dict(opt.state_dict())
print('torch._dynamo' in sys.modules, torch.are_deterministic_algorithms_enabled(),
      torch.is_deterministic_algorithms_warn_only_enabled())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "True", "True"]
