"""What quantize.py, prune.py and profile.py do, on a checkpoint and its validation split.

Each search evaluates the model many times; the validation split is converted to normalised
MFCCs once and stays in memory, so one evaluation is one forward pass over a tensor.

A combined solution is checked as one. ``quantize.py -p pruning.yml`` searches bitwidths on the
pruned model with the floor counted from the *unpruned* float model, so the quantized, pruned
model it saves meets the quantization margin (the back-off raises quantization groups).
``prune.py -q quantization.yml`` prunes the quantized model within the pruning margin of the
quantized model, and then restores the last pruned kernels until the combination also meets the
quantization margin counted from the float model.
"""
from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from configuration.schema import parse_pruning_config, parse_quantization_config, validate_config
from model.metric import silence_class
from optimization.evaluations import PrefixReuse
from optimization.profiling import format_profile, profile_model
from optimization.pruning import format_report as pruning_report, save_pruning, search_pruning
from optimization.quantization import search_per_layer_weights, search_quantization
from optimization.quantization_report import format_report as quantization_report, save_quantization
from optimization.scores import false_alarm_change
from trainer.evaluation import evaluate
from utils.atomic import check_replaceable, read_yaml
from utils.errors import UserError
from app.restore import data_for_checkpoint, loss_of, normalization_of, restore_model
from app.testing import run_test
from app.detection import KeywordClassifier
from app.stream_test import STREAM_METRICS, StreamValidation
from utils.checkpoint import load_checkpoint

if TYPE_CHECKING:
    import torch

    from app.restore import SolutionSource
    from model.registry import KeywordModel
    from optimization.profiling import Profile
    from optimization.pruning import PruningResult
    from optimization.quantization import QuantizationResult
    from utils.checkpoint import Checkpoint


SCORES = ("top1", "balanced_accuracy", "false_alarm_rate", "min_keyword_recall", "false_alarms", "non_keyword_clips")


def validation_setup(checkpoint: str | os.PathLike, quantization: SolutionSource | None = None,
                     pruning: SolutionSource | None = None, data_dir: str | os.PathLike | None = None,
                     use_stored: bool = True, stream: bool = False
                     ) -> tuple[KeywordModel, Checkpoint, Callable[[KeywordModel], dict[str, float]], torch.Tensor]:
    """(model, checkpoint dict, evaluate(model) -> dict of validation metrics, validation inputs);
    with ``stream`` the metrics include the streaming measure (app.stream_test.StreamValidation)."""
    model, ckpt = restore_model(checkpoint, quantization, pruning, use_stored)
    on_stream = StreamValidation.of_checkpoint(KeywordClassifier(model, ckpt), data_dir) if stream else None
    if on_stream is not None:
        print(on_stream.describe)
    data = data_for_checkpoint(ckpt, data_dir)
    mean, std = normalization_of(ckpt)
    loader = data.eval_loader("validation", mean, std)
    names = ckpt.names(data.keywords)
    num_classes, silence = len(names), silence_class(names)
    criterion = loss_of(ckpt)

    reuse = PrefixReuse()  # blocks a candidate leaves unchanged are not recomputed

    def scores(m: KeywordModel) -> dict[str, float]:
        result = evaluate(reuse.bind(m), loader, criterion, num_classes=num_classes, silence=silence)
        out = {k: result[k] for k in SCORES}
        if on_stream is not None:
            out.update(on_stream(m))
        return out
    return model, ckpt, scores, loader.inputs


def optimization_section(ckpt: Checkpoint, name: str, config_path: str | os.PathLike | None = None) -> dict | None:
    """The ``optimization.<name>`` settings: from ``-c`` when given, else the checkpoint's config."""
    config = validate_config(read_yaml(config_path, "config file")) if config_path else ckpt.config
    return (config.get("optimization") or {}).get(name)


def keep_previous(path: str | os.PathLike) -> None:
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


def output_path(checkpoint: str | os.PathLike, output: str | os.PathLike | None, name: str,
                inputs: Sequence[str | os.PathLike | None] = ()) -> Path:
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
    check_replaceable(path)   # a FIFO, a device, a symbolic link: refused before the search
    check_replaceable(path.with_suffix(".png"))
    return path


def next_command(checkpoint: str, quantization: str | None, pruning: str | None, finetuned: bool) -> str:
    """The command a user types after testing or profiling ``checkpoint`` with these solutions:
    search what is not searched yet, finetune a quantized and pruned model, export a finetuned one."""
    if finetuned:
        return f"python3 export.py -r {checkpoint} -o deploy_out"
    if quantization and pruning:
        return f"python3 train.py -r {checkpoint} -q {quantization} -p {pruning}   (finetunes)"
    if quantization:
        return f"python3 prune.py -r {checkpoint} -q {quantization}"
    if pruning:
        return f"python3 quantize.py -r {checkpoint} -p {pruning}"
    return f"python3 quantize.py -r {checkpoint}"


def next_after_evaluation(checkpoint: str, quantization: str | None = None, pruning: str | None = None) -> str:
    """``Next: ...`` after test.py or profile.py (a finetuned checkpoint goes to the export)."""
    finetuned = load_checkpoint(checkpoint).finetuned_from is not None
    return f"Next: {next_command(checkpoint, quantization, pruning, finetuned)}"


def _save_solution(save, result, settings, path, next_command=None):
    """Write a search result to ``path`` (see output_path), keeping an older one; then say what
    was written and the command a user types next."""
    path = Path(path)
    keep_previous(path)
    print(f"Saving config: {path} ...")
    figure = save(path, result, settings)
    print(f"Wrote {path} and {figure} (the search's {result.metric} figure)")
    if next_command:
        print(f"Next: {next_command}")
    return path


def _float_baseline(checkpoint, metric, evaluate_scores):
    """The decision metric of the checkpoint's float, unpruned model on validation."""
    float_model, _ = restore_model(checkpoint, use_stored=False, announce=None)
    return float(evaluate_scores(float_model)[metric])


def run_quantization(checkpoint: str | os.PathLike, per_layer: bool = False, pruning: str | os.PathLike | None = None,
                     config_path: str | os.PathLike | None = None,
                     output: str | os.PathLike | None = None) -> tuple[QuantizationResult, Path]:
    output = output_path(checkpoint, output, "quantization.yml", (pruning, config_path))
    settings = optimization_section(load_checkpoint(checkpoint), "quantization", config_path)
    stream = parse_quantization_config(settings).metric in STREAM_METRICS
    model, ckpt, scores, inputs = validation_setup(checkpoint, pruning=pruning, use_stored=False, stream=stream)
    baseline = None
    if pruning:  # the margin counts from the float model before pruning: the combination is checked
        baseline = _float_baseline(checkpoint, parse_quantization_config(settings).metric, scores)
    result = search_quantization(model, scores, inputs, settings, baseline_override=baseline)
    if per_layer:
        result = search_per_layer_weights(model, scores, result)
    print(quantization_report(result))
    # the model carries the solution to be saved (per-layer bitwidths, sized accumulators): measured as saved
    finetune = f"python3 train.py -r {checkpoint} -q {output}" + (f" -p {pruning}" if pruning else "")
    for line in false_alarm_change(result.details.get("baseline"), scores(model), "quantization",
                                   f"finetune the quantized model ({finetune}) or keep more bits "
                                   f"(a smaller optimization.quantization.error_margin)"):
        print(line)
    following = (f"python3 test.py -r {checkpoint} -q {output} -p {pruning}" if pruning else
                 f"python3 prune.py -r {checkpoint} -q {output}")
    return result, _save_solution(save_quantization, result, settings, output, following)


def run_pruning(checkpoint: str | os.PathLike, quantization: str | os.PathLike | None = None,
                config_path: str | os.PathLike | None = None,
                output: str | os.PathLike | None = None) -> tuple[PruningResult, Path]:
    output = output_path(checkpoint, output, "pruning.yml", (quantization, config_path))
    settings = optimization_section(load_checkpoint(checkpoint), "pruning", config_path)
    stream = parse_pruning_config(settings).metric in STREAM_METRICS
    model, ckpt, scores, _ = validation_setup(checkpoint, quantization=quantization, use_stored=False,
                                              stream=stream)
    combined_floor = None
    if quantization:  # the combination must also meet the quantization's margin from the float model
        q_settings = parse_quantization_config(optimization_section(ckpt, "quantization", config_path))
        metric = parse_pruning_config(settings).metric
        combined_floor = _float_baseline(checkpoint, metric, scores) - q_settings.error_margin / 100
    result = search_pruning(model, scores, settings, combined_floor=combined_floor)
    print(pruning_report(result, quantized=bool(quantization)))
    finetune = f"python3 train.py -r {checkpoint}" + (f" -q {quantization}" if quantization else "") + f" -p {output}"
    for line in false_alarm_change((result.scores or {}).get("baseline"), (result.scores or {}).get("solution"),
                                   "pruning", f"finetune the pruned model ({finetune}) or prune less "
                                   f"(a smaller optimization.pruning.error_margin)"):
        print(line)
    following = (f"python3 test.py -r {checkpoint} -q {quantization} -p {output}" if quantization else
                 f"python3 quantize.py -r {checkpoint} -p {output}")
    return result, _save_solution(save_pruning, result, settings, output, following)


def run_profile(checkpoint: str | os.PathLike, quantization: SolutionSource | None = None,
                pruning: SolutionSource | None = None, with_accuracy: bool = True,
                use_stored: bool = True) -> tuple[Profile, str]:

    """Cost of the (quantized, pruned) model and its test-split top-1 and balanced accuracy."""
    model, ckpt = restore_model(checkpoint, quantization, pruning, use_stored)
    profile = profile_model(model)
    scores = None
    if with_accuracy:
        applied = ckpt.applied
        result = run_test(checkpoint, applied["quantization"], applied["pruning"], use_stored=False)
        scores = {k: result[k] for k in ("top1", "balanced_accuracy", "false_alarm_rate")}
    return profile, format_profile(profile, scores)
