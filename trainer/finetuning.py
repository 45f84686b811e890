"""Finetuning a compressed model: ``train.py -r CKPT -q quantization.yml -p pruning.yml``.

A finetuning run is a new run that starts from the checkpoint's weights with a fresh optimizer at
``lr_factor`` times the rate the float model was trained with, for ``epochs`` epochs, without the
float run's schedule. Everything it does is written down:
- its ``config.yml`` holds the finetuning recipe that ran (epochs, rate, no scheduler), with
  ``--epochs`` / ``--lr`` applied on top;
- its checkpoints carry the YAML text of the solutions they were trained under, and the float
  weights the finetuning started from, so test.py, profile.py, export.py and predict.py apply the
  solutions without ``-q``/``-p``, and finetuning a finetuned model starts again from the original
  rate and the original float teacher instead of compounding.

Knowledge distillation (on by default): the float model the solutions were made for is the
teacher of its own compressed copy; its soft targets carry how confusable the classes are, which
a model that lost most of its bits needs more than the hard labels.
"""
from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from configuration.schema import finetuning_rate, float_run_rate_checked, parse_finetuning_config
from fixedpoint.graph import describe
from optimization.solutions import solution_text
from model.registry import build_model
from utils.checkpoint import load_checkpoint
from utils.errors import UserError

if TYPE_CHECKING:
    import torch

    from configuration.schema import DistillationConfig
    from model.registry import KeywordModel
    from utils.checkpoint import Checkpoint

FINETUNE_SUFFIX = "_finetune"


def finetune_config(config: dict, checkpoint: Checkpoint, lr: float | None = None) -> tuple[dict, float]:
    """The config of a finetuning run (a modified copy): its name gets ``_finetune`` once, epochs,
    rate and (when ``optimization.finetuning.monitor`` is given) the monitor are the finetuning
    ones, no scheduler. The rate is ``lr`` when given (train.py's --lr), else ``lr_factor`` times
    the rate of the float training run, also when the checkpoint is itself finetuned."""
    config = copy.deepcopy(config)
    settings = parse_finetuning_config(config)
    base_lr = float_run_rate(checkpoint, config)
    name = str(config.get("name", "run"))
    if not name.endswith(FINETUNE_SUFFIX):
        config["name"] = name + FINETUNE_SUFFIX
    config.setdefault("trainer", {})["epochs"] = settings.epochs
    if settings.monitor is not None:   # the epoch finetuning keeps may be chosen by another measure
        config["trainer"]["monitor"] = settings.monitor
    rate = finetuning_rate(base_lr, settings.lr_factor) if lr is None else lr
    optimizer = config.setdefault("optimizer", {})
    if isinstance(optimizer, dict):   # anything else is the schema's error, in validate_config
        if optimizer.get("args") is None:
            optimizer["args"] = {}
        if isinstance(optimizer["args"], dict):
            optimizer["args"]["lr"] = rate
    config.pop("lr_scheduler", None)
    return config, base_lr


def float_run_rate(checkpoint: Checkpoint, config: dict | None = None) -> float:
    """The learning rate the float model of ``checkpoint`` was trained with (checked: a received
    checkpoint may store anything)."""
    origin = checkpoint.finetuned_from or {}
    if origin.get("base_lr") is not None:
        return float_run_rate_checked(origin["base_lr"], "the checkpoint's finetuned_from")
    for where, cfg, remedy in (("the checkpoint's config", checkpoint.config, "give a checkpoint saved by train.py"),
                               ("the config", config, "correct optimizer.args.lr")):
        optimizer = (cfg or {}).get("optimizer")
        args = optimizer.get("args") if isinstance(optimizer, dict) else None
        lr = args.get("lr") if isinstance(args, dict) else None
        if lr is not None:
            return float_run_rate_checked(lr, where, remedy)
    return 1e-3


def explain(checkpoint: Checkpoint) -> str | None:
    """A line for the log when a finetuned model is finetuned again (nothing compounds)."""
    origin = checkpoint.finetuned_from
    if not origin:
        return None
    return (f"this checkpoint is already finetuned (from {origin.get('checkpoint')}); finetuning "
            f"starts again at lr_factor x the float run's rate ({origin.get('base_lr')}) with the "
            f"original float model as teacher")


def float_state_dict(checkpoint: Checkpoint) -> dict[str, torch.Tensor]:
    """The float weights the finetuning of ``checkpoint`` starts from: the checkpoint's own, or,
    for a finetuned checkpoint, the float model its first finetuning started from."""
    origin = checkpoint.finetuned_from or {}
    return origin.get("float_state_dict") or checkpoint.state_dict


def finetune_record(checkpoint: Checkpoint, source: str | os.PathLike, base_lr: float,
                    quantization: str | os.PathLike | dict | None,
                    pruning: str | os.PathLike | dict | None) -> dict[str, dict]:
    """What every checkpoint of a finetuning run carries about its origin and its solutions."""
    origin = checkpoint.finetuned_from or {}
    return {"finetuned_from": {"checkpoint": origin.get("checkpoint") or str(source), "base_lr": base_lr,
                               "float_state_dict": float_state_dict(checkpoint)},
            "solutions": {"quantization": solution_text(quantization), "pruning": solution_text(pruning)}}


def build_teacher(checkpoint: Checkpoint, distill: DistillationConfig, keywords: Sequence[str],
                  features: Mapping[str, Any]) -> KeywordModel:
    """The teacher of a distillation (``distill``: a configuration.schema.DistillationConfig):
    ``distill.teacher`` (a checkpoint of the same architecture, keywords and features) or, by
    default, the float model of ``checkpoint``."""
    if distill.teacher:
        path = distill.teacher
        teacher_ckpt = load_checkpoint(path)
        if teacher_ckpt.arch != checkpoint.arch:
            raise UserError(f"distillation teacher {path} is a {teacher_ckpt.arch}, the student a "
                            f"{checkpoint.arch}; give a teacher checkpoint of the same architecture")
        if list(teacher_ckpt.keywords or []) != list(keywords):
            raise UserError(f"distillation teacher {path} spots {teacher_ckpt.keywords}, the student "
                            f"{list(keywords)}; give a teacher trained on the same keywords")
        if dict(teacher_ckpt.features) != dict(features):
            raise UserError(f"distillation teacher {path} was trained on other features; give a teacher "
                            f"trained with the same feature settings")
        return build_model(teacher_ckpt, source=str(path))
    # pruning zeroes weights in place, so the teacher is built from the stored float weights
    return build_model(replace(checkpoint, state_dict=float_state_dict(checkpoint)),
                       source="the checkpoint's float model")


def check_teacher_outputs(teacher: KeywordModel, num_classes: int) -> None:

    """The teacher's class-output layer must have one output per class of the student."""
    outputs = describe(teacher).output.layer.weight.shape[0]
    if outputs != num_classes:
        raise UserError(f"distillation teacher has {outputs} outputs, the student {num_classes}; "
                        f"give a teacher trained on the same keywords")
