"""Reading WAV files as 1-second 16 kHz float clips."""
import numpy as np
import soundfile as sf
import soxr


class AudioError(Exception):
    """A file that cannot be read as audio (corrupt, truncated, not a WAV)."""


def read_wave(path, sample_rate):
    """Mono float32 samples of ``path`` at ``sample_rate`` (any source rate is resampled with soxr)."""
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError, RuntimeError or TypeError
        raise AudioError(f"{path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: no samples")
    wave = data.mean(axis=1)
    if sr != sample_rate:
        wave = soxr.resample(wave, sr, sample_rate, quality="HQ").astype(np.float32)
    return wave


def fit_length(wave, length):
    """Pad with zeros or crop, centred, to exactly ``length`` samples."""
    n = wave.shape[0]
    if n >= length:
        start = (n - length) // 2
        return wave[start:start + length]
    out = np.zeros(length, dtype=np.float32)
    start = (length - n) // 2
    out[start:start + n] = wave
    return out
