"""Range analysis and the Ristretto-style quantization search.

Most tests drive the search with a fake ``evaluate`` whose top-1 is a function of the formats the
model carries, so every decision (which bitwidth a group keeps, when to back off) is exact. One
module-scoped toy problem, trained for a few steps, checks the search with a real evaluate.
"""
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from conftest import train_toy_model
from model.model import KeywordLeNet5Clone
from fixedpoint.fixed_point import integer_length
from fixedpoint.layers import LayerQuantization, fixed_point_layers
from configuration.schema import parse_quantization_config
from optimization.quantization import search_per_layer_weights, search_quantization
from optimization.quantization_report import format_report, save_quantization
from optimization.range_analysis import COLUMNS, collect_ranges
from optimization.solutions import apply_quantization, load_quantization
from utils.errors import UserError



@pytest.fixture(scope="module", autouse=True)
def _one_thread(single_thread):
    """Every test here on one thread (see conftest.single_thread)."""


def seeded_model(seed=0):
    torch.manual_seed(seed)
    return KeywordLeNet5Clone().eval()


def random_inputs(n=6, seed=1):
    return torch.randn(n, 1, 100, 13, generator=torch.Generator().manual_seed(seed))


class Scripted:
    """Fake evaluate: top-1 = ``accuracy_of(formats)`` where formats maps layer -> the
    LayerQuantization the model carries at the call; calls are recorded."""

    def __init__(self, accuracy_of):
        self.accuracy_of = accuracy_of
        self.calls = []

    def __call__(self, model):
        formats = {name: layer.quantization for name, layer in fixed_point_layers(model).items()}
        self.calls.append(formats)
        return self.accuracy_of(formats)


def by_group(conv, fc, act, base=0.9):
    """Top-1 = base minus one penalty per group, looked up by the group's bitwidth (0 = float)."""
    def accuracy(q):
        assert q["conv1"].bits_weights == q["conv2"].bits_weights
        assert q["fc3"].bits_weights == q["fc4"].bits_weights
        return (base - {0: 0.0, **conv}[q["conv1"].bits_weights]
                - {0: 0.0, **fc}[q["fc3"].bits_weights] - {0: 0.0, **act}[q["conv1"].bits_inputs])
    return accuracy


FREE = {16: 0.0, 8: 0.0, 4: 0.0, 2: 0.0}


# --- range analysis -----------------------------------------------------------------------------

def test_ranges_match_a_manual_forward_pass_over_all_batches():
    model, x = seeded_model(), random_inputs(7)
    ranges = collect_ranges(model, x, batch_size=3)
    assert list(ranges) == ["conv1", "conv2", "fc3", "fc4"]
    assert all(list(row) == COLUMNS for row in ranges.values())
    with torch.no_grad():
        c1 = model.conv1(x)
        h1 = F.max_pool2d(F.relu(c1), 2)
        c2 = model.conv2(h1)
        h2 = F.max_pool2d(F.relu(c2), 2).flatten(1)
        f3 = model.fc3(h2)
        f4 = model.fc4(F.relu(f3))
    seen = {"conv1": (x, model.conv1.weight, c1), "conv2": (h1, model.conv2.weight, c2),
            "fc3": (h2, model.fc3.weight, f3), "fc4": (F.relu(f3), model.fc4.weight, f4)}
    for name, tensors in seen.items():
        for group, t in zip(("inputs", "weights", "outputs"), (t.detach() for t in tensors)):
            assert ranges[name][f"{group}_min"] == pytest.approx(float(t.min()), abs=1e-6)
            assert ranges[name][f"{group}_max"] == pytest.approx(float(t.max()), abs=1e-6)
            assert ranges[name][f"{group}_absmax"] == pytest.approx(float(t.abs().max()),
                                                                       abs=1e-6)


def test_ranges_are_float_and_restore_the_formats_and_mode():
    model, x = seeded_model(), random_inputs()
    float_ranges = collect_ranges(model, x)
    q = LayerQuantization(bits_inputs=2, bits_weights=2, bits_accumulator=8, bits_outputs=2)
    model.conv1.quantization = q
    model.train()
    quantized_ranges = collect_ranges(model, x)
    assert quantized_ranges == float_ranges
    assert model.conv1.quantization is q
    assert model.training


def test_ranges_restore_the_formats_when_the_forward_pass_fails():
    model = seeded_model()
    q = LayerQuantization(bits_weights=4, il_weights=0)
    model.fc3.quantization = q
    with pytest.raises(RuntimeError):
        collect_ranges(model, torch.randn(2, 1, 50, 13))  # wrong shape: fc3 cannot take it
    assert model.fc3.quantization is q
    assert all(not layer._forward_hooks for layer in fixed_point_layers(model).values())


def test_weight_ranges_use_the_pruning_masks():
    model, x = seeded_model(), random_inputs(2)
    with torch.no_grad():
        model.conv2.weight[5] = 7.0
    assert collect_ranges(model, x)["conv2"]["weights_absmax"] == 7.0
    model.conv2.kernel_mask[5] = 0.0  # masked but not zeroed: the mask alone must hide it
    assert collect_ranges(model, x)["conv2"]["weights_absmax"] < 7.0


def test_range_analysis_does_not_import_pandas():
    """quantize.py's range table is a dict: pandas costs 0.3 s to import, for four rows."""
    code = ("import sys, torch\nfrom model.model import KeywordLeNet5Clone\n"
            "from optimization.range_analysis import collect_ranges, range_formats\n"
            "ranges = collect_ranges(KeywordLeNet5Clone().eval(), torch.randn(3, 1, 100, 13))\n"
            "print(range_formats(ranges, 'fc3', 4, 8)[1].bits, 'pandas' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["4", "False"]


def test_ranges_need_inputs():
    with pytest.raises(UserError, match="non-empty tensor of validation inputs"):
        collect_ranges(seeded_model(), torch.empty(0, 1, 100, 13))


# --- configuration ------------------------------------------------------------------------------

@pytest.mark.parametrize("section, expected", [
    (None, [16, 8, 4, 2]),
    ({"schedule": "halve", "start_bitwidth": 12, "min_bitwidth": 3}, [12, 6, 3]),
    ({"schedule": [16, 8, 6, 4, 3, 2]}, [16, 8, 6, 4, 3, 2]),
    ({"schedule": [10, 5], "start_bitwidth": 10}, [10, 5]),
])
def test_schedules(section, expected):
    assert parse_quantization_config(section).bitwidths == expected


@pytest.mark.parametrize("section, message", [
    ({"margin": 3}, "config key optimization.quantization.margin is not known; "
                    "did you mean optimization.quantization.error_margin?"),
    ({"error_marign": 3}, "did you mean optimization.quantization.error_margin?"),
    ({"schedule": "third"}, "must be 'halve' or a list of bitwidths"),
    ({"schedule": []}, "non-empty list"),
    ({"schedule": [8, 16]}, "strictly descending"),
    ({"schedule": [16, 8, 8]}, "strictly descending"),
    ({"schedule": [16, 1]}, "from 2 to 32"),
    ({"schedule": [16, 8.5]}, "from 2 to 32"),
    ({"schedule": [12, 6], "start_bitwidth": 16}, "start_bitwidth 16 disagrees with schedule"),
    ({"min_bitwidth": 8, "start_bitwidth": 4}, "min_bitwidth 8 is above start_bitwidth 4"),
    ({"bits_accumulator": 64}, "bits_accumulator must be an integer from 2 to 53"),
    ({"error_margin": -1}, "percentage points"),
    ({"error_margin": True}, "percentage points"),
    ([16, 8], "must be a mapping"),
])
def test_bad_configs_are_user_errors(section, message):
    with pytest.raises(UserError) as error:
        parse_quantization_config(section)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


# --- bitwidth selection with a scripted evaluate ------------------------------------------

def test_all_pass_keeps_the_lowest_bitwidth():
    model, fake = seeded_model(), Scripted(by_group(FREE, FREE, FREE))
    result = search_quantization(model, fake, random_inputs(), {})
    assert result.bitwidths == {"conv_weights": 2, "fc_weights": 2, "activations": 2}
    assert all(list(sweep) == [16, 8, 4, 2] for sweep in result.sweeps.values())
    assert len(fake.calls) == 1 + 3 * 4 + 1  # baseline, three sweeps, combined
    assert result.accuracy == pytest.approx(0.9)
    assert result.notes == []


def test_first_bitwidth_failing_keeps_the_group_float():
    model, fake = seeded_model(), Scripted(by_group({16: 0.05}, FREE, FREE))
    result = search_quantization(model, fake, random_inputs(), {"error_margin": 3, "bits_accumulator": 32})
    assert result.bitwidths == {"conv_weights": 0, "fc_weights": 2, "activations": 2}
    assert result.sweeps["conv_weights"] == {16: pytest.approx(0.85)}
    for name in ("conv1", "conv2"):
        assert result.layers[name].bits_weights == 0
        assert result.layers[name].il_weights == 0
        assert result.layers[name].bits_accumulator == 0  # float weights: no integer sum
    assert result.layers["fc3"].bits_accumulator == 32
    report = format_report(result)
    assert "Conv weights bitwidth: float32\n" in report
    assert "Conv weights stay float32: 16 bits gave top1 0.85000 < floor 0.87000" in report


def test_a_failing_middle_bitwidth_keeps_the_last_passing_one():
    fc = {16: 0.0, 8: 0.01, 4: 0.05, 2: 0.0}  # 2 bits would pass but the sweep stops at 4
    model, fake = seeded_model(), Scripted(by_group(FREE, fc, FREE))
    result = search_quantization(model, fake, random_inputs(), {"error_margin": 3})
    assert result.bitwidths["fc_weights"] == 8
    assert list(result.sweeps["fc_weights"]) == [16, 8, 4]
    assert result.sweeps["fc_weights"][4] == pytest.approx(0.85)


def test_an_explicit_schedule_is_followed():
    conv = {16: 0, 8: 0, 6: 0, 4: 0.01, 3: 0.04, 2: 0}
    free = dict.fromkeys(conv, 0.0)
    model, fake = seeded_model(), Scripted(by_group(conv, free, free))
    config = {"schedule": [16, 8, 6, 4, 3, 2], "error_margin": 3}
    result = search_quantization(model, fake, random_inputs(), config)
    assert list(result.sweeps["conv_weights"]) == [16, 8, 6, 4, 3]
    assert result.bitwidths["conv_weights"] == 4


BACKOFF = dict(conv={16: 0, 8: 0.01, 4: 0.02, 2: 0.04}, fc={16: 0, 8: 0.005, 4: 0.015, 2: 0.025},
               act={16: 0, 8: 0.01, 4: 0.029, 2: 0.5})


def test_a_combined_solution_below_the_floor_is_backed_off_until_it_passes():
    model = seeded_model()
    fake = Scripted(by_group(BACKOFF["conv"], BACKOFF["fc"], BACKOFF["act"]))
    result = search_quantization(model, fake, random_inputs(), {"error_margin": 3})
    # Stages keep conv 4 (0.880), fc 2 (0.875), activations 4 (0.871); together 0.826 < 0.87.
    # Each back-off raises the group whose own stage top-1 at its bitwidth is lowest.
    assert [note.split("; ")[1] for note in result.notes] == [
        "Activations 4 bits -> 8 bits", "FC weights 2 bits -> 4 bits",
        "Conv weights 4 bits -> 8 bits", "FC weights 4 bits -> 8 bits"]
    assert result.bitwidths == {"conv_weights": 8, "fc_weights": 8, "activations": 8}
    assert result.accuracy == pytest.approx(0.875)
    assert result.accuracy >= result.floor
    assert len(fake.calls) == 1 + 4 + 4 + 4 + 1 + 4
    assert fake(model) == pytest.approx(result.accuracy)  # the model carries the final solution


def test_back_off_can_return_a_group_to_float():
    def accuracy(q):  # any group alone is harmless; all three together are not
        quantized = (q["conv1"].bits_weights, q["fc3"].bits_weights, q["conv1"].bits_inputs)
        return 0.5 if all(quantized) else 0.9
    model, fake = seeded_model(), Scripted(accuracy)
    result = search_quantization(model, fake, random_inputs(), {})
    # Ties go to the first group in stage order, so conv climbs 2 -> 4 -> 8 -> 16 -> float.
    assert result.bitwidths == {"conv_weights": 0, "fc_weights": 2, "activations": 2}
    assert [note.split("; ")[1] for note in result.notes] == [
        "Conv weights 2 bits -> 4 bits", "Conv weights 4 bits -> 8 bits",
        "Conv weights 8 bits -> 16 bits", "Conv weights 16 bits -> float32"]
    assert result.accuracy == 0.9


def test_report_layout():
    model = seeded_model()
    fake = Scripted(by_group(BACKOFF["conv"], BACKOFF["fc"], BACKOFF["act"]))
    result = search_quantization(model, fake, random_inputs(), {"error_margin": 3, "bits_accumulator": 32,
                                                                "metric": "top1"})
    assert format_report(result) == "\n".join([
        "---------------------------------------------",
        "Network quantization results.",
        "Baseline float32: 0.90000 (top1)",
        "Conv layer weights:",
        "    bitwidth: 16 => top1: 0.90000",
        "    bitwidth:  8 => top1: 0.89000",
        "    bitwidth:  4 => top1: 0.88000",
        "    bitwidth:  2 => top1: 0.86000",
        "FC layer weights:",
        "    bitwidth: 16 => top1: 0.90000",
        "    bitwidth:  8 => top1: 0.89500",
        "    bitwidth:  4 => top1: 0.88500",
        "    bitwidth:  2 => top1: 0.87500",
        "Conv/FC inputs/activations:",
        "    bitwidth: 16 => top1: 0.90000",
        "    bitwidth:  8 => top1: 0.89000",
        "    bitwidth:  4 => top1: 0.87100",
        "    bitwidth:  2 => top1: 0.40000",
        "Back-off: combined top1 0.82600 < floor 0.87000; Activations 4 bits -> 8 bits",
        "Back-off: combined top1 0.84500 < floor 0.87000; FC weights 2 bits -> 4 bits",
        "Back-off: combined top1 0.85500 < floor 0.87000; Conv weights 4 bits -> 8 bits",
        "Back-off: combined top1 0.86500 < floor 0.87000; FC weights 4 bits -> 8 bits",
        "Dynamic fixed point net:",
        "Conv weights bitwidth: 8",
        "FC weights bitwidth: 8",
        "Activations bitwidth: 8",
        "Accuracy: 0.87500 (top1)",
        "Decision metric: top1, floor 0.87000 (baseline 0.90000)",
        "---------------------------------------------",
    ])


def test_integer_lengths_come_from_range_analysis():
    model, x = seeded_model(), random_inputs()
    result = search_quantization(model, Scripted(by_group(FREE, FREE, FREE)), x, {"bits_accumulator": 32})
    ranges = collect_ranges(model, x)
    for name, q in result.layers.items():
        assert q == LayerQuantization(
            bits_inputs=2, bits_weights=2, bits_accumulator=32, bits_outputs=2,
            il_inputs=integer_length(ranges[name]["inputs_absmax"]),
            il_weights=integer_length(ranges[name]["weights_absmax"]),
            il_outputs=integer_length(ranges[name]["outputs_absmax"]))
    assert result.layers["conv1"].il_inputs == integer_length(x.abs().max())


def test_an_interrupted_search_restores_the_model():
    model = seeded_model()
    q = LayerQuantization(bits_weights=8, il_weights=0)
    model.fc4.quantization = q

    def failing(m):
        if len(fake.calls) == 3:
            raise KeyboardInterrupt
        return fake(m)
    fake = Scripted(by_group(FREE, FREE, FREE))
    with pytest.raises(KeyboardInterrupt):
        search_quantization(model, failing, random_inputs(), {})
    assert model.fc4.quantization == q
    assert not model.conv1.quantization.enabled


# --- per-layer weights ----------------------------------------------------------------------------

PER_LAYER = {"conv1": {4: 0.002, 2: 0.03}, "conv2": {4: 0.002, 2: 0.004},
             "fc3": {4: 0.003, 2: 0.006}, "fc4": {4: 0.002, 2: 0.028}}


def by_layer(penalties, act=None, base=0.9):
    """Top-1 = base minus a penalty per layer's weight bitwidth and one for the activations."""
    act = {8: 0.001, 4: 0.05, 2: 0.5} if act is None else act

    def accuracy(q):
        free = {0: 0.0, **FREE}
        return (base - sum({**free, **penalties[n]}[q[n].bits_weights] for n in q)
                - {**free, **act}[q["conv1"].bits_inputs])
    return accuracy


def test_per_layer_lowers_the_most_tolerant_layers_first_within_the_floor():
    model, fake = seeded_model(), Scripted(by_layer(PER_LAYER))
    groups = search_quantization(model, fake, random_inputs(), {"error_margin": 3, "bits_accumulator": 32})
    assert groups.bitwidths == {"conv_weights": 4, "fc_weights": 4, "activations": 8}
    assert groups.accuracy == pytest.approx(0.89)
    calls = len(fake.calls)
    result = search_per_layer_weights(model, fake, groups)
    p = result.per_layer
    assert p.tolerance == pytest.approx(
        {"conv1": 0.862, "conv2": 0.888, "fc3": 0.887, "fc4": 0.864})
    assert p.order == ["conv2", "fc3", "fc4", "conv1"]
    assert p.bitwidths == {"conv1": 4, "conv2": 2, "fc3": 2, "fc4": 4}
    assert p.accuracy == pytest.approx(0.885)
    assert len(fake.calls) - calls == 4 + 3  # tolerances, then conv2's first step is reused
    assert p.group_weight_bits == (80 + 584 + 11840 + 260) * 4
    assert p.weight_bits == 80 * 4 + 584 * 2 + 11840 * 2 + 260 * 4
    assert [result.layers[n].bits_weights for n in result.layers] == [4, 2, 2, 4]
    assert result.accuracy == groups.accuracy and result.final_accuracy == p.accuracy
    assert fake(model) == pytest.approx(0.885)
    report = format_report(result)
    assert report.endswith("\n".join([
        "Accuracy: 0.89000 (top1)",
        "Decision metric: top1, floor 0.87000 (baseline 0.90000)",
        "Per-layer weights (most tolerant first):",
        "    conv2: 4 bits -> 2 bits",
        "    fc3: 4 bits -> 2 bits",
        "    fc4: 4 bits -> 4 bits",
        "    conv1: 4 bits -> 4 bits",
        "Per-layer accuracy: 0.88500",
        "Weight memory: 51056 -> 26208 bits (saved 24848 bits, 48.67%)",
        "---------------------------------------------"]))


def test_per_layer_has_nothing_to_do_when_every_layer_is_at_the_lowest_bitwidth():
    model, fake = seeded_model(), Scripted(by_group(FREE, FREE, FREE))
    groups = search_quantization(model, fake, random_inputs(), {})
    calls = len(fake.calls)
    result = search_per_layer_weights(model, fake, groups)
    assert len(fake.calls) == calls
    assert result.per_layer.order == [] and result.layers == groups.layers
    assert result.per_layer.weight_bits == result.per_layer.group_weight_bits == 12764 * 2
    assert ("Per-layer weights: every layer is already at the lowest bitwidth"
            in format_report(result))


def test_per_layer_can_quantize_a_layer_whose_group_stayed_float():
    penalties = {"conv1": {16: 0.05}, "conv2": {}, "fc3": {}, "fc4": {}}
    model, fake = seeded_model(), Scripted(by_layer(penalties, act={8: 0, 4: 0, 2: 0}))
    groups = search_quantization(model, fake, random_inputs(), {"error_margin": 3, "bits_accumulator": 32})
    assert groups.bitwidths["conv_weights"] == 0
    result = search_per_layer_weights(model, fake, groups)
    assert result.per_layer.bitwidths == {"conv1": 0, "conv2": 2, "fc3": 2, "fc4": 2}
    assert result.per_layer.sweeps["conv1"] == {16: pytest.approx(0.85)}
    assert result.layers["conv2"].bits_accumulator == 32
    assert result.layers["conv1"].bits_accumulator == 0


# --- a real search on a learnable toy problem ---------------------------------------------

@pytest.fixture(scope="module")
def toy(single_thread):
    model, x, y = train_toy_model()

    def evaluate(m):
        with torch.no_grad():
            return float((m(x).argmax(1) == y).float().mean())
    return model, x, evaluate


def test_real_search_respects_the_floor_and_round_trips(toy, tmp_path):
    model, x, evaluate = toy
    assert evaluate(model) > 0.8  # the toy problem was learned
    config = {"error_margin": 3}
    groups = search_quantization(model, evaluate, x, config)
    result = search_per_layer_weights(model, evaluate, groups)
    for group, sweep in result.sweeps.items():
        bits = list(sweep)
        passing = [b for b in bits if sweep[b] >= result.floor]
        assert passing == bits[:len(passing)]  # the sweep stops at its first failure
        if not result.notes:
            assert result.bitwidths[group] == (passing[-1] if passing else 0)
    assert result.accuracy >= result.floor and result.final_accuracy >= result.floor
    assert evaluate(model) == result.final_accuracy
    with torch.no_grad():
        searched = model(x)

    figure = save_quantization(tmp_path / "quantization.yml", result, config)
    assert figure == tmp_path / "quantization.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = yaml.safe_load((tmp_path / "quantization.yml").read_text())
    assert list(saved) == ["config", "results", "layers", "solutions"]
    assert saved["config"] == parse_quantization_config(config).to_dict()
    assert saved["results"]["sweeps"] == result.sweeps
    assert saved["results"]["bitwidths"] == result.bitwidths
    assert saved["results"]["per_layer"]["bitwidths"] == result.per_layer.bitwidths
    assert math.isclose(saved["results"]["baseline"], result.baseline)

    fresh = KeywordLeNet5Clone(dropout=0.0).eval()
    fresh.load_state_dict(model.state_dict())
    solution = load_quantization(tmp_path / "quantization.yml", fresh)
    assert solution == result.layers
    apply_quantization(fresh, solution)
    with torch.no_grad():
        assert torch.equal(fresh(x), searched)
    apply_quantization(model, {})
