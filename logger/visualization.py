"""Tensorboard event files (tensorboardX): loss, top-1 and learning rate per epoch, on disk at
the end of every epoch, so a killed run keeps the epochs it finished.

The events are written in the caller's thread (tensorboardX's ``EventsWriter``), not through
``SummaryWriter``'s background thread: a handful of scalars per epoch needs no queue, and a
thread that still holds queued events when Ctrl-C closes the file prints a traceback from
outside the main thread, which no wrapper can turn into one line. tensorboardX is imported only
when tensorboard is on."""
import os
import time
from collections.abc import Mapping


class TensorboardWriter:
    def __init__(self, log_dir: str | os.PathLike, enabled: bool = True) -> None:
        self.events = None
        if enabled:
            from tensorboardX.event_file_writer import EventsWriter
            os.makedirs(log_dir, exist_ok=True)
            self.events = EventsWriter(os.path.join(str(log_dir), "events"))

    def add_scalars(self, step: int, values: Mapping[str, float], prefix: str = "") -> None:
        """One event per value at ``step``, flushed to the file before returning."""
        if self.events is None:
            return
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.summary import scalar
        now = time.time()
        for k, v in values.items():
            self.events.write_event(Event(wall_time=now, step=int(step), summary=scalar(f"{prefix}{k}", float(v))))
        self.events.flush()

    def close(self) -> None:
        if self.events is not None:
            self.events.close()
            self.events = None
