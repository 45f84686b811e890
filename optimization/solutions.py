"""Loading, validating and applying quantization.yml and pruning.yml solutions.

A solution file is user-editable text that outlives the model it was made for, so everything in
it is checked against the model before use; each problem is a one-line UserError that names the
file, the layer and what to change.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

from fixedpoint.graph import describe
from fixedpoint.pruning_rules import propagate_pruning
from fixedpoint.layers import LayerQuantization, fixed_point_layers
from utils import yaml_reader
from utils.atomic import read_yaml
from utils.errors import UserError
from utils.values import is_int

if TYPE_CHECKING:
    from model.registry import KeywordModel

QUANTIZATION_KEYS = tuple(f.name for f in fields(LayerQuantization))
BIT_KEYS = tuple(k for k in QUANTIZATION_KEYS if k.startswith("bits_"))
# What the integer engine and the C code can hold: data codes in at most 32-bit integers, the
# accumulator in a register the float64 simulation wraps exactly (below 2^53). A wider format
# (e.g. 64 bits) would silently give a constant output; it is refused.
MAX_DATA_BITS = 32
MAX_ACCUMULATOR_BITS = 53
MAX_INTEGER_LENGTH = 128   # |il|: 2^(bits - il - 1) must stay a finite float


def _check_names(label, names, model):
    """Every named layer must exist in ``model``; the message lists what the model has."""
    layers = fixed_point_layers(model)
    unknown = [name for name in names if name not in layers]
    if unknown:
        raise UserError(f"{label} names layers {unknown} that {type(model).__name__} lacks "
                        f"(it has {', '.join(layers)}); was it made for another model?")
    return layers


def _section(path, key, what, data=None):
    if data is None:  # a file, or a solution's content stored in a finetuned checkpoint
        data = dict(path) if isinstance(path, dict) else read_yaml(path, what)
    if not isinstance(data, dict) or key not in data:
        lab = " (or the lab's 'solutions')" if key == "layers" else ""
        raise UserError(f"{path} has no '{key}' section{lab}; is it a {what} written by this tool?")
    section = data[key]
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise UserError(f"'{key}' in {path} must map layer names to settings, "
                        f"found {type(section).__name__}")
    return section


def _layer_quantization(path, name, entry):
    if not isinstance(entry, dict):
        raise UserError(f"layer {name} in {path} must be a mapping of "
                        f"{', '.join(QUANTIZATION_KEYS)}, found {type(entry).__name__}")
    unknown = [k for k in entry if k not in QUANTIZATION_KEYS]
    if unknown:
        raise UserError(f"layer {name} in {path} has unknown keys {unknown}; "
                        f"allowed: {', '.join(QUANTIZATION_KEYS)}")
    for key, value in entry.items():
        if not is_int(value):
            raise UserError(f"{name}.{key} in {path} must be an integer, found {value!r}")
        if key in BIT_KEYS:
            high = MAX_ACCUMULATOR_BITS if key == "bits_accumulator" else MAX_DATA_BITS
            if not 0 <= value <= high:
                raise UserError(f"{name}.{key} in {path} is {value}; bitwidths must be >= 0 (0 = float) "
                                f"and at most {high} (the widest the integer code holds)")
        elif abs(value) > MAX_INTEGER_LENGTH:
            raise UserError(f"{name}.{key} in {path} is {value}; integer lengths must lie within "
                            f"-{MAX_INTEGER_LENGTH}..{MAX_INTEGER_LENGTH}")
    for group in ("inputs", "weights", "outputs"):
        if entry.get(f"bits_{group}") and f"il_{group}" not in entry:
            raise UserError(f"{name} in {path} sets bits_{group} but not il_{group}; "
                            f"add il_{group} (the integer length) or regenerate the file")
    return LayerQuantization(**entry)


def load_quantization(path: str | os.PathLike | dict, model: KeywordModel) -> dict[str, LayerQuantization]:
    """Layer name -> LayerQuantization from a quantization.yml, validated against ``model``: ours
    (``layers``) or the lab's (``solutions``, the same seven keys per layer)."""
    path = path if isinstance(path, dict) else Path(path)
    data = dict(path) if isinstance(path, dict) else read_yaml(path, "quantization solution")
    key = "layers" if "layers" in data or "solutions" not in data else "solutions"
    section = _section(path, key, "quantization solution", data)
    _check_names(str(path), list(section), model)
    return {name: _layer_quantization(path, name, entry) for name, entry in section.items()}


def load_pruning(path: str | os.PathLike | dict, model: KeywordModel) -> dict[str, list[int]]:
    """Layer name -> sorted pruned kernel indices from a pruning.yml, validated against
    ``model``."""
    path = path if isinstance(path, dict) else Path(path)
    section = _section(path, "pruned_filters", "pruning solution")
    layers = _check_names(str(path), list(section), model)
    output = describe(model).output.layer
    pruned = {}
    for name, indices in section.items():
        indices = [] if indices is None else indices
        if not isinstance(indices, list) or not all(is_int(i) for i in indices):
            raise UserError(f"pruned_filters.{name} in {path} must be a list of kernel indices, "
                            f"found {indices!r}")
        count = layers[name].out_channels_or_features
        outside = sorted(i for i in set(indices) if not 0 <= i < count)
        if outside:
            raise UserError(f"pruned_filters.{name} in {path} has kernel indices {outside} outside "
                            f"0..{count - 1} ({name} has {count} kernels)")
        indices = sorted(set(indices))
        if indices and layers[name] is output:   # a pruned class output is a class never predicted
            raise UserError(f"pruned_filters.{name} in {path} prunes class outputs {indices} of the class-output "
                            f"layer {name}: the model would never predict those classes; the class output is "
                            f"never pruned, give {name}: []")
        if len(indices) == count:
            raise UserError(f"pruned_filters.{name} in {path} prunes all {count} kernels of "
                            f"{name}, which would cut the network; keep at least one")
        pruned[name] = indices
    return pruned


def solution_text(source: str | os.PathLike | dict | None) -> str | None:
    """The YAML text of a solution given as a path or as stored content (a mapping)."""
    if source is None:
        return None
    if isinstance(source, dict):
        return yaml_reader.dumps(dict(source), default_flow_style=False)
    path = Path(source)
    if not path.is_file():
        raise UserError(f"solution file not found: {path} (check the path)")
    return path.read_text(encoding="utf-8")


def apply_quantization(model: KeywordModel, solution: Mapping[str, LayerQuantization]) -> None:
    """Give each named layer its format (a copy); layers not named run in float."""
    layers = _check_names("the quantization solution", list(solution), model)
    for name, layer in layers.items():
        layer.quantization = replace(solution[name]) if name in solution else LayerQuantization()


def apply_pruning(model: KeywordModel, pruned: Mapping[str, Sequence[int]]) -> None:

    """Prune the named layers' kernels (masks them and zeroes their weights and biases). Earlier
    pruning stays: zeroed weights cannot be restored, so apply to a freshly loaded model."""
    layers = _check_names("the pruning solution", list(pruned), model)
    for name, indices in pruned.items():
        layers[name].prune_kernels(indices)
    propagate_pruning(describe(model))
