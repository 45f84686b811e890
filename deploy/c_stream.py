"""The streaming keyword spotter as C99: ``stream.c``/``stream.h`` (fixed code, in templates/) with
``stream_config.h`` written here from the detector settings (model.detector.DetectorSettings: the
checkpoint's calibrated operating point) and the integer detector's constants (model/detector.py),
on top of the integer front end (deploy/c_frontend.py, with the checkpoint's fold) and model.c
(deploy/c_export.py). ``stream_main.c`` is a host program: PCM in, detections out."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from numpy.typing import ArrayLike

from data_loader import integer_frontend as ife
from data_loader.features import FeatureParams
from deploy.integer_engine import IntegerModel
from deploy.c_frontend import export_frontend
from model import detector
from utils.atomic import write_text
from utils.errors import UserError

_TEMPLATES = Path(__file__).parent / "templates"
STREAM_FILES = ("stream.h", "stream.c", "stream_main.c")
STREAM_CONFIG = "stream_config.h"
MAX_CANDIDATES = 32      # pending detections at once (a chain of close candidates)


def _config(engine, params, settings, class_names, skip):
    hop = settings.hop_samples(params.sample_rate)
    if hop % params.hop_length:
        raise UserError(f"the C stream needs a window hop that is a multiple of the STFT hop "
                        f"({params.hop_length} samples), got {hop}")
    if engine.output_fl < -detector.MAX_SCORE_LEFT_SHIFT:
        raise UserError(f"the class output's fractional length {engine.output_fl} is too small for the detector")
    defines = {"KWS_ST_HOP": hop, "KWS_ST_STEP": hop // params.hop_length, "KWS_ST_SMOOTH": settings.smooth_windows,
               "KWS_ST_THRESHOLD": detector.threshold_code(settings.threshold),
               "KWS_ST_REFRACTORY": detector.refractory_windows(settings, params.sample_rate),
               "KWS_ST_FL": detector.POSTERIOR_FL, "KWS_ST_LOG2E": detector.POSTERIOR_LOG2E,
               "KWS_ST_EXP2_MIN": f"(int64_t){detector.EXP2_MIN}",
               "KWS_ST_EXP2_INTERP_BITS": detector.EXP2_INTERP_BITS, "KWS_ST_OUTPUT_FL": engine.output_fl,
               "KWS_ST_MAX_CANDIDATES": MAX_CANDIDATES}
    detectable = [int(k > 0 and name not in skip) for k, name in enumerate(class_names)]
    lines = ["/* Stream constants (deploy/c_stream.py): detector settings " + repr(settings.to_dict()) + " */",
             "#ifndef KWS_STREAM_CONFIG_H", "#define KWS_STREAM_CONFIG_H", "#include <stdint.h>"]
    lines += [f"#define {k} ({v})" for k, v in defines.items()]
    lines += ["/* 2^(-i/64), Q30 */",
              f"static const int64_t kws_st_exp2[65] = {{{', '.join(map(str, detector.EXP2_TABLE.tolist()))}}};",
              "/* classes that can be detected (not class 0, not silence) */",
              f"static const uint8_t kws_st_detectable[{len(detectable)}] = {{{', '.join(map(str, detectable))}}};",
              "#endif", ""]
    return "\n".join(lines)


def export_stream(engine: IntegerModel, params: FeatureParams, mean: ArrayLike, std: ArrayLike,
                  settings: detector.DetectorSettings, class_names: Sequence[str], outdir: str | os.PathLike,
                  skip: Sequence[str] = ()) -> list[str]:
    """Write the stream's C files (and the front end's, with the checkpoint's fold) into
    ``outdir`` atomically; model.c comes from deploy.c_export.export_c. Returns the file names."""
    outdir = Path(outdir)
    fold = ife.fold(mean, std, engine.input_bits, engine.input_fl)
    names = [p.name for p in export_frontend(params, outdir, fold)]
    write_text(outdir / STREAM_CONFIG, _config(engine, params, settings, class_names, skip))
    for name in STREAM_FILES:
        write_text(outdir / name, (_TEMPLATES / name).read_text(encoding="utf-8"))
    return names + [STREAM_CONFIG, *STREAM_FILES]
