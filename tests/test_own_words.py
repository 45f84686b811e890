"""The Speech Commands 12-class task (silence and unknown classes) and a folder of one's own
recordings without split lists (issue 26). The folders are built in tmp_path from a few of the
shared corpus's files; nothing is written into the repository or into the user's folder."""
import hashlib
import re
import shutil
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from conftest import CORPUS, ROOT, run_script
from tiny import assert_unchanged, snapshot

from app.detection import find_detections
from app.testing import confusion_table, format_confusion
from configuration.schema import validate_config
from data_loader.corpus import SPLITS, class_names, scan_corpus, split_by_hash
from data_loader.data_loaders import SpeechCommandsDataLoader
from utils.errors import UserError

FEATURES = {"win_length": 480, "hop_length": 320, "frames": 49, "n_mfcc": 10, "n_mels": 40, "fmin": 20,
            "fmax": 4000}


def own_folder(dest, words=(("yes", 40), ("no", 40), ("bed", 13), ("cat", 13)), noise=True):
    """``dest``: ``<word>/*.wav`` (the first ``n`` clips of each word of the shared corpus, named
    as a user's recordings: two clips a speaker, ``userNN_nohash_K.wav``), no split lists, and
    optionally one background-noise recording. (The shared corpus's own names would not do: its
    Speech Commands clips come from the official test set, whose speakers all hash to test.)"""
    dest = Path(dest)
    for word, n in words:
        (dest / word).mkdir(parents=True)
        for i, wav in enumerate(sorted((CORPUS / word).glob("*.wav"))[:n]):
            shutil.copyfile(wav, dest / word / f"user{i // 2:02d}_nohash_{i % 2}.wav")
    if noise:
        (dest / "_background_noise_").mkdir()
        shutil.copyfile(CORPUS / "_background_noise_" / "white_noise.wav", dest / "_background_noise_" / "white.wav")
    return dest


def test_hash_rule_is_speech_commands():
    """input_data.which_set of Speech Commands: SHA-1 of the name without _nohash_..., 10% / 10%."""
    def reference(name):
        base = re.sub(r"_nohash_.*$", "", name.rsplit("/", 1)[-1])
        percent = (int(hashlib.sha1(base.encode()).hexdigest(), 16) % 2 ** 27) * (100.0 / (2 ** 27 - 1))
        return "validation" if percent < 10 else "test" if percent < 20 else "train"
    names = [f"w{i % 7}/{hashlib.md5(str(i).encode()).hexdigest()[:8]}_nohash_{i % 5}.wav" for i in range(3000)]
    assert [split_by_hash(n) for n in names] == [reference(n) for n in names]
    counts = Counter(split_by_hash(n) for n in names)
    assert 0.08 < counts["validation"] / 3000 < 0.12 and 0.08 < counts["test"] / 3000 < 0.12
    # a speaker's clips stay together, whatever the word; without _nohash_ the whole name counts
    assert len({split_by_hash(f"{w}/0a1b2c3d_nohash_{k}.wav") for w in ("yes", "no") for k in range(5)}) == 1
    assert split_by_hash("yes/take1.wav") == reference("take1.wav") == split_by_hash("no/take1.wav")


def test_hash_rule_agrees_with_the_official_test_list():
    """The shared corpus's Speech Commands clips are mostly from the official v0.02 test set
    (about 2,200 clips), which Speech Commands' lists put in test by this very rule."""
    names = [rel for split in SPLITS for rel, _ in scan_corpus(CORPUS, ()).clips[split] if "/fsdd" not in rel]
    assert len(names) == 2516
    assert 2200 <= Counter(split_by_hash(n) for n in names)["test"] < 2516


def test_own_folder_is_split_reported_and_left_untouched(tmp_path, capsys):
    user = own_folder(tmp_path / "mine")
    before = snapshot(user)
    cache = tmp_path / "cache"
    corpus = scan_corpus(user, ("yes", "no"), split_dir=cache)
    assert_unchanged(before, snapshot(user))
    assert not (user / "validation_list.txt").exists() and not (user / "testing_list.txt").exists()
    lists = sorted((cache / "splits").rglob("*.txt"))
    assert [p.name for p in lists] == ["testing_list.txt", "validation_list.txt"]
    for split in SPLITS:
        assert corpus.clips[split], split
        assert all(split_by_hash(rel) == split for rel, _ in corpus.clips[split])
    listed = set(lists[1].read_text().split())
    assert listed == {rel for rel, _ in corpus.clips["validation"]}
    report = capsys.readouterr().out
    counts = Counter((rel.split("/")[0], split) for split in SPLITS for rel, _ in corpus.clips[split])
    line = next(li for li in report.splitlines() if li.split()[:1] == ["yes"])
    assert line.split()[1:] == [str(counts["yes", s]) for s in SPLITS]
    assert str(lists[0].parent) in report


def test_twelve_class_layout_on_own_folder(tmp_path):
    """unknown (class 0) sampled to a keyword's mean count, silence (last) from the noise."""
    user = own_folder(tmp_path / "mine")
    loader = SpeechCommandsDataLoader(user, keywords=("yes", "no"), cache_dir=str(tmp_path / "cache"),
                                      features=FEATURES, progress=False, augment={"enabled": False},
                                      task={"silence_share": 1.0, "unknown_share": 0.5})
    assert loader.class_names == ("unknown", "yes", "no", "silence") == class_names(("yes", "no"), True)
    every = scan_corpus(user, ("yes", "no"), split_dir=tmp_path / "cache").clips
    for split in SPLITS:
        data = loader.split(split)
        labels = Counter(data.labels.tolist())
        mean = (labels[1] + labels[2]) / 2
        assert labels[3] == round(mean)
        assert labels[0] == min(round(0.5 * mean), sum(1 for _, label in every[split] if label == 0))
        silence = [n for n, lab in zip(data.names, data.labels.tolist()) if lab == 3]
        assert all(n.startswith("noise:_background_noise_/white.wav@") for n in silence)
        assert data.mfcc.shape[1:] == (1, 49, 10)
    train = loader.split("train")
    quiet = [bool(m.eq(0).all()) for m, lab in zip(train.mel, train.labels.tolist()) if lab == 3]
    assert sum(quiet) == -(-len(quiet) // 10)  # every tenth silence clip is digital silence


def test_twelve_class_config_on_the_shared_corpus():
    cfg = validate_config(yaml.safe_load((ROOT / "config_dscnn_sc12.yml").read_text()))
    assert cfg["arch"]["args"]["num_classes"] == 12
    assert cfg["data_loader"]["args"]["keywords"] == ["yes", "no", "up", "down", "left", "right", "on", "off",
                                                      "stop", "go"]
    lenet = validate_config(yaml.safe_load((ROOT / "config_lenet5_sc12.yml").read_text()))
    assert lenet["data_loader"]["args"]["task"] == cfg["data_loader"]["args"]["task"]


@pytest.mark.parametrize("keywords, task, message", [
    (["silence", "yes"], {"silence_share": 1.0}, "names 'silence', which is a class of its own"),
    (["yes", "unknown"], None, "names 'unknown', which is a class of its own"),
    ([True, "up"], None, "quote them"),
])
def test_schema_refuses_reserved_and_yaml_boolean_keywords(keywords, task, message):
    cfg = yaml.safe_load((ROOT / "config_dscnn_sc12.yml").read_text())
    cfg["data_loader"]["args"].update(keywords=keywords, task=task)
    cfg["arch"]["args"]["num_classes"] = 4
    with pytest.raises(UserError, match=message):
        validate_config(cfg)


def test_confusion_of_many_classes_names_its_rows():
    names = class_names(("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"), True)
    cm = torch.eye(12, dtype=torch.int64) * 3
    cm[11, 0] = 1
    lines = format_confusion(confusion_table(cm), names).splitlines()
    assert lines[2].split()[:3] == ["0", "unknown", "3"]
    assert lines[13].split() == ["11", "silence", "1"] + ["0"] * 10 + ["3", "4"]
    assert lines[14].split()[0] == "All"
    # the lab's four classes keep the lab's crosstab (numbered rows only)
    assert format_confusion(confusion_table(torch.eye(4, dtype=torch.int64)), class_names(("a", "b", "c"))) \
        .splitlines()[2].split()[0] == "0"


def _config(tmp_path, user, keywords, task, num_classes):
    cfg = yaml.safe_load((ROOT / "config_lenet5_sc12.yml").read_text())
    cfg["name"] = "own"
    cfg["arch"]["args"]["num_classes"] = num_classes
    cfg["data_loader"]["args"].update(data_dir=str(user), download=None, keywords=keywords, task=task,
                                      cache_dir=str(tmp_path / "cache"), batch_size=16, features=FEATURES)
    cfg["lr_scheduler"]["args"]["T_max"] = 1
    cfg["trainer"].update(save_dir=str(tmp_path / "saved"), epochs=1, tensorboard=False)
    path = tmp_path / "own.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("words, noise, keywords, task, classes, message", [
    ((("yes", 40), ("no", 40)), True, ["yes", "zzz"], None, 3, "keyword 'zzz' has no folder"),
    ((("yes", 40), ("no", 40)), False, ["yes", "no"], {"silence_share": 1.0}, 4,
     "silence_share is 1.0 but .* has no _background_noise_"),
    ((("yes", 40),), True, ["yes"], None, 2, "holds one word folder \\(yes\\) only"),
    ((("yes", 40), ("no", 2)), True, ["yes", "no"], None, 3,
     "keyword 'no' has 2 clip\\(s\\) .* none falls in the (validation|test) split.* at least"),
    ((("yes", 40), ("no", 40)), True, ["yes", "silence"], None, 3, "names 'silence'"),
])
def test_bad_own_folder_is_one_line_exit_1_nothing_written(tmp_path, words, noise, keywords, task, classes,
                                                             message):
    user = own_folder(tmp_path / "mine", words, noise)
    before = snapshot(user)
    proc = run_script("train.py", "-c", _config(tmp_path, user, keywords, task, classes), check=False)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    errors = [li for li in proc.stderr.splitlines() if li.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    assert re.search(message, errors[0]), errors[0]
    assert_unchanged(before, snapshot(user))
    assert not list((tmp_path / "saved" / "models").rglob("*.pth")) if (tmp_path / "saved").exists() else True
    runs = tmp_path / "saved" / "models" / "own"
    assert not runs.exists() or not any(runs.iterdir())


def test_own_words_chain_follows_the_class_list(tmp_path):
    """train -> test (per-class report, PNG) -> quantize -> export: every stage takes the classes
    (unknown, the keywords, silence) from the checkpoint."""
    user = own_folder(tmp_path / "mine")
    run_script("train.py", "-c", _config(tmp_path, user, ["yes", "no"], {"silence_share": 1.0}, 4))
    run_dir = next((tmp_path / "saved" / "models" / "own").iterdir())
    best = run_dir / "model_best.pth"
    ckpt = torch.load(best, weights_only=True)
    assert ckpt["class_names"] == ["unknown", "yes", "no", "silence"] and ckpt["keywords"] == ["yes", "no"]
    out = run_script("test.py", "-r", best).stdout
    assert re.search(r"^\s+3 silence\s+recall", out, re.M)
    report = yaml.safe_load((run_dir / "model_best-test-float.yml").read_text())
    assert list(report["recall"]) == ["unknown", "yes", "no", "silence"]
    assert (run_dir / "model_best-test-float.png").read_bytes()[:4] == b"\x89PNG"
    run_script("quantize.py", "-r", best)
    bundle = tmp_path / "bundle"
    run_script("export.py", "-r", best, "-q", run_dir / "quantization.yml", "-o", bundle)
    header = (bundle / "model.h").read_text()
    assert '#define KWS_CLASS_NAMES {"unknown", "yes", "no", "silence"}' in header
    assert "#define KWS_N_CLASSES 4" in header
    assert yaml.safe_load((bundle / "export.yml").read_text())["class_names"] == ["unknown", "yes", "no", "silence"]
    # a checkpoint whose class list does not fit its keywords and outputs is refused, one line
    ckpt["class_names"] = ["unknown", "no", "yes", "silence"]
    forged = tmp_path / "forged.pth"
    torch.save(ckpt, forged)
    proc = run_script("test.py", "-r", forged, check=False)
    assert proc.returncode == 1 and proc.stderr.strip().startswith("error: ")
    assert "class_names must be the 4 classes, the keywords from index 1" in proc.stderr


def test_lab_task_is_unchanged_by_the_task_settings(tmp_path):
    """The 4-class lab config reads the same clips, labels and noise as scan_corpus gives (no
    task block: no sampling, no silence class), so its numbers do not move."""
    cfg = validate_config(yaml.safe_load((ROOT / "config_lenet5_keywords.yml").read_text()))
    args = {**cfg["data_loader"]["args"], "data_dir": str(CORPUS), "download": None,
            "cache_dir": str(tmp_path / "cache")}
    loader = SpeechCommandsDataLoader(**args, progress=False)
    assert loader.corpus.clips == scan_corpus(CORPUS, ("one", "two", "three")).clips
    assert loader.noise_clips == {"train": 300, "validation": 0, "test": 0}
    assert loader.class_names == ("unknown", "one", "two", "three") and loader.quiet_fraction == 0.0
    assert not (tmp_path / "cache").exists()  # a corpus with lists: no split lists are written


def test_detector_never_fires_on_silence():
    posteriors = np.zeros((6, 3))
    posteriors[:, 0] = 1.0
    posteriors[1:3] = [0.0, 0.0, 1.0]   # silence
    posteriors[4] = [0.0, 1.0, 0.0]     # the keyword
    settings = SimpleNamespace(smooth_windows=1, threshold=0.5, refractory_ms=0)
    found = find_detections(posteriors, np.arange(6) * 0.1, settings, ("unknown", "yes", "silence"))
    assert [(d.name, d.start_s) for d in found] == [("yes", 0.4)]
