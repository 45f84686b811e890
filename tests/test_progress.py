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
