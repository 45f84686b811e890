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


def _const(ctype, name, values, comment) -> str:
    values = [int(v) for v in np.asarray(values).ravel()]
    body = ",\n".join("    " + ", ".join(str(v) for v in values[i:i + 16]) for i in range(0, len(values), 16))
    return f"/* {comment} */\nstatic const {ctype} {name}[{len(values)}] = {{\n{body}\n}};\n"


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
    offsets = np.cumsum([0] + [len(w) for w in weights[:-1]])
    parts = ["/* Integer front end tables (deploy/c_frontend.py); included by frontend.c only. */\n",
             _const("int16_t", "kws_fe_window", t.window, "periodic Hann window, Q15"),
             _const("int32_t", "kws_fe_twiddle_re", np.concatenate([t.twiddle_re, t.twiddle_im]),
                    "W_n^k, k < n/2: cos(2 pi k / n), then -sin(2 pi k / n), Q30"),
             _const("uint8_t" if len(t.bitrev) <= 256 else "uint16_t", "kws_fe_bitrev", t.bitrev,
                    "bit-reversed index of the n/2-point FFT"),
             _const("uint16_t", "kws_fe_mel_start", t.mel_start, "first FFT bin of each mel band"),
             _const("uint16_t", "kws_fe_mel_length", t.mel_length, "bins of each mel band"),
             _const("uint32_t", "kws_fe_mel_offset", offsets, "each band's first weight in kws_fe_mel_weights"),
             _const("uint16_t", "kws_fe_mel_weights", np.concatenate(weights) if weights else [0],
                    "mel filter weights, bands one after the other"),
             _const("int32_t", "kws_fe_log_table", t.log_table, "log2(1 + i / 64), Q12"),
             _const("int32_t", "kws_fe_dct", t.dct, "DCT-II (ortho) times 10 log10(2), Q15, [mel][mfcc]")]
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
