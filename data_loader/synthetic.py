"""Built-in synthetic keyword corpus in Google Speech Commands layout (the offline default).

Everything here is *synthetic*: no recording of a person is involved. Each clip is a
word-like sound made by source-filter (formant) synthesis, in the manner of the Klatt
synthesiser, from a phoneme string of the word:

- voiced sounds: a Rosenberg glottal-pulse train (with jitter, shimmer, breathiness and a
  pitch contour) through a cascade of time-varying formant resonators plus a nasal
  pole/zero pair; formant targets are interpolated between phonemes (coarticulation);
- fricatives ("s", "f", "th", voiced "z", "v"): band-limited noise with smooth envelopes;
- plosives ("t", "k", "p", "d", "g", "b"): closure, a short filtered burst, and aspiration
  noise through the formants of the following vowel (voice-onset time).

Per speaker (drawn once): mean pitch, vocal-tract length (scales all formants), speaking
rate, glottal open quotient, breathiness, an "accent" (vowel formant offsets) and a
microphone response. Per clip: pitch contour, durations, formant jitter, loudness, onset,
optional room reverberation (a fifth of the clips) and background noise at a random SNR of
8-30 dB (15% of the clips have none).

Keywords are "one", "two", "three"; class-0 words include Speech Commands' own words and
words that share sounds with the keywords ("tea", "want", "wonder", "throw", "ten"...), so
the task is not trivial. Closer pairs such as "tree"/"three", "tooth"/"two" or "once"/"one"
are left out: the project's small default model mostly could not tell them apart here.
Clips from a fixed seed are byte-identical on every run: each clip's random stream comes
from ``(seed, clip index)`` only, whatever the worker count.

The corpus is built in a hidden sibling folder and renamed into place when complete (with
a ``.complete`` marker), so an interrupted run never leaves a half corpus at ``root``. The
individual WAVs are not written through ``utils.atomic`` (one fsync per clip would be slow);
the folder rename is the atomic step.
"""
import argparse
import functools
import io
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml
from scipy import signal

from utils.atomic import write_text, write_yaml
from utils.errors import UserError, exit_on_user_error
from utils.progress import progress_bar

GENERATOR_VERSION = 2
MARKER = ".complete"
NOISE_FOLDER = "_background_noise_"
KEYWORDS = ("one", "two", "three")
CLIPS_PER_SPEAKER = 12
SPLIT_FRACTION = 0.1  # of speakers, for validation and for testing each

# Word -> ARPAbet-like phoneme string. Keywords first; then Speech Commands' other words;
# then words that share sounds with the keywords, which get a higher share of the class-0 clips.
WORDS = {
    "one": "W AH N", "two": "T UW", "three": "TH R IY",
    "zero": "Z IH R OW", "four": "F AO R", "five": "F AY V", "six": "S IH K S",
    "seven": "S EH V AX N", "eight": "EY T", "nine": "N AY N", "yes": "Y EH S", "no": "N OW",
    "up": "AH P", "down": "D AW N", "left": "L EH F T", "right": "R AY T", "go": "G OW",
    "stop": "S T AA P", "on": "AA N", "off": "AO F",
    "throw": "TH R OW", "thirty": "TH ER T IY", "ten": "T EH N", "tea": "T IY",
    "wonder": "W AH N D ER", "want": "W AA N T", "twenty": "T W EH N T IY", "wine": "W AY N",
}
CONFUSABLE = ("throw", "thirty", "ten", "tea", "wonder", "want", "twenty", "wine")
CONFUSABLE_WEIGHT = 1.25

# Phoneme inventory. Formants (F1, F2, F3) in Hz for an adult male tract (scale 1.0);
# diphthongs have a second target. dur: base duration in ms; av: voicing amplitude.
# fric: (low Hz, high Hz, level relative to vowel RMS) of the frication noise band.
# Stops: formants are the locus; burst band and level, voice-onset time (vot) in ms.
_V, _D, _G, _L, _N, _F, _S = "vowel", "diphthong", "glide", "liquid", "nasal", "fricative", "stop"
PHONEMES = {
    "IY": dict(kind=_V, f=(280, 2250, 2950), dur=130, av=1.0),
    "IH": dict(kind=_V, f=(400, 1900, 2550), dur=95, av=1.0),
    "EH": dict(kind=_V, f=(550, 1770, 2490), dur=110, av=1.0),
    "AE": dict(kind=_V, f=(690, 1660, 2450), dur=140, av=1.0),
    "AH": dict(kind=_V, f=(620, 1220, 2550), dur=110, av=1.0),
    "AA": dict(kind=_V, f=(740, 1100, 2540), dur=140, av=1.0),
    "AO": dict(kind=_V, f=(590, 880, 2540), dur=140, av=1.0),
    "UH": dict(kind=_V, f=(450, 1030, 2380), dur=100, av=1.0),
    "UW": dict(kind=_V, f=(320, 1150, 2250), dur=140, av=0.95),
    "ER": dict(kind=_V, f=(480, 1350, 1700), dur=140, av=0.9),
    "AX": dict(kind=_V, f=(500, 1450, 2500), dur=65, av=0.7),
    "AY": dict(kind=_D, f=(720, 1150, 2500), f2=(420, 1950, 2600), dur=190, av=1.0),
    "OW": dict(kind=_D, f=(560, 950, 2450), f2=(400, 780, 2350), dur=180, av=1.0),
    "EY": dict(kind=_D, f=(500, 1900, 2500), f2=(330, 2200, 2850), dur=170, av=1.0),
    "AW": dict(kind=_D, f=(720, 1250, 2500), f2=(440, 900, 2350), dur=190, av=1.0),
    "W": dict(kind=_G, f=(300, 650, 2200), dur=65, av=0.7),
    "Y": dict(kind=_G, f=(270, 2150, 2950), dur=60, av=0.7),
    "R": dict(kind=_L, f=(360, 1100, 1450), dur=70, av=0.65),
    "L": dict(kind=_L, f=(380, 950, 2650), dur=70, av=0.6),
    "M": dict(kind=_N, f=(260, 1000, 2250), zero=950, dur=75, av=0.5),
    "N": dict(kind=_N, f=(260, 1550, 2600), zero=1600, dur=75, av=0.5),
    "S": dict(kind=_F, f=(350, 1750, 2600), fric=(3800, 8000, 0.45), dur=120, av=0.0),
    "Z": dict(kind=_F, f=(350, 1750, 2600), fric=(3800, 8000, 0.25), dur=85, av=0.35),
    "F": dict(kind=_F, f=(350, 1100, 2400), fric=(1000, 6500, 0.11), dur=100, av=0.0),
    "V": dict(kind=_F, f=(350, 1100, 2400), fric=(1000, 6500, 0.06), dur=70, av=0.35),
    "TH": dict(kind=_F, f=(350, 1500, 2600), fric=(2400, 7800, 0.08), dur=100, av=0.0),
    "P": dict(kind=_S, f=(250, 800, 2200), burst=(500, 2500, 0.35), vot=55, dur=70, av=0.0),
    "B": dict(kind=_S, f=(250, 800, 2200), burst=(500, 2500, 0.2), vot=12, dur=55, av=0.08),
    "T": dict(kind=_S, f=(250, 1750, 2700), burst=(3000, 7000, 0.6), vot=65, dur=65, av=0.0),
    "D": dict(kind=_S, f=(250, 1750, 2700), burst=(3000, 7000, 0.3), vot=15, dur=50, av=0.08),
    "K": dict(kind=_S, f=(250, 1900, 2450), burst=(1500, 3500, 0.55), vot=70, dur=70, av=0.0),
    "G": dict(kind=_S, f=(250, 1900, 2450), burst=(1500, 3500, 0.3), vot=20, dur=55, av=0.08),
}
_SONORANT = (_V, _D, _G, _L, _N)
DURATION_SCALE = 1.35  # words said in isolation are slow
BLOCK_SECONDS = 0.008  # formant parameters are updated every 8 ms


# ----------------------------------------------------------------------------- speakers

def draw_speaker(rng):
    """Parameters of one speaker: voice type sets pitch and tract length together."""
    kind = rng.choice(3, p=[0.45, 0.45, 0.10])  # adult male, adult female, child
    f0 = [rng.uniform(85, 150), rng.uniform(160, 250), rng.uniform(230, 330)][kind]
    scale = [1.0, 1.16, 1.3][kind] * float(np.exp(rng.normal(0, 0.045)))
    accent = {p: [float(np.exp(rng.normal(0, 0.06))), float(np.exp(rng.normal(0, 0.06)))]
              for p, v in PHONEMES.items() if v["kind"] in (_V, _D)}
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


# ----------------------------------------------------------------------------- synthesis

def _segments(phones, speaker, rng, sr):
    """Durations (samples) and formant targets of each phoneme, with per-clip variation."""
    rate = speaker["rate"] * float(np.exp(rng.normal(0, 0.1)))
    segs = []
    last_sonorant = max(i for i, p in enumerate(phones) if PHONEMES[p]["kind"] in _SONORANT)
    for i, p in enumerate(phones):
        ph = PHONEMES[p]
        dur = DURATION_SCALE * ph["dur"] * float(np.exp(rng.normal(0, 0.12))) / rate
        if i == last_sonorant:
            dur *= 1.4  # phrase-final lengthening
        jitter = np.exp(rng.normal(0, 0.04, 3))
        acc = speaker["accent"].get(p, [1.0, 1.0])
        acc = np.array([acc[0], acc[1], 1.0])
        targets = [np.array(ph["f"]) * jitter * acc * speaker["tract"]]
        if "f2" in ph:
            targets.append(np.array(ph["f2"]) * np.exp(rng.normal(0, 0.04, 3)) * acc * speaker["tract"])
        seg = dict(ph=p, kind=ph["kind"], n=int(dur * sr / 1000), targets=targets)
        if ph["kind"] == _S:
            final = i == len(phones) - 1
            seg["released"] = (not final) or rng.random() < 0.6
            vot = ph["vot"] * float(np.exp(rng.normal(0, 0.15))) / rate ** 0.5
            seg["burst"] = int(rng.uniform(6, 12) * sr / 1000) if seg["released"] else 0
            seg["vot"] = int(vot * sr / 1000) if seg["released"] and not final else 0
            if final and seg["released"]:
                seg["vot"] = int(0.5 * vot * sr / 1000)  # released final stop: short breathy puff
        segs.append(seg)
    return segs


def _resonator_sos(freq, bw, sr):
    """Second-order sections (unity DC gain) for resonators; arrays of any matching shape."""
    r = np.exp(-np.pi * bw / sr)
    b1 = 2 * r * np.cos(2 * np.pi * freq / sr)
    c = -r * r
    a = 1 - b1 - c
    z = np.zeros_like(a)
    return np.stack([a, z, z, np.ones_like(a), -b1, -c], axis=-1)


def _antiresonate(x, freq, bw, sr):
    """Inverse of a resonator (a zero pair, the nasal anti-formant) with per-sample ``freq``."""
    r = np.exp(-np.pi * bw / sr)
    b1 = 2 * r * np.cos(2 * np.pi * freq / sr)
    c = -r * r
    x1 = np.concatenate(([0.0], x[:-1]))
    x2 = np.concatenate(([0.0, 0.0], x[:-2]))
    return (x - b1 * x1 - c * x2) / (1 - b1 - c)


def _filter_blocks(sos, x, block):
    """Filter ``x`` with coefficients ``sos[b]`` (sections, 6) for its b-th block of ``block``
    samples, carrying the filter state across blocks (a time-varying cascade)."""
    out = np.array(x, dtype=np.float64, order="C")
    sos = np.ascontiguousarray(sos, dtype=np.float64)
    zi = np.zeros((1, sos.shape[1], 2))
    for b in range(sos.shape[0]):
        s0, s1 = b * block, min((b + 1) * block, len(out))
        out[s0:s1], zi[0] = signal.sosfilt(sos[b], out[s0:s1], zi=zi[0])  # scipy's public API only
    return out


@functools.lru_cache(maxsize=4096)
def _butter(order, cutoff, btype, sr):
    """Cached Butterworth design; cut-offs are rounded by the callers so the cache hits."""
    return signal.butter(order, cutoff, btype=btype, fs=sr, output="sos")


def _smooth(x, width):
    """Triangular moving average over about ``width`` samples (two box filters), same length."""
    half = max(1, int(width) // 4)
    for _ in range(2):
        c = np.cumsum(np.concatenate((np.zeros(half + 1), x, np.zeros(half))))
        x = (c[2 * half + 1:] - c[:-2 * half - 1]) / (2 * half + 1)
    return x


def _bandnoise(rng, n, lo, hi, sr):
    hi = round(min(hi, 0.47 * sr), -1)
    lo = round(min(lo, 0.6 * hi), -1)
    sos = _butter(2, (lo, hi), "bandpass", sr)
    x = signal.sosfilt(sos, rng.standard_normal(n + 256))[256:]
    return x / (np.std(x) + 1e-12)


def synthesize_speech(phones, speaker, rng, sr, n_samples, onset):
    """Clean speech of one phoneme string starting at sample ``onset``, in a buffer of
    ``n_samples``; returns (wave, (start, end)) with wave scaled to RMS 1 over the word."""
    segs = _segments(phones, speaker, rng, sr)
    total = sum(s["n"] + s.get("burst", 0) + s.get("vot", 0) for s in segs)
    limit = n_samples - onset - int(0.03 * sr)
    if total > limit:  # too long for the buffer: speak faster
        factor = limit / total
        for s in segs:
            for key in ("n", "burst", "vot"):
                if key in s:
                    s[key] = int(s[key] * factor)
    av = np.zeros(n_samples)
    ah = np.zeros(n_samples)
    fric = np.zeros(n_samples)
    key_t, key_f, key_z = [], [], []
    nasal_pole = 270.0 * speaker["tract"]
    t = onset
    for i, s in enumerate(segs):
        ph = PHONEMES[s["ph"]]
        a, n = t, s["n"]
        zero = ph["zero"] * speaker["tract"] if "zero" in ph else nasal_pole  # pole = zero: no nasality
        if s["kind"] in _SONORANT:
            amp = ph["av"] * float(np.exp(rng.normal(0, 0.1)))
            av[a:a + n] = amp
            if s["kind"] == _D:
                pts = [(0.2, s["targets"][0]), (0.85, s["targets"][1])]
            elif s["kind"] == _G:
                pts = [(0.5, s["targets"][0])]
            elif s["kind"] == _V:
                pts = [(0.3, s["targets"][0]), (0.7, s["targets"][0])]
            else:
                pts = [(0.35, s["targets"][0]), (0.65, s["targets"][0])]
            for rel, f in pts:
                key_t.append(a + rel * n)
                key_f.append(f)
                key_z.append(zero)
            t += n
        elif s["kind"] == _F:
            lo, hi, level = ph["fric"]
            scale = speaker["tract"] ** 0.5
            noise = _bandnoise(rng, n, lo * scale, hi * scale, sr)
            env = np.ones(n)
            ramp_in, ramp_out = min(n // 3, int(0.025 * sr)), min(n // 3, int(0.02 * sr))
            env[:ramp_in] = np.linspace(0, 1, ramp_in)
            env[n - ramp_out:] = np.linspace(1, 0, ramp_out)
            fric[a:a + n] += noise * env * level * float(np.exp(rng.normal(0, 0.2)))
            av[a:a + n] = ph["av"]
            key_t.append(a + 0.5 * n)
            key_f.append(s["targets"][0])
            key_z.append(nasal_pole)
            t += n
        else:  # stop: closure, burst, aspiration (formants move toward the next target)
            av[a:a + n] = ph["av"]
            key_t += [a, a + n]
            key_f += [s["targets"][0], s["targets"][0]]
            key_z += [nasal_pole, nasal_pole]
            t += n
            if s["burst"]:
                lo, hi, level = ph["burst"]
                b = s["burst"]
                tau = b / 2.5
                env = np.exp(-np.arange(b) / tau)
                env[: max(1, b // 8)] *= np.linspace(0.3, 1, max(1, b // 8))
                burst = _bandnoise(rng, b, lo * speaker["tract"] ** 0.5, hi * speaker["tract"] ** 0.5, sr)
                fric[t:t + b] += burst * env * level * 2.0 * float(np.exp(rng.normal(0, 0.2)))
                t += b
            if s["vot"]:
                v = s["vot"]
                if ph["av"] > 0:  # voiced stop: voicing starts soon after the burst
                    av[t:t + v] = 0.6
                    ah[t:t + v] = 0.05
                else:
                    ah[t:t + v] = 0.3 * float(np.exp(rng.normal(0, 0.25)))
                t += v
    end = t
    # breathy release at the end of the word
    tail = int(0.04 * sr)
    ah[end:end + tail] += np.linspace(0.08, 0, len(ah[end:end + tail]))
    av = _smooth(av, 0.012 * sr)
    ah = _smooth(ah, 0.006 * sr)

    # pitch: declination (or a rise), slow wobble and jitter
    rise = rng.random() < 0.15
    f0c = speaker["f0"] * float(np.exp(rng.normal(0, 0.06)))
    start_r, end_r = (0.95, 1.2) if rise else (rng.uniform(1.0, 1.15), rng.uniform(0.72, 0.92))
    pos = np.clip((np.arange(n_samples) - onset) / max(1, end - onset), 0, 1)
    f0 = f0c * (start_r + (end_r - start_r) * pos)
    tt = np.arange(n_samples) / sr
    f0 *= 1 + 0.02 * np.sin(2 * np.pi * rng.uniform(2, 6) * tt + rng.uniform(0, 6.3))
    f0 *= 1 + 0.01 * _smooth(rng.standard_normal(n_samples), sr / f0c) * np.sqrt(sr / f0c)
    phase = np.cumsum(f0 / sr)
    frac = phase % 1.0
    oq = speaker["oq"]
    rise_q, fall_q = 0.65 * oq, 0.35 * oq
    g = np.where(frac < rise_q, 0.5 * (1 - np.cos(np.pi * frac / rise_q)),
                 np.where(frac < oq, np.cos(0.5 * np.pi * (frac - rise_q) / fall_q), 0.0))
    shimmer = np.exp(rng.normal(0, 0.05, int(phase[-1]) + 2))
    g = g * shimmer[phase.astype(int)]
    dg = np.diff(g, prepend=0.0)
    dg /= np.std(dg) + 1e-12
    noise = rng.standard_normal(n_samples)
    source = av * (dg + speaker["breath"] * 3.0 * noise * (0.3 + g)) + ah * 4.0 * noise

    # formant tracks at block centres, cascade filtering block by block (state carried over)
    block = max(16, int(BLOCK_SECONDS * sr))
    lo = max(0, onset - block)
    hi = min(n_samples, end + int(0.08 * sr))
    n_blocks = (hi - lo + block - 1) // block
    centres = lo + (np.arange(n_blocks) + 0.5) * block
    key_t = np.asarray(key_t, dtype=float)
    key_f = np.asarray(key_f)
    order = np.argsort(key_t, kind="stable")
    key_t, key_f, key_z = key_t[order], key_f[order], np.asarray(key_z)[order]
    freqs = [np.interp(centres, key_t, key_f[:, k]) for k in range(3)]
    tract = speaker["tract"]
    freqs.append(np.full(n_blocks, 3300.0 * tract))
    freqs.append(np.full(n_blocks, 3850.0 * tract))
    bws = [80.0, 100.0, 150.0, 220.0, 280.0]
    nyq = sr / 2
    sections = []
    for k, f in enumerate(freqs):
        if k < 3 or f[0] < 0.45 * sr:
            f = np.minimum(f, 0.45 * sr)
            bw = np.full(n_blocks, bws[k] * speaker["bw"])
            if k == 0:
                open_glottis = av[np.minimum(centres.astype(int), n_samples - 1)] < 0.3
                bw = bw + 40.0 * open_glottis  # losses through the open glottis widen F1
            sections.append(_resonator_sos(f, bw, sr))
    sections.append(_resonator_sos(np.full(n_blocks, nasal_pole), np.full(n_blocks, 100.0), sr))
    sos = np.stack(sections, axis=1)  # (blocks, sections, 6)
    # The nasal zero is an FIR with large coefficients: it is applied sample by sample, since
    # swapping its coefficients per block (with carried state) would click.
    zeros = np.minimum(np.interp(np.arange(lo, hi), key_t, key_z), 0.9 * nyq)
    source = _antiresonate(source[lo:hi], zeros, 100.0, sr)
    out = np.zeros(n_samples)
    out[lo:hi] = _filter_blocks(sos, source, block)
    core = av > 0.5
    ref = np.sqrt(np.mean(out[core] ** 2)) if core.any() else np.sqrt(np.mean(out ** 2)) + 1e-12
    out += fric * ref
    span = out[onset:end]
    out /= np.sqrt(np.mean(span ** 2)) + 1e-12
    return out, (onset, end)


def _channel(x, speaker, rng, sr):
    """Microphone (high-pass, low-pass) and, for some clips, a small room."""
    x = signal.sosfilt(_butter(2, round(speaker["highpass"]), "highpass", sr), x)
    x = signal.sosfilt(_butter(2, round(min(speaker["lowpass"], 0.45 * sr)), "lowpass", sr), x)
    if rng.random() < 0.2:
        rt60 = rng.uniform(0.15, 0.4)
        n = int(rt60 * sr)
        ir = rng.standard_normal(n) * np.exp(-6.9 * np.arange(n) / n) * rng.uniform(0.05, 0.3)
        ir[0] = 1.0
        x = signal.oaconvolve(x, ir)[: len(x)]
    return x


# ----------------------------------------------------------------------------- noise

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
    fan = signal.sosfilt(_butter(2, 1200, "lowpass", sr), rng.standard_normal(n))
    fan *= 1 + 0.3 * np.sin(2 * np.pi * 0.3 * t)
    x = x / np.std(x) + 0.7 * fan / np.std(fan)
    return x / np.std(x)


def _clatter(rng, n, sr):
    """Running water and clinking dishes: modulated band noise plus decaying partials."""
    x = _bandnoise(rng, n, 400, 6000, sr) * (1 + 0.5 * _smooth(rng.standard_normal(n), 0.05 * sr) * 10)
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


def make_noise(name, seconds, rng, sr):
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


def _write_wav(path, samples, sr):
    """16-bit PCM WAV. Through memory: soundfile's close() would fsync every single file."""
    buf = io.BytesIO()
    sf.write(buf, samples, sr, subtype="PCM_16", format="WAV")
    Path(path).write_bytes(buf.getvalue())


def _to_int16(x, peak=0.5):
    """Scale unit-RMS floats so the peak is ``peak`` of full scale, as int16."""
    x = x * (peak / (np.max(np.abs(x)) + 1e-12))
    return np.round(x * 32767).astype(np.int16)


# ----------------------------------------------------------------------------- one clip

_WORKER = {}


def _init_worker(out_dir, sr, noises):
    _WORKER.update(out_dir=Path(out_dir), sr=sr, noises=noises)


def render_clip(word, speaker, rng, sr, noises):
    """One finished clip (int16, ``sr`` samples): speech, channel, loudness and noise."""
    n = sr
    phones = WORDS[word].split()
    onset = int(rng.uniform(0.04, 0.4) * sr)
    speech, (a, b) = synthesize_speech(phones, speaker, rng, sr, n, onset)
    speech = _channel(speech, speaker, rng, sr)
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


def _render_task(task):
    index, word, rel, speaker, seed = task
    w = _WORKER
    rng = np.random.default_rng([seed, 2, index])
    audio = render_clip(word, speaker, rng, w["sr"], w["noises"])
    _write_wav(w["out_dir"] / rel, audio, w["sr"])
    return rel


# ----------------------------------------------------------------------------- the corpus

def _largest_remainder(total, weights):
    weights = np.asarray(weights, dtype=float)
    exact = total * weights / weights.sum()
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: total - counts.sum()]:
        counts[i] += 1
    return counts


def plan_corpus(n_clips, seed, keyword_fraction):
    """Which word each clip says, by which speaker, in which split: a list of (index, word,
    relative path, speaker params, split, speaker id). A pure function of its arguments."""
    rng = np.random.default_rng([seed, 0])
    n_kw = int(round(n_clips * keyword_fraction))
    kw_counts = _largest_remainder(n_kw, [1, 1, 1])
    others = [w for w in WORDS if w not in KEYWORDS]
    other_counts = _largest_remainder(n_clips - n_kw, [CONFUSABLE_WEIGHT if w in CONFUSABLE else 1.0
                                                       for w in others])
    words = [w for w, c in zip(KEYWORDS, kw_counts) for _ in range(c)]
    words += [w for w, c in zip(others, other_counts) for _ in range(c)]
    words = [words[i] for i in rng.permutation(len(words))]

    n_speakers = max(10, int(round(n_clips / CLIPS_PER_SPEAKER)))
    ids = []
    while len(ids) < n_speakers:
        sid = f"{int(rng.integers(0, 2 ** 32)):08x}"
        if sid not in ids:
            ids.append(sid)
    speakers = [draw_speaker(np.random.default_rng([seed, 1, i])) for i in range(n_speakers)]
    order = rng.permutation(n_speakers)
    n_held = max(1, int(round(SPLIT_FRACTION * n_speakers)))
    split_of = {}
    for rank, s in enumerate(order):
        split_of[s] = "validation" if rank < n_held else "testing" if rank < 2 * n_held else "training"
    speaker_of_clip = np.arange(n_clips) % n_speakers
    speaker_of_clip = speaker_of_clip[rng.permutation(n_clips)]
    seen = Counter()
    plan = []
    for i, (word, s) in enumerate(zip(words, speaker_of_clip)):
        k = seen[(s, word)]
        seen[(s, word)] += 1
        rel = f"{word}/{ids[s]}_nohash_{k}.wav"
        plan.append((i, word, rel, speakers[s], split_of[s], ids[s]))
    return plan


def _summarize(plan):
    words = Counter(p[1] for p in plan)
    splits = Counter(p[4] for p in plan)
    per_split = {s: {"clips": splits.get(s, 0),
                     "speakers": len({p[5] for p in plan if p[4] == s}),
                     **{w: sum(1 for p in plan if p[4] == s and p[1] == w) for w in KEYWORDS}}
                 for s in ("training", "validation", "testing")}
    return {"clips": len(plan), "words": dict(sorted(words.items())),
            "keywords": {w: words.get(w, 0) for w in KEYWORDS},
            "unknown": sum(c for w, c in words.items() if w not in KEYWORDS),
            "speakers": len({p[5] for p in plan}), "splits": per_split}


def _readme(params, summary):
    return (
        "# Synthetic keyword corpus (not real speech)\n\n"
        "Made by `python3 -m data_loader.synthetic`: formant-synthesised word-like sounds, laid out\n"
        "like Google Speech Commands (`<word>/<speaker>_nohash_<n>.wav`, `_background_noise_/`,\n"
        "`validation_list.txt`, `testing_list.txt`; every other clip is training data).\n"
        "Splits are speaker-disjoint. Use it to exercise the pipeline offline; accuracy on it says\n"
        "little about accuracy on real recordings.\n\n"
        f"Parameters: {params}\n\n"
        f"{summary['clips']} clips from {summary['speakers']} synthetic speakers; "
        f"keywords {summary['keywords']}, other words {summary['unknown']}.\n"
    )


def _stale_partials(root):
    """Leftover build folders of runs that died (their process no longer exists)."""
    for p in root.parent.glob(f".{root.name}.partial-*"):
        try:
            pid = int(p.name.rsplit("-", 2)[-2])
            os.kill(pid, 0)
        except ProcessLookupError:
            yield p
        except (ValueError, IndexError, PermissionError):
            continue


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_args(n_clips, seed, sample_rate, keyword_fraction):
    if not isinstance(n_clips, (int, np.integer)) or n_clips < 30:
        raise UserError(f"--clips must be a whole number of at least 30, got {n_clips!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"--seed must be a whole number >= 0, got {seed!r}")
    if not isinstance(sample_rate, (int, np.integer)) or not 8000 <= sample_rate <= 48000:
        raise UserError(f"sample rate must be a whole number of Hz from 8000 to 48000, got {sample_rate!r}")
    if not 0 < keyword_fraction < 1:
        raise UserError(f"keyword fraction must be between 0 and 1 (exclusive), got {keyword_fraction!r}")


def generate_corpus(root, n_clips=4000, seed=0, sample_rate=16000, keyword_fraction=0.3,
                    progress=True, *, workers=None):
    """Write a synthetic corpus at ``root`` (or reuse a complete one); return its summary.

    ``workers``: processes to use (default: 2, or 1 for small corpora); the output does not
    depend on it.
    """
    _check_args(n_clips, seed, sample_rate, keyword_fraction)
    root = Path(root)
    params = {"generator_version": GENERATOR_VERSION, "n_clips": int(n_clips), "seed": int(seed),
              "sample_rate": int(sample_rate), "keyword_fraction": float(keyword_fraction)}
    if (root / MARKER).is_file():
        return _reuse(root, params)
    if root.exists():
        if root.is_dir() and not any(root.iterdir()):
            root.rmdir()
        else:
            raise UserError(f"{root} exists but is not a complete synthetic corpus (no {MARKER} "
                            f"marker); delete it or choose another --out folder")
    root.parent.mkdir(parents=True, exist_ok=True)
    for stale in _stale_partials(root):
        shutil.rmtree(stale, ignore_errors=True)

    plan = plan_corpus(n_clips, seed, keyword_fraction)
    summary = _summarize(plan)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-{os.getpid()}-", dir=root.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; the corpus should not be
    tasks = [(i, word, rel, speaker, seed) for i, word, rel, speaker, _, _ in plan]
    workers = workers or (1 if n_clips < 600 else 2)
    bar = progress_bar(enabled=progress, total=len(NOISE_FILES) + len(tasks), unit="file", desc="synthesising")
    try:
        with bar:
            noise_dir = tmp / NOISE_FOLDER
            noise_dir.mkdir()
            noises = []
            for k, (name, seconds) in enumerate(NOISE_FILES):
                x = make_noise(name, seconds, np.random.default_rng([seed, 3, k]), sample_rate)
                _write_wav(noise_dir / f"{name}.wav", _to_int16(x), sample_rate)
                noises.append((x / np.std(x)).astype(np.float32))
                bar.update()
            for word in sorted({p[1] for p in plan}):
                (tmp / word).mkdir()
            if workers == 1:
                _init_worker(tmp, sample_rate, noises)
                try:
                    for task in tasks:
                        _render_task(task)
                        bar.update()
                finally:
                    _WORKER.clear()
            else:
                ctx = multiprocessing.get_context("spawn")  # safe even after torch started threads
                init = (str(tmp), sample_rate, noises)
                with ctx.Pool(workers, initializer=_init_worker, initargs=init) as pool:
                    for _ in pool.imap_unordered(_render_task, tasks, chunksize=16):
                        bar.update()
        by_path = sorted(plan, key=lambda p: p[2])
        for split, fname in (("validation", "validation_list.txt"), ("testing", "testing_list.txt")):
            write_text(tmp / fname, "".join(f"{p[2]}\n" for p in by_path if p[4] == split))
        write_text(tmp / "README.md", _readme(params, summary))
        write_yaml(tmp / MARKER, {**params, "summary": summary})
        for name in ("validation_list.txt", "testing_list.txt", "README.md", MARKER):
            os.chmod(tmp / name, 0o666 & ~_umask())  # atomic writes leave mkstemp's private mode
        try:
            os.rename(tmp, root)
        except OSError:
            if (root / MARKER).is_file():  # another run finished first
                shutil.rmtree(tmp, ignore_errors=True)
                return _reuse(root, params)
            raise UserError(f"cannot move the new corpus into {root} (it appeared meanwhile?); "
                            f"delete {root} and run again")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"root": str(root), "reused": False, **params, **summary}


def _reuse(root, params):
    try:
        marker = yaml.safe_load((root / MARKER).read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        raise UserError(f"{root / MARKER} is unreadable; delete {root} and generate the corpus again")
    if not isinstance(marker, dict) or "summary" not in marker:
        raise UserError(f"{root} has a {MARKER} marker that is not a synthetic corpus's; "
                        f"choose another --out folder")
    if marker.get("generator_version") != GENERATOR_VERSION:
        raise UserError(f"{root} was made by version {marker.get('generator_version')} of the synthetic "
                        f"generator, whose clips differ from this version's ({GENERATOR_VERSION}); "
                        f"delete {root} and run again, or choose another --out folder")
    old = {k: marker.get(k) for k in params}
    if old != params:
        print(f"note: {root} was generated with {old}, not {params}; using it as it is "
              f"(delete it to regenerate)", file=sys.stderr)
    return {"root": str(root), "reused": True, **old, **marker["summary"]}


def summary_line(summary):
    s = summary["splits"]
    kw = ", ".join(f"{w} {c}" for w, c in summary["keywords"].items())
    verb = "reused" if summary.get("reused") else "wrote"
    return (f"{verb} synthetic corpus {summary['root']}: {summary['clips']} clips ({kw}, other words "
            f"{summary['unknown']}) from {summary['speakers']} speakers; train "
            f"{s['training']['clips']} / validation {s['validation']['clips']} / "
            f"test {s['testing']['clips']}")


@exit_on_user_error
def main(argv=None):
    parser = argparse.ArgumentParser(description="Write the synthetic keyword corpus (not real speech) "
                                                 "in Speech Commands layout.")
    parser.add_argument("--out", default="data/synthetic_kws", help="corpus folder (default %(default)s)")
    parser.add_argument("--clips", type=int, default=4000, help="number of word clips (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    parser.add_argument("--keyword-fraction", type=float, default=0.3,
                        help="share of clips saying one/two/three (default %(default)s)")
    parser.add_argument("--sample-rate", type=int, default=16000, help="Hz (default %(default)s)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default 2)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    t0 = time.time()
    summary = generate_corpus(args.out, n_clips=args.clips, seed=args.seed, sample_rate=args.sample_rate,
                              keyword_fraction=args.keyword_fraction, progress=not args.no_progress,
                              workers=args.workers)
    print(f"{summary_line(summary)} in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
