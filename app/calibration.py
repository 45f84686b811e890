"""The operating point a checkpoint carries: the detector threshold calibrated on a stream.

A keyword spotter is used at one threshold, and a user wants it chosen for a false-alarm rate,
not for a probability. After training (and after finetuning) the validation split's stream
(data_loader.stream) is scanned once per smoothing span of ``detector.smooth_ms``; the threshold
kept is the one of the sweep (model.stream_metric.THRESHOLDS) with the fewest misses among those
meeting ``detector.target_false_alarms_per_hour``, and of the spans the one with the fewest
misses (ties: the shorter span). It is written into model_best.pth, where test.py, predict.py
and export.py read it. The test split is never used for it.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from app.detection import DetectorSettings, KeywordClassifier
from app.stream_test import frame_scan, split_stream
from data_loader.corpus import SILENCE
from data_loader.stream import render_blocks
from model.stream_metric import THRESHOLDS, operating_point, sweep
from utils.checkpoint import load_checkpoint, save_checkpoint

if TYPE_CHECKING:
    from configuration.schema import DetectorConfig


def calibrate(checkpoint: str | os.PathLike, settings: DetectorConfig,
              data_dir: str | os.PathLike | None = None) -> dict[str, float | int | bool]:
    """The detector mapping for ``checkpoint`` (its stored solutions applied) from ``settings``
    (a configuration.schema.DetectorConfig)."""
    classifier = KeywordClassifier.from_checkpoint(checkpoint)
    plan = split_stream(classifier, classifier.ckpt, data_dir, "validation", settings.stream_hours,
                        settings.seed)
    target = settings.target_false_alarms_per_hour
    hours = plan.background_s / 3600.0
    starts_s, posteriors, _ = frame_scan(classifier, render_blocks(plan), DetectorSettings())
    best = None
    for smooth in sorted(settings.smooth_ms):
        detector = DetectorSettings(smooth_ms=smooth)
        scores = sweep(posteriors, starts_s, detector, classifier.class_names, plan.labels, hours, THRESHOLDS,
                       (SILENCE,))
        score, met = operating_point(scores, target)
        key = (not met, score.misses if met else score.false_alarms, score.misses)
        if best is None or key < best[0]:
            best = (key, smooth, score, met)
    _, smooth, score, met = best
    return {"threshold": float(score.threshold), "smooth_ms": float(smooth),
            "target_false_alarms_per_hour": float(target), "met": bool(met),
            "validation_miss_rate": float(score.miss_rate),
            "validation_false_alarms_per_hour": float(score.false_alarms_per_hour),
            "validation_keywords": int(score.keywords), "stream_hours": float(plan.duration_s / 3600.0),
            "seed": int(settings.seed)}


def describe(detector: dict) -> str:
    met = "" if detector["met"] else f" (target {detector['target_false_alarms_per_hour']:g}/h not met)"
    line = (f"operating point: threshold {detector['threshold']:g}, smoothing {detector['smooth_ms']:g} ms; "
            f"validation stream ({detector['stream_hours']:.2f} h, {detector['validation_keywords']} keywords): "
            f"misses {100 * detector['validation_miss_rate']:.1f}% at "
            f"{detector['validation_false_alarms_per_hour']:.1f} false alarms/h{met}")
    return line


def deaf_warning(detector: dict) -> str | None:
    """The warning for an operating point that finds no validation keyword (None otherwise)."""
    if detector["validation_miss_rate"] < 1.0:
        return None
    return ("at this operating point the detector finds none of the validation stream's keywords, so "
            "predict.py will hardly ever fire; raise detector.target_false_alarms_per_hour (or give "
            "predict.py --threshold) if you need detections")


def calibrate_checkpoint(path: str | os.PathLike, settings: DetectorConfig,
                         data_dir: str | os.PathLike | None = None) -> dict[str, float | int | bool]:

    """Calibrate ``path`` and write the operating point into it (atomically); returns it."""
    detector = calibrate(path, settings, data_dir)
    ckpt = load_checkpoint(path)
    ckpt.detector = detector
    save_checkpoint(path, ckpt)
    return detector
