"""Metrics as counts over a batch, so the trainer can average them per sample, not per batch."""
import torch


def top1(output, target):
    """Number of samples whose true class scores strictly highest. A tie is not counted as a hit
    (argmax would silently pick the lowest class index, i.e. class 0)."""
    with torch.no_grad():
        true_score = output.gather(1, target[:, None])
        others = output.clone()
        others.scatter_(1, target[:, None], float("-inf"))
        return int((true_score[:, 0] > others.max(dim=1).values).sum())


def predictions(output):
    return output.argmax(dim=1)
