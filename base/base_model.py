"""Base class of all models: a torch module that can say how many parameters it trains."""
import torch.nn as nn


class BaseModel(nn.Module):
    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def __str__(self) -> str:
        return super().__str__() + f"\nParameters: {self.trainable_parameters()}"
