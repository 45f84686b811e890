"""The config's optimizer is torch.optim's class as torch ships it, an unknown name is refused in
one line, and seed_everything makes two trainings with the same seed bit-identical through
torch's public determinism switch."""
import pytest
import torch
import yaml

from conftest import ROOT
from configuration.schema import OPTIMIZERS, validate_config
from utils.errors import UserError
from utils.seeding import seed_everything


def trained(optimizer_cls, seed=0, steps=6, state=None, **args):
    """Parameters and optimizer state after ``steps`` steps of a fixed tiny problem (StepLR halving)."""
    seed_everything(seed)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    optimizer = optimizer_cls(model.parameters(), **args)
    if state is not None:
        optimizer.load_state_dict(state)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    for _ in range(steps):
        optimizer.zero_grad()
        x = torch.randn(8, 5)
        torch.nn.functional.cross_entropy(model(x), torch.randint(0, 3, (8,))).backward()
        optimizer.step()
        scheduler.step()
    return [p.detach().clone() for p in model.parameters()], optimizer.state_dict()


def test_every_optimizer_the_schema_accepts_is_a_torch_optimizer():
    for name in OPTIMIZERS:
        cls = getattr(torch.optim, name)
        assert isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer), name


def test_the_shipped_configs_name_torch_optimizers():
    for path in sorted(ROOT.glob("config_*.yml")):
        cfg = validate_config(yaml.safe_load(path.read_text()))
        cls = getattr(torch.optim, cfg["optimizer"]["type"])
        optimizer = cls(torch.nn.Linear(2, 2).parameters(), **cfg["optimizer"]["args"])
        assert type(optimizer) is cls, path.name  # torch's own class, no subclass of ours


@pytest.mark.parametrize("name", ["Adamm", "Optimizer", "lr_scheduler", 3])
def test_an_unknown_optimizer_name_is_one_line_error(name):
    cfg = yaml.safe_load((ROOT / "config_lenet5_keywords.yml").read_text())
    cfg["optimizer"]["type"] = name
    with pytest.raises(UserError) as error:
        validate_config(cfg)
    message = str(error.value)
    assert "\n" not in message and message.startswith("config optimizer.type"), message


@pytest.mark.parametrize("name,args", [
    ("Adam", {"lr": 1e-2}),
    ("AdamW", {"lr": 1e-2, "weight_decay": 1e-3, "amsgrad": True}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
])
def test_same_seed_same_numbers_and_another_seed_others(name, args):
    first, first_state = trained(getattr(torch.optim, name), **args)
    again, again_state = trained(getattr(torch.optim, name), **args)
    other, _ = trained(getattr(torch.optim, name), seed=1, **args)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))
    assert first_state["param_groups"] == again_state["param_groups"]
    assert first_state["param_groups"][0]["lr"] == args["lr"] * 0.5 ** 3  # six steps, halved every two


def test_a_resumed_state_continues_the_same_run():
    _, state = trained(torch.optim.Adam, steps=2, lr=1e-2)
    resumed, resumed_state = trained(torch.optim.Adam, steps=2, state=state, lr=1e-2)
    assert resumed_state["state"][0]["step"].item() == 4.0


def test_seed_everything_switches_torch_to_deterministic_algorithms():
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                torch.utils.deterministic.fill_uninitialized_memory)
    try:
        seed_everything(3)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.utils.deterministic.fill_uninitialized_memory is False
        assert torch.initial_seed() == 3
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.utils.deterministic.fill_uninitialized_memory = previous[2]
