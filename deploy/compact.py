"""Physically remove pruned kernels, so a deployed network neither stores nor computes them.

Training and the searches keep pruned kernels as masked rows (the state dict keeps its shape);
for deployment a pruned conv filter is dropped together with the next layer's input channel (or,
for the last conv, its block of fc features), and a pruned neuron with the next layer's input
column. The class outputs (the last layer) are never removed: pruned ones stay masked.
"""
from dataclasses import replace

import torch

from model.model import KeywordLeNet5Clone
from optimization.layers import fixed_point_layers
from optimization.profiling import input_masks
from utils.errors import UserError


def compact_model(model):
    """A KeywordLeNet5Clone with the pruned kernels of ``model`` removed; its widths are the live
    kernel counts, quantization formats carried over, same training mode. Its outputs equal the
    masked model's (exactly in the eval-mode fixed-point simulation)."""
    if not isinstance(model, KeywordLeNet5Clone):
        raise UserError(f"compact_model needs a KeywordLeNet5Clone, got {type(model).__name__}")
    layers = fixed_point_layers(model)
    names = list(layers)
    keep_in = input_masks(model)
    keep_out = {name: layers[name].kernel_mask != 0 for name in names[:-1]}
    keep_out[names[-1]] = torch.ones(layers[names[-1]].weight.shape[0], dtype=torch.bool)
    for name in names[:-1]:
        if not keep_out[name].any():
            raise UserError(f"every kernel of {name} is pruned, so the network has no signal path; "
                            f"keep at least one kernel of {name} in pruning.yml")
    widths = tuple(int(keep_out[name].sum()) for name in names[:-1])
    compact = KeywordLeNet5Clone(num_classes=layers[names[-1]].weight.shape[0],
                                 dropout=model.dropout.p, widths=widths)
    new_layers = fixed_point_layers(compact)
    with torch.no_grad():
        for name in names:
            old, new = layers[name], new_layers[name]
            new.weight.copy_(old.weight[keep_out[name]][:, keep_in[name]])
            new.bias.copy_(old.bias[keep_out[name]])
            new.quantization = replace(old.quantization)
    new_layers[names[-1]].prune_kernels(layers[names[-1]].pruned_kernels)
    return compact.train(model.training)
