"""The integer MFCC front end: 16-bit PCM in, the model's input codes out, in integer arithmetic
only, specified here once (numpy, the reference) and generated as C99 by ``deploy/c_frontend.py``;
the two agree bit for bit. It approximates ``data_loader.features`` (librosa's MFCC) step by step:

1. framing as ``torch.stft(center=True)``: ``n_fft // 2`` zeros before and after the clip, frame
   ``t`` starts at ``t * hop_length``, the ``win_length`` window sits centred in the ``n_fft``
   frame; the first ``frames`` frames are kept;
2. window: periodic Hann as a Q15 table, ``y = (x * w + 2^14) >> 15``;
3. real-input FFT, ``n_fft`` a power of two: the frame's n real samples packed as n/2 complex
   values z[k] = x[2k] + i x[2k+1], an n/2-point complex FFT (radix 4, decimation in time, a
   radix-2 stage first when log2(n/2) is odd), then the split step that gives bins 0..n/2 of
   the real FFT. Scaling: **block floating point on the input and a fixed halving per radix-2
   level**. Each frame is shifted left by ``s`` so that its largest sample has 29 bits (the
   frame's exponent ``s``, kept); every level halves its outputs (rounded), and the split step
   divides by 4 once more, so the bins are X / n as an n-point FFT with a halving per stage
   gives; every value's modulus stays within 2^29.5 (+ a few units of rounding) whatever the
   signal (each level halves a sum of two such values), so no 32-bit sum can overflow
   (docs/frontend.md has the bounds), quiet frames keep their precision, and the exponent is
   added back exactly in the log domain. Twiddles are Q30 (int64 products), one table of
   W_n^k, k < n/2;
4. power ``re^2 + im^2`` (64 bits, at most 2^59), shifted right by ``POWER_SHIFT`` so that a mel
   band's sum cannot pass 2^63;
5. mel filterbank: the Slaney filters scaled to a largest weight of 2^12 - 1 and rounded;
6. log2 of every band energy: the leading one's position (a leading-zero count in C) plus a
   64-entry table of log2(1 + i/64) in Q12, linearly interpolated on the next 10 mantissa bits;
   the frame exponent and the scale of steps 2-5 are removed here, so the value is log2 of the
   float mel power in Q12; the float pipeline's floor (``floor_db``, amin 1e-10 at its default
   -100 dB: per frame) and ``top_db`` (per clip, below the clip's peak) follow as integer clamps;
7. DCT: the orthonormal DCT-II times 10 log10(2) (dB per log2 unit) in Q15; the sum, rounded
   half up to ``MFCC_FL`` = 8 fractional bits, is the integer MFCC ``c`` (dB units times 2^8);
8. normalisation folded into the output: with an integer frontend the checkpoint's mean is a
   multiple of 2^-8 and its std a power of two (``representable_normalization``), so
   ``(c / 2^8 - mean) / std * 2^fl`` is ``(c - M) * 2^-(8 + e - fl)``: an exact shift, rounded
   half away from zero and saturated as ``fixedpoint.fixed_point.to_integer`` rounds the float
   features, so the codes equal the simulation's input codes bit for bit.

Right shifts of negative values are arithmetic (floor), as numpy's and gcc's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from data_loader.features import dct_matrix, mel_filterbank
from utils.errors import UserError

if TYPE_CHECKING:
    from data_loader.features import FeatureParams

WINDOW_BITS = 15        # Q15 window
SAMPLE_BITS = 29        # a frame's largest sample after block normalisation has this many bits
TWIDDLE_BITS = 30       # Q30 twiddles
MEL_WEIGHT_MAX = 4095   # largest integer mel weight
LOG_FL = 12             # log2 values in Q12
LOG_TABLE_BITS = 6      # 64 intervals
LOG_INTERP_BITS = 10    # mantissa bits interpolated within an interval
DCT_FL = 15             # DCT table in Q15
MFCC_FL = 8             # integer MFCC: dB units times 2^8
PCM_SCALE = 32768       # float samples in [-1, 1) -> int16 PCM (soundfile's scaling of 16-bit WAV)
CHUNK = 64              # clips per numpy step (about 50 MB of int64 spectra for 100 frames)
# The version of the front end's arithmetic, part of the feature cache's key (data_loader.dataset):
# 2 = the real-input FFT (an n/2-point radix-4 FFT and the split step), whose bits differ from
# version 1's n-point radix-2 FFT, so no cache of version 1's features is reused. Any change of
# the bits is a new version (tests/test_integer_frontend.py holds each version's digest).
FRONTEND_VERSION = 2


def to_pcm(waves: ArrayLike) -> np.ndarray:
    """Float waveforms (as read_wave gives them) -> int16 PCM, rounded and saturated."""
    w = np.rint(np.asarray(waves, dtype=np.float64) * PCM_SCALE)
    return np.clip(w, -32768, 32767).astype(np.int16)


@dataclass(frozen=True)
class Tables:
    """Every constant of the front end for one set of feature parameters (the C's const arrays)."""
    n_fft: int
    win_length: int
    hop_length: int
    frames: int
    n_mels: int
    n_mfcc: int
    window: np.ndarray        # (win_length,) Q15
    twiddle_re: np.ndarray    # (n_fft / 2,) Q30 cos(2 pi k / n)
    twiddle_im: np.ndarray    # (n_fft / 2,) Q30 -sin(2 pi k / n)
    bitrev: np.ndarray        # (n_fft / 2,) bit-reversed index of the n/2-point FFT
    mel_start: np.ndarray     # (n_mels,) first bin of each band
    mel_length: np.ndarray    # (n_mels,) bins per band
    mel_weights: np.ndarray   # (n_mels, n_fft / 2 + 1) integer weights (zero outside a band)
    power_shift: int
    log_table: np.ndarray     # (65,) Q12 log2(1 + i / 64)
    log_offset: int           # Q12: log2(float mel) = log2(E) - 2 s + log_offset / 2^12
    log_floor: int            # Q12 log2 of the floor: floor_db / (10 log10 2)
    top_db: int               # Q12 log2 units below the clip's peak, or -1 (no clamp)
    dct: np.ndarray           # (n_mels, n_mfcc) Q15, times 10 log10(2)


def check_params(params: FeatureParams) -> None:
    """A UserError unless the integer front end can compute these feature parameters."""
    n = params.n_fft
    if n & (n - 1):
        raise UserError(f"features.frontend integer needs n_fft a power of two (radix-2 FFT), found {n}")


def tables(params: FeatureParams) -> Tables:
    """The front end's tables for ``params`` (data_loader.features.FeatureParams)."""
    check_params(params)
    n, win = params.n_fft, params.win_length
    hann = 0.5 - 0.5 * np.cos(2 * math.pi * np.arange(win) / win)  # torch.hann_window(periodic=True)
    window = np.rint(hann * ((1 << WINDOW_BITS) - 1)).astype(np.int64)
    k = np.arange(n // 2)
    tw_re = np.rint(np.cos(2 * math.pi * k / n) * (1 << TWIDDLE_BITS)).astype(np.int64)
    tw_im = np.rint(-np.sin(2 * math.pi * k / n) * (1 << TWIDDLE_BITS)).astype(np.int64)
    bits = n.bit_length() - 2
    bitrev = np.array([int(format(i, f"0{bits}b")[::-1], 2) for i in range(n // 2)], dtype=np.int64)
    fb = mel_filterbank(params.sample_rate, n, params.n_mels, params.fmin, params.fmax).astype(np.float64)
    gain = MEL_WEIGHT_MAX / fb.max()
    weights = np.rint(fb * gain).astype(np.int64)
    starts, lengths = [], []
    for row in weights:
        nz = np.flatnonzero(row)
        starts.append(int(nz[0]) if len(nz) else 0)
        lengths.append(int(nz[-1] - nz[0] + 1) if len(nz) else 0)
    # a band sums at most max(lengths) powers of at most 2^(2 * SAMPLE_BITS + 1), times the weight
    need = 2 * SAMPLE_BITS + 1 + MEL_WEIGHT_MAX.bit_length() + max(max(lengths), 1).bit_length()
    power_shift = max(0, need - 63)
    log_table = np.rint(np.log2(1 + np.arange(65) / 64) * (1 << LOG_FL)).astype(np.int64)
    # E = 2^(2s - power_shift) * (32767 * weight-gain-free) ... the scale of steps 2-5:
    # y ~ x_float * hann * (2^15 - 1); FFT output / n; power / 2^power_shift; weights * gain
    scale = ((1 << WINDOW_BITS) - 1) ** 2 * gain / n ** 2 / 2.0 ** power_shift
    log_offset = int(round(-math.log2(scale) * (1 << LOG_FL)))
    log_floor = int(round(params.floor_db / (10 * math.log10(2)) * (1 << LOG_FL)))
    top_db = -1 if params.top_db is None else int(round(params.top_db / (10 * math.log10(2)) * (1 << LOG_FL)))
    dct = np.rint(dct_matrix(params.n_mels, params.n_mfcc).astype(np.float64) * 10 * math.log10(2)
                  * (1 << DCT_FL)).astype(np.int64)
    return Tables(n, win, params.hop_length, params.frames, params.n_mels, params.n_mfcc, window, tw_re, tw_im,
                  bitrev, np.array(starts, dtype=np.int64), np.array(lengths, dtype=np.int64), weights,
                  power_shift, log_table, log_offset, log_floor, top_db, dct)


def _frames(pcm, t):
    """(N, frames, win_length) int64 samples of every frame's window span."""
    pad = t.n_fft // 2
    padded = np.zeros((pcm.shape[0], pcm.shape[1] + 2 * pad), dtype=np.int64)
    padded[:, pad:pad + pcm.shape[1]] = pcm
    off = (t.n_fft - t.win_length) // 2
    idx = np.arange(t.frames)[:, None] * t.hop_length + off + np.arange(t.win_length)[None, :]
    if idx.max() >= padded.shape[1]:
        raise UserError(f"features: {t.frames} frames of hop {t.hop_length} need more samples than the "
                        f"clip's {pcm.shape[1]}")
    return padded[:, idx]


def _bit_length(v):
    """Bit length of every non-negative int64 value (0 for 0)."""
    out = np.zeros(v.shape, dtype=np.int64)
    v = v.copy()
    for step in (32, 16, 8, 4, 2, 1):
        big = v >= (np.int64(1) << step)
        out += big * step
        v = np.where(big, v >> step, v)
    return out + (v > 0)


def _twiddle(t, j):
    """(re, im) Q30 of W_n^j for 0 <= j < n: the table's entries, negated past n/2 (W_n^(j + n/2) = -W_n^j)."""
    half = t.n_fft // 2
    sign = np.where(j < half, 1, -1)
    j = np.where(j < half, j, j - half)
    return sign * t.twiddle_re[j], sign * t.twiddle_im[j]


def _times(xr, xi, wr, wi):
    """x times the Q30 twiddle w, each part rounded (half up): (x w + 2^29) >> 30 in 64 bits."""
    half = np.int64(1 << (TWIDDLE_BITS - 1))
    return (xr * wr - xi * wi + half) >> TWIDDLE_BITS, (xr * wi + xi * wr + half) >> TWIDDLE_BITS


def _complex_fft(re, im, t):
    """Radix-4 DIT FFT of (F, n_fft / 2) int64 arrays (one radix-2 stage first when log2(n/2) is
    odd), halved with rounding after each of its radix-2 levels; the twiddles W_{4h}^k, k < h, are
    table entries W_n^(k n / 4h) (its even ones and, past n/2, negated)."""
    m = t.n_fft // 2
    re, im = re[:, t.bitrev], im[:, t.bitrev]
    h = 1
    if (m.bit_length() - 1) % 2:                     # a radix-2 stage of twiddle 1
        r, i = re.reshape(-1, m // 2, 2), im.reshape(-1, m // 2, 2)
        for v in (r, i):
            a, b = v[:, :, 0] + 1, v[:, :, 1].copy()
            v[:, :, 0], v[:, :, 1] = (a + b) >> 1, (a - b) >> 1
        h = 2
    while h < m:
        # blocks E0, O0, E1, O1 of h values -> 4h: with W = W_{4h}^k,
        # u = (E0 +- W^2 O0) / 2, v = (W E1 +- W^3 O1) / 2, then (u0 +- v0) / 2 and (u1 -+ i v1) / 2
        j = np.arange(h) * (t.n_fft // (4 * h))
        r, i = re.reshape(-1, m // (4 * h), 4, h), im.reshape(-1, m // (4 * h), 4, h)
        br, bi = _times(r[:, :, 1], i[:, :, 1], *_twiddle(t, 2 * j))
        cr, ci = _times(r[:, :, 2], i[:, :, 2], *_twiddle(t, j))
        dr, di = _times(r[:, :, 3], i[:, :, 3], *_twiddle(t, 3 * j))
        er, ei = r[:, :, 0] + 1, i[:, :, 0] + 1      # + 1: the halving's rounding
        u0r, u1r, u0i, u1i = (er + br) >> 1, (er - br) >> 1, (ei + bi) >> 1, (ei - bi) >> 1
        v0r, v1r = (cr + dr + 1) >> 1, (cr - dr + 1) >> 1
        v0i, v1i = (ci + di + 1) >> 1, (ci - di + 1) >> 1
        r[:, :, 0], r[:, :, 2] = (u0r + v0r + 1) >> 1, (u0r - v0r + 1) >> 1
        i[:, :, 0], i[:, :, 2] = (u0i + v0i + 1) >> 1, (u0i - v0i + 1) >> 1
        r[:, :, 1], r[:, :, 3] = (u1r + v1i + 1) >> 1, (u1r - v1i + 1) >> 1
        i[:, :, 1], i[:, :, 3] = (u1i - v1r + 1) >> 1, (u1i + v1r + 1) >> 1
        h *= 4
    return re, im


def real_fft(x: np.ndarray, t: Tables) -> tuple[np.ndarray, np.ndarray]:
    """(F, n_fft) int64 real frames (|x| < 2^SAMPLE_BITS) -> (re, im), each (F, n_fft / 2 + 1):
    bins 0..n/2 of the real FFT divided by n_fft, rounded. The n real samples, packed as n/2
    complex values z[k] = x[2k] + i x[2k+1], go through the n/2-point FFT (Z / (n/2)), then the
    split step: with S = Z[k] + conj Z[n/2-k] and D = -i (Z[k] - conj Z[n/2-k]),
    X[k] / n = (S + W_n^k D) / 4, in one 64-bit sum rounded once; bins k and n/2 - k share S, D
    and their products (W_n^{n/2-k} = -conj W_n^k)."""
    m = t.n_fft // 2
    zr, zi = _complex_fft(x[:, 0::2], x[:, 1::2], t)
    k = np.arange(m // 2 + 1)
    j = (m - k) % m
    ar, ai, br, bi = zr[:, k], zi[:, k], zr[:, j], zi[:, j]
    sr, si = ar + br, ai - bi                       # S = Z[k] + conj Z[m - k]
    dr, di = ar - br, ai + bi                       # Z[k] - conj Z[m - k] = dr + i di; D = di - i dr
    wr, wi = t.twiddle_re[k], t.twiddle_im[k]
    p = wr * di + wi * dr                           # Re(W D)
    q = wi * di - wr * dr                           # Im(W D)
    one = np.int64(1) << TWIDDLE_BITS
    half = np.int64(1) << (TWIDDLE_BITS + 1)
    shift = TWIDDLE_BITS + 2
    re = np.empty((x.shape[0], m + 1), dtype=np.int64)
    im = np.empty_like(re)
    re[:, m - k] = (sr * one - p + half) >> shift   # bin m - k: S' = S, D' = (di, dr -> -dr), W' = (-wr, wi)
    im[:, m - k] = (q - si * one + half) >> shift
    re[:, k] = (sr * one + p + half) >> shift       # bin k (written last: bin m/2 is its own partner)
    im[:, k] = (si * one + q + half) >> shift
    return re, im


def _log2(energy, t):
    """Q12 log2 of positive int64 values (the leading one, a table and linear interpolation)."""
    e = np.maximum(energy, 1)
    top = _bit_length(e) - 1
    m = np.where(top >= 16, e >> np.maximum(top - 16, 0), e << np.maximum(16 - top, 0))  # [2^16, 2^17)
    idx = (m >> LOG_INTERP_BITS) & 63
    frac = m & ((1 << LOG_INTERP_BITS) - 1)
    lo, hi = t.log_table[idx], t.log_table[idx + 1]
    return (top << LOG_FL) + lo + (((hi - lo) * frac + (1 << (LOG_INTERP_BITS - 1))) >> LOG_INTERP_BITS)


def block_frames(x: np.ndarray, t: Tables) -> tuple[np.ndarray, np.ndarray]:
    """(M, win_length) int64 samples of frames' window spans -> ((M, n_fft) windowed frames, each
    shifted left so that its largest sample has SAMPLE_BITS bits, (M,) those shifts): steps 2-3's
    input to real_fft."""
    y = (x * t.window + (1 << (WINDOW_BITS - 1))) >> WINDOW_BITS
    peak = np.abs(y).max(axis=1)
    shift = np.where(peak > 0, SAMPLE_BITS - _bit_length(peak), 0)
    frame = np.zeros((y.shape[0], t.n_fft), dtype=np.int64)
    off = (t.n_fft - t.win_length) // 2
    frame[:, off:off + t.win_length] = y << shift[:, None]
    return frame, shift


def frame_logs(x: np.ndarray, t: Tables) -> np.ndarray:
    """(M, win_length) int64 samples of frames' window spans -> (M, n_mels) Q12 log2 mel
    energies, floored at ``log_floor`` (steps 2-6 without the per-clip ``top_db`` clamp): each
    frame on its own, so a frame of a long recording is the same frame of every window holding it."""
    frame, shift = block_frames(x, t)
    re, im = real_fft(frame, t)
    power = (re * re + im * im) >> t.power_shift
    energy = power @ t.mel_weights.T                                     # (M, n_mels)
    log = np.where(energy > 0, _log2(energy, t) - (2 * shift[:, None] << LOG_FL) + t.log_offset, t.log_floor)
    return np.maximum(log, t.log_floor)


def mfcc_of_logs(log: np.ndarray, t: Tables) -> np.ndarray:
    """(N, frames, n_mels) Q12 logs of clips -> (N, frames, n_mfcc) integer MFCCs: the clip's
    ``top_db`` clamp below its peak, then the DCT (steps 6-7)."""
    if t.top_db >= 0:
        log = np.maximum(log, log.max(axis=(1, 2), keepdims=True) - t.top_db)
    acc = log @ t.dct
    return (acc + (1 << (LOG_FL + DCT_FL - MFCC_FL - 1))) >> (LOG_FL + DCT_FL - MFCC_FL)


def integer_mfcc(pcm: ArrayLike, params: FeatureParams, t: Tables | None = None) -> np.ndarray:
    """int16 PCM (N, clip_samples) -> integer MFCC (N, frames, n_mfcc) int64, dB units times 2^8
    (steps 1-7 of the module docstring)."""
    pcm = np.asarray(pcm)
    if pcm.dtype != np.int16 or pcm.ndim != 2:
        raise UserError(f"the integer front end takes int16 PCM of shape (clips, samples), found "
                        f"{pcm.dtype} {pcm.shape}")
    t = t or tables(params)
    out = np.zeros((pcm.shape[0], t.frames, t.n_mfcc), dtype=np.int64)
    for c0 in range(0, pcm.shape[0], CHUNK):
        x = _frames(pcm[c0:c0 + CHUNK], t)
        n_clips = x.shape[0]
        log = frame_logs(x.reshape(-1, t.win_length), t).reshape(n_clips, t.frames, t.n_mels)
        out[c0:c0 + n_clips] = mfcc_of_logs(log, t)
    return out


def clip_features(waves: ArrayLike, params: FeatureParams) -> np.ndarray:
    """Float waveforms (N, clip_samples) -> integer MFCCs as float32 (N, 1, frames, n_mfcc) in dB
    (c / 2^8, exact): the feature cache's MFCCs of an integer-frontend config."""
    return (integer_mfcc(to_pcm(waves), params) / (1 << MFCC_FL)).astype(np.float32)[:, None]


def representable_normalization(mean: ArrayLike, std: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """The per-coefficient mean rounded to the integer MFCC's grid (2^-8) and the std rounded to
    the nearest power of two (in log2): the normalisation that folds into an exact shift."""
    mean = np.asarray(mean, dtype=np.float64)
    std = np.asarray(std, dtype=np.float64)
    return np.rint(mean * (1 << MFCC_FL)) / (1 << MFCC_FL), 2.0 ** np.rint(np.log2(std))


@dataclass(frozen=True)
class Fold:
    """Step 8: code = saturate(round_half_away((c - offset) * 2^-shift)) per coefficient."""
    offset: np.ndarray   # (n_mfcc,) int64: the mean in units of 2^-8
    shift: np.ndarray    # (n_mfcc,) int64: 8 + log2(std) - fl (negative: a left shift)
    bits: int


def fold(mean: ArrayLike, std: ArrayLike, bits: int, fl: int) -> Fold:
    """The normalisation fold for the checkpoint's (representable) ``mean``/``std`` into the
    input format (``bits``, ``fl``); a UserError if they are not representable."""
    mean = np.asarray(mean, dtype=np.float64)
    std = np.asarray(std, dtype=np.float64)
    offset = mean * (1 << MFCC_FL)
    e = np.log2(std)
    if not (np.all(offset == np.rint(offset)) and np.all(e == np.rint(e))):
        raise UserError("the checkpoint's normalisation does not fold into the integer front end (its mean must "
                        "be a multiple of 2^-8 and its std a power of two); retrain with features.frontend integer")
    return Fold(offset.astype(np.int64), (MFCC_FL + e - fl).astype(np.int64), int(bits))


def input_codes(mfcc: ArrayLike, f: Fold) -> np.ndarray:
    """Integer MFCC (..., n_mfcc) -> the model's input codes (step 8)."""
    v = np.asarray(mfcc, dtype=np.int64) - f.offset
    lo, hi = -(1 << (f.bits - 1)), (1 << (f.bits - 1)) - 1
    right = np.maximum(f.shift, 0)
    half = np.where(right > 0, np.int64(1) << np.maximum(right - 1, 0), 0)
    # a left shift saturates first (it cannot then overflow, and saturates to the same code)
    shifted = np.where(f.shift > 0, np.sign(v) * ((np.abs(v) + half) >> right),
                       np.clip(v, lo, hi) << np.maximum(-f.shift, 0))
    return np.clip(shifted, lo, hi)


class StreamFrames:
    """Integer MFCCs of the windows every ``hop`` samples of a long recording, each the integer
    MFCC of its samples as a clip of its own (integer_mfcc), computed frame by frame once.

    A frame whose window span lies inside a window is the same frame of the recording whatever
    window holds it (frame_logs treats each frame on its own), so its log energies are computed
    once per recording; the ``edges`` (frames whose span reaches past a window's first or last
    sample: they see the window's zero padding) are computed per window from its samples. The
    ``top_db`` clamp and the DCT (mfcc_of_logs) are per window. This is what the exported C stream
    (deploy/templates/stream.c) does every hop: the new frames into a ring, the edges, the window.
    """

    def __init__(self, params: FeatureParams, hop_samples: int) -> None:
        t = self.t = tables(params)
        if hop_samples % t.hop_length:
            raise UserError(f"the integer front end's stream needs a window hop that is a multiple of the STFT hop "
                            f"({1000.0 * t.hop_length / params.sample_rate:g} ms), got "
                            f"{1000.0 * hop_samples / params.sample_rate:g} ms")
        self.clip, self.hop, self.step = params.clip_samples, hop_samples, hop_samples // t.hop_length
        self.first = (t.n_fft - t.win_length) // 2 - t.n_fft // 2     # frame j's span starts at j * hop_length + first
        starts = np.arange(t.frames) * t.hop_length + self.first
        self.edges = np.flatnonzero((starts < 0) | (starts + t.win_length > self.clip))
        self._edge_offsets = starts[self.edges][:, None] + np.arange(t.win_length)[None]   # (E, win) in the window

    def window_mfcc(self, pcm: ArrayLike, n_windows: int) -> np.ndarray:
        """(n_windows, frames, n_mfcc) int64 integer MFCCs of the windows every ``hop`` samples of
        int16 ``pcm`` (which spans them exactly, as data_loader.frame_features.segments gives)."""
        t = self.t
        pcm = np.asarray(pcm, dtype=np.int64)
        n_frames = (n_windows - 1) * self.step + t.frames
        starts = np.arange(n_frames) * t.hop_length + self.first
        idx = starts[:, None] + np.arange(t.win_length)[None]
        inside = (idx >= 0) & (idx < len(pcm))
        logs = frame_logs(np.where(inside, pcm[np.clip(idx, 0, len(pcm) - 1)], 0), t)     # (F, n_mels)
        frame_index = np.arange(n_windows)[:, None] * self.step + np.arange(t.frames)[None]
        window_logs = logs[frame_index]                                                    # (W, frames, n_mels)
        if len(self.edges):
            valid = (self._edge_offsets >= 0) & (self._edge_offsets < self.clip)
            at = np.arange(n_windows)[:, None, None] * self.hop + np.clip(self._edge_offsets, 0, self.clip - 1)[None]
            edge = np.where(valid[None], pcm[at], 0).reshape(-1, t.win_length)
            window_logs[:, self.edges] = frame_logs(edge, t).reshape(n_windows, len(self.edges), t.n_mels)
        return mfcc_of_logs(window_logs, t)
