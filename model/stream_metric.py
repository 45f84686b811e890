"""Misses and false alarms per hour of a detector on a labelled recording.

A label is ``(start_s, word)``: where a keyword's speech begins. A detection (model.detector) is
the start of the one-clip window where a keyword scored best, so a word well inside the window
begins after the detection time. A detection is a *hit* when it names the label's word and the
word begins between HIT_BEFORE_S before and HIT_AFTER_S after the detection time; each label
takes at most one hit (from the earliest detection that fits). Every other detection is a false alarm, including one naming
the wrong word next to a label, whose label is then also a miss. False alarms are counted per
hour of the recording's non-keyword audio.
"""
from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from model.detector import Detection, DetectorSettings, detections_of_smoothed, smooth_posteriors

HIT_BEFORE_S = 0.25   # the word may begin up to this long before the detection's window starts
HIT_AFTER_S = 0.75    # ... or up to this long after it
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995, 0.998, 0.999,
              0.9995, 0.9999)


def tolerance_text() -> str:
    return (f"a hit: the right word beginning {HIT_BEFORE_S:g} s before to {HIT_AFTER_S:g} s after the start of "
            f"the detection's window")


@dataclass(frozen=True)
class StreamScore:
    threshold: float
    keywords: int
    hits: int
    false_alarms: int
    background_hours: float

    @property
    def misses(self) -> int:
        return self.keywords - self.hits

    @property
    def miss_rate(self) -> float:
        return self.misses / self.keywords if self.keywords else 0.0

    @property
    def false_alarms_per_hour(self) -> float:
        return self.false_alarms / self.background_hours if self.background_hours > 0 else float("inf")

    def to_dict(self) -> dict[str, int | float]:
        return {"threshold": float(self.threshold), "keywords": self.keywords, "hits": self.hits,
                "misses": self.misses, "miss_rate": float(self.miss_rate), "false_alarms": self.false_alarms,
                "false_alarms_per_hour": float(self.false_alarms_per_hour)}


def hit_flags(detections: Iterable[Detection], labels: Iterable[tuple[float, str]]) -> list[bool]:
    """For each of the time-sorted ``detections``, whether it is a hit of ``labels`` ((start_s, word))."""
    labels = sorted(labels)
    times = np.array([t for t, _ in labels], dtype=np.float64)
    taken = np.zeros(len(labels), dtype=bool)
    flags = []
    for det in detections:
        lo = np.searchsorted(times, det.start_s - HIT_BEFORE_S, side="left")
        hi = np.searchsorted(times, det.start_s + HIT_AFTER_S, side="right")
        hit = False
        for i in range(lo, hi):
            if not taken[i] and labels[i][1] == det.name:
                taken[i] = hit = True
                break
        flags.append(hit)
    return flags


def match(detections: Sequence[Detection], labels: Iterable[tuple[float, str]]) -> tuple[int, int]:
    """(hits, false alarms) of time-sorted ``detections`` against ``labels`` ((start_s, word))."""
    hits = sum(hit_flags(detections, labels))
    return hits, len(detections) - hits


def loudest_false_alarms(detections: Sequence[Detection], labels: Iterable[tuple[float, str]],
                         count: int) -> list[Detection]:
    """The ``count`` false alarms among ``detections`` with the highest scores, strongest first:
    what a threshold must stay above to avoid them."""
    wrong = [d for d, hit in zip(detections, hit_flags(detections, labels)) if not hit]
    return sorted(wrong, key=lambda d: -d.score)[:count]


def sweep(posteriors: np.ndarray, starts_s: np.ndarray | Sequence[float], settings: DetectorSettings,
          class_names: Sequence[str], labels: Sequence[tuple[float, str]], background_hours: float,
          thresholds: Iterable[float] = THRESHOLDS, skip: Collection[str] = ()) -> list[StreamScore]:
    """A StreamScore for every threshold (the posteriors smoothed once with ``settings``)."""
    smoothed = smooth_posteriors(posteriors, settings.smooth_windows)
    scores = []
    for threshold in thresholds:
        dets = detections_of_smoothed(smoothed, starts_s, settings.with_threshold(threshold), class_names, skip)
        hits, false_alarms = match(dets, labels)
        scores.append(StreamScore(float(threshold), len(labels), hits, false_alarms, background_hours))
    return scores


def operating_point(scores: Sequence[StreamScore], target: float) -> tuple[StreamScore, bool]:
    """(score, met): the score with the fewest misses among those with at most ``target`` false
    alarms per hour (ties: the higher threshold); when none meets the target, the one with the
    fewest false alarms (then fewest misses) and met=False."""
    meeting = [s for s in scores if s.false_alarms_per_hour <= target]
    if meeting:
        return min(meeting, key=lambda s: (s.misses, -s.threshold)), True
    return min(scores, key=lambda s: (s.false_alarms, s.misses, -s.threshold)), False


def misses_at(scores: Sequence[StreamScore], target: float) -> float:
    """The miss rate at the operating point for ``target`` (1.0 when no threshold meets it: a
    figure to minimise that ranks any model meeting the target above one that does not)."""
    best, met = operating_point(scores, target)
    return best.miss_rate if met else 1.0


RATE_FACTORS = (1, 2, 5, 10, 20, 50)   # the false-alarm rates of recall_over_rates, times the target


def recall_over_rates(scores: Sequence[StreamScore], target: float, factors: Sequence[float] = RATE_FACTORS) -> float:
    """The share of keywords found, averaged over the false-alarm rates ``target * factor`` (at
    each, the best threshold of the sweep meeting it; 0 where none does): a partial area under the
    DET curve. Unlike the recall at the target alone it still ranks models that find almost
    nothing at the target, so model selection and the searches keep a signal there."""
    return sum(1.0 - misses_at(scores, target * f) for f in factors) / len(factors)
