"""The lab's feature file: ``<data_dir>/IA_DATASET``, a pickle of a dict with ``x_train``,
``y_train``, ``x_val``, ``y_val``, ``x_test``, ``y_test``: MFCC arrays of 100 frames x 13
coefficients per clip and one-hot labels over the classes.

A pickle can run any code when it is loaded, so it is read with an unpickler that rebuilds numpy
arrays and nothing else: any other global it names (``os.system``, ``builtins.eval``, ...) stops
the load with a one-line error before anything is called.
"""
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from utils.errors import UserError

FILE_NAME = "IA_DATASET"
SPLIT_KEYS = {"train": ("x_train", "y_train"), "validation": ("x_val", "y_val"), "test": ("x_test", "y_test")}
# What pickle.dump writes for numpy arrays, dtypes and scalars (numpy 1.x and 2.x spellings).
ALLOWED_GLOBALS = {
    (module, name)
    for prefix in ("numpy.core", "numpy._core")
    for module, name in ((f"{prefix}.multiarray", "_reconstruct"), (f"{prefix}.multiarray", "scalar"),
                         (f"{prefix}.numeric", "_frombuffer"))
} | {("numpy", "ndarray"), ("numpy", "dtype")}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it would import {module}.{name}")


def read_ia_dataset(path: str | os.PathLike) -> dict[str, Any]:
    """The dict stored in an IA_DATASET pickle, read with numpy arrays as the only objects."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = _NumpyOnlyUnpickler(f).load()
    except pickle.UnpicklingError as e:
        raise UserError(f"{path} is refused: {e}; an IA_DATASET may hold numpy arrays only") from None
    except (EOFError, OSError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise UserError(f"{path} is not a readable IA_DATASET pickle ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:100] if str(e) else ''})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} holds a {type(data).__name__}, not the lab's dict of x_train, y_train, ...")
    return data


def _labels(path, key, y, n, classes):
    y = np.asarray(y)
    if y.ndim == 2 and y.shape == (n, classes):
        return torch.from_numpy(np.argmax(y, axis=1).astype(np.int64))  # one-hot, as the lab stored it
    if y.ndim == 1 and len(y) == n and np.issubdtype(y.dtype, np.integer) and (0 <= y).all() and (y < classes).all():
        return torch.from_numpy(y.astype(np.int64))
    raise UserError(f"{key} in {path} must be one-hot labels of shape ({n}, {classes}) (or class indices), "
                    f"found shape {y.shape}")


def _features(path, key, x, frames, n_mfcc):
    x = np.asarray(x)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3 or x.shape[1:] != (frames, n_mfcc) or not np.issubdtype(x.dtype, np.floating):
        raise UserError(f"{key} in {path} must be float MFCCs of shape (clips, {frames}, {n_mfcc}), "
                        f"found {x.dtype} {x.shape}")
    if not np.isfinite(x).all():
        raise UserError(f"{key} in {path} holds NaN or infinite values")
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).unsqueeze(1)


def load_ia_splits(path: str | os.PathLike, classes: int, frames: int, n_mfcc: int,
                   validation_split: float | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """split name -> (inputs (N, 1, frames, n_mfcc) float32, labels (N,) int64). Without x_val /
    y_val the first ``validation_split`` of the training clips (a fraction, or a number of clips)
    is the validation split, as the lab's loader took the first clips of its training set."""
    data = read_ia_dataset(path)
    splits = {}
    for split, (xk, yk) in SPLIT_KEYS.items():
        if xk not in data and yk not in data and split == "validation":
            continue
        missing = [k for k in (xk, yk) if k not in data]
        if missing:
            raise UserError(f"{path} lacks {missing}; the lab's IA_DATASET holds "
                            f"{', '.join(k for pair in SPLIT_KEYS.values() for k in pair)}")
        x = _features(path, xk, data[xk], frames, n_mfcc)
        splits[split] = (x, _labels(path, yk, data[yk], len(x), classes))
    if "validation" not in splits:
        x, y = splits["train"]
        if not validation_split:
            raise UserError(f"{path} has no x_val/y_val: set data_loader.args.validation_split (a fraction "
                            f"such as 0.1, or a number of clips) to hold out the first training clips")
        n_val = int(validation_split) if validation_split >= 1 else int(round(len(x) * validation_split))
        if not 0 < n_val < len(x):
            raise UserError(f"validation_split {validation_split} leaves {n_val} of {len(x)} training clips for "
                            f"validation; choose a value that keeps both splits non-empty")
        splits["validation"] = (x[:n_val], y[:n_val])
        splits["train"] = (x[n_val:], y[n_val:])
    return splits
