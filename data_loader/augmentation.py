"""Training-time augmentation in the mel power domain: random time shift, background noise mixed
at a random signal-to-noise ratio, random gain, a random warp of the mel axis (a stand-in for
vocal-tract-length perturbation) and a random time stretch (speaking rate): a corpus may hold few
speakers of each keyword, and a new speaker differs in loudness, pitch, tract length and pace.

Working on cached mel power spectra (where the powers of independent sounds add, up to a zero-mean
cross term) keeps augmentation a few tensor operations per batch instead of re-reading audio and
re-running the STFT, so it costs a small fraction of an epoch. It is deterministic: every draw
comes from the generator the caller passes.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from numpy.typing import ArrayLike



@dataclass
class AugmentParams:
    enabled: bool = True
    time_shift_ms: float = 100.0     # shift uniformly in [-time_shift_ms, +time_shift_ms]
    noise_prob: float = 0.8          # chance that a clip gets background noise
    snr_db: tuple = (0.0, 20.0)      # SNR range, uniform in dB
    snr_reference: str = "window"    # signal power of the SNR: the whole window, or its speech frames
    gain_db: tuple = (0.0, 0.0)      # loudness change, uniform in dB
    warp: float = 0.0                # mel-axis scale factor drawn uniformly in [1 - warp, 1 + warp]
    stretch: float = 0.0             # time scale (speaking rate) in [1 - stretch, 1 + stretch], centred
    spec_time_masks: int = 0         # SpecAugment: masked frame spans per clip ...
    spec_time_width: int = 0         # ... each up to this many frames
    spec_freq_masks: int = 0         # masked mel-band spans per clip ...
    spec_freq_width: int = 0         # ... each up to this many bands
    bandlimit_prob: float = 0.0      # chance that a clip loses everything above bandlimit_hz ...
    bandlimit_hz: float = 4000.0     # ... as a clip recorded at 8 kHz (a phone, a cheap microphone) does
    edge_negatives: float = 0.0      # share of keyword clips moved to the window's edge and labelled 0 ...
    edge_keep: float = 0.3           # ... keeping at most this share of the word's frames in the window

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> AugmentParams:
        """The parameters of a ``data_loader.args.augment`` mapping the config schema checked
        (configuration/schema.py: keys, ranges, ``snr_reference``), with the ranges as tuples."""
        values = dict(values or {})
        for key in ("snr_db", "gain_db"):
            if key in values:
                values[key] = tuple(float(v) for v in values[key])
        return cls(**values)


EDGE_LABEL = 0           # what an edge negative is labelled: not a keyword
SPEECH_FLOOR_DB = 20.0   # "speech" frames: within this of the window's loudest frame


def signal_power(mel: torch.Tensor, reference: str) -> torch.Tensor:
    """Mean power per clip of (n, bands, frames) mel power: over the whole window, or over its
    speech frames only (those within SPEECH_FLOOR_DB of the loudest). A short word padded to a
    one-second window has a window power well below its own: at the same nominal SNR its noise
    would be much weaker than the noise around a word of the same loudness in a stream."""
    if reference == "window":
        return mel.mean(dim=(1, 2))
    frame_power = mel.mean(dim=1)                                     # (n, frames)
    floor = frame_power.amax(dim=1, keepdim=True) * 10.0 ** (-SPEECH_FLOOR_DB / 10.0)
    speech = (frame_power >= floor).to(mel.dtype)
    return (frame_power * speech).sum(dim=1) / speech.sum(dim=1).clamp(min=1.0)


class MelAugmenter:
    def __init__(self, params: AugmentParams, noise_bank: torch.Tensor | None, hop_ms: float,
                 band_hz: ArrayLike | None = None) -> None:
        """``band_hz``: centre frequency of every mel band (needed for band limiting)."""
        self.params = params
        self.noise_bank = noise_bank  # (M, n_mels, frames) mel power, or None
        self.max_shift = int(round(params.time_shift_ms / hop_ms))
        self.above_cutoff = None
        if band_hz is not None:
            self.above_cutoff = torch.as_tensor(band_hz) > params.bandlimit_hz

    def __call__(self, mel: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        p = self.params
        if not p.enabled:
            return mel
        n, _, frames = mel.shape
        if self.max_shift > 0:
            shift = torch.randint(-self.max_shift, self.max_shift + 1, (n,), generator=generator)
            src = torch.arange(frames)[None, :] - shift[:, None]          # (n, frames)
            valid = (src >= 0) & (src < frames)
            idx = src.clamp(0, frames - 1)[:, None, :].expand_as(mel)
            mel = torch.gather(mel, 2, idx) * valid[:, None, :]
        if self.noise_bank is not None and len(self.noise_bank) and p.noise_prob > 0:
            pick = torch.randint(0, len(self.noise_bank), (n,), generator=generator)
            noise = self.noise_bank[pick]
            lo, hi = p.snr_db
            snr = lo + (hi - lo) * torch.rand(n, generator=generator)
            use = torch.rand(n, generator=generator) < p.noise_prob
            sig_power = signal_power(mel, p.snr_reference)
            noise_power = noise.mean(dim=(1, 2)).clamp(min=1e-12)
            gain = sig_power / (noise_power * 10.0 ** (snr / 10.0)) * use
            mel = mel + noise * gain[:, None, None]
        if p.gain_db != (0.0, 0.0):
            lo, hi = p.gain_db
            db = lo + (hi - lo) * torch.rand(n, generator=generator)
            mel = mel * (10.0 ** (db / 10.0))[:, None, None]
        if p.warp > 0:
            factor = 1.0 + p.warp * (2 * torch.rand(n, generator=generator) - 1)
            mel = self._resample_axis(mel, 1, factor, centre=0.0)
        if p.stretch > 0:
            factor = 1.0 + p.stretch * (2 * torch.rand(n, generator=generator) - 1)
            mel = self._resample_axis(mel, 2, factor, centre=(frames - 1) / 2)
        if p.bandlimit_prob > 0 and self.above_cutoff is not None:
            # Bands above the cutoff drop to (almost) nothing, as in a clip resampled from 8 kHz:
            # the model must not take the recording's bandwidth for a property of the word.
            use = torch.rand(n, generator=generator) < p.bandlimit_prob
            cut = (use[:, None] & self.above_cutoff[None, :]).to(mel.dtype)
            mel = mel * (1.0 - cut * (1.0 - 1e-10))[:, :, None]
        if (p.spec_time_masks and p.spec_time_width) or (p.spec_freq_masks and p.spec_freq_width):
            mel = self._spec_masks(mel, generator)
        return mel

    def _spec_masks(self, mel, generator):
        """SpecAugment (Park et al. 2019): spans of frames and of mel bands replaced by the clip's
        mean log level (its geometric mean power), so the model cannot lean on any one part of a
        word or of the spectrum: a new speaker moves both."""
        p = self.params
        n, bands, frames = mel.shape
        masked = torch.zeros(n, bands, frames, dtype=torch.bool)
        for count, width, axis, size in ((p.spec_time_masks, p.spec_time_width, 2, frames),
                                         (p.spec_freq_masks, p.spec_freq_width, 1, bands)):
            pos = torch.arange(size)[None, :]
            for _ in range(count):
                w = torch.randint(0, min(width, size) + 1, (n,), generator=generator)
                start = (torch.rand(n, generator=generator) * (size - w + 1)).long()
                span = (pos >= start[:, None]) & (pos < (start + w)[:, None])   # (n, size)
                masked |= span[:, None, :] if axis == 2 else span[:, :, None]
        fill = mel.clamp(min=1e-10).log().mean(dim=(1, 2)).exp()
        return torch.where(masked, fill[:, None, None], mel)

    def edge_negatives(self, mel: torch.Tensor, labels: torch.Tensor,
                       generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(mel, labels) with a share ``edge_negatives`` of the keyword clips (label > 0) moved so
        that at most ``edge_keep`` of the word's speech frames stay in the window, at its start or
        its end at random, and relabelled 0. A window that holds only the beginning or the end of
        a keyword is what a stream shows the model on every hop before and after the word: as a
        negative it teaches the model to fire on the whole word, not on a part that other words
        share. Speech frames are found as in ``signal_power``; the vacated frames are silence."""
        p = self.params
        n, _, frames = mel.shape
        pick = (labels > 0) & (torch.rand(n, generator=generator) < p.edge_negatives)
        to_end = torch.rand(n, generator=generator) < 0.5
        if not bool(pick.any()):
            return mel, labels
        frame_power = mel.mean(dim=1)
        speech = frame_power >= frame_power.amax(dim=1, keepdim=True) * 10.0 ** (-SPEECH_FLOOR_DB / 10.0)
        pos = torch.arange(frames)
        first = torch.where(speech, pos, frames).amin(dim=1)
        last = torch.where(speech, pos, -1).amax(dim=1)
        keep = ((last - first + 1).to(mel.dtype) * p.edge_keep).floor().long()
        # to the end: the word's first frame lands keep frames before the window's end;
        # to the start: its last frame lands keep - 1 frames after the window's start
        shift = torch.where(to_end, frames - keep - first, keep - 1 - last) * pick
        src = pos[None, :] - shift[:, None]
        valid = (src >= 0) & (src < frames)
        idx = src.clamp(0, frames - 1)[:, None, :].expand_as(mel)
        moved = torch.gather(mel, 2, idx) * valid[:, None, :]
        return moved, torch.where(pick, torch.full_like(labels, EDGE_LABEL), labels)

    @staticmethod
    def _resample_axis(mel, axis, factor, centre):
        """Read ``mel`` along ``axis`` at ``centre + (i - centre) * factor`` with linear
        interpolation; positions outside are the edge value (mel axis) or silence (time axis)."""
        size = mel.shape[axis]
        pos = centre + (torch.arange(size, dtype=mel.dtype)[None, :] - centre) * factor[:, None]
        inside = ((pos >= 0) & (pos <= size - 1)).to(mel.dtype)
        pos = pos.clamp(0, size - 1)
        lo = pos.floor().long()
        hi = (lo + 1).clamp(max=size - 1)
        w = pos - lo
        shape = [-1, 1, 1]
        shape[axis] = size
        expand = list(mel.shape)

        def take(idx: torch.Tensor) -> torch.Tensor:
            return torch.gather(mel, axis, idx.view(shape).expand(expand))
        out = take(lo) * (1 - w).view(shape) + take(hi) * w.view(shape)
        return out if axis == 1 else out * inside.view(shape)
