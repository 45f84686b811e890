"""Ctrl-C (SIGINT, sent to the script run as a user runs it) at start-up and during a run: exit
status 130, one line, no traceback, no temporary file, and every file on disk complete."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT
from tiny import assert_unchanged, quantized_tiny_run, run_folders, snapshot, tiny_config
from utils.checkpoint import load_checkpoint
from utils.interrupt import MESSAGE, STATUS


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("interrupt")
    corpus, config, run_dir = quantized_tiny_run(tmp)
    return tmp, corpus, run_dir


def _start(*args):
    return subprocess.Popen([sys.executable, *map(str, args)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _interrupt(proc, when, timeout=300):
    """SIGINT once ``when()`` holds; (status, stdout, stderr)."""
    deadline = time.monotonic() + timeout
    while not when():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the moment to interrupt never came"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def _messages(err):
    """stderr without progress bars (tqdm's, erased on a terminal)."""
    lines = [part for line in err.split("\n") for part in line.split("\r")]
    return [line for line in lines if line.strip() and "|" not in line]


def _temps(root):
    return sorted(p for p in Path(root).rglob(".*.tmp"))


def test_ctrl_c_at_start_up_is_one_line_and_130(run):
    tmp, _, run_dir = run
    before = snapshot(tmp)
    started = time.monotonic()
    proc = _start("test.py", "-r", run_dir / "model_best.pth")
    # torch's import alone takes longer than this: the signal lands before main() starts
    status, out, err = _interrupt(proc, lambda: time.monotonic() - started > 0.4)
    assert status == STATUS
    assert err == MESSAGE + "\n" and out == ""
    assert_unchanged(before, snapshot(tmp))


def test_ctrl_c_during_training_is_one_line_130_and_leaves_complete_files(run, tmp_path):
    tmp, corpus, _ = run
    config = tiny_config(tmp_path, corpus, name="long", epochs=200)
    proc = _start("train.py", "-c", config)
    first = lambda: any((r / "checkpoint-epoch1.pth").is_file() for r in run_folders(tmp_path, "long"))  # noqa: E731
    status, _, err = _interrupt(proc, first)
    assert status == STATUS, err[-3000:]
    assert "Traceback" not in err and _messages(err)[-1] == MESSAGE, err[-3000:]
    [folder] = run_folders(tmp_path, "long")
    assert not _temps(tmp_path)
    for path in folder.glob("*.pth"):   # every checkpoint on disk is complete and valid
        assert load_checkpoint(path).epoch >= 1
    assert not list(folder.parent.glob(".*.running"))   # the run's marker is gone: it ended cleanly


def test_ctrl_c_during_a_quantization_search_keeps_the_old_result(run):
    tmp, _, run_dir = run
    before = snapshot(tmp)
    proc = _start("quantize.py", "-r", run_dir / "model_best.pth")
    def searching():   # "Loading checkpoint" is printed once main() runs
        return proc.stdout.readline().startswith("Loading checkpoint")
    status, _, err = _interrupt(proc, searching)
    assert status == STATUS
    assert "Traceback" not in err and _messages(err)[-1] == MESSAGE, err[-3000:]
    assert_unchanged(before, snapshot(tmp))
    assert not _temps(tmp)
