"""Metrics of a keyword spotter, all computed from one confusion matrix.

A split that is 80% background lets top-1 stay high while a keyword is missed three times in
four, so decisions (model selection, early stopping, the compression searches) use a metric the
majority class cannot game: balanced accuracy, the mean recall over the classes present. Top-1 is
kept beside it (the lab reports it), and the false-alarm rate says how often background fires.

Every metric takes the confusion matrix ``cm`` (rows true class, columns predicted class), so
batches and distributed ranks are combined by adding matrices, and every number printed is a
function of the matrix printed. Predictions are the argmax of the scores with ties going to the
lowest class index: the rule of ``torch.argmax`` and of the deployed C model's ``kws_infer``.
"""
from collections.abc import Callable, Sequence

import torch

from utils.errors import UserError

BACKGROUND = 0  # class 0: any other word or background noise
SILENCE = "silence"  # the name of the 12-class task's silence class (as data_loader.corpus names it)


def predictions(output: torch.Tensor) -> torch.Tensor:
    """Predicted class per row of scores: argmax, ties to the lowest index (as the C model)."""
    return output.argmax(dim=1)


def confusion_matrix(output: torch.Tensor, target: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """(num_classes x num_classes) int64 counts of (true, predicted) for a batch of scores."""
    num_classes = num_classes or output.shape[1]
    with torch.no_grad():
        pred = predictions(output).to(target.device)
        flat = target.long() * num_classes + pred
        return torch.bincount(flat, minlength=num_classes ** 2).view(num_classes, num_classes).cpu()


def ties(output: torch.Tensor) -> int:
    """Number of samples whose top score is shared by two or more classes (coarse fixed-point
    logits tie often; the tie goes to the lowest class, so they are worth reporting)."""
    with torch.no_grad():
        return int(((output == output.max(dim=1, keepdim=True).values).sum(dim=1) > 1).sum())


def _cm(cm):
    return torch.as_tensor(cm, dtype=torch.float64)


def top1(cm: torch.Tensor) -> float:
    """Fraction of samples on the diagonal."""
    cm = _cm(cm)
    return float(cm.diagonal().sum() / cm.sum().clamp(min=1))


def recalls(cm: torch.Tensor) -> torch.Tensor:
    """Recall per class (NaN for a class with no samples)."""
    cm = _cm(cm)
    support = cm.sum(dim=1)
    return torch.where(support > 0, cm.diagonal() / support.clamp(min=1), torch.full_like(support, float("nan")))


def precisions(cm: torch.Tensor) -> torch.Tensor:
    """Precision per class (0 for a class never predicted)."""
    cm = _cm(cm)
    predicted = cm.sum(dim=0)
    return torch.where(predicted > 0, cm.diagonal() / predicted.clamp(min=1), torch.zeros_like(predicted))


def balanced_accuracy(cm: torch.Tensor) -> float:
    """Mean recall over the classes that have samples."""
    r = recalls(cm)
    present = ~torch.isnan(r)
    return float(r[present].mean()) if bool(present.any()) else 0.0


def silence_class(class_names: Sequence[str] | None) -> int | None:
    """Index of the silence class in ``class_names`` (the 12-class task's last), None without one."""
    names = list(class_names or ())
    return names.index(SILENCE) if SILENCE in names else None


def false_alarm_counts(cm: torch.Tensor, silence: int | None = None) -> tuple[int, int]:
    """(false alarms, non-keyword clips): clips of class 0 (and of the ``silence`` class, when
    there is one) classified as a keyword. Without a silence class: background clips classified
    as anything but class 0. With one, unknown <-> silence is no false alarm (nothing fires), but
    a silence clip taken for a keyword is."""
    cm = torch.as_tensor(cm, dtype=torch.int64)
    quiet = [BACKGROUND] + ([silence] if silence is not None else [])
    clips = int(cm[quiet].sum())
    return clips - int(cm[quiet][:, quiet].sum()), clips


def false_alarm_rate(cm: torch.Tensor, silence: int | None = None) -> float:
    """False alarms per non-keyword clip (see false_alarm_counts); 0 when there is no such clip."""
    alarms, clips = false_alarm_counts(cm, silence)
    return alarms / clips if clips else 0.0


def keyword_recalls(cm: torch.Tensor) -> list[float]:
    """Recall of every keyword class (1..n-1)."""
    return [float(r) for r in recalls(cm)[1:]]


def min_keyword_recall(cm: torch.Tensor) -> float:
    """The worst keyword's recall: the number a keyword spotter is judged by."""
    r = [v for v in keyword_recalls(cm) if v == v]
    return min(r) if r else 0.0


METRICS = {"top1": top1, "balanced_accuracy": balanced_accuracy, "false_alarm_rate": false_alarm_rate,
           "min_keyword_recall": min_keyword_recall}


def all_metrics(cm: torch.Tensor, silence: int | None = None) -> dict[str, float]:
    """Every metric of ``cm`` by name; ``silence``: the silence class's index (false alarms)."""
    return {name: (fn(cm, silence) if fn is false_alarm_rate else fn(cm)) for name, fn in METRICS.items()}


def metric_by_name(name: str, what: str = "metric") -> Callable[..., float]:
    if name not in METRICS:
        raise UserError(f"{what} '{name}' is not known; choose one of {', '.join(METRICS)}")
    return METRICS[name]
