"""Corpus indexing, feature cache, noise clips, corrupt files and the in-memory loader."""
import logging

import pytest
import soundfile as sf
import numpy as np
import torch

from data_loader.corpus import scan_corpus
from data_loader.data_loaders import InMemoryLoader, SpeechCommandsDataLoader
from data_loader.dataset import load_split
from data_loader.features import FeatureParams
from utils.errors import UserError


def test_scan_real_corpus(corpus_dir):
    c = scan_corpus(corpus_dir)
    sizes = {s: len(v) for s, v in c.clips.items()}
    assert sizes == {"train": 3399, "validation": 811, "test": 806}
    assert sum(sizes.values()) == 5016
    labels = [label for _, label in c.clips["test"]]
    assert [labels.count(k) for k in range(4)] == [645, 53, 52, 56]
    assert len(c.noise_files) == 6


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(UserError, match="does not exist.*--data-dir"):
        scan_corpus(tmp_path / "nope")
    with pytest.raises(UserError, match="no word folders"):
        scan_corpus(tmp_path)


def _tiny_corpus(root, n_per_word=3, rate=16000):
    rng = np.random.default_rng(0)
    for w in ("one", "two", "cat"):
        (root / w).mkdir(parents=True)
        for i in range(n_per_word):
            sf.write(root / w / f"s{i}_nohash_0.wav", (0.1 * rng.standard_normal(rate // 2)).astype(np.float32),
                     rate, subtype="PCM_16")
    (root / "validation_list.txt").write_text("one/s0_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("two/s1_nohash_0.wav\n")
    return root


def test_cache_is_reused_and_rebuilt_on_change(tmp_path):
    root = _tiny_corpus(tmp_path / "c")
    cache = tmp_path / "cache"
    c = scan_corpus(root, ("one", "two", "three"))
    a, _ = load_split(c, "train", FeatureParams(), cache_dir=cache, progress=False)
    files = list(cache.glob("train-*.pt"))
    assert len(files) == 1 and len(a) == 7
    b, _ = load_split(c, "train", FeatureParams(), cache_dir=cache, progress=False)
    torch.testing.assert_close(a.mel, b.mel)
    assert list(cache.glob("train-*.pt")) == files
    load_split(c, "train", FeatureParams(n_mels=32), cache_dir=cache, progress=False)
    assert len(list(cache.glob("train-*.pt"))) == 2          # changed parameters: new cache
    sf.write(root / "cat" / "s9_nohash_0.wav", np.zeros(800, np.float32), 16000, subtype="PCM_16")
    c2 = scan_corpus(root, ("one", "two", "three"))
    d, _ = load_split(c2, "train", FeatureParams(), cache_dir=cache, progress=False)
    assert len(d) == 8                                         # changed corpus: rebuilt


def test_corrupt_wav_is_skipped_with_a_warning(tmp_path, caplog):
    root = _tiny_corpus(tmp_path / "c")
    (root / "cat" / "broken_nohash_0.wav").write_bytes(b"RIFFnot really a wave file")
    c = scan_corpus(root)
    with caplog.at_level(logging.WARNING):
        data, _ = load_split(c, "train", FeatureParams(), cache_dir=tmp_path / "cache", progress=False)
    assert data.skipped == ["cat/broken_nohash_0.wav"]
    assert len(data) == 7
    assert sum("broken_nohash_0.wav" in r.getMessage() for r in caplog.records) == 1


def test_empty_split_is_an_error(tmp_path):
    root = _tiny_corpus(tmp_path / "c")
    (root / "testing_list.txt").write_text("")
    c = scan_corpus(root)
    with pytest.raises(UserError, match="test split .* is empty"):
        load_split(c, "test", FeatureParams(), cache_dir=tmp_path / "cache", progress=False)


def test_real_corpus_splits_noise_clips_and_cached_reload(corpus_dir, cache_dir, monkeypatch):
    data = SpeechCommandsDataLoader(corpus_dir, background_noise={"train": 300}, cache_dir=cache_dir,
                                    progress=False)
    train = data.split("train")
    assert len(train) == 3399 + 300
    assert train.mel.shape[1:] == (40, 100)
    assert sum(n.startswith("noise:") for n in train.names) == 300
    assert train.labels.bincount().tolist() == [2905 + 300, 165, 165, 164]
    again = SpeechCommandsDataLoader(corpus_dir, background_noise={"train": 300}, cache_dir=cache_dir,
                                     progress=False)

    def no_audio(*args):
        raise AssertionError("an unchanged corpus must load from the cache, not from audio")
    monkeypatch.setattr("data_loader.dataset.read_wave", no_audio)
    reloaded = again.split("train")
    torch.testing.assert_close(reloaded.mel, train.mel)
    assert reloaded.names == train.names


def test_loader_epochs_are_permutations_and_deterministic():
    mel = torch.rand(10, 40, 100)
    labels = torch.arange(10)
    ident = lambda m: m[:, None, :, :13]  # noqa: E731
    loader = InMemoryLoader(mel, labels, ident, batch_size=4, shuffle=True, seed=3)
    loader.set_epoch(1)
    first = torch.cat([y for _, y in loader])
    assert sorted(first.tolist()) == list(range(10))
    assert len(loader) == 3
    loader.set_epoch(1)
    assert torch.equal(torch.cat([y for _, y in loader]), first)
    loader.set_epoch(2)
    assert not torch.equal(torch.cat([y for _, y in loader]), first)
    shards = [InMemoryLoader(mel, labels, ident, 4, shuffle=True, seed=3, rank=r, world_size=2) for r in (0, 1)]
    for s in shards:
        s.set_epoch(1)
    got = [torch.cat([y for _, y in s]) for s in shards]
    assert sorted(torch.cat(got).tolist()) == list(range(10)) and len(got[0]) == 5


def test_normalize_false_feeds_the_raw_mfccs_as_the_labs_code_does(corpus_dir, cache_dir):
    from data_loader.features import MfccFromMel
    raw = SpeechCommandsDataLoader(corpus_dir, cache_dir=cache_dir, progress=False, normalize=False)
    mean, std = raw.normalization()
    assert mean.tolist() == [0.0] * 13 and std.tolist() == [1.0] * 13
    x, _ = next(iter(raw.eval_loader("validation", mean, std)))
    mel = raw.split("validation").mel[:len(x)]
    torch.testing.assert_close(x, MfccFromMel(raw.features)(mel))
    assert float(x[:, :, :, 0].mean()) < -100   # c0 of the raw MFCCs: tens of dB below zero
    # the default normalises per coefficient with the training split's statistics
    norm = SpeechCommandsDataLoader(corpus_dir, cache_dir=cache_dir, progress=False)
    mean, std = norm.normalization()
    assert float(mean[0]) < -100 and float(std[0]) > 10
    c0 = torch.cat([x[:, :, :, 0].flatten() for x, _ in norm.eval_loader("train", mean, std)])
    assert abs(float(c0.mean())) < 1e-3 and float(c0.std()) == pytest.approx(1.0, abs=1e-3)


def _loader_inputs(data, mean, std, mfcc):
    from data_loader.data_loaders import FeatureTransform
    transform = FeatureTransform(FeatureParams(), mean, std)
    return InMemoryLoader(data.mel.clone(), data.labels, transform, 4, mfcc=mfcc).inputs


@pytest.mark.parametrize("normalise", [False, True])
def test_cached_mfccs_give_the_inputs_converting_the_mel_spectra_gives(tmp_path, normalise):
    from data_loader.dataset import mfcc_of
    root = _tiny_corpus(tmp_path / "c", n_per_word=250)       # 500+ clips: more than one 512-row chunk
    c = scan_corpus(root, ("one", "two", "three"))
    built, _ = load_split(c, "train", FeatureParams(), cache_dir=tmp_path / "cache", progress=False)
    loaded, _ = load_split(c, "train", FeatureParams(), cache_dir=tmp_path / "cache", progress=False)
    assert len(loaded) > 512
    assert torch.equal(loaded.mfcc, mfcc_of(loaded.mel, FeatureParams()))
    assert torch.equal(loaded.mfcc, built.mfcc) and loaded.mfcc.shape == (len(loaded), 1, 100, 13)
    mean, std = (torch.linspace(-300, 10, 13), torch.linspace(90, 2, 13)) if normalise else (torch.zeros(13), torch.ones(13))
    from_mel = _loader_inputs(loaded, mean, std, None)
    from_mfcc = _loader_inputs(loaded, mean, std, loaded.mfcc)
    assert torch.equal(from_mfcc, from_mel)                    # bit for bit: the same chunks, the same ops
    assert (from_mfcc is loaded.mfcc) == (not normalise)       # raw MFCCs are used as they are, no copy


def test_a_cache_written_before_mfccs_were_stored_gets_them_on_its_next_load(tmp_path):
    root = _tiny_corpus(tmp_path / "c")
    c = scan_corpus(root, ("one", "two", "three"))
    cache = tmp_path / "cache"
    data, _ = load_split(c, "train", FeatureParams(), cache_dir=cache, progress=False)
    path, = cache.glob("train-*.pt")
    blob = torch.load(path, weights_only=True)
    del blob["mfcc"]
    torch.save(blob, path)                                      # the format of earlier versions
    old, _ = load_split(c, "train", FeatureParams(), cache_dir=cache, progress=False)
    assert torch.equal(old.mel, data.mel) and torch.equal(old.mfcc, data.mfcc)
    assert torch.equal(torch.load(path, weights_only=True)["mfcc"], data.mfcc)   # the file got them, once
    assert list(cache.glob("*")) == [path]


def test_a_cache_folder_that_cannot_be_written_costs_a_warning_not_the_run(tmp_path, caplog):
    root = _tiny_corpus(tmp_path / "c")
    c = scan_corpus(root, ("one", "two", "three"))
    blocked = tmp_path / "not_a_folder"
    blocked.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING):
        data, _ = load_split(c, "train", FeatureParams(), cache_dir=blocked, progress=False)
    assert len(data) == 7 and data.mfcc.shape == (7, 1, 100, 13)
    assert "cannot write the feature cache" in caplog.text and blocked.read_text().startswith("a file")
