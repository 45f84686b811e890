"""Loading, validating and applying quantization.yml and pruning.yml."""
import pytest
import torch
import yaml

from model.model import KeywordLeNet5Clone
from fixedpoint.layers import LayerQuantization, fixed_point_layers
from optimization.pruning import save_pruning, search_pruning
from optimization.quantization import search_quantization
from optimization.quantization_report import save_quantization
from optimization.solutions import (apply_pruning, apply_quantization, load_pruning,
                                    load_quantization)
from utils.errors import UserError

LAYERS = "(it has conv1, conv2, fc3, fc4); was it made for another model?"


def seeded_model(seed=0):
    torch.manual_seed(seed)
    return KeywordLeNet5Clone().eval()


def inputs(n=4):
    return torch.randn(n, 1, 100, 13, generator=torch.Generator().manual_seed(3))


def outputs(model, x):
    with torch.no_grad():
        return model(x)


def write(path, data):
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


FORMAT = {"bits_inputs": 8, "bits_weights": 4, "bits_accumulator": 32, "bits_outputs": 8,
          "il_inputs": 3, "il_weights": 0, "il_outputs": 4}


# --- round trips ----------------------------------------------------------------------------------

def test_quantization_round_trip_reproduces_the_outputs(tmp_path):
    model, x = seeded_model(), inputs()
    penalty = {0: 0.0, 16: 0.0, 8: 0.0, 4: 0.0, 2: 0.05}  # 2-bit weights fail, 4 bits pass

    def evaluate(m):
        return (0.9 - penalty[m.conv1.quantization.bits_weights]
                - penalty[m.fc3.quantization.bits_weights])
    result = search_quantization(model, evaluate, x, {})
    assert result.bitwidths == {"conv_weights": 4, "fc_weights": 4, "activations": 2}
    save_quantization(tmp_path / "quantization.yml", result, {})

    fresh = seeded_model()
    solution = load_quantization(tmp_path / "quantization.yml", fresh)
    assert solution == result.layers
    apply_quantization(fresh, solution)
    assert fresh.conv1.quantization.bits_weights == 4
    assert torch.equal(outputs(fresh, x), outputs(model, x))
    assert not torch.equal(outputs(fresh, x), outputs(seeded_model(), x))


def test_pruning_round_trip_reproduces_the_outputs(tmp_path):
    model, x = seeded_model(), inputs()
    result = search_pruning(model, lambda m: 0.9, {"max_steps": 20})
    save_pruning(tmp_path / "pruning.yml", result, {"max_steps": 20})

    fresh = seeded_model()
    pruned = load_pruning(tmp_path / "pruning.yml", fresh)
    assert pruned == result.pruned and sum(map(len, pruned.values())) == 20
    apply_pruning(fresh, pruned)
    assert {n: l.pruned_kernels for n, l in fixed_point_layers(fresh).items()} == pruned
    assert torch.equal(outputs(fresh, x), outputs(model, x))


# --- applying -------------------------------------------------------------------------------------

def test_apply_quantization_sets_named_layers_and_leaves_the_rest_float():
    model = seeded_model()
    model.fc4.quantization = LayerQuantization(bits_weights=8, il_weights=1)
    solution = {"conv2": LayerQuantization(**FORMAT)}
    apply_quantization(model, solution)
    assert model.conv2.quantization == LayerQuantization(**FORMAT)
    layers = fixed_point_layers(model)
    assert not any(layers[n].quantization.enabled for n in ("conv1", "fc3", "fc4"))
    solution["conv2"].bits_weights = 2  # the model holds a copy, not the caller's object
    assert model.conv2.quantization.bits_weights == 4


def test_apply_pruning_masks_and_zeroes_the_named_kernels_only():
    model = seeded_model()
    fc3_before = model.fc3.weight.detach().clone()
    apply_pruning(model, {"conv1": [0, 5]})
    assert model.conv1.pruned_kernels == [0, 5]
    assert torch.count_nonzero(model.conv1.weight[[0, 5]]) == 0
    assert torch.count_nonzero(model.conv1.bias[[0, 5]]) == 0
    assert all(not fixed_point_layers(model)[n].pruned_kernels for n in ("conv2", "fc3", "fc4"))
    assert torch.equal(model.fc3.weight, fc3_before)


def test_apply_rejects_layers_the_model_lacks():
    with pytest.raises(UserError, match=r"names layers \['fc9'\] that KeywordLeNet5Clone lacks"):
        apply_quantization(seeded_model(), {"fc9": LayerQuantization()})
    with pytest.raises(UserError, match=r"names layers \['fc9'\]"):
        apply_pruning(seeded_model(), {"fc9": [0]})


# --- validation -----------------------------------------------------------------------------------

def quantization_error(tmp_path, data):
    path = write(tmp_path / "quantization.yml", data)
    with pytest.raises(UserError) as error:
        load_quantization(path, seeded_model())
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("data, expected", [
    ("layers: [unclosed", "is not valid YAML"),
    ("- conv1\n- conv2\n", "must hold a YAML mapping, found list"),
    ({"config": {}},
     "has no 'layers' section (or the lab's 'solutions'); is it a quantization solution written by this tool?"),
    ({"solutions": {"conv9": FORMAT}}, "names layers ['conv9'] that KeywordLeNet5Clone lacks"),
    ({"layers": [FORMAT]}, "'layers' in"),
    ({"layers": {"conv1": FORMAT, "conv9": FORMAT, "fc7": FORMAT}},
     f"names layers ['conv9', 'fc7'] that KeywordLeNet5Clone lacks {LAYERS}"),
    ({"layers": {"conv1": 8}}, "layer conv1 in"),
    ({"layers": {"conv1": {**FORMAT, "bits_bias": 8}}},
     "has unknown keys ['bits_bias']; allowed: bits_inputs, bits_weights, bits_accumulator"),
    ({"layers": {"fc3": {**FORMAT, "bits_weights": 4.5}}}, "fc3.bits_weights in"),
    ({"layers": {"fc3": {**FORMAT, "bits_weights": "8"}}}, "must be an integer, found '8'"),
    ({"layers": {"fc3": {**FORMAT, "il_outputs": True}}}, "fc3.il_outputs in"),
    ({"layers": {"fc4": {**FORMAT, "bits_outputs": -8}}}, "fc4.bits_outputs in"),
    ({"layers": {"conv2": {"bits_weights": 8}}}, "conv2 in"),
])
def test_bad_quantization_files_are_user_errors(tmp_path, data, expected):
    assert expected in quantization_error(tmp_path, data)


def test_quantization_error_messages_say_what_to_do(tmp_path):
    assert "bitwidths must be >= 0 (0 = float)" in quantization_error(
        tmp_path, {"layers": {"fc4": {**FORMAT, "bits_outputs": -8}}})
    assert "sets bits_weights but not il_weights; add il_weights" in quantization_error(
        tmp_path, {"layers": {"conv2": {"bits_weights": 8}}})


def test_a_missing_quantization_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="quantization solution not found: .*nowhere.yml"):
        load_quantization(tmp_path / "nowhere.yml", seeded_model())


def test_negative_integer_lengths_and_omitted_float_groups_are_valid(tmp_path):
    path = write(tmp_path / "q.yml", {"layers": {"fc3": {"bits_weights": 4, "il_weights": -2}}})
    assert load_quantization(path, seeded_model()) == {
        "fc3": LayerQuantization(bits_weights=4, il_weights=-2)}


def pruning_error(tmp_path, data):
    path = write(tmp_path / "pruning.yml", data)
    with pytest.raises(UserError) as error:
        load_pruning(path, seeded_model())
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("data, expected", [
    ("pruned_filters: {conv1: [1,", "is not valid YAML"),
    ("just text", "must hold a YAML mapping, found str"),
    ({"results": {}},
     "has no 'pruned_filters' section; is it a pruning solution written by this tool?"),
    ({"pruned_filters": [1, 2]}, "'pruned_filters' in"),
    ({"pruned_filters": {"conv9": [1]}},
     f"names layers ['conv9'] that KeywordLeNet5Clone lacks {LAYERS}"),
    ({"pruned_filters": {"conv1": 3}}, "pruned_filters.conv1 in"),
    ({"pruned_filters": {"conv1": [1.5]}}, "must be a list of kernel indices, found [1.5]"),
    ({"pruned_filters": {"fc3": [0, 64, -1]}},
     "has kernel indices [-1, 64] outside 0..63 (fc3 has 64 kernels)"),
    ({"pruned_filters": {"conv2": list(range(8))}},
     "prunes all 8 kernels of conv2, which would cut the network; keep at least one"),
    ({"pruned_filters": {"fc4": [3, 1]}},
     "prunes class outputs [1, 3] of the class-output layer fc4: the model would never predict those "
     "classes; the class output is never pruned, give fc4: []"),
])
def test_bad_pruning_files_are_user_errors(tmp_path, data, expected):
    assert expected in pruning_error(tmp_path, data)


def test_a_missing_pruning_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="pruning solution not found"):
        load_pruning(tmp_path / "pruning.yml", seeded_model())


def test_pruning_lists_are_sorted_and_deduplicated(tmp_path):
    path = write(tmp_path / "pruning.yml", "pruned_filters: {conv1: [5, 1, 5], fc4:, fc3: []}\n")
    assert load_pruning(path, seeded_model()) == {"conv1": [1, 5], "fc4": [], "fc3": []}
