"""Tensorboard event files (tensorboardX): loss, top-1 and learning rate per epoch, on disk at
the end of every epoch, so a killed run keeps the epochs it finished. tensorboardX is imported
only when tensorboard is on."""


class TensorboardWriter:
    def __init__(self, log_dir, enabled=True) -> None:
        self.writer = None
        if enabled:
            from tensorboardX import SummaryWriter
            self.writer = SummaryWriter(str(log_dir))

    def add_scalars(self, step, values, prefix="") -> None:
        if self.writer is None:
            return
        for k, v in values.items():
            self.writer.add_scalar(f"{prefix}{k}", v, step)
        self._drain()

    def _drain(self) -> None:
        """Write every queued event and flush the file. tensorboardX's own flush() flushes the
        file but not the queue its writer thread has yet to empty, so the thread is stopped (it
        writes everything queued before its stop signal) and a fresh one started."""
        events = self.writer._get_file_writer().event_writer
        worker = getattr(events, "_worker", None)
        try:
            worker.stop()
            events._ev_writer.flush()
            events._worker = type(worker)(events._event_queue, events._ev_writer, events._flush_secs)
            events._worker.start()
        except AttributeError:   # another tensorboardX layout: its flush is the best there is
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
