"""Training of a keyword-spotting model over in-memory batches."""
import time

import torch
from utils.progress import progress_bar

from base.base_trainer import BaseTrainer
from logger import TensorboardWriter
from model.metric import top1
from optimization.layers import fixed_point_layers
from trainer.distributed import EvenBatches
from trainer.evaluation import evaluate


class Trainer(BaseTrainer):
    def __init__(self, model, criterion, metric_ftns, optimizer, config, device, data_loader,
                 valid_data_loader=None, lr_scheduler=None, checkpoint_extra=None, progress=True,
                 distributed=None):
        super().__init__(model, criterion, metric_ftns, optimizer, config, checkpoint_extra or {})
        self.device = device
        self.data_loader = data_loader
        self.valid_data_loader = valid_data_loader
        self.lr_scheduler = lr_scheduler
        self.progress = progress
        self.distributed = distributed  # trainer.distributed.DistributedContext or None
        if distributed is not None:
            self.is_writer = distributed.is_main
        self.writer = TensorboardWriter(config.log_dir, enabled=self.is_writer and
                                        bool(config["trainer"].get("tensorboard", True)))
        self._pruned = {name: layer for name, layer in fixed_point_layers(self.core_model).items()
                        if layer.pruned_kernels}

    def _keep_pruned_zero(self):
        for layer in self._pruned.values():
            layer.prune_kernels(layer.pruned_kernels)

    def _train_epoch(self, epoch):
        self.model.train()
        self.data_loader.set_epoch(epoch)
        loss_sum, correct, n = 0.0, 0, 0
        start = time.perf_counter()
        batches = self.data_loader if self.distributed is None else EvenBatches(self.data_loader)
        bar = progress_bar(batches, enabled=self.progress and self.is_writer, desc=f"epoch {epoch}/{self.epochs}",
                           leave=False, unit="batch")
        for x, y in bar:
            x, y = x.to(self.device), y.to(self.device)
            self.optimizer.zero_grad(set_to_none=True)
            out = self.model(x)
            loss = self.criterion(out, y)
            loss.backward()
            self.optimizer.step()
            if self._pruned:
                self._keep_pruned_zero()
            loss_sum += float(loss.detach()) * len(y)
            correct += top1(out.detach(), y)
            n += len(y)
        elapsed = time.perf_counter() - start
        sums = torch.tensor([loss_sum, correct, n], dtype=torch.float64)
        if self.distributed is not None:
            sums = self.distributed.all_reduce_sum(sums)
        log = {"loss": float(sums[0] / sums[2]), "top1": float(sums[1] / sums[2]),
               "samples_per_s": float(sums[2]) / elapsed, "lr": self.optimizer.param_groups[0]["lr"]}
        if self.valid_data_loader is not None:
            log.update(self._valid_epoch())
        if self.lr_scheduler is not None:
            self.lr_scheduler.step()
        if self.is_writer:
            self.writer.add_scalars(epoch, {k: v for k, v in log.items() if k != "samples_per_s"})
            msg = (f"epoch {epoch:3d} | loss {log['loss']:.4f} top1 {log['top1']:.4f}")
            if "val_loss" in log:
                msg += f" | val_loss {log['val_loss']:.4f} val_top1 {log['val_top1']:.4f}"
            msg += f" | {log['samples_per_s']:,.0f} samples/s | lr {log['lr']:.2e}"
            self.logger.info(msg)
        return log

    def _valid_epoch(self):
        result = evaluate(self.core_model, self.valid_data_loader, self.criterion, self.device)
        if self.distributed is not None:
            sums = torch.tensor([result["loss"] * result["loss_weight"], result["loss_weight"],
                                 result["top1"] * result["n"], result["n"]], dtype=torch.float64)
            sums = self.distributed.all_reduce_sum(sums)
            return {"val_loss": float(sums[0] / sums[1]), "val_top1": float(sums[2] / sums[3])}
        return {"val_loss": result["loss"], "val_top1": result["top1"]}

    def train(self):
        try:
            return super().train()
        finally:
            self.writer.close()
