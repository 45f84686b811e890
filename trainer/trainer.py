"""Training of a keyword-spotting model over in-memory batches.

Two options make the result depend less on the seed:
- ``ema``: an exponential moving average of the weights is what is validated and saved (the
  raw weights are kept for resuming); it smooths the last noisy steps of every epoch, so the
  epoch chosen by a noisy validation metric is less of a lottery.
- ``distillation``: the loss mixes the hard labels with the soft targets of a teacher model
  (Hinton et al. 2015), used to win back a compressed model's keywords from its float model.
"""
from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from base.base_trainer import BaseTrainer
from configuration.schema import parse_trainer_config
from logger import TensorboardWriter
from model.metric import all_metrics, confusion_matrix, top1
from model.registry import load_weights
from fixedpoint.layers import fixed_point_layers
from trainer.distributed import EvenBatches
from trainer.evaluation import evaluate
from utils.errors import UserError
from utils.progress import heartbeat, progress_bar

if TYPE_CHECKING:
    from utils.checkpoint import Checkpoint

VALIDATION_KEYS = ("loss", "top1", "balanced_accuracy", "false_alarm_rate", "min_keyword_recall")


class Trainer(BaseTrainer):
    def __init__(self, model, criterion, metric_ftns, optimizer, config, device, data_loader,
                 valid_data_loader=None, lr_scheduler=None, checkpoint_extra=None, progress=True,
                 distributed=None, ema_decay=None, distillation=None, num_classes=None,
                 silence=None, stream_validation=None) -> None:
        """``stream_validation``: a callable (model -> {name: value}) whose values join each epoch's
        validation log as ``val_<name>`` (app.stream_test.StreamValidation), so that
        ``trainer.monitor`` can select by a streaming measure."""
        settings = parse_trainer_config(config["trainer"])
        super().__init__(model, criterion, metric_ftns, optimizer, config, checkpoint_extra or {}, settings)
        self.stream_validation = stream_validation
        self.device = device
        self.data_loader = data_loader
        self.valid_data_loader = valid_data_loader
        self.lr_scheduler = lr_scheduler
        self.progress = progress
        self.distributed = distributed  # trainer.distributed.DistributedContext or None
        self.distillation = distillation
        self.num_classes = num_classes
        self.silence = silence  # the silence class's index (false alarms), None without one
        if distributed is not None:
            self.is_writer = distributed.is_main
        self.writer = TensorboardWriter(config.log_dir, enabled=self.is_writer and settings.tensorboard)
        # pruned kernels per layer, found once: the mask does not change while training
        layers = fixed_point_layers(self.core_model).items()
        self._pruned = {name: (layer, layer.pruned_kernels) for name, layer in layers if layer.pruned_kernels}
        self.ema = None
        if ema_decay:
            self.ema = AveragedModel(self.core_model, multi_avg_fn=get_ema_multi_avg_fn(float(ema_decay)),
                                     use_buffers=True)

    @property
    def eval_model(self) -> torch.nn.Module:
        """What is validated and saved: the weight average when EMA is on, else the model."""
        return self.ema.module if self.ema is not None else self.core_model

    def _keep_pruned_zero(self) -> None:
        for layer, kernels in self._pruned.values():
            layer.prune_kernels(kernels)

    def _train_epoch(self, epoch):
        self.model.train()
        self.data_loader.set_epoch(epoch)
        loss_sum, n = 0.0, 0
        cm = None
        start = time.perf_counter()
        batches = self.data_loader if self.distributed is None else EvenBatches(self.data_loader)
        bar = progress_bar(batches, enabled=self.progress and self.is_writer, desc=f"epoch {epoch}/{self.epochs}",
                           leave=False, unit="batch")
        if self.progress and self.is_writer:  # in a log file: a line at most every 30 s within the epoch
            bar = heartbeat(bar, f"epoch {epoch}/{self.epochs}", total=len(batches))
        for batch, (x, y) in enumerate(bar, 1):
            x, y = x.to(self.device), y.to(self.device)
            self.optimizer.zero_grad(set_to_none=True)
            out = self.model(x)
            loss = self.criterion(out, y)
            if self.distillation is not None:
                loss = self.distillation(out, y, x, loss)
            if self.distributed is None and not torch.isfinite(loss.detach()):
                # stop before the step makes the weights NaN (torchrun ranks meet the epoch's check)
                raise UserError(f"training diverged: epoch {epoch}, batch {batch} has loss {float(loss.detach())}; lower "
                                f"the learning rate (--lr) or check the data; checkpoints saved so far are kept")
            loss.backward()
            self.optimizer.step()
            if self._pruned:
                self._keep_pruned_zero()
            if self.ema is not None:
                self.ema.update_parameters(self.core_model)
            loss_sum += float(loss.detach()) * len(y)
            batch_cm = confusion_matrix(out.detach(), y, self.num_classes or out.shape[1])
            cm = batch_cm if cm is None else cm + batch_cm
            n += len(y)
        elapsed = time.perf_counter() - start
        sums = torch.tensor([loss_sum, n], dtype=torch.float64)
        if self.distributed is not None:
            sums = self.distributed.all_reduce_sum(sums)
            cm = self.distributed.all_reduce_sum(cm)
        log = {"loss": float(sums[0] / sums[1]), "top1": top1(cm),
               "samples_per_s": float(sums[1]) / elapsed, "lr": self.optimizer.param_groups[0]["lr"]}
        if self.valid_data_loader is not None:
            log.update(self._valid_epoch())
        if self.stream_validation is not None:
            log.update({f"val_{k}": v for k, v in self.stream_validation(self.eval_model).items()})
        if self.lr_scheduler is not None:
            self.lr_scheduler.step()
        if self.is_writer:
            self.writer.add_scalars(epoch, {k: v for k, v in log.items() if k != "samples_per_s"})
            msg = (f"epoch {epoch:3d} | loss {log['loss']:.4f} top1 {log['top1']:.4f}")
            if "val_loss" in log:
                msg += (f" | val_loss {log['val_loss']:.4f} val_top1 {log['val_top1']:.4f} "
                        f"val_bal {log['val_balanced_accuracy']:.4f} "
                        f"val_fa {log['val_false_alarm_rate']:.4f}")
            msg += "".join(f" val_{k.removeprefix('val_')} {v:.4f}" for k, v in log.items()
                           if k.startswith("val_stream_"))
            msg += f" | {log['samples_per_s']:,.0f} samples/s | lr {log['lr']:.2e}"
            self.logger.info(msg)
        return log

    def validate(self) -> dict[str, float]:
        """The validation scores (``val_*``) of the model as it is now: finetuning's starting point.
        Every rank calls it when distributed."""
        return self._valid_epoch()

    def _valid_epoch(self):
        result = evaluate(self.eval_model, self.valid_data_loader, self.criterion, self.device,
                          num_classes=self.num_classes, silence=self.silence)
        if self.distributed is not None:
            sums = torch.tensor([result["loss"] * result["loss_weight"], result["loss_weight"]],
                                dtype=torch.float64)
            sums = self.distributed.all_reduce_sum(sums)
            cm = self.distributed.all_reduce_sum(result["confusion"])
            result = {"loss": float(sums[0] / sums[1]), **all_metrics(cm, self.silence)}
        return {f"val_{k}": result[k] for k in VALIDATION_KEYS}

    def _state(self, epoch):
        state = super()._state(epoch)
        if self.ema is not None:
            state.state_dict = self.ema.module.state_dict()       # what later scripts use
            state.train_state_dict = self.core_model.state_dict()  # what resuming continues
            state.ema_updates = int(self.ema.n_averaged)
        return state

    def resume_checkpoint(self, path: str | os.PathLike) -> Checkpoint:
        ckpt = super().resume_checkpoint(path)
        if self.ema is not None:
            self.ema.module.load_state_dict(ckpt.state_dict)
            self.ema.n_averaged.fill_(int(ckpt.ema_updates or 1))
        if ckpt.train_state_dict is not None:   # with EMA: the trained weights, not their average
            load_weights(self.core_model, ckpt.train_state_dict, f"{path} (its train_state_dict)",
                         type(self.core_model).__name__)
        return ckpt

    def train(self) -> dict[str, float]:

        try:
            return super().train()
        finally:
            self.writer.close()
