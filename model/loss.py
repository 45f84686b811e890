"""Losses, averaged per sample. Model outputs are log-probabilities."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch.nn.functional as F

from utils.errors import UserError

if TYPE_CHECKING:
    import torch


def nll_loss(output: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
             reduction: str = "mean") -> torch.Tensor:
    """Negative log-likelihood; with class weights the mean is over the samples' weights."""
    return F.nll_loss(output, target, weight=weight, reduction=reduction)


LOSSES = {"nll_loss": nll_loss}


def loss_by_name(name: str, what: str = "config loss") -> Callable[..., torch.Tensor]:
    """The loss a config or checkpoint names (the one lookup of every caller)."""
    if name not in LOSSES:
        raise UserError(f"{what} '{name}' is not defined in model/loss.py (known: {', '.join(LOSSES)})")
    return LOSSES[name]


def class_weights(setting: Sequence[float] | None) -> torch.Tensor | None:
    """Loss weights per class: None (all 1) or the validated ``trainer.class_weights``, one per
    class (configuration/schema.py checks the list and its length)."""
    import torch
    return None if setting is None else torch.tensor([float(v) for v in setting])
