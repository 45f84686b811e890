"""Feature extraction of whole splits into in-memory tensors, cached under ``data/cache``.

A split is stored as its mel power spectra (N, n_mels, frames), where augmentation works, and
their MFCCs (N, 1, frames, n_mfcc, not normalised), which a loader that does not augment uses
directly: a third of the bytes, and no conversion at each start. With ``features.frontend:
integer`` the MFCCs are the integer front end's (data_loader/integer_frontend.py) and the
evaluation splits also keep their int16 PCM, the exported C front end's test input. The file is memory-mapped, so
the part a step does not use is never read; an older cache without MFCCs gets them on its next
load. The cache file name is a hash of the split's file list (paths, sizes, modification times),
the feature parameters (with the integer front end, its version: a new arithmetic is a new key),
the keywords and the background-noise settings, so any change rebuilds it and an unchanged corpus
loads in a blink.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from utils.progress import progress_bar

from data_loader.audio import MAX_CLIP_SECONDS, MAX_NOISE_SECONDS, AudioError, fit_length, read_wave
from data_loader.features import FeatureParams, MelPower, MfccFromMel
from data_loader.integer_frontend import FRONTEND_VERSION, clip_features, to_pcm
from utils import atomic
from utils.errors import UserError

if TYPE_CHECKING:
    from data_loader.corpus import Corpus

CACHE_VERSION = 1
# Each noise recording is cut into disjoint regions per split, so no noise sample is shared
# between training, validation and test.
NOISE_REGIONS = {"train": (0.0, 0.8), "validation": (0.8, 0.9), "test": (0.9, 1.0)}
NOISE_BANK_HOP = 0.5  # seconds between the starts of augmentation noise segments
SPLITS_INDEX = {"train": 0, "validation": 1, "test": 2}  # seeds each split's noise levels apart

log = logging.getLogger(__name__)


@dataclass
class SplitData:
    mel: torch.Tensor      # (N, n_mels, frames) float32 mel power
    labels: torch.Tensor   # (N,) int64
    names: list            # clip paths relative to the corpus root ("noise:<file>@<second>" for noise)
    skipped: list          # unreadable files left out
    mfcc: torch.Tensor = None  # (N, 1, frames, n_mfcc) MfccFromMel of ``mel`` (not normalised), or None
    pcm: torch.Tensor = None   # (N, clip_samples) int16: the integer front end's input (its eval splits)

    def __len__(self) -> int:
        return len(self.labels)


def _file_signature(root, rel):
    try:
        st = os.stat(os.path.join(root, rel))  # strings, not Paths: a training split is 30,000 files
    except OSError as e:   # a dangling link or a link loop: a clip read_wave skips
        return [rel, -1, e.errno]
    return [rel, st.st_size, st.st_mtime_ns]


def cache_key(corpus: Corpus, split: str, params: FeatureParams, noise_clips: Sequence[float],
              with_noise_bank: bool) -> str:
    root = str(corpus.root)
    entries = [_file_signature(root, rel) + [label] for rel, label in corpus.clips[split]]
    noise = [_file_signature(root, rel) for rel in corpus.noise_files]
    fields = {"v": CACHE_VERSION, "split": split, "clips": entries, "noise": noise, "params": params.to_dict(),
              "keywords": list(corpus.keywords), "noise_clips": noise_clips, "bank": with_noise_bank}
    if params.frontend == "integer":
        # the integer front end's arithmetic is part of its features: a cache of an older version
        # is not reused (float keys are unchanged: no such field)
        fields["integer_frontend"] = FRONTEND_VERSION
    blob = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _read_clips(root, rels, params, desc, progress):
    """Read and fit every clip (two threads: libsndfile and soxr release the GIL)."""
    def load(rel: str) -> np.ndarray | AudioError:
        try:
            return fit_length(read_wave(root / rel, params.sample_rate, MAX_CLIP_SECONDS), params.clip_samples)
        except AudioError as e:
            return e
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(progress_bar(pool.map(load, rels), enabled=progress, total=len(rels), desc=desc,
                         unit="clip", leave=False))


_warned = set()


def read_noise(root: Path, noise_files: Iterable[str], params: FeatureParams) -> dict[str, np.ndarray]:
    """{relative path: samples} of the readable background-noise recordings (the first
    MAX_NOISE_SECONDS of each); an unreadable one is skipped with a warning (once), like a clip."""
    waves = {}
    for rel in noise_files:
        try:
            waves[rel] = read_wave(root / rel, params.sample_rate, MAX_NOISE_SECONDS, centred=False)
        except AudioError as e:
            if str(root / rel) not in _warned:
                _warned.add(str(root / rel))
                log.warning("skipping unreadable audio file %s", e)
    return waves


def _noise_segments(root, noise_files, params, split, count, seed, quiet=0.0):
    """``count`` one-second noise clips spread evenly over the split's region of the recordings,
    at a deterministic random level (log-uniform 0.05 .. 1), as class-0 (or silence) examples;
    a ``quiet`` fraction of them (every 1/quiet-th) is digital silence, as in Speech Commands'
    own silence class (zeros, with noise only where augmentation adds it)."""
    if count <= 0 or not noise_files:
        return [], []
    readable = read_noise(root, noise_files, params)
    noise_files, waves = list(readable), list(readable.values())
    if not waves:
        return [], []
    lo, hi = NOISE_REGIONS[split]
    rng = np.random.default_rng([seed, SPLITS_INDEX[split]])
    clips, names = [], []
    per_file = -(-count // len(waves))
    for rel, wave in zip(noise_files, waves):
        start, stop = int(lo * len(wave)), int(hi * len(wave)) - params.clip_samples
        if stop <= start:
            continue
        for s in np.linspace(start, stop, per_file).astype(int):
            if len(clips) == count:
                break
            gain = float(np.exp(rng.uniform(np.log(0.05), 0.0)))
            if quiet and len(clips) % max(1, round(1 / quiet)) == 0:
                gain = 0.0
            clips.append(wave[s:s + params.clip_samples] * gain)
            names.append(f"noise:{rel}@{s / params.sample_rate:.2f}")
    return clips, names


def noise_bank_waves(root: Path, noise_files: Iterable[str], params: FeatureParams) -> list[np.ndarray]:
    """One-second segments (hop 0.5 s) of the training region of every noise recording, mixed
    into training clips by augmentation."""
    segments = []
    for wave in read_noise(root, noise_files, params).values():
        lo, hi = NOISE_REGIONS["train"]
        start, stop = int(lo * len(wave)), int(hi * len(wave)) - params.clip_samples
        hop = int(NOISE_BANK_HOP * params.sample_rate)
        segments += [wave[s:s + params.clip_samples] for s in range(start, stop + 1, hop)]
    return segments


def _mel_of(waves, params, batch_size=512):
    mel = MelPower(params)
    out = []
    with torch.no_grad():
        for i in range(0, len(waves), batch_size):
            out.append(mel(torch.from_numpy(np.stack(waves[i:i + batch_size]))))
    return torch.cat(out) if out else torch.zeros(0, params.n_mels, params.frames)


def first_non_finite(features: torch.Tensor) -> int | None:
    """The index of the first row of ``features`` holding a NaN or an infinity, else None.

    A NaN or an infinity anywhere makes the sum of all values non-finite, so a finite sum answers
    None in one reading pass (a cache load checks every split this way); only a non-finite sum
    (or one that overflowed) looks for the row."""
    if torch.isfinite(features.sum()):
        return None
    bad = ~torch.isfinite(features.reshape(len(features), -1)).all(dim=1)
    return int(bad.nonzero()[0]) if bad.any() else None


def check_finite_features(features: torch.Tensor, names: Sequence[str], where: str) -> None:
    """A UserError naming the first clip whose features hold a NaN or an infinity (``names``: one
    per row), so training never starts on features that make a NaN model."""
    first = first_non_finite(features)
    if first is not None:
        more = int((~torch.isfinite(features.reshape(len(features), -1)).all(dim=1)).sum()) - 1
        raise UserError(f"the features of {names[first]} in {where} are not finite (NaN or infinite)"
                        f"{f', and those of {more} more clip(s)' if more else ''}; remove or replace the clip")


def mfcc_of(mel: torch.Tensor, params: FeatureParams, batch_size: int = 512) -> torch.Tensor:
    """MfccFromMel of every row, ``batch_size`` rows at a time: the chunks the loaders convert in,
    so the cached MFCCs are bit for bit what a loader computed from the mel spectra."""
    mfcc = MfccFromMel(params)
    with torch.no_grad():
        parts = [mfcc(mel[i:i + batch_size]) for i in range(0, len(mel), batch_size)]
    return torch.cat(parts) if parts else torch.zeros(0, 1, params.frames, params.n_mfcc)


def load_split(corpus: Corpus, split: str, params: FeatureParams, noise_clips: int = 0, noise_seed: int = 0,
               cache_dir: str | os.PathLike = "data/cache", with_noise_bank: bool = False, progress: bool = True,
               noise_label: int = 0, quiet: float = 0.0) -> tuple[SplitData, torch.Tensor | None]:
    """Mel power of every clip of ``split`` (plus ``noise_clips`` background clips of class
    ``noise_label``, a ``quiet`` fraction of them silent), from the cache when it is current.
    Returns (SplitData, noise bank mel or None)."""
    noise_setting = [noise_clips, noise_seed] + ([noise_label, quiet] if noise_label else [])
    key = cache_key(corpus, split, params, noise_setting, with_noise_bank)
    path = Path(cache_dir) / f"{split}-{key}.pt"
    if path.is_file():
        try:
            blob = torch.load(path, weights_only=True, mmap=True)
            if blob.get("mfcc") is None:  # written before MFCCs were cached: add them, once
                blob["mfcc"] = mfcc_of(blob["mel"], params)
                _save_cache(blob, path)
            if first_non_finite(blob["mel"]) is not None or first_non_finite(blob["mfcc"]) is not None:
                raise ValueError("non-finite features")   # a damaged cache: rebuilt below
            data = SplitData(blob["mel"], blob["labels"], blob["names"], blob["skipped"], blob["mfcc"],
                             blob.get("pcm"))
            return data, blob.get("noise_bank")
        except Exception:  # a damaged cache is rebuilt, never trusted
            log.warning("cache %s is unreadable; rebuilding it", path)
    rels = [rel for rel, _ in corpus.clips[split]]
    labels = [label for _, label in corpus.clips[split]]
    loaded = _read_clips(corpus.root, rels, params, f"reading {split}", progress)
    waves, keep_labels, names, skipped = [], [], [], []
    for rel, label, wave in zip(rels, labels, loaded):
        if isinstance(wave, AudioError):
            log.warning("skipping unreadable audio file %s", wave)
            skipped.append(rel)
            continue
        waves.append(wave)
        keep_labels.append(label)
        names.append(rel)
    noise, noise_names = _noise_segments(corpus.root, corpus.noise_files, params, split, noise_clips, noise_seed,
                                         quiet)
    waves += noise
    keep_labels += [noise_label] * len(noise)
    names += noise_names
    if not waves:
        raise UserError(f"the {split} split of {corpus.root} is empty; check validation_list.txt / "
                        f"testing_list.txt and the word folders")
    mel = _mel_of(waves, params)
    integer = params.frontend == "integer"
    mfcc = torch.from_numpy(clip_features(np.stack(waves), params)) if integer else mfcc_of(mel, params)
    # the exported C front end is checked on the PCM of the evaluation splits
    pcm = torch.from_numpy(to_pcm(np.stack(waves))) if integer and split != "train" else None
    data = SplitData(mel, torch.tensor(keep_labels, dtype=torch.int64), names, skipped, mfcc, pcm)
    for features in (data.mel, data.mfcc):
        check_finite_features(features, names, f"the {split} split of {corpus.root}")
    bank = _mel_of(noise_bank_waves(corpus.root, corpus.noise_files, params), params) if with_noise_bank else None
    blob = {"mel": data.mel, "labels": data.labels, "names": data.names, "skipped": skipped, "mfcc": data.mfcc}
    if pcm is not None:
        blob["pcm"] = pcm
    if bank is not None:
        blob["noise_bank"] = bank
    _save_cache(blob, path)
    return data, bank


def _save_cache(blob, path) -> None:
    """Write the cache; a folder we cannot write to costs the next run the features, not this one."""
    try:
        atomic.torch_save(blob, path)
    except OSError as e:
        log.warning("cannot write the feature cache %s (%s); the features are recomputed next time", path, e)
