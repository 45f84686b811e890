"""Deployment: compaction, the integer engine (bit-exact with the fixed-point simulation), the
generated C code (bit-exact with the integer engine) and the ONNX export of the float model."""
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch

from deploy.c_export import c_model_memory, export_c
from deploy.compact import compact_model
from deploy.integer_engine import IntegerModel, requantize, wrap
from deploy.onnx_export import check_onnx, export_onnx
from model.model import KeywordLeNet5Clone
from fixedpoint.fixed_point import integer_length, to_integer
from fixedpoint.layers import LayerQuantization, fixed_point_layers
from optimization.profiling import profile_model
from utils.errors import UserError

GCC = ["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror"]
N_CLIPS = 200


def _features(n, seed):
    """MFCC-like clips: a per-coefficient offset and spread (low coefficients widest), a component
    that varies slowly over the 100 frames and frame-to-frame noise."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.tensor([12.0, 6, 4, 3, 3, 2, 2, 2, 1.5, 1.5, 1, 1, 1])
    offset = torch.randn(13, generator=g) * scale
    slow = torch.randn(n, 1, 10, 13, generator=g).repeat_interleave(10, dim=2)
    fast = torch.randn(n, 1, 100, 13, generator=g)
    return offset + scale * (0.7 * slow + 0.5 * fast)


def _model(seed, prune=False):
    torch.manual_seed(seed)
    model = KeywordLeNet5Clone().eval()
    if prune:
        model.conv1.prune_kernels([0])
        model.conv2.prune_kernels([1, 2])
        model.fc3.prune_kernels(range(0, 40, 4))
    return model


# Shifts of each layer's input format against the previous layer's output format, so the
# re-quantization between layers is exercised both ways: conv2 reads one bit less precisely
# (a rounding right shift), fc3 one bit more (a left shift that saturates the largest codes).
IL_INPUT_OFFSET = {"conv1": 0, "conv2": 1, "fc3": -1, "fc4": 0}


def _quantize(model, x, bits_inputs, bits_weights, bits_accumulator, bits_outputs):
    """Set every layer's formats from the float ranges on ``x``; bits_weights is per layer."""
    absmax = {}
    layers = fixed_point_layers(model)
    hooks = [layer.register_forward_hook(
        lambda m, args, out, name=name: absmax.__setitem__(
            name, (args[0].abs().max().item(), out.abs().max().item())))
        for name, layer in layers.items()]
    with torch.no_grad():
        model.logits(x)
    for hook in hooks:
        hook.remove()
    for (name, layer), bits_w in zip(layers.items(), bits_weights):
        a_in, a_out = absmax[name]
        layer.quantization = LayerQuantization(
            bits_inputs=bits_inputs, bits_weights=bits_w, bits_accumulator=bits_accumulator,
            bits_outputs=bits_outputs,
            il_inputs=integer_length(a_in) + IL_INPUT_OFFSET[name],
            il_weights=integer_length(layer.weight.abs().max().item()),
            il_outputs=integer_length(a_out))
    return model


CASES = {
    "w4_a8_pruned": dict(prune=True, bits=(8, (4, 4, 4, 4), 32, 8)),
    "w2_a8": dict(prune=False, bits=(8, (2, 2, 2, 2), 32, 8)),
    "w16_a16_acc48": dict(prune=True, bits=(16, (16, 16, 16, 16), 48, 16)),
    "w8_a8_acc12_wraps": dict(prune=False, bits=(8, (8, 8, 8, 8), 12, 8)),
    "w4_a8_acc16_int16_register": dict(prune=True, bits=(8, (4, 4, 4, 4), 16, 8)),
    "conv4_fc8_out16_in8": dict(prune=True, bits=(8, (4, 4, 8, 8), 32, 16)),
    "conv4_fc2_acc20_narrow": dict(prune=True, bits=(8, (4, 4, 2, 2), 20, 8)),
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    spec = CASES[request.param]
    x = _features(N_CLIPS, seed=1)
    model = _quantize(_model(seed=0, prune=spec["prune"]), x, *spec["bits"])
    with torch.no_grad():
        simulated = model.logits(x)
    return request.param, model, x, simulated


# ---- integer arithmetic primitives -------------------------------------------------------------

def test_wrap_is_twos_complement():
    values = np.array([127, 128, -128, -129, 255, 256, -256, 1000], dtype=np.int64)
    assert wrap(values, 8).tolist() == [127, -128, -128, 127, -1, 0, 0, -24]
    assert wrap(np.array([2 ** 40 + 5], dtype=np.int64), 32).tolist() == [5]


def test_requantize_rounds_half_away_and_saturates():
    values = np.array([5, -5, 6, -6, 7, -7, 1000, -1000], dtype=np.int64)
    # /2: 2.5 -> 3, -2.5 -> -3, 3, -3, 3.5 -> 4, -3.5 -> -4, 500 -> 127, -500 -> -128
    assert requantize(values, 1, 8).tolist() == [3, -3, 3, -3, 4, -4, 127, -128]
    # *4 with saturation
    assert requantize(np.array([3, -3, 40, -40], dtype=np.int64), -2, 8).tolist() == [12, -12, 127, -128]
    assert requantize(np.array([200, -200], dtype=np.int64), 0, 8).tolist() == [127, -128]


def test_requantize_matches_simulation_rounding():
    rng = np.random.default_rng(0)
    values = rng.integers(-2 ** 30, 2 ** 30, 20000)
    for shift in (1, 3, 9, 17):
        for bits in (4, 8, 16):
            expected = to_integer(torch.from_numpy(values).double() * 2.0 ** -shift, bits, 0)
            assert np.array_equal(requantize(values, shift, bits), expected.numpy())


# ---- compaction ----------------------------------------------------------------------------------

def test_compact_removes_pruned_kernels_and_their_inputs():
    model = _model(seed=0, prune=True)
    compact = compact_model(model)
    assert compact.widths == (7, 6, 54)
    live1, live2 = [1, 2, 3, 4, 5, 6, 7], [0, 3, 4, 5, 6, 7]
    live3 = [i for i in range(64) if i not in range(0, 40, 4)]
    columns = [c * 23 + f for c in live2 for f in range(23)]   # flatten is channel-major
    assert torch.equal(compact.conv1.weight, model.conv1.weight[live1])
    assert torch.equal(compact.conv2.weight, model.conv2.weight[live2][:, live1])
    assert torch.equal(compact.fc3.weight, model.fc3.weight[live3][:, columns])
    assert torch.equal(compact.fc4.weight, model.fc4.weight[:, live3])
    assert torch.equal(compact.fc3.bias, model.fc3.bias[live3])


def test_compact_float_outputs_and_profile_match():
    model = _model(seed=0, prune=True)
    compact = compact_model(model)
    x = _features(16, seed=2)
    with torch.no_grad():
        torch.testing.assert_close(compact(x), model(x), rtol=0, atol=1e-5)
    masked, small = profile_model(model), profile_model(compact)
    assert (small.macs, small.parameters, small.weight_bits, small.activation_bits) == \
        (masked.macs, masked.parameters, masked.weight_bits, masked.activation_bits)


def test_compact_quantized_is_exact_and_keeps_formats(case):
    _, model, x, simulated = case
    compact = compact_model(model)
    for name, layer in fixed_point_layers(compact).items():
        original = fixed_point_layers(model)[name].quantization
        assert layer.quantization == original and layer.quantization is not original
    with torch.no_grad():
        assert torch.equal(compact.logits(x[:50]), simulated[:50])


def test_compact_keeps_pruned_class_outputs_masked():
    model = _model(seed=0, prune=True)
    model.fc4.prune_kernels([2])
    compact = compact_model(model)
    assert compact.fc4.out_features == 4 and compact.fc4.pruned_kernels == [2]
    x = _features(8, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(compact.logits(x), model.logits(x), rtol=0, atol=1e-5)


def test_compact_rejects_a_layer_without_kernels():
    model = _model(seed=0)
    model.conv2.prune_kernels(range(8))
    with pytest.raises(UserError, match="every kernel of conv2 is pruned"):
        compact_model(model)


# ---- integer engine ------------------------------------------------------------------------------

def test_integer_engine_equals_simulation_exactly(case):
    _, model, x, simulated = case
    engine = IntegerModel.from_model(model)
    scores = engine.logits_int(engine.quantize_input(x))
    assert scores.dtype == np.int32 and scores.shape == (N_CLIPS, 4)
    assert len(np.unique(scores)) >= 10, "degenerate case: scores barely vary"
    assert np.array_equal(scores, simulated.double().numpy() * 2.0 ** engine.output_fl)


def test_small_accumulator_really_wraps():
    x = _features(N_CLIPS, seed=1)
    wrapped = _quantize(_model(seed=0), x, 8, (8, 8, 8, 8), 12, 8)
    wide = _quantize(_model(seed=0), x, 8, (8, 8, 8, 8), 32, 8)
    wide_engine, wrapped_engine = IntegerModel.from_model(wide), IntegerModel.from_model(wrapped)
    codes = wide_engine.quantize_input(x)
    differ = wrapped_engine.logits_int(codes) != wide_engine.logits_int(codes)
    assert differ.any(axis=1).mean() > 0.5   # most clips overflow a 12-bit register somewhere


def test_quantize_input_matches_simulation():
    x = _features(20, seed=4)
    model = _quantize(_model(seed=0), x, 8, (4,) * 4, 32, 8)
    engine = IntegerModel.from_model(model)
    q = model.conv1.quantization
    expected = to_integer(x.double(), q.bits_inputs, q.bits_inputs - q.il_inputs - 1)
    codes = engine.quantize_input(x)
    assert codes.dtype == np.int8
    assert np.array_equal(codes, expected.numpy())
    assert np.array_equal(engine.quantize_input(x.numpy()), codes)


def test_integer_engine_input_validation():
    model = _quantize(_model(seed=0), _features(10, seed=4), 8, (4,) * 4, 32, 8)
    engine = IntegerModel.from_model(model)
    with pytest.raises(UserError, match=r"expected \(N, 1, 100, 13\)"):
        engine.quantize_input(np.zeros((2, 100, 13)))
    with pytest.raises(UserError, match="NaN"):
        engine.quantize_input(np.full((1, 1, 100, 13), np.nan))
    with pytest.raises(UserError, match="integer feature codes"):
        engine.logits_int(np.zeros((1, 1, 100, 13)))
    with pytest.raises(UserError, match="outside the 8-bit range"):
        engine.logits_int(np.full((1, 1, 100, 13), 300))


def test_from_model_requires_full_quantization():
    with pytest.raises(UserError, match="conv1 is not fully quantized"):
        IntegerModel.from_model(_model(seed=0))
    model = _quantize(_model(seed=0), _features(10, seed=4), 8, (8,) * 4, 32, 8)
    model.fc3.quantization.bits_accumulator = 0
    with pytest.raises(UserError, match=r"fc3 is not fully quantized \(bits_accumulator = 0\)"):
        IntegerModel.from_model(model)
    model.fc3.quantization.bits_accumulator = 32
    model.fc4.quantization.bits_weights = 24
    with pytest.raises(UserError, match="fc4: bits_weights = 24 too wide"):
        IntegerModel.from_model(model)
    model.fc4.quantization.bits_weights = 8
    model.conv1.quantization.il_outputs = -60   # fl_out = 8 + 60 - 1: a left shift by ~60
    with pytest.raises(UserError, match="too far apart.*conv1 accumulator -> output"):
        IntegerModel.from_model(model)


# ---- C export ------------------------------------------------------------------------------------

def _compile(outdir, *sources):
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    exe = outdir / "kws"
    result = subprocess.run(GCC + [str(outdir / s) for s in sources] + ["-o", str(exe)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return exe


def _lines(codes):
    return "".join(" ".join(map(str, clip.reshape(-1))) + "\n" for clip in codes)


def _parse(stdout):
    return np.array([[int(v) for v in line.split()] for line in stdout.splitlines()])


def test_c_code_equals_integer_engine(case, tmp_path):
    name, model, x, _ = case
    engine = IntegerModel.from_model(model)
    export_c(engine, tmp_path)
    if name.endswith("_narrow"):   # conv1 (7 channels: a zero-padded last pair), conv2 and fc3 (54
        # outputs) through the narrow packed kernels, fc4 (216 MACs) through the portable loops
        assert re.findall(r"^/\* (\w+): .*\(narrow packed kernel, (\d)-bit fields", (tmp_path / "model.c").read_text(),
                          re.M) == [("conv1", "4"), ("conv2", "4"), ("fc3", "2")]
        # conv1's scaled weight pairs expanded once per call (4 pairs of channels, 10 words each)
        assert re.findall(r"uint32_t we\[(\d+)\];", (tmp_path / "model.c").read_text()) == ["40"]
    exe = _compile(tmp_path, "model.c", "main.c")
    codes = engine.quantize_input(x)
    (tmp_path / "features.txt").write_text(_lines(codes))
    from_file = subprocess.run([str(exe), str(tmp_path / "features.txt")], capture_output=True, text=True)
    assert from_file.returncode == 0, from_file.stderr
    assert np.array_equal(_parse(from_file.stdout), engine.logits_int(codes))
    from_stdin = subprocess.run([str(exe)], input=_lines(codes[:5]), capture_output=True, text=True)
    assert from_stdin.stdout == "".join(from_file.stdout.splitlines(keepends=True)[:5])


def test_c_code_is_integer_only_and_static(case, tmp_path):
    _, model, _, _ = case
    export_c(IntegerModel.from_model(model), tmp_path)
    source = (tmp_path / "model.c").read_text() + (tmp_path / "model.h").read_text()
    assert not re.search(r"\b(float|double|malloc|calloc|realloc)\b", source)


def test_c_input_type_follows_input_bits(tmp_path):
    x = _features(10, seed=4)
    for bits, ctype in ((8, "int8_t"), (16, "int16_t")):
        model = _quantize(_model(seed=0), x, bits, (8,) * 4, 32, bits)
        export_c(IntegerModel.from_model(model), tmp_path)
        assert f"typedef {ctype} kws_input_t;" in (tmp_path / "model.h").read_text()


def test_c_return_value_is_argmax(tmp_path):
    x = _features(100, seed=5)
    model = _quantize(_model(seed=0, prune=True), x, 8, (4, 4, 8, 8), 32, 8)
    engine = IntegerModel.from_model(model)
    export_c(engine, tmp_path)
    (tmp_path / "argmax.c").write_text(
        '#include <stdio.h>\n#include "model.h"\n'
        "static kws_input_t f[KWS_N_INPUTS];\nstatic int32_t s[KWS_N_CLASSES];\n"
        "int main(void)\n{\n    int i;\n    long v;\n"
        "    for (;;) {\n        for (i = 0; i < KWS_N_INPUTS; i++) {\n"
        "            if (scanf(\"%ld\", &v) != 1)\n                return 0;\n"
        "            f[i] = (kws_input_t)v;\n        }\n"
        "        printf(\"%d\\n\", kws_infer(f, s));\n    }\n}\n")
    exe = _compile(tmp_path, "model.c", "argmax.c")
    codes = engine.quantize_input(x)
    result = subprocess.run([str(exe)], input=_lines(codes), capture_output=True, text=True)
    expected = engine.logits_int(codes).argmax(axis=1)   # first maximum, as the C loop
    assert [int(v) for v in result.stdout.split()] == expected.tolist()


def test_c_driver_rejects_bad_lines(tmp_path):
    model = _quantize(_model(seed=0), _features(10, seed=4), 8, (8,) * 4, 32, 8)
    export_c(IntegerModel.from_model(model), tmp_path)
    exe = _compile(tmp_path, "model.c", "main.c")
    good = " ".join(["1"] * 1300)
    for text, message in ((good + " 2\n", "more than"), (" ".join(["1"] * 1299) + "\n", "fewer than"),
                          (good.replace("1", "x", 1) + "\n", "not an integer"),
                          (good.replace("1", "1.5", 1) + "\n", "not an integer"),
                          (good.replace("1", "128", 1) + "\n", "feature code out of range")):
        result = subprocess.run([str(exe)], input="\n" + text, capture_output=True, text=True)
        assert result.returncode == 1 and result.stderr.startswith("line 2: " + message), result.stderr


def test_c_model_memory_hand_worked(tmp_path):
    x = _features(10, seed=4)
    # Unpruned, 8-bit weights and activations, every layer in the packed kernel (rows of weights
    # zero padded to a multiple of 4). Flash: weights 8 x 12 (conv1's rows of 9) + 576 + 11776 +
    # 256 = 12704 bytes as int8, biases (8 + 8 + 64 + 4) * 4 = 336 -> 13040. RAM: conv1 reads
    # 1x100x13 int8 features (1300) and writes 8x49x5 pooled codes (1960) -> 3260, the largest pair.
    eight = IntegerModel.from_model(_quantize(_model(seed=0), x, 8, (8,) * 4, 32, 8))
    assert c_model_memory(eight) == (13040, 3260)
    # 4-bit weights pack two per byte: 36 + 288 + 5888 + 128 = 6340, + 336 bias bytes.
    four = IntegerModel.from_model(_quantize(_model(seed=0), x, 8, (4,) * 4, 32, 8))
    assert c_model_memory(four) == (6676, 3260)
    # The narrow packed kernels (accumulators of at most 28 bits) store 4-bit weights 8 and
    # 2-bit ones 16 to a 32-bit word, rows zero padded to whole words: conv1 8 x 2 words (64
    # bytes), conv2 8 x 9 (288), fc3 64 x 12 (3072); fc4 (256 MACs) keeps the portable loops'
    # nibbles (128); biases 336 -> 3888.
    narrow = IntegerModel.from_model(_quantize(_model(seed=0), x, 8, (4, 4, 2, 2), 20, 8))
    assert c_model_memory(narrow) == (3888, 3260)
    # 16-bit weights (25360 bytes) and 48-bit accumulators (int64 biases: 84 * 8 = 672);
    # 16-bit activations double the buffers: 2600 + 3920.
    wide = IntegerModel.from_model(_quantize(_model(seed=0), x, 16, (16,) * 4, 48, 16))
    assert c_model_memory(wide) == (26032, 6520)
    # Pruned to widths (7, 6, 54), 4-bit weights: 63 -> 32, 378 -> 189, 54*138 -> 3726,
    # 4*54 -> 108 bytes; biases (7 + 6 + 54 + 4) * 4 = 284 -> 4339. RAM 1300 + 7*49*5 = 3015.
    pruned = IntegerModel.from_model(_quantize(_model(seed=0, prune=True), x, 8, (4,) * 4, 32, 8))
    assert c_model_memory(pruned) == (4339, 3015)
    # The static arena holds the interior pairs: conv2 reads 1715 and writes 6*23 = 138 bytes.
    export_c(pruned, tmp_path)
    assert "static int16_t kws_arena[927];" in (tmp_path / "model.c").read_text()


# ---- ONNX ----------------------------------------------------------------------------------------

def test_onnx_matches_float_model(tmp_path):
    x = _features(32, seed=6)
    model = _model(seed=0)
    export_onnx(model, tmp_path / "model.onnx")
    assert check_onnx(tmp_path / "model.onnx", model, x) < 1e-4
    compact = compact_model(_model(seed=0, prune=True))
    export_onnx(compact, tmp_path / "compact.onnx")
    assert check_onnx(tmp_path / "compact.onnx", compact, x) < 1e-4
    assert check_onnx(tmp_path / "compact.onnx", model, x) > 1e-3   # the check can tell models apart


def test_onnx_rejects_quantized_model(tmp_path):
    model = _quantize(_model(seed=0), _features(10, seed=4), 8, (8,) * 4, 32, 8)
    with pytest.raises(UserError, match="quantized"):
        export_onnx(model, tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()
