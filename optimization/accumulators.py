"""Accumulator widths of a quantization solution.

An integer layer sums its products in a two's-complement register that wraps on overflow. The
lab's rule (data bits + weight bits - 1 + log2 of the kernel size) can be too narrow for real
inputs and wastes bits on others, so with ``bits_accumulator: auto`` each register gets the
smallest width no validation clip overflows, never below the lab's rule; the worst case any input
could reach is reported beside it.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

import torch

from configuration.schema import MAX_ACCUMULATOR
from fixedpoint.fixed_point import code_limits
from fixedpoint.layers import fixed_point_layers
from optimization.solutions import apply_quantization

if TYPE_CHECKING:
    from fixedpoint.layers import FixedPointConv2d, FixedPointLinear, LayerQuantization
    from model.registry import KeywordModel


def _register_bits(low, high):
    """The smallest two's-complement width that holds every integer in [low, high]."""
    bits = 2
    while low < code_limits(bits)[0] or high > code_limits(bits)[1]:
        bits += 1
    return bits


def lab_accumulator_rule(layer: FixedPointConv2d | FixedPointLinear, q: LayerQuantization) -> int:
    """The lab's width: data bits + weight bits - 1 + floor(log2(kernel size)), the kernel size
    counting the products of one output plus its bias."""
    kernel = layer.weight[0].numel() + (1 if layer.bias is not None else 0)
    return q.bits_inputs + q.bits_weights - 1 + int(math.floor(math.log2(kernel)))


def _bias_codes(layer, q):
    """The masked bias at the accumulator scale, not saturated (the width is what is measured)."""
    if layer.bias is None:
        return torch.zeros(layer.out_channels_or_features, dtype=torch.float64)
    return replace(q, bits_accumulator=0).bias_codes(layer.bias.detach().double() * layer.kernel_mask.double())


def worst_case_accumulator(layer: FixedPointConv2d | FixedPointLinear, q: LayerQuantization) -> int:
    """Width no input can overflow: for every output, the sum of |weight codes| times the largest
    input code magnitude 2^(bits_inputs-1), plus |bias code|; the widest output decides."""
    with torch.no_grad():
        w = layer.weight.detach().double() * layer.kernel_mask.double().view((-1,) + (1,) * (layer.weight.dim() - 1))
        codes = q.weights.codes(w)
        bound = codes.abs().flatten(1).sum(1) * 2.0 ** (q.bits_inputs - 1) + _bias_codes(layer, q).abs()
    top = int(bound.max())
    return _register_bits(-top, top)


def size_accumulators(model: KeywordModel, solution: Mapping[str, LayerQuantization], inputs: torch.Tensor,
                      batch_size: int = 1024) -> tuple[dict[str, LayerQuantization], dict[str, dict[str, int]]]:
    """Each integer accumulator gets the smallest width that no clip of ``inputs`` overflows, but
    at least the lab's rule (capped at MAX_ACCUMULATOR). Returns (solution with those widths,
    layer -> {bits, lab_rule, validation, worst_case, max_abs}); the model carries the solution.
    The accumulators are measured with the same formats in registers too wide to wrap, so the
    outputs on ``inputs`` are unchanged by the sizing."""
    layers = fixed_point_layers(model)
    wide = {name: replace(q, bits_accumulator=MAX_ACCUMULATOR) if q.integer_accumulator else q
            for name, q in solution.items()}
    apply_quantization(model, wide)
    extremes = {name: [0.0, 0.0] for name, q in wide.items() if q.integer_accumulator}

    def probe(name: str) -> Callable[[torch.Tensor], None]:
        def record(acc: torch.Tensor) -> None:

            extremes[name][0] = min(extremes[name][0], float(acc.min()))
            extremes[name][1] = max(extremes[name][1], float(acc.max()))
        return record

    training = model.training
    model.eval()
    try:
        for name in extremes:
            layers[name].accumulator_probe = probe(name)
        with torch.no_grad():
            for i in range(0, len(inputs), batch_size):
                model(inputs[i:i + batch_size])
    finally:
        for layer in layers.values():
            layer.accumulator_probe = None
        model.train(training)
    sized, info = dict(solution), {}
    for name, (low, high) in extremes.items():
        layer, q = layers[name], wide[name]
        bias = _bias_codes(layer, q)
        low, high = min(low, float(bias.min())), max(high, float(bias.max()))
        measured = _register_bits(int(low), int(high))
        rule = lab_accumulator_rule(layer, q)
        bits = min(max(rule, measured), MAX_ACCUMULATOR)
        sized[name] = replace(q, bits_accumulator=bits)
        info[name] = {"bits": bits, "lab_rule": rule, "validation": measured,
                      "worst_case": worst_case_accumulator(layer, q), "max_abs": int(max(-low, high))}
    apply_quantization(model, sized)
    return sized, info
