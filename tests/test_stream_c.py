"""A quantized model on the integer front end in a stream: predict.py's scan computes every
window's integer MFCCs frame by frame once (data_loader.integer_frontend.StreamFrames), runs the
integer engine and the integer detector (model.detector), and these are exactly the per-window
integer pipeline's numbers on a stream built from real corpus clips."""
import numpy as np
import pytest

from app.detection import KeywordClassifier, DetectorSettings, scan_frames, scan_stream
from app.stream_test import split_stream
from data_loader.stream import render_blocks
from model.detector import integer_detections, integer_posteriors, integer_smooth, threshold_code
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
