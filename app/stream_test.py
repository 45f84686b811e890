"""test.py --stream: a checkpoint judged as a keyword spotter, on a long recording.

The recording is either built from a split of the corpus (data_loader.stream: every keyword clip
once, the other clips in enough variants for the hours asked, pauses, gain, the split's noise
region) or a user's own labelled WAV. The detector is predict.py's (model.detector) on the
frame-wise features of data_loader.frame_features; the figures are the share of keywords missed
against false alarms per hour of non-keyword audio, over a sweep of thresholds (a DET curve), and
at the checkpoint's own operating point (the threshold calibrated after training, app.calibration).
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from app.detection import INTEGER_BATCH, KeywordClassifier, check_audio, load_audio, scan_frames, stored_settings
from app.restore import data_for_checkpoint
from app.testing import save_beside
from data_loader.audio import AudioError, stream_wave
from data_loader import integer_frontend as ife
from data_loader.corpus import SILENCE
from data_loader.frame_features import MODEL_BATCH, SEGMENT_WINDOWS, FrameScanner, segments
from data_loader.stream import clip_under, describe_plan, plan_stream, render_blocks
from configuration.schema import DEFAULT_HOURS, DEFAULT_TARGET, DetectorConfig, parse_detector_config
from model.detector import detections_of_smoothed, smooth_posteriors
from model.stream_metric import (RATE_FACTORS, THRESHOLDS, StreamScore, loudest_false_alarms, match, misses_at,
                                 operating_point, recall_over_rates, sweep, tolerance_text)
from utils import atomic
from utils.errors import UserError

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from app.restore import SolutionSource
    from data_loader.corpus import Corpus
    from data_loader.features import FeatureParams
    from data_loader.stream import StreamPlan
    from model.detector import Detection, DetectorSettings
    from model.registry import KeywordModel
    from utils.checkpoint import Checkpoint

MAX_HOURS = 100.0
MAX_LABEL_LINES = 1_000_000
LOUDEST_SHOWN = 5   # of them in the printed report
LOUDEST = 10   # the false alarms with the highest scores, reported with the clip under them


def check_target(target: object) -> float:
    if not (isinstance(target, (int, float)) and math.isfinite(target) and target > 0):
        raise UserError(f"the target false-alarm rate must be a number above 0 per hour, got {target!r}")
    return float(target)


def check_hours(hours: object) -> float:
    if not (isinstance(hours, (int, float)) and math.isfinite(hours) and 0 < hours <= MAX_HOURS):
        raise UserError(f"the stream length must be above 0 and at most {MAX_HOURS:g} hours, got {hours!r}")
    return float(hours)


def read_labels(path: str | os.PathLike, keywords: Sequence[str], duration_s: float) -> tuple[tuple[float, str], ...]:
    """((start_s, word), ...) from a file of ``start_s word`` lines (blank lines and # comments
    skipped); a time outside the recording or a word that is not a keyword is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"labels file not found: {path}; give one 'start_s word' line per keyword")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read labels file {path} ({type(e).__name__}); give a UTF-8 text file") from None
    labels = []
    for number, line in enumerate(text.splitlines(), 1):
        if number > MAX_LABEL_LINES:
            raise UserError(f"labels file {path} has more than {MAX_LABEL_LINES} lines")
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        try:
            start = float(parts[0])
        except ValueError:
            start = math.nan
        if len(parts) != 2 or not math.isfinite(start):
            raise UserError(f"{path}:{number}: expected 'start_s word', found {line[:60]!r}")
        if not 0 <= start < duration_s:
            raise UserError(f"{path}:{number}: time {start:g} s is outside the recording (0 to {duration_s:.2f} s)")
        if parts[1] not in keywords:
            raise UserError(f"{path}:{number}: '{parts[1][:40]}' is not a keyword of the checkpoint "
                            f"({', '.join(keywords)})")
        labels.append((start, parts[1]))
    if not labels:
        raise UserError(f"labels file {path} names no keyword; a stream test needs at least one")
    return tuple(sorted(labels))


def frame_scan(classifier: KeywordClassifier, blocks: Iterable[np.ndarray],
               settings: DetectorSettings) -> tuple[np.ndarray, np.ndarray, float]:
    """(window starts in s, (W, classes) posteriors, seconds) of the classifier over sample blocks,
    features computed frame by frame once (predict.py's scan of a long recording)."""
    result = scan_frames(classifier, blocks, settings)
    return result.starts_s, result.posteriors, result.duration_s


def checkpoint_corpus(ckpt: Checkpoint, data_dir: str | os.PathLike | None) -> Corpus:
    """The corpus of audio clips the checkpoint was trained on (or ``data_dir``), to build streams from."""
    corpus = getattr(data_for_checkpoint(ckpt, data_dir, progress=False), "corpus", None)
    if corpus is None:
        raise UserError("a stream is built from a corpus of audio clips; this checkpoint's data loader holds "
                        "features only: give --data-dir with a corpus, or --stream REC.wav --labels REC.txt")
    return corpus


def split_stream(classifier: KeywordClassifier, ckpt: Checkpoint, data_dir: str | os.PathLike | None, split: str,
                 hours: float, seed: int) -> StreamPlan:
    """The StreamPlan of the stream built from ``split`` of the checkpoint's corpus."""
    return plan_stream(checkpoint_corpus(ckpt, data_dir), split, classifier.sample_rate, hours, seed)


def evaluate(posteriors: np.ndarray, starts_s: np.ndarray, settings: DetectorSettings, class_names: Sequence[str],
             labels: Sequence[tuple[float, str]], background_hours: float, target: float,
             detections: list[Detection] | None = None) -> dict[str, Any]:
    """The sweep, the best threshold for ``target`` on this stream, and the figures at ``settings``
    (the checkpoint's own operating point): ``detections`` where given (the scan's own, which for
    an integer model are the integer detector's, app.detection.classifier_detections), else
    those of the float detector at ``settings``."""
    skip = (SILENCE,)
    scores = sweep(posteriors, starts_s, settings, class_names, labels, background_hours, THRESHOLDS, skip)
    best, met = operating_point(scores, target)
    smoothed = smooth_posteriors(posteriors, settings.smooth_windows)
    if detections is None:
        detections = detections_of_smoothed(smoothed, starts_s, settings, class_names, skip)
    dets = detections
    hits, false_alarms = match(dets, labels)
    own = StreamScore(settings.threshold, len(labels), hits, false_alarms, background_hours)
    per_word = {}
    for word in sorted({w for _, w in labels}):
        mine = [lab for lab in labels if lab[1] == word]
        found, _ = match([d for d in dets if d.name == word], mine)
        per_word[word] = {"keywords": len(mine), "misses": len(mine) - found}
    lowest = detections_of_smoothed(smoothed, starts_s, settings.with_threshold(THRESHOLDS[0]), class_names, skip)
    loudest = loudest_false_alarms(lowest, labels, LOUDEST)
    return {"scores": scores, "best": best, "met": met, "own": own, "per_word": per_word, "detections": dets,
            "loudest": [{"time_s": round(d.start_s, 2), "word": d.name, "score": round(d.score, 4)} for d in loudest]}


def run_stream_test(checkpoint: str | os.PathLike, quantization: SolutionSource | None = None,
                    pruning: SolutionSource | None = None, use_stored: bool = True,
                    recording: str | os.PathLike | None = None, labels: str | os.PathLike | None = None,
                    data_dir: str | os.PathLike | None = None, split: str = "test", hours: float = DEFAULT_HOURS,
                    seed: int = 0, threshold: float | None = None, target: float | None = None) -> dict[str, Any]:
    """Everything test.py --stream reports, as a dict."""
    if recording is None and labels is not None:
        raise UserError("--labels goes with --stream REC.wav (a recording of your own)")
    if recording is not None and labels is None:
        raise UserError(f"--stream {recording} needs --labels REC.txt (one 'start_s word' line per keyword)")
    hours = check_hours(hours)
    classifier = KeywordClassifier.from_checkpoint(checkpoint, quantization, pruning, use_stored)
    ckpt = classifier.ckpt
    target = check_target(target if target is not None
                          else (ckpt.detector or {}).get("target_false_alarms_per_hour", DEFAULT_TARGET))
    settings, source = stored_settings(ckpt, threshold=threshold)
    settings.validate(1000.0 * classifier.clip_samples / classifier.sample_rate)
    keywords = [n for n in classifier.class_names[1:] if n != SILENCE]
    if recording is not None:
        info = check_audio(recording)
        duration = info.frames / info.samplerate
        if duration * classifier.sample_rate < classifier.clip_samples:
            raise UserError(f"{recording} lasts {duration:.2f} s, shorter than one window "
                            f"({classifier.clip_samples / classifier.sample_rate:g} s); record a longer stretch")
        truth = read_labels(labels, keywords, duration)
        if duration <= WHOLE_READ_S:
            blocks = [load_audio(recording, classifier.sample_rate)]
        else:
            blocks = stream_wave(recording, classifier.sample_rate)
        try:
            scan = scan_frames(classifier, blocks, settings)
        except AudioError as e:
            raise UserError(f"cannot read audio file {e}; give a WAV file") from None
        seconds = scan.duration_s
        clip_s = classifier.clip_samples / classifier.sample_rate
        background_h = max(seconds - clip_s * len(truth), clip_s) / 3600.0
        described = (f"{recording}: {seconds:.1f} s, {len(truth)} labelled keywords from {labels} "
                     f"(non-keyword time: the recording less {clip_s:g} s per keyword)")
        name = Path(recording).stem
    else:
        plan = split_stream(classifier, ckpt, data_dir, split, hours, seed)
        truth = plan.labels
        scan = scan_frames(classifier, render_blocks(plan), settings)
        seconds = scan.duration_s
        background_h = plan.background_s / 3600.0
        described = describe_plan(plan)
        name = split
    result = evaluate(scan.posteriors, scan.starts_s, settings, classifier.class_names, truth, background_h, target,
                      scan.detections)
    if recording is None:
        for alarm in result["loudest"]:
            alarm["clip"] = clip_under(plan, alarm["time_s"], classifier.clip_samples / classifier.sample_rate)
    result.update({"described": described, "hours": seconds / 3600.0, "background_hours": background_h,
                   "keywords": len(truth), "settings": settings, "source": source, "target": target,
                   "name": name, "applied": ckpt.applied or {}})
    return result


WHOLE_READ_S = 60.0   # a user's recording up to this long is read whole


def format_stream_report(result: Mapping[str, Any]) -> str:
    own, best = result["own"], result["best"]
    lines = [result["described"], f"Detector: {tolerance_text()}; false alarms per hour of non-keyword audio "
                                  f"({result['background_hours']:.2f} h)",
             f"{'threshold':>9}  {'misses':>12}  {'false alarms':>12}  {'per hour':>8}"]
    for s in result["scores"]:
        mark = "  <- best for the target on this stream" if s is best and result["met"] else ""
        lines.append(f"{s.threshold:>9g}  {s.misses:>5} {100 * s.miss_rate:5.1f}%  {s.false_alarms:>12}  "
                     f"{s.false_alarms_per_hour:>8.1f}{mark}")
    if not result["met"]:
        lines.append(f"No threshold of the sweep meets {result['target']:g} false alarm(s)/h on this stream")
    lines.append("Misses per keyword at the operating point: " + ", ".join(
        f"{w} {v['misses']}/{v['keywords']}" for w, v in result["per_word"].items()))
    if result["loudest"]:
        lines.append("Loudest false alarms (a threshold above them avoids them): " + "; ".join(
            f"{a['word']} {a['score']:.3f} at {a['time_s']:.1f} s" + (f" ({a['clip']})" if "clip" in a else "")
            for a in result["loudest"][:LOUDEST_SHOWN]))
    lines.append(f"Operating point: threshold {result['settings'].threshold:g}, smoothing "
                 f"{result['settings'].smooth_ms:g} ms ({result['source']})")
    lines.append(f"stream: {result['hours']:.2f} h, {result['keywords']} keywords; misses "
                 f"{100 * own.miss_rate:.1f}% at {own.false_alarms_per_hour:.1f} false alarms/h "
                 f"(threshold {result['settings'].threshold:g})")
    return "\n".join(lines)


def det_png(result: Mapping[str, Any]) -> bytes:
    """PNG bytes: a DET curve (miss rate against false alarms per hour) with the operating point marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    scores = result["scores"]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    fa = [max(s.false_alarms_per_hour, 1e-2) for s in scores]
    ax.plot(fa, [100 * s.miss_rate for s in scores], marker=".", label="threshold sweep")
    own = result["own"]
    ax.plot([max(own.false_alarms_per_hour, 1e-2)], [100 * own.miss_rate], "o", color="red",
            label=f"operating point (threshold {result['settings'].threshold:g})")
    ax.axvline(result["target"], color="grey", linestyle="--", label=f"target {result['target']:g}/h")
    ax.set_xscale("log")
    ax.set_xlabel("false alarms per hour (0 drawn at 0.01)")
    ax.set_ylabel("keywords missed (%)")
    ax.set_title(f"{result['name']} stream: {result['hours']:.2f} h, {result['keywords']} keywords")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    png = atomic.figure_png(fig)
    plt.close(fig)
    return png


def save_stream_report(result: Mapping[str, Any], checkpoint: str | os.PathLike,
                       quantization: SolutionSource | None = None, pruning: SolutionSource | None = None,
                       out_dir: str | os.PathLike | None = None) -> tuple[Path, str | None]:
    """<stem>-stream-<name>-<variant>.yml and its DET PNG beside the checkpoint (or in ``out_dir``;
    see app.testing.save_beside), both replaced together. Returns (YAML path, note)."""
    return save_beside(lambda folder: _write_stream_report(result, checkpoint, quantization, pruning, folder),
                       checkpoint, out_dir)


def _write_stream_report(result, checkpoint, quantization, pruning, folder):
    applied = result.get("applied") or {}
    quantization = applied.get("quantization", quantization)
    pruning = applied.get("pruning", pruning)
    variant = "-".join(v for v, on in (("quantized", quantization), ("pruned", pruning)) if on) or "float"
    stem = Path(folder) / f"{Path(checkpoint).stem}-stream-{result['name']}-{variant}"
    own = result["own"]
    data = {"checkpoint": str(checkpoint), "quantization": quantization and str(quantization),
            "pruning": pruning and str(pruning), "recording": result["described"],
            "hours": float(result["hours"]), "background_hours": float(result["background_hours"]),
            "keywords": int(result["keywords"]), "tolerance": tolerance_text(),
            "detector": result["settings"].to_dict(), "threshold_source": result["source"],
            "target_false_alarms_per_hour": float(result["target"]),
            "operating_point": own.to_dict(), "per_keyword": result["per_word"],
            "best_for_target": dict(result["best"].to_dict(), met=bool(result["met"])),
            "sweep": [s.to_dict() for s in result["scores"]],
            "loudest_false_alarms": result["loudest"]}
    atomic.write_together({stem.with_suffix(".yml"): atomic.yaml_bytes(data),
                           stem.with_suffix(".png"): det_png(result)})
    return stem.with_suffix(".yml")


STREAM_METRIC = "stream_recall_at_target"   # the searches' name for 1 - misses at the target rate
STREAM_MEAN_METRIC = "stream_mean_recall"   # recall averaged over 1..50 times the target rate
STREAM_METRICS = (STREAM_METRIC, STREAM_MEAN_METRIC)


class StreamValidation:
    """The streaming measures of a model on the validation split's stream: the share of keywords
    found at the best threshold that meets the target false-alarm rate (0 when none does), and
    that share averaged over 1..50 times the target (model.stream_metric.recall_over_rates). The
    stream's features are computed once; each model costs one forward pass over its windows."""

    def __init__(self, corpus: Corpus, params: FeatureParams, mean: ArrayLike, std: ArrayLike,
                 class_names: Sequence[str], settings: DetectorSettings, target: float, hours: float = DEFAULT_HOURS,
                 seed: int = 0) -> None:
        self.target, self.settings = float(target), settings
        plan = plan_stream(corpus, "validation", params.sample_rate, hours, seed)
        hop = settings.hop_samples(params.sample_rate)
        if params.frontend == "integer":   # the integer MFCCs of the windows' PCM (app.detection.scan_integer)
            frames = ife.StreamFrames(params, hop)
            mean, std = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)

            def window_features(samples: np.ndarray, n: int) -> torch.Tensor:
                mfcc = frames.window_mfcc(ife.to_pcm(samples), n) / float(1 << ife.MFCC_FL)
                return torch.from_numpy(mfcc.astype(np.float32)).sub_(mean).div_(std).unsqueeze(1)
        else:
            window_features = FrameScanner(params, mean, std, hop).features
        batch = INTEGER_BATCH if params.frontend == "integer" else SEGMENT_WINDOWS
        feats, starts = [], []
        for first, n, samples in segments(render_blocks(plan), params.clip_samples, hop, batch=batch):
            feats.append(window_features(samples, n))
            starts.append((first + np.arange(n)) * hop)
        self.features = torch.cat(feats)
        self.starts_s = np.concatenate(starts) / params.sample_rate
        self.labels, self.hours = plan.labels, plan.background_s / 3600.0
        self.class_names = class_names
        self.describe = (f"{STREAM_METRIC}: keywords found at <= {self.target:g} false alarm(s)/h on the "
                         f"validation stream ({plan.duration_s / 3600:.2f} h, {plan.keywords} keywords); "
                         f"{STREAM_MEAN_METRIC}: the same averaged over {RATE_FACTORS[0]}-{RATE_FACTORS[-1]} "
                         f"times that rate")

    @classmethod
    def of_checkpoint(cls, classifier: KeywordClassifier, data_dir: str | os.PathLike | None = None) -> StreamValidation:
        """The measures for a checkpoint's model: the hours and seed of its ``detector`` config,
        its target and calibrated smoothing."""
        ckpt = classifier.ckpt
        config = parse_detector_config(ckpt.config.get("detector")) or DetectorConfig()
        stored = ckpt.detector or {}
        target = float(stored.get("target_false_alarms_per_hour", config.target_false_alarms_per_hour))
        settings, _ = stored_settings(ckpt)
        return cls(checkpoint_corpus(ckpt, data_dir), classifier.params, classifier.transform.mean, classifier.transform.std,
                   classifier.class_names, settings, target, config.stream_hours, config.seed)

    def __call__(self, model: KeywordModel) -> dict[str, float]:

        """{STREAM_METRIC: ..., STREAM_MEAN_METRIC: ...} of ``model``."""
        was_training = model.training
        model.eval()
        with torch.no_grad():
            posteriors = torch.cat([model(self.features[i:i + MODEL_BATCH]).exp()
                                    for i in range(0, len(self.features), MODEL_BATCH)]).double().numpy()
        model.train(was_training)
        scores = sweep(posteriors, self.starts_s, self.settings, self.class_names, self.labels, self.hours,
                       THRESHOLDS, (SILENCE,))
        return {STREAM_METRIC: 1.0 - misses_at(scores, self.target),
                STREAM_MEAN_METRIC: recall_over_rates(scores, self.target)}
