"""One finished clip (speech, channel, loudness, noise) and its WAV file, also in worker
processes; each clip's random stream comes from ``(seed, clip index)`` alone."""
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from data_loader.synthetic.lexicon import WORDS
from data_loader.synthetic.speech import channel, synthesize_speech


def write_wav(path: str | os.PathLike, samples: np.ndarray, sr: int) -> None:
    """16-bit PCM WAV. Through memory: soundfile's close() would fsync every single file."""
    buf = io.BytesIO()
    sf.write(buf, samples, sr, subtype="PCM_16", format="WAV")
    Path(path).write_bytes(buf.getvalue())


def to_int16(x: np.ndarray, peak: float = 0.5) -> np.ndarray:
    """Scale unit-RMS floats so the peak is ``peak`` of full scale, as int16."""
    x = x * (peak / (np.max(np.abs(x)) + 1e-12))
    return np.round(x * 32767).astype(np.int16)


WORKER = {}


def init_worker(out_dir: str | os.PathLike, sr: int, noises: Sequence[np.ndarray]) -> None:
    WORKER.update(out_dir=Path(out_dir), sr=sr, noises=noises)


def render_clip(word: str, speaker: Mapping[str, Any], rng: np.random.Generator, sr: int,
                noises: Sequence[np.ndarray]) -> np.ndarray:
    """One finished clip (int16, ``sr`` samples): speech, channel, loudness and noise."""
    n = sr
    phones = WORDS[word].split()
    onset = int(rng.uniform(0.04, 0.4) * sr)
    speech, (a, b) = synthesize_speech(phones, speaker, rng, sr, n, onset)
    speech = channel(speech, speaker, rng, sr)
    level = 10 ** (rng.uniform(-34, -14) / 20)  # speech RMS over the word, re full scale
    speech *= level / (np.sqrt(np.mean(speech[a:b] ** 2)) + 1e-12)
    mix = speech + rng.standard_normal(n) * 10 ** (-75 / 20)  # converter noise floor
    r = rng.random()
    snr = rng.uniform(8, 15) if r < 0.35 else rng.uniform(15, 30) if r < 0.85 else None
    if snr is not None and noises:
        noise = noises[int(rng.integers(len(noises)))]
        start = int(rng.integers(0, len(noise) - n))
        mix += noise[start:start + n] * level / 10 ** (snr / 20)
    peak = np.max(np.abs(mix))
    if peak > 0.98:
        mix *= 0.98 / peak
    return np.round(mix * 32767).astype(np.int16)


def render_task(task: tuple[int, str, str, Mapping[str, Any], int]) -> str:
    index, word, rel, speaker, seed = task
    w = WORKER
    rng = np.random.default_rng([seed, 2, index])
    audio = render_clip(word, speaker, rng, w["sr"], w["noises"])
    write_wav(w["out_dir"] / rel, audio, w["sr"])
    return rel
