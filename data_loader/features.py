"""MFCC features computed with torch alone (torchaudio does not load beside the CPU torch here).

The pipeline follows librosa's ``feature.mfcc`` step by step, so it can be validated against it:
power STFT (Hann window, centred, zero padded) -> Slaney mel filterbank -> ``power_to_db``
(ref 1, amin 1e-10, top_db 80 per clip) -> orthonormal DCT-II, keeping ``n_mfcc`` coefficients.
``floor_db`` sets amin as a level (10 log10 amin, -100 dB by default): a floor that every frame
applies on its own, where ``top_db``'s floor below the clip's peak needs the whole clip.

It is split in two stages, :class:`MelPower` and :class:`MfccFromMel`, because augmentation mixes
noise and shifts in the mel *power* domain (where sounds add) before the cheap log and DCT.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from utils.errors import UserError


DEFAULT_FLOOR_DB = -100.0


def floor_power(floor_db: float) -> float:
    """The mel power floor (amin) of a level in dB: 1e-10 at the default -100 dB."""
    return 10.0 ** (floor_db / 10.0)


@dataclass(frozen=True)
class FeatureParams:
    sample_rate: int = 16000
    clip_samples: int = 16000
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 40
    fmin: float = 20.0
    fmax: float = 8000.0
    n_mfcc: int = 13
    frames: int = 100
    top_db: float = 80.0
    floor_db: float = DEFAULT_FLOOR_DB  # the mel power floor in dB (librosa's amin 1e-10)
    frontend: str = "float"   # or "integer": data_loader/integer_frontend.py from int16 PCM

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> FeatureParams:
        if values and "precomputed" in values:
            raise UserError(f"this model was trained on precomputed MFCCs ({values['precomputed']} pickle): "
                            f"it has no recipe to compute features from audio; use test.py on that file")
        known = set(cls.__dataclass_fields__)
        unknown = set(values or {}) - known
        if unknown:
            raise UserError(f"unknown feature parameters {sorted(unknown)}; allowed: {sorted(known)}")
        return cls(**(values or {}))

    def to_dict(self) -> dict[str, Any]:
        """The parameters; ``frontend`` only when not float and ``floor_db`` only when not -100, so
        features that do not set them keep their cache keys and checkpoints."""
        values = asdict(self)
        if values["frontend"] == "float":
            del values["frontend"]
        if values["floor_db"] == DEFAULT_FLOOR_DB:
            del values["floor_db"]
        return values


def _hz_to_mel(f):
    """Slaney mel scale (librosa's default, htk=False): linear below 1 kHz, log above."""
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp)


def _mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Triangular Slaney-normalised mel filters, shape (n_mels, n_fft // 2 + 1)."""
    fft_freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32)


def mel_band_centres(params: FeatureParams) -> np.ndarray:
    """Centre frequency (Hz) of every mel band of ``params`` (the peak of its triangle)."""
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(params.fmin), _hz_to_mel(params.fmax), params.n_mels + 2))
    return mel_f[1:params.n_mels + 1].astype(np.float32)


def dct_matrix(n_mels: int, n_mfcc: int) -> np.ndarray:
    """Orthonormal DCT-II as a (n_mels, n_mfcc) matrix (scipy.fft.dct(type=2, norm='ortho'))."""
    n = np.arange(n_mels)
    k = np.arange(n_mfcc)
    basis = np.cos(math.pi / n_mels * (n[:, None] + 0.5) * k[None, :]) * math.sqrt(2.0 / n_mels)
    basis[:, 0] /= math.sqrt(2.0)
    return basis.astype(np.float32)


class MelPower(nn.Module):
    """Waveforms (N, clip_samples) -> mel power spectrogram (N, n_mels, frames)."""

    def __init__(self, params: FeatureParams) -> None:
        super().__init__()
        self.params = params
        self.register_buffer("window", torch.hann_window(params.win_length, periodic=True))
        fb = mel_filterbank(params.sample_rate, params.n_fft, params.n_mels, params.fmin, params.fmax)
        self.register_buffer("filterbank", torch.from_numpy(fb))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        p = self.params
        spec = torch.stft(wave, n_fft=p.n_fft, hop_length=p.hop_length, win_length=p.win_length,
                          window=self.window, center=True, pad_mode="constant", return_complex=True)
        power = spec.real ** 2 + spec.imag ** 2
        return torch.matmul(self.filterbank, power)[..., : p.frames]


class MfccFromMel(nn.Module):
    """Mel power (N, n_mels, frames) -> MFCC (N, 1, frames, n_mfcc), the model's input layout."""

    def __init__(self, params: FeatureParams) -> None:
        super().__init__()
        self.params = params
        self.amin = floor_power(params.floor_db)
        self.register_buffer("dct", torch.from_numpy(dct_matrix(params.n_mels, params.n_mfcc)))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        # in place after the first op: on a batch of thousands of clips, fresh allocations
        # (page faults) would cost more than the arithmetic
        db = torch.clamp(mel, min=self.amin).log10_().mul_(10.0)
        if self.params.top_db is not None:
            peak = db.amax(dim=(-2, -1), keepdim=True)
            db = db.clamp_(min=peak - self.params.top_db)
        return torch.matmul(db.transpose(-1, -2), self.dct).unsqueeze(1)


class Mfcc(nn.Module):
    """Waveforms (N, clip_samples) -> MFCC (N, 1, frames, n_mfcc)."""

    def __init__(self, params: FeatureParams) -> None:
        super().__init__()
        self.mel = MelPower(params)
        self.mfcc = MfccFromMel(params)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.mfcc(self.mel(wave))
