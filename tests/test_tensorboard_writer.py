"""The tensorboard writer: every epoch's scalars readable before the run ends, no writer thread
(whose queue Ctrl-C could leave writing to a closed file), and a closed writer a no-op."""
import threading

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from logger import TensorboardWriter


def scalars(log_dir, tag):
    events = EventAccumulator(str(log_dir))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def test_each_epoch_is_on_disk_when_add_scalars_returns(tmp_path):
    threads = threading.active_count()
    writer = TensorboardWriter(tmp_path / "log")
    writer.add_scalars(1, {"loss": 0.5, "top1": 0.25})
    assert threading.active_count() == threads
    assert scalars(tmp_path / "log", "loss") == [(1, 0.5)]          # before close
    writer.add_scalars(2, {"loss": 0.375, "top1": 0.75}, prefix="val_")
    assert scalars(tmp_path / "log", "val_top1") == [(2, 0.75)]
    writer.close()
    writer.close()
    writer.add_scalars(3, {"loss": 1.0})                              # after close: nothing, no error
    assert scalars(tmp_path / "log", "loss") == [(1, 0.5)]
    assert [p.name.startswith("events.out.tfevents.") for p in (tmp_path / "log").iterdir()] == [True]


def test_a_disabled_writer_writes_nothing(tmp_path):
    writer = TensorboardWriter(tmp_path / "log", enabled=False)
    writer.add_scalars(1, {"loss": 0.5})
    writer.close()
    assert not (tmp_path / "log").exists()


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_value_is_written_as_is(tmp_path, value):
    writer = TensorboardWriter(tmp_path)
    writer.add_scalars(1, {"loss": value})
    writer.close()
    [(step, got)] = scalars(tmp_path, "loss")
    assert step == 1 and (got != got if value != value else got == value)
