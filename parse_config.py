"""Configuration: the YAML config file, command-line overrides, run folders and logging.

Follows pytorch-template's ConfigParser: ``config.init_obj('arch', module)`` builds the object
named by ``config['arch']['type']`` with ``config['arch']['args']``; a run writes its checkpoints to
``saved/models/<name>/<MMDD_HHMMSS>/`` and its log and tensorboard events to
``saved/log/<name>/<MMDD_HHMMSS>/``. With ``-r`` the config comes from the checkpoint itself.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import reduce
from operator import getitem
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

from configuration.schema import parse_trainer_config, validate_config
from logger import setup_logging
from utils import atomic
from utils.errors import UserError

if TYPE_CHECKING:
    from trainer.distributed import DistributedContext


MAX_RUNS_PER_SECOND = 1000   # run ids <id>, <id>_2 .. tried before giving up (never a loop without end)


class ConfigOption(Protocol):
    """A command-line option that sets one config key (train.py's CustomArgs): its flags and the
    ``;``-separated key path it sets."""

    @property
    def flags(self) -> Sequence[str]: ...

    @property
    def target(self) -> str: ...


def _check_save_dir(save_dir):
    """``save_dir`` must be a folder, or a path whose existing part is a folder: a file there (or
    above it) would only fail later, after work."""
    for p in (save_dir, *save_dir.parents):
        if p.exists() or p.is_symlink():
            if not p.is_dir():
                raise UserError(f"config trainer.save_dir {save_dir}: {p} is not a folder; "
                                f"name a folder (or a path to create)")
            return


class ConfigParser:
    def __init__(self, config: dict, resume: Path | None = None, modification: dict[str, Any] | None = None,
                 run_id: str | None = None, make_dirs: bool = True,
                 distributed: DistributedContext | None = None) -> None:
        # Checked before anything is written: a bad config creates no run folder.
        self._config = validate_config(_update_config(config, modification))
        self.resume = resume
        save_dir = Path(parse_trainer_config(self._config["trainer"]).save_dir)
        name = self._config["name"]
        if run_id is None:
            run_id = datetime.now().strftime(r"%m%d_%H%M%S")
        writer = make_dirs and (distributed is None or distributed.is_main)
        if writer:
            _check_save_dir(save_dir)
        if writer:  # claims a folder no other run has; only process 0 of torchrun writes files
            remove_killed_runs(save_dir, name)
            run_id = create_run_dirs(save_dir, name, run_id)
        if distributed is not None:  # all ranks use rank 0's run folder
            run_id = distributed.broadcast_from_main(run_id)
        self.run_id = run_id
        self._save_dir = save_dir / "models" / name / run_id
        self._log_dir = save_dir / "log" / name / run_id
        self.make_dirs = writer
        self._marker = _marker(save_dir, name, run_id, os.getpid())
        if writer:
            try:
                self._marker.touch()
                atomic.write_yaml(self.save_dir / "config.yml", self._config)
                setup_logging(self.log_dir)
            except BaseException as e:   # a full disk, Ctrl-C: no run folder left behind
                discard_empty_run(self.save_dir, self.log_dir)
                self._marker.unlink(missing_ok=True)
                raise atomic.write_failure(e, self.save_dir) if isinstance(e, OSError) else e from None
        elif distributed is not None:
            _log_warnings_only(distributed.rank)
        self.log_levels = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}

    @classmethod
    def from_args(cls, args: argparse.Namespace, options: Iterable[ConfigOption] = (),
                  config_from_checkpoint: dict | None = None, make_dirs: bool = True,
                  distributed: DistributedContext | None = None,
                  transform: Callable[[dict], dict] | None = None) -> ConfigParser:
        """Build from parsed arguments: ``-c`` a config file, ``-r`` a checkpoint (whose stored
        config is used unless ``-c`` is given too), ``-d`` CUDA devices, and custom ``options``
        (CustomArgs with flags and a key path ``target`` into the config). ``distributed``: the
        trainer.distributed.DistributedContext of a torchrun rank. ``transform(config)`` returns
        the config to run (e.g. a finetuning recipe); command-line options apply on top of it."""
        if getattr(args, "device", None) is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = args.device
        resume = Path(args.resume) if getattr(args, "resume", None) else None
        if resume is not None and make_dirs:   # temp files a killed run left beside its checkpoints
            atomic.remove_stale(resume.parent)
        if getattr(args, "config", None):
            config = atomic.read_yaml(args.config, "config file")
        elif config_from_checkpoint is not None:
            config = config_from_checkpoint
        else:
            raise UserError("no configuration: give a config file with -c config_lenet5_keywords.yml "
                            "or a checkpoint with -r")
        if transform is not None:
            config = transform(config)
        modification = {opt.target: getattr(args, _get_opt_name(opt.flags)) for opt in options}
        return cls(config, resume, modification, make_dirs=make_dirs, distributed=distributed)

    def init_obj(self, name: str, module: ModuleType, *args: Any, **kwargs: Any) -> Any:
        """``module.<config[name]['type']>(*args, **config[name]['args'], **kwargs)``."""
        entry = self[name]
        module_name = entry["type"]
        cls = getattr(module, module_name, None)
        if cls is None:
            raise UserError(f"config {name}.type '{module_name}' is not known; "
                            f"choose one defined in {module.__name__}")
        module_args = dict(entry.get("args") or {})
        module_args.update(kwargs)
        try:
            return cls(*args, **module_args)
        except TypeError as e:
            raise UserError(f"config {name}.args do not fit {module_name}: {e}") from None

    def __getitem__(self, name: str) -> Any:
        try:
            return self._config[name]
        except KeyError:
            raise UserError(f"config lacks the key '{name}'; start from config_lenet5_keywords.yml") from None

    def get(self, name: str, default: Any = None) -> Any:
        return self._config.get(name, default)

    def get_logger(self, name: str, verbosity: int = 2) -> logging.Logger:
        logger = logging.getLogger(name)
        logger.setLevel(self.log_levels.get(verbosity, logging.DEBUG))
        return logger

    @contextmanager
    def discard_on_failure(self) -> Iterator[None]:
        """A run that fails before it saved anything (bad data, NaN loss, Ctrl-C) leaves no run
        folder holding only config.yml, nor its log folder. (One killed with SIGKILL leaves its
        marker, and the next run of the same name removes it: remove_killed_runs.)"""
        try:
            yield
        except BaseException:
            if self.make_dirs:
                discard_empty_run(self.save_dir, self.log_dir)
            raise
        finally:
            if self.make_dirs:
                self._marker.unlink(missing_ok=True)

    @property
    def config(self) -> dict:
        return self._config

    @property
    def save_dir(self) -> Path:
        return self._save_dir

    @property
    def log_dir(self) -> Path:
        return self._log_dir


def create_run_dirs(save_dir: Path, name: str, run_id: str) -> str:
    """Create ``models/<name>/<run_id>`` and ``log/<name>/<run_id>`` exclusively (os.mkdir, never
    exist_ok), so two runs started in the same second get two folders: the second becomes
    ``<run_id>_2`` (then ``_3``, ...). Returns the run id that was claimed."""
    models, logs = save_dir / "models" / name, save_dir / "log" / name
    atomic.make_folder(models)
    atomic.make_folder(logs)
    for n in range(1, MAX_RUNS_PER_SECOND + 1):
        candidate = run_id if n == 1 else f"{run_id}_{n}"
        try:
            os.mkdir(models / candidate)
        except FileExistsError:
            continue
        except OSError as e:   # read-only, no permission, disk full
            raise atomic.write_failure(e, models / candidate) from None
        try:
            os.mkdir(logs / candidate)
        except FileExistsError:   # a log folder without its run folder: leave it, take the next name
            os.rmdir(models / candidate)
            continue
        except OSError as e:
            os.rmdir(models / candidate)
            raise atomic.write_failure(e, logs / candidate) from None
        return candidate
    raise UserError(f"cannot claim a run folder under {models} and {logs}: {MAX_RUNS_PER_SECOND} names "
                    f"taken; do models/ and log/ of trainer.save_dir {save_dir} lead to the same folder?")


def _marker(save_dir, name, run_id, pid):
    """``models/<name>/.<run_id>.<pid>.running``: exists while the run's process works."""
    return save_dir / "models" / name / f".{run_id}.{pid}.running"


def remove_killed_runs(save_dir: Path, name: str) -> None:
    """Runs of ``name`` whose process died without cleaning up (SIGKILL, power loss): their run
    folder goes if it holds only config.yml (with its log folder), and their marker goes."""
    folder = save_dir / "models" / name
    if not folder.is_dir():
        return
    for marker in folder.glob(".*.running"):
        run_id, _, pid = marker.name[1:-len(".running")].rpartition(".")
        if not run_id or not pid.isdigit() or atomic.writer_alive(int(pid)):
            continue
        discard_empty_run(folder / run_id, save_dir / "log" / name / run_id)
        marker.unlink(missing_ok=True)


def discard_empty_run(save_dir: Path, log_dir: Path) -> None:

    """Remove a run folder that holds nothing but config.yml, and its log folder."""
    if not save_dir.is_dir() or any(p.name != "config.yml" for p in save_dir.iterdir()):
        return
    root = logging.getLogger()
    for h in list(root.handlers):   # close the info.log handler before its folder goes
        if isinstance(h, logging.FileHandler) and Path(h.baseFilename).parent == log_dir.resolve():
            root.removeHandler(h)
            h.close()
    shutil.rmtree(save_dir, ignore_errors=True)
    shutil.rmtree(log_dir, ignore_errors=True)


def _log_warnings_only(rank) -> None:
    """Ranks other than 0 write no files and print only warnings and errors, tagged with the rank,
    so the console shows one copy of the training log."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter(f"[rank {rank}] %(levelname)s: %(message)s"))
    logging.getLogger().addHandler(handler)


def _update_config(config, modification):
    if modification is None:
        return config
    for key, value in modification.items():
        if value is not None:
            _set_by_path(config, key, value)
    return config


def _get_opt_name(flags):
    for flg in flags:
        if flg.startswith("--"):
            return flg.replace("--", "").replace("-", "_")
    return flags[0].replace("-", "")


def _set_by_path(tree, keys, value):
    keys = keys.split(";")
    try:
        parent = _get_by_path(tree, keys[:-1])
    except (KeyError, TypeError):
        parent = None
    if not isinstance(parent, dict):
        raise UserError(f"config lacks the section {'.'.join(keys[:-1])} that a command-line option sets; "
                        f"start from config_lenet5_keywords.yml")
    parent[keys[-1]] = value


def _get_by_path(tree, keys):
    return reduce(getitem, keys, tree)
