"""Any model that describes its blocks goes through the chain: DS-CNN (batch norm folded,
depthwise convs, stride, padding, global average pooling) and a model defined in this file
(registered with ``model.registry.register``), both pruned, quantized, compacted and run by the
integer engine and the generated C code, bit for bit equal to the fixed-point simulation."""
import re

import numpy as np
import pytest
import torch
import torch.nn as nn

from conftest import run_c_model, train_toy_model
from configuration.schema import validate_config
from deploy.c_export import export_c
from deploy.compact import compact_model
from deploy.integer_engine import IntegerModel
from fixedpoint.fixed_point import integer_length
from fixedpoint.folding import fold_batchnorm
from fixedpoint.graph import Block, Graph, describe
from fixedpoint.layers import FixedPointConv2d, FixedPointLinear, LayerQuantization
from model.dscnn import DSCNN
from model.model import KeywordLeNet5Clone
from model.registry import ARCHITECTURES, KeywordModel, build_model, register
from optimization.profiling import profile_model
from optimization.pruning import kernel_ranking, search_pruning
from optimization.quantization import search_quantization
from optimization.solutions import apply_pruning, load_quantization
from utils.checkpoint import Checkpoint
from utils.errors import UserError

@pytest.fixture(scope="module", autouse=True)
def _one_thread(single_thread):
    """Every test here on one thread (see conftest.single_thread)."""


@register
class TwoConvNet(KeywordModel):
    """The test's own model: conv k(5,3) stride (2,1), conv 3x3 padding 1 + max pool 4, linear."""

    def __init__(self, num_classes=4, widths=(4, 6), input_shape=(1, 100, 13)):
        super().__init__()
        self.widths, self.input_shape = tuple(widths), tuple(input_shape)
        self.arch_args = {"num_classes": num_classes}
        c, h, w = self.input_shape
        self.conv_a = FixedPointConv2d(c, widths[0], kernel_size=(5, 3), stride=(2, 1))
        self.conv_b = FixedPointConv2d(widths[0], widths[1], kernel_size=3, padding=1)
        self.head = FixedPointLinear(widths[1] * (((h - 5) // 2 + 1) // 4) * ((w - 2) // 4), num_classes)

    def describe(self):
        return Graph(self.input_shape, (Block("conv_a", self.conv_a, relu=True),
                                        Block("conv_b", self.conv_b, relu=True, maxpool=4),
                                        Block("head", self.head)))


def _features(n, seed, shape=(1, 100, 13)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n,) + shape, generator=g) * 3


def _quantize(model, x, bits=8, bits_weights=6, bits_accumulator=32):
    """Every layer's formats from the float ranges on ``x``."""
    absmax = {}
    graph = describe(model)
    hooks = [b.layer.register_forward_hook(
        lambda m, args, out, name=b.name: absmax.__setitem__(name, (args[0].abs().max().item(),
                                                                    out.abs().max().item())))
        for b in graph.blocks]
    with torch.no_grad():
        model.logits(x)
    for hook in hooks:
        hook.remove()
    for block in graph.blocks:
        a_in, a_out = absmax[block.name]
        block.layer.quantization = LayerQuantization(
            bits_inputs=bits, bits_weights=bits_weights, bits_accumulator=bits_accumulator, bits_outputs=bits,
            il_inputs=integer_length(a_in), il_weights=integer_length(block.layer.weight.abs().max().item()),
            il_outputs=integer_length(a_out))
    return model


def _small_dscnn(seed=0):
    """A DS-CNN of 8 channels and 2 blocks with batch-norm statistics far from the identity."""
    torch.manual_seed(seed)
    model = DSCNN(channels=8, blocks=2, dropout=0.0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model.eval()


def _c_scores(engine, codes, tmp_path):
    export_c(engine, tmp_path)
    return run_c_model(tmp_path, "".join(" ".join(map(str, clip.reshape(-1))) + "\n" for clip in codes), tmp_path)


def _assert_bit_exact(model, x, tmp_path):
    """Simulation == integer engine == C, bit for bit; returns the engine."""
    with torch.no_grad():
        simulated = model.logits(x).double().numpy()
    engine = IntegerModel.from_model(model)
    codes = engine.quantize_input(x)
    scores = engine.logits_int(codes)
    assert np.array_equal(scores, simulated * 2.0 ** engine.output_fl)
    assert np.array_equal(_c_scores(engine, codes, tmp_path), scores)
    return engine


# ---- the description -----------------------------------------------------------------------------

def test_lenet5_numbers_and_input_shape_from_the_features():
    assert profile_model(KeywordLeNet5Clone()).macs == 170864
    assert profile_model(KeywordLeNet5Clone()).parameters == 12764
    wide = KeywordLeNet5Clone(input_shape=(1, 100, 20))   # n_mfcc: 20
    assert wide.fc3.in_features == 8 * 23 * 3
    assert wide(torch.zeros(2, 1, 100, 20)).shape == (2, 4)
    ckpt = Checkpoint(arch="KeywordLeNet5Clone", arch_args={}, state_dict=wide.state_dict(), config={},
                      features={"n_mfcc": 20, "frames": 100}, normalization={})
    assert build_model(ckpt).input_shape == (1, 100, 20)
    assert profile_model(wide).parameters == 12764 + 8 * 23 * 2 * 64


def test_dscnn_size_and_description():
    model = DSCNN()
    profile = profile_model(model)
    assert profile.parameters == 13492          # batch norm counted folded into the convs
    assert profile.macs == 3936576
    graph = describe(model)
    assert graph.names == ["conv1", "dw1", "pw1", "dw2", "pw2", "dw3", "pw3", "dw4", "pw4", "fc"]
    assert [b.kind for b in graph.blocks][:3] == ["conv", "depthwise", "conv"]
    assert graph.output.name == "fc" and graph.blocks[-2].avgpool
    assert model(torch.zeros(3, 1, 100, 13)).shape == (3, 4)


def test_fold_batchnorm_keeps_the_function_and_survives_the_state_dict():
    model = _small_dscnn()
    x = _features(16, seed=1)
    with torch.no_grad():
        before = model(x)
        fold_batchnorm(model)
        after = model(x)
    assert torch.allclose(before, after, atol=1e-5)
    again = DSCNN(channels=8, blocks=2, dropout=0.0)
    again.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(again.eval()(x), after)    # the folded flag travels with the weights


# ---- pruning rules ---------------------------------------------------------------------------------

def test_dscnn_pruning_ties_depthwise_kernels_to_their_channels():
    model = fold_batchnorm(_small_dscnn())
    candidates = {name for name, _, _ in kernel_ranking(model)}
    assert candidates == {"conv1", "pw1", "pw2"}      # never the class output, never a depthwise conv
    apply_pruning(model, {"conv1": [1], "pw1": [0, 5], "dw2": [3]})
    assert model.dw1.pruned_kernels == [1]             # follows conv1's channel
    assert model.dw2.pruned_kernels == [0, 3, 5]       # follows pw1's channels, and its own
    assert model.pw1.pruned_kernels == [0, 3, 5]       # channel 3 fed only dw2's pruned kernel
    x = _features(32, seed=2)
    compact = compact_model(model)
    assert compact.widths == (7, 5, 8)
    assert compact.dw2.weight.shape == (5, 1, 3, 3) and compact.pw2.weight.shape == (8, 5, 1, 1)
    with torch.no_grad():
        assert torch.allclose(compact(x), model(x), atol=1e-5)
    masked, small = profile_model(model), profile_model(compact)
    assert (masked.macs, masked.parameters) == (small.macs, small.parameters)


def test_dscnn_pruning_search_prunes_whole_groups():
    model = fold_batchnorm(_small_dscnn())
    calls = []

    def evaluate(m):
        calls.append(1)
        return 1.0 if len(calls) <= 4 else 0.0          # baseline + 3 accepted steps, then a drop
    result = search_pruning(model, evaluate, {"error_margin": 1})
    assert sum(len(v) for k, v in result.pruned.items() if not k.startswith("dw")) == 3
    for i in (1, 2):
        owner = "conv1" if i == 1 else f"pw{i - 1}"
        assert result.pruned[f"dw{i}"] == result.pruned[owner]
    assert result.pruned["fc"] == []


# ---- bit-exact deployment ------------------------------------------------------------------------

def test_dscnn_pruned_quantized_is_bit_exact_in_python_and_c(tmp_path):
    model = fold_batchnorm(_small_dscnn())
    apply_pruning(model, {"conv1": [2], "pw1": [1, 4]})
    x = _features(40, seed=3)
    _quantize(model, x)
    engine = _assert_bit_exact(model, x, tmp_path)
    assert [layer.kind for layer in engine.layers][:3] == ["conv", "depthwise", "conv"]
    assert engine.layers[-2].avgpool and engine.layers[-2].output_shape == (8, 1, 1)
    assert "kws_round_div" in (tmp_path / "model.c").read_text()


def test_unfolded_batchnorm_is_refused_by_the_integer_engine():
    model = _quantize(_small_dscnn(), _features(8, seed=4))
    with pytest.raises(UserError, match="batch norm of conv1, dw1, .* is not folded"):
        IntegerModel.from_model(model)


def test_a_model_defined_in_a_test_runs_the_chain(tmp_path):
    assert ARCHITECTURES["TwoConvNet"] is TwoConvNet
    torch.manual_seed(0)
    model, x, y = train_toy_model(TwoConvNet())

    def evaluate(m):
        with torch.no_grad():
            return float((m(x).argmax(1) == y).double().mean())
    search_pruning(model, evaluate, {"error_margin": 5})
    result = search_quantization(model, evaluate, x, {"error_margin": 10, "schedule": [16, 8, 6]})
    assert all(q.integer_accumulator and q.bits_outputs for q in result.layers.values())
    compact = compact_model(model)
    assert compact.widths == tuple(int((layer.kernel_mask != 0).sum()) for layer in (model.conv_a, model.conv_b))
    engine = _assert_bit_exact(model, x, tmp_path)
    assert [layer.name for layer in engine.layers] == ["conv_a", "conv_b", "head"]
    assert profile_model(compact).macs == profile_model(model).macs


# ---- configuration -------------------------------------------------------------------------------

def _config(arch):
    from pathlib import Path
    import yaml
    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "config_dscnn_keywords.yml").read_text())
    cfg["arch"] = arch
    return cfg


def test_arch_args_are_validated_per_architecture():
    assert validate_config(_config({"type": "DSCNN", "args": {"channels": 16, "blocks": 2}}))["arch"]["type"] == "DSCNN"
    with pytest.raises(UserError, match=r"config key arch.args.widths is not known|arch.args.kernel"):
        validate_config(_config({"type": "TwoConvNet", "args": {"kernel": 3}}))
    with pytest.raises(UserError, match=r"arch.args of DSCNN: widths must be 3 positive integers"):
        validate_config(_config({"type": "DSCNN", "args": {"blocks": 2, "widths": [8, 8]}}))
    with pytest.raises(UserError, match=r"arch.type 'DSCNNN' is not an architecture; did you mean DSCNN\?"):
        validate_config(_config({"type": "DSCNNN"}))
    with pytest.raises(UserError, match=r"arch.args.dropout must be a number"):
        validate_config(_config({"type": "DSCNN", "args": {"dropout": 2}}))


def test_a_dscnn_quantization_solution_does_not_apply_to_lenet5():
    solution = {"layers": {"dw1": LayerQuantization(8, 8, 32, 8, 1, 1, 1).to_dict()}}
    with pytest.raises(UserError, match="dw1"):
        load_quantization(solution, KeywordLeNet5Clone())


class OddNet(KeywordModel):
    """Odd shapes for the packed kernels: odd channel counts (a zero-padded last pair), a 3x3 max
    pool (an odd window: its last position repeated), a conv without pool over an odd number of
    positions (the last one computed twice) and a padded conv with a global average pool."""

    def __init__(self, num_classes=3, widths=(5, 3, 7), input_shape=(1, 100, 13)):
        super().__init__()
        self.input_shape, self.widths = tuple(input_shape), tuple(widths)
        self.arch_args = {"num_classes": num_classes}
        a, b, c = widths
        self.conv_a = FixedPointConv2d(1, a, kernel_size=3)                 # 98x11, max pool 3 -> 32x3
        self.conv_b = FixedPointConv2d(a, b, kernel_size=(2, 1))            # 31x3: 93 positions
        self.conv_c = FixedPointConv2d(b, c, kernel_size=3, padding=(1, 2))  # 31x5, average pool
        self.head = FixedPointLinear(c, num_classes)

    def describe(self):
        return Graph(self.input_shape, (Block("conv_a", self.conv_a, relu=True, maxpool=3),
                                        Block("conv_b", self.conv_b, relu=True),
                                        Block("conv_c", self.conv_c, relu=True, avgpool=True),
                                        Block("head", self.head)))


@pytest.mark.parametrize("bits, bits_weights, bits_accumulator", [(8, 6, 32), (12, 8, 20), (8, 8, 14)])
def test_packed_kernels_with_odd_shapes_are_bit_exact(bits, bits_weights, bits_accumulator, tmp_path):
    """The packed kernels' edge cases (OddNet), with int8 and int16 inputs and accumulators that
    wrap: C == integer engine == simulation on every clip."""
    torch.manual_seed(1)
    model = OddNet().eval()
    x = _features(12, 3)
    _quantize(model, x, bits=bits, bits_weights=bits_weights, bits_accumulator=bits_accumulator)
    engine = _assert_bit_exact(model, x, tmp_path)
    # every layer went through a packed kernel (the layer comments of model.c say which)
    assert (tmp_path / "model.c").read_text().count("(packed kernel") == len(engine.layers) == 4


@pytest.mark.parametrize("bits, bits_weights, bits_accumulator, fields", [
    (8, 4, 20, 4), (8, 4, 12, 4), (12, 4, 28, 4), (8, 3, 24, 4), (12, 2, 26, 2), (8, 1, 16, 2),
    (8, 2, 27, 4), (8, 4, 29, 0)])
def test_narrow_packed_kernels_with_odd_shapes_are_bit_exact(bits, bits_weights, bits_accumulator, fields, tmp_path):
    """1- to 4-bit weights kept packed (OddNet's odd channel counts, odd pool window, odd
    position count, padding and average pool): C == integer engine == simulation, accumulators
    that wrap (12 bits) and at the kernel's limit (28 bits for 4-bit fields, 26 for 2-bit ones;
    2-bit weights with 27 take 4-bit fields, 4-bit weights with 29 the portable loops). The head
    (21 MACs) keeps the portable loops."""
    torch.manual_seed(2)
    model = OddNet().eval()
    x = _features(12, 3)
    _quantize(model, x, bits=bits, bits_weights=bits_weights, bits_accumulator=bits_accumulator)
    _assert_bit_exact(model, x, tmp_path)
    source = (tmp_path / "model.c").read_text()
    narrow = re.findall(r"^/\* (\w+): .*\(narrow packed kernel, (\d)-bit fields", source, re.M)
    assert narrow == ([(name, str(fields)) for name in ("conv_a", "conv_b", "conv_c")] if fields else [])
    assert "(packed kernel" not in source
