"""The streaming evaluation: scoring, the built stream, test.py --stream, calibration, bad input."""
import re

import numpy as np
import pytest
import soundfile as sf
import yaml

from conftest import run_script as run
from data_loader.corpus import Corpus, scan_corpus
from data_loader.stream import clip_under, labels_text, plan_stream, render_blocks
from model.detector import Detection, DetectorSettings
from model.stream_metric import (HIT_AFTER_S, HIT_BEFORE_S, StreamScore, loudest_false_alarms, match, misses_at,
                                 operating_point)
from utils.checkpoint import load_checkpoint
from utils.errors import UserError

LAST_LINE = re.compile(r"stream: (\d+\.\d\d) h, (\d+) keywords; misses (\d+\.\d)% at (\d+\.\d) false alarms/h "
                       r"\(threshold ([\d.]+)\)")


def det(t, name):
    return Detection(t, 1, name, 0.9)


def test_a_detection_hits_the_right_word_within_the_tolerance_once():
    labels = [(10.0, "one"), (20.0, "two"), (30.0, "three")]
    dets = [det(10.0 - HIT_AFTER_S + 0.01, "one"),   # word starts just inside the late edge: hit
            det(10.2, "one"),                        # second detection of the same word: false alarm
            det(20.0 + HIT_BEFORE_S + 0.01, "two"),  # word began too long before the window: false alarm
            det(29.9, "one")]                        # wrong word: false alarm and "three" missed
    assert match(dets, labels) == (1, 3)
    assert match([], labels) == (0, 0)


def test_the_loudest_false_alarms_are_the_strongest_detections_that_hit_nothing():
    labels = [(10.0, "one"), (20.0, "two")]
    dets = [Detection(10.0, 1, "one", 0.99),   # hit
            Detection(15.0, 2, "two", 0.95), Detection(20.0, 1, "one", 0.97),   # wrong word at a label
            Detection(30.0, 3, "three", 0.6), Detection(40.0, 1, "one", 0.8)]
    assert loudest_false_alarms(dets, labels, 3) == [dets[2], dets[1], dets[4]]
    assert loudest_false_alarms(dets[:1], labels, 3) == []


def test_the_clip_under_a_window_is_the_event_at_its_centre(corpus_dir):
    plan = plan_stream(scan_corpus(corpus_dir), "test", 16000, 0.05, seed=0)
    first, second = plan.events[0], plan.events[1]
    inside = (first.start + first.length // 2) / 16000 - 0.5      # window centred in the first clip
    assert clip_under(plan, inside, 1.0) == first.rel
    pause = (second.start - second.pause // 2) / 16000 - 0.5    # centred in the pause before the second
    assert clip_under(plan, pause, 1.0) == f"pause before {second.rel}"
    assert clip_under(plan, -10.0, 1.0) == f"pause before {first.rel}"
    assert clip_under(plan, plan.duration_s + 5, 1.0) == "the end of the recording"


def test_the_operating_point_is_the_fewest_misses_within_the_target():
    scores = [StreamScore(0.5, 10, 9, 30, 2.0), StreamScore(0.8, 10, 8, 2, 2.0), StreamScore(0.9, 10, 6, 0, 2.0)]
    assert operating_point(scores, 1.0) == (scores[1], True)       # 1 false alarm per hour
    assert operating_point(scores, 0.5) == (scores[2], True)
    assert misses_at(scores, 1.0) == pytest.approx(0.2)
    high = [StreamScore(0.5, 10, 9, 30, 2.0), StreamScore(0.9, 10, 7, 4, 2.0)]
    assert operating_point(high, 1.0) == (high[1], False)          # none meets it: the fewest false alarms
    assert misses_at(high, 1.0) == 1.0


def test_the_built_stream_holds_every_keyword_once_and_the_hours_asked(corpus_dir):
    corpus = scan_corpus(corpus_dir)
    keywords = [rel for rel, label in corpus.clips["test"] if label]
    plan = plan_stream(corpus, "test", 16000, 1.0, seed=0)
    assert plan.keywords == len(keywords) > 100
    assert plan.background_s >= 3600 and plan.variants >= 2
    assert [e.start for e in plan.events] == sorted(e.start for e in plan.events)
    assert sum(e.label != 0 for e in plan.events) == len(keywords)
    for (t, word), event in zip(plan.labels, [e for e in plan.events if e.label]):
        assert event.start / 16000 <= t < (event.start + event.length) / 16000
        assert word == corpus.keywords[event.label - 1]
    first = next(render_blocks(plan))
    again = next(render_blocks(plan_stream(corpus, "test", 16000, 1.0, seed=0)))
    other = next(render_blocks(plan_stream(corpus, "test", 16000, 1.0, seed=1)))
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert sum(len(b) for b in render_blocks(plan)) == plan.total_samples


def test_a_split_without_keywords_is_a_one_line_error(corpus_dir):
    corpus = scan_corpus(corpus_dir)
    others = {s: [(rel, label) for rel, label in rows if label == 0] for s, rows in corpus.clips.items()}
    with pytest.raises(UserError, match="holds no keyword clips"):
        plan_stream(Corpus(corpus.root, corpus.keywords, others, corpus.noise_files), "test", 16000, 1.0)


@pytest.fixture(scope="module")
def stream_run(trained, tmp_path_factory):
    run_dir, _ = trained
    out = tmp_path_factory.mktemp("stream")
    proc = run("test.py", "-r", run_dir / "model_best.pth", "--stream", "--stream-hours", "0.05", "-o", out)
    return run_dir / "model_best.pth", out, proc


def test_training_stores_a_calibrated_operating_point(trained):
    run_dir, proc = trained
    detector = load_checkpoint(run_dir / "model_best.pth").detector
    assert detector["target_false_alarms_per_hour"] == 1.0
    assert detector["smooth_ms"] in (300.0, 500.0, 700.0) and 0 < detector["threshold"] <= 1
    assert detector["validation_keywords"] > 100
    assert detector["met"] == (detector["validation_false_alarms_per_hour"] <= 1.0)
    assert "operating point: threshold" in proc.stdout + proc.stderr
    # a detector that finds no validation keyword says so (it would leave predict.py silent)
    deaf = "finds none of the validation stream's keywords" in proc.stdout + proc.stderr
    assert deaf == (detector["validation_miss_rate"] >= 1.0)


def test_an_operating_point_that_finds_nothing_is_warned_about():
    from app.calibration import deaf_warning
    assert deaf_warning({"validation_miss_rate": 0.4}) is None
    assert "raise detector.target_false_alarms_per_hour" in deaf_warning({"validation_miss_rate": 1.0})


def test_test_stream_reports_misses_at_false_alarms_per_hour(stream_run, corpus_dir):
    ckpt, out, proc = stream_run
    lines = proc.stdout.strip().splitlines()
    m = LAST_LINE.fullmatch(lines[-1])
    assert m, lines[-1]
    report = yaml.safe_load((out / "model_best-stream-test-float.yml").read_text())
    assert (out / "model_best-stream-test-float.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    detector = load_checkpoint(ckpt).detector
    assert float(m.group(5)) == pytest.approx(detector["threshold"])
    assert report["detector"]["threshold"] == detector["threshold"]
    own = report["operating_point"]
    assert int(m.group(2)) == own["keywords"] == report["keywords"] > 100
    assert float(m.group(3)) == pytest.approx(100 * own["miss_rate"], abs=0.05)
    assert float(m.group(4)) == pytest.approx(own["false_alarms_per_hour"], abs=0.05)
    assert report["background_hours"] >= 0.05
    rates = [s["false_alarms_per_hour"] for s in report["sweep"]]
    assert rates == sorted(rates, reverse=True)   # a higher threshold never fires more often
    assert sum(v["misses"] for v in report["per_keyword"].values()) == own["misses"]
    # the loudest false alarms of the lowest threshold: strongest first, each far from a keyword of
    # its word, named by the clip under its window (the test split's clips or a pause)
    loudest = report["loudest_false_alarms"]
    assert len(loudest) == min(10, report["sweep"][0]["false_alarms"])
    assert [a["score"] for a in loudest] == sorted((a["score"] for a in loudest), reverse=True)
    assert all(a["score"] >= report["sweep"][0]["threshold"] for a in loudest)
    test_clips = {line.strip() for line in (corpus_dir / "testing_list.txt").read_text().splitlines()}
    for a in loudest:
        assert a["clip"] in test_clips or a["clip"].startswith("pause before "), a
    shown = [line for line in lines if line.startswith("Loudest false alarms")]
    assert len(shown) == (1 if loudest else 0) and all(a["clip"] in shown[0] for a in loudest[:5])


def test_a_users_recording_with_labels_scores_as_the_built_stream(trained, corpus_dir, stream_run, tmp_path):
    """The built stream written as a WAV with its labels gives the same figures through
    --stream REC.wav --labels REC.txt (read back from 16-bit PCM: detections may shift by
    rounding, so the counts are compared within one)."""
    ckpt, out, _ = stream_run
    plan = plan_stream(scan_corpus(corpus_dir), "test", 16000, 0.05, seed=0)
    sf.write(str(tmp_path / "rec.wav"), np.concatenate(list(render_blocks(plan))), 16000, subtype="FLOAT")
    (tmp_path / "rec.txt").write_text(labels_text(plan.labels))
    proc = run("test.py", "-r", ckpt, "--stream", tmp_path / "rec.wav", "--labels", tmp_path / "rec.txt",
               "-o", tmp_path)
    mine = yaml.safe_load((tmp_path / "model_best-stream-rec-float.yml").read_text())["operating_point"]
    built = yaml.safe_load((out / "model_best-stream-test-float.yml").read_text())["operating_point"]
    assert mine["keywords"] == built["keywords"]
    assert mine["hits"] == built["hits"] and mine["false_alarms"] == built["false_alarms"]
    assert LAST_LINE.fullmatch(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", ["past_end", "unknown_word", "short_recording", "target_zero", "labels_alone",
                                  "bad_line"])
def test_bad_stream_input_is_a_one_line_error(trained, tmp_path, case):
    ckpt = trained[0] / "model_best.pth"
    wave = np.zeros(16000 * (1 if case == "short_recording" else 5) // 2, dtype=np.float32)
    sf.write(str(tmp_path / "rec.wav"), wave, 16000)
    labels = {"past_end": "9.5 one\n", "unknown_word": "1.0 four\n", "bad_line": "one 1.0 x\n"}.get(case, "1.0 one\n")
    (tmp_path / "rec.txt").write_text(labels)
    args = ["--stream", tmp_path / "rec.wav", "--labels", tmp_path / "rec.txt"]
    if case == "target_zero":
        args += ["--target", "0"]
    if case == "labels_alone":
        args = ["--labels", tmp_path / "rec.txt", "--stream"]
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = run("test.py", "-r", ckpt, *args, "-o", tmp_path, check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    expected = {"past_end": "outside the recording", "unknown_word": "is not a keyword",
                "short_recording": "shorter than one window", "target_zero": "above 0 per hour",
                "labels_alone": "goes with --stream REC.wav", "bad_line": "expected 'start_s word'"}[case]
    assert expected in lines[0], lines[0]


def test_a_config_target_at_or_below_zero_is_refused():
    from configuration.schema import DETECTOR
    with pytest.raises(UserError, match="target_false_alarms_per_hour"):
        DETECTOR("detector", {"target_false_alarms_per_hour": 0})
    assert DETECTOR("detector", {"target_false_alarms_per_hour": 2})["target_false_alarms_per_hour"] == 2
    assert DetectorSettings().threshold == 0.5


def test_quantize_searches_on_the_streaming_measure(trained, tmp_path):
    """optimization.quantization.metric: stream_recall_at_target decides on the validation
    stream: the baseline it prints is the float model's share of keywords found at the target."""
    from app.detection import KeywordClassifier
    from app.stream_test import StreamValidation
    run_dir, _ = trained
    config = yaml.safe_load((run_dir / "config.yml").read_text())
    config["optimization"]["quantization"].update(metric="stream_recall_at_target", schedule=[16, 8])
    config["detector"]["stream_hours"] = 0.01
    (tmp_path / "c.yml").write_text(yaml.safe_dump(config))
    proc = run("quantize.py", "-r", run_dir / "model_best.pth", "-c", tmp_path / "c.yml", "-o", tmp_path)
    m = re.search(r"Decision metric: stream_recall_at_target, floor (-?[\d.]+) \(baseline ([\d.]+)\)", proc.stdout)
    assert m, proc.stdout
    classifier = KeywordClassifier.from_checkpoint(run_dir / "model_best.pth")
    measure = StreamValidation.of_checkpoint(classifier)(classifier.model)
    assert float(m.group(2)) == pytest.approx(measure["stream_recall_at_target"], abs=1e-5)
    assert float(m.group(1)) == pytest.approx(float(m.group(2)) - 0.05, abs=1e-5)   # the config's margin, 5 points
    assert (tmp_path / "quantization.yml").is_file()


def test_recall_over_rates_averages_the_best_recall_at_each_rate():
    from model.stream_metric import StreamScore, recall_over_rates
    # 10 keywords in 2 h: at <= 1/h (2 false alarms) 3 found, at <= 5/h (10) 6 found, never more
    scores = [StreamScore(0.9, 10, 3, 2, 2.0), StreamScore(0.5, 10, 6, 10, 2.0), StreamScore(0.3, 10, 8, 400, 2.0)]
    # factors 1, 2, 5, 10, 20, 50 of 1/h: 0.3, 0.3, 0.6, 0.6, 0.6, 0.6; and 200/h reaches 0.8 at 50x 4/h
    assert recall_over_rates(scores, 1.0) == pytest.approx((0.3 + 0.3 + 0.6 * 4) / 6)
    assert recall_over_rates(scores, 4.0) == pytest.approx((0.3 + 0.6 + 0.6 + 0.6 + 0.6 + 0.8) / 6)
    assert recall_over_rates([StreamScore(0.9, 10, 9, 100, 1.0)], 1.0) == 0.0   # no rate met
