"""trainer.monitor on the validation stream: every epoch is scored on it and model_best.pth is the
epoch with the highest streaming measure; finetuning can select by it on its own
(optimization.finetuning.monitor)."""
import re

import pytest
import yaml

from conftest import run_script as run
from tiny import build_tiny_corpus, run_folders, tiny_config
from utils.checkpoint import load_checkpoint

EPOCH = re.compile(r"epoch +(\d+) \|.* val_stream_mean_recall ([\d.]+)")


def _epochs(text):
    return {int(e): float(v) for e, v in EPOCH.findall(text)}


@pytest.fixture(scope="module")
def monitored(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("monitor")
    corpus = build_tiny_corpus(tmp / "corpus")
    config = tiny_config(tmp, corpus, epochs=3, monitor="max val_stream_mean_recall", early_stop=None)
    proc = run("train.py", "-c", config)
    return tmp, config, run_folders(tmp)[-1], proc


def test_training_selects_the_epoch_with_the_best_streaming_measure(monitored):
    _, _, run_dir, proc = monitored
    text = proc.stdout + proc.stderr
    assert "monitor: stream_recall_at_target: keywords found at <= 1 false alarm(s)/h" in text
    scores = _epochs(text)
    assert sorted(scores) == [1, 2, 3]
    ckpt = load_checkpoint(run_dir / "model_best.pth")
    best = max(scores.values())
    assert ckpt.monitor_best == pytest.approx(best, abs=5e-5)
    # ties keep the later epoch (base_trainer)
    assert ckpt.epoch == max(e for e, v in scores.items() if abs(v - best) < 5e-5)


def test_finetuning_takes_its_own_monitor(monitored, tmp_path):
    tmp, config, run_dir, _ = monitored
    cfg = yaml.safe_load(config.read_text())
    cfg["trainer"]["monitor"] = "max val_balanced_accuracy"
    cfg["optimization"]["finetuning"].update(epochs=2, monitor="max val_stream_recall_at_target")
    config.write_text(yaml.safe_dump(cfg))
    run("quantize.py", "-r", run_dir / "model_best.pth", "-o", tmp_path)
    proc = run("train.py", "-c", config, "-r", run_dir / "model_best.pth", "-q", tmp_path / "quantization.yml")
    text = proc.stdout + proc.stderr
    values = [float(v) for v in re.findall(r"epoch +\d+ \|.* val_stream_recall_at_target ([\d.]+)", text)]
    assert len(values) == 2
    tuned = [p for p in (tmp / "saved" / "models").iterdir() if p.name.endswith("_finetune")]
    ckpt = load_checkpoint(sorted(tuned[0].iterdir())[-1] / "model_best.pth")
    assert ckpt.config["trainer"]["monitor"] == "max val_stream_recall_at_target"
    assert ckpt.monitor_best == pytest.approx(max(values), abs=5e-5)


def test_an_unknown_stream_monitor_is_refused_by_the_schema():
    from conftest import ROOT
    from configuration.schema import validate_config
    from utils.errors import UserError
    cfg = yaml.safe_load((ROOT / "config_lenet5_keywords.yml").read_text())
    cfg["optimization"]["finetuning"]["monitor"] = "max val_stream_nothing"
    with pytest.raises(UserError, match=r"finetuning.monitor must be 'off' or 'min\|max <metric>'"):
        validate_config(cfg)
    cfg["optimization"]["finetuning"]["monitor"] = "max val_stream_mean_recall"
    assert validate_config(cfg)["optimization"]["finetuning"]["monitor"] == "max val_stream_mean_recall"
