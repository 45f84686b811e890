"""Speaker-balanced sampling (data_loader.speaker_balance, ``data_loader.args.speaker_balance``):
the weights of a constructed list exactly, the loader's draws from them, their determinism, and
the config's bounds."""
from types import SimpleNamespace as E

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from conftest import ROOT
from configuration.schema import validate_config
from data_loader.data_loaders import InMemoryLoader, SpeechCommandsDataLoader
from data_loader.speaker_balance import speaker_of, speaker_weights
from data_loader.stream_windows import window_clips
from utils.errors import UserError


def test_the_speaker_is_the_name_before_nohash_and_a_noise_clip_is_its_recording():
    assert speaker_of("one/fsddtheo_nohash_12.wav") == "fsddtheo"
    assert speaker_of("two/0cb74144_nohash_1.wav") == "0cb74144"
    assert speaker_of("cat/plain.wav") == "plain"
    assert speaker_of("noise:_background_noise_/pink_noise.wav@12.50") == "noise:_background_noise_/pink_noise.wav"
    assert speaker_of("noise:_background_noise_/pink_noise.wav@3.00") == speaker_of(
        "noise:_background_noise_/pink_noise.wav@12.50")


NAMES = ["one/a_nohash_0.wav", "one/a_nohash_1.wav", "one/a_nohash_2.wav", "one/b_nohash_0.wav",
         "cat/a_nohash_0.wav", "dog/c_nohash_0.wav", "cat/c_nohash_1.wav"]
LABELS = [1, 1, 1, 1, 0, 0, 0]


def test_weights_are_the_inverse_group_size_scaled_to_keep_each_class_share():
    w = speaker_weights([speaker_of(n) for n in NAMES], LABELS, 1.0)
    # class 1: a has 3 clips (1/3 each), b 1 (1); sum 2 over 4 clips: scale 2
    # class 0: a 1 clip (1), c 2 clips over two words (1/2 each); sum 2 over 3 clips: scale 1.5
    assert w.dtype == torch.float64
    torch.testing.assert_close(w, torch.tensor([2 / 3, 2 / 3, 2 / 3, 2.0, 1.5, 0.75, 0.75], dtype=torch.float64))
    half = speaker_weights([speaker_of(n) for n in NAMES], LABELS, 0.5)
    r3 = 3 ** -0.5
    one = 4 / (3 * r3 + 1)
    zero = 3 / (1 + 2 * 2 ** -0.5)
    torch.testing.assert_close(half, torch.tensor([r3 * one] * 3 + [one, zero, 2 ** -0.5 * zero, 2 ** -0.5 * zero],
                                                  dtype=torch.float64))
    assert speaker_weights([speaker_of(n) for n in NAMES], LABELS, 0.0).tolist() == [1.0] * 7
    for weights in (w, half):   # each class keeps its clip count as its share of the draws
        assert float(weights[:4].sum()) == pytest.approx(4) and float(weights[4:].sum()) == pytest.approx(3)
    with pytest.raises(ValueError):
        speaker_weights(["a"], [0, 1], 1.0)


def _loader(weights, seed=3, rank=0, world_size=1, n=10):
    mel = torch.rand(n, 40, 100)
    ident = lambda m: m[:, None, :, :13]  # noqa: E731
    return InMemoryLoader(mel, torch.arange(n), ident, batch_size=4, shuffle=True, seed=seed, rank=rank,
                          world_size=world_size, weights=weights)


def _epoch(loader, epoch):
    loader.set_epoch(epoch)
    return torch.cat([y for _, y in loader])


def test_weighted_epochs_are_as_long_deterministic_and_drawn_by_the_weights():
    weights = torch.tensor([0.0, 0, 0, 0, 0, 0, 0, 0, 1, 3], dtype=torch.float64)
    loader = _loader(weights)
    first = _epoch(loader, 1)
    assert len(first) == 10 and len(loader) == 3
    assert set(first.tolist()) <= {8, 9}                     # weight 0: never drawn
    assert torch.equal(_epoch(_loader(weights), 1), first)   # the same seed and epoch: the same draws
    assert not torch.equal(_epoch(loader, 2), first)
    assert not torch.equal(_epoch(_loader(weights, seed=4), 1), first)
    shards = [_epoch(_loader(weights, rank=r, world_size=2), 1) for r in (0, 1)]
    assert torch.equal(shards[0], first[0::2]) and torch.equal(shards[1], first[1::2])
    # frequencies follow the weights: 1 : 3 over many draws
    many = _loader(torch.tensor([1.0, 3.0] * 2000, dtype=torch.float64), n=4000)
    drawn = _epoch(many, 0) % 2
    assert float(drawn.float().mean()) == pytest.approx(0.75, abs=0.03)


def test_window_clips_are_the_keyword_clip_of_a_positive_and_the_most_overlapped_clip_of_a_negative():
    events = [E(rel="cat/x_nohash_0.wav", label=0, start=0, length=8000),
              E(rel="one/y_nohash_0.wav", label=1, start=10000, length=6000),
              E(rel="dog/z_nohash_0.wav", label=0, start=17000, length=9000)]
    starts = np.array([9000, 2000, 17500, 40000])
    labels = np.array([1, 0, 0, 0])
    assert window_clips(events, starts, labels, 16000) == ["one/y_nohash_0.wav", "cat/x_nohash_0.wav",
                                                           "dog/z_nohash_0.wav", ""]


def _corpus(root):
    rng = np.random.default_rng(0)
    files = {"one": ["a_nohash_0", "a_nohash_1", "a_nohash_2", "b_nohash_0"], "cat": ["a_nohash_3", "c_nohash_0"],
             "dog": ["c_nohash_1"]}
    for word, stems in files.items():
        (root / word).mkdir(parents=True)
        for stem in stems:
            sf.write(root / word / f"{stem}.wav", (0.1 * rng.standard_normal(8000)).astype(np.float32), 16000,
                     subtype="PCM_16")
    for held in ("v", "t"):
        (root / "one" / f"{held}_nohash_0.wav").write_bytes((root / "one" / "b_nohash_0.wav").read_bytes())
    (root / "validation_list.txt").write_text("one/v_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("one/t_nohash_0.wav\n")
    return root


def test_the_loader_weighs_the_training_clips_of_a_corpus_by_speaker(tmp_path):
    root = _corpus(tmp_path / "c")
    data = SpeechCommandsDataLoader(root, cache_dir=tmp_path / "cache", progress=False, speaker_balance=1.0, keywords=("one",),
                                    augment={"enabled": False})
    loader = data.train_loader(*data.normalization())
    # sorted by path: cat/a, cat/c, dog/c, one/a x3, one/b
    torch.testing.assert_close(loader.weights, torch.tensor([1.5, 0.75, 0.75, 2 / 3, 2 / 3, 2 / 3, 2.0],
                                                            dtype=torch.float64))
    assert SpeechCommandsDataLoader(root, cache_dir=tmp_path / "cache", progress=False, keywords=("one",)).train_loader(
        *data.normalization()).weights is None


@pytest.mark.parametrize("value", [1.5, -0.1, "half", True, None])
def test_speaker_balance_outside_0_to_1_is_a_one_line_config_error(value):
    cfg = yaml.safe_load((ROOT / "config_lenet5_keywords.yml").read_text())
    cfg["data_loader"]["args"]["speaker_balance"] = value
    with pytest.raises(UserError) as error:
        validate_config(cfg)
    assert "speaker_balance" in str(error.value) and "\n" not in str(error.value)


def test_speaker_balance_in_0_to_1_is_accepted():
    cfg = yaml.safe_load((ROOT / "config_lenet5_keywords.yml").read_text())
    for value in (0, 0.5, 1):
        cfg["data_loader"]["args"]["speaker_balance"] = value
        assert validate_config(cfg)["data_loader"]["args"]["speaker_balance"] == value
