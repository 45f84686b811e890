"""The one schema of the config file: every section and key, its type, range and meaning.

``validate_config(raw)`` checks a config mapping (as read with ``yaml.safe_load``) and returns a
canonical copy: the lab's names become ours (``optimization.quantizer`` -> ``quantization``,
``pruner`` -> ``pruning``, ``decrement`` -> ``schedule``), the lab's data-loader ``seed`` becomes
the top-level ``seed``, and the lab's YAML string ``None`` becomes null. Unknown keys are refused
with the nearest known name; every problem is one line (a UserError) naming the key.

The quantization and pruning sections are parsed here too (``parse_quantization_config``,
``parse_pruning_config``), so the config, ``quantize.py -c`` and the searches share one reading.
So are the sections other modules read (``parse_trainer_config``, ``parse_finetuning_config``,
``parse_detector_config``, ``parse_run_config``): each returns a frozen dataclass holding the
defaults, which live here only; the readers check nothing again.
A lab ``decrement`` string is parsed with ``ast``, never evaluated, and only two forms are
accepted: ``lambda bw: bw // K`` and ``lambda bw: bw - K``.
"""
import ast
import copy
import difflib
import math
from dataclasses import dataclass, field
from typing import Any

from model import metric as model_metric, registry
from utils.checkpoint_checks import FEATURE_RANGES, FRONTENDS, check_features
from utils.errors import UserError
from utils.values import is_int as _is_int, is_number as _is_number
from utils.checkpoint_checks import MAX_CLASSES, MAX_WIDTH

# --- scalar checks -------------------------------------------------------------------------


def _int(low=None, high=None):
    def check(path: str, value: Any) -> int:
        if not _is_int(value) or (low is not None and value < low) or (high is not None and value > high):
            rng = (f" from {low} to {high}" if high is not None else f" >= {low}") if low is not None else ""
            raise UserError(f"config {path} must be an integer{rng}, found {value!r}")
        return value
    return check


def _number(low=None, high=None, low_open=False, high_open=False):
    """A number in [low, high] (an end is excluded when ``*_open``)."""
    def check(path: str, value: Any) -> int | float:
        ok = _is_number(value) and math.isfinite(value)
        if ok and low is not None:
            ok = value > low if low_open else value >= low
        if ok and high is not None:
            ok = value < high if high_open else value <= high
        if not ok:
            left = "(" if low_open else "["
            right = ")" if high_open else "]"
            rng = f"in {left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
            raise UserError(f"config {path} must be a number {rng}, found {value!r}")
        return float(value) if isinstance(value, float) else value
    return check


def _capped(check, cap):
    """``check``, then at most ``cap``: a bound from the machine or the method, not the meaning."""
    def capped(path: str, value: Any) -> Any:
        value = check(path, value)
        if value is not None and value > cap:
            raise UserError(f"config {path} must be at most {cap if _is_int(cap) else f'{cap:g}'}, "
                            f"found {_shown(value)}")
        return value
    return capped


def _bool(path, value):
    if not isinstance(value, bool):
        raise UserError(f"config {path} must be true or false, found {value!r}")
    return value


def _string(path, value):
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"config {path} must be a non-empty string, found {value!r}")
    return value


DEFAULT_LOSS = "nll_loss"   # the one loss (model/loss.py); a checkpoint without a loss key used it
MAX_NAME = 100   # a run name is one folder name (file systems allow 255 bytes)


def _run_name(path, value):
    """One safe folder name: no separator, not '.' or '..', no control character, bounded."""
    _string(path, value)
    bad = ("/" in value or "\\" in value or value in (".", "..") or not value.isprintable()
           or value != value.strip())
    if bad or len(value) > MAX_NAME:
        raise UserError(f"config {path} must be one folder name of at most {MAX_NAME} characters, without "
                        f"/ or \\, not . or .., found {_shown(value)}; the run goes to <save_dir>/models/<name>/")
    return value


def _shown(value, limit=80):
    """repr of ``value`` on one line and bounded: error messages stay one line whatever a file holds."""
    text = repr(value)
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[:limit] + "..."


def _optional(check):
    def optional(path: str, value: Any) -> Any:
        return None if value is None else check(path, value)
    return optional


def _choice(*choices):
    def check(path: str, value: Any) -> Any:
        if value not in choices:
            raise UserError(f"config {path} must be one of {', '.join(map(str, choices))}, found {value!r}")
        return value
    return check


def _pair(low=None, high=None):
    def check(path: str, value: Any) -> list:
        if (not isinstance(value, (list, tuple)) or len(value) != 2 or not all(map(_is_number, value))
                or not all(map(math.isfinite, value)) or value[0] > value[1] or (low is not None and value[0] < low)
                or (high is not None and value[1] > high)):
            raise UserError(f"config {path} must be a pair [low, high] of numbers with low <= high, "
                            f"found {value!r}")
        return list(value)
    return check


def _keywords(path, value):
    if isinstance(value, list) and any(isinstance(w, bool) for w in value):
        raise UserError(f"config {path} holds {value!r}: YAML reads yes, no, on and off as true/false; "
                        f"quote them (\"yes\", \"no\", \"on\", \"off\")")
    if (not isinstance(value, list) or not value
            or not all(isinstance(w, str) and w.strip() and w == w.strip() for w in value)):
        raise UserError(f"config {path} must be a list of words such as [one, two, three], found {value!r}")
    odd = [w for w in value if "/" in w or "\\" in w or w in (".", "..") or not w.isprintable()]
    if odd:   # <data_dir>/<word>/ is its folder, and its name is printed in every report
        raise UserError(f"config {path}: keyword {_shown(odd[0])} must be one folder name of the corpus: "
                        f"printable, without / or \\, not . or ..")
    if len(set(value)) != len(value):
        dup = sorted({w for w in value if value.count(w) > 1})
        raise UserError(f"config {path} names {dup} more than once; each keyword is one class")
    return value


def _class_weights(path, value):
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(_is_number(w) and 0 < w <= 1e6 for w in value):
        raise UserError(f"config {path} must be null or a list of numbers in (0, 1e6] (one per class), "
                        f"found {value!r}")
    return value


def _lab_none(check):
    """The lab wrote ``validation_split: None``, which YAML reads as the string 'None'."""
    def lab(path: str, value: Any) -> Any:
        return None if value is None or value == "None" else check(path, value)
    return lab


def _split_fraction(path, value):
    if _is_int(value) and value >= 1:
        return value
    if _is_number(value) and 0 <= value < 1:
        return value
    raise UserError(f"config {path} must be a fraction in [0, 1) of the training set or a number of "
                    f"clips, found {value!r}")


MONITOR_METRICS = ("val_loss", "val_top1", "val_balanced_accuracy", "val_false_alarm_rate",
                   "val_min_keyword_recall", "loss", "top1",
                   "val_stream_recall_at_target", "val_stream_mean_recall")   # the last two: the validation stream
# what `metrics:` may list (every one is computed and logged anyway)
METRIC_NAMES = tuple(model_metric.METRICS)


def _monitor(path, value):
    if value == "off":
        return value
    parts = value.split() if isinstance(value, str) else []
    if len(parts) != 2 or parts[0] not in ("min", "max") or parts[1] not in MONITOR_METRICS:
        raise UserError(f"config {path} must be 'off' or 'min|max <metric>' with a metric of "
                        f"{', '.join(MONITOR_METRICS)}, found {value!r}")
    return value


def _metrics(path, value):
    if (not isinstance(value, list) or not value or not all(isinstance(m, str) and m for m in value)
            or len(set(value)) != len(value)):
        raise UserError(f"config {path} must be a list of distinct metric names such as [top1], found {value!r}")
    unknown = [m for m in value if m not in METRIC_NAMES]
    if unknown:
        raise UserError(f"config {path} names {unknown[0]!r}, which is not a metric"
                        f"{_did_you_mean(unknown[0], METRIC_NAMES)}; known: {', '.join(METRIC_NAMES)}")
    return value


def _torch_type(kind):
    """The name of a class in torch.optim (an optimizer) or torch.optim.lr_scheduler."""
    def check(path: str, value: Any) -> str:
        import torch
        module = torch.optim if kind == "torch optimizer" else torch.optim.lr_scheduler
        names = sorted(n for n in dir(module) if not n.startswith("_") and isinstance(getattr(module, n), type))
        driven = OPTIMIZERS if kind == "torch optimizer" else SCHEDULERS
        if not isinstance(value, str) or value not in names:
            hint = _did_you_mean(_shown(value), names)
            raise UserError(f"config {path} {_shown(value)} is not a {kind} class in {module.__name__}{hint}")
        if value not in driven:
            raise UserError(f"config {path} {value} is a {kind} the trainer does not drive (it steps once a "
                            f"batch / an epoch, without closure or metric); use one of {', '.join(driven)}")
        return value
    return check


# --- structure -------------------------------------------------------------------------------

class Section:
    """A mapping with known keys. ``keys``: name -> check function or nested Section. ``aliases``:
    the lab's name -> ours. ``open_keys``: a Section whose other keys are passed through unchecked
    (the arguments of a torch class, which checks them itself)."""

    def __init__(self, keys, required=(), aliases=None, open_keys=False, nullable=False) -> None:
        self.keys, self.required, self.aliases = keys, tuple(required), dict(aliases or {})
        self.open_keys, self.nullable = open_keys, nullable

    def __call__(self, path, value):
        if value is None and self.nullable:
            return None
        if not isinstance(value, dict):
            raise UserError(f"config {path or 'file'} must be a mapping of keys, found {type(value).__name__}")
        out = {}
        for key, item in value.items():
            name = self.aliases.get(key, key)
            where = f"{path}.{_shown(key, 100)[1:-1] if isinstance(key, str) else _shown(key, 100)}" if path \
                else (_shown(key, 100)[1:-1] if isinstance(key, str) else _shown(key, 100))
            if name in out:
                lab = next(k for k in (key, *self.aliases) if self.aliases.get(k) == name and k in value)
                raise UserError(f"config {path + '.' if path else ''}{lab} is the lab's name of "
                                f"{path + '.' if path else ''}{name}, and both are given; keep one of them")
            if name not in self.keys:
                if self.open_keys:
                    out[name] = item
                    continue
                raise UserError(f"config key {where} is not known"
                                f"{_did_you_mean(str(key)[:100], list(self.keys) + list(self.aliases), path)}")
            out[name] = self.keys[name](where if name == key else f"{path}.{name}" if path else name, item)
        missing = [k for k in self.required if k not in out]
        if missing:
            raise UserError(f"config {path + ' ' if path else ''}lacks the key(s) {missing}; start from "
                            f"config_lenet5_keywords.yml")
        return out


def _did_you_mean(key, known, path="") -> str:
    known = [str(k) for k in known]
    close = [k for k in known if len(key) >= 4 and (key in k or k in key)][:1]  # 'margin' -> error_margin
    close = close or difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    prefix = f"{path}." if path else ""
    if close:
        return f"; did you mean {prefix}{close[0]}?"
    return f" (known: {', '.join(map(str, known))})"


# --- quantization and pruning settings ----------------------------------------------------------

MAX_BITWIDTH = 32       # the widest integer type the deployed code stores values in
MAX_ACCUMULATOR = 53    # the simulation wraps float64 sums, exact integers only up to 2^53
SEARCH_METRICS = ("top1", "balanced_accuracy", "stream_recall_at_target", "stream_mean_recall")  # the last two: app.stream_test
QUANTIZATION_DEFAULTS = {"error_margin": 3.0, "schedule": "halve", "start_bitwidth": 16, "min_bitwidth": 2,
                         "bits_accumulator": "auto", "metric": "top1"}
PRUNING_DEFAULTS = {"error_margin": 3.0, "max_steps": None, "metric": "top1"}
DECREMENT_FORMS = "'lambda bw: bw // K' or 'lambda bw: bw - K' (K an integer)"


def _bitwidth(key, value, high=MAX_BITWIDTH):
    if not _is_int(value) or not 2 <= value <= high:
        raise UserError(f"quantization {key} must be an integer from 2 to {high}, found {value!r}")
    return value


def _margin(section, value):
    if not _is_number(value) or not 0 <= value < 100:
        raise UserError(f"{section} error_margin is in percentage points (e.g. 3), from 0 up to 100; "
                        f"found {value!r}")
    return float(value)


def _metric(section, value):
    if value not in SEARCH_METRICS:
        raise UserError(f"{section} metric must be one of {', '.join(SEARCH_METRICS)}, found {value!r}")
    return value


def parse_decrement(text: str) -> tuple[str, int]:
    """('div', K) for ``lambda bw: bw // K`` or ('sub', K) for ``lambda bw: bw - K``; anything
    else is a UserError. The text is parsed, never evaluated."""
    bad = UserError(f"quantization decrement {text!r} is not accepted: only {DECREMENT_FORMS} "
                    f"(nothing read from a file is evaluated)")
    if not isinstance(text, str):
        raise bad
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        raise bad from None
    fn = tree.body
    if (not isinstance(fn, ast.Lambda) or len(fn.args.args) != 1 or fn.args.defaults or fn.args.vararg
            or fn.args.kwarg or fn.args.kwonlyargs or fn.args.posonlyargs):
        raise bad
    arg, body = fn.args.args[0].arg, fn.body
    if (not isinstance(body, ast.BinOp) or not isinstance(body.left, ast.Name) or body.left.id != arg
            or not isinstance(body.right, ast.Constant) or not _is_int(body.right.value)):
        raise bad
    k = body.right.value
    if isinstance(body.op, ast.FloorDiv) and k >= 2:
        return ("div", k)
    if isinstance(body.op, ast.Sub) and k >= 1:
        return ("sub", k)
    raise bad


def decrement_schedule(decrement: tuple[str, int], start: int, low: int) -> list[int]:
    """The bitwidths the lab's loop tried with ``decrement``, from ``start`` down to ``low``."""
    kind, k = decrement
    bits, bw = [], start
    while bw >= low:
        bits.append(bw)
        bw = bw // k if kind == "div" else bw - k
    return bits


@dataclass(frozen=True)
class QuantizationConfig:
    """The ``optimization.quantization`` section, validated. ``bits_accumulator`` is 'auto' (sized
    per layer by the search) or a fixed width for every layer."""
    error_margin: float = QUANTIZATION_DEFAULTS["error_margin"]
    schedule: object = QUANTIZATION_DEFAULTS["schedule"]  # "halve" or a descending tuple of bitwidths
    start_bitwidth: int = QUANTIZATION_DEFAULTS["start_bitwidth"]
    min_bitwidth: int = QUANTIZATION_DEFAULTS["min_bitwidth"]
    bits_accumulator: object = QUANTIZATION_DEFAULTS["bits_accumulator"]
    metric: str = QUANTIZATION_DEFAULTS["metric"]

    @property
    def bitwidths(self) -> list[int]:
        """The schedule as a descending list of bitwidths."""
        if self.schedule != "halve":
            return list(self.schedule)
        return decrement_schedule(("div", 2), self.start_bitwidth, self.min_bitwidth)

    def to_dict(self) -> dict:
        return {"error_margin": self.error_margin,
                "schedule": "halve" if self.schedule == "halve" else list(self.schedule),
                "start_bitwidth": self.start_bitwidth, "min_bitwidth": self.min_bitwidth,
                "bits_accumulator": self.bits_accumulator, "metric": self.metric}


def parse_quantization_config(section: dict | None) -> QuantizationConfig:
    """Validate an ``optimization.quantization`` mapping (None = all defaults; the lab's
    ``decrement`` accepted) into a QuantizationConfig."""
    section = {} if section is None else section
    if not isinstance(section, dict):
        raise UserError(f"optimization.quantization must be a mapping, found {type(section).__name__}")
    known = list(QUANTIZATION_DEFAULTS) + ["decrement"]
    for key in section:
        if key not in known:
            raise UserError(f"config key optimization.quantization.{key} is not known"
                            f"{_did_you_mean(str(key), known, 'optimization.quantization')}")
    if "decrement" in section and "schedule" in section:
        raise UserError("quantization has both the lab's decrement and schedule; keep one of them")
    values = {**QUANTIZATION_DEFAULTS, **section}
    margin = _margin("quantization", values["error_margin"])
    metric = _metric("quantization", values["metric"])
    start = _bitwidth("start_bitwidth", values["start_bitwidth"])
    low = _bitwidth("min_bitwidth", values["min_bitwidth"])
    accumulator = values["bits_accumulator"]
    if accumulator != "auto":
        accumulator = _bitwidth("bits_accumulator", accumulator, MAX_ACCUMULATOR)
    schedule = values["schedule"]
    if "decrement" in section:
        decrement = parse_decrement(section["decrement"])
        if low > start:
            raise UserError(f"quantization min_bitwidth {low} is above start_bitwidth {start}")
        schedule = tuple(decrement_schedule(decrement, start, low))
    elif isinstance(schedule, str):
        if schedule != "halve":
            raise UserError(f"quantization schedule must be 'halve' or a list of bitwidths "
                            f"such as [16, 8, 6, 4], found {schedule!r}")
        if low > start:
            raise UserError(f"quantization min_bitwidth {low} is above start_bitwidth {start}")
    elif isinstance(schedule, (list, tuple)) and schedule:
        schedule = tuple(_bitwidth("schedule entry", b) for b in schedule)
        if any(a <= b for a, b in zip(schedule, schedule[1:])):
            raise UserError(f"quantization schedule {list(schedule)} must be strictly descending")
        for key, end in (("start_bitwidth", schedule[0]), ("min_bitwidth", schedule[-1])):
            if key in section and section[key] != end:
                raise UserError(f"quantization {key} {section[key]} disagrees with schedule "
                                f"{list(schedule)}; drop {key} or make them agree")
        start, low = schedule[0], schedule[-1]
    else:
        raise UserError(f"quantization schedule must be 'halve' or a non-empty list of bitwidths, "
                        f"found {schedule!r}")
    return QuantizationConfig(margin, schedule, start, low, accumulator, metric)


@dataclass(frozen=True)
class PruningConfig:
    """The ``optimization.pruning`` section, validated."""
    error_margin: float = PRUNING_DEFAULTS["error_margin"]
    max_steps: int = PRUNING_DEFAULTS["max_steps"]  # None = until the margin or the candidates run out
    metric: str = PRUNING_DEFAULTS["metric"]

    def to_dict(self) -> dict:
        return {"error_margin": self.error_margin, "max_steps": self.max_steps, "metric": self.metric}


def parse_pruning_config(section: dict | None) -> PruningConfig:
    """Validate an ``optimization.pruning`` mapping (None = all defaults) into a PruningConfig."""
    section = {} if section is None else section
    if not isinstance(section, dict):
        raise UserError(f"optimization.pruning must be a mapping, found {type(section).__name__}")
    for key in section:
        if key not in PRUNING_DEFAULTS:
            raise UserError(f"config key optimization.pruning.{key} is not known"
                            f"{_did_you_mean(str(key), list(PRUNING_DEFAULTS), 'optimization.pruning')}")
    values = {**PRUNING_DEFAULTS, **section}
    steps = values["max_steps"]
    if steps is not None and (not _is_int(steps) or steps < 0):
        raise UserError(f"pruning max_steps must be a non-negative integer or null, found {steps!r}")
    return PruningConfig(_margin("pruning", values["error_margin"]), steps,
                         _metric("pruning", values["metric"]))


def _quantization_section(path, value):
    parse_quantization_config(value)
    return value


def _pruning_section(path, value):
    parse_pruning_config(value)
    return value


# --- the config file ----------------------------------------------------------------------------

# Bounds: the ranges a checkpoint's features must lie in (utils/checkpoint_checks.FEATURE_RANGES), so a
# config that trains is one every later script reads, and the cross-checks (win_length <= n_fft,
# n_mfcc <= n_mels, fmin < fmax <= Nyquist, clips of at most 10 s, frames the clip holds).
FEATURE_SECTION = Section({
    "sample_rate": _int(1000), "clip_samples": _int(1), "n_fft": _int(16), "win_length": _int(1),
    "hop_length": _int(1), "n_mels": _int(1), "fmin": _number(0), "fmax": _number(0, low_open=True),
    "n_mfcc": _int(1), "frames": _int(1), "top_db": _optional(_number(0, low_open=True)),
    "floor_db": _number(*FEATURE_RANGES["floor_db"][1:]),   # the mel power floor (data_loader/features.py)
})
FEATURE_SECTION.keys = {k: _capped(check, FEATURE_RANGES[k][2]) for k, check in FEATURE_SECTION.keys.items()}
FEATURE_SECTION.keys["frontend"] = _choice(*FRONTENDS)   # data_loader/integer_frontend.py: int16 PCM in


def FEATURES(path: str, value: Any) -> dict:
    value = FEATURE_SECTION(path, value)
    check_features(value, f"config {path}")
    return value


MAX_COUNT = 100_000          # background-noise clips per split (Speech Commands' train split: 85k clips)
MAX_BATCH = 65_536
MAX_SEED = 2 ** 32 - 1       # numpy's and torch's seeds are 32/64-bit; 2**32-1 holds in both
MAX_EPOCHS = 100_000
MAX_MS = 1_000.0             # time shift of a one-second clip
MAX_MASKS = 1_000
SNR_REFERENCES = ("window", "speech")   # data_loader.augmentation.signal_power: the whole window or its speech frames

AUGMENT = Section({
    "enabled": _bool, "time_shift_ms": _capped(_number(0), MAX_MS), "noise_prob": _number(0, 1),
    "snr_db": _pair(-200, 200), "snr_reference": _choice(*SNR_REFERENCES), "gain_db": _pair(-200, 200), "warp": _number(0, 1, high_open=True),
    "stretch": _number(0, 1, high_open=True),
    "spec_time_masks": _capped(_int(0), MAX_MASKS), "spec_time_width": _capped(_int(0), MAX_MASKS),
    "spec_freq_masks": _capped(_int(0), MAX_MASKS), "spec_freq_width": _capped(_int(0), MAX_MASKS),
    "bandlimit_prob": _number(0, 1), "bandlimit_hz": _capped(_number(0, low_open=True), 96_000),
    "edge_negatives": _number(0, 1), "edge_keep": _number(0, 1),
}, nullable=True)

BACKGROUND_NOISE = Section({"train": _capped(_int(0), MAX_COUNT), "validation": _capped(_int(0), MAX_COUNT),
                            "test": _capped(_int(0), MAX_COUNT), "seed": _capped(_int(0), MAX_SEED)},
                           nullable=True)

# Our loader's keys; KeywordDataLoader takes them too, plus the lab's.
LOADER_ARGS = {
    "data_dir": _string, "download": _optional(_choice("v0.01", "v0.02")), "keywords": _keywords,
    "batch_size": _capped(_int(1), MAX_BATCH), "eval_batch_size": _capped(_int(1), MAX_BATCH),
    "background_noise": BACKGROUND_NOISE,
    "augment": AUGMENT, "cache_dir": _string, "features": FEATURES,
    "normalize": _bool,   # false: raw MFCCs (the lab's code), true (default): per-coefficient mean 0, std 1
}
# --- the Speech Commands 12-class task (issue 26) ---------------------------------------------
# silence_share: silence clips (cut from _background_noise_) per split, as a share of the mean
# clips of a keyword (1 = the Speech Commands convention; 0 = no silence class); unknown_share:
# the other words sampled to that share (null: all of them); quiet_fraction: the silence clips
# that are digital silence. A silence class is the last class, after the keywords.
TASK = Section({"silence_share": _capped(_number(0), 100), "unknown_share": _optional(_capped(_number(0), 1000)),
                "quiet_fraction": _number(0, 1)}, nullable=True)
LOADER_ARGS["task"] = TASK
# windows cut from the training split's stream, added to the training clips (data_loader.stream_windows)
STREAM_WINDOWS = Section({"hours": _number(0, 10, low_open=True), "per_keyword": _capped(_int(1), 100),
                          "negatives": _number(0, 100), "seed": _capped(_int(0), MAX_SEED)}, nullable=True)
LOADER_ARGS["stream_windows"] = STREAM_WINDOWS
# alpha of speaker-balanced sampling: a training clip is drawn in proportion to (clips of its
# speaker in its class) ** -alpha (data_loader.speaker_balance); 0: uniform
LOADER_ARGS["speaker_balance"] = _number(0, 1)
RESERVED_WORDS = ("unknown", "silence", "_unknown_", "_silence_")


def task_classes(args: dict) -> int:
    """Classes of a data_loader.args mapping: unknown, the keywords, and silence when it is one."""
    keywords = args.get("keywords", list(DEFAULT_KEYWORDS))
    reserved = [w for w in keywords if w in RESERVED_WORDS]
    if reserved:
        raise UserError(f"config data_loader.args.keywords names '{reserved[0]}', which is a class of its own "
                        f"(silence: task.silence_share; unknown: every other word); remove it from keywords")
    return len(keywords) + 1 + (1 if (args.get("task") or {}).get("silence_share") else 0)


LAB_LOADER_ARGS = {
    "shuffle": _bool,                                   # reshuffle the training set every epoch
    "seed": _capped(_int(0), MAX_SEED),                 # the training shuffle seed (-> top-level seed)
    "validation_split": _lab_none(_split_fraction),     # used when IA_DATASET has no x_val
    "num_workers": _capped(_int(0), 1024),              # accepted, no effect: batches are tensor slices
}
LOADERS = {"SpeechCommandsDataLoader": Section(LOADER_ARGS, required=("data_dir",)),
           "KeywordDataLoader": Section({**LOADER_ARGS, **LAB_LOADER_ARGS}, required=("data_dir",))}


def _data_loader(path, value):
    if not isinstance(value, dict):
        raise UserError(f"config {path} must be a mapping with type and args, found {type(value).__name__}")
    kind = value.get("type")
    if not isinstance(kind, str) or kind not in LOADERS:
        raise UserError(f"config {path}.type must be one of {', '.join(LOADERS)}, found {_shown(kind)}"
                        f"{_did_you_mean(str(kind), list(LOADERS)) if isinstance(kind, str) else ''}")
    return Section({"type": lambda p, v: v, "args": LOADERS[kind]}, required=("type", "args"))(path, value)


COMMON_ARCH_ARGS = {"num_classes": _capped(_int(2), MAX_CLASSES), "dropout": _number(0, 1, high_open=True)}


def _widths_within_limits(path, widths):
    """After the architecture's own check: widths within the checkpoint reader's bounds."""
    if widths is not None and (not isinstance(widths, (list, tuple))
                               or not all(_is_int(w) and 1 <= w <= MAX_WIDTH for w in widths)):
        raise UserError(f"config {path} must be integers in 1..{MAX_WIDTH}, found {widths!r}")


def _arch(path, value):
    """``arch.type`` names a registered architecture (model/registry.py); ``arch.args`` are the
    parameters of its constructor (but input_shape, which the features give), each checked by the
    common checks here and by the architecture's own ``check_args``."""
    section = Section({"type": _string, "args": Section({}, open_keys=True, nullable=True)}, required=("type",))
    value = section(path, value)
    cls = registry.ARCHITECTURES.get(value["type"])
    if cls is None:
        known = sorted(registry.ARCHITECTURES)
        raise UserError(f"config {path}.type '{value['type']}' is not an architecture"
                        f"{_did_you_mean(str(value['type']), known)}")
    args = Section({name: COMMON_ARCH_ARGS.get(name, lambda p, v: v) for name in registry.arch_arg_names(cls)},
                   nullable=True)(f"{path}.args", value.get("args"))
    try:
        getattr(cls, "check_args", lambda a: None)(dict(args or {}))
    except ValueError as e:
        raise UserError(f"config {path}.args of {value['type']}: {e}") from None
    _widths_within_limits(f"{path}.args.widths", (args or {}).get("widths"))
    return value if args is None else {**value, "args": args}


ARCH = _arch


# lr and weight_decay are checked here; other arguments go to the torch class, which checks them
MAX_LR = 1e38   # the weights are float32 (at most 3.4e38): torch cannot step them by a larger rate
OPTIMIZER_ARGS = Section({"lr": _capped(_number(0, low_open=True), MAX_LR), "weight_decay": _capped(_number(0), 1e3)},
                         open_keys=True, nullable=True)
# the optimizers and schedulers the trainer drives: one step() a batch (no closure, dense
# gradients) and one scheduler step() an epoch without a metric; torch checks their arguments
# when they are built on a dummy parameter in validate_config, before any run folder exists
OPTIMIZERS = ("SGD", "Adam", "AdamW", "Adamax", "NAdam", "RAdam", "RMSprop", "Adagrad", "Adadelta",
              "ASGD", "Rprop")
SCHEDULERS = ("StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "CosineAnnealingWarmRestarts",
              "LinearLR", "ConstantLR", "PolynomialLR")


def _scheduler(path, value):
    if value is None:
        return None
    section = Section({"type": _torch_type("learning-rate scheduler"),
                       "args": Section({"step_size": _int(1), "gamma": _number(0, low_open=True),
                                        "T_max": _int(1)}, open_keys=True, nullable=True)},
                      required=("type",))
    return section(path, value)


def _smooth_list(path, value):
    if not (isinstance(value, list) and 1 <= len(value) <= 8 and all(
            _is_number(v) and 0 <= v <= 10_000 for v in value)):
        raise UserError(f"config {path} must be a list of 1 to 8 smoothing spans in ms (0 to 10000), "
                        f"found {value!r}")
    return [float(v) for v in value]


# distillation divides the logits by the temperature: below 0.01 the soft targets of float32 logits
# overflow (1e-300 made the first batch's loss NaN), above 1000 they are uniform
TEMPERATURE = _capped(_number(0.01), 1e3)

TRAINER = Section({
    "epochs": _capped(_int(1), MAX_EPOCHS), "save_dir": _string, "save_period": _capped(_int(1), MAX_EPOCHS),
    "verbosity": _int(0, 2), "monitor": _monitor, "early_stop": _optional(_capped(_int(0), MAX_EPOCHS)),
    "class_weights": _class_weights,
    "tensorboard": _bool, "ema": _optional(_number(0, 1, low_open=True, high_open=True)),
    "distillation": Section({"teachers": _capped(_int(0), 64), "temperature": TEMPERATURE,
                             "alpha": _number(0, 1)}, nullable=True),
}, required=("epochs",))

DISTILLATION = Section({"enabled": _bool, "temperature": TEMPERATURE,
                        "alpha": _number(0, 1),
                        "teacher": _optional(_string)}, nullable=True)
FINETUNING = Section({"epochs": _capped(_int(1), MAX_EPOCHS), "lr_factor": _capped(_number(0, low_open=True), 1e3),
                      "distillation": DISTILLATION, "monitor": _monitor},
                     nullable=True)
OPTIMIZATION = Section({"quantization": _quantization_section, "pruning": _pruning_section,
                        "finetuning": FINETUNING},
                       aliases={"quantizer": "quantization", "pruner": "pruning"}, nullable=True)

# the operating point calibrated after training (app.calibration): the threshold meeting
# target_false_alarms_per_hour on the validation split's stream of stream_hours hours (null: none)
DETECTOR = Section({"target_false_alarms_per_hour": _number(0, 1e6, low_open=True),
                    "stream_hours": _number(0, 100, low_open=True), "seed": _int(0, 2**32 - 1),
                    "smooth_ms": _smooth_list}, nullable=True)

CONFIG = Section({
    "name": _run_name, "n_gpu": _capped(_int(0), 1024), "seed": _capped(_int(0), MAX_SEED), "deterministic": _bool,
    "arch": ARCH, "data_loader": _data_loader,
    "optimizer": Section({"type": _torch_type("torch optimizer"), "args": OPTIMIZER_ARGS}, required=("type",)),
    "loss": _choice(DEFAULT_LOSS), "metrics": _metrics, "lr_scheduler": _scheduler, "trainer": TRAINER,
    "optimization": OPTIMIZATION, "detector": DETECTOR,
}, required=("name", "arch", "data_loader", "optimizer", "loss", "metrics", "trainer"))


# --- typed sections: what the other modules read; the defaults are here and nowhere else -------

DEFAULT_TARGET = 1.0        # false alarms per hour the operating point is chosen for
DEFAULT_HOURS = 1.0         # non-keyword audio in a stream built from a split
SMOOTH_MS = (300.0, 500.0, 700.0)
DEFAULT_CLASSES = 4         # arch.args.num_classes: unknown and the default keywords one, two, three
DEFAULT_KEYWORDS = ("one", "two", "three")


@dataclass(frozen=True)
class TeachersConfig:
    """``trainer.distillation``: K teachers trained first, the run's model distilled from their
    average (temperature, alpha)."""
    teachers: int = 0
    temperature: float = 2.0
    alpha: float = 0.8


@dataclass(frozen=True)
class TrainerConfig:
    """The ``trainer`` section, validated, with its defaults."""
    epochs: int
    save_dir: str = "saved"
    save_period: int = 1
    verbosity: int = 2
    monitor: str = "off"
    early_stop: object = None         # None or 0: no early stop
    class_weights: object = None      # None or a tuple of one weight per class
    tensorboard: bool = True
    ema: object = None                # None or the decay of the weight average, in (0, 1)
    distillation: TeachersConfig = field(default_factory=TeachersConfig)


def parse_trainer_config(section: dict) -> TrainerConfig:
    """Validate a ``trainer`` mapping into a TrainerConfig."""
    values = TRAINER("trainer", section)
    teachers = TeachersConfig(**{k: float(v) if k in ("temperature", "alpha") else v
                                 for k, v in (values.pop("distillation", None) or {}).items()})
    weights = values.pop("class_weights", None)
    return TrainerConfig(**values, class_weights=None if weights is None else tuple(weights),
                         distillation=teachers)


@dataclass(frozen=True)
class DistillationConfig:
    """``optimization.finetuning.distillation``: the float model (or ``teacher``, a checkpoint)
    teaches its compressed copy."""
    enabled: bool = False
    temperature: float = 4.0
    alpha: float = 0.5
    teacher: object = None            # None: the float model of the checkpoint; else a checkpoint path


@dataclass(frozen=True)
class FinetuningConfig:
    """``optimization.finetuning``: epochs, the rate as a factor of the float run's, the monitor
    (None: trainer.monitor) and the distillation."""
    epochs: int = 20
    lr_factor: float = 0.1
    monitor: object = None
    distillation: DistillationConfig = field(default_factory=DistillationConfig)


def float_run_rate_checked(base_lr: object, source: str, remedy: str = "give a checkpoint saved by train.py") -> float:
    """``base_lr``, the rate a float model was trained with as ``source`` (a checkpoint, or the
    config given with it) stores it, if it is one a config could give: a number in (0, MAX_LR]."""
    if not (_is_number(base_lr) and math.isfinite(base_lr) and 0 < base_lr <= MAX_LR):
        raise UserError(f"{source} stores the float run's learning rate as {_shown(base_lr)}, not a number in "
                        f"(0, {MAX_LR:g}]; {remedy}")
    return float(base_lr)


def finetuning_rate(base_lr: float, lr_factor: float) -> float:
    """The learning rate of a finetuning run, ``lr_factor`` times ``base_lr`` (the float run's),
    bounded as a config's ``optimizer.args.lr`` is: (0, MAX_LR] and finite. Two values within
    their own bounds can multiply past float32's step (1e38 x 1000) or to nothing (1e-300 x 1e-300)."""
    lr = base_lr * lr_factor
    if not (math.isfinite(lr) and 0 < lr <= MAX_LR):
        raise UserError(f"the finetuning learning rate, optimization.finetuning.lr_factor ({lr_factor:g}) x the "
                        f"float run's rate ({base_lr:g}), is {lr:g}, outside (0, {MAX_LR:g}]; change lr_factor "
                        f"or give the rate with --lr")
    return lr


def parse_finetuning_config(config: dict) -> FinetuningConfig:
    """The ``optimization.finetuning`` section of a config mapping (read or validated), validated
    into a FinetuningConfig."""
    values = dict((OPTIMIZATION("optimization", config.get("optimization")) or {}).get("finetuning") or {})
    distill = DistillationConfig(**(values.pop("distillation", None) or {}))
    return FinetuningConfig(**values, distillation=distill)


@dataclass(frozen=True)
class DetectorConfig:
    """The ``detector`` section: calibrate the operating point for ``target_false_alarms_per_hour``
    on a validation stream of ``stream_hours`` hours built with ``seed``, trying each smoothing span."""
    target_false_alarms_per_hour: float = DEFAULT_TARGET
    stream_hours: float = DEFAULT_HOURS
    seed: int = 0
    smooth_ms: tuple = SMOOTH_MS


def parse_detector_config(section: dict | None) -> DetectorConfig | None:
    """A ``detector`` mapping validated into a DetectorConfig; None (no section) stays None."""
    values = DETECTOR("detector", section)
    if values is None:
        return None
    values = {k: float(v) if k in ("target_false_alarms_per_hour", "stream_hours") else v
              for k, v in values.items()}
    if "smooth_ms" in values:
        values["smooth_ms"] = tuple(values["smooth_ms"])
    return DetectorConfig(**values)


@dataclass(frozen=True)
class RunConfig:
    """The top-level settings of a run."""
    seed: int = 0
    deterministic: bool = True
    n_gpu: int = 0
    num_classes: int = DEFAULT_CLASSES


def parse_run_config(config: dict) -> RunConfig:
    """The run settings of a validated config mapping."""
    return RunConfig(seed=int(config.get("seed", 0)), deterministic=bool(config.get("deterministic", True)),
                     n_gpu=int(config.get("n_gpu", 0)),
                     num_classes=(config["arch"].get("args") or {}).get("num_classes", DEFAULT_CLASSES))


def validate_config(raw: dict) -> dict:
    """A checked, canonical copy of a config mapping (see the module docstring); the input is not
    modified."""
    config = CONFIG("", copy.deepcopy(raw))
    args = config["data_loader"]["args"]
    if "seed" in args:  # the lab's shuffle seed seeds everything here, unless a top-level seed is given
        lab_seed = args.pop("seed")
        config.setdefault("seed", lab_seed)
    if args.get("validation_split", 0) is None:
        args.pop("validation_split")
    arch_args = config["arch"].get("args") or {}
    keywords = args.get("keywords", list(DEFAULT_KEYWORDS))
    classes = arch_args.get("num_classes", DEFAULT_CLASSES)
    if classes != task_classes(args):
        raise UserError(f"config arch.args.num_classes is {classes} but {len(keywords)} keywords give "
                        f"{task_classes(args)} classes (class 0 is every other word"
                        f"{', the last silence' if task_classes(args) > len(keywords) + 1 else ''})")
    weights = config["trainer"].get("class_weights")
    if weights is not None and len(weights) != classes:
        raise UserError(f"config trainer.class_weights has {len(weights)} entries for {classes} classes")
    noise = args.get("background_noise") or {}
    check_memory(sum(noise.get(s, 0) for s in ("train", "validation", "test")), args.get("features"),
                 "data_loader.args.background_noise")
    _check_torch_objects(config)
    return config


def validate_stored_loader(name: str, args: dict, source: str) -> dict:
    """A checkpoint's stored ``data_loader.args`` checked by the same rules as a config's (a
    received checkpoint may carry any value: a huge noise count, a batch size of 0), and the
    memory its clips would take; a UserError naming ``source`` otherwise. Returns the checked args."""
    try:
        checked = LOADERS[name]("data_loader.args", args)
        noise = checked.get("background_noise") or {}
        check_memory(sum(noise.get(s, 0) for s in ("train", "validation", "test")), checked.get("features"),
                     "data_loader.args.background_noise")
    except UserError as e:
        raise UserError(f"{source} stores a config the schema refuses ({e}); give a checkpoint saved by train.py") from None
    return checked


MEMORY_CAP = 16 * 2 ** 30   # bytes the clips of one split may take (waves, mel power, MFCCs), 16 GiB


def clip_bytes(features: dict | None) -> int:
    """Bytes one clip takes while its split is built: float32 samples, mel power and MFCCs."""
    f = {"clip_samples": 16000, "n_mels": 40, "n_mfcc": 13, "frames": 100, **(features or {})}
    return 4 * (f["clip_samples"] + (f["n_mels"] + f["n_mfcc"]) * f["frames"])


def check_memory(clips: int, features: dict | None, lower: str) -> None:
    """A UserError naming ``lower`` (the value to reduce) when ``clips`` clips of these features
    would take more than MEMORY_CAP."""
    need = max(clips, 1) * clip_bytes(features)
    if need > MEMORY_CAP:
        raise UserError(f"{clips} clip(s) of {clip_bytes(features) / 2 ** 20:.1f} MiB (features.clip_samples, "
                        f"n_mels, n_mfcc, frames) need {need / 2 ** 30:.1f} GiB, above the cap of "
                        f"{MEMORY_CAP / 2 ** 30:g} GiB; lower {lower} or the feature sizes")


def _check_torch_objects(config):
    """Build the optimizer and scheduler on a dummy parameter (torch checks their arguments: betas
    in [0, 1), eps >= 0, ...) and run the model on one zero input (the frames and coefficients
    must fit the architecture), without touching the random state."""
    import torch
    opt, sched, arch = config["optimizer"], config.get("lr_scheduler"), config["arch"]
    with torch.random.fork_rng(devices=[]):
        where = "optimizer.args"
        try:
            optimizer = getattr(torch.optim, opt["type"])([torch.zeros(1, requires_grad=True)],
                                                          **dict(opt.get("args") or {}))
            if sched:
                where = "lr_scheduler.args"
                scheduler = getattr(torch.optim.lr_scheduler, sched["type"])(optimizer, **dict(sched.get("args") or {}))
                _check_rates(scheduler, optimizer, config["trainer"]["epochs"], sched["type"])
        except (TypeError, ValueError, KeyError, RuntimeError, OverflowError, ZeroDivisionError) as e:
            raise UserError(f"config {where} do not fit {opt['type'] if where[0] == 'o' else sched['type']}: "
                            f"{_shown(str(e).splitlines()[0] if str(e) else type(e).__name__, 200)}") from None
        features = config["data_loader"]["args"].get("features")
        model = registry.make_model(arch["type"], arch.get("args"), features, checked=True)
        try:
            with torch.no_grad():
                model(torch.zeros(1, *registry.input_shape_of(features)))
        except RuntimeError as e:
            shape = registry.input_shape_of(features)
            raise UserError(f"config data_loader.args.features give inputs of {shape[1]} frames x {shape[2]} "
                            f"coefficients, which {arch['type']} cannot take "
                            f"({_shown(str(e).splitlines()[0], 120)}); raise frames / n_mfcc") from None


def _check_rates(scheduler, optimizer, epochs, kind):
    """Step ``scheduler`` once an epoch, as the trainer does, and refuse a rate that leaves
    (0, MAX_LR] or is not finite on the way (a StepLR gamma of 1e300 overflowed the float32 weights'
    update in the second epoch)."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for epoch in range(1, epochs + 1):
            for group in optimizer.param_groups:
                lr = group["lr"]
                if not (_is_number(lr) and math.isfinite(lr) and 0 <= lr <= MAX_LR):
                    raise UserError(f"config lr_scheduler {kind} makes the learning rate {_shown(lr)} in epoch "
                                    f"{epoch}, outside [0, {MAX_LR:g}]; change lr_scheduler.args or optimizer.args.lr")
            optimizer.step()
            scheduler.step()
