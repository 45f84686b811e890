"""The keyword-spotting network of the 5LIL0 lab, built from fixed-point-capable layers."""
import torch.nn as nn
import torch.nn.functional as F

from base import BaseModel
from optimization.layers import FixedPointConv2d, FixedPointLinear

INPUT_SHAPE = (1, 100, 13)  # channels x MFCC frames x coefficients


class KeywordLeNet5Clone(BaseModel):
    """LeNet5-style CNN: conv1 1->8 k3, pool 2, conv2 8->8 k3, pool 2, fc3 184->64, dropout,
    fc4 64->num_classes. 12,764 parameters and 170,864 MACs per 1x100x13 MFCC clip."""

    def __init__(self, num_classes=4, dropout=0.5, widths=(8, 8, 64)):
        """``widths`` (conv1 filters, conv2 filters, fc3 neurons) differ from the default only for
        a compact model exported with pruned kernels physically removed."""
        super().__init__()
        c1, c2, f3 = (int(w) for w in widths)
        self.widths = (c1, c2, f3)
        self.conv1 = FixedPointConv2d(1, c1, kernel_size=3)
        self.conv2 = FixedPointConv2d(c1, c2, kernel_size=3)
        self.fc3 = FixedPointLinear(c2 * 23 * 1, f3)
        self.fc4 = FixedPointLinear(f3, num_classes)
        self.dropout = nn.Dropout(dropout)

    def logits(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.flatten(1)
        x = self.dropout(F.relu(self.fc3(x)))
        return self.fc4(x)

    def forward(self, x):
        return F.log_softmax(self.logits(x), dim=1)
