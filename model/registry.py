"""The architectures this project builds, and how a checkpoint becomes a model again.

A model class registers itself with ``@register`` (in model/ or anywhere else, e.g. a test), takes
``input_shape`` (channels, frames, coefficients: derived from the feature settings, never from its
config args) and ``widths`` (the kernel counts of its prunable layers, so a compact copy can be
built), describes its blocks with ``describe()`` (see fixedpoint/graph.py) and may check its
config args with a classmethod ``check_args(args)`` that raises ValueError. ``KeywordModel`` gives
the forward pass from the description.
"""
import inspect

import torch
import torch.nn.functional as F

from base import BaseModel
from fixedpoint.graph import run
from utils.checkpoint import MAX_CLASSES, MAX_WIDTH
from utils.errors import UserError
from utils.values import is_int, is_number

ARCHITECTURES = {}


def register(cls):
    """Class decorator: make ``cls`` buildable by name (``arch.type`` in a config, a checkpoint)."""
    ARCHITECTURES[cls.__name__] = cls
    return cls


def architecture(name, source="config arch.type"):
    cls = ARCHITECTURES.get(str(name))
    if cls is None:
        raise UserError(f"{source} names architecture '{name}', which this project does not build "
                        f"(known: {', '.join(sorted(ARCHITECTURES))})")
    return cls


def arch_arg_names(cls):
    """The config args an architecture takes: its constructor's parameters but input_shape."""
    params = inspect.signature(cls.__init__).parameters
    return [p for p in params if p not in ("self", "input_shape")
            and params[p].kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]


def input_shape_of(features):
    """(1, frames, n_mfcc) from a checkpoint's or data loader's feature settings (a dict)."""
    features = dict(features or {})
    return (1, int(features.get("frames", 100)), int(features.get("n_mfcc", 13)))


def check_arch_args(cls, args, where):
    """Arguments of ``cls`` from a (possibly forged) checkpoint, checked before any
    tensor is allocated: known names, class count, dropout, widths within limits, then the
    architecture's own ``check_args``."""
    if not isinstance(args, dict):
        raise UserError(f"{where}: arch_args must be a mapping, found {type(args).__name__}")
    allowed = arch_arg_names(cls)
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise UserError(f"{where}: unknown arch_args {unknown}; allowed: {', '.join(allowed)}")
    classes = args.get("num_classes", 4)
    if not is_int(classes) or not 2 <= classes <= MAX_CLASSES:
        raise UserError(f"{where}: arch_args.num_classes must be an integer in 2..{MAX_CLASSES}, found {classes!r}")
    dropout = args.get("dropout", 0.5)
    if not is_number(dropout) or not 0 <= dropout < 1:
        raise UserError(f"{where}: arch_args.dropout must be a number in [0, 1), found {dropout!r}")
    widths = args.get("widths")
    if widths is not None and (not isinstance(widths, (list, tuple))
                               or not all(is_int(w) and 1 <= w <= MAX_WIDTH for w in widths)):
        raise UserError(f"{where}: arch_args.widths must be integers in 1..{MAX_WIDTH}, found {widths!r}")
    try:
        getattr(cls, "check_args", lambda a: None)(dict(args))
    except ValueError as e:
        raise UserError(f"{where}: arch_args.{e}") from None


def make_model(arch, arch_args, features, source="config", checked=False):
    """The architecture's model for these features, its parameters in channels-last layout: oneDNN's
    convolutions and max pooling make a training epoch 1.3-2x faster on CPU in NHWC for models of
    few channels (``bench/train_throughput.py``, NCHW row). Values are the same; only the summation order
    inside a convolution differs. A state dict loads into a model of either layout. ``checked``: the
    args come from a config the schema validated (configuration/schema.py), so they are not checked
    again here; a checkpoint's are."""
    cls = architecture(arch, f"{source} arch.type" if source == "config" else source)
    args = arch_args if arch_args is not None else {}
    if not checked:
        check_arch_args(cls, args, source)
    args = dict(args)
    try:
        model = cls(**args, input_shape=input_shape_of(features))
    except (TypeError, ValueError) as e:
        raise UserError(f"{source} arch.args do not fit {arch}: {e}") from None
    return model.to(memory_format=torch.channels_last)


def build_model(ckpt, source="checkpoint"):
    """The model a checkpoint describes, with its weights loaded."""
    arch = ckpt.arch
    model = make_model(arch, ckpt.arch_args, ckpt.features, source=f"{source}")
    try:
        model.load_state_dict(ckpt.state_dict)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise UserError(f"{source} does not fit {arch}({dict(ckpt.arch_args or {})}): {first}; "
                        f"was it saved for another architecture?") from None
    return model


class KeywordModel(BaseModel):
    """Base of the keyword models: log-probabilities of the logits its description computes.
    Subclasses set ``input_shape``, ``widths`` and ``arch_args`` and implement ``describe()``."""

    def logits(self, x, **resume):
        """``resume``: ``start``, ``codes_of`` and ``capture`` of ``fixedpoint.graph.run``."""
        return run(self.describe(), x, **resume)

    def forward(self, x, **resume):
        return F.log_softmax(self.logits(x, **resume), dim=1)

    def compact_args(self, widths):
        """Constructor args of the same architecture with other widths (for compaction)."""
        return {**self.arch_args, "widths": [int(w) for w in widths]}
