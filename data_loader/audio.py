"""Reading WAV files as 1-second 16 kHz float clips, with every check on audio in one place.

A WAV header is trusted for nothing: its sample rate must lie in MIN_SAMPLE_RATE..MAX_SAMPLE_RATE
(a header claiming 1 Hz would otherwise turn a few KB into hours of resampled audio), it may hold
at most MAX_CHANNELS channels, and only finite samples are accepted (one NaN would make the
normalisation statistics NaN). The header is checked with ``soundfile.info`` before any sample is
read, and a training clip longer than MAX_CLIP_SECONDS is cropped, centred, by reading only the
frames needed, so memory stays bounded whatever a file claims. Background-noise recordings are
read up to MAX_NOISE_SECONDS (from their start). Long recordings for ``predict.py`` are streamed
with :func:`stream_wave` in blocks of BLOCK_SECONDS.
"""
from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from typing import Any

import numpy as np
import soundfile as sf
import soxr

MIN_SAMPLE_RATE = 4_000
MAX_SAMPLE_RATE = 192_000
MAX_CHANNELS = 16
MAX_CLIP_SECONDS = 10.0     # training/evaluation clips: longer ones are cropped, centred
MAX_NOISE_SECONDS = 600.0   # background-noise recordings: read from the start up to this
BLOCK_SECONDS = 10.0        # block size when streaming a long recording
MAX_SAMPLE_MAGNITUDE = 1e3  # float WAVs: audio lies in [-1, 1]; 1e30 would overflow the power spectrum


class AudioError(Exception):
    """A file that cannot be read as audio (corrupt, truncated, not a WAV, implausible header,
    NaN or infinite samples)."""


def _reason(e):
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def shown(path: str | os.PathLike) -> str:
    """``path`` printable on one line whatever its bytes: a name that is not UTF-8 (held as
    surrogate escapes) or holds control characters is shown with backslash escapes."""
    text = os.fsencode(path).decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _regular(path):
    """``path`` if it is (or links to) a regular file: a FIFO, device or socket would block or
    never end, a dangling link or a link loop is not a clip."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise AudioError(f"{shown(path)}: {e.strerror or type(e).__name__}") from None
    if not stat.S_ISREG(mode):
        raise AudioError(f"{shown(path)}: not a regular file")
    return path


def audio_info(path: str | os.PathLike) -> Any:
    """soundfile's header of ``path`` after checking rate and channels (no sample is read); the
    object ``soundfile.info`` returns (its class is private to soundfile, hence ``Any``)."""
    _regular(path)
    try:
        with open(path, "rb") as f:   # opened by Python: any file name, UTF-8 or not
            info = sf.info(f)
    except Exception as e:  # soundfile raises LibsndfileError, RuntimeError or TypeError
        raise AudioError(f"{shown(path)}: {_reason(e)}") from None
    if not MIN_SAMPLE_RATE <= info.samplerate <= MAX_SAMPLE_RATE:
        raise AudioError(f"{shown(path)}: sample rate {info.samplerate} Hz is outside the supported "
                         f"{MIN_SAMPLE_RATE:,}..{MAX_SAMPLE_RATE:,} Hz")
    if not 1 <= info.channels <= MAX_CHANNELS:
        raise AudioError(f"{shown(path)}: {info.channels} channels (at most {MAX_CHANNELS} are read)")
    return info


def _check_finite(path, data):
    if not np.isfinite(data).all():
        raise AudioError(f"{shown(path)}: holds NaN or infinite samples")
    if data.size and float(np.abs(data).max()) > MAX_SAMPLE_MAGNITUDE:
        raise AudioError(f"{shown(path)}: samples up to {float(np.abs(data).max()):.3g}, far outside the "
                         f"[-1, 1] of audio (at most {MAX_SAMPLE_MAGNITUDE:g} is read)")


def read_wave(path: str | os.PathLike, sample_rate: int, max_seconds: float | None = None,
              centred: bool = True) -> np.ndarray:
    """Mono float32 samples of ``path`` at ``sample_rate`` (any source rate is resampled with
    soxr). With ``max_seconds``, at most that much of the source is read: its centre
    (``centred``) or its start; callers reading files of any length pass a cap."""
    info = audio_info(path)
    start, frames = 0, info.frames
    if max_seconds is not None and info.frames > max_seconds * info.samplerate:
        frames = int(max_seconds * info.samplerate)
        start = (info.frames - frames) // 2 if centred else 0
    try:
        with open(path, "rb") as f:
            data, sr = sf.read(f, start=start, frames=frames, dtype="float32", always_2d=True)
    except Exception as e:
        raise AudioError(f"{shown(path)}: {_reason(e)}") from None
    if data.shape[0] == 0:
        raise AudioError(f"{shown(path)}: no samples")
    _check_finite(path, data)
    wave = data.mean(axis=1)
    if sr != sample_rate:
        wave = soxr.resample(wave, sr, sample_rate, quality="HQ").astype(np.float32)
    return wave


def stream_wave(path: str | os.PathLike, sample_rate: int, block_seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """Yield the mono samples of ``path`` at ``sample_rate`` in blocks, reading (and resampling,
    with soxr's streaming resampler, whose output equals the one-shot resampling) one block of the
    file at a time, so memory does not grow with the file's length."""
    info = audio_info(path)
    block = max(1, int(block_seconds * info.samplerate))
    stream = None
    if info.samplerate != sample_rate:
        stream = soxr.ResampleStream(info.samplerate, sample_rate, 1, dtype="float32", quality="HQ")
    try:
        with open(path, "rb") as raw, sf.SoundFile(raw) as f:
            while True:
                data = f.read(block, dtype="float32", always_2d=True)
                last = data.shape[0] < block or f.tell() >= info.frames
                _check_finite(path, data)
                wave = data.mean(axis=1)
                if stream is not None:
                    wave = stream.resample_chunk(wave, last=last).astype(np.float32)
                if len(wave):
                    yield wave
                if last:
                    return
    except AudioError:
        raise
    except Exception as e:
        raise AudioError(f"{shown(path)}: {_reason(e)}") from None


def fit_length(wave: np.ndarray, length: int) -> np.ndarray:
    """Pad with zeros or crop, centred, to exactly ``length`` samples."""
    n = wave.shape[0]
    if n >= length:
        start = (n - length) // 2
        return wave[start:start + length]
    out = np.zeros(length, dtype=np.float32)
    start = (length - n) // 2
    out[start:start + n] = wave
    return out
