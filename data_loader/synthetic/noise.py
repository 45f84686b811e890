"""Background-noise recordings of the synthetic corpus (its ``_background_noise_`` folder and
the noise mixed into clips): white, pink, brown, mains hum, babble of synthetic voices, clatter."""
import numpy as np
from scipy import signal

from data_loader.synthetic.speech import bandnoise, butter, smooth, synthesize_speech
from data_loader.synthetic.voices import draw_speaker


def _pink(rng, n, exponent=1.0):
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    f[0] = f[1]
    x = np.fft.irfft(spec / f ** (exponent / 2), n)
    return x / np.std(x)


def _hum(rng, n, sr):
    t = np.arange(n) / sr
    mains = rng.choice([50.0, 60.0])
    x = sum(rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * mains * k * t + rng.uniform(0, 6.3))
            for k in range(1, 12))
    fan = signal.sosfilt(butter(2, 1200, "lowpass", sr), rng.standard_normal(n))
    fan *= 1 + 0.3 * np.sin(2 * np.pi * 0.3 * t)
    x = x / np.std(x) + 0.7 * fan / np.std(fan)
    return x / np.std(x)


def _clatter(rng, n, sr):
    """Running water and clinking dishes: modulated band noise plus decaying partials."""
    x = bandnoise(rng, n, 400, 6000, sr) * (1 + 0.5 * smooth(rng.standard_normal(n), 0.05 * sr) * 10)
    for _ in range(int(n / sr * 3)):
        start = int(rng.integers(0, n - sr // 2))
        m = int(rng.uniform(0.05, 0.4) * sr)
        tt = np.arange(m) / sr
        ping = sum(np.sin(2 * np.pi * rng.uniform(1500, 6500) * tt) for _ in range(3))
        x[start:start + m] += rng.uniform(2, 8) * ping * np.exp(-tt / rng.uniform(0.02, 0.1))
    return x / np.std(x)


_SYLLABLE_C = ("P", "B", "T", "D", "K", "G", "S", "Z", "F", "V", "M", "N", "L", "R", "W", "Y")
_SYLLABLE_V = ("IY", "IH", "EH", "AE", "AH", "AA", "AO", "UH", "ER", "AY", "OW", "EY", "AW")


def _babble(rng, n, sr, voices=4):
    """Several synthetic talkers saying random syllables at once (no keyword vowels)."""
    out = np.zeros(n)
    for _ in range(voices):
        speaker = draw_speaker(rng)
        pos = int(rng.uniform(0, 0.5) * sr)
        while pos < n:
            phones = []
            for _ in range(int(rng.integers(1, 4))):
                phones += [_SYLLABLE_C[rng.integers(len(_SYLLABLE_C))],
                           _SYLLABLE_V[rng.integers(len(_SYLLABLE_V))]]
            if rng.random() < 0.5:
                phones.append(_SYLLABLE_C[rng.integers(len(_SYLLABLE_C))])
            wave, (a, b) = synthesize_speech(phones, speaker, rng, sr, sr, int(0.02 * sr))
            piece = wave[a:min(sr, b + int(0.05 * sr))] * rng.uniform(0.5, 1.5)
            m = min(len(piece), n - pos)
            out[pos:pos + m] += piece[:m]
            pos += m + int(rng.uniform(0.03, 0.3) * sr)
    return out / np.std(out)


NOISE_FILES = (  # name, seconds
    ("white_noise", 60), ("pink_noise", 60), ("brown_noise", 45),
    ("hum", 40), ("babble", 45), ("clatter", 30),
)


def make_noise(name: str, seconds: float, rng: np.random.Generator, sr: int) -> np.ndarray:
    """One background-noise recording as unit-RMS floats."""
    n = int(seconds * sr)
    if name == "white_noise":
        return rng.standard_normal(n)
    if name == "pink_noise":
        return _pink(rng, n, 1.0)
    if name == "brown_noise":
        return _pink(rng, n, 2.0)
    if name == "hum":
        return _hum(rng, n, sr)
    if name == "babble":
        return _babble(rng, n, sr)
    if name == "clatter":
        return _clatter(rng, n, sr)
    raise ValueError(name)
