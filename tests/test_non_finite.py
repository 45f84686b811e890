"""Nothing non-finite passes silently: features holding a NaN or an infinity are an error naming
the clip (computed) or a rebuilt cache (read back damaged), and a non-finite training loss stops
train.py at that batch with one line naming the epoch and the batch, before the step writes NaN
into the weights."""
import logging

import numpy as np
import pytest
import soundfile as sf
import torch

import data_loader.dataset as dataset
from data_loader.corpus import scan_corpus
from data_loader.dataset import load_split
from data_loader.features import FeatureParams, MelPower
from test_bad_input import assert_one_line_error, run_in_process
from tiny import build_tiny_corpus, run_folders, tiny_config
from utils.errors import UserError


def _corpus(root):
    rng = np.random.default_rng(0)
    for w in ("one", "two", "cat"):
        (root / w).mkdir(parents=True)
        for i in range(3):
            sf.write(root / w / f"s{i}_nohash_0.wav", (0.1 * rng.standard_normal(8000)).astype(np.float32),
                     16000, subtype="PCM_16")
    (root / "validation_list.txt").write_text("one/s0_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("two/s1_nohash_0.wav\n")
    return scan_corpus(root, ("one", "two", "cat"))


class _InfiniteThird(MelPower):
    """The mel power of the real pipeline with the third clip's made infinite (what an overflow in
    the spectrum gives)."""

    def forward(self, waves):
        out = super().forward(waves)
        if len(out) > 2:
            out[2, 0, 0] = float("inf")
        return out


def test_the_first_non_finite_row_is_found_whatever_the_sum_gives():
    x = torch.rand(5, 4, 3)
    assert dataset.first_non_finite(x) is None and dataset.first_non_finite(x[:0]) is None
    x[3, 1, 2], x[1, 0, 0] = float("nan"), float("-inf")
    assert dataset.first_non_finite(x) == 1
    x[1, 0, 0] = float("inf")
    x[2, 2, 2] = float("-inf")   # inf + -inf: the sum is NaN, the first row still 1
    assert dataset.first_non_finite(x) == 1
    big = torch.full((3, 2), 3e38)   # finite values whose sum overflows to inf
    assert not torch.isfinite(big.sum()) and dataset.first_non_finite(big) is None
    big[2, 1] = float("nan")
    assert dataset.first_non_finite(big) == 2


def test_non_finite_features_are_an_error_naming_the_clip(tmp_path, monkeypatch):
    corpus = _corpus(tmp_path / "c")
    monkeypatch.setattr(dataset, "MelPower", _InfiniteThird)
    with pytest.raises(UserError) as refused:
        load_split(corpus, "train", FeatureParams(), cache_dir=tmp_path / "cache", progress=False)
    names = [rel for rel, _ in corpus.clips["train"]]
    assert str(refused.value) == (f"the features of {names[2]} in the train split of {corpus.root} are not finite "
                                  f"(NaN or infinite); remove or replace the clip")
    assert not (tmp_path / "cache").exists()   # nothing cached


def test_a_cache_holding_non_finite_features_is_rebuilt(tmp_path, caplog):
    corpus = _corpus(tmp_path / "c")
    cache = tmp_path / "cache"
    good, _ = load_split(corpus, "train", FeatureParams(), cache_dir=cache, progress=False)
    [path] = cache.glob("train-*.pt")
    blob = torch.load(path, weights_only=True)
    blob["mel"][1, 3, 5] = float("nan")
    torch.save(blob, path)
    with caplog.at_level(logging.WARNING):
        again, _ = load_split(corpus, "train", FeatureParams(), cache_dir=cache, progress=False)
    assert f"cache {path} is unreadable; rebuilding it" in caplog.text
    assert torch.equal(again.mel, good.mel) and torch.equal(again.mfcc, good.mfcc)
    assert torch.isfinite(torch.load(path, weights_only=True)["mel"]).all()


def test_a_non_finite_loss_stops_training_at_its_batch(tmp_path, capsys):
    corpus = build_tiny_corpus(tmp_path / "corpus")
    config = tiny_config(tmp_path, corpus)
    status, _, err = run_in_process("train.py", ["-c", config, "--lr", "1e30"], capsys)
    assert_one_line_error(status, err, "training diverged: epoch 1, batch ")
    batch = int(err.split("batch ")[1].split(" ")[0])
    assert 1 <= batch <= 3   # 20 training clips (+ 8 noise) in batches of 8
    assert "lower the learning rate (--lr)" in err
    assert run_folders(tmp_path) == []   # the run saved nothing, so its folder is gone
