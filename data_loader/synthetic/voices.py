"""Synthetic speakers: one draw per speaker of pitch, tract length, rate, voice quality,
accent and microphone band, so clips of one speaker share a voice and splits can be speaker-disjoint."""
from typing import Any

import numpy as np

from data_loader.synthetic.lexicon import DIPHTHONG, PHONEMES, VOWEL


def draw_speaker(rng: np.random.Generator) -> dict[str, Any]:
    """Parameters of one speaker: voice type sets pitch and tract length together."""
    kind = rng.choice(3, p=[0.45, 0.45, 0.10])  # adult male, adult female, child
    f0 = [rng.uniform(85, 150), rng.uniform(160, 250), rng.uniform(230, 330)][kind]
    scale = [1.0, 1.16, 1.3][kind] * float(np.exp(rng.normal(0, 0.045)))
    accent = {p: [float(np.exp(rng.normal(0, 0.06))), float(np.exp(rng.normal(0, 0.06)))]
              for p, v in PHONEMES.items() if v["kind"] in (VOWEL, DIPHTHONG)}
    return {
        "f0": float(f0),
        "tract": float(scale),
        "rate": float(np.exp(rng.normal(0, 0.15))),
        "oq": float(rng.uniform(0.45, 0.75)),
        "breath": float(rng.uniform(0.02, 0.25)),
        "bw": float(rng.uniform(0.8, 1.5)),
        "accent": accent,
        "highpass": float(rng.uniform(50, 250)),
        "lowpass": float(rng.choice([3400.0, 4500.0, 6000.0, 7800.0], p=[0.08, 0.17, 0.35, 0.40])),
    }
