"""Losses, averaged per sample. Model outputs are log-probabilities."""
import torch.nn.functional as F

from utils.errors import UserError


def nll_loss(output, target, weight=None, reduction="mean"):
    """Negative log-likelihood; with class weights the mean is over the samples' weights."""
    return F.nll_loss(output, target, weight=weight, reduction=reduction)


LOSSES = {"nll_loss": nll_loss}


def loss_by_name(name, what="config loss"):
    """The loss a config or checkpoint names (the one lookup of every caller)."""
    if name not in LOSSES:
        raise UserError(f"{what} '{name}' is not defined in model/loss.py (known: {', '.join(LOSSES)})")
    return LOSSES[name]


def class_weights(setting, labels, num_classes):
    """Loss weights per class: None (all 1), ``balanced`` (inverse class frequency of the training
    labels, mean 1, so rare keywords count as much as the dominant class 0), or an explicit list."""
    import torch
    if setting is None:
        return None
    if setting == "balanced":
        counts = torch.bincount(labels, minlength=num_classes).double().clamp(min=1)
        w = counts.sum() / (num_classes * counts)
        return (w / w.mean()).float()
    if isinstance(setting, (list, tuple)) and len(setting) == num_classes:
        return torch.tensor([float(v) for v in setting])
    raise UserError(f"trainer.class_weights must be null, 'balanced' or a list of {num_classes} numbers, "
                    f"not {setting!r}")
