"""Checkpoints: what they hold and how they are read back safely.

A checkpoint is a plain dict of tensors and primitives (loadable with ``weights_only=True``):
arch, arch_args, state_dict, epoch, optimizer, lr_scheduler, monitor_best, config, features
(MFCC parameters) and normalization (per-coefficient mean and std of the training split).

A checkpoint may come from someone else, so every value is checked before use (the architecture
arguments before any tensor is allocated: a forged ``widths`` could ask for terabytes), and the
paths in its config are confined (:func:`confine_paths`).
"""
import math
import pickle
import re
import zipfile
import zlib
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from utils import atomic
from utils.errors import UserError
from utils.values import is_finite_number, is_int

REQUIRED = ("arch", "state_dict", "config", "features", "normalization")
MAX_CLASSES = 1000
MAX_WEIGHT = 1e10         # |weight| or batch-norm statistic: a trained model's are below ~1e3
MAX_SOLUTION_CHARS = 1 << 20   # a stored solution's YAML text (utils.yaml_reader.MAX_BYTES)
MAX_WIDTH = 1024          # conv filters / fc3 neurons: the default is (8, 8, 64)
# (type, low, high) of every MFCC parameter a checkpoint may carry (data_loader.features.FeatureParams)
FEATURE_RANGES = {"sample_rate": (int, 4_000, 192_000), "clip_samples": (int, 1, 1_920_000),
                  "n_fft": (int, 16, 16_384), "win_length": (int, 1, 16_384), "hop_length": (int, 1, 16_384),
                  "n_mels": (int, 1, 512), "fmin": (float, 0.0, 96_000.0), "fmax": (float, 1.0, 96_000.0),
                  "n_mfcc": (int, 1, 512), "frames": (int, 1, 100_000), "top_db": (float, 1e-3, 1e4)}
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


@dataclass
class Checkpoint:
    """The one layout of a checkpoint file. Every writer builds one (the trainer, the export's
    compact model) and every reader gets one from ``load_checkpoint`` after validation. Optional
    fields left None are not written."""
    arch: str
    arch_args: dict
    state_dict: dict
    config: dict
    features: dict             # MFCC parameters (data_loader.features.FeatureParams)
    normalization: dict        # per-coefficient mean and std of the training split
    epoch: int = None
    optimizer: dict = None
    lr_scheduler: dict = None
    monitor_best: float = None
    not_improved: int = None
    rng_state: object = None   # torch's RNG state: a resumed run continues its dropout draws
    log: dict = None           # the last epoch's numbers
    keywords: list = None
    finetuned_from: dict = None   # a finetuning run: where it started, the float weights
    solutions: dict = None        # a finetuning run: the YAML of the solutions it trained under
    compacted_from: str = None    # a compact model (export.py): the checkpoint it was made from
    train_state_dict: dict = None  # with EMA: the trained weights resuming continues from
    ema_updates: int = None        # with EMA: updates averaged so far
    teachers: list = None          # ensemble distillation: the teachers' checkpoints
    class_names: list = None       # every class by index, when not 'unknown' + keywords (a silence class)
    detector: dict = None          # the operating point calibrated on the validation stream (app.calibration)
    # not in the file: the solutions a restored model runs under (app.restore.restore_model)
    applied: dict = field(default=None, repr=False, metadata={"stored": False})

    def names(self, keywords=()):
        """The name of every class by index: the stored list, else 'unknown' and the keywords (the
        checkpoint's, else ``keywords``)."""
        if self.class_names:
            return tuple(self.class_names)
        return ("unknown",) + tuple(self.keywords or keywords)

    def to_dict(self):
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("stored", True)
                and (f.name in REQUIRED or getattr(self, f.name) is not None)}

    @classmethod
    def from_dict(cls, values):
        """The stored fields of ``values`` this layout knows (others are dropped)."""
        known = {f.name for f in fields(cls) if f.metadata.get("stored", True)}
        return cls(**{k: v for k, v in values.items() if k in known})


def save_checkpoint(path, checkpoint):
    atomic.torch_save(checkpoint.to_dict(), path)


def load_checkpoint(path):
    """Read a checkpoint file as a ``Checkpoint``; anything else is a one-line UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path} (check the path given with -r)")
    _check_zip(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, zipfile.BadZipFile, EOFError, ValueError, OSError) as e:
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise UserError(f"{path} is not a readable checkpoint ({reason}); give a .pth file saved by train.py") from None
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED):
        raise UserError(f"{path} is not a checkpoint of this project (it lacks arch, state_dict, features "
                        f"or normalization); give a .pth file saved by train.py")
    validate_checkpoint(ckpt, path)
    confine_paths(ckpt["config"], path)
    return Checkpoint.from_dict(ckpt)


def _check_zip(path):
    """The CRC of every member of a zip checkpoint (torch.save's format): one flipped bit in a
    tensor would otherwise load as a silently wrong weight. Other formats are left to torch.load."""
    try:
        if not zipfile.is_zipfile(path):
            return
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, zlib.error) as e:
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise UserError(f"{path} is not a readable checkpoint ({reason}); give a .pth file saved by train.py") from None
    if bad is not None:
        raise UserError(f"{path} is corrupted (member {bad[:120]} fails its CRC check); copy it again or "
                        f"give another .pth file saved by train.py")


def _number(value, kind):
    return is_int(value) if kind is int else is_finite_number(value)


def _check_arch_args(args, where):
    """The shape of arch_args; their values are checked per architecture (model/registry.py)
    before the model is built."""
    if not isinstance(args, dict):
        raise UserError(f"{where}: arch_args must be a mapping, found {type(args).__name__}")


def check_features(features, where):
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
    unknown = sorted(set(features) - set(FEATURE_RANGES))
    if unknown:
        raise UserError(f"{where}: unknown feature parameters {unknown}")
    for key, value in features.items():
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


def validate_checkpoint(ckpt, path):
    """Types and ranges of everything later code reads from a checkpoint; a one-line UserError
    naming the field otherwise."""
    where = f"checkpoint {path}"
    if not isinstance(ckpt["arch"], str):
        raise UserError(f"{where}: arch must be a name, found {type(ckpt['arch']).__name__}")
    args = ckpt.get("arch_args") or {}
    _check_arch_args(args, where)
    if not isinstance(ckpt["state_dict"], dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in ckpt["state_dict"].items()):
        raise UserError(f"{where}: state_dict must map parameter names to tensors")
    if not all(v.layout == torch.strided for v in ckpt["state_dict"].values()):
        raise UserError(f"{where}: state_dict holds a sparse or otherwise non-dense tensor")
    if not all(bool(torch.isfinite(v).all()) for v in ckpt["state_dict"].values() if v.is_floating_point()):
        raise UserError(f"{where}: state_dict holds NaN or infinite weights")
    if not all(v.numel() == 0 or float(v.abs().max()) <= MAX_WEIGHT
               for v in ckpt["state_dict"].values() if v.is_floating_point()):
        raise UserError(f"{where}: state_dict holds weights above {MAX_WEIGHT:g} in magnitude (a trained "
                        f"model's stay far below); the file is corrupted or forged")
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
                                  or not all(isinstance(k, str) and k for k in value)):
            raise UserError(f"{where}: {key} must be a list of at most {MAX_CLASSES} words, found "
                            f"{type(value).__name__}")
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
    for key in ("epoch", "not_improved"):
        if key in ckpt and not (_number(ckpt[key], int) and ckpt[key] >= 0):
            raise UserError(f"{where}: {key} must be an integer >= 0, found {ckpt[key]!r}")
    if "monitor_best" in ckpt and not (_number(ckpt["monitor_best"], float)
                                       or ckpt["monitor_best"] in (math.inf, -math.inf)):
        raise UserError(f"{where}: monitor_best must be a number, found {ckpt['monitor_best']!r}")
    if ckpt.get("detector") is not None:
        _check_detector(ckpt["detector"], where)
    if ckpt.get("rng_state") is not None and not (isinstance(ckpt["rng_state"], torch.Tensor)
                                                  and ckpt["rng_state"].dtype == torch.uint8):
        raise UserError(f"{where}: rng_state must be a byte tensor")


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


def safe_name(name):
    """A run name usable as one folder name: anything but letters, digits, '.', '_' and '-'
    becomes '_', and no leading dot (so never '..')."""
    cleaned = SAFE_NAME.sub("_", str(name)).lstrip(".")
    return cleaned or "run"


def _inside(path, folder):
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
        return True
    except ValueError:
        return False


def confine_paths(config, path):
    """Where a checkpoint's config may make us write. A checkpoint that lies in the
    ``<save_dir>/models/`` its config names was written by a run of this tree, and its paths are
    kept; any other (received) checkpoint writes its runs under ``saved/`` and its feature cache
    under ``data/cache`` of the current project, downloads nothing, and its run name is reduced
    to one safe folder name. The user's own ``-c`` config is not affected."""
    trainer = config.get("trainer") if isinstance(config.get("trainer"), dict) else {}
    save_dir = trainer.get("save_dir", "saved")
    trusted = isinstance(save_dir, str) and _inside(path, Path(save_dir) / "models")
    if "name" in config:
        config["name"] = safe_name(config["name"])
    if trusted:
        return
    if "save_dir" in trainer:
        trainer["save_dir"] = "saved"      # ConfigParser's default when absent
    loader = config.get("data_loader") if isinstance(config.get("data_loader"), dict) else {}
    args = loader.get("args") if isinstance(loader.get("args"), dict) else {}
    cache = args.get("cache_dir", "data/cache")
    if not (isinstance(cache, str) and _inside(cache, "data")):
        args["cache_dir"] = "data/cache"
    if args.get("download"):
        args["download"] = None
