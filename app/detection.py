"""What predict.py does: classify WAV files of any sample rate and length with a trained model.

A recording of at most ``MAX_CLIP_RATIO`` clip lengths is one clip: it is padded or cropped to one
clip (centred) exactly as training clips are, and gets one class and a probability per class.

A longer recording is scanned with a sliding window of one clip length every ``hop_ms``. Each
window is treated as a training clip of its own: its own STFT (centred, zero padded at the window
edges), its own ``top_db`` floor, then the checkpoint's MFCC normalisation. Features of a window
therefore equal those of the same samples saved as a clip and loaded by the data loader; slicing
one long spectrogram would differ at the window edges and in the dB floor. The tail is padded
with zeros so the last samples are inside a window.

Window posteriors become detections as model/detector.py describes (smoothing, threshold,
refractory time).

A recording longer than WHOLE_READ_CLIPS clip lengths is never held in memory: it is read,
resampled and scanned block by block (data_loader.audio.stream_wave), in batches of exactly
WINDOW_BATCH windows as the whole-file scan makes them, so its posteriors are the same numbers and
memory does not grow with its length (only the posteriors, 8 bytes per class and window, do).
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from data_loader.audio import AudioError, audio_info, fit_length, read_wave, stream_wave
from data_loader.corpus import SILENCE
from data_loader.data_loaders import FeatureTransform
from data_loader.features import FeatureParams, MelPower
from data_loader import integer_frontend as ife
from data_loader.frame_features import FrameScanner, scan_runs
from deploy.integer_engine import IntegerModel
from fixedpoint.graph import describe
from fixedpoint.layers import fixed_point_layers
from utils.errors import UserError
from utils.values import is_number
from app.restore import SolutionSource, normalization_of, restore_model
from model.detector import DetectorSettings, Detection, smooth_posteriors  # noqa: F401  (predict.py's API)
from model.detector import find_detections as _find_detections
from model.detector import POSTERIOR_FL, integer_detections, integer_posteriors

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from model.registry import KeywordModel
    from utils.checkpoint import Checkpoint

MAX_CLIP_RATIO = 1.2    # up to 1.2 s (for 1 s clips) is one clip, longer is scanned
WINDOW_BATCH = 256      # windows per feature/model batch: bounds memory on long recordings
WHOLE_READ_CLIPS = 2.0  # recordings up to 2 clip lengths are read whole, longer ones streamed
INTEGER_BATCH = 256     # windows per integer front end step (about 10 MB of int64 spectra)


class AudioHeader(Protocol):
    """What check_audio returns (soundfile's header of a file): its length and rate."""
    frames: int
    samplerate: int


def integer_engine(model: KeywordModel, params: FeatureParams) -> IntegerModel | None:
    """The IntegerModel of a fully quantized ``model`` on the integer front end, else None: such a
    model is run as the exported C runs it (integer codes, scores and detector)."""
    if params.frontend != "integer":
        return None
    groups = [(q.bits_inputs, q.bits_weights, q.bits_accumulator, q.bits_outputs)
              for q in (layer.quantization for layer in fixed_point_layers(model).values())]
    if not all(min(g) > 0 for g in groups):
        return None
    return IntegerModel.from_model(model)


class KeywordClassifier:
    """A restored model with the feature pipeline of its checkpoint. With the integer front end
    the features are the integer MFCCs of the clips' 16-bit PCM (data_loader.integer_frontend), and
    a fully quantized model also runs as integers (``engine``): the device's numbers."""

    def __init__(self, model: KeywordModel, ckpt: Checkpoint) -> None:
        self.model = model.eval()
        self.ckpt = ckpt
        self.params = FeatureParams.from_dict(ckpt.features)
        self.mel = MelPower(self.params)
        self.transform = FeatureTransform(self.params, *normalization_of(ckpt))
        self.class_names = ckpt.names()
        self.integer = self.params.frontend == "integer"
        self.engine = integer_engine(self.model, self.params)
        self.fold = None if self.engine is None else ife.fold(*normalization_of(ckpt), self.engine.input_bits,
                                                              self.engine.input_fl)
        outputs = describe(self.model).output.layer.weight.shape[0]
        if len(self.class_names) != outputs:
            raise UserError(f"the checkpoint names {len(self.class_names)} classes but its model has "
                            f"{outputs} outputs; is it a checkpoint of train.py?")

    @classmethod
    def from_checkpoint(cls, checkpoint: str | os.PathLike, quantization: SolutionSource | None = None,
                        pruning: SolutionSource | None = None, use_stored: bool = True) -> KeywordClassifier:
        model, ckpt = restore_model(checkpoint, quantization, pruning, use_stored)
        return cls(model, ckpt)

    @property
    def clip_samples(self) -> int:
        return self.params.clip_samples

    @property
    def sample_rate(self) -> int:
        return self.params.sample_rate

    def features(self, clips: ArrayLike) -> torch.Tensor:
        """(N, clip_samples) float32 samples -> normalised MFCC (N, 1, frames, n_mfcc)."""
        if self.integer:
            return self.transform.normalised(torch.from_numpy(ife.clip_features(np.asarray(clips), self.params)))
        clips = torch.tensor(np.asarray(clips, dtype=np.float32))   # a copy: windows are read-only views
        with torch.no_grad():
            return torch.cat([self.transform(self.mel(clips[i:i + WINDOW_BATCH]))
                              for i in range(0, len(clips), WINDOW_BATCH)])

    def posteriors_of_mfcc(self, mfcc: np.ndarray) -> np.ndarray:
        """Integer MFCCs (N, frames, n_mfcc) -> (N, classes) float64 probabilities: with ``engine``
        the integer detector's Q16 posteriors over 2^16 (model.detector), exact."""
        if self.engine is not None:
            codes = ife.input_codes(mfcc, self.fold)[:, None]
            scores = self.engine.logits_int(codes)
            return integer_posteriors(scores, self.engine.output_fl) / float(1 << POSTERIOR_FL)
        feats = self.transform.normalised(torch.from_numpy((mfcc / float(1 << ife.MFCC_FL)).astype(np.float32)))
        with torch.no_grad():
            return self.model(feats[:, None]).exp().double().numpy()

    def probabilities(self, clips: np.ndarray) -> np.ndarray:
        """(N, clip_samples) samples -> (N, classes) class probabilities, batched."""
        if self.integer:
            mfcc = ife.integer_mfcc(ife.to_pcm(np.asarray(clips)), self.params)
            return self.posteriors_of_mfcc(mfcc)
        out = []
        with torch.no_grad():
            for i in range(0, len(clips), WINDOW_BATCH):
                out.append(self.model(self.features(clips[i:i + WINDOW_BATCH])).exp())
        return torch.cat(out).double().numpy()


def stored_settings(ckpt: Checkpoint, threshold: float | None = None, smooth_ms: float | None = None,
                    hop_ms: float | None = None, refractory_ms: float | None = None) -> tuple[DetectorSettings, str]:
    """(DetectorSettings, where its threshold came from): the checkpoint's calibrated operating
    point where it has one, the defaults otherwise; a flag given overrides either."""
    base = DetectorSettings()
    stored = ckpt.detector or {}
    source = (f"calibrated for {stored['target_false_alarms_per_hour']:g} false alarm(s)/h on the validation "
              f"stream" if stored else "the default; the checkpoint carries no calibrated operating point")
    values = {"hop_ms": base.hop_ms, "smooth_ms": stored.get("smooth_ms", base.smooth_ms),
              "threshold": stored.get("threshold", base.threshold), "refractory_ms": base.refractory_ms}
    for key, value in (("threshold", threshold), ("smooth_ms", smooth_ms), ("hop_ms", hop_ms),
                       ("refractory_ms", refractory_ms)):
        if value is not None:
            if not is_number(value):   # argparse gives [] for "--x=--"
                raise UserError(f"--{key.replace('_', '-')} must be a number, got {value!r}")
            values[key] = float(value)
            if key == "threshold":
                source = "--threshold"
    return DetectorSettings(**values), source


def _user_error(e):
    return UserError(f"cannot read audio file {e}; give a WAV file (any sample rate)")


def check_audio(path: str | os.PathLike) -> AudioHeader:
    """The header of ``path`` (exists, readable, plausible rate); a UserError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"audio file not found: {path}")
    try:
        return audio_info(path)
    except AudioError as e:
        raise _user_error(e) from None


def load_audio(path: str | os.PathLike, sample_rate: int) -> np.ndarray:
    """Mono samples at ``sample_rate``; a missing or unreadable file is a UserError."""
    check_audio(path)
    try:
        return read_wave(path, sample_rate)
    except AudioError as e:
        raise _user_error(e) from None


def is_single_clip(n_samples: int, clip_samples: int) -> bool:
    return n_samples <= MAX_CLIP_RATIO * clip_samples


def windows(wave: np.ndarray, clip_samples: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """(starts, (W, clip_samples) windows) covering ``wave``, the tail zero padded."""
    n_windows = 1 + max(0, -(-(len(wave) - clip_samples) // hop))
    padded = np.zeros((n_windows - 1) * hop + clip_samples, dtype=np.float32)
    padded[:len(wave)] = wave
    starts = np.arange(n_windows) * hop
    view = np.lib.stride_tricks.sliding_window_view(padded, clip_samples)[::hop]
    return starts, view


def find_detections(posteriors: np.ndarray, starts_s: np.ndarray, settings: DetectorSettings,
                    class_names: Sequence[str]) -> list[Detection]:
    """model.detector.find_detections with the silence class never detected."""
    return _find_detections(posteriors, starts_s, settings, class_names, skip=(SILENCE,))


def classifier_detections(classifier: KeywordClassifier, posteriors: np.ndarray, starts_s: np.ndarray,
                          settings: DetectorSettings) -> list[Detection]:
    """The detections of ``classifier``'s window posteriors: an integer model's in integers
    (model.detector.integer_detections, what the exported C stream gives), else find_detections."""
    if classifier.engine is not None:
        q16 = np.rint(posteriors * (1 << POSTERIOR_FL)).astype(np.int64)
        return integer_detections(q16, settings, classifier.sample_rate, classifier.class_names, skip=(SILENCE,))
    return find_detections(posteriors, starts_s, settings, classifier.class_names)


@dataclass(frozen=True)
class ClipResult:
    duration_s: float
    label: int
    probabilities: np.ndarray   # (classes,)


@dataclass(frozen=True)
class ScanResult:
    duration_s: float
    starts_s: np.ndarray        # (W,) window starts
    posteriors: np.ndarray      # (W, classes) raw window probabilities
    detections: list


def classify(classifier: KeywordClassifier, wave: np.ndarray, settings: DetectorSettings) -> ClipResult | ScanResult:
    """A ClipResult for a clip, a ScanResult for a longer recording."""
    duration = len(wave) / classifier.sample_rate
    if is_single_clip(len(wave), classifier.clip_samples):
        probs = classifier.probabilities(fit_length(wave, classifier.clip_samples)[None])[0]
        return ClipResult(duration, int(np.argmax(probs)), probs)
    hop = settings.hop_samples(classifier.sample_rate)
    starts, views = windows(wave, classifier.clip_samples, hop)
    if classifier.integer:
        return scan_integer(classifier, [wave], settings)
    posteriors = classifier.probabilities(views)
    starts_s = starts / classifier.sample_rate
    return ScanResult(duration, starts_s, posteriors,
                      find_detections(posteriors, starts_s, settings, classifier.class_names))


def format_result(path: str | os.PathLike, result: ClipResult | ScanResult, class_names: Sequence[str],
                  settings: DetectorSettings, source: str = "the default") -> str:
    if isinstance(result, ClipResult):
        probs = "  ".join(f"{name} {p:.3f}" for name, p in zip(class_names, result.probabilities))
        return (f"{path}: {result.duration_s:.2f} s clip -> {class_names[result.label]} "
                f"(p={result.probabilities[result.label]:.3f}) | {probs}")
    head = (f"{path}: {result.duration_s:.2f} s, {len(result.starts_s)} windows every "
            f"{settings.hop_ms:g} ms: {len(result.detections)} keyword detection(s) at threshold "
            f"{settings.threshold:g} ({source})")
    rows = [f"  {d.start_s:7.2f} s  {d.name:<10} {d.score:.3f}" for d in result.detections]
    if rows:  # the column header says what the time is
        rows.insert(0, f"  {'start':>9}  {'keyword':<10} score  (start: where the 1 s window of the "
                       f"smoothed peak begins)")
    return "\n".join([head] + rows)


def scan_stream(classifier: KeywordClassifier, blocks: Iterable[np.ndarray], settings: DetectorSettings) -> ScanResult:
    """A ScanResult for a recording given as blocks of samples at the classifier's rate."""
    hop = settings.hop_samples(classifier.sample_rate)
    clip = classifier.clip_samples
    return _scan_result(classifier, blocks, settings, WINDOW_BATCH, lambda samples, n: classifier.probabilities(
        np.lib.stride_tricks.sliding_window_view(samples, clip)[::hop]))


def scan_integer(classifier: KeywordClassifier, blocks: Iterable[np.ndarray], settings: DetectorSettings) -> ScanResult:
    """scan_stream's result for an integer front end: every window's integer MFCCs (those of its
    16-bit PCM as a clip) computed frame by frame once (data_loader.integer_frontend.StreamFrames),
    in runs of INTEGER_BATCH windows, so memory does not grow with the recording."""
    frames = ife.StreamFrames(classifier.params, settings.hop_samples(classifier.sample_rate))
    return _scan_result(classifier, blocks, settings, INTEGER_BATCH, lambda samples, n: classifier.posteriors_of_mfcc(
        frames.window_mfcc(ife.to_pcm(samples), n)))


def _scan_result(classifier, blocks, settings, batch, posteriors_of):
    hop = settings.hop_samples(classifier.sample_rate)
    starts, posteriors, total = scan_runs(blocks, classifier.clip_samples, hop, posteriors_of, batch)
    starts_s = starts / classifier.sample_rate
    return ScanResult(total / classifier.sample_rate, starts_s, posteriors,
                      classifier_detections(classifier, posteriors, starts_s, settings))


def scan_frames(classifier: KeywordClassifier, blocks: Iterable[np.ndarray], settings: DetectorSettings) -> ScanResult:
    """scan_stream's result from features computed frame by frame once (data_loader.frame_features):
    the same windows and posteriors up to float rounding, several times faster; with the integer
    front end scan_integer's (exact)."""
    if classifier.integer:
        return scan_integer(classifier, blocks, settings)
    hop = settings.hop_samples(classifier.sample_rate)
    scanner = FrameScanner(classifier.params, classifier.transform.mean, classifier.transform.std, hop)
    starts, posteriors, total = scanner.scan(blocks, classifier.model)
    starts_s = starts / classifier.sample_rate
    return ScanResult(total / classifier.sample_rate, starts_s, posteriors,
                      find_detections(posteriors, starts_s, settings, classifier.class_names))


def classify_file(classifier: KeywordClassifier, path: str | os.PathLike,
                  settings: DetectorSettings) -> ClipResult | ScanResult:
    """classify() of a file: short ones are read whole, long ones streamed in blocks."""
    info = check_audio(path)
    if info.frames <= WHOLE_READ_CLIPS * classifier.clip_samples * info.samplerate / classifier.sample_rate:
        return classify(classifier, load_audio(path, classifier.sample_rate), settings)
    try:
        return scan_frames(classifier, stream_wave(path, classifier.sample_rate), settings)
    except AudioError as e:
        raise _user_error(e) from None


def predict_files(checkpoint: str | os.PathLike, audio_paths: Sequence[str | os.PathLike],
                  quantization: SolutionSource | None = None, pruning: SolutionSource | None = None,
                  flags: Mapping[str, float | None] | None = None, use_stored: bool = True
                  ) -> tuple[KeywordClassifier, DetectorSettings, str, list[tuple[str | os.PathLike, ClipResult | ScanResult]]]:

    """(classifier, settings, threshold source, [(path, result)]) for every file; the detector is
    the checkpoint's calibrated operating point unless ``flags`` (DetectorSettings field ->
    value or None) say otherwise. Every file's header is checked before any is classified, and
    nothing is printed before all are (a bad block late in a recording is still an error)."""
    classifier = KeywordClassifier.from_checkpoint(checkpoint, quantization, pruning, use_stored)
    settings, source = stored_settings(classifier.ckpt, **(flags or {}))
    settings.validate(1000.0 * classifier.clip_samples / classifier.sample_rate)
    for path in audio_paths:
        check_audio(path)
    return classifier, settings, source, [(path, classify_file(classifier, path, settings))
                                          for path in audio_paths]
