"""The data loaders named in the config: a Speech Commands-layout corpus (SpeechCommandsDataLoader)
or the lab's IA_DATASET pickle of MFCCs (KeywordDataLoader), as in-memory batches.

Every split lives in memory as one tensor; a batch is an index slice of it. Evaluation splits are
converted to normalised MFCCs once; the training split is augmented and converted per batch.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import WeightedRandomSampler
from numpy.typing import ArrayLike

from data_loader.augmentation import AugmentParams, MelAugmenter
from data_loader.speaker_balance import speaker_of, speaker_weights
from data_loader.stream_windows import stream_windows
from data_loader.corpus import Corpus, check_words, class_names, scan_corpus, speech_commands_task
from data_loader.dataset import SplitData, load_split
from data_loader.download import ensure_speech_commands
from data_loader.features import FeatureParams, MfccFromMel, mel_band_centres
from data_loader.integer_frontend import MFCC_FL, representable_normalization
from data_loader.ia_dataset import FILE_NAME as IA_FILE, load_ia_splits
from utils.errors import UserError


class FeatureTransform(nn.Module):
    """Mel power -> MFCC normalised per coefficient with the *training* split's statistics (kept in
    the checkpoint, so every later script uses the same ones). With the integer frontend the
    MFCCs of (augmented) mel spectra are rounded to the integer MFCC's grid."""

    def __init__(self, params: FeatureParams, mean: ArrayLike, std: ArrayLike) -> None:
        super().__init__()
        self.mfcc = MfccFromMel(params)
        self.grid = 2.0 ** MFCC_FL if params.frontend == "integer" else None
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        mfcc = self.mfcc(mel)
        if self.grid is not None:
            mfcc = mfcc.mul_(self.grid).round_().div_(self.grid)
        return mfcc.sub_(self.mean).div_(self.std)

    def normalised(self, mfcc: torch.Tensor) -> torch.Tensor:
        """What ``forward`` gives for the mel spectra whose MFCCs ``mfcc`` are (the same ops on the
        same values); with mean 0 and std 1 that is ``mfcc`` itself, not a copy."""
        if not (self.mean.any() or self.std.ne(1).any()):
            return mfcc
        return mfcc.sub(self.mean).div_(self.std)


def mean_std(data: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
             chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-coefficient (last axis) mean and standard deviation, in float64 and two passes, of
    ``transform(data)`` (or ``data``), a chunk of rows at a time: a float64 copy of a whole
    training split, or its features next to its mel spectra, would add hundreds of MB to the
    step's peak memory."""
    def chunks() -> Iterator[torch.Tensor]:
        for i in range(0, len(data), chunk):
            with torch.no_grad():
                part = data[i:i + chunk] if transform is None else transform(data[i:i + chunk])
            yield part.reshape(-1, part.shape[-1]).double()
    total, n = 0.0, 0
    for rows in chunks():
        total, n = total + rows.sum(0), n + rows.shape[0]
    mean = total / n
    squares = sum((rows - mean).square_().sum(0) for rows in chunks())
    std = (squares / max(n - 1, 1)).sqrt()
    return mean.float(), std.clamp(min=1e-6).float()


def raw_normalization(n_mfcc: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean 0 and std 1: the model reads the MFCCs as computed (``normalize: false``). The lab's
    code trains on them so; with its 15 epochs at Adam 1e-3 the raw coefficients, whose low
    orders have standard deviations of tens to a hundred, learn faster than normalised ones."""
    return torch.zeros(int(n_mfcc)), torch.ones(int(n_mfcc))


def _converted(transform, data, batch_size=512):
    """``transform`` of every row of ``data``, a batch at a time, into one preallocated tensor."""
    with torch.no_grad():
        first = transform(data[:batch_size])
        out = torch.empty((len(data),) + tuple(first.shape[1:]), dtype=first.dtype)
        out[:len(first)] = first
        for i in range(batch_size, len(data), batch_size):
            out[i:i + batch_size] = transform(data[i:i + batch_size])
    return out


class InMemoryLoader:
    """Batches of (inputs, labels) sliced from in-memory tensors.

    The order of epoch ``e`` comes from a generator seeded with (seed, e), so a resumed run sees the
    same batches as an uninterrupted one. ``rank``/``world_size`` give each distributed process a
    disjoint shard of every epoch. ``weights`` (one per row, with ``shuffle``): an epoch is as many
    draws with replacement in proportion to them (WeightedRandomSampler, from the same generator,
    so every rank shards the same draws) instead of a permutation.
    """

    CHUNK = 256  # clips per augmentation step: large enough to amortise calls, small enough for cache

    def __init__(self, mel: torch.Tensor | None, labels: torch.Tensor, transform: FeatureTransform | Normalize,
                 batch_size: int, shuffle: bool = False, augmenter: MelAugmenter | None = None, seed: int = 0,
                 rank: int = 0, world_size: int = 1, mfcc: torch.Tensor | None = None,
                 weights: torch.Tensor | None = None) -> None:
        """``mfcc``: the MFCCs of ``mel`` (the feature cache's): without augmentation the inputs are
        these normalised, and ``mel`` is not read."""
        if weights is not None and len(weights) != len(labels):
            raise ValueError(f"{len(weights)} sampling weights for {len(labels)} rows")
        self.labels = labels
        self.weights = weights
        self.transform = transform
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.augmenter = augmenter
        self.seed = seed
        self.epoch = 0
        self.rank, self.world_size = rank, world_size
        self.mel = mel if augmenter is not None else None  # inputs made once below when not augmenting
        self.inputs = None
        if augmenter is None:
            self.inputs = transform.normalised(mfcc) if mfcc is not None else _converted(transform, mel)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _order(self, generator):
        n = len(self.labels)
        if self.shuffle and self.weights is not None:
            order = torch.tensor(list(WeightedRandomSampler(self.weights, n, replacement=True, generator=generator)),
                                 dtype=torch.int64)
        else:
            order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        return order[self.rank::self.world_size]

    @property
    def n_samples(self) -> int:
        return len(range(self.rank, len(self.labels), self.world_size))

    def __len__(self) -> int:
        return -(-self.n_samples // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = self._order(gen)
        inputs, labels = self.inputs, self.labels
        if inputs is None:
            # The order is shared by all ranks; augmentation draws are each rank's own.
            aug_gen = gen if self.rank == 0 else torch.Generator().manual_seed(
                (self.seed * 1_000_003 + self.epoch) * 4099 + self.rank)
            # Augment and convert the whole epoch in a few large chunks (in epoch order), so a
            # batch is still only a slice: per-batch tensor calls would dominate a model this small.
            labels = self.labels[order]
            chunks = []
            with torch.no_grad():
                for i in range(0, len(order), self.CHUNK):
                    mel = self.mel[order[i:i + self.CHUNK]]
                    if self.augmenter.params.enabled and self.augmenter.params.edge_negatives > 0:
                        mel, labels[i:i + self.CHUNK] = self.augmenter.edge_negatives(
                            mel, labels[i:i + self.CHUNK], aug_gen)
                    chunks.append(self.transform(self.augmenter(mel, aug_gen)))
            inputs = torch.cat(chunks)
            order = torch.arange(len(order))
        for i in range(0, len(order), self.batch_size):
            idx = order[i:i + self.batch_size]
            yield inputs[idx], labels[idx]


STREAM_WINDOWS = {"hours": 0.5, "per_keyword": 3, "negatives": 1.0, "seed": 0}   # stream_windows' defaults


class SpeechCommandsDataLoader:
    """Builds the train / validation / test loaders of a corpus in Speech Commands layout."""

    def __init__(self, data_dir: str | os.PathLike, keywords: Iterable[str] = ("one", "two", "three"),
                 batch_size: int = 64, eval_batch_size: int = 1024,
                 background_noise: Mapping[str, int] | None = None, augment: Mapping[str, Any] | None = None,
                 features: Mapping[str, Any] | None = None, cache_dir: str | os.PathLike = "data/cache",
                 download: str | None = None, seed: int = 0, progress: bool = True, normalize: bool = True,
                 task: Mapping[str, Any] | None = None, stream_windows: Mapping[str, Any] | None = None,
                 speaker_balance: float = 0.0) -> None:
        """``task``: the Speech Commands 12-class set-up (silence_share, unknown_share,
        quiet_fraction; see corpus.speech_commands_task); None: the lab's classes.
        ``stream_windows``: windows cut from the training split's stream added to the training
        clips (hours, per_keyword, negatives, seed; see data_loader.stream_windows); None: none.
        ``speaker_balance``: alpha of speaker-balanced sampling of the training split
        (data_loader.speaker_balance); 0: every clip drawn once an epoch."""
        self.data_dir = Path(data_dir)
        self.normalize = bool(normalize)
        if download and not self.data_dir.is_dir():
            ensure_speech_commands(self.data_dir, download, progress=progress)
        self.keywords = tuple(keywords)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        noise = dict(background_noise or {})   # keys and counts checked by the config schema
        self.noise_clips = {s: int(noise.get(s, 0)) for s in ("train", "validation", "test")}
        self.noise_seed = int(noise.get("seed", 0))
        self.augment = AugmentParams.from_dict(augment)
        self.features = FeatureParams.from_dict(features)
        self.cache_dir = cache_dir
        self.seed = seed
        self.progress = progress
        self.shuffle = True  # the lab's KeywordDataLoader may turn it off
        task = dict(task or {})
        self.silence_share = float(task.get("silence_share", 0.0))
        self.unknown_share = task.get("unknown_share")
        self.quiet_fraction = float(task.get("quiet_fraction", 0.1)) if self.silence_share else 0.0
        self.class_names = class_names(self.keywords, self.silence_share > 0)
        self.stream_windows = None if stream_windows is None else {**STREAM_WINDOWS, **stream_windows}
        self.speaker_balance = float(speaker_balance)
        self._corpus = None
        self._splits = {}
        self._noise_bank = None

    @property
    def corpus(self) -> Corpus:
        if self._corpus is None:
            corpus = check_words(scan_corpus(self.data_dir, self.keywords, split_dir=self.cache_dir))
            if self.silence_share or self.unknown_share is not None:
                corpus, silence = speech_commands_task(corpus, self.silence_share, self.unknown_share,
                                                       self.noise_seed)
                if self.silence_share:  # the noise clips are the silence class, so many of them
                    self.noise_clips = silence
            self._corpus = corpus
        return self._corpus

    def split(self, name: str) -> SplitData:
        if name not in self._splits:
            corpus = self.corpus  # first: a silence class sets noise_clips
            silence = len(self.class_names) - 1 if self.silence_share else 0
            data, bank = load_split(corpus, name, self.features, self.noise_clips[name], self.noise_seed,
                                    self.cache_dir, with_noise_bank=(name == "train"), progress=self.progress,
                                    noise_label=silence, quiet=self.quiet_fraction)
            if data.skipped:
                print(f"{len(data.skipped)} unreadable audio file(s) skipped in the {name} split")
            self._splits[name] = data
            if name == "train":
                self._noise_bank = bank
        return self._splits[name]

    def release(self, name: str) -> None:
        """Forget a split (a later ``split(name)`` reads the cache again): a loader that does not
        augment holds its inputs and no longer needs the mel spectra."""
        self._splits.pop(name, None)

    def normalization(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) per MFCC coefficient over the training split; non-finite statistics would
        make every epoch NaN, so they are an error here. ``normalize: false``: mean 0, std 1."""
        if not self.normalize:
            return raw_normalization(self.features.n_mfcc)
        train = self.split("train")
        mean, std = (mean_std(train.mfcc) if train.mfcc is not None  # of un-augmented MFCCs
                     else mean_std(train.mel, MfccFromMel(self.features)))
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all()):
            raise UserError(f"the MFCC normalisation statistics of the training split of {self.data_dir} "
                            f"are not finite; check the training clips")
        if self.features.frontend == "integer":  # folds into a shift: data_loader/integer_frontend.py
            mean, std = (torch.from_numpy(v).float() for v in representable_normalization(mean, std))
        return mean, std

    def transform(self, mean: torch.Tensor, std: torch.Tensor) -> FeatureTransform:
        return FeatureTransform(self.features, mean, std)

    def train_loader(self, mean: torch.Tensor, std: torch.Tensor, rank: int = 0, world_size: int = 1) -> InMemoryLoader:
        data = self.split("train")
        hop_ms = 1000.0 * self.features.hop_length / self.features.sample_rate
        augmenter = (MelAugmenter(self.augment, self._noise_bank, hop_ms, mel_band_centres(self.features))
                     if self.augment.enabled else None)
        mel, labels, mfcc, clips = data.mel, data.labels, data.mfcc, list(data.names)
        if self.stream_windows:
            extra, extra_labels, extra_clips = stream_windows(self.corpus, self.features, **self.stream_windows)
            mel, labels, mfcc = torch.cat([mel, extra]), torch.cat([labels, extra_labels]), None
            clips += extra_clips
            print(f"training on {len(extra_labels)} windows of the training split's stream besides its "
                  f"{len(data.labels)} clips ({int((extra_labels > 0).sum())} around a keyword)")
        weights = None
        if self.speaker_balance > 0:
            weights = speaker_weights([speaker_of(c) for c in clips], labels, self.speaker_balance)
        loader = InMemoryLoader(mel, labels, self.transform(mean, std), self.batch_size,
                                shuffle=self.shuffle, augmenter=augmenter, seed=self.seed, rank=rank,
                                world_size=world_size, mfcc=mfcc, weights=weights)
        if augmenter is None:
            self.release("train")  # the loader holds its inputs; the split is read again if asked for
        return loader

    def eval_loader(self, split: str, mean: torch.Tensor, std: torch.Tensor, rank: int = 0,
                    world_size: int = 1) -> InMemoryLoader:
        data = self.split(split)
        return InMemoryLoader(data.mel, data.labels, self.transform(mean, std), self.eval_batch_size,
                              rank=rank, world_size=world_size, mfcc=data.mfcc)


class Normalize(nn.Module):
    """Precomputed MFCC -> normalised per coefficient with the training split's statistics."""

    def __init__(self, mean: ArrayLike, std: ArrayLike) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class PrecomputedFeatures:
    """Stands for FeatureParams when the features came precomputed from an IA_DATASET pickle; the
    checkpoint records it, so later scripts read the same file and never compute MFCCs from audio."""

    def __init__(self, frames: int = 100, n_mfcc: int = 13) -> None:
        self.frames, self.n_mfcc = int(frames), int(n_mfcc)

    def to_dict(self) -> dict[str, Any]:
        return {"precomputed": IA_FILE, "frames": self.frames, "n_mfcc": self.n_mfcc}


class PrecomputedDataLoader:
    """The splits of an IA_DATASET pickle (MFCCs already computed) as in-memory batches. There are
    no mel spectra to augment, so training is not augmented."""

    def __init__(self, data_dir: str | os.PathLike, keywords: Iterable[str] = ("one", "two", "three"),
                 batch_size: int = 64, eval_batch_size: int = 1024, shuffle: bool = True,
                 validation_split: float | None = None, seed: int = 0, frames: int = 100, n_mfcc: int = 13,
                 progress: bool = True, normalize: bool = True) -> None:
        self.data_dir = Path(data_dir)
        self.normalize = bool(normalize)
        self.keywords = tuple(keywords)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.shuffle, self.seed, self.progress = shuffle, seed, progress
        self.features = PrecomputedFeatures(frames, n_mfcc)
        self.class_names = class_names(self.keywords)
        self.noise_clips = {"train": 0, "validation": 0, "test": 0}
        splits = load_ia_splits(self.data_dir / IA_FILE, len(self.keywords) + 1, frames, n_mfcc, validation_split)
        self._splits = {name: SplitData(x, y, [f"{IA_FILE}:{name}[{i}]" for i in range(len(y))], [])
                        for name, (x, y) in splits.items()}

    def split(self, name: str) -> SplitData:
        return self._splits[name]

    def normalization(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) per MFCC coefficient over the training split (0 and 1: ``normalize: false``)."""
        if not self.normalize:
            return raw_normalization(self.features.n_mfcc)
        return mean_std(self.split("train").mel)

    def release(self, name: str) -> None:
        """Nothing to release: the pickle's MFCCs are the features themselves."""

    def transform(self, mean: torch.Tensor, std: torch.Tensor) -> Normalize:
        return Normalize(mean, std)

    def train_loader(self, mean: torch.Tensor, std: torch.Tensor, rank: int = 0, world_size: int = 1) -> InMemoryLoader:
        data = self.split("train")
        return InMemoryLoader(data.mel, data.labels, self.transform(mean, std), self.batch_size, shuffle=self.shuffle,
                              seed=self.seed, rank=rank, world_size=world_size)

    def eval_loader(self, split: str, mean: torch.Tensor, std: torch.Tensor, rank: int = 0,
                    world_size: int = 1) -> InMemoryLoader:
        data = self.split(split)
        return InMemoryLoader(data.mel, data.labels, self.transform(mean, std), self.eval_batch_size,
                              rank=rank, world_size=world_size)


def KeywordDataLoader(data_dir: str | os.PathLike, batch_size: int = 512, shuffle: bool = True,
                      validation_split: float | None = None, num_workers: int | None = None,
                      features: Mapping[str, Any] | None = None, seed: int = 0, progress: bool = True,
                      **options: Any) -> SpeechCommandsDataLoader | PrecomputedDataLoader:
    """The lab's loader name and keys. ``data_dir`` holding the lab's ``IA_DATASET`` pickle gives its
    precomputed MFCCs; a Speech Commands folder gives SpeechCommandsDataLoader (``options`` are its
    keys). ``shuffle``: reshuffle the training set every epoch. ``validation_split``: used only when
    the pickle has no validation set. ``num_workers`` has no effect: batches are slices of
    in-memory tensors, there are no loader processes."""
    data_dir = Path(data_dir)
    precomputed = bool(features) and "precomputed" in features
    if (data_dir / IA_FILE).is_file():
        if features and not precomputed:
            raise UserError(f"{data_dir} holds an {IA_FILE} pickle, but the checkpoint was trained on features "
                            f"computed from audio; give the corpus it was trained on")
        augment = options.get("augment") or {}
        if augment.get("enabled"):
            print(f"note: {IA_FILE} holds MFCCs, not mel spectra: training is not augmented")
        if options.get("speaker_balance"):
            print(f"note: {IA_FILE} names no speakers: training is not speaker-balanced")
        shape = features or {}
        return PrecomputedDataLoader(data_dir, options.get("keywords", ("one", "two", "three")), batch_size,
                                     options.get("eval_batch_size", 1024), shuffle, validation_split, seed,
                                     shape.get("frames", 100), shape.get("n_mfcc", 13), progress,
                                     options.get("normalize", True))
    if precomputed:
        raise UserError(f"the checkpoint was trained on the precomputed MFCCs of an {IA_FILE} pickle, and "
                        f"{data_dir} holds none; give the folder that holds it (--data-dir)")
    if not data_dir.is_dir() and not options.get("download"):
        raise UserError(f"{data_dir} holds neither the lab's {IA_FILE} nor a Speech Commands corpus; "
                        f"set data_loader.args.data_dir (or --data-dir)")
    loader = SpeechCommandsDataLoader(data_dir, batch_size=batch_size, features=features, seed=seed,
                                      progress=progress, **options)
    loader.shuffle = bool(shuffle)
    return loader
