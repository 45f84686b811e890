"""Checkpoint files: what they hold and how they are read back safely.

A checkpoint is a plain dict of tensors and primitives (loadable with ``weights_only=True``):
arch, arch_args, state_dict, epoch, optimizer, lr_scheduler, monitor_best, config, features
(MFCC parameters) and normalization (per-coefficient mean and std of the training split).

This module holds the file format: the layout (:class:`Checkpoint`), writing, and reading with
a CRC check of the zip. A checkpoint may come from someone else, so ``load_checkpoint`` checks
every value before use (``utils/checkpoint_checks.py``: the domain's types and ranges) and
confines the paths in its config (``utils/confinement.py``).
"""
from __future__ import annotations

import os
import pickle
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from utils import atomic
from utils.checkpoint_checks import validate_checkpoint
from utils.confinement import confine_paths
from utils.errors import UserError

REQUIRED = ("arch", "state_dict", "config", "features", "normalization")

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

    def names(self, keywords: Iterable[str] = ()) -> tuple[str, ...]:
        """The name of every class by index: the stored list, else 'unknown' and the keywords (the
        checkpoint's, else ``keywords``)."""
        if self.class_names:
            return tuple(self.class_names)
        return ("unknown",) + tuple(self.keywords or keywords)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("stored", True)
                and (f.name in REQUIRED or getattr(self, f.name) is not None)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Checkpoint:
        """The stored fields of ``values`` this layout knows (others are dropped)."""
        known = {f.name for f in fields(cls) if f.metadata.get("stored", True)}
        return cls(**{k: v for k, v in values.items() if k in known})


def save_checkpoint(path: str | os.PathLike, checkpoint: Checkpoint) -> None:
    atomic.torch_save(checkpoint.to_dict(), path)


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
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
