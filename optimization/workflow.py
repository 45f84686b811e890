"""What quantize.py, prune.py and profile.py do, on a checkpoint and its validation split.

Each search evaluates the model many times; the validation split is converted to normalised
MFCCs once and stays in memory, so one evaluation is one forward pass over a tensor.
"""
import time
from pathlib import Path

from configuration.schema import validate_config
from model.loss import nll_loss
from optimization.profiling import format_profile, profile_model
from optimization.pruning import format_report as pruning_report, save_pruning, search_pruning
from optimization.quantization import (format_report as quantization_report, save_quantization,
                                       search_per_layer_weights, search_quantization)
from trainer.evaluation import evaluate
from utils.atomic import read_yaml
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
    config = validate_config(read_yaml(config_path, "config file")) if config_path else ckpt["config"]
    return (config.get("optimization") or {}).get(name)


def keep_previous(path):
    """An existing result is renamed (``name.<timestamp>.yml`` and its PNG), never overwritten."""
    path = Path(path)
    if path.exists():
        stamp = time.strftime("%Y%m%d_%H%M%S", time.localtime(path.stat().st_mtime))
        for old in (path, path.with_suffix(".png")):
            if old.exists():
                old.rename(old.with_name(f"{old.stem}.{stamp}{old.suffix}"))


def _save_solution(save, result, settings, checkpoint, output, name):
    """Write a search result to ``output`` or ``name`` next to the checkpoint, keeping an older one."""
    path = Path(output) if output else Path(checkpoint).with_name(name)
    keep_previous(path)
    print(f"Saving config: {path} ...")
    save(path, result, settings)
    return path


def run_quantization(checkpoint, per_layer=False, pruning=None, config_path=None, output=None):
    model, ckpt, top1, inputs = validation_setup(checkpoint, pruning=pruning)
    settings = optimization_section(ckpt, "quantization", config_path)
    result = search_quantization(model, top1, inputs, settings)
    if per_layer:
        result = search_per_layer_weights(model, top1, result)
    print(quantization_report(result))
    return result, _save_solution(save_quantization, result, settings, checkpoint, output, "quantization.yml")


def run_pruning(checkpoint, quantization=None, config_path=None, output=None):
    model, ckpt, top1, _ = validation_setup(checkpoint, quantization=quantization)
    settings = optimization_section(ckpt, "pruning", config_path)
    result = search_pruning(model, top1, settings)
    print(pruning_report(result))
    return result, _save_solution(save_pruning, result, settings, checkpoint, output, "pruning.yml")


def run_profile(checkpoint, quantization=None, pruning=None, with_accuracy=True):
    """Cost of the (quantized, pruned) model and its test-split top-1."""
    from trainer.testing import run_test
    model, _ = restore_model(checkpoint, quantization, pruning)
    profile = profile_model(model)
    accuracy = run_test(checkpoint, quantization, pruning)["top1"] if with_accuracy else None
    return profile, format_profile(profile, accuracy)
