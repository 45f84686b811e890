"""Range analysis: the value ranges of every fixed-point layer's inputs, weights and outputs.

Dynamic fixed point picks each group's integer length from the largest magnitude it must hold
(Gysel et al. 2016), so the ranges are measured once on the float network over the validation
inputs, with the current pruning masks applied (pruned weights do not widen a range).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import torch

from fixedpoint.fixed_point import Format
from fixedpoint.layers import LayerQuantization, fixed_point_layers
from utils.errors import UserError

if TYPE_CHECKING:
    from model.registry import KeywordModel

GROUPS = ("inputs", "weights", "outputs")
COLUMNS = [f"{group}_{stat}" for group in GROUPS for stat in ("min", "max", "absmax")]


def collect_ranges(model: KeywordModel, inputs: torch.Tensor, batch_size: int = 1024) -> dict[str, dict[str, float]]:
    """Min, max and absmax of each fixed-point layer's inputs, masked weights and outputs over all
    ``inputs``: ``{layer name: {column: value}}`` in forward order, columns ``COLUMNS`` in order
    (a plain dict: a table library's import costs a script's start-up more than a table of a few
    rows is worth; docs/benchmarks.md, "Start-up").

    Quantization is switched off while measuring (the ranges are those of the float network) and
    the layers' formats and the model's train/eval mode are restored afterwards, also on errors.
    """
    if not isinstance(inputs, torch.Tensor) or inputs.dim() == 0 or len(inputs) == 0:
        raise UserError("range analysis needs a non-empty tensor of validation inputs; "
                        "check the validation split")
    layers = fixed_point_layers(model)
    lo = {name: {g: float("inf") for g in GROUPS} for name in layers}
    hi = {name: {g: float("-inf") for g in GROUPS} for name in layers}

    def observe(name: str, group: str, tensor: torch.Tensor) -> None:
        lo[name][group] = min(lo[name][group], float(tensor.min()))
        hi[name][group] = max(hi[name][group], float(tensor.max()))

    def hook(name: str) -> Callable[[torch.nn.Module, tuple, torch.Tensor], None]:
        def record(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
            observe(name, "inputs", args[0])
            observe(name, "outputs", output)
        return record

    saved = {name: layer.quantization for name, layer in layers.items()}
    was_training = model.training
    handles = []
    try:
        for name, layer in layers.items():
            layer.quantization = LayerQuantization()
            handles.append(layer.register_forward_hook(hook(name)))
            mask_shape = (-1,) + (1,) * (layer.weight.dim() - 1)
            with torch.no_grad():
                observe(name, "weights", layer.weight * layer.kernel_mask.view(mask_shape))
        model.eval()
        with torch.no_grad():
            for start in range(0, len(inputs), batch_size):
                model(inputs[start:start + batch_size])
    finally:
        for handle in handles:
            handle.remove()
        for name, layer in layers.items():
            layer.quantization = saved[name]
        model.train(was_training)

    rows = {}
    for name in layers:
        row = {}
        for group in GROUPS:
            row[f"{group}_min"] = lo[name][group]
            row[f"{group}_max"] = hi[name][group]
            row[f"{group}_absmax"] = max(abs(lo[name][group]), abs(hi[name][group]))
        rows[name] = row
    return rows


def range_formats(ranges: Mapping[str, Mapping[str, float]], name: str, weight_bits: int,
                  activation_bits: int) -> tuple[Format, Format, Format]:

    """(inputs, weights, outputs) ``Format`` of layer ``name`` at the given bitwidths, each
    integer length covering that group's measured range (0 bits stays float)."""
    row = ranges[name]
    return (Format.covering(activation_bits, row["inputs_absmax"]),
            Format.covering(weight_bits, row["weights_absmax"]),
            Format.covering(activation_bits, row["outputs_absmax"]))
