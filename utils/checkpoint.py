"""Checkpoints: what they hold and how they are read back safely.

A checkpoint is a plain dict of tensors and primitives (loadable with ``weights_only=True``):
arch, arch_args, state_dict, epoch, optimizer, lr_scheduler, monitor_best, config, features
(MFCC parameters) and normalization (per-coefficient mean and std of the training split).
"""
import pickle
import zipfile
from pathlib import Path

import torch

from utils import atomic
from utils.errors import UserError

REQUIRED = ("arch", "state_dict", "config", "features", "normalization")


def save_checkpoint(path, **fields):
    atomic.torch_save(fields, path)


def load_checkpoint(path):
    """Read a checkpoint dict; anything else is a one-line UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path} (check the path given with -r)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, zipfile.BadZipFile, EOFError, ValueError, OSError) as e:
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise UserError(f"{path} is not a readable checkpoint ({reason}); give a .pth file saved by train.py") from None
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED):
        raise UserError(f"{path} is not a checkpoint of this project (it lacks arch, state_dict, features "
                        f"or normalization); give a .pth file saved by train.py")
    return ckpt
