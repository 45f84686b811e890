"""Training windows cut from a long recording built from the training split.

A detector sees the word at every position a 100 ms hop gives it, between the neighbouring words
of a stream and under its noise; the training clips show it centred, alone, at most shifted by
the augmentation. ``stream_windows`` builds the training split's stream (data_loader.stream: the
same pauses, gains and noise at SNRs as the test stream, from the training region of the noise
recordings) and cuts one-second windows from it:

- *positives*: ``per_keyword`` windows per keyword clip, their starts drawn uniformly where the
  whole clip lies inside the window (a clip of a second or more: the window on the clip);
- *negatives*: ``negatives`` times as many windows, drawn where no keyword clip overlaps them;
- windows that hold part of a keyword clip are not used (neither label is true of them).

They are returned as mel power (the training split's form), to be appended to it, with the clip
each window is of (``window_clips``: the keyword clip of a positive, the clip a negative overlaps
most), whose speaker speaker-balanced sampling counts the window with.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from data_loader.features import FeatureParams, MelPower
from data_loader.stream import StreamEvent, plan_stream, render_blocks

if TYPE_CHECKING:
    from data_loader.corpus import Corpus

MEL_BATCH = 512   # windows per mel computation


def window_starts(events: Sequence[StreamEvent], total: int, clip: int, per_keyword: int, negatives: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(starts, labels) in samples: positives inside which a whole keyword clip lies, negatives
    that overlap no keyword clip."""
    starts, labels = [], []
    keyword_spans = [(e.start, e.start + e.length) for e in events if e.label > 0]
    for e in events:
        if e.label <= 0:
            continue
        lo, hi = e.start + e.length - clip, e.start   # the window [s, s + clip) holds the clip
        if lo > hi:                                   # a clip longer than the window: the window on it
            lo = hi = e.start + (e.length - clip) // 2
        lo, hi = max(lo, 0), min(hi, total - clip)
        for s in rng.integers(lo, hi + 1, size=per_keyword):
            starts.append(int(s))
            labels.append(e.label)
    wanted = int(round(negatives * len(starts)))
    spans = np.array(keyword_spans, dtype=np.int64).reshape(-1, 2)
    found = []
    while len(found) < wanted:
        s = rng.integers(0, total - clip + 1, size=4 * wanted + 16)
        overlap = ((s[:, None] < spans[None, :, 1]) & (s[:, None] + clip > spans[None, :, 0])).any(axis=1)
        found.extend(int(v) for v in s[~overlap])
    starts.extend(found[:wanted])
    labels.extend([0] * wanted)
    return np.array(starts, dtype=np.int64), np.array(labels, dtype=np.int64)


def window_clips(events: Sequence[StreamEvent], starts: np.ndarray, labels: np.ndarray, clip: int) -> list[str]:
    """The clip (``rel``) each window is of: among the clips of its label it overlaps, the one it
    overlaps most (a positive holds its keyword clip whole; a negative overlaps only other words);
    "" for a window that overlaps no clip of its label (a pause)."""
    if not len(starts):
        return []
    first = np.array([e.start for e in events], dtype=np.int64)
    last = first + np.array([e.length for e in events], dtype=np.int64)
    event_labels = np.array([e.label for e in events], dtype=np.int64)
    rels = []
    for s, label in zip(starts.tolist(), labels.tolist()):
        overlap = np.minimum(last, s + clip) - np.maximum(first, s)
        overlap[event_labels != label] = 0
        best = int(np.argmax(overlap))
        rels.append(events[best].rel if overlap[best] > 0 else "")
    return rels


def stream_windows(corpus: Corpus, params: FeatureParams, hours: float, per_keyword: int, negatives: float,
                   seed: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(mel (N, n_mels, frames), labels (N,), the clip of each window (``window_clips``)) of
    windows cut from the training split's stream."""
    plan = plan_stream(corpus, "train", params.sample_rate, hours, seed)
    wave = np.concatenate(list(render_blocks(plan)))
    rng = np.random.default_rng(seed)
    starts, labels = window_starts(plan.events, len(wave), params.clip_samples, per_keyword, negatives, rng)
    mel_of = MelPower(params)
    mels = []
    with torch.no_grad():
        for i in range(0, len(starts), MEL_BATCH):
            batch = np.stack([wave[s:s + params.clip_samples] for s in starts[i:i + MEL_BATCH]])
            mels.append(mel_of(torch.from_numpy(batch)))
    mel = torch.cat(mels) if mels else torch.zeros(0, params.n_mels, params.frames)
    return mel, torch.from_numpy(labels), window_clips(plan.events, starts, labels, params.clip_samples)
