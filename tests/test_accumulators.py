"""Accumulator widths sized per layer: at least the lab's rule, and the smallest width that no
validation clip overflows; the C export stores each register in the narrowest C type."""
import math
from dataclasses import replace

import pytest
import torch

from conftest import train_toy_model
from deploy.c_export import export_c
from deploy.integer_engine import IntegerModel
from fixedpoint.fixed_point import fractional_length, round_half_away, to_integer
from fixedpoint.layers import fixed_point_layers
from configuration.schema import MAX_ACCUMULATOR
from optimization.accumulators import lab_accumulator_rule, size_accumulators
from optimization.quantization import search_quantization
from optimization.quantization_report import format_report
from optimization.solutions import apply_quantization

# products of one output plus the bias: the lab's kernel size
KERNEL = {"conv1": 9 + 1, "conv2": 72 + 1, "fc3": 184 + 1, "fc4": 64 + 1}


@pytest.fixture(scope="module", autouse=True)
def _one_thread(single_thread):
    """Every test here on one thread (see conftest.single_thread)."""


@pytest.fixture(scope="module")
def searched():
    model, x, y = train_toy_model()

    def evaluate(m):
        with torch.no_grad():
            return float((m(x).argmax(1) == y).float().mean())
    result = search_quantization(model, evaluate, x, {"error_margin": 3})
    return model, x, evaluate, result


def _outputs(model, x):
    with torch.no_grad():
        return model(x)


def test_lab_rule_is_the_labs_formula():
    model, _, _ = train_toy_model()
    for name, layer in fixed_point_layers(model).items():
        q = replace(layer.quantization, bits_inputs=8, bits_weights=4)
        assert lab_accumulator_rule(layer, q) == 8 + 4 - 1 + int(math.floor(math.log2(KERNEL[name])))
    assert [lab_accumulator_rule(layer, replace(layer.quantization, bits_inputs=8, bits_weights=8))
            for layer in fixed_point_layers(model).values()] == [18, 21, 22, 21]


def test_each_width_is_the_larger_of_the_lab_rule_and_the_validation_need(searched):
    model, x, _, result = searched
    assert set(result.accumulators) == {n for n, q in result.layers.items() if q.integer_accumulator}
    assert result.accumulators  # the toy search quantizes inputs and weights
    for name, a in result.accumulators.items():
        q = result.layers[name]
        assert q.bits_accumulator == a["bits"] == max(a["lab_rule"], a["validation"])
        assert a["lab_rule"] == q.bits_inputs + q.bits_weights - 1 + int(math.floor(math.log2(KERNEL[name])))
        assert a["validation"] <= a["worst_case"]
    report = format_report(result)
    assert "Accumulator bits (chosen: lab rule / no validation overflow / worst case):" in report
    for name, a in result.accumulators.items():
        assert f"    {name}: {a['bits']} ({a['lab_rule']} / {a['validation']} / {a['worst_case']})" in report


def _accumulators(model, x, layers):
    """Integer accumulators of every layer over ``x``, computed here from the layers' inputs, the
    weight and bias codes (an independent check of the sizing's measurement)."""
    inputs, hooks = {}, []
    for name, layer in fixed_point_layers(model).items():
        hooks.append(layer.register_forward_hook(lambda m, args, out, name=name: inputs.__setitem__(name, args[0])))
    _outputs(model, x)
    for hook in hooks:
        hook.remove()
    accs = {}
    for name, layer in fixed_point_layers(model).items():
        q = layers[name]
        if not q.integer_accumulator:
            continue
        fl_in, fl_w = fractional_length(q.bits_inputs, q.il_inputs), fractional_length(q.bits_weights, q.il_weights)
        x_int = to_integer(inputs[name].double(), q.bits_inputs, fl_in)
        w_int = to_integer(layer.weight.detach().double(), q.bits_weights, fl_w)
        b_int = round_half_away(layer.bias.detach().double() * 2.0 ** (fl_in + fl_w))
        accs[name] = layer._op(x_int, w_int, b_int)
    return accs


def test_no_validation_clip_overflows_and_one_bit_less_would(searched):
    model, x, evaluate, result = searched
    sized = _outputs(model, x)
    wide = {n: replace(q, bits_accumulator=MAX_ACCUMULATOR) if q.integer_accumulator else q
            for n, q in result.layers.items()}
    apply_quantization(model, wide)
    assert torch.equal(_outputs(model, x), sized)        # sizing changed no validation output
    assert evaluate(model) == result.accuracy
    accs = _accumulators(model, x, wide)
    assert set(accs) == set(result.accumulators)
    for name, a in result.accumulators.items():
        low, high = float(accs[name].min()), float(accs[name].max())
        bits = a["validation"]
        assert -2 ** (bits - 1) <= low and high <= 2 ** (bits - 1) - 1, name
        assert low < -2 ** (bits - 2) or high > 2 ** (bits - 2) - 1, name   # one bit less overflows
        assert a["max_abs"] == int(max(-low, high))
    apply_quantization(model, result.layers)


def test_sizing_restores_nothing_it_should_not(searched):
    model, x, _, result = searched
    again, info = size_accumulators(model, result.layers, x)
    assert again == result.layers and info == result.accumulators
    assert {n: layer.quantization for n, layer in fixed_point_layers(model).items()} == result.layers


@pytest.mark.parametrize("bits, ctype", [(12, "16"), (16, "16"), (17, "32"), (32, "32"), (33, "64")])
def test_c_register_is_the_narrowest_type(searched, tmp_path, bits, ctype):
    model, _, _, result = searched
    layers = {n: replace(q, bits_accumulator=bits) if q.integer_accumulator else q for n, q in result.layers.items()}
    apply_quantization(model, layers)
    try:
        engine = IntegerModel.from_model(model)
    finally:
        apply_quantization(model, result.layers)
    export_c(engine, tmp_path)
    source = (tmp_path / "model.c").read_text()
    assert f"uint{ctype}_t acc = (uint{ctype}_t)fc4_b[o];" in source
    assert f"static const int{ctype}_t fc4_b[4]" in source
