"""Batch-norm folding: each block's batch norm merged into the convolution before it.

Apart from the description because it changes a model (in place) rather than describing it;
quantization, pruning and deployment read only folded models.
"""
from torch import nn

from fixedpoint.graph import describe


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every block's batch norm into its conv (in place; idempotent). Quantization, pruning
    and deployment work on the folded model: one affine layer, then relu."""
    for block in describe(model).blocks:
        if block.batchnorm is not None:
            block.batchnorm.fold_into(block.layer)
    return model
