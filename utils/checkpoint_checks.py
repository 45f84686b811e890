"""The domain checks of a checkpoint's values: types and ranges of everything later code reads.

A checkpoint may come from someone else, so every value is checked before use (the architecture
arguments before any tensor is allocated: a forged ``widths`` could ask for terabytes); a bad one
is a one-line UserError naming the field. Apart from the file format (``utils/checkpoint.py``)
because these are facts of the domain (MFCC settings, class counts, the calibrated detector),
shared with the config schema (``check_features``, ``FEATURE_RANGES``) and the architectures
(``MAX_WIDTH``, ``MAX_CLASSES``).
"""
import math
import os
from collections.abc import Mapping
from typing import Any

import torch

from utils.errors import UserError
from utils.values import is_finite_number, is_int

MAX_CLASSES = 1000
MAX_WEIGHT = 1e10         # |weight| or batch-norm statistic: a trained model's are below ~1e3
MAX_SOLUTION_CHARS = 1 << 20   # a stored solution's YAML text (utils.yaml_reader.MAX_BYTES)
MAX_WIDTH = 1024          # channels or features of any layer an architecture's arch_args ask for
# (type, low, high) of every MFCC parameter a checkpoint may carry (data_loader.features.FeatureParams)
FEATURE_RANGES = {"sample_rate": (int, 4_000, 192_000), "clip_samples": (int, 1, 1_920_000),
                  "n_fft": (int, 16, 16_384), "win_length": (int, 1, 16_384), "hop_length": (int, 1, 16_384),
                  "n_mels": (int, 1, 512), "fmin": (float, 0.0, 96_000.0), "fmax": (float, 1.0, 96_000.0),
                  "n_mfcc": (int, 1, 512), "frames": (int, 1, 100_000), "top_db": (float, 1e-3, 1e4),
                  "floor_db": (float, -300.0, 0.0)}
FRONTENDS = ("float", "integer")   # data_loader/features.py, data_loader/integer_frontend.py


def _number(value, kind):
    return is_int(value) if kind is int else is_finite_number(value)


def _check_arch_args(args, where):
    """The shape of arch_args; their values are checked per architecture (model/registry.py)
    before the model is built."""
    if not isinstance(args, dict):
        raise UserError(f"{where}: arch_args must be a mapping, found {type(args).__name__}")


def check_features(features: Mapping[str, Any], where: str) -> int:
    """The ranges and the consistency of MFCC settings, a checkpoint's or a config's (one rule for
    the writer and every reader); returns n_mfcc."""
    return _check_features(features, where)


def _check_features(features, where):
    if not isinstance(features, dict):
        raise UserError(f"{where}: features must be a mapping, found {type(features).__name__}")
    if "precomputed" in features:  # MFCCs read from an IA_DATASET pickle: only their shape is known
        if features["precomputed"] != "IA_DATASET" or set(features) != {"precomputed", "frames", "n_mfcc"}:
            raise UserError(f"{where}: precomputed features must be {{precomputed: IA_DATASET, frames, n_mfcc}}")
        features = {k: features[k] for k in ("frames", "n_mfcc")}
    unknown = sorted(set(features) - set(FEATURE_RANGES) - {"frontend"})
    if unknown:
        raise UserError(f"{where}: unknown feature parameters {unknown}")
    frontend = features.get("frontend", "float")
    if frontend not in FRONTENDS:
        raise UserError(f"{where}: features.frontend must be one of {', '.join(FRONTENDS)}, found {frontend!r}")
    for key, value in features.items():
        if key == "frontend":
            continue
        kind, low, high = FEATURE_RANGES[key]
        if key == "top_db" and value is None:
            continue
        if not _number(value, kind) or not low <= value <= high:
            raise UserError(f"{where}: features.{key} must be {'an integer' if kind is int else 'a number'} "
                            f"in {low:g}..{high:g}, found {value!r}")
    f = {k: features.get(k, v) for k, v in (("sample_rate", 16000), ("n_fft", 512), ("win_length", 400),
                                           ("hop_length", 160), ("n_mels", 40), ("fmin", 20.0),
                                           ("fmax", 8000.0), ("n_mfcc", 13), ("frames", 100),
                                           ("clip_samples", 16000))}
    problems = []
    if f["win_length"] > f["n_fft"]:
        problems.append("win_length exceeds n_fft")
    if not f["fmin"] < f["fmax"] <= f["sample_rate"] / 2:
        problems.append("need fmin < fmax <= sample_rate / 2")
    if frontend == "integer" and f["n_fft"] & (f["n_fft"] - 1):
        problems.append("the integer frontend's radix-2 FFT needs n_fft a power of two")
    if f["n_mfcc"] > f["n_mels"]:
        problems.append("n_mfcc exceeds n_mels")
    if f["clip_samples"] > 10 * f["sample_rate"]:
        problems.append("clips longer than 10 s")
    if f["frames"] > f["clip_samples"] // f["hop_length"] + 1:
        problems.append("more frames than the clip holds")
    if problems:
        raise UserError(f"{where}: inconsistent feature parameters ({'; '.join(problems)})")
    return f["n_mfcc"]


def _check_normalization(norm, n_mfcc, where):
    if not isinstance(norm, dict) or set(norm) != {"mean", "std"}:
        raise UserError(f"{where}: normalization must hold exactly mean and std")
    for key in ("mean", "std"):
        t = norm[key]
        if (not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.shape != (n_mfcc,)
                or not bool(torch.isfinite(t).all())):
            raise UserError(f"{where}: normalization.{key} must be {n_mfcc} finite floats (one per MFCC)")
    if not bool((norm["std"] > 0).all()):
        raise UserError(f"{where}: normalization.std must be above 0")


def validate_checkpoint(ckpt: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Types and ranges of everything later code reads from a checkpoint; a one-line UserError
    naming the field otherwise."""
    where = f"checkpoint {path}"
    if not isinstance(ckpt["arch"], str):
        raise UserError(f"{where}: arch must be a name, found {type(ckpt['arch']).__name__}")
    args = ckpt.get("arch_args") or {}
    _check_arch_args(args, where)
    _check_state_dict(ckpt["state_dict"], where, "state_dict")
    if ckpt.get("train_state_dict") is not None:   # with EMA: the weights a resumed run continues from
        _check_state_dict(ckpt["train_state_dict"], where, "train_state_dict")
    if ckpt.get("finetuned_from") is not None:
        _check_origin(ckpt["finetuned_from"], where)
    solutions = ckpt.get("solutions")
    if solutions is not None and (not isinstance(solutions, dict)
                                  or not set(solutions) <= {"quantization", "pruning"}
                                  or not all(v is None or (isinstance(v, str) and len(v) <= MAX_SOLUTION_CHARS)
                                             for v in solutions.values())):
        raise UserError(f"{where}: solutions must map quantization / pruning to YAML text, found "
                        f"{type(solutions).__name__}")
    if not isinstance(ckpt["config"], dict):
        raise UserError(f"{where}: config must be a mapping, found {type(ckpt['config']).__name__}")
    for key in ("trainer", "data_loader"):
        if not isinstance(ckpt["config"].get(key, {}), dict):
            raise UserError(f"{where}: config.{key} must be a mapping")
    if not isinstance(ckpt["config"].get("data_loader", {}).get("args", {}) or {}, dict):
        raise UserError(f"{where}: config.data_loader.args must be a mapping")
    n_mfcc = _check_features(ckpt["features"], where)
    _check_normalization(ckpt["normalization"], n_mfcc, where)
    keywords, names = ckpt.get("keywords"), ckpt.get("class_names")
    for key, value in (("keywords", keywords), ("class_names", names)):
        if value is not None and (not isinstance(value, (list, tuple)) or len(value) > MAX_CLASSES
                                  or not all(isinstance(k, str) and k and k.isprintable() for k in value)):
            raise UserError(f"{where}: {key} must be a list of at most {MAX_CLASSES} printable words, found "
                            f"{type(value).__name__}")   # printed in every report: no terminal escapes
    if keywords is not None:
        classes = args.get("num_classes", 4)
        if not (_number(classes, int) and 2 <= classes <= MAX_CLASSES):
            raise UserError(f"{where}: arch_args.num_classes must be an integer from 2 to {MAX_CLASSES}, "
                            f"found {classes!r}")
        extra = 0 if names is None else len(names) - 1 - len(keywords)  # a silence class after them
        if (not isinstance(keywords, (list, tuple)) or not all(isinstance(k, str) and k for k in keywords)
                or len(set(keywords)) != len(keywords) or len(keywords) != classes - 1 - extra):
            raise UserError(f"{where}: keywords must be {classes - 1} distinct words (num_classes - 1), "
                            f"found {keywords!r}")
        if names is not None and (list(names[1:1 + len(keywords)]) != list(keywords) or len(names) != classes):
            raise UserError(f"{where}: class_names must be the {classes} classes, the keywords from index 1, "
                            f"found {names!r}")
    for key in ("epoch", "not_improved", "ema_updates"):
        if key in ckpt and not (_number(ckpt[key], int) and ckpt[key] >= 0):
            raise UserError(f"{where}: {key} must be an integer >= 0, found {ckpt[key]!r}")
    if "monitor_best" in ckpt and not (_number(ckpt["monitor_best"], float)
                                       or ckpt["monitor_best"] in (math.inf, -math.inf)):
        raise UserError(f"{where}: monitor_best must be a number, found {ckpt['monitor_best']!r}")
    if ckpt.get("detector") is not None:
        _check_detector(ckpt["detector"], where)
    if ckpt.get("rng_state") is not None and not (isinstance(ckpt["rng_state"], torch.Tensor)
                                                  and ckpt["rng_state"].dtype == torch.uint8
                                                  and ckpt["rng_state"].shape == torch.get_rng_state().shape):
        raise UserError(f"{where}: rng_state must be a byte tensor of torch's generator state "
                        f"({torch.get_rng_state().numel()} bytes)")
    teachers = ckpt.get("teachers")
    if teachers is not None and not (isinstance(teachers, list) and len(teachers) <= 64
                                     and all(isinstance(t, str) for t in teachers)):
        raise UserError(f"{where}: teachers must be a list of at most 64 checkpoint paths, found "
                        f"{type(teachers).__name__}")


def _check_state_dict(state, where, key):
    """Parameter names to dense, finite tensors of sane magnitude (``key``: the field's name)."""
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise UserError(f"{where}: {key} must map parameter names to tensors")
    if not all(v.layout == torch.strided for v in state.values()):
        raise UserError(f"{where}: {key} holds a sparse or otherwise non-dense tensor")
    if not all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point()):
        raise UserError(f"{where}: {key} holds NaN or infinite weights")
    if not all(v.numel() == 0 or float(v.abs().max()) <= MAX_WEIGHT
               for v in state.values() if v.is_floating_point()):
        raise UserError(f"{where}: {key} holds weights above {MAX_WEIGHT:g} in magnitude (a trained "
                        f"model's stay far below); the file is corrupted or forged")


def _check_origin(origin, where):
    """``finetuned_from``: where a finetuning started (a path), the float run's rate (its range is
    the config schema's, checked where it is used: trainer.finetuning) and the float weights."""
    if not isinstance(origin, dict) or not set(origin) <= {"checkpoint", "base_lr", "float_state_dict"}:
        raise UserError(f"{where}: finetuned_from must map checkpoint, base_lr and float_state_dict, found "
                        f"{type(origin).__name__}")
    if origin.get("checkpoint") is not None and not isinstance(origin["checkpoint"], str):
        raise UserError(f"{where}: finetuned_from.checkpoint must be a path, found {type(origin['checkpoint']).__name__}")
    if origin.get("float_state_dict") is not None:
        _check_state_dict(origin["float_state_dict"], where, "finetuned_from.float_state_dict")


DETECTOR_FIELDS = {"threshold": (0.0, 1.0), "smooth_ms": (0.0, 10_000.0),
                   "target_false_alarms_per_hour": (0.0, 1e6)}


def _check_detector(detector, where):
    """The calibrated operating point: a mapping whose numbers lie in their ranges (other keys, the
    calibration's own figures, are kept as they are)."""
    if not isinstance(detector, dict):
        raise UserError(f"{where}: detector must be a mapping, found {type(detector).__name__}")
    for key, (lo, hi) in DETECTOR_FIELDS.items():
        value = detector.get(key)
        if not (_number(value, float) and lo <= value <= hi) or (key != "smooth_ms" and value <= lo):
            raise UserError(f"{where}: detector.{key} must be a number in ({lo:g}, {hi:g}], found {value!r}")
