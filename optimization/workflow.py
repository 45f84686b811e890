"""What quantize.py, prune.py and profile.py do, on a checkpoint and its validation split.

Each search evaluates the model many times; the validation split is converted to normalised
MFCCs once and stays in memory, so one evaluation is one forward pass over a tensor.
"""
import os
import shutil
import time
from pathlib import Path

from model.loss import nll_loss
from optimization.profiling import format_profile, profile_model
from optimization.pruning import format_report as pruning_report, save_pruning, search_pruning
from optimization.quantization import (format_report as quantization_report, save_quantization,
                                       search_per_layer_weights, search_quantization)
from trainer.evaluation import evaluate
from utils.atomic import read_yaml
from utils.errors import UserError
from utils.restore import data_for_checkpoint, normalization_of, restore_model


def validation_setup(checkpoint, quantization=None, pruning=None, data_dir=None):
    """(model, checkpoint dict, evaluate(model) -> validation top-1, validation inputs)."""
    model, ckpt = restore_model(checkpoint, quantization, pruning)
    data = data_for_checkpoint(ckpt, data_dir)
    mean, std = normalization_of(ckpt)
    loader = data.eval_loader("validation", mean, std)

    def top1(m):
        return evaluate(m, loader, nll_loss)["top1"]
    return model, ckpt, top1, loader.inputs


def optimization_section(ckpt, name, config_path=None):
    """The ``optimization.<name>`` settings: from ``-c`` when given, else the checkpoint's config."""
    config = read_yaml(config_path, "config file") if config_path else ckpt["config"]
    return (config.get("optimization") or {}).get(name)


def keep_previous(path):
    """An existing result stays available under ``name.<timestamp>.yml`` (and its PNG): it is
    hard-linked (or copied) to that name and the new file then replaces ``path`` atomically, so a
    complete ``path`` exists at every instant, even if the process is killed in between."""
    path = Path(path)
    if path.exists():
        stamp = time.strftime("%Y%m%d_%H%M%S", time.localtime(path.stat().st_mtime))
        for old in (path, path.with_suffix(".png")):
            if old.is_file():
                _backup(old, stamp)


def _backup(old, stamp):
    for n in range(1, 1000):
        backup = old.with_name(f"{old.stem}.{stamp}{'' if n == 1 else f'_{n}'}{old.suffix}")
        if backup.exists():
            continue
        try:
            os.link(old, backup)
        except FileExistsError:
            continue
        except OSError:   # a file system without hard links
            shutil.copy2(old, backup)
        return backup
    raise UserError(f"too many backups of {old}; remove some")


def output_path(checkpoint, output, name, inputs=()):
    """Where a search result goes: ``-o`` as given (a file path, or an existing folder to write
    ``name`` into), else ``name`` next to the checkpoint. Checked before the search runs: never a
    path under a file, never one of the inputs (checkpoint, solution files, config)."""
    path = Path(output) if output else Path(checkpoint).with_name(name)
    if path.is_dir():
        path = path / name
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"cannot write {path}: {parent} is a file, not a folder")
            break
    for given in (checkpoint, *inputs):
        if given and Path(given).resolve() in (path.resolve(), path.with_suffix(".png").resolve()):
            raise UserError(f"output {path} would overwrite the input {given}; choose another -o")
    return path


def _save_solution(save, result, settings, path):
    """Write a search result to ``path`` (see output_path), keeping an older one."""
    path = Path(path)
    keep_previous(path)
    print(f"Saving config: {path} ...")
    save(path, result, settings)
    return path


def run_quantization(checkpoint, per_layer=False, pruning=None, config_path=None, output=None):
    output = output_path(checkpoint, output, "quantization.yml", (pruning, config_path))
    model, ckpt, top1, inputs = validation_setup(checkpoint, pruning=pruning)
    settings = optimization_section(ckpt, "quantization", config_path)
    result = search_quantization(model, top1, inputs, settings)
    if per_layer:
        result = search_per_layer_weights(model, top1, result)
    print(quantization_report(result))
    return result, _save_solution(save_quantization, result, settings, output)


def run_pruning(checkpoint, quantization=None, config_path=None, output=None):
    output = output_path(checkpoint, output, "pruning.yml", (quantization, config_path))
    model, ckpt, top1, _ = validation_setup(checkpoint, quantization=quantization)
    settings = optimization_section(ckpt, "pruning", config_path)
    result = search_pruning(model, top1, settings)
    print(pruning_report(result))
    return result, _save_solution(save_pruning, result, settings, output)


def run_profile(checkpoint, quantization=None, pruning=None, with_accuracy=True):
    """Cost of the (quantized, pruned) model and its test-split top-1."""
    from trainer.testing import run_test
    model, _ = restore_model(checkpoint, quantization, pruning)
    profile = profile_model(model)
    accuracy = run_test(checkpoint, quantization, pruning)["top1"] if with_accuracy else None
    return profile, format_profile(profile, accuracy)
