"""The synthetic corpus: layout, determinism, speaker-disjoint splits, audio format, atomicity."""
import hashlib
import os
import re
from collections import Counter

import numpy as np
import pytest
import soundfile as sf
import yaml

from data_loader import synthetic
from data_loader.synthetic import __main__ as synthetic_cli, clips, corpus as corpus_building
from data_loader.corpus import scan_corpus
from data_loader.synthetic import KEYWORDS, MARKER, NOISE_FILES, WORDS, generate_corpus, plan_corpus
from utils.errors import UserError

N = 200


def _hashes(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _speaker(rel):
    return rel.split("/")[1].split("_nohash_")[0]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "kws"
    summary = generate_corpus(root, n_clips=N, seed=0, progress=False, workers=1)
    return root, summary


def test_layout_and_counts(corpus):
    root, summary = corpus
    assert summary["clips"] == N and not summary["reused"]
    assert summary["keywords"] == {"one": 20, "two": 20, "three": 20}
    assert summary["unknown"] == 140
    wavs = sorted(root.glob("*/*.wav"))
    clips = [p for p in wavs if p.parent.name != "_background_noise_"]
    assert len(clips) == N
    assert {p.parent.name for p in clips} == set(WORDS)  # every word occurs even at 200 clips
    assert all(re.fullmatch(r"[0-9a-f]{8}_nohash_\d+\.wav", p.name) for p in clips)
    counts = Counter(p.parent.name for p in clips)
    assert {w: counts[w] for w in KEYWORDS} == summary["keywords"]
    assert (root / "validation_list.txt").is_file() and (root / "testing_list.txt").is_file()
    assert (root / "README.md").read_text().startswith("# Synthetic keyword corpus (not real speech)")
    umask = os.umask(0)
    os.umask(umask)
    assert (root.stat().st_mode & 0o777) == 0o777 & ~umask  # not mkdtemp's private 0700
    assert ((root / "validation_list.txt").stat().st_mode & 0o777) == 0o666 & ~umask
    marker = yaml.safe_load((root / MARKER).read_text())
    assert marker["n_clips"] == N and marker["seed"] == 0 and marker["summary"]["clips"] == N


def test_background_noise_recordings(corpus):
    root, _ = corpus
    noise = sorted((root / "_background_noise_").glob("*.wav"))
    assert [p.stem for p in noise] == sorted(name for name, _ in NOISE_FILES)
    for p in noise:
        info = sf.info(str(p))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert 30 <= info.duration <= 60
        assert np.abs(sf.read(str(p), dtype="int16")[0]).max() > 1000


def test_every_clip_is_one_second_16k_int16_mono_with_a_word_in_it(corpus):
    root, _ = corpus
    dynamic = []
    for p in root.glob("*/*.wav"):
        if p.parent.name == "_background_noise_":
            continue
        info = sf.info(str(p))
        assert (info.samplerate, info.channels, info.subtype, info.frames) == (16000, 1, "PCM_16", 16000)
        x = sf.read(str(p), dtype="float32")[0]
        frames = np.sqrt((x[: 16000 // 320 * 320].reshape(-1, 320) ** 2).mean(axis=1)) + 1e-9
        dynamic.append(20 * np.log10(np.percentile(frames, 95) / np.percentile(frames, 10)))
    # the word stands out of the background in most clips (some are mixed at 8-15 dB SNR)
    assert np.mean(np.array(dynamic) > 10) > 0.8
    assert np.mean(np.array(dynamic) > 3) > 0.97


def test_splits_are_speaker_disjoint_and_about_ten_percent(corpus):
    root, summary = corpus
    validation = (root / "validation_list.txt").read_text().split()
    testing = (root / "testing_list.txt").read_text().split()
    everything = {f"{p.parent.name}/{p.name}" for p in root.glob("*/*.wav")
                  if p.parent.name != "_background_noise_"}
    assert set(validation) <= everything and set(testing) <= everything
    training = everything - set(validation) - set(testing)
    speakers = [{_speaker(r) for r in split} for split in (training, validation, testing)]
    assert not speakers[0] & speakers[1] and not speakers[0] & speakers[2] and not speakers[1] & speakers[2]
    n_speakers = round(N / synthetic.CLIPS_PER_SPEAKER)
    assert sum(len(s) for s in speakers) == n_speakers == summary["speakers"]
    assert len(speakers[1]) == len(speakers[2]) == round(0.1 * n_speakers)
    assert 0.08 <= len(validation) / N <= 0.15 and 0.08 <= len(testing) / N <= 0.15
    assert summary["splits"]["validation"]["clips"] == len(validation)
    # the project's corpus reader sees the same split
    scanned = scan_corpus(root)
    assert len(scanned.clips["validation"]) == len(validation) and len(scanned.clips["test"]) == len(testing)
    assert len(scanned.noise_files) == len(NOISE_FILES)


def test_same_seed_same_bytes_whatever_the_workers_other_seed_differs(corpus, tmp_path, monkeypatch):
    root, _ = corpus
    again = tmp_path / "again"
    generate_corpus(again, n_clips=N, seed=0, progress=False, workers=2)  # the process-pool path
    assert _hashes(again) == _hashes(root)
    other = tmp_path / "other"
    monkeypatch.setattr(synthetic, "NOISE_FILES", (("white_noise", 2),))  # quicker
    generate_corpus(other, n_clips=60, seed=1, progress=False)
    a, b = _hashes(root), _hashes(other)
    clips_a = {k: v for k, v in a.items() if k.endswith(".wav")}
    clips_b = {k: v for k, v in b.items() if k.endswith(".wav")}
    assert not set(clips_a.values()) & set(clips_b.values())


def test_plan_balance_follows_keyword_fraction():
    plan = plan_corpus(1000, seed=3, keyword_fraction=0.5)
    words = Counter(p[1] for p in plan)
    assert [words[w] for w in KEYWORDS] == [167, 167, 166]
    assert sum(words.values()) == 1000
    confusable, plain = words["tea"], words["four"]
    assert confusable > plain  # words sharing sounds with keywords are over-represented
    assert plan == plan_corpus(1000, seed=3, keyword_fraction=0.5)


def test_complete_corpus_is_left_alone(corpus, capsys):
    root, _ = corpus
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    summary = generate_corpus(root, n_clips=N, seed=0, progress=False)
    assert summary["reused"] and summary["clips"] == N
    synthetic_cli.main(["--out", str(root), "--clips", str(N), "--no-progress"])
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and line.startswith(f"reused synthetic corpus {root}: {N} clips (one 20, two 20")
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before


def test_corpus_of_another_generator_version_is_not_reused(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    (old / "one").mkdir()
    marker = {"generator_version": synthetic.GENERATOR_VERSION - 1, "n_clips": 60, "seed": 0,
              "summary": {"clips": 60}}
    (old / MARKER).write_text(yaml.safe_dump(marker))
    with pytest.raises(UserError, match="version"):
        generate_corpus(old, n_clips=60, seed=0, progress=False)
    assert sorted(p.name for p in old.iterdir()) == [MARKER, "one"]  # left as it was


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    done = []
    real = clips.render_task

    def flaky(task):
        if len(done) == 25:
            raise KeyboardInterrupt
        done.append(task)
        return real(task)

    monkeypatch.setattr(clips, "render_task", flaky)
    monkeypatch.setattr(corpus_building, "NOISE_FILES", (("white_noise", 2),))  # quicker, same path
    root = tmp_path / "kws"
    with pytest.raises(KeyboardInterrupt):
        generate_corpus(root, n_clips=60, seed=0, progress=False, workers=1)
    assert len(done) == 25
    assert list(tmp_path.iterdir()) == []  # neither the corpus nor its build folder


def test_stale_build_folders_of_dead_runs_are_found(tmp_path):
    root = tmp_path / "kws"
    dead = tmp_path / ".kws.partial-999999999-abc_12"
    alive = tmp_path / f".kws.partial-{os.getpid()}-xyz"
    dead.mkdir()
    alive.mkdir()
    assert list(corpus_building._stale_partials(root)) == [dead]


def test_bad_arguments_and_occupied_folder(tmp_path):
    with pytest.raises(UserError, match="--clips"):
        generate_corpus(tmp_path / "a", n_clips=5)
    with pytest.raises(UserError, match="keyword fraction"):
        generate_corpus(tmp_path / "a", n_clips=100, keyword_fraction=1.5)
    occupied = tmp_path / "mine"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not a complete synthetic corpus"):
        generate_corpus(occupied, n_clips=100)
    assert (occupied / "notes.txt").read_text() == "keep me"
