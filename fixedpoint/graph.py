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
integer engine and the C export read this description; ``fixedpoint.execution.run`` executes it,
so a model's forward pass and its description cannot disagree.

This module holds the description only (and ``output_shapes``, which probes it); what runs it,
folds its batch norms and ties its pruning live beside it (``execution``, ``folding``,
``pruning_rules``) so that each reader imports only the job it needs.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

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
    def kind(self) -> str:
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

    def __post_init__(self) -> None:
        for block in self.blocks:
            if not isinstance(block.layer, FIXED_POINT_LAYERS):
                raise TypeError(f"block {block.name} must be a fixed-point layer, got {type(block.layer).__name__}")

    @property
    def output(self) -> Block:
        """The class-output block: never pruned, no relu."""
        return self.blocks[-1]

    @property
    def names(self) -> list[str]:
        return [block.name for block in self.blocks]

    def layers(self) -> dict[str, nn.Module]:
        return {block.name: block.layer for block in self.blocks}

    def source(self, name: str) -> Block | None:
        """The block whose output ``name`` reads (None: the model input)."""
        i = self.names.index(name)
        return self.blocks[i - 1] if i else None


def describe(model: nn.Module) -> Graph:
    """The model's Graph; a model without a description cannot be compressed or deployed."""
    if not hasattr(model, "describe"):
        raise UserError(f"{type(model).__name__} does not describe its blocks (no describe()); "
                        f"see model/ for how a model declares them")
    return model.describe()


def output_shapes(model: nn.Module, graph: Graph, input_shape: Sequence[int] | None = None) -> dict[str, tuple[int, ...]]:
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
