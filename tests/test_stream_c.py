"""A quantized model on the integer front end in a stream: predict.py's scan computes every
window's integer MFCCs frame by frame once (data_loader.integer_frontend.StreamFrames), runs the
integer engine and the integer detector (model.detector), and these are exactly the per-window
integer pipeline's numbers on a stream built from real corpus clips."""
import subprocess

import numpy as np
import pytest

from app.detection import KeywordClassifier, DetectorSettings, scan_frames, scan_stream
from app.stream_test import split_stream
from data_loader.stream import render_blocks
from model.detector import integer_detections, integer_posteriors, integer_smooth, threshold_code
from conftest import GCC
from tiny import quantized_tiny_run


@pytest.fixture(scope="module")
def integer_run(tmp_path_factory):
    """(corpus, run folder) of a 2-epoch integer-frontend run quantized to 8 bits."""
    corpus, _, run_dir = quantized_tiny_run(tmp_path_factory.mktemp("stream_c"),
                                            base="config_lenet5_keywords_integer.yml")
    return corpus, run_dir


@pytest.fixture(scope="module")
def stream(integer_run):
    corpus, run_dir = integer_run
    classifier = KeywordClassifier.from_checkpoint(run_dir / "model_best.pth", run_dir / "quantization.yml")
    plan = split_stream(classifier, classifier.ckpt, corpus, "test", 0.01, 0)
    return classifier, plan


@pytest.fixture(scope="module")
def unclamped_stream(integer_run, tmp_path_factory):
    """The stream fixture's run with the features' top_db clamp turned off (``features: {top_db:
    null}``) in a copy of its checkpoint: each frame's input codes then depend on that frame alone,
    and stream.c keeps codes, not log energies, in its ring."""
    from dataclasses import replace
    from utils.checkpoint import load_checkpoint, save_checkpoint
    corpus, run_dir = integer_run
    ckpt = load_checkpoint(run_dir / "model_best.pth")
    assert ckpt.features["top_db"] is not None
    path = tmp_path_factory.mktemp("unclamped") / "model_best.pth"
    save_checkpoint(path, replace(ckpt, features={**ckpt.features, "top_db": None}))
    classifier = KeywordClassifier.from_checkpoint(path, run_dir / "quantization.yml")
    assert classifier.params.top_db is None
    return classifier, split_stream(classifier, classifier.ckpt, corpus, "test", 0.01, 0)


@pytest.fixture(scope="module")
def floored_stream(integer_run, tmp_path_factory):
    """The stream fixture's run without the top_db clamp and with a per-frame floor at -70 dB
    (``features: {top_db: null, floor_db: -70}``) in a copy of its checkpoint: frames stay
    independent, and the C front end takes the floor from its generated constants."""
    from dataclasses import replace
    from utils.checkpoint import load_checkpoint, save_checkpoint
    corpus, run_dir = integer_run
    ckpt = load_checkpoint(run_dir / "model_best.pth")
    path = tmp_path_factory.mktemp("floored") / "model_best.pth"
    save_checkpoint(path, replace(ckpt, features={**ckpt.features, "top_db": None, "floor_db": -70.0}))
    classifier = KeywordClassifier.from_checkpoint(path, run_dir / "quantization.yml")
    assert classifier.params.top_db is None and classifier.params.floor_db == -70.0
    return classifier, split_stream(classifier, classifier.ckpt, corpus, "test", 0.01, 0)


@pytest.fixture(scope="module")
def short_unclamped_stream(tmp_path_factory):
    """A run without the top_db clamp whose windows hold 98 frames, fewer than a clip's samples
    make (99): a frame past a window's end still lies inside the clip and arrives as the window
    completes, for the next window (stream.c keeps a row more than the window)."""
    corpus, _, run_dir = quantized_tiny_run(tmp_path_factory.mktemp("stream_c_short"),
                                            base="config_lenet5_keywords_integer.yml",
                                            features={"top_db": None, "frames": 98})
    classifier = KeywordClassifier.from_checkpoint(run_dir / "model_best.pth", run_dir / "quantization.yml")
    assert classifier.params.top_db is None and classifier.params.frames == 98
    return classifier, split_stream(classifier, classifier.ckpt, corpus, "test", 0.01, 0)


def test_the_integer_stream_scan_is_the_per_window_integer_pipeline(stream):
    classifier, plan = stream
    assert classifier.engine is not None
    # a 2-epoch model is unsure: a threshold that 5% of the windows' keyword posteriors reach
    first = scan_frames(classifier, render_blocks(plan), DetectorSettings())
    settings = DetectorSettings(threshold=float(np.quantile(first.posteriors[:, 1:].max(axis=1), 0.95)))
    frames = scan_frames(classifier, render_blocks(plan), settings)
    windows = scan_stream(classifier, render_blocks(plan), settings)
    assert len(frames.starts_s) == len(windows.starts_s) > 300
    np.testing.assert_array_equal(frames.posteriors, windows.posteriors)   # exact, not close
    q16 = frames.posteriors * 65536
    assert (q16 == np.rint(q16)).all() and len(np.unique(q16)) > 100
    assert [(d.start_s, d.name, d.score) for d in frames.detections] == \
        [(d.start_s, d.name, d.score) for d in windows.detections]
    assert frames.detections


def test_the_integer_detector():
    """Softmax in Q16 near the float one; floor averages; the threshold and refractory time in
    integers: a tie at the threshold fires, windows exactly the refractory time apart both stay."""
    scores = np.array([[0, 0, 0], [10, -5, 3], [100, 0, 0], [-3, -3, -2]])
    q = integer_posteriors(scores, 2)
    logits = scores / 4.0
    e = np.exp(logits - logits.max(1, keepdims=True))
    assert np.abs(q - e / e.sum(1, keepdims=True) * 65536).max() < 4
    assert q[2].tolist() == [65536, 0, 0]
    assert integer_smooth(np.array([[0, 3], [0, 4], [0, 8]]), 3).tolist() == [[0, 3], [0, 5], [0, 6]]
    assert threshold_code(0.5) == 32768 and threshold_code(0.50001) == 32769
    names = ["_unknown_", "one", "two"]
    p = np.zeros((30, 3), dtype=np.int64)
    p[:, 0] = 65536
    for w, label, v in ((2, 1, 33000), (12, 2, 40000), (22, 1, 50000), (27, 2, 45000)):
        p[w] = [65536 - v, v if label == 1 else 0, v if label == 2 else 0]
    settings = DetectorSettings(hop_ms=100, smooth_ms=0, threshold=0.5, refractory_ms=1000)
    dets = integer_detections(p, settings, 16000, names)
    # 2, 12 and 22 are exactly the refractory time (10 windows) apart: all kept; 27 is weaker than 22
    assert [(round(d.start_s, 3), d.name, d.score) for d in dets] == \
        [(0.2, "one", 33000 / 65536), (1.2, "two", 40000 / 65536), (2.2, "one", 50000 / 65536)]
    assert len(integer_detections(p, DetectorSettings(smooth_ms=0, threshold=0.5, refractory_ms=1001), 16000,
                                  names)) == 2   # 12 is now within 22's refractory time


@pytest.mark.parametrize("fixture", ["stream", "unclamped_stream", "floored_stream", "short_unclamped_stream"])
def test_the_c_stream_makes_predict_py_s_detections(fixture, request, tmp_path):
    """stream.c fed the stream's PCM in 10 ms blocks: the same windows and, detection for
    detection, the same times, words and scores as predict.py's scan (app.detection.scan_frames);
    with the features' top_db clamp (a ring of log energies) and without it (frames' codes kept
    in the model's input), there also with windows shorter than a clip's frames and with a
    per-frame floor (floor_db) above the default one."""
    from data_loader import integer_frontend as ife
    from data_loader.corpus import SILENCE
    from deploy.c_export import export_c
    from deploy.c_stream import export_stream
    from app.restore import normalization_of
    classifier, plan = request.getfixturevalue(fixture)
    first = scan_frames(classifier, render_blocks(plan), DetectorSettings())
    settings = DetectorSettings(threshold=float(np.quantile(first.posteriors[:, 1:].max(axis=1), 0.95)),
                                refractory_ms=700)
    python = scan_frames(classifier, render_blocks(plan), settings)
    assert len(python.detections) >= 3
    export_c(classifier.engine, tmp_path, classifier.class_names)
    export_stream(classifier.engine, classifier.params, *normalization_of(classifier.ckpt), settings,
                  classifier.class_names, tmp_path, skip=(SILENCE,))
    floor = ife.tables(classifier.params).log_floor
    assert f"#define KWS_FE_LOG_FLOOR ({floor})" in (tmp_path / "frontend_config.h").read_text()
    exe = tmp_path / "stream"
    subprocess.run(GCC + ["-pedantic", "-o", str(exe)] + [str(tmp_path / f) for f in
                   ("model.c", "frontend.c", "stream.c", "stream_main.c")], check=True)
    pcm = ife.to_pcm(np.concatenate(list(render_blocks(plan))))
    (tmp_path / "stream_pcm.txt").write_text("\n".join(map(str, pcm.tolist())) + "\n")
    out = subprocess.run([str(exe), str(tmp_path / "stream_pcm.txt")], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[-1] == f"windows {len(python.starts_s)}"
    hop = settings.hop_samples(classifier.sample_rate)
    c = [(int(w) * hop / classifier.sample_rate, classifier.class_names[int(k)], int(s) / 65536)
         for w, k, s in (line.split() for line in out[:-1])]
    assert c == [(d.start_s, d.name, d.score) for d in python.detections]


def test_export_writes_the_stream_at_the_checkpoint_s_operating_point(integer_run, stream, tmp_path):
    """export.py of the integer-frontend run writes stream.c with its stored settings; built from
    the bundle alone it gives predict.py's detections (settings from the checkpoint) on the stream."""
    from app.detection import stored_settings
    from data_loader import integer_frontend as ife
    from conftest import run_script
    _, run_dir = integer_run
    classifier, plan = stream
    bundle = tmp_path / "bundle"
    run_script("export.py", "-r", run_dir / "model_best.pth", "-q", run_dir / "quantization.yml", "-o", bundle)
    settings, _ = stored_settings(classifier.ckpt)
    assert f"#define KWS_ST_SMOOTH ({settings.smooth_windows})" in (bundle / "stream_config.h").read_text()
    exe = tmp_path / "stream"
    subprocess.run(GCC + ["-o", str(exe)] + [str(bundle / f) for f in
                   ("model.c", "frontend.c", "stream.c", "stream_main.c")], check=True)
    pcm = ife.to_pcm(np.concatenate(list(render_blocks(plan))))
    text = "\n".join(map(str, pcm.tolist())) + "\n"
    out = subprocess.run([str(exe)], input=text, capture_output=True, text=True, check=True).stdout.splitlines()
    python = scan_frames(classifier, render_blocks(plan), settings)
    hop = settings.hop_samples(classifier.sample_rate)
    assert out[-1] == f"windows {len(python.starts_s)}"
    assert [(int(w) * hop / classifier.sample_rate, classifier.class_names[int(k)]) for w, k, _ in
            (line.split() for line in out[:-1])] == [(d.start_s, d.name) for d in python.detections]
