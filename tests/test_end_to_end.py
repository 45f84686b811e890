"""The user-facing scripts on the real corpus: train, test, resume, determinism."""
import re
import pytest
import torch

from conftest import E2E_EPOCHS, run_dirs
from conftest import run_script as run

EPOCHS = E2E_EPOCHS


def test_train_writes_the_run_layout(trained, e2e_config):
    run_dir, proc = trained
    names = sorted(p.name for p in run_dir.iterdir() if p.suffix == ".pth" or p.name == "config.yml")
    assert names == ["checkpoint-epoch2.pth", "checkpoint-epoch4.pth", "config.yml", "model_best.pth"]
    assert not [p for p in run_dir.iterdir() if ".tmp" in p.name]   # atomic writes leave no temporaries
    log_dir = e2e_config.parent / "saved" / "log" / "e2e" / run_dir.name
    assert (log_dir / "info.log").is_file()
    assert any(p.name.startswith("events.out.tfevents") for p in log_dir.iterdir())
    lines = [l for l in proc.stdout.splitlines() if l.startswith("epoch ")]
    assert len(lines) == EPOCHS
    assert re.search(r"loss [\d.]+ top1 [\d.]+ \| val_loss [\d.]+ val_top1 [\d.]+ val_bal [\d.]+ val_fa [\d.]+ \| "
                     r"[\d,]+ samples/s", lines[0])
    ckpt = torch.load(run_dir / "checkpoint-epoch4.pth", weights_only=True)
    assert ckpt["arch"] == "KeywordLeNet5Clone" and ckpt["epoch"] == 4
    assert ckpt["normalization"]["mean"].shape == (13,)
    assert ckpt["features"]["n_mfcc"] == 13


def test_test_script_prints_the_lab_report(trained):
    run_dir, _ = trained
    out = run("test.py", "-r", run_dir / "model_best.pth").stdout
    assert "Predicted" in out and re.search(r"^True", out, re.M)
    rows = re.findall(r"^(0|1|2|3|All)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$", out, re.M)
    assert [r[0] for r in rows] == ["0", "1", "2", "3", "All"]
    assert [int(r[5]) for r in rows] == [645, 53, 52, 56, 806]        # the test split, per class
    m = re.search(r"Metrics: \{'loss': ([\d.]+), 'top1': ([\d.]+)\}", out)
    assert m and 0.0 < float(m.group(2)) <= 1.0
    diag = sum(int(rows[i][1 + i]) for i in range(4))
    assert float(m.group(2)) == pytest.approx(diag / 806, abs=1e-9)    # per sample, not per batch
    assert "Macro recall" in out and "recall" in out
    assert (run_dir / "model_best-test-float.yml").is_file() and (run_dir / "model_best-test-float.png").is_file()


def test_same_seed_same_numbers_and_exact_resume(trained, e2e_config):
    run_dir, proc = trained
    again = run("train.py", "-c", e2e_config)
    first = [l.split("|")[:3] for l in proc.stdout.splitlines() if l.startswith("epoch ")]
    second = [l.split("|")[:3] for l in again.stdout.splitlines() if l.startswith("epoch ")]
    assert first == second
    # resume from epoch 2: the result equals the uninterrupted run's epoch 4, bit for bit
    run("train.py", "-r", run_dir / "checkpoint-epoch2.pth")
    resumed = run_dirs(e2e_config)[-1]
    a = torch.load(run_dir / "checkpoint-epoch4.pth", weights_only=True)["state_dict"]
    b = torch.load(resumed / "checkpoint-epoch4.pth", weights_only=True)["state_dict"]
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_other_corpus_with_data_dir(trained, corpus_dir):
    run_dir, _ = trained
    out = run("test.py", "-r", run_dir / "model_best.pth", "--data-dir", corpus_dir, "--all").stdout
    total = re.search(r"^All\s+\d+\s+\d+\s+\d+\s+\d+\s+(\d+)$", out, re.M)
    assert int(total.group(1)) == 5016
