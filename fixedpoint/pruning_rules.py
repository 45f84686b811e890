"""The pruning rules a model's description implies, for any search or compaction that prunes it.

A depthwise block is tied to the block it follows (its kernel k reads that block's channel k
only), so both are pruned together (``tied_depthwise``, ``propagate_pruning``); a layer's live
inputs are the live kernels of the block before it (``input_masks``). Apart from the description
because they are rules about masks, read only by what prunes or counts pruned work (profiling, the
pruning search, solutions, compaction).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from fixedpoint.graph import Graph


def tied_depthwise(graph: Graph) -> dict[str, list[str]]:
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


def propagate_pruning(graph: Graph) -> None:
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


def input_masks(graph: Graph) -> dict[str, torch.Tensor]:
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
