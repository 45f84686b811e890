"""Progress bars redraw only on a terminal: a log file gets no carriage-return redraws."""
import os
import subprocess
import sys

from conftest import ROOT
from utils.progress import progress_bar


def test_bar_is_shown_on_a_terminal_and_hidden_in_a_file(tmp_path):
    master, slave = os.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as tty:
            assert not progress_bar(range(3), file=tty).disable
            assert progress_bar(range(3), enabled=False, file=tty).disable
        with open(tmp_path / "log", "w") as log:
            assert progress_bar(range(3), file=log).disable
    finally:
        os.close(master)
        os.close(slave)


def test_a_redirected_run_writes_no_redraws(tmp_path):
    """The synthetic corpus generator shows a bar per file; redirected, its log stays plain lines."""
    with open(tmp_path / "log", "w") as log:
        proc = subprocess.run([sys.executable, "-m", "data_loader.synthetic", "--out", str(tmp_path / "c"),
                               "--clips", "40", "--workers", "1"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                              timeout=300)
    text = (tmp_path / "log").read_text()
    assert proc.returncode == 0, text
    assert "\r" not in text and "synthesising" not in text
    assert (tmp_path / "c").is_dir()


class FakeClock:
    def __init__(self, step):
        self.now, self.step = 0.0, step

    def __call__(self):
        self.now += self.step
        return self.now


def test_heartbeat_writes_a_line_at_most_every_30_s_in_a_log(tmp_path):
    from utils.progress import heartbeat
    with open(tmp_path / "log", "w") as log:
        items = list(heartbeat(range(100), "epoch 3/120", clock=FakeClock(1.0), stream=log))
    assert items == list(range(100))
    lines = (tmp_path / "log").read_text().splitlines()
    # one clock reading before the loop and one per item: a line after items 30, 60 and 90
    assert lines == ["epoch 3/120: 30/100 batches, 30 s", "epoch 3/120: 60/100 batches, 60 s",
                     "epoch 3/120: 90/100 batches, 90 s"]


def test_heartbeat_is_silent_on_a_terminal_and_in_a_fast_loop(tmp_path):
    from utils.progress import heartbeat
    master, slave = os.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as tty:
            assert list(heartbeat(range(5), "x", clock=FakeClock(100.0), stream=tty)) == list(range(5))
    finally:
        os.close(master)
        os.close(slave)
    with open(tmp_path / "log", "w") as log:
        assert list(heartbeat(range(50), "x", clock=FakeClock(0.5), stream=log)) == list(range(50))
    assert (tmp_path / "log").read_text() == ""
