"""Keyword detections from per-window posteriors, shared by predict.py and the streaming test.

A spoken word is inside many overlapping windows, so window posteriors become detections in
three steps: a centred moving average over ``smooth_ms`` of windows (one window's glitch does
not fire); for every keyword, each run of windows where it is the most probable class with at
least ``threshold`` gives one candidate at its peak; candidates closer than ``refractory_ms`` are
suppressed in favour of the strongest (one word, one detection, even when neighbouring windows
prefer another keyword). A detection's time is the start of its peak window: the one-clip
stretch that best contains the word.
"""
import bisect
import math
from dataclasses import dataclass, replace

import numpy as np

from utils.errors import UserError


MAX_SPAN_MS = 60_000.0   # --smooth-ms / --refractory-ms: a minute (the smoothing buffer grows with it)


@dataclass(frozen=True)
class DetectorSettings:
    hop_ms: float = 100.0
    smooth_ms: float = 300.0    # span of windows averaged (centred): 3 windows at the default hop
    threshold: float = 0.5      # smoothed keyword probability to fire
    refractory_ms: float = 1000.0

    def validate(self, clip_ms):
        for flag, value in (("--hop-ms", self.hop_ms), ("--smooth-ms", self.smooth_ms),
                            ("--threshold", self.threshold), ("--refractory-ms", self.refractory_ms)):
            if not math.isfinite(value):
                raise UserError(f"{flag} must be a finite number, got {value:g}")
        if not 0 < self.hop_ms <= clip_ms:
            raise UserError(f"--hop-ms must be above 0 and at most the window length "
                            f"({clip_ms:g} ms), got {self.hop_ms:g}")
        if not 0 <= self.smooth_ms <= MAX_SPAN_MS:
            raise UserError(f"--smooth-ms must be >= 0 (0 = no smoothing) and at most {MAX_SPAN_MS:g}, "
                            f"got {self.smooth_ms:g}")
        if not 0 < self.threshold <= 1:
            raise UserError(f"--threshold is a probability in (0, 1], got {self.threshold:g}")
        if not 0 <= self.refractory_ms <= MAX_SPAN_MS:
            raise UserError(f"--refractory-ms must be >= 0 and at most {MAX_SPAN_MS:g}, got {self.refractory_ms:g}")

    @property
    def smooth_windows(self):
        """The odd number of windows nearest to smooth_ms / hop_ms (odd: centred on a window)."""
        return max(1, 2 * math.floor((self.smooth_ms / self.hop_ms - 1) / 2 + 0.5) + 1)

    def hop_samples(self, sample_rate):
        """The window step in samples at ``sample_rate`` (at least one)."""
        return max(1, int(round(self.hop_ms * sample_rate / 1000.0)))

    def with_threshold(self, threshold):
        return replace(self, threshold=float(threshold))

    def to_dict(self):
        return {"hop_ms": float(self.hop_ms), "smooth_ms": float(self.smooth_ms),
                "threshold": float(self.threshold), "refractory_ms": float(self.refractory_ms)}


@dataclass(frozen=True)
class Detection:
    start_s: float      # start of the peak window, seconds from the start of the recording
    label: int
    name: str
    score: float        # smoothed probability at the peak


def smooth_posteriors(posteriors, width):
    """Centred moving average over an odd ``width`` of windows; at the ends over the windows that
    exist."""
    if width <= 1:
        return posteriors
    kernel = np.ones(width)
    pad = ((width // 2, width // 2), (0, 0))
    sums = np.stack([np.convolve(col, kernel, mode="valid")
                     for col in np.pad(posteriors, pad).T], axis=1)
    counts = np.convolve(np.pad(np.ones(len(posteriors)), pad[0]), kernel, mode="valid")
    return sums / counts[:, None]


def detections_of_smoothed(smoothed, starts_s, settings, class_names, skip=()):
    """find_detections on posteriors already smoothed with ``settings.smooth_windows`` (a
    threshold sweep smooths once)."""
    best = smoothed.argmax(axis=1)
    candidates = []
    for label in range(1, smoothed.shape[1]):
        if class_names[label] in skip:
            continue
        active = (best == label) & (smoothed[:, label] >= settings.threshold)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], active.astype(np.int8), [0]])))
        for begin, end in zip(edges[0::2], edges[1::2]):
            peak = begin + int(np.argmax(smoothed[begin:end, label]))
            candidates.append(Detection(float(starts_s[peak]), label, class_names[label],
                                        float(smoothed[peak, label])))
    # strongest first; one is kept when no kept one lies within the refractory time (a sorted
    # list of kept times: its neighbours are the only ones that can be that close)
    kept, times = [], []
    for det in sorted(candidates, key=lambda d: -d.score):
        i = bisect.bisect_left(times, det.start_s)
        near = [times[j] for j in (i - 1, i) if 0 <= j < len(times)]
        if all(abs(det.start_s - t) * 1000.0 >= settings.refractory_ms for t in near):
            times.insert(i, det.start_s)
            kept.append(det)
    return sorted(kept, key=lambda d: d.start_s)


def find_detections(posteriors, starts_s, settings, class_names, skip=()):
    """Keyword detections (time-sorted) from per-window posteriors (W, classes); class 0 is
    'not a keyword' and never detected, nor is a class named in ``skip`` (a silence class)."""
    smoothed = smooth_posteriors(posteriors, settings.smooth_windows)
    return detections_of_smoothed(smoothed, starts_s, settings, class_names, skip)
