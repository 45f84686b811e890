"""The executor of a model's description (``fixedpoint/graph.py``): ``run`` is the forward pass of
every registered model, so a model's output and its description cannot disagree.

It lives apart from the description because only the models' forward pass and the integer engine's
rounding (``round_div``) need it; the stages that read a model's blocks do not.

Global average pooling of fixed-point outputs is defined on the integer codes: the sum over the
H x W positions divided by N = H*W, rounded half away from zero (``round_div``), in the layer's
output format. The simulation, the integer engine and the C code compute exactly that.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from fixedpoint.fixed_point import Format
    from fixedpoint.graph import Graph
    from fixedpoint.layers import LayerQuantization

_Codes = TypeVar("_Codes", torch.Tensor, np.ndarray)


def round_div(total: _Codes, n: int) -> _Codes:
    """``total / n`` rounded half away from zero for integer-valued ``total`` (a float64 or
    int64 tensor / array of exact integers): sign * floor((2|total| + n) / 2n)."""
    if isinstance(total, torch.Tensor) and total.is_floating_point():
        return torch.sign(total) * torch.floor((2 * total.abs() + n) / (2 * n))
    mag = (2 * abs(total) + n) // (2 * n)
    return mag * (1 - 2 * (total < 0))


def global_average(x: torch.Tensor, quantization: LayerQuantization) -> torch.Tensor:
    """Global average pooling (N, C, H, W) -> (N, C, 1, 1); in fixed point on the output codes."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    if not quantization.bits_outputs:
        return mean
    scale = 2.0 ** quantization.outputs.fl
    codes = torch.round(x.detach().double() * scale).sum(dim=(2, 3), keepdim=True)
    exact = (round_div(codes, x.shape[2] * x.shape[3]) / scale).to(x.dtype)
    return mean + (exact - mean).detach()  # straight-through in training


def _observed(layer):
    """A layer with hooks: they see its whole output, so it runs as one call."""
    return bool(layer._forward_hooks or layer._forward_pre_hooks)


def run(graph: Graph, x: torch.Tensor, start: int = 0, codes_of: Format | None = None,
        capture: Callable[[int, torch.Tensor, Format | None], object] | None = None) -> torch.Tensor:
    """The forward pass the description states (logits of the class-output block).

    Two shortcuts give the same values with less work: a layer's output quantization is applied
    after its relu and max pooling (rounding to codes is monotonic and maps 0 to 0, so it commutes
    with both) on a tensor up to k*k times smaller, and a layer whose input already holds codes of
    its input format (the previous block's output format, no dropout scaling in between) does not
    quantize it again.

    Repeated evaluations may skip blocks whose result they already have: ``start`` runs from that
    block with ``x`` its input (``codes_of``: the format whose codes ``x`` holds, or None), and
    ``capture(i, x, codes_of)`` is called with the input of every block run."""
    for i, block in enumerate(graph.blocks[start:], start):
        if capture is not None:
            capture(i, x, codes_of)
        if block.kind == "linear" and x.dim() > 2:
            x = x.flatten(1)
        layer = block.layer
        q = layer.quantization
        fast = q.enabled and not _observed(layer)
        defer = (fast and bool(q.bits_outputs) and not block.avgpool
                 and (block.batchnorm is None or bool(block.batchnorm.folded)))
        if fast:
            x = layer(x, quantize_inputs=not (q.bits_inputs and codes_of == q.inputs), quantize_outputs=not defer)
        else:
            x = layer(x)
        if block.batchnorm is not None:
            x = block.batchnorm(x)
        if block.maxpool:  # before the relu, which commutes with it: k*k times fewer values to clip
            x = F.max_pool2d(x, block.maxpool)
        if block.relu:
            x = F.relu(x)
        if defer:
            x = layer.quantize_outputs(x)
        codes_of = q.outputs if q.enabled and q.bits_outputs and not block.avgpool and (
            block.batchnorm is None or bool(block.batchnorm.folded)) else None
        if block.avgpool:
            x = global_average(x, block.layer.quantization)
        if block.dropout is not None:
            x = block.dropout(x)
            if block.dropout.training and block.dropout.p > 0:
                codes_of = None  # scaled by 1 / (1 - p): no longer codes
    return x
