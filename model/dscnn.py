"""DS-CNN: the depthwise-separable CNN of Zhang et al. 2017 ("Hello Edge"), the reference model
of the MLPerf Tiny keyword-spotting benchmark, sized for 1 x 100 x 13 MFCCs and 4 classes.

conv1 1->C k(10,4) stride 2 (padding (5,1)) + BN + relu, then ``blocks`` x [depthwise 3x3 + BN +
relu, pointwise 1x1 C->C + BN + relu], global average pooling, (dropout), fc C->classes. The
default C = 48, 4 blocks: 13,492 parameters (batch norm folded into the convs, as deployed) and
3,936,576 MACs per clip (conv outputs 51 x 6). Batch norm trains as usual and is folded into the
convolutions (``fixedpoint.folding.fold_batchnorm``) before quantization, pruning and export.

``widths``: the kernel counts of conv1 and each pointwise conv (the depthwise convs have as many
as the layer before them); they differ from ``channels`` only in a compact model.
"""
from collections.abc import Mapping, Sequence
from typing import Any

import torch.nn as nn

from fixedpoint.graph import Block, Graph
from fixedpoint.layers import FixedPointConv2d, FixedPointLinear, FoldableBatchNorm2d
from model.registry import KeywordModel, register
from utils.values import is_int
from utils.checkpoint_checks import MAX_WIDTH

MAX_BLOCKS = 64


@register
class DSCNN(KeywordModel):
    def __init__(self, num_classes: int = 4, channels: int = 48, blocks: int = 4, dropout: float = 0.2,
                 widths: Sequence[int] | None = None, input_shape: Sequence[int] = (1, 100, 13)) -> None:
        super().__init__()
        self.check_args({"channels": channels, "blocks": blocks, "widths": widths})
        widths = [int(channels)] * (int(blocks) + 1) if widths is None else [int(w) for w in widths]
        self.widths = tuple(widths)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.arch_args = {"num_classes": num_classes, "channels": channels, "blocks": blocks, "dropout": dropout}
        self.n_blocks = int(blocks)
        self.conv1 = FixedPointConv2d(self.input_shape[0], widths[0], kernel_size=(10, 4), stride=2, padding=(5, 1))
        self.conv1_bn = FoldableBatchNorm2d(widths[0])
        for i in range(1, self.n_blocks + 1):
            c_in, c_out = widths[i - 1], widths[i]
            setattr(self, f"dw{i}", FixedPointConv2d(c_in, c_in, kernel_size=3, padding=1, groups=c_in))
            setattr(self, f"dw{i}_bn", FoldableBatchNorm2d(c_in))
            setattr(self, f"pw{i}", FixedPointConv2d(c_in, c_out, kernel_size=1))
            setattr(self, f"pw{i}_bn", FoldableBatchNorm2d(c_out))
        self.dropout = nn.Dropout(dropout)
        self.fc = FixedPointLinear(widths[-1], num_classes)

    @classmethod
    def check_args(cls, args: Mapping[str, Any]) -> None:
        for key, high in (("channels", MAX_WIDTH), ("blocks", MAX_BLOCKS)):
            value = args.get(key, 1)
            if not is_int(value) or not 1 <= value <= high:
                raise ValueError(f"{key} must be an integer in 1..{high}, found {value!r}")
        widths = args.get("widths")
        n = args.get("blocks", 4) + 1
        if widths is not None and (not isinstance(widths, (list, tuple)) or len(widths) != n or not all(
                is_int(w) and w >= 1 for w in widths)):
            raise ValueError(f"widths must be {n} positive integers (conv1 and each pointwise conv), "
                             f"found {widths!r}")

    def describe(self) -> Graph:
        blocks = [Block("conv1", self.conv1, relu=True, batchnorm=self.conv1_bn)]
        for i in range(1, self.n_blocks + 1):
            blocks.append(Block(f"dw{i}", getattr(self, f"dw{i}"), relu=True, batchnorm=getattr(self, f"dw{i}_bn")))
            blocks.append(Block(f"pw{i}", getattr(self, f"pw{i}"), relu=True, batchnorm=getattr(self, f"pw{i}_bn"),
                                avgpool=i == self.n_blocks, dropout=self.dropout if i == self.n_blocks else None))
        blocks.append(Block("fc", self.fc))
        return Graph(self.input_shape, tuple(blocks))
