"""Configuration: the YAML config file, command-line overrides, run folders and logging.

Follows pytorch-template's ConfigParser: ``config.init_obj('arch', module)`` builds the object
named by ``config['arch']['type']`` with ``config['arch']['args']``; a run writes its checkpoints to
``saved/models/<name>/<MMDD_HHMMSS>/`` and its log and tensorboard events to
``saved/log/<name>/<MMDD_HHMMSS>/``. With ``-r`` the config comes from the checkpoint itself.
"""
import logging
import os
import sys
from datetime import datetime
from functools import reduce
from operator import getitem
from pathlib import Path

from configuration.schema import validate_config
from logger import setup_logging
from utils import atomic
from utils.errors import UserError


class ConfigParser:
    def __init__(self, config, resume=None, modification=None, run_id=None, make_dirs=True, distributed=None):
        # Checked before anything is written: a bad config creates no run folder.
        self._config = validate_config(_update_config(config, modification))
        self.resume = resume
        save_dir = Path(self._config["trainer"].get("save_dir", "saved"))
        name = self._config["name"]
        if run_id is None:
            run_id = datetime.now().strftime(r"%m%d_%H%M%S")
        if distributed is not None:  # all ranks use rank 0's run folder; only rank 0 writes to it
            run_id = distributed.broadcast_from_main(run_id)
            make_dirs = make_dirs and distributed.is_main
        self.run_id = run_id
        self._save_dir = save_dir / "models" / name / run_id
        self._log_dir = save_dir / "log" / name / run_id
        self.make_dirs = make_dirs
        if make_dirs:
            self.save_dir.mkdir(parents=True, exist_ok=True)
            self.log_dir.mkdir(parents=True, exist_ok=True)
            atomic.write_yaml(self.save_dir / "config.yml", self._config)
            setup_logging(self.log_dir)
        elif distributed is not None:
            _log_warnings_only(distributed.rank)
        self.log_levels = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}

    @classmethod
    def from_args(cls, args, options=(), config_from_checkpoint=None, make_dirs=True, distributed=None,
                  transform=None):
        """Build from parsed arguments: ``-c`` a config file, ``-r`` a checkpoint (whose stored
        config is used unless ``-c`` is given too), ``-d`` CUDA devices, and custom ``options``
        (CustomArgs with flags and a key path ``target`` into the config). ``distributed``: the
        trainer.distributed.DistributedContext of a torchrun rank. ``transform(config)`` returns
        the config to run (e.g. a finetuning recipe); command-line options apply on top of it."""
        if getattr(args, "device", None) is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = args.device
        resume = Path(args.resume) if getattr(args, "resume", None) else None
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

    def init_obj(self, name, module, *args, **kwargs):
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

    def __getitem__(self, name):
        try:
            return self._config[name]
        except KeyError:
            raise UserError(f"config lacks the key '{name}'; start from config_lenet5_keywords.yml") from None

    def get(self, name, default=None):
        return self._config.get(name, default)

    def get_logger(self, name, verbosity=2):
        logger = logging.getLogger(name)
        logger.setLevel(self.log_levels.get(verbosity, logging.DEBUG))
        return logger

    @property
    def config(self):
        return self._config

    @property
    def save_dir(self):
        return self._save_dir

    @property
    def log_dir(self):
        return self._log_dir


def _log_warnings_only(rank):
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
