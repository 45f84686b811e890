"""Minimum-weight kernel pruning search.

Hand-set weights fix the kernel order exactly; a fake ``evaluate`` whose top-1 depends on how many
kernels are masked fixes where the search stops. A toy problem trained for a few steps checks the
search with a real evaluate, its cost, and the pruning.yml round trip.
"""

import pytest
import torch
import yaml

from conftest import train_toy_model
from model.model import KeywordLeNet5Clone
from fixedpoint.layers import fixed_point_layers
from configuration.schema import parse_pruning_config
from optimization.pruning import MARGIN_EXCEEDED, format_report, kernel_ranking, save_pruning, search_pruning
from optimization.solutions import apply_pruning, load_pruning
from utils.errors import UserError

TOTAL = 12680  # weights of the default KeywordLeNet5Clone (the lab's pruning rate counts no biases)
CONV1, CONV2, FC3 = 9, 8 * 9, 184  # one kernel's weights


@pytest.fixture(scope="module", autouse=True)
def _one_thread(single_thread):
    """Every test here on one thread (see conftest.single_thread)."""


def pruned_count(model):
    return sum(int((layer.kernel_mask == 0).sum()) for layer in fixed_point_layers(model).values())


class Scripted:
    """Fake evaluate: top-1 = ``accuracy_of(number of masked kernels)``; calls are counted."""

    def __init__(self, accuracy_of):
        self.accuracy_of = accuracy_of
        self.calls = 0

    def __call__(self, model):
        self.calls += 1
        return self.accuracy_of(pruned_count(model))


def hand_set_model():
    """All weights 1 except a few kernels whose mean squared weight is set by hand."""
    torch.manual_seed(0)
    model = KeywordLeNet5Clone().eval()
    with torch.no_grad():
        for layer in fixed_point_layers(model).values():
            layer.weight.fill_(1.0)
        model.fc3.weight[5] = 0.05                          # 0.0025
        model.fc3.bias[5] = 100.0                           # biases are not part of the criterion
        model.conv1.weight[2] = 0.1                         # 0.01
        model.conv2.weight[7] = -0.2                        # 0.04
        model.fc3.weight[0] = 0.3 * (-1.0) ** torch.arange(184)  # 0.09, but a sum of 16.6
        model.conv1.weight[0] = 0.5                         # 0.25, a sum of only 2.25
        model.fc4.weight[1] = 0.0                           # the class layer is never a candidate
    return model


FIRST = [("fc3", 5, 0.0025), ("conv1", 2, 0.01), ("conv2", 7, 0.04), ("fc3", 0, 0.09),
         ("conv1", 0, 0.25), ("conv1", 1, 1.0), ("conv1", 3, 1.0)]


def test_kernels_are_ranked_by_mean_squared_weight():
    ranking = kernel_ranking(hand_set_model())
    assert [(n, k) for n, k, _ in ranking[:7]] == [(n, k) for n, k, _ in FIRST]
    assert [c for _, _, c in ranking[:7]] == pytest.approx([c for _, _, c in FIRST], rel=1e-6)
    assert len(ranking) == 8 + 8 + 64
    assert all(name != "fc4" for name, _, _ in ranking)


def test_search_removes_kernels_in_ranking_order():
    model = hand_set_model()
    result = search_pruning(model, Scripted(lambda n: 0.9), {"max_steps": 7})
    assert [(s.layer, s.kernel) for s in result.steps] == [(n, k) for n, k, _ in FIRST]
    assert result.pruned == {"conv1": [0, 1, 2, 3], "conv2": [7], "fc3": [0, 5], "fc4": []}


def test_every_layer_keeps_a_kernel_and_the_class_layer_is_never_pruned():
    model, fake = hand_set_model(), Scripted(lambda n: 0.9)
    result = search_pruning(model, fake, {})
    # the largest criterion of each layer survives (ties: the highest index comes last)
    assert {n: [k for k in range(layer.out_channels_or_features) if layer.kernel_mask[k]]
            for n, layer in fixed_point_layers(model).items()} == {
        "conv1": [7], "conv2": [6], "fc3": [63], "fc4": [0, 1, 2, 3]}
    assert len(result.steps) == 7 + 7 + 63
    assert fake.calls == len(result.steps) + 1
    assert result.rate == pytest.approx((7 * CONV1 + 7 * CONV2 + 63 * FC3) / TOTAL)


def test_search_stops_before_the_margin_is_exceeded(capsys):
    model = hand_set_model()
    fc3_before = model.fc3.weight.detach().clone()
    fake = Scripted(lambda n: 0.9 - 0.01 * n)
    result = search_pruning(model, fake, {"error_margin": 3})
    assert MARGIN_EXCEEDED in capsys.readouterr().out
    # 3 kernels give exactly the floor 0.87 (within the margin); the 4th gives 0.86
    assert [s.accepted for s in result.steps] == [True, True, True, False]
    assert [s.accuracy for s in result.steps] == pytest.approx([0.89, 0.88, 0.87, 0.86])
    assert [s.rate for s in result.steps] == pytest.approx(
        [FC3 / TOTAL, (FC3 + CONV1) / TOTAL, (FC3 + CONV1 + CONV2) / TOTAL,
         (2 * FC3 + CONV1 + CONV2) / TOTAL])
    assert fake.calls == len(result.steps) + 1
    assert result.accuracy == pytest.approx(0.87)
    assert result.rate == pytest.approx((FC3 + CONV1 + CONV2) / TOTAL)
    assert result.pruned == {"conv1": [2], "conv2": [7], "fc3": [5], "fc4": []}
    assert pruned_count(model) == 3
    assert torch.equal(model.fc3.weight[0], fc3_before[0])  # the rejected kernel is intact
    assert model.fc3.kernel_mask[0] == 1


def test_pruned_kernels_output_exactly_zero():
    model = hand_set_model()
    search_pruning(model, Scripted(lambda n: 0.9 - 0.01 * n), {"error_margin": 3})
    for layer, k in ((model.conv1, 2), (model.conv2, 7), (model.fc3, 5)):
        assert torch.count_nonzero(layer.weight[k]) == 0 and layer.bias[k] == 0
    outputs = {}
    for name, layer in fixed_point_layers(model).items():
        layer.register_forward_hook(lambda m, a, out, name=name: outputs.__setitem__(name, out))
    x = torch.randn(3, 1, 100, 13, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        model(x)
    assert torch.count_nonzero(outputs["conv1"][:, 2]) == 0
    assert torch.count_nonzero(outputs["conv2"][:, 7]) == 0
    assert torch.count_nonzero(outputs["fc3"][:, 5]) == 0  # its bias of 100 is gone too
    assert torch.count_nonzero(outputs["fc3"][:, 4]) > 0


def test_max_steps_zero_only_measures_the_baseline():
    model, fake = hand_set_model(), Scripted(lambda n: 0.9)
    result = search_pruning(model, fake, {"max_steps": 0})
    assert fake.calls == 1 and result.steps == [] and result.rate == 0.0
    assert result.accuracy == result.baseline == 0.9


def test_an_interrupted_search_restores_the_masks_and_weights():
    model = hand_set_model()
    model.conv2.prune_kernels([1])
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def failing(m):
        if failing.calls == 3:
            raise KeyboardInterrupt
        failing.calls += 1
        return 0.9
    failing.calls = 0
    with pytest.raises(KeyboardInterrupt):
        search_pruning(model, failing, {})
    assert {n: l.pruned_kernels for n, l in fixed_point_layers(model).items()} == {
        "conv1": [], "conv2": [1], "fc3": [], "fc4": []}
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_earlier_pruning_is_kept_and_counted():
    model = hand_set_model()
    model.conv1.prune_kernels([6])
    result = search_pruning(model, Scripted(lambda n: 0.9), {"max_steps": 1})
    assert result.pruned["conv1"] == [6] and result.pruned["fc3"] == [5]
    assert all((s.layer, s.kernel) != ("conv1", 6) for s in result.steps)
    assert result.rate == pytest.approx((CONV1 + FC3) / TOTAL)


def test_report_layout():
    """The lab's published result: conv2 loses one kernel and fc3 32 of its 64."""
    torch.manual_seed(0)
    model = KeywordLeNet5Clone().eval()
    with torch.no_grad():
        for layer in fixed_point_layers(model).values():
            layer.weight.fill_(1.0)
        model.conv2.weight[3] = 0.01
        for k in range(32):
            model.fc3.weight[k] = 0.02 + 0.001 * k
    fake = Scripted(lambda n: 0.89844 if n < 33 else 0.87220 if n == 33 else 0.5)
    result = search_pruning(model, fake, {"error_margin": 3})
    assert format_report(result) == "\n".join([
        "---------------------------------------------",
        "Network pruning results.",
        "Baseline float32: 0.89844 (top1)",
        "Kernel pruning results:",
        "Layer conv1    | Conv     | 0/8 kernels pruned   | 0.00% parameters pruned",
        "Layer conv2    | Conv     | 1/8 kernels pruned   | 12.50% parameters pruned",
        "Layer fc3      | Linear   | 32/64 kernels pruned | 50.00% parameters pruned",
        "Layer fc4      | Linear   | 0/4 kernels pruned   | 0.00% parameters pruned",
        "Total pruning rate: 47.00%",  # (72 + 32 * 184) / 12680, the lab's figure
        "Accuracy: 0.87220 (top1)",
        "Decision metric: top1, floor 0.86844 (baseline 0.89844)",
        "---------------------------------------------",
    ])


@pytest.mark.parametrize("section, message", [
    ({"margin": 3}, "config key optimization.pruning.margin is not known; did you mean "
                    "optimization.pruning.error_margin?"),
    ({"max_step": 3}, "did you mean optimization.pruning.max_steps?"),
    ({"error_margin": "3%"}, "percentage points"),
    ({"error_margin": -0.5}, "percentage points"),
    ({"max_steps": -1}, "max_steps must be a non-negative integer or null"),
    ({"max_steps": 2.5}, "max_steps must be a non-negative integer or null"),
    ("3", "must be a mapping"),
])
def test_bad_configs_are_user_errors(section, message):
    with pytest.raises(UserError) as error:
        parse_pruning_config(section)
    assert message in str(error.value)


# --- a real search on a learnable toy problem ---------------------------------------------

@pytest.fixture(scope="module")
def toy(single_thread):
    return train_toy_model()


def test_real_search_costs_one_pass_per_step_and_round_trips(toy, tmp_path):
    trained, x, y = toy
    model = KeywordLeNet5Clone(dropout=0.0).eval()
    model.load_state_dict(trained.state_dict())
    calls = []

    def evaluate(m):
        calls.append(1)
        with torch.no_grad():
            return float((m(x).argmax(1) == y).float().mean())

    result = search_pruning(model, evaluate, {"error_margin": 3})
    assert result.baseline > 0.8  # the toy problem was learned
    assert len(calls) == len(result.steps) + 1  # one validation pass per step, plus the baseline
    assert result.rate > 0 and result.accuracy >= result.floor
    assert evaluate(model) == result.accuracy
    with torch.no_grad():
        searched = model(x)

    config = {"error_margin": 3}
    figure = save_pruning(tmp_path / "pruning.yml", result, config)
    assert figure == tmp_path / "pruning.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = yaml.safe_load((tmp_path / "pruning.yml").read_text())
    assert list(saved) == ["config", "results", "pruned_filters"]
    assert saved["config"] == {"error_margin": 3.0, "max_steps": None, "metric": "top1"}
    assert saved["results"]["accuracy"] == result.accuracy
    assert saved["results"]["rate"] == result.rate
    assert [s["accuracy"] for s in saved["results"]["steps"]] == [s.accuracy for s in result.steps]
    assert saved["pruned_filters"] == result.pruned
    assert all(v == sorted(v) for v in saved["pruned_filters"].values())

    fresh = KeywordLeNet5Clone(dropout=0.0).eval()
    fresh.load_state_dict(trained.state_dict())
    apply_pruning(fresh, load_pruning(tmp_path / "pruning.yml", fresh))
    with torch.no_grad():
        assert torch.equal(fresh(x), searched)
