"""A long labelled recording built from one split of a corpus, for streaming evaluation.

A keyword spotter runs on a microphone, not on clips cut around words, so it is judged on a long
recording by the keywords it misses and the false alarms it raises per hour. ``plan_stream``
lays out such a recording from a split: every keyword clip once, and the split's other clips
(class 0) in as many *variants* as it takes to reach ``stream_hours`` of non-keyword audio (a
variant is every other clip again with fresh gain, noise and pause draws), all in one seeded
random order. Each clip follows a pause of PAUSE_S seconds, is scaled by GAIN_DB and has the
split's region of the background-noise recordings (data_loader.dataset.NOISE_REGIONS: no noise
sample is shared with training) mixed under it and its pause at SNR_DB relative to the clip.
A keyword's label is ``(start_s, word)`` at its speech onset: the first 10 ms frame within
ONSET_DB of the clip's loudest one (clips start with a variable stretch of near-silence).

``render_blocks`` produces the samples a block at a time (memory bounded by the split's clips,
not by the recording's length); the same plan renders the same samples.
"""
from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from data_loader.audio import MAX_CLIP_SECONDS, AudioError, read_wave, shown
from data_loader.features import FeatureParams
from data_loader.dataset import NOISE_REGIONS, SPLITS_INDEX, read_noise
from utils.errors import UserError

if TYPE_CHECKING:
    from data_loader.corpus import Corpus

PAUSE_S = (0.5, 1.5)
GAIN_DB = (-12.0, 0.0)
SNR_DB = (5.0, 20.0)
ONSET_DB = 20.0
ONSET_FRAME_S = 0.01
BLOCK_S = 10.0


@dataclass(frozen=True)
class StreamEvent:
    rel: str            # clip path relative to the corpus root
    label: int          # 0: not a keyword
    variant: int        # 0 for keyword clips; 0.. for the other clips
    pause: int          # samples of pause (noise only) before the clip
    start: int          # first sample of the clip in the recording
    length: int         # samples of the clip
    gain: float         # linear gain of the clip
    noise: int          # index into StreamPlan.noise_files (-1: no noise)
    noise_offset: int   # where in that file's region the event's noise starts
    noise_gain: float   # linear gain of the noise


@dataclass(frozen=True)
class StreamPlan:
    split: str
    sample_rate: int
    seed: int
    events: tuple
    labels: tuple           # (start_s, word) of every keyword, time-ordered
    total_samples: int
    background_s: float     # seconds of non-keyword audio (everything but the keyword clips)
    variants: int
    other_clips: int        # distinct non-keyword clips
    noise_files: tuple      # relative paths of the noise recordings used
    root: str
    waves: dict = field(default=None, repr=False, compare=False)   # rel -> samples (the split's clips)
    noise_regions: dict = field(default=None, repr=False, compare=False)  # index -> region samples

    @property
    def duration_s(self) -> float:
        return self.total_samples / self.sample_rate

    @property
    def keywords(self) -> int:
        return len(self.labels)


def speech_onset(wave: np.ndarray, sample_rate: int) -> int:
    """Samples from the start of ``wave`` to its speech onset (first 10 ms frame within
    ONSET_DB of the loudest one)."""
    frame = max(1, int(ONSET_FRAME_S * sample_rate))
    n = len(wave) // frame
    if n == 0:
        return 0
    energy = (wave[:n * frame].astype(np.float64).reshape(n, frame) ** 2).mean(axis=1)
    if energy.max() <= 0:
        return 0
    return int(np.flatnonzero(energy >= energy.max() * 10 ** (-ONSET_DB / 10))[0]) * frame


def _read_split(root, rows, sample_rate):
    waves = {}
    for rel, _ in rows:
        try:
            wave = read_wave(root / rel, sample_rate, MAX_CLIP_SECONDS)
        except AudioError:
            continue   # an unreadable clip is left out, as the data loader does
        if len(wave):
            waves[rel] = wave
    return waves


def plan_stream(corpus: Corpus, split: str, sample_rate: int, stream_hours: float = 1.0, seed: int = 0) -> StreamPlan:
    """A StreamPlan of ``split`` of ``corpus`` (data_loader.corpus.Corpus) with at least
    ``stream_hours`` of non-keyword audio; a split without keyword clips is a UserError."""
    if not stream_hours > 0:
        raise UserError(f"the stream length must be above 0 hours, got {stream_hours:g}")
    rows = corpus.clips[split]
    root = corpus.root
    waves = _read_split(root, rows, sample_rate)
    keyword_rows = [(rel, label) for rel, label in rows if label != 0 and rel in waves]
    other_rows = [(rel, label) for rel, label in rows if label == 0 and rel in waves]
    if not keyword_rows:
        raise UserError(f"the {split} split of {root} holds no keyword clips ({', '.join(corpus.keywords)}); "
                        f"a stream needs keywords to find: choose another split or corpus")
    noise = read_noise(root, corpus.noise_files, FeatureParams(sample_rate=sample_rate))
    lo, hi = NOISE_REGIONS[split]
    regions = {}
    for rel, wave in noise.items():
        region = wave[int(lo * len(wave)):int(hi * len(wave))]
        if len(region) and float(np.mean(region.astype(np.float64) ** 2)) > 0:
            regions[rel] = region
    noise_files = tuple(regions)
    noise_power = [float(np.mean(regions[r].astype(np.float64) ** 2)) for r in noise_files]
    other_s = sum(len(waves[rel]) for rel, _ in other_rows) / sample_rate
    target_s = stream_hours * 3600.0
    mean_pause = sum(PAUSE_S) / 2
    per_variant = other_s + mean_pause * len(other_rows)
    variants = 1 if not other_rows else max(1, int(np.ceil(target_s / per_variant)))
    while True:
        rng = np.random.default_rng([seed, SPLITS_INDEX[split], 21, variants])
        items = [(rel, label, 0) for rel, label in keyword_rows]
        items += [(rel, label, v) for v in range(variants) for rel, label in other_rows]
        order = rng.permutation(len(items))
        events, labels, position, keyword_samples = [], [], 0, 0
        for i in order:
            rel, label, variant = items[i]
            wave = waves[rel]
            pause = int(round(rng.uniform(*PAUSE_S) * sample_rate))
            gain = float(10 ** (rng.uniform(*GAIN_DB) / 20))
            snr = rng.uniform(*SNR_DB)
            k = int(rng.integers(len(noise_files))) if noise_files else -1
            offset = int(rng.integers(len(regions[noise_files[k]]))) if noise_files else 0
            clip_power = float(np.mean(wave.astype(np.float64) ** 2)) * gain ** 2
            noise_gain = float(np.sqrt(clip_power / noise_power[k] / 10 ** (snr / 10))) if k >= 0 else 0.0
            start = position + pause
            events.append(StreamEvent(rel, label, variant, pause, start, len(wave), gain, k, offset, noise_gain))
            if label != 0:
                keyword_samples += len(wave)
                labels.append(((start + speech_onset(wave, sample_rate)) / sample_rate,
                               corpus.keywords[label - 1]))
            position = start + len(wave)
        background_s = (position - keyword_samples) / sample_rate
        if background_s >= target_s or not other_rows:
            break
        variants += 1
    return StreamPlan(split, sample_rate, seed, tuple(events), tuple(labels), position, background_s, variants,
                      len(other_rows), noise_files, str(root), waves,
                      {i: regions[r] for i, r in enumerate(noise_files)})


def clip_under(plan: StreamPlan, window_start_s: float, window_s: float) -> str:
    """What the recording holds at the centre of the window starting at ``window_start_s``: the
    corpus clip (its path relative to the corpus root, printable), or ``pause before <clip>``."""
    centre = int(round((window_start_s + window_s / 2) * plan.sample_rate))
    starts = [e.start for e in plan.events]
    i = bisect.bisect_right(starts, centre) - 1
    if i < 0:
        return f"pause before {shown(plan.events[0].rel)}"
    event = plan.events[i]
    if centre < event.start + event.length:
        return shown(event.rel)
    return f"pause before {shown(plan.events[i + 1].rel)}" if i + 1 < len(plan.events) else "the end of the recording"


def describe_plan(plan: StreamPlan) -> str:
    """One line saying what the recording is made of."""
    mixed = (f"{plan.other_clips} other clips in {plan.variants} variant(s) (each variant: every other clip "
             f"again with new gain, noise and pause draws)" if plan.variants > 1
             else f"{plan.other_clips} other clips once")
    noise = (f"noise of the {plan.split} region of {len(plan.noise_files)} background recording(s) at "
             f"{SNR_DB[0]:g}-{SNR_DB[1]:g} dB SNR" if plan.noise_files else "no background noise (none in the corpus)")
    return (f"{plan.split} stream of {plan.root}: {plan.duration_s / 3600:.2f} h "
            f"({plan.background_s / 3600:.2f} h without keywords), {plan.keywords} keyword clips once, {mixed}; "
            f"gain {GAIN_DB[0]:g}..{GAIN_DB[1]:g} dB, pauses {PAUSE_S[0]:g}-{PAUSE_S[1]:g} s, {noise}; seed {plan.seed}")


def _event_samples(plan, event):
    """The pause and clip of ``event`` with its noise, as float32."""
    n = event.pause + event.length
    out = np.zeros(n, dtype=np.float32)
    out[event.pause:] = plan.waves[event.rel] * np.float32(event.gain)
    if event.noise >= 0:
        region = plan.noise_regions[event.noise]
        idx = (event.noise_offset + np.arange(n)) % len(region)
        out += region[idx] * np.float32(event.noise_gain)
    return out


def render_blocks(plan: StreamPlan, block_s: float = BLOCK_S) -> Iterator[np.ndarray]:
    """Yield the recording's samples in blocks of ``block_s`` seconds (the last one shorter)."""
    block = max(1, int(block_s * plan.sample_rate))
    pending = []
    size = 0
    for event in plan.events:
        samples = _event_samples(plan, event)
        pending.append(samples)
        size += len(samples)
        if size >= block:
            joined = np.concatenate(pending)
            for i in range(0, len(joined) - block + 1, block):
                yield joined[i:i + block]
            rest = joined[(len(joined) // block) * block:]
            pending, size = [rest], len(rest)
    if size:
        yield np.concatenate(pending)


def labels_text(labels: Iterable[tuple[float, str]]) -> str:
    """The labels in the ``start_s word`` file format test.py --labels reads."""
    return "".join(f"{start:.3f} {word}\n" for start, word in labels)
