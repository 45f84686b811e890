"""The epoch loop of pytorch-template: monitoring, early stopping, checkpoints and resuming."""
import logging
import math
import os
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from utils.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from utils.errors import UserError


class BaseTrainer:
    def __init__(self, model: nn.Module, criterion: Callable[..., torch.Tensor], metric_ftns: Sequence[Callable[..., float]],
                 optimizer: torch.optim.Optimizer, config: Any, checkpoint_extra: Mapping[str, Any], settings: Any) -> None:
        """``settings``: the validated ``trainer`` section (configuration.schema.TrainerConfig);
        ``config``: the run's parse_config.ConfigParser. Both are typed ``Any`` because their
        packages sit above this one (tests/test_layering.py)."""
        self.config = config
        self.logger = logging.getLogger("trainer")
        self.model = model
        self.criterion = criterion
        self.metric_ftns = metric_ftns
        self.optimizer = optimizer
        self.checkpoint_extra = checkpoint_extra  # features, normalization, ... stored with every checkpoint

        self.epochs = settings.epochs
        self.save_period = settings.save_period
        self.monitor = settings.monitor
        if self.monitor == "off":
            self.mnt_mode, self.mnt_best = "off", 0
        else:
            self.mnt_mode, self.mnt_metric = self.monitor.split()
            self.mnt_best = math.inf if self.mnt_mode == "min" else -math.inf
            self.early_stop = settings.early_stop or math.inf
        self.start_epoch = 1
        self.not_improved = 0
        self.best_epoch, self.best_log = None, {}  # the epoch model_best.pth holds, and its numbers
        self.last_log = {}  # the latest epoch's numbers, stored in every checkpoint
        self.checkpoint_dir = config.save_dir
        self.is_writer = True  # only one process writes files under distributed training

    @property
    def core_model(self) -> nn.Module:
        """The model without a DataParallel / DistributedDataParallel wrapper: what checkpoints hold."""
        return getattr(self.model, "module", self.model)

    @abstractmethod
    def _train_epoch(self, epoch):
        raise NotImplementedError

    def train(self) -> dict[str, Any]:
        """Runs the epochs; returns the log dict of the last epoch."""
        log = {}
        for epoch in range(self.start_epoch, self.epochs + 1):
            result = self._train_epoch(epoch)
            bad = [k for k in ("loss", "val_loss") if k in result and not math.isfinite(result[k])]
            if bad:
                raise UserError(f"training diverged: epoch {epoch} has {bad[0]} {result[bad[0]]}; lower the "
                                f"learning rate (--lr) or check the data; checkpoints saved so far are kept")
            log = {"epoch": epoch, **result}
            self.last_log = log
            best = False
            if self.mnt_mode != "off":
                if self.mnt_metric not in log:
                    raise UserError(f"trainer.monitor names '{self.mnt_metric}', which training does not "
                                    f"report (it reports {sorted(log)})")
                value = log[self.mnt_metric]
                improved = value < self.mnt_best if self.mnt_mode == "min" else value > self.mnt_best
                if improved:
                    self.mnt_best, self.not_improved, best = value, 0, True
                else:
                    self.not_improved += 1
                    # A tie keeps the later epoch as the best model (it has seen more data; a
                    # count-based metric such as balanced accuracy ties often early on) but is no
                    # improvement for early stopping.
                    best = value == self.mnt_best
            if best:
                self.best_epoch, self.best_log = epoch, dict(log)
            if self.is_writer:
                if epoch % self.save_period == 0:
                    self._save_checkpoint(epoch, save_best=best)
                elif best:
                    self._save_best(epoch)
            if self.mnt_mode != "off" and self.not_improved > self.early_stop:
                self.logger.info(f"Validation performance did not improve for {self.early_stop} epochs. "
                                 f"Training stops.")
                break
        return log

    def _state(self, epoch):
        sched = getattr(self, "lr_scheduler", None)
        return Checkpoint(arch=type(self.core_model).__name__, arch_args=self.config["arch"].get("args") or {},
                          epoch=epoch, state_dict=self.core_model.state_dict(), optimizer=self.optimizer.state_dict(),
                          lr_scheduler=sched.state_dict() if sched is not None else None,
                          monitor_best=self.mnt_best, not_improved=self.not_improved, config=self.config.config,
                          rng_state=torch.get_rng_state(), log=dict(self.last_log),
                          **self.checkpoint_extra)

    def _save_checkpoint(self, epoch, save_best=False) -> None:
        state = self._state(epoch)
        path = self.checkpoint_dir / f"checkpoint-epoch{epoch}.pth"
        save_checkpoint(path, state)
        self.logger.info(f"Saving checkpoint: {path} ...")
        if save_best:
            save_checkpoint(self.checkpoint_dir / "model_best.pth", state)
            self.logger.info("Saving current best: model_best.pth ...")

    def _save_best(self, epoch) -> None:
        save_checkpoint(self.checkpoint_dir / "model_best.pth", self._state(epoch))
        self.logger.info("Saving current best: model_best.pth ...")

    def resume_checkpoint(self, path: str | os.PathLike) -> Checkpoint:
        """Continue an interrupted run: weights, optimizer, scheduler, epoch and monitor state."""
        ckpt = load_checkpoint(path)
        self.core_model.load_state_dict(ckpt.state_dict)
        sched = getattr(self, "lr_scheduler", None)
        saved = ckpt.config.get("optimizer")
        saved = saved.get("type") if isinstance(saved, dict) else None
        if ckpt.optimizer is not None and saved != type(self.optimizer).__name__:
            raise UserError(f"{path} holds the state of optimizer {saved}, but the config names "
                            f"{type(self.optimizer).__name__}; resume without -c or with the config the run "
                            f"was started with")
        try:
            if ckpt.optimizer is not None:
                self.optimizer.load_state_dict(ckpt.optimizer)
            if sched is not None and ckpt.lr_scheduler is not None:
                sched.load_state_dict(ckpt.lr_scheduler)
        except (ValueError, KeyError, TypeError, AttributeError, RuntimeError) as e:
            reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
            raise UserError(f"{path} cannot be resumed with this config's optimizer "
                            f"{type(self.optimizer).__name__} or scheduler ({reason}); resume without -c "
                            f"or with the config the run was started with") from None
        self.start_epoch = int(ckpt.epoch or 0) + 1
        self.mnt_best = ckpt.monitor_best if ckpt.monitor_best is not None else self.mnt_best
        self.not_improved = int(ckpt.not_improved or 0)
        if ckpt.rng_state is not None:  # dropout continues exactly where it stopped
            torch.set_rng_state(ckpt.rng_state)
        self.logger.info(f"Checkpoint loaded. Resume training from epoch {self.start_epoch}")
        return ckpt
