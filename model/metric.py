"""Metrics as counts over a batch, so the trainer can average them per sample, not per batch."""
import torch


def top1(output, target):
    """Number of samples whose true class scores highest. When k classes tie for the top score
    (common with coarse fixed-point logits) and the true class is among them, the sample counts
    1/k: the expected hit of a fair tie-break. Counting every tie as class 0, as argmax does,
    would favour the dominant class."""
    with torch.no_grad():
        tied = output == output.max(dim=1, keepdim=True).values
        hit = tied.gather(1, target[:, None])[:, 0]
        return float((hit / tied.sum(dim=1)).sum())


def ties(output):
    """Number of samples whose top score is shared by two or more classes."""
    with torch.no_grad():
        return int(((output == output.max(dim=1, keepdim=True).values).sum(dim=1) > 1).sum())
