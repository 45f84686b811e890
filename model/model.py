"""The keyword-spotting network of the 5LIL0 lab, built from fixed-point-capable layers."""
from collections.abc import Mapping, Sequence
from typing import Any

import torch.nn as nn

from fixedpoint.graph import Block, Graph
from fixedpoint.layers import FixedPointConv2d, FixedPointLinear
from model.registry import KeywordModel, register
from utils.values import is_int

INPUT_SHAPE = (1, 100, 13)  # channels x MFCC frames x coefficients (the default features)


@register
class KeywordLeNet5Clone(KeywordModel):
    """LeNet5-style CNN: conv1 1->8 k3, pool 2, conv2 8->8 k3, pool 2, fc3 184->64, dropout,
    fc4 64->num_classes. 12,764 parameters and 170,864 MACs per 1x100x13 MFCC clip (fc3's inputs
    follow the input shape: 8 x 23 x 3 with 20 MFCCs)."""

    def __init__(self, num_classes: int = 4, dropout: float = 0.5, widths: Sequence[int] = (8, 8, 64),
                 input_shape: Sequence[int] = INPUT_SHAPE) -> None:
        """``widths`` (conv1 filters, conv2 filters, fc3 neurons) differ from the default only for
        a compact model exported with pruned kernels physically removed."""
        super().__init__()
        self.check_args({"widths": widths})
        c1, c2, f3 = (int(w) for w in widths)
        self.widths = (c1, c2, f3)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.arch_args = {"num_classes": num_classes, "dropout": dropout}
        channels, frames, coefficients = self.input_shape
        after = [((n - 2) // 2 - 2) // 2 for n in (frames, coefficients)]
        if min(after) < 1:
            raise ValueError(f"input {self.input_shape} is too small for two 3x3 convs and 2x2 pools")
        self.conv1 = FixedPointConv2d(channels, c1, kernel_size=3)
        self.conv2 = FixedPointConv2d(c1, c2, kernel_size=3)
        self.fc3 = FixedPointLinear(c2 * after[0] * after[1], f3)
        self.fc4 = FixedPointLinear(f3, num_classes)
        self.dropout = nn.Dropout(dropout)

    @classmethod
    def check_args(cls, args: Mapping[str, Any]) -> None:
        widths = args.get("widths", (8, 8, 64))
        if (not isinstance(widths, (list, tuple)) or len(widths) != 3
                or not all(is_int(w) and w >= 1 for w in widths)):
            raise ValueError(f"widths must be three positive integers (conv1, conv2, fc3), found {widths!r}")

    def describe(self) -> Graph:
        return Graph(self.input_shape, (
            Block("conv1", self.conv1, relu=True, maxpool=2),
            Block("conv2", self.conv2, relu=True, maxpool=2),
            Block("fc3", self.fc3, relu=True, dropout=self.dropout),
            Block("fc4", self.fc4),
        ))
