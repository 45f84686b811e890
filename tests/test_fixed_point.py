"""The quantizer, the accumulator register and the fixed-point layers, with exact numbers."""
import copy

import torch

from model.model import KeywordLeNet5Clone
from model.registry import make_model
from fixedpoint.fixed_point import (Format, integer_length, quantize, round_half_away, round_half_away_exact,
                                    to_integer, wrap)
from fixedpoint.layers import FixedPointConv2d, FixedPointLinear, LayerQuantization


def test_integer_length():
    assert [integer_length(v) for v in (0.0, 0.3, 0.5, 0.99, 1.0, 1.5, 2.0, 7.9, 8.0)] == [0, -1, 0, 0, 1, 1, 2, 3, 4]


def test_a_format_covering_a_range_and_a_layer_built_from_formats():
    # 3.2 needs 2 integer bits: 8 bits leave 5 fractional bits, codes -128..127
    f = Format.covering(8, 3.2)
    assert (f.bits, f.il, f.fl, f.limits) == (8, 2, 5, (-128, 127))
    assert torch.equal(f.codes(torch.tensor([3.2, -5.0, 0.015625])), torch.tensor([102.0, -128.0, 1.0]))
    assert Format.covering(4, 0.3) == Format(4, -1)          # floor(log2 0.3) + 1
    assert Format.covering(0, 7.0) == Format(0, 0)           # float keeps no integer length
    q = LayerQuantization.from_formats(Format(8, 2), Format(4, -1), Format(8, 3), 20)
    assert q == LayerQuantization(bits_inputs=8, bits_weights=4, bits_accumulator=20, bits_outputs=8,
                                  il_inputs=2, il_weights=-1, il_outputs=3)
    assert (q.inputs, q.weights, q.outputs) == (Format(8, 2), Format(4, -1), Format(8, 3))


def test_quantizer_grid_saturation_and_rounding_half_away_from_zero():
    # 4 bits, il 1 -> fl 2: grid 0.25, range [-2, 1.75]
    x = torch.tensor([0.1, 0.125, -0.125, 0.375, -0.375, 1.8, 5.0, -2.1, -9.0])
    assert quantize(x, 4, 1).tolist() == [0.0, 0.25, -0.25, 0.5, -0.5, 1.75, 1.75, -2.0, -2.0]
    assert round_half_away(torch.tensor([0.5, 1.5, 2.5, -0.5, -2.5])).tolist() == [1, 2, 3, -1, -3]
    assert torch.equal(quantize(x, 0, 3), x)  # 0 bits = float


def test_quantizer_gradient_is_straight_through():
    x = torch.tensor([0.1, 3.0, -7.0], requires_grad=True)
    quantize(x, 4, 1).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0]


def test_accumulator_wraps_like_a_twos_complement_register():
    x = torch.tensor([5.0, -7.0, 127.0, 128.0, -129.0, 300.0, -300.0], dtype=torch.float64)
    assert wrap(x, 8).tolist() == [5, -7, 127, -128, 127, 44, -44]
    # a 32-bit register in float32 keeps in-range values exact (the low bits must not be lost)
    big = torch.tensor([123457.0, -99.0, 2.0 ** 23 + 1], dtype=torch.float32)
    assert torch.equal(wrap(big, 32), big)
    assert wrap(torch.tensor([2.0 ** 31], dtype=torch.float64), 32).item() == -(2.0 ** 31)


def test_layer_accumulator_overflow_is_the_wrapped_value():
    layer = FixedPointLinear(2, 1).eval()
    with torch.no_grad():
        layer.weight[:] = torch.tensor([[0.75, 0.75]])
        layer.bias.zero_()
    # inputs 8 bits fl 4 (code 100 = 6.25), weights 4 bits fl 2 (code 3): acc = 2*100*3 = 600
    layer.quantization = LayerQuantization(bits_inputs=8, il_inputs=3, bits_weights=4, il_weights=1,
                                           bits_accumulator=10)
    out = layer(torch.tensor([[6.25, 6.25]]))
    # 600 does not fit 10 bits [-512, 511]: it wraps to 600 - 1024 = -424, scale 2^-(4+2)
    assert out.item() == -424 / 64
    layer.quantization = LayerQuantization(bits_inputs=8, il_inputs=3, bits_weights=4, il_weights=1,
                                           bits_accumulator=11)
    assert layer(torch.tensor([[6.25, 6.25]])).item() == 600 / 64


def test_bias_is_quantized_at_the_accumulator_scale():
    layer = FixedPointLinear(1, 1).eval()
    with torch.no_grad():
        layer.weight.fill_(0.0)
        layer.bias.fill_(0.3)
    layer.quantization = LayerQuantization(bits_inputs=8, il_inputs=3, bits_weights=4, il_weights=1,
                                           bits_accumulator=32)
    # scale 2^-(4+2) = 1/64: 0.3 * 64 = 19.2 -> 19
    assert layer(torch.zeros(1, 1)).item() == 19 / 64


def test_pruned_kernels_output_zero_and_get_no_gradient():
    conv = FixedPointConv2d(1, 3, 3)
    with torch.no_grad():
        conv.bias.fill_(0.5)
    conv.prune_kernels([1])
    x = torch.randn(2, 1, 5, 5)
    out = conv(x)
    assert torch.count_nonzero(out[:, 1]) == 0 and torch.count_nonzero(out[:, 0]) > 0
    torch.relu(out).sum().backward()
    assert torch.count_nonzero(conv.weight.grad[1]) == 0 and conv.bias.grad[1] == 0
    assert conv.pruned_kernels == [1]


def test_training_and_evaluation_modes_quantize_alike():
    torch.manual_seed(0)
    model = KeywordLeNet5Clone(dropout=0.0)
    q = LayerQuantization(bits_inputs=8, bits_weights=4, bits_accumulator=32, bits_outputs=8,
                          il_inputs=3, il_weights=0, il_outputs=3)
    for layer in (model.conv1, model.conv2, model.fc3, model.fc4):
        layer.quantization = q
    x = torch.randn(16, 1, 100, 13)
    train_out = model.train().logits(x)
    eval_out = model.eval().logits(x)
    # float32 (training) and float64 (evaluation) sums agree but for rare rounding-boundary cases
    assert (train_out.detach() == eval_out).float().mean() > 0.95


def test_exact_rounding_is_right_for_every_float32():
    """floor(|x| + 0.5) rounds the largest float32 below 0.5 up to 1; the exact rounding does not,
    and agrees with float64 rounding (where that sum is exact) on ties and random values."""
    below_half = torch.nextafter(torch.tensor(0.5), torch.tensor(0.0))
    assert float(round_half_away(below_half)) == 1.0  # the quirk the exact rounding avoids
    assert float(round_half_away_exact(below_half)) == 0.0
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(10000, generator=g) * 50, torch.arange(-20, 21) + 0.5, below_half.view(1),
                   -below_half.view(1)])
    assert torch.equal(round_half_away_exact(x).double(), round_half_away_exact(x.double()))
    assert torch.equal(to_integer(x, 8, 2).double(), round_half_away(x.double() * 4).clamp(-128, 127))


def _quantized_lenet(bits_in, bits_w, bits_acc=32):
    torch.manual_seed(0)
    model = KeywordLeNet5Clone(dropout=0.0)
    for layer in (model.conv1, model.conv2, model.fc3, model.fc4):
        layer.quantization = LayerQuantization(bits_inputs=bits_in, bits_weights=bits_w, bits_accumulator=bits_acc,
                                               bits_outputs=bits_in, il_inputs=3, il_weights=0, il_outputs=3)
    return model.eval()


def test_float32_evaluation_equals_float64_bit_for_bit(monkeypatch):
    model = _quantized_lenet(8, 4)
    x = torch.randn(64, 1, 100, 13) * 3
    layers = (model.conv1, model.conv2, model.fc3, model.fc4)
    assert all(layer._float32_is_exact(layer.accumulator_bound(*layer._masked_params())) for layer in layers)
    with torch.no_grad():
        fast = model.logits(x)
        monkeypatch.setattr(FixedPointConv2d, "_float32_is_exact", lambda self, bound: False)
        monkeypatch.setattr(FixedPointLinear, "_float32_is_exact", lambda self, bound: False)
        reference = model.logits(x)
    assert torch.equal(fast, reference)


def test_a_bound_beyond_float32_falls_back_to_float64():
    model = _quantized_lenet(16, 16, 48)  # 16-bit codes: products alone reach 2^30
    layer = model.conv2
    bound = layer.accumulator_bound(*layer._masked_params())
    assert bound >= 2 ** 24 and not layer._float32_is_exact(bound)
    assert model.conv1._float32_is_exact(model.conv1.accumulator_bound(*model.conv1._masked_params())) is False


def test_one_group_candidates_evaluate_in_the_float_models_dtype(monkeypatch):
    """Only the weights (or only the inputs) quantized: the sum is no integer, so evaluation is
    float arithmetic like the float model's: float32, the same numbers as the float network with
    the quantized weights put in (or its input rounded to codes)."""
    torch.manual_seed(0)
    model = KeywordLeNet5Clone(dropout=0.0).eval()
    plain = copy.deepcopy(model)
    x = torch.randn(32, 1, 100, 13) * 3
    seen = []   # dtypes of the quantized convolutions' operands
    original = FixedPointConv2d._op

    def spy(self, x, w, b):
        if self.quantization.enabled:
            seen.append((x.dtype, w.dtype))
        return original(self, x, w, b)

    monkeypatch.setattr(FixedPointConv2d, "_op", spy)
    weights_only = LayerQuantization(bits_weights=4, il_weights=0)
    inputs_only = LayerQuantization(bits_inputs=8, il_inputs=3)
    with torch.no_grad():
        for name in ("conv1", "conv2", "fc3", "fc4"):
            getattr(model, name).quantization = weights_only
            getattr(plain, name).weight.copy_(weights_only.weights.quantize(getattr(model, name).weight, True))
        assert torch.equal(model.logits(x), plain.logits(x))
        reference = plain.logits(inputs_only.inputs.quantize(x, True))
        model.conv1.quantization = inputs_only
        for name in ("conv2", "fc3", "fc4"):
            getattr(model, name).quantization = weights_only
        model.conv1.weight.copy_(plain.conv1.weight)
        assert torch.equal(model.logits(x), reference)
    assert seen == [(torch.float32, torch.float32)] * 4   # conv1 and conv2 of model, in both passes


def test_output_quantization_after_relu_and_pooling_changes_nothing():
    """The graph quantizes outputs after relu / max pooling and skips requantizing codes; a hook
    on a layer makes it run whole (the original order), with the same logits."""
    model = _quantized_lenet(8, 4)
    x = torch.randn(32, 1, 100, 13) * 3
    with torch.no_grad():
        shortcut = model.logits(x)
        hooks = [layer.register_forward_hook(lambda m, a, out: None)
                 for layer in (model.conv1, model.conv2, model.fc3, model.fc4)]
        whole = model.logits(x)
    for hook in hooks:
        hook.remove()
    assert torch.equal(shortcut, whole)


def test_a_quantized_conv_keeps_the_channels_last_layout_of_its_model_and_its_exact_values():
    """conv1's weight (one input channel) has an ambiguous layout: quantizing it must not turn the
    conv (and the max pooling after it) to NCHW, which oneDNN runs 2.5x slower."""
    torch.manual_seed(0)
    model = make_model("KeywordLeNet5Clone", {}, {}).eval()
    conv = model.conv1
    conv.quantization = LayerQuantization(bits_inputs=8, il_inputs=5, bits_weights=4, il_weights=0,
                                          bits_accumulator=16, bits_outputs=8, il_outputs=5)
    x = torch.randn(4, 1, 100, 13) * 8
    nchw = copy.deepcopy(conv).to(memory_format=torch.contiguous_format)  # the same layer in NCHW
    with torch.no_grad():
        y, reference = conv(x), nchw(x)
    assert y.stride() == y.contiguous(memory_format=torch.channels_last).stride()
    assert reference.stride() == reference.contiguous().stride()
    assert torch.equal(y, reference)  # integer sums: the layout changes no value
