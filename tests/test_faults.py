"""SIGKILL at chosen points of train.py, quantize.py, prune.py and export.py: every file left is
either the old or the new complete version (YAML parses, checkpoints load, PNGs end), a rerun
succeeds, and the rerun removes the temporary files the killed process left.

Kill points are deterministic: the script runs under a hook that sends SIGKILL to its own
process just before or just after the rename (os.replace) of a given output, or just after
the hard link that backs up an older result; one more kill lands asynchronously, from outside,
while training runs."""
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import ROOT, run_script
from tiny import quantized_tiny_run, run_folders, tiny_config
from utils.atomic import _TEMP

HOOK = r"""
import fnmatch, os, runpy, signal, sys
function, when, pattern, script = sys.argv[1:5]
real = getattr(os, function)
def hooked(src, dst, *args, **kwargs):
    hit = fnmatch.fnmatch(os.path.basename(str(dst)), pattern)
    if hit and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst, *args, **kwargs)
    if hit and when == "after":
        os.kill(os.getpid(), signal.SIGKILL)
setattr(os, function, hooked)
sys.argv = [script] + sys.argv[5:]
sys.path.insert(0, os.getcwd())
runpy.run_path(script, run_name="__main__")
"""


def killed_at(point, script, *args):
    """Run ``script`` until ``point`` = (os function, "before"/"after", file pattern); returns
    the process, which must have died of SIGKILL there."""
    proc = subprocess.run([sys.executable, "-c", HOOK, *point, script, *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, (point, proc.stderr[-2000:])
    return proc


def temp_files(*folders):
    return sorted(p for folder in folders for p in Path(folder).rglob("*") if _TEMP.match(p.name))


def assert_complete(*folders):
    """Every file that is not one of our temporary files is a complete version."""
    for folder in folders:
        for path in Path(folder).rglob("*"):
            if not path.is_file() or _TEMP.match(path.name) or path.name.startswith("events."):
                continue
            if path.suffix == ".yml":
                assert isinstance(yaml.safe_load(path.read_text()), dict), path
            elif path.suffix in (".pth", ".pt"):
                assert isinstance(torch.load(path, weights_only=True), dict), path
            elif path.suffix == ".png":
                data = path.read_bytes()
                assert data[:4] == b"\x89PNG" and data[-8:-4] == b"IEND", path
            elif path.suffix == ".onnx":
                import onnx
                onnx.checker.check_model(onnx.load(str(path)))
            elif path.suffix in (".txt", ".c", ".h", ".log"):
                text = path.read_text()
                assert text == "" or text.endswith("\n"), path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 2-epoch run on the tiny corpus with its quantization.yml (every group at 8 bits: the
    export needs all of them in fixed point) and pruning.yml."""
    tmp = tmp_path_factory.mktemp("faults")
    corpus, config, run_dir = quantized_tiny_run(tmp)
    run_script("prune.py", "-r", run_dir / "model_best.pth")
    return tmp, corpus, config, run_dir


@pytest.mark.parametrize("script,name", [("quantize.py", "quantization"), ("prune.py", "pruning")])
def test_killed_searches_leave_the_old_or_the_new_result(run, script, name):
    _, _, _, run_dir = run
    ckpt = run_dir / "model_best.pth"
    original = (run_dir / f"{name}.yml").read_bytes()
    points = [("link", "after", f"{name}.*.yml"),            # backup made, new one not written
              ("replace", "after", f"{name}.yml"),           # new one in place, its PNG not yet
              ("replace", "before", f"{name}.yml")]          # new one complete under its temp name
    for point in points:
        killed_at(point, script, "-r", ckpt)
        assert_complete(run_dir)
        key = "pruned_filters" if name == "pruning" else "layers"
        assert key in yaml.safe_load((run_dir / f"{name}.yml").read_text())
    assert temp_files(run_dir)                                   # the last kill left debris ...
    assert any(p.read_bytes() == original for p in run_dir.glob(f"{name}*.yml"))   # and lost nothing
    run_script(script, "-r", ckpt)
    assert not temp_files(run_dir)                               # ... which the rerun removed
    assert_complete(run_dir)


def test_killed_export_leaves_complete_files_and_reruns(run, tmp_path):
    _, _, _, run_dir = run
    ckpt, q, p = run_dir / "model_best.pth", run_dir / "quantization.yml", run_dir / "pruning.yml"
    bundle = tmp_path / "bundle"
    args = ("-r", ckpt, "-q", q, "-p", p, "-o", bundle)
    run_script("export.py", *args)
    for point in [("replace", "after", "model.onnx"), ("replace", "before", "export.yml"),
                  ("replace", "before", "model_compact.pth")]:
        killed_at(point, "export.py", *args)
        assert_complete(bundle)
        assert set(yaml.safe_load((bundle / "export.yml").read_text())["files"]) <= {p.name for p in bundle.iterdir()}
    assert temp_files(bundle)
    out = run_script("export.py", *args).stdout
    assert "0 of 10 clips differ" in out
    assert not temp_files(bundle)
    assert_complete(bundle)


def test_killed_training_keeps_complete_checkpoints_and_resumes(run, tmp_path):
    tmp, corpus, _, _ = run
    config = tiny_config(tmp_path, corpus, name="killed", epochs=3)
    cfg = yaml.safe_load(config.read_text())
    cfg["data_loader"]["args"]["cache_dir"] = str(tmp_path / "cache")   # built anew, so its write is killed too
    config.write_text(yaml.safe_dump(cfg))
    saved = tmp_path / "saved"
    killed_at(("replace", "before", "train-*.pt"), "train.py", "-c", config)        # feature cache
    assert_complete(saved, tmp_path / "cache")
    assert temp_files(tmp_path / "cache")
    [early] = run_folders(tmp_path, "killed")
    assert [p.name for p in early.iterdir()] == ["config.yml"]       # killed before any checkpoint
    killed_at(("replace", "before", "checkpoint-epoch2.pth"), "train.py", "-c", config)
    assert not temp_files(tmp_path / "cache")      # the next run that wrote the cache removed it
    assert not early.exists() and not (saved / "log" / "killed" / early.name).exists()   # and that folder
    killed_at(("replace", "after", "model_best.pth"), "train.py", "-c", config)
    assert_complete(saved, tmp_path / "cache")
    assert temp_files(saved)
    # and one kill from outside, as soon as the first checkpoint of a fresh run appears
    before = set(run_folders(tmp_path, "killed"))
    proc = subprocess.Popen([sys.executable, "train.py", "-c", str(config)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None and not [r for r in set(run_folders(tmp_path, "killed")) - before
                                       if (r / "checkpoint-epoch1.pth").exists()]:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert_complete(saved, tmp_path / "cache")
    fresh = (set(run_folders(tmp_path, "killed")) - before).pop()
    events = list((saved / "log" / "killed" / fresh.name).glob("events.*"))
    assert len(events) == 1 and b"val_loss" in events[0].read_bytes()   # epoch 1 was flushed
    # the run killed before epoch 2's checkpoint was renamed resumes from epoch 1
    interrupted = next(r for r in run_folders(tmp_path, "killed") if temp_files(r))
    assert not (interrupted / "checkpoint-epoch2.pth").exists()
    resumed = run_script("train.py", "-r", interrupted / "checkpoint-epoch1.pth")
    assert "Resume training from epoch 2" in resumed.stdout
    assert not temp_files(interrupted)
    newest = max(run_folders(tmp_path, "killed"), key=lambda r: r.stat().st_mtime)
    assert torch.load(newest / "checkpoint-epoch3.pth", weights_only=True)["epoch"] == 3
    run_script("train.py", "-c", config)                                        # a fresh rerun works
    assert_complete(saved, tmp_path / "cache")
