"""Bad checkpoints and configs: one-line errors, exit status 1, no traceback."""
import subprocess
import sys

import pytest
import torch
import yaml

from conftest import ROOT
from model.registry import build_model
from utils.checkpoint import Checkpoint, load_checkpoint
from utils.errors import UserError


def run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def assert_one_line_error(proc, pattern):
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert pattern in lines[0], lines[0]


def test_missing_checkpoint(tmp_path):
    assert_one_line_error(run("test.py", "-r", str(tmp_path / "none.pth")), "checkpoint not found")


def test_not_a_checkpoint(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00\x01 definitely not a zip")
    assert_one_line_error(run("test.py", "-r", str(junk)), "is not a readable checkpoint")
    other = tmp_path / "dict.pth"
    torch.save({"weights": torch.zeros(3)}, other)
    assert_one_line_error(run("test.py", "-r", str(other)), "is not a checkpoint of this project")


def _ckpt(**over):
    from model.model import KeywordLeNet5Clone
    base = dict(arch="KeywordLeNet5Clone", arch_args={}, state_dict=KeywordLeNet5Clone().state_dict(),
                config={}, features={}, normalization={"mean": torch.zeros(13), "std": torch.ones(13)})
    base.update(over)
    return base


def test_checkpoint_of_another_architecture(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save(_ckpt(arch="ResNet18"), path)
    assert_one_line_error(run("test.py", "-r", str(path)), "architecture 'ResNet18'")
    with pytest.raises(UserError, match="does not fit"):
        build_model(Checkpoint.from_dict(_ckpt(state_dict={"conv1.weight": torch.zeros(16, 1, 5, 5)})))


def test_checkpoint_loads_with_weights_only(tmp_path):
    path = tmp_path / "ok.pth"
    torch.save(_ckpt(), path)
    assert load_checkpoint(path).arch == "KeywordLeNet5Clone"
    # an object that needs pickle code execution is refused by weights_only=True
    torch.save(_ckpt(config=yaml.YAMLObject()), tmp_path / "evil.pth")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "evil.pth")


def test_bad_config_files(tmp_path):
    assert_one_line_error(run("train.py", "-c", str(tmp_path / "missing.yml")), "config file not found")
    bad = tmp_path / "bad.yml"
    bad.write_text("name: [unclosed\n")
    assert_one_line_error(run("train.py", "-c", str(bad)), "is not valid YAML")
    partial = tmp_path / "partial.yml"
    partial.write_text("name: x\narch: {type: KeywordLeNet5Clone}\n")
    assert_one_line_error(run("train.py", "-c", str(partial)), "config lacks the key(s)")
