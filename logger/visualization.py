"""Tensorboard event files (tensorboardX): loss, top-1 and learning rate per epoch, flushed every
epoch so a killed run keeps the epochs it finished."""
from tensorboardX import SummaryWriter


class TensorboardWriter:
    def __init__(self, log_dir, enabled=True):
        self.writer = SummaryWriter(str(log_dir)) if enabled else None

    def add_scalars(self, step, values, prefix=""):
        if self.writer is None:
            return
        for k, v in values.items():
            self.writer.add_scalar(f"{prefix}{k}", v, step)
        self.writer.flush()   # one epoch's values reach the disk even if the run is then killed

    def close(self):
        if self.writer is not None:
            self.writer.close()
