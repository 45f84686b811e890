"""How a model describes itself, so that no other package needs to know its layers.

A model is a sequence of **blocks** (``model.describe()`` returns a :class:`Graph`): each block is
one fixed-point layer (``FixedPointConv2d`` or ``FixedPointLinear``) followed by what the data
path does after it, in this order:

    layer -> [batch norm, folded into the layer before quantization] -> [relu]
          -> [max pool k x k, floor mode] or [global average pool] -> [dropout]

Each block reads the output of the block before it (the first reads the model input of
``input_shape``); a linear layer after a convolution reads it flattened, channel-major. The last
block is the class output. A conv whose ``groups`` equals its input and output channels is
**depthwise**: its kernel k reads channel k only. Profiling, the pruning rules, compaction, the
integer engine and the C export read this description; ``run`` executes it, so a model's forward
pass and its description cannot disagree.

Global average pooling of fixed-point outputs is defined on the integer codes: the sum over the
H x W positions divided by N = H*W, rounded half away from zero (``round_div``), in the layer's
output format. The simulation, the integer engine and the C code compute exactly that.
"""
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from fixedpoint.layers import FIXED_POINT_LAYERS
from utils.errors import UserError


@dataclass(frozen=True)
class Block:
    name: str                    # the layer's attribute name (state dict prefix, key in the YAMLs)
    layer: nn.Module             # FixedPointConv2d or FixedPointLinear
    relu: bool = False
    maxpool: int = 0             # k > 0: k x k max pooling with stride k (floor mode)
    avgpool: bool = False        # global average pooling over all positions
    batchnorm: nn.Module = None  # a FoldableBatchNorm2d after the conv (identity once folded)
    dropout: nn.Module = None

    @property
    def kind(self):
        """"linear", "depthwise" (a conv whose kernel k reads channel k only) or "conv"."""
        if not isinstance(self.layer, nn.Conv2d):
            return "linear"
        groups = self.layer.groups
        if groups == 1:
            return "conv"
        if groups == self.layer.in_channels == self.layer.out_channels:
            return "depthwise"
        raise UserError(f"layer {self.name}: grouped convolutions other than depthwise are not supported")


@dataclass(frozen=True)
class Graph:
    input_shape: tuple           # (channels, frames, coefficients) of one clip
    blocks: tuple

    def __post_init__(self):
        for block in self.blocks:
            if not isinstance(block.layer, FIXED_POINT_LAYERS):
                raise TypeError(f"block {block.name} must be a fixed-point layer, got {type(block.layer).__name__}")

    @property
    def output(self):
        """The class-output block: never pruned, no relu."""
        return self.blocks[-1]

    @property
    def names(self):
        return [block.name for block in self.blocks]

    def layers(self):
        return {block.name: block.layer for block in self.blocks}

    def source(self, name):
        """The block whose output ``name`` reads (None: the model input)."""
        i = self.names.index(name)
        return self.blocks[i - 1] if i else None


def describe(model):
    """The model's Graph; a model without a description cannot be compressed or deployed."""
    if not hasattr(model, "describe"):
        raise UserError(f"{type(model).__name__} does not describe its blocks (no describe()); "
                        f"see model/ for how a model declares them")
    return model.describe()


def round_div(total, n):
    """``total / n`` rounded half away from zero for integer-valued ``total`` (a float64 or
    int64 tensor / array of exact integers): sign * floor((2|total| + n) / 2n)."""
    if isinstance(total, torch.Tensor) and total.is_floating_point():
        return torch.sign(total) * torch.floor((2 * total.abs() + n) / (2 * n))
    mag = (2 * abs(total) + n) // (2 * n)
    return mag * (1 - 2 * (total < 0))


def global_average(x, quantization):
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


def run(graph, x, start=0, codes_of=None, capture=None):
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


def fold_batchnorm(model):
    """Fold every block's batch norm into its conv (in place; idempotent). Quantization, pruning
    and deployment work on the folded model: one affine layer, then relu."""
    for block in describe(model).blocks:
        if block.batchnorm is not None:
            block.batchnorm.fold_into(block.layer)
    return model


def tied_depthwise(graph):
    """Block name -> the depthwise blocks right after it, whose kernel k reads its channel k only
    and is pruned with it (a chain of depthwise blocks follows its first producer)."""
    tied = {}
    owner = None
    for block in graph.blocks:
        if block.kind == "depthwise" and owner is not None:
            tied[owner].append(block.name)
        else:
            owner = block.name
            tied[owner] = []
    return tied


def propagate_pruning(graph):
    """Make every depthwise block's pruned kernels equal to those of the block it follows (the
    union of both): a depthwise kernel whose input channel is pruned would only output its bias,
    and a channel whose depthwise kernel is pruned feeds nothing. Call after changing masks."""
    layers = graph.layers()
    for owner, followers in tied_depthwise(graph).items():
        group = [owner] + followers
        pruned = sorted(set().union(*(layers[name].pruned_kernels for name in group)))
        if followers and pruned:
            for name in group:
                layers[name].prune_kernels(pruned)


def input_masks(graph):
    """Name -> bool tensor over each layer's input channels (conv, depthwise) or features
    (linear): True where a live kernel of the block before produces it. A linear layer after a
    conv reads each channel as a contiguous block (``flatten`` is channel-major), so a channel's
    mask is repeated over it."""
    masks = {}
    prev = None
    for block in graph.blocks:
        layer = block.layer
        n_in = layer.in_channels if block.kind == "depthwise" else layer.weight.shape[1]
        if prev is None:
            masks[block.name] = torch.ones(n_in, dtype=torch.bool)
        else:
            live = prev.kernel_mask != 0
            if n_in % live.numel():
                raise ValueError(f"{block.name} has {n_in} inputs, not a multiple of the "
                                 f"{live.numel()} kernels of the layer before it")
            masks[block.name] = live.repeat_interleave(n_in // live.numel())
        prev = layer
    return masks


def output_shapes(model, graph, input_shape=None):
    """Name -> output shape (N=1) of every block's layer for one zero input."""
    shapes = {}
    hooks = [block.layer.register_forward_hook(
        lambda module, args, out, name=block.name: shapes.__setitem__(name, tuple(out.shape)))
        for block in graph.blocks]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1,) + tuple(input_shape or graph.input_shape)))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return shapes
