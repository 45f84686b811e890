"""The integer MFCC front end as C99: ``frontend.c``/``frontend.h`` (fixed code, in templates/)
with ``frontend_config.h`` (constants) and ``frontend_tables.h`` (const arrays) written here from
``data_loader.integer_frontend`` for one set of feature parameters, plus, given a checkpoint's
normalisation and input format, the fold that turns integer MFCCs into the model's input codes.
``frontend_main.c`` is a host program: PCM lines in, MFCC (and code) lines out; ``main_pcm.c``
runs the whole integer pipeline, PCM in and the model's scores out (with model.c from c_export).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from data_loader import integer_frontend as ife
from utils.atomic import write_text

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from data_loader.features import FeatureParams
    from deploy.integer_engine import IntegerModel

_TEMPLATES = Path(__file__).parent / "templates"
FRONTEND_FILES = ("frontend.h", "frontend.c", "frontend_main.c", "pcm_read.h")
PCM_VECTORS = "test_pcm.txt"
PIPELINE_FILES = ("frontend_config.h", "frontend_tables.h") + FRONTEND_FILES + ("main_pcm.c", PCM_VECTORS)


_CTYPES = (("uint8_t", 0, 255), ("int8_t", -128, 127), ("uint16_t", 0, 65535), ("int16_t", -32768, 32767),
           ("int32_t", -(1 << 31), (1 << 31) - 1))


def _ctype(values) -> str:
    """The smallest C integer type that holds every value (a table's flash is its entries' size),
    unsigned where it fits (the mel weights multiply a uint64 power: a signed weight costs a
    sign extension and a wider product on the M4)."""
    values = np.asarray(values).ravel()
    lo, hi = (int(values.min()), int(values.max())) if values.size else (0, 0)
    for ctype, low, high in _CTYPES:
        if low <= lo and hi <= high:
            return ctype
    raise ValueError(f"a front end table's values {lo}..{hi} do not fit in 32 bits")


def _const(ctype, name, values, comment) -> str:
    values = [int(v) for v in np.asarray(values).ravel()]
    body = ",\n".join("    " + ", ".join(str(v) for v in values[i:i + 16]) for i in range(0, len(values), 16))
    return f"/* {comment} */\nstatic const {ctype} {name}[{len(values)}] = {{\n{body}\n}};\n"


def _typed(typedef, name, values, comment) -> str:
    """A table of the smallest type for its values, that type also named ``typedef`` for pointers into it."""
    ctype = _ctype(values)
    return f"typedef {ctype} {typedef};\n" + _const(ctype, name, values, comment)


def twiddle_table(t: ife.Tables) -> tuple[np.ndarray, int]:
    """(table, im): the Q30 twiddle W_n^k, k < n/2, is (table[k], table[im + k]). The table holds
    cos(2 pi j / n) for j < 3n/4 (past n/2 the first entries negated, cos(x + pi) = -cos(x)), im =
    n/4 (-sin(x) = cos(x + pi/2)): 3n/4 entries instead of n, when the rounded entries keep those
    symmetries exactly (checked here, entry by entry); otherwise the n/2 cosines, then the n/2
    minus sines (im = n/2)."""
    half, quarter = t.n_fft // 2, t.n_fft // 4
    cosines = np.concatenate([t.twiddle_re, -t.twiddle_re[:quarter]])
    if quarter and np.array_equal(cosines[quarter:quarter + half], t.twiddle_im):
        return cosines, quarter
    return np.concatenate([t.twiddle_re, t.twiddle_im]), half


def dct_table(t: ife.Tables) -> tuple[np.ndarray, bool]:
    """(table, half): the DCT-II's rows j < ceil(n_mels / 2) when the rounded table keeps the
    symmetry dct[n_mels - 1 - j][k] == (-1)^k dct[j][k] exactly (checked here, entry by entry; for
    an odd n_mels the middle row is then 0 at odd k), so the C sums v[j] +- v[n_mels - 1 - j]
    against half the table (the same integer sums, half the products); otherwise the full table."""
    sign = np.where(np.arange(t.n_mfcc) % 2, -1, 1)
    if np.array_equal(t.dct[::-1], t.dct * sign):
        return t.dct[:(t.n_mels + 1) // 2], True
    return t.dct, False


def _config(params, t, fold):
    defines = {
        "KWS_FE_CLIP_SAMPLES": params.clip_samples, "KWS_FE_N_FFT": t.n_fft, "KWS_FE_WIN_LENGTH": t.win_length,
        "KWS_FE_HOP_LENGTH": t.hop_length, "KWS_FE_FRAMES": t.frames, "KWS_FE_N_MELS": t.n_mels,
        "KWS_FE_N_MFCC": t.n_mfcc, "KWS_FE_WINDOW_BITS": ife.WINDOW_BITS, "KWS_FE_SAMPLE_BITS": ife.SAMPLE_BITS,
        "KWS_FE_TWIDDLE_BITS": ife.TWIDDLE_BITS, "KWS_FE_POWER_SHIFT": t.power_shift,
        "KWS_FE_LOG_FL": ife.LOG_FL, "KWS_FE_LOG_INTERP_BITS": ife.LOG_INTERP_BITS,
        "KWS_FE_LOG_OFFSET": t.log_offset, "KWS_FE_LOG_FLOOR": t.log_floor, "KWS_FE_TOP_DB": t.top_db,
        "KWS_FE_DCT_SHIFT": ife.LOG_FL + ife.DCT_FL - ife.MFCC_FL, "KWS_FE_MFCC_FL": ife.MFCC_FL,
        "KWS_FE_HAS_FOLD": int(fold is not None),
    }
    lines = ["/* Integer front end constants (deploy/c_frontend.py). */", "#ifndef KWS_FRONTEND_CONFIG_H",
             "#define KWS_FRONTEND_CONFIG_H", "#include <stdint.h>"]
    lines += [f"#define {k} ({v})" for k, v in defines.items()]
    if fold is not None:
        ctype = "int8_t" if fold.bits <= 8 else "int16_t"
        lines += [f"#define KWS_FE_CODE_BITS ({fold.bits})", f"#define KWS_FE_CODE_MIN ({-(1 << (fold.bits - 1))})",
                  f"#define KWS_FE_CODE_MAX ({(1 << (fold.bits - 1)) - 1})", f"typedef {ctype} kws_fe_code_t;"]
    return "\n".join(lines + ["#endif", ""])


def _tables(t, fold):
    weights = [t.mel_weights[j, s:s + n] for j, (s, n) in enumerate(zip(t.mel_start, t.mel_length))]
    twiddles, im = twiddle_table(t)
    dct, half = dct_table(t)
    parts = ["/* Integer front end tables (deploy/c_frontend.py); included by frontend.c only. */\n",
             # int16, not the uint16 its values also fit: gcc multiplies a sample by a signed 16-bit entry
             # in fewer M4 instructions (docs/firmware.md)
             _const("int16_t", "kws_fe_window", t.window, "periodic Hann window, Q15"),
             f"#define KWS_FE_TW_IM ({im})   /* W_n^k = (kws_fe_twiddle[k], kws_fe_twiddle[KWS_FE_TW_IM + k]) */",
             _const("int32_t", "kws_fe_twiddle", twiddles, "cos(2 pi j / n), j < 3n/4, Q30" if im < t.n_fft // 2
                    else "cos(2 pi k / n), k < n/2, then -sin(2 pi k / n), Q30"),
             _const(_ctype(t.bitrev), "kws_fe_bitrev", t.bitrev, "bit-reversed index of the n/2-point FFT"),
             _const(_ctype(t.mel_start), "kws_fe_mel_start", t.mel_start, "first FFT bin of each mel band"),
             _const(_ctype(t.mel_length), "kws_fe_mel_length", t.mel_length,
                    "bins (and weights in kws_fe_mel_weights) of each mel band"),
             _typed("kws_fe_weight_t", "kws_fe_mel_weights", np.concatenate(weights) if weights else [0],
                    "mel filter weights, bands one after the other"),
             _const(_ctype(t.log_table), "kws_fe_log_table", t.log_table, "log2(1 + i / 64), Q12"),
             f"#define KWS_FE_DCT_HALF ({int(half)})   /* kws_fe_dct: the first (n_mels + 1) / 2 rows */",
             _typed("kws_fe_dct_t", "kws_fe_dct", dct, "DCT-II (ortho) times 10 log10(2), Q15, [mel][mfcc]"
                    + (", rows j < (n_mels + 1) / 2: row n_mels - 1 - j is (-1)^k times row j" if half else ""))]
    if fold is not None:
        parts += [_const("int32_t", "kws_fe_fold_offset", fold.offset, "normalisation mean, units of 2^-8"),
                  _const("int8_t", "kws_fe_fold_shift", fold.shift, "right shift per coefficient (negative: left)")]
    return "\n".join(parts)


def export_frontend(params: FeatureParams, outdir: str | os.PathLike, fold: ife.Fold | None = None) -> list[Path]:
    """Write the front end's C files for ``params`` (FeatureParams) into ``outdir`` atomically,
    with ``fold`` (data_loader.integer_frontend.Fold) for the input codes; returns their paths."""
    t = ife.tables(params)
    outdir = Path(outdir)
    files = {"frontend_config.h": _config(params, t, fold), "frontend_tables.h": _tables(t, fold)}
    files.update({name: (_TEMPLATES / name).read_text(encoding="utf-8") for name in FRONTEND_FILES})
    for name, text in files.items():
        write_text(outdir / name, text)
    return [outdir / name for name in files]


def export_pcm_pipeline(engine: IntegerModel, params: FeatureParams, mean: ArrayLike, std: ArrayLike, pcm: ArrayLike,
                        outdir: str | os.PathLike) -> tuple[list[str], np.ndarray]:

    """The front end of an integer-frontend checkpoint folded into ``engine``'s input format
    (deploy.integer_engine.IntegerModel), ``main_pcm.c`` and the test clips' PCM (``pcm``, int16
    (N, clip_samples)) as ``test_pcm.txt``; returns (file names, the input codes the front end
    gives for ``pcm``: the numpy reference of what the C computes)."""
    fold = ife.fold(mean, std, engine.input_bits, engine.input_fl)
    export_frontend(params, outdir, fold)
    outdir = Path(outdir)
    write_text(outdir / "main_pcm.c", (_TEMPLATES / "main_pcm.c").read_text(encoding="utf-8"))
    pcm = np.asarray(pcm, dtype=np.int16)
    write_text(outdir / PCM_VECTORS, "".join(" ".join(map(str, row)) + "\n" for row in pcm.tolist()))
    codes = ife.input_codes(ife.integer_mfcc(pcm, params), fold)
    return list(PIPELINE_FILES), codes
