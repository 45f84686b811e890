"""Physically remove pruned kernels, so a deployed network neither stores nor computes them.

Training and the searches keep pruned kernels as masked rows (the state dict keeps its shape);
for deployment a pruned kernel is dropped together with the next layer's inputs that only it
produced (a conv's input channel, a linear layer's block of flattened features or input column;
a depthwise conv's kernels follow the channels of the block before it). The class outputs (the
model's last block) are never removed: pruned ones stay masked. The layers, their order and the
architecture's ``widths`` come from the model's description; nothing here names a layer.
"""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import torch

from fixedpoint.graph import describe
from fixedpoint.pruning_rules import input_masks
from utils.errors import UserError

if TYPE_CHECKING:
    from model.registry import KeywordModel


def compact_model(model: KeywordModel) -> KeywordModel:

    """A model of the same architecture with the pruned kernels of ``model`` removed; its widths
    are the live kernel counts, quantization formats carried over, same training mode. Its outputs
    equal the masked model's (exactly in the eval-mode fixed-point simulation)."""
    graph = describe(model)
    names, layers = graph.names, graph.layers()
    keep_in = input_masks(graph)
    keep_out = {name: layers[name].kernel_mask != 0 for name in names[:-1]}
    keep_out[names[-1]] = torch.ones(layers[names[-1]].weight.shape[0], dtype=torch.bool)
    for name in names[:-1]:
        if not keep_out[name].any():
            raise UserError(f"every kernel of {name} is pruned, so the network has no signal path; "
                            f"keep at least one kernel of {name} in pruning.yml")
    widths = [int(keep_out[block.name].sum()) for block in graph.blocks[:-1] if block.kind != "depthwise"]
    compact = type(model)(**model.compact_args(widths), input_shape=graph.input_shape)
    new_blocks = describe(compact).blocks
    with torch.no_grad():
        for block, new in zip(graph.blocks, new_blocks):
            old, out = block.layer, keep_out[block.name]
            weight = old.weight[out]
            new.layer.weight.copy_(weight if block.kind == "depthwise" else weight[:, keep_in[block.name]])
            new.layer.bias.copy_(old.bias[out])
            new.layer.quantization = replace(old.quantization)
            if block.batchnorm is not None:
                for key, value in block.batchnorm.state_dict().items():
                    target = new.batchnorm.state_dict()[key]
                    target.copy_(value[out] if value.dim() == 1 else value)
    new_blocks[-1].layer.prune_kernels(graph.output.layer.pruned_kernels)
    return compact.train(model.training)
