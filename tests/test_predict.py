"""predict.py: clips of any sample rate, and keyword detection in a long recording built from
real test-split clips with background noise between them, with a model trained here."""
import re

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
import yaml

from conftest import pinned_recipe_config, run_dirs
from conftest import run_script as run
from data_loader.audio import fit_length, read_wave
from deploy.compact import compact_model
from app.detection import (DetectorSettings, KeywordClassifier, find_detections, load_audio,
                              predict_files, smooth_posteriors, windows)
from app.export_bundle import compact_checkpoint
from fixedpoint.fixed_point import integer_length
from optimization.range_analysis import collect_ranges
from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.errors import UserError
from app.restore import data_for_checkpoint, normalization_of, restore_model

SR = 16000
NAMES = ("unknown", "one", "two", "three")
TOLERANCE_S = 0.5
NOISE_GAIN = 0.1          # background noise between the words, about -20 dB full scale
PRUNED = {"conv1": [6], "conv2": [2], "fc3": list(range(1, 64, 4))}


# ---- windowing and detection logic, on hand-made posteriors -------------------------------------

def test_windows_cover_the_recording_with_zero_padded_tail():
    wave = np.arange(1, 36001, dtype=np.float32)       # 2.25 s at 16 kHz
    starts, views = windows(wave, 16000, 1600)
    assert starts.tolist() == [1600 * i for i in range(14)]   # last window 20800..36800 covers the end
    assert views.shape == (14, 16000)
    assert np.array_equal(views[3], wave[4800:20800])
    assert np.array_equal(views[-1][:15200], wave[20800:]) and not views[-1][15200:].any()
    starts, views = windows(wave[:16000], 16000, 1600)
    assert starts.tolist() == [0] and np.array_equal(views[0], wave[:16000])


def test_smoothing_is_a_centred_average_that_shrinks_at_the_ends():
    p = np.array([[0.0, 1.0], [0.0, 0.0], [3.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(smooth_posteriors(p, 3), [[0, 0.5], [1, 1 / 3], [1, 0], [1.5, 0]])
    assert smooth_posteriors(p, 1) is p
    assert [DetectorSettings(smooth_ms=ms).smooth_windows for ms in (0, 100, 200, 300, 500)] == [1, 1, 3, 3, 5]


def _posteriors(events, n=60):
    """(n, 4) posteriors: class 0 everywhere except (window, class, probability) events."""
    p = np.zeros((n, 4))
    p[:, 0] = 1.0
    for i, label, prob in events:
        p[i] = (1 - prob) / 3
        p[i, label] = prob
    return p


def test_one_word_gives_one_detection_at_its_peak():
    starts = np.arange(60) / 10
    settings = DetectorSettings(smooth_ms=0, threshold=0.5, refractory_ms=1000)
    # a word seen by windows 10..14 (peak at 12), a second keyword winning two neighbouring
    # windows (suppressed: within the refractory period), and a dip that splits one run in two
    p = _posteriors([(10, 1, 0.6), (11, 1, 0.8), (12, 1, 0.95), (13, 2, 0.7), (14, 1, 0.6),
                     (30, 3, 0.9), (31, 3, 0.3), (32, 3, 0.8),
                     (50, 2, 0.45)])                   # below threshold: nothing
    dets = find_detections(p, starts, settings, NAMES)
    assert [(d.start_s, d.name, d.score) for d in dets] == [(1.2, "one", 0.95), (3.0, "three", 0.9)]
    # without a refractory period the split run and the neighbour fire as well
    dets = find_detections(p, starts, DetectorSettings(smooth_ms=0, refractory_ms=0), NAMES)
    assert [(d.start_s, d.label) for d in dets] == [(1.2, 1), (1.3, 2), (1.4, 1), (3.0, 3), (3.2, 3)]
    # averaging over 3 windows removes a single-window glitch
    glitch = _posteriors([(20, 2, 0.9)])
    assert find_detections(glitch, starts, DetectorSettings(smooth_ms=0), NAMES)
    assert not find_detections(glitch, starts, DetectorSettings(smooth_ms=300), NAMES)


def test_bad_settings_and_audio_are_user_errors(tmp_path):
    for settings, option in ((DetectorSettings(hop_ms=0), "--hop-ms"), (DetectorSettings(hop_ms=1500), "--hop-ms"),
                             (DetectorSettings(threshold=1.5), "--threshold"),
                             (DetectorSettings(smooth_ms=-1), "--smooth-ms"),
                             (DetectorSettings(refractory_ms=-1), "--refractory-ms")):
        with pytest.raises(UserError, match=option):
            settings.validate(1000.0)
    (tmp_path / "text.wav").write_text("not audio")
    with pytest.raises(UserError, match="cannot read audio file .*text.wav"):
        load_audio(tmp_path / "text.wav", SR)
    with pytest.raises(UserError, match="audio file not found"):
        load_audio(tmp_path / "missing.wav", SR)


# ---- a model trained on the real corpus ---------------------------------------------------------

@pytest.fixture(scope="module")
def trained_ckpt(tmp_path_factory, corpus_dir, cache_dir):
    """train.py on the real corpus with a recipe pinned here that learns the keywords in 20 short
    epochs: batch 32, keywords weighted 4x against the dominant class 0, noise in half the clips.
    On this small corpus the outcome varies with the seed; seed 1 gives a model that knows all
    three keywords (test top-1 about 0.9), so the recording below holds every keyword."""
    tmp = tmp_path_factory.mktemp("predict")
    pinned_recipe_config(tmp, corpus_dir, cache_dir, "predict", seed=1, epochs=20)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")   # 2 cores shared with other runs: threads only contend
        run("train.py", "-c", tmp / "config.yml")
    return run_dirs(tmp / "config.yml", "predict")[-1] / "model_best.pth"


@pytest.fixture(scope="module")
def test_clips(trained_ckpt, corpus_dir):
    """The test split as the data loader gives it: clip paths, labels, normalised features and the
    trained model's class probabilities for each clip on its own."""
    model, ckpt = restore_model(trained_ckpt)
    data = data_for_checkpoint(ckpt, progress=False)
    split = data.split("test")
    inputs = data.eval_loader("test", *normalization_of(ckpt)).inputs
    with torch.no_grad():
        probs = model(inputs).exp().double().numpy()
    return [corpus_dir / name for name in split.names], split.labels.numpy(), inputs, probs


def test_window_features_are_the_training_features(trained_ckpt, test_clips):
    paths, labels, inputs, _ = test_clips
    classifier = KeywordClassifier.from_checkpoint(trained_ckpt)
    rates = set()
    for i in [int(np.flatnonzero(labels == c)[0]) for c in range(4)] + [0, len(paths) - 1]:
        rates.add(sf.info(str(paths[i])).samplerate)
        clip = fit_length(read_wave(paths[i], SR), SR)
        torch.testing.assert_close(classifier.features(clip[None])[0], inputs[i], rtol=0, atol=1e-5)
    assert rates == {8000, 16000}   # both kinds of corpus clips were compared


def test_a_clip_at_any_sample_rate_gives_its_class_and_probabilities(trained_ckpt, test_clips, tmp_path):
    paths, labels, _, probs = test_clips
    i = int(np.argmax(np.where(labels > 0, probs[np.arange(len(labels)), labels], 0)))   # surest keyword
    wave = read_wave(paths[i], SR)
    sf.write(str(tmp_path / "clip44k.wav"), soxr.resample(wave, SR, 44100, quality="HQ"), 44100)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        out = run("predict.py", "-r", trained_ckpt, paths[i], tmp_path / "clip44k.wav").stdout
    lines = out.strip().splitlines()
    assert len(lines) == 2
    for line, tolerance in zip(lines, (0.0015, 0.03)):
        m = re.search(r" s clip -> (\w+) \(p=([\d.]+)\) \| unknown ([\d.]+)  one ([\d.]+)  two ([\d.]+)  "
                      r"three ([\d.]+)$", line)
        assert m, line
        printed = np.array([float(v) for v in m.groups()[2:]])
        assert m.group(1) == NAMES[labels[i]] and float(m.group(2)) == printed[labels[i]]
        np.testing.assert_allclose(printed, probs[i], atol=tolerance)


@pytest.fixture(scope="module")
def recording(test_clips, corpus_dir, tmp_path_factory):
    """About 30 s of audio: six keyword clips of the test split (taken in turn from each keyword
    the model knows) and six other words, each classified correctly and confidently on its own, in
    random order, with 0.8-1.6 s of the corpus's background noise (its test region) between them.
    Returns (wav path, [(start s, label)])."""
    paths, labels, _, probs = test_clips
    confident = (probs.argmax(1) == labels) & (probs.max(1) >= np.where(labels == 0, 0.95, 0.8))
    rng = np.random.default_rng(0)
    pools = [list(rng.permutation(np.flatnonzero(confident & (labels == c)))) for c in (1, 2, 3)]
    assert sum(map(len, pools)) >= 6, "the model recognises too few keyword clips"
    picks = []
    while len(picks) < 6:
        picks += [pool.pop() for pool in pools if pool][:6 - len(picks)]
    picks += list(rng.choice(np.flatnonzero(confident & (labels == 0)), 6, replace=False))
    rng.shuffle(picks)
    noise = []
    for path in sorted((corpus_dir / "_background_noise_").glob("*.wav")):
        wave = read_wave(path, SR)
        noise.append(wave[int(0.9 * len(wave)):])
    noise = np.concatenate(noise) * NOISE_GAIN
    parts, truth, at = [], [], 0
    for i in picks:
        gap = int(rng.uniform(0.8, 1.6) * SR)
        parts += [noise[at:at + gap], fit_length(read_wave(paths[i], SR), SR)]
        truth.append((sum(map(len, parts)) / SR - 1.0, int(labels[i])))
        at += gap
    parts.append(noise[at:at + SR])
    path = tmp_path_factory.mktemp("recording") / "words.wav"
    sf.write(str(path), np.concatenate(parts), SR, subtype="PCM_16")
    return path, truth


def test_long_recording_gives_one_detection_per_keyword_at_its_time(trained_ckpt, recording):
    path, truth = recording
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        out = run("predict.py", "-r", trained_ckpt, path, "--threshold", "0.5").stdout
    head, *rows = out.strip().splitlines()
    if rows:
        columns = rows.pop(0)
        assert columns.split()[:3] == ["start", "keyword", "score"] and "window" in columns, columns
    frames = sf.info(str(path)).frames
    n_windows = 1 + -(-(frames - SR) // 1600)
    assert re.match(rf"{re.escape(str(path))}: {frames / SR:.2f} s, {n_windows} windows every 100 ms: "
                    rf"{len(rows)} keyword detection\(s\) at threshold 0.5 \(--threshold\)$", head), head
    detections = []
    for row in rows:
        m = re.fullmatch(r"\s+([\d.]+) s  (\w+)\s+([\d.]+)", row)
        assert m, row
        detections.append((float(m.group(1)), NAMES.index(m.group(2)), float(m.group(3))))
    keywords = [(t, label) for t, label in truth if label > 0]
    matched = set()
    for t, label in keywords:
        hits = [j for j, (s, lab, _) in enumerate(detections) if lab == label and abs(s - t) <= TOLERANCE_S]
        assert len(hits) == 1, f"keyword {NAMES[label]} at {t:.2f} s: detections {detections}"
        matched.add(hits[0])
    extra = [d for j, d in enumerate(detections) if j not in matched]
    # a model trained for 20 short epochs may fire once on one of ~12 other words or noise gaps
    assert len(extra) <= 1, f"extra detections {extra}; words at {truth}"
    assert all(0.5 <= score <= 1.0 for _, _, score in detections)


def test_compact_and_quantized_models_detect_identically(trained_ckpt, test_clips, recording, tmp_path):
    """predict.py's -q (simulated fixed point) with -p on the trained checkpoint gives bit-identical
    posteriors to the compact checkpoint with the same quantization.yml."""
    path, _ = recording
    (tmp_path / "pruning.yml").write_text(yaml.safe_dump({"pruned_filters": PRUNED}))
    masked, ckpt = restore_model(trained_ckpt, None, tmp_path / "pruning.yml")
    ranges = collect_ranges(masked, test_clips[2])
    layers = {name: {"bits_inputs": 8, "bits_weights": 8, "bits_accumulator": 32, "bits_outputs": 8,
                     "il_inputs": integer_length(row["inputs_absmax"]),
                     "il_weights": integer_length(row["weights_absmax"]),
                     "il_outputs": integer_length(row["outputs_absmax"])} for name, row in ranges.items()}
    (tmp_path / "quantization.yml").write_text(yaml.safe_dump({"layers": layers}))
    compact = compact_model(masked)
    save_checkpoint(tmp_path / "compact.pth", compact_checkpoint(ckpt, compact, trained_ckpt))
    files = [path, test_clips[0][0]]
    reference = predict_files(trained_ckpt, files, tmp_path / "quantization.yml", tmp_path / "pruning.yml")[3]
    from_compact = predict_files(tmp_path / "compact.pth", files, tmp_path / "quantization.yml")[3]
    in_float = predict_files(trained_ckpt, files, None, tmp_path / "pruning.yml")[3]
    (_, scan), (_, clip) = reference
    assert np.array_equal(from_compact[0][1].posteriors, scan.posteriors)
    assert from_compact[0][1].detections == scan.detections
    assert np.array_equal(from_compact[1][1].probabilities, clip.probabilities)
    assert not np.array_equal(in_float[0][1].posteriors, scan.posteriors)   # -q really applied
    assert scan.posteriors.shape == (len(scan.starts_s), 4)


def test_missing_audio_is_a_one_line_error(trained_ckpt, recording, tmp_path):
    proc = run("predict.py", "-r", trained_ckpt, recording[0], tmp_path / "missing.wav", check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0] == f"error: audio file not found: {tmp_path / 'missing.wav'}"
    assert proc.stdout == ""   # every file is checked before any result is printed


def test_a_long_recording_is_scanned_at_the_checkpoints_calibrated_threshold(trained_ckpt, recording):
    """Without --threshold, predict.py uses the operating point train.py stored (app.calibration)."""
    stored = load_checkpoint(trained_ckpt).detector
    assert stored is not None and 0 < stored["threshold"] <= 1
    head = run("predict.py", "-r", trained_ckpt, recording[0]).stdout.strip().splitlines()[0]
    assert head.endswith(f"at threshold {stored['threshold']:g} (calibrated for "
                         f"{stored['target_false_alarms_per_hour']:g} false alarm(s)/h on the validation stream)"), head


def test_the_frame_wise_scan_equals_the_per_window_scan_on_the_test_stream(trained_ckpt, corpus_dir):
    """data_loader.frame_features computes each frame once; its windows' posteriors and
    detections must be those of the per-window scan (app.detection.scan_stream) on a built stream."""
    from app.detection import scan_frames, scan_stream
    from app.stream_test import split_stream
    from data_loader.stream import render_blocks
    classifier = KeywordClassifier.from_checkpoint(trained_ckpt)
    plan = split_stream(classifier, classifier.ckpt, corpus_dir, "test", 0.01, 0)
    settings = DetectorSettings(threshold=0.3)
    frames = scan_frames(classifier, render_blocks(plan), settings)
    windows_ = scan_stream(classifier, render_blocks(plan), settings)
    assert len(frames.starts_s) == len(windows_.starts_s) > 3000
    np.testing.assert_array_equal(frames.starts_s, windows_.starts_s)
    assert np.abs(frames.posteriors - windows_.posteriors).max() < 1e-5
    assert len(frames.detections) >= 20
    assert [(d.start_s, d.name) for d in frames.detections] == [(d.start_s, d.name) for d in windows_.detections]
