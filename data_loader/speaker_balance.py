"""Speaker-balanced sampling weights for the training split.

A corpus may hold a few speakers with many clips of a word and many speakers with one or two:
drawn uniformly, the model hears the few voices over and over and each rare voice once an epoch,
and learns the few voices' word rather than the word. Weighting every training clip by
``n ** -alpha``, ``n`` being the clips of its speaker in its class, moves the draws towards the
rare voices: ``alpha`` 0 is uniform sampling, 1 gives every (speaker, class) group the same share
of its class. The weights of a class are then scaled so that the class keeps its share of the
draws (its clip count): balancing voices must not re-weigh the classes, which
``trainer.class_weights`` does.

The speaker of a clip is the file name's part before ``_nohash_`` (the Speech Commands
convention, the whole name without ``.wav`` when there is none); a background-noise clip
(``noise:<file>@<second>``) belongs to its recording.
"""
from __future__ import annotations

import posixpath
from collections import Counter
from collections.abc import Sequence

import torch

NOHASH = "_nohash_"


def speaker_of(name: str) -> str:
    """The speaker of a clip name (a path relative to the corpus root, or a noise clip's name)."""
    if name.startswith("noise:"):
        return name.rsplit("@", 1)[0]
    base = posixpath.basename(name.replace("\\", "/"))
    if NOHASH in base:
        return base.split(NOHASH, 1)[0]
    return base[:-4] if base.lower().endswith(".wav") else base


def speaker_weights(speakers: Sequence[str], labels: Sequence[int] | torch.Tensor, alpha: float) -> torch.Tensor:
    """(N,) float64 sampling weights: ``count(speaker, class) ** -alpha``, scaled per class so
    that each class's weights sum to its number of clips (so the mean weight is 1)."""
    labels = [int(v) for v in labels]
    if len(speakers) != len(labels):
        raise ValueError(f"{len(speakers)} speakers for {len(labels)} labels")
    groups = list(zip(labels, speakers))
    counts = Counter(groups)
    raw = torch.tensor([counts[g] ** -float(alpha) for g in groups], dtype=torch.float64)
    label_t = torch.tensor(labels, dtype=torch.int64)
    weights = torch.empty_like(raw)
    for c in sorted(set(labels)):
        mask = label_t == c
        weights[mask] = raw[mask] * (int(mask.sum()) / float(raw[mask].sum()))
    return weights
