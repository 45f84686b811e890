"""Path confinement: where a checkpoint's config may make us write.

A received checkpoint's config could name any folder to save runs in, cache features in or
download to; ``confine_paths`` keeps those inside the project unless the checkpoint was written
by a run of this tree. Apart from the file format (``utils/checkpoint.py``) because it is a rule
about the file system, not about what a checkpoint holds.
"""
import os
import re
from pathlib import Path
from typing import Any

SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


def safe_name(name: object) -> str:
    """A run name usable as one folder name: anything but letters, digits, '.', '_' and '-'
    becomes '_', and no leading dot (so never '..')."""
    cleaned = SAFE_NAME.sub("_", str(name)).lstrip(".")
    return cleaned or "run"


def _inside(path, folder) -> bool:
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
        return True
    except ValueError:
        return False


def confine_paths(config: dict[str, Any], path: str | os.PathLike) -> None:
    """Where a checkpoint's config may make us write. A checkpoint that lies in the
    ``<save_dir>/models/`` its config names was written by a run of this tree, and its paths are
    kept; any other (received) checkpoint writes its runs under ``saved/`` and its feature cache
    under ``data/cache`` of the current project, downloads nothing, and its run name is reduced
    to one safe folder name. The user's own ``-c`` config is not affected."""
    trainer = config.get("trainer") if isinstance(config.get("trainer"), dict) else {}
    save_dir = trainer.get("save_dir", "saved")
    trusted = isinstance(save_dir, str) and _inside(path, Path(save_dir) / "models")
    if "name" in config:
        config["name"] = safe_name(config["name"])
    if trusted:
        return
    if "save_dir" in trainer:
        trainer["save_dir"] = "saved"      # ConfigParser's default when absent
    loader = config.get("data_loader") if isinstance(config.get("data_loader"), dict) else {}
    args = loader.get("args") if isinstance(loader.get("args"), dict) else {}
    cache = args.get("cache_dir", "data/cache")
    if not (isinstance(cache, str) and _inside(cache, "data")):
        args["cache_dir"] = "data/cache"
    if args.get("download"):
        args["download"] = None
