"""Scores of the compression searches: an evaluation returns the decision metric alone or a
dict of metrics (top1, balanced_accuracy, ...); reports print the lab's top-1 first and the
decision metric beside it."""
from __future__ import annotations

from utils.errors import UserError

Scores = float | dict[str, float]   # what an evaluation returns: the decision metric, or every metric by name

TOLERANCE = 1e-9   # accuracies are ratios of counts; absorb float error at the floor
RULE = "-" * 45    # the lab's report frame


def passes(value: float, floor: float) -> bool:
    """True when ``value`` is at or above the search's ``floor`` (within float error)."""
    return value >= floor - TOLERANCE


def decision_value(scores: Scores, metric: str) -> float:
    """The decision metric of an evaluation that returned a number or a dict of metrics."""
    if isinstance(scores, dict):
        if metric not in scores:
            raise UserError(f"the evaluation reports {sorted(scores)}, not the search metric '{metric}'")
        return float(scores[metric])
    return float(scores)


def format_scores(scores: Scores, metric: str, label: bool = True) -> str:
    """``top1: X`` (the lab's words) then the decision metric when it is another one; a bare
    number is the decision metric. ``label=False`` puts the first name after its number (the
    lab's ``Baseline float32: X`` and ``Accuracy: X`` lines, whose readers take the number right
    after the colon: ``Baseline float32: 0.80395 (top1) | balanced_accuracy: 0.25000``)."""
    if not isinstance(scores, dict):
        return f"{metric}: {scores:.5f}" if label else f"{scores:.5f} ({metric})"
    names = ["top1", metric] if metric != "top1" and "top1" in scores else [metric]
    parts = [f"{name}: {scores[name]:.5f}" for name in names]
    if not label:
        parts[0] = f"{scores[names[0]]:.5f} ({names[0]})"
    return " | ".join(parts)


WARN_FACTOR = 2  # a step that more than doubles the false alarms says so


def false_alarm_change(before: Scores | None, after: Scores | None, step: str, advice: str = "") -> list[str]:

    """The lines a compression step prints about the false alarms it accepts: one line with the
    validation false-alarm rate before -> after ``step`` (model.metric.false_alarm_counts: clips
    of no keyword, i.e. class 0 and a silence class, classified as a keyword), with the counts when
    the scores carry them, and one warning line when the rate more than doubles (from zero: any
    false alarm), ending with ``advice`` (what to do). ``before`` and ``after`` are dicts of
    scores with ``false_alarm_rate``; without them there is nothing to say ([])."""
    if not (isinstance(before, dict) and isinstance(after, dict)) or \
            "false_alarm_rate" not in before or "false_alarm_rate" not in after:
        return []
    b, a = float(before["false_alarm_rate"]), float(after["false_alarm_rate"])
    counts = ""
    if all(k in d for d in (before, after) for k in ("false_alarms", "non_keyword_clips")):
        counts = (f" ({int(before['false_alarms'])} -> {int(after['false_alarms'])} of "
                  f"{int(after['non_keyword_clips'])} classified as a keyword)")
    change = f"{100 * b:.2f}% -> {100 * a:.2f}%"
    lines = [f"False alarms on validation, {step}: {change} of non-keyword clips{counts}"]
    if a > WARN_FACTOR * b and a > 0:
        what = "more than doubled the false alarms" if b else "brought false alarms where there were none"
        lines.append(f"warning: {step} {what} ({change} on validation)" + (f"; {advice}" if advice else ""))
    return lines
