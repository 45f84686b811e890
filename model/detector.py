"""Keyword detections from per-window posteriors, shared by predict.py and the streaming test.

A spoken word is inside many overlapping windows, so window posteriors become detections in
three steps: a centred moving average over ``smooth_ms`` of windows (one window's glitch does
not fire); for every keyword, each run of windows where it is the most probable class with at
least ``threshold`` gives one candidate at its peak; candidates closer than ``refractory_ms`` are
suppressed in favour of the strongest (one word, one detection, even when neighbouring windows
prefer another keyword). A detection's time is the start of its peak window: the one-clip
stretch that best contains the word.
"""
from __future__ import annotations

import bisect
import math
from collections.abc import Collection, Sequence
from fractions import Fraction
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

    def validate(self, clip_ms: float) -> None:
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
    def smooth_windows(self) -> int:
        """The odd number of windows nearest to smooth_ms / hop_ms (odd: centred on a window)."""
        return max(1, 2 * math.floor((self.smooth_ms / self.hop_ms - 1) / 2 + 0.5) + 1)

    def hop_samples(self, sample_rate: int) -> int:
        """The window step in samples at ``sample_rate`` (at least one)."""
        return max(1, int(round(self.hop_ms * sample_rate / 1000.0)))

    def with_threshold(self, threshold: float) -> DetectorSettings:
        return replace(self, threshold=float(threshold))

    def to_dict(self) -> dict[str, float]:
        return {"hop_ms": float(self.hop_ms), "smooth_ms": float(self.smooth_ms),
                "threshold": float(self.threshold), "refractory_ms": float(self.refractory_ms)}


@dataclass(frozen=True)
class Detection:
    start_s: float      # start of the peak window, seconds from the start of the recording
    label: int
    name: str
    score: float        # smoothed probability at the peak


def smooth_posteriors(posteriors: np.ndarray, width: int) -> np.ndarray:
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


def _kept(smoothed, fires, apart, class_names, skip):
    """(peak window, label) of every detection, time-sorted: for each keyword, each run of windows
    where it is the most probable class and ``fires`` (bool per window) gives one candidate at
    its peak; strongest first (ties: the lower label, then the earlier window), one is kept when
    ``apart(i, j)`` holds for the kept windows beside it (a sorted list of kept windows: its
    neighbours are the only ones that can be that close)."""
    best = smoothed.argmax(axis=1)
    candidates = []
    for label in range(1, smoothed.shape[1]):
        if class_names[label] in skip:
            continue
        active = (best == label) & fires(label)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], active.astype(np.int8), [0]])))
        for begin, end in zip(edges[0::2], edges[1::2]):
            candidates.append((begin + int(np.argmax(smoothed[begin:end, label])), label))
    kept = []
    for peak, _ in sorted(candidates, key=lambda c: -smoothed[c[0], c[1]]):
        i = bisect.bisect_left(kept, peak)
        if all(apart(peak, kept[j]) for j in (i - 1, i) if 0 <= j < len(kept)):
            kept.insert(i, peak)
    labels = dict(candidates)
    return [(peak, labels[peak]) for peak in kept]


def detections_of_smoothed(smoothed: np.ndarray, starts_s: np.ndarray | Sequence[float], settings: DetectorSettings,
                           class_names: Sequence[str], skip: Collection[str] = ()) -> list[Detection]:
    """find_detections on posteriors already smoothed with ``settings.smooth_windows`` (a
    threshold sweep smooths once)."""
    def apart(i: int, j: int) -> bool:
        return abs(starts_s[i] - starts_s[j]) * 1000.0 >= settings.refractory_ms
    kept = _kept(smoothed, lambda label: smoothed[:, label] >= settings.threshold, apart, class_names, skip)
    return [Detection(float(starts_s[w]), label, class_names[label], float(smoothed[w, label])) for w, label in kept]


def find_detections(posteriors: np.ndarray, starts_s: np.ndarray | Sequence[float], settings: DetectorSettings,
                    class_names: Sequence[str], skip: Collection[str] = ()) -> list[Detection]:
    """Keyword detections (time-sorted) from per-window posteriors (W, classes); class 0 is
    'not a keyword' and never detected, nor is a class named in ``skip`` (a silence class)."""
    smoothed = smooth_posteriors(posteriors, settings.smooth_windows)
    return detections_of_smoothed(smoothed, starts_s, settings, class_names, skip)


# --- the detector in integer arithmetic (a quantized model on the integer front end) ---------------
#
# The float softmax and average are not reproducible bit for bit on a device without a float
# unit (exp, division, summation order), and a smoothed probability that lands on the threshold
# fires on one side and not the other. So for an integer model the posterior path is defined here
# once in integers, and the exported C (deploy/templates/stream.c) computes the same numbers:
#
# - posterior p_k in Q16 = floor(2^16 e_k / sum_j e_j), e_k = 2^((s_k - max s) log2(e) / 2^fl) in Q30:
#   the score difference times log2(e) in Q16 (POSTERIOR_LOG2E), floored to Q16, its integer part
#   a right shift and its fraction a 65-entry table of 2^(-i/64) (EXP2_TABLE, Q30) interpolated
#   linearly on the next 10 bits;
# - smoothed = floor(sum of the p of the centred windows / their number), an integer;
# - fires when smoothed >= ceil(threshold * 2^16) (exactly ``smoothed / 2^16 >= threshold``);
# - two detections are apart when their windows are at least ceil(refractory_ms * rate / 1000 /
#   hop) windows apart (the float path compares seconds, whose rounding can fall either side).

POSTERIOR_FL = 16
EXP2_BITS = 30
EXP2_TABLE = np.rint(2.0 ** (EXP2_BITS - np.arange(65) / 64)).astype(np.int64)
EXP2_INTERP_BITS = 10
POSTERIOR_LOG2E = int(round(math.log2(math.e) * (1 << POSTERIOR_FL)))
EXP2_MIN = -(32 << POSTERIOR_FL)      # differences below 2^-32 give e = 0
MAX_SCORE_LEFT_SHIFT = 20


def integer_posteriors(scores: np.ndarray, output_fl: int) -> np.ndarray:
    """int scores (N, classes) = logits * 2^output_fl -> int64 posteriors (N, classes) in Q16."""
    if output_fl < -MAX_SCORE_LEFT_SHIFT:
        raise UserError(f"the class output's fractional length {output_fl} is below -{MAX_SCORE_LEFT_SHIFT}; "
                        f"the integer detector cannot scale its scores")
    s = np.asarray(scores, dtype=np.int64)
    a = np.maximum((s - s.max(axis=1, keepdims=True)) * POSTERIOR_LOG2E, -(1 << 40))
    y = np.maximum(a >> output_fl if output_fl >= 0 else a << -output_fl, EXP2_MIN)
    n = -y
    whole, frac = n >> POSTERIOR_FL, n & ((1 << POSTERIOR_FL) - 1)
    idx = frac >> (POSTERIOR_FL - 6)
    rest = frac & ((1 << EXP2_INTERP_BITS) - 1)
    lo, hi = EXP2_TABLE[idx], EXP2_TABLE[idx + 1]
    e = (lo + (((hi - lo) * rest + (1 << (EXP2_INTERP_BITS - 1))) >> EXP2_INTERP_BITS)) >> whole
    return (e << POSTERIOR_FL) // e.sum(axis=1, keepdims=True)


def integer_smooth(posteriors: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average of integer posteriors over an odd ``width``, floored; at the ends
    over the windows that exist."""
    p = np.asarray(posteriors, dtype=np.int64)
    if width <= 1:
        return p
    half = width // 2
    c = np.concatenate([np.zeros((1, p.shape[1]), dtype=np.int64), np.cumsum(p, axis=0)])
    idx = np.arange(len(p))
    lo, hi = np.maximum(idx - half, 0), np.minimum(idx + half + 1, len(p))
    return (c[hi] - c[lo]) // (hi - lo)[:, None]


def threshold_code(threshold: float) -> int:
    """The smallest Q16 smoothed posterior that fires at ``threshold``."""
    return math.ceil(threshold * (1 << POSTERIOR_FL))


def refractory_windows(settings: DetectorSettings, sample_rate: int) -> int:
    """Windows two kept detections are at least apart."""
    hop = settings.hop_samples(sample_rate)
    return math.ceil(Fraction(settings.refractory_ms) * sample_rate / 1000 / hop)


def integer_detections(posteriors: np.ndarray, settings: DetectorSettings, sample_rate: int,
                       class_names: Sequence[str], skip: Collection[str] = ()) -> list[Detection]:
    """find_detections on Q16 integer posteriors (W, classes) in integer arithmetic (above): the
    detections the exported C stream makes; scores are the smoothed Q16 posterior / 2^16."""
    smoothed = integer_smooth(posteriors, settings.smooth_windows)
    code, apart_windows = threshold_code(settings.threshold), refractory_windows(settings, sample_rate)
    kept = _kept(smoothed, lambda label: smoothed[:, label] >= code, lambda i, j: abs(i - j) >= apart_windows,
                 class_names, skip)
    hop = settings.hop_samples(sample_rate)
    return [Detection(w * hop / sample_rate, label, class_names[label], smoothed[w, label] / (1 << POSTERIOR_FL))
            for w, label in kept]
