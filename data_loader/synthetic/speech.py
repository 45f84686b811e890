"""Formant (source-filter) synthesis of one word from its phoneme string, in the manner of the
Klatt synthesiser: glottal pulses through time-varying formant resonators for voiced sounds,
band-limited noise for fricatives, closure + burst + aspiration for plosives; then the
speaker's microphone and an optional room."""
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import signal

from data_loader.synthetic.lexicon import (DIPHTHONG, DURATION_SCALE, FRICATIVE, GLIDE, PHONEMES, SONORANT,
                                           STOP, VOWEL)

BLOCK_SECONDS = 0.008  # formant parameters are updated every 8 ms


def _segments(phones, speaker, rng, sr):
    """Durations (samples) and formant targets of each phoneme, with per-clip variation."""
    rate = speaker["rate"] * float(np.exp(rng.normal(0, 0.1)))
    segs = []
    last_sonorant = max(i for i, p in enumerate(phones) if PHONEMES[p]["kind"] in SONORANT)
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
        if ph["kind"] == STOP:
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
def butter(order: int, cutoff: float | tuple[float, float], btype: str, sr: float) -> np.ndarray:
    """Cached Butterworth design; cut-offs are rounded by the callers so the cache hits."""
    return signal.butter(order, cutoff, btype=btype, fs=sr, output="sos")


def smooth(x: np.ndarray, width: float) -> np.ndarray:
    """Triangular moving average over about ``width`` samples (two box filters), same length."""
    half = max(1, int(width) // 4)
    for _ in range(2):
        c = np.cumsum(np.concatenate((np.zeros(half + 1), x, np.zeros(half))))
        x = (c[2 * half + 1:] - c[:-2 * half - 1]) / (2 * half + 1)
    return x


def bandnoise(rng: np.random.Generator, n: int, lo: float, hi: float, sr: float) -> np.ndarray:
    hi = round(min(hi, 0.47 * sr), -1)
    lo = round(min(lo, 0.6 * hi), -1)
    sos = butter(2, (lo, hi), "bandpass", sr)
    x = signal.sosfilt(sos, rng.standard_normal(n + 256))[256:]
    return x / (np.std(x) + 1e-12)


def synthesize_speech(phones: Sequence[str], speaker: Mapping[str, Any], rng: np.random.Generator, sr: int,
                      n_samples: int, onset: int) -> tuple[np.ndarray, tuple[int, int]]:
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
    for s in segs:
        ph = PHONEMES[s["ph"]]
        a, n = t, s["n"]
        zero = ph["zero"] * speaker["tract"] if "zero" in ph else nasal_pole  # pole = zero: no nasality
        if s["kind"] in SONORANT:
            amp = ph["av"] * float(np.exp(rng.normal(0, 0.1)))
            av[a:a + n] = amp
            if s["kind"] == DIPHTHONG:
                pts = [(0.2, s["targets"][0]), (0.85, s["targets"][1])]
            elif s["kind"] == GLIDE:
                pts = [(0.5, s["targets"][0])]
            elif s["kind"] == VOWEL:
                pts = [(0.3, s["targets"][0]), (0.7, s["targets"][0])]
            else:
                pts = [(0.35, s["targets"][0]), (0.65, s["targets"][0])]
            for rel, f in pts:
                key_t.append(a + rel * n)
                key_f.append(f)
                key_z.append(zero)
            t += n
        elif s["kind"] == FRICATIVE:
            lo, hi, level = ph["fric"]
            scale = speaker["tract"] ** 0.5
            noise = bandnoise(rng, n, lo * scale, hi * scale, sr)
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
                burst = bandnoise(rng, b, lo * speaker["tract"] ** 0.5, hi * speaker["tract"] ** 0.5, sr)
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
    av = smooth(av, 0.012 * sr)
    ah = smooth(ah, 0.006 * sr)

    # pitch: declination (or a rise), slow wobble and jitter
    rise = rng.random() < 0.15
    f0c = speaker["f0"] * float(np.exp(rng.normal(0, 0.06)))
    start_r, end_r = (0.95, 1.2) if rise else (rng.uniform(1.0, 1.15), rng.uniform(0.72, 0.92))
    pos = np.clip((np.arange(n_samples) - onset) / max(1, end - onset), 0, 1)
    f0 = f0c * (start_r + (end_r - start_r) * pos)
    tt = np.arange(n_samples) / sr
    f0 *= 1 + 0.02 * np.sin(2 * np.pi * rng.uniform(2, 6) * tt + rng.uniform(0, 6.3))
    f0 *= 1 + 0.01 * smooth(rng.standard_normal(n_samples), sr / f0c) * np.sqrt(sr / f0c)
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


def channel(x: np.ndarray, speaker: Mapping[str, Any], rng: np.random.Generator, sr: int) -> np.ndarray:
    """Microphone (high-pass, low-pass) and, for some clips, a small room."""
    x = signal.sosfilt(butter(2, round(speaker["highpass"]), "highpass", sr), x)
    x = signal.sosfilt(butter(2, round(min(speaker["lowpass"], 0.45 * sr)), "lowpass", sr), x)
    if rng.random() < 0.2:
        rt60 = rng.uniform(0.15, 0.4)
        n = int(rt60 * sr)
        ir = rng.standard_normal(n) * np.exp(-6.9 * np.arange(n) / n) * rng.uniform(0.05, 0.3)
        ir[0] = 1.0
        x = signal.oaconvolve(x, ir)[: len(x)]
    return x
