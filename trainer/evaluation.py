"""Evaluation over an in-memory split: the loss averaged per sample, the confusion matrix and
every metric computed from it (model.metric), plus predictions."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import torch

from model.metric import all_metrics, confusion_matrix, false_alarm_counts, predictions, ties

if TYPE_CHECKING:
    from optimization.evaluations import PrefixReuse


def evaluate(model: torch.nn.Module | PrefixReuse, loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
             criterion: Callable[..., torch.Tensor], device: str | torch.device = "cpu",
             metrics: Sequence[Callable[..., float]] = (), num_classes: int | None = None,
             silence: int | None = None) -> dict[str, float | int | torch.Tensor]:

    """Returns {'loss', 'top1', 'balanced_accuracy', 'false_alarm_rate', 'min_keyword_recall',
    'confusion', 'n', 'loss_weight', 'ties', 'predictions', 'targets', 'false_alarms',
    'non_keyword_clips'} (``silence``: the silence class's index, for the false alarms). The loss is the sum over
    every sample divided by the number of samples (not a mean of batch means); with a
    class-weighted criterion it is sum(w * nll) / sum(w) over the whole split, whatever the
    batching; 'loss_weight' is that denominator, for summing over distributed ranks. ``metrics``
    is accepted for pytorch-template compatibility: every metric is always computed."""
    model.eval()
    loss_sum, weight_sum, n, tied = 0.0, 0.0, 0, 0
    weight = getattr(criterion, "keywords", {}).get("weight")
    cm = None
    preds, targets = [], []
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            out = model(x)
            loss_sum += float(criterion(out, y, reduction="sum"))
            weight_sum += float(weight.to(y.device)[y].sum()) if weight is not None else len(y)
            batch_cm = confusion_matrix(out, y, num_classes or out.shape[1])
            cm = batch_cm if cm is None else cm + batch_cm
            tied += ties(out)
            n += len(y)
            preds.append(predictions(out).cpu())
            targets.append(y.cpu())
    if cm is None:
        k = num_classes or 1
        cm = torch.zeros(k, k, dtype=torch.int64)
    result = {"loss": loss_sum / max(weight_sum, 1e-12), "n": n, "loss_weight": weight_sum, "ties": tied,
              "confusion": cm}
    result.update(all_metrics(cm, silence))
    result["false_alarms"], result["non_keyword_clips"] = false_alarm_counts(cm, silence)
    result["predictions"] = torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)
    result["targets"] = torch.cat(targets) if targets else torch.zeros(0, dtype=torch.long)
    return result
