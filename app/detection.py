"""What predict.py does: classify WAV files of any sample rate and length with a trained model.

A recording of at most ``MAX_CLIP_RATIO`` clip lengths is one clip: it is padded or cropped to one
clip (centred) exactly as training clips are, and gets one class and a probability per class.

A longer recording is scanned with a sliding window of one clip length every ``hop_ms``. Each
window is treated as a training clip of its own: its own STFT (centred, zero padded at the window
edges), its own ``top_db`` floor, then the checkpoint's MFCC normalisation. Features of a window
therefore equal those of the same samples saved as a clip and loaded by the data loader; slicing
one long spectrogram would differ at the window edges and in the dB floor. The tail is padded
with zeros so the last samples are inside a window.

A spoken word is inside many overlapping windows, so window posteriors become detections in
three steps: a centred moving average over ``smooth_ms`` of windows (one window's glitch does
not fire); for every keyword, each run of windows where it is the most probable class with at
least ``threshold`` gives one candidate at its peak; candidates closer than ``refractory_ms`` are
suppressed in favour of the strongest (one word, one detection, even when neighbouring windows
prefer another keyword). A detection's time is the start of its peak window: the one-clip
stretch that best contains the word.

A recording longer than WHOLE_READ_CLIPS clip lengths is never held in memory: it is read,
resampled and scanned block by block (data_loader.audio.stream_wave), in batches of exactly
WINDOW_BATCH windows as the whole-file scan makes them, so its posteriors are the same numbers and
memory does not grow with its length (only the posteriors, 8 bytes per class and window, do).
"""
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from data_loader.audio import AudioError, audio_info, fit_length, read_wave, stream_wave
from data_loader.corpus import SILENCE
from data_loader.data_loaders import FeatureTransform
from data_loader.features import FeatureParams, MelPower
from fixedpoint.graph import describe
from utils.errors import UserError
from app.restore import normalization_of, restore_model

MAX_CLIP_RATIO = 1.2    # up to 1.2 s (for 1 s clips) is one clip, longer is scanned
WINDOW_BATCH = 256      # windows per feature/model batch: bounds memory on long recordings
WHOLE_READ_CLIPS = 2.0  # recordings up to 2 clip lengths are read whole, longer ones streamed


MAX_SPAN_MS = 60_000.0   # --smooth-ms / --refractory-ms: a minute (the smoothing buffer grows with it)


@dataclass(frozen=True)
class DetectorSettings:
    hop_ms: float = 100.0
    smooth_ms: float = 300.0    # span of windows averaged (centred): 3 windows at the default hop
    threshold: float = 0.5      # smoothed keyword probability to fire
    refractory_ms: float = 1000.0

    def validate(self, clip_ms):
        for flag, value in (("--hop-ms", self.hop_ms), ("--smooth-ms", self.smooth_ms),
                            ("--threshold", self.threshold), ("--refractory-ms", self.refractory_ms)):
            if not math.isfinite(value):
                raise UserError(f"{flag} must be a finite number, got {value:g}")
        if not 0 < self.hop_ms <= clip_ms:
            raise UserError(f"--hop-ms must be above 0 and at most the window length "
                            f"({clip_ms:g} ms), got {self.hop_ms:g}")
        if not 0 <= self.smooth_ms <= MAX_SPAN_MS:
            raise UserError(f"--smooth-ms must be >= 0 (0 = no smoothing) and at most {MAX_SPAN_MS:g}, got {self.smooth_ms:g}")
        if not 0 < self.threshold <= 1:
            raise UserError(f"--threshold is a probability in (0, 1], got {self.threshold:g}")
        if not 0 <= self.refractory_ms <= MAX_SPAN_MS:
            raise UserError(f"--refractory-ms must be >= 0 and at most {MAX_SPAN_MS:g}, got {self.refractory_ms:g}")

    @property
    def smooth_windows(self):
        """The odd number of windows nearest to smooth_ms / hop_ms (odd: centred on a window)."""
        return max(1, 2 * math.floor((self.smooth_ms / self.hop_ms - 1) / 2 + 0.5) + 1)


@dataclass(frozen=True)
class Detection:
    start_s: float      # start of the peak window, seconds from the start of the recording
    label: int
    name: str
    score: float        # smoothed probability at the peak


class KeywordClassifier:
    """A restored model with the feature pipeline of its checkpoint."""

    def __init__(self, model, ckpt):
        self.model = model.eval()
        self.params = FeatureParams.from_dict(ckpt.features)
        self.mel = MelPower(self.params)
        self.transform = FeatureTransform(self.params, *normalization_of(ckpt))
        self.class_names = ckpt.names()
        outputs = describe(self.model).output.layer.weight.shape[0]
        if len(self.class_names) != outputs:
            raise UserError(f"the checkpoint names {len(self.class_names)} classes but its model has "
                            f"{outputs} outputs; is it a checkpoint of train.py?")

    @classmethod
    def from_checkpoint(cls, checkpoint, quantization=None, pruning=None, use_stored=True):
        model, ckpt = restore_model(checkpoint, quantization, pruning, use_stored)
        return cls(model, ckpt)

    @property
    def clip_samples(self):
        return self.params.clip_samples

    @property
    def sample_rate(self):
        return self.params.sample_rate

    def features(self, clips):
        """(N, clip_samples) float32 samples -> normalised MFCC (N, 1, frames, n_mfcc)."""
        clips = torch.tensor(np.asarray(clips, dtype=np.float32))   # a copy: windows are read-only views
        with torch.no_grad():
            return torch.cat([self.transform(self.mel(clips[i:i + WINDOW_BATCH]))
                              for i in range(0, len(clips), WINDOW_BATCH)])

    def probabilities(self, clips):
        """(N, clip_samples) samples -> (N, classes) class probabilities, batched."""
        out = []
        with torch.no_grad():
            for i in range(0, len(clips), WINDOW_BATCH):
                out.append(self.model(self.features(clips[i:i + WINDOW_BATCH])).exp())
        return torch.cat(out).double().numpy()


def _user_error(e):
    return UserError(f"cannot read audio file {e}; give a WAV file (any sample rate)")


def check_audio(path):
    """The header of ``path`` (exists, readable, plausible rate); a UserError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"audio file not found: {path}")
    try:
        return audio_info(path)
    except AudioError as e:
        raise _user_error(e) from None


def load_audio(path, sample_rate):
    """Mono samples at ``sample_rate``; a missing or unreadable file is a UserError."""
    check_audio(path)
    try:
        return read_wave(path, sample_rate)
    except AudioError as e:
        raise _user_error(e) from None


def is_single_clip(n_samples, clip_samples):
    return n_samples <= MAX_CLIP_RATIO * clip_samples


def windows(wave, clip_samples, hop):
    """(starts, (W, clip_samples) windows) covering ``wave``, the tail zero padded."""
    n_windows = 1 + max(0, -(-(len(wave) - clip_samples) // hop))
    padded = np.zeros((n_windows - 1) * hop + clip_samples, dtype=np.float32)
    padded[:len(wave)] = wave
    starts = np.arange(n_windows) * hop
    view = np.lib.stride_tricks.sliding_window_view(padded, clip_samples)[::hop]
    return starts, view


def smooth_posteriors(posteriors, width):
    """Centred moving average over an odd ``width`` of windows; at the ends over the windows that
    exist."""
    if width <= 1:
        return posteriors
    kernel = np.ones(width)
    pad = ((width // 2, width // 2), (0, 0))
    sums = np.stack([np.convolve(col, kernel, mode="valid")
                     for col in np.pad(posteriors, pad).T], axis=1)
    counts = np.convolve(np.pad(np.ones(len(posteriors)), pad[0]), kernel, mode="valid")
    return sums / counts[:, None]


def find_detections(posteriors, starts_s, settings, class_names):
    """Keyword detections (time-sorted) from per-window posteriors (W, classes); class 0 is
    'not a keyword' and never detected, nor is a silence class."""
    smoothed = smooth_posteriors(posteriors, settings.smooth_windows)
    best = smoothed.argmax(axis=1)
    candidates = []
    for label in range(1, smoothed.shape[1]):
        if class_names[label] == SILENCE:
            continue
        active = (best == label) & (smoothed[:, label] >= settings.threshold)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], active.astype(np.int8), [0]])))
        for begin, end in zip(edges[0::2], edges[1::2]):
            peak = begin + int(np.argmax(smoothed[begin:end, label]))
            candidates.append(Detection(float(starts_s[peak]), label, class_names[label],
                                        float(smoothed[peak, label])))
    kept = []
    for det in sorted(candidates, key=lambda d: -d.score):
        if all(abs(det.start_s - k.start_s) * 1000.0 >= settings.refractory_ms for k in kept):
            kept.append(det)
    return sorted(kept, key=lambda d: d.start_s)


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


def classify(classifier, wave, settings):
    """A ClipResult for a clip, a ScanResult for a longer recording."""
    duration = len(wave) / classifier.sample_rate
    if is_single_clip(len(wave), classifier.clip_samples):
        probs = classifier.probabilities(fit_length(wave, classifier.clip_samples)[None])[0]
        return ClipResult(duration, int(np.argmax(probs)), probs)
    hop = max(1, int(round(settings.hop_ms * classifier.sample_rate / 1000.0)))
    starts, views = windows(wave, classifier.clip_samples, hop)
    posteriors = classifier.probabilities(views)
    starts_s = starts / classifier.sample_rate
    return ScanResult(duration, starts_s, posteriors,
                      find_detections(posteriors, starts_s, settings, classifier.class_names))


def format_result(path, result, class_names, settings):
    if isinstance(result, ClipResult):
        probs = "  ".join(f"{name} {p:.3f}" for name, p in zip(class_names, result.probabilities))
        return (f"{path}: {result.duration_s:.2f} s clip -> {class_names[result.label]} "
                f"(p={result.probabilities[result.label]:.3f}) | {probs}")
    head = (f"{path}: {result.duration_s:.2f} s, {len(result.starts_s)} windows every "
            f"{settings.hop_ms:g} ms: {len(result.detections)} keyword detection(s)")
    rows = [f"  {d.start_s:7.2f} s  {d.name:<10} {d.score:.3f}" for d in result.detections]
    if rows:  # the column header says what the time is
        rows.insert(0, f"  {'start':>9}  {'keyword':<10} score  (start: where the 1 s window of the "
                       f"smoothed peak begins)")
    return "\n".join([head] + rows)


def _window_batches(blocks, clip_samples, hop):
    """(starts, windows) batches of WINDOW_BATCH windows (the last one shorter) over a recording
    given as sample blocks: the same windows, in the same batches, as windows() of the whole
    recording, holding at most about one batch of samples at a time. Returns the total sample
    count when exhausted (StopIteration.value)."""
    span = (WINDOW_BATCH - 1) * hop + clip_samples
    pending, first, total = np.zeros(0, dtype=np.float32), 0, 0
    for block in blocks:
        total += len(block)
        pending = np.concatenate([pending, block])
        while len(pending) >= span:
            yield first + np.arange(WINDOW_BATCH) * hop, \
                np.lib.stride_tricks.sliding_window_view(pending[:span], clip_samples)[::hop]
            pending = pending[WINDOW_BATCH * hop:]
            first += WINDOW_BATCH * hop
    n_windows = 1 + max(0, -(-(total - clip_samples) // hop))
    remaining = n_windows - first // hop
    if remaining > 0:
        padded = np.zeros((remaining - 1) * hop + clip_samples, dtype=np.float32)
        padded[:len(pending)] = pending[:len(padded)]
        yield first + np.arange(remaining) * hop, np.lib.stride_tricks.sliding_window_view(padded, clip_samples)[::hop]
    return total


def scan_stream(classifier, blocks, settings):
    """A ScanResult for a recording given as blocks of samples at the classifier's rate."""
    hop = max(1, int(round(settings.hop_ms * classifier.sample_rate / 1000.0)))
    batches = _window_batches(blocks, classifier.clip_samples, hop)
    starts, posteriors = [], []
    while True:
        try:
            batch_starts, views = next(batches)
        except StopIteration as done:
            total = done.value
            break
        starts.append(batch_starts)
        posteriors.append(classifier.probabilities(views))
    starts_s = np.concatenate(starts) / classifier.sample_rate
    posteriors = np.concatenate(posteriors)
    return ScanResult(total / classifier.sample_rate, starts_s, posteriors,
                      find_detections(posteriors, starts_s, settings, classifier.class_names))


def classify_file(classifier, path, settings):
    """classify() of a file: short ones are read whole, long ones streamed in blocks."""
    info = check_audio(path)
    if info.frames <= WHOLE_READ_CLIPS * classifier.clip_samples * info.samplerate / classifier.sample_rate:
        return classify(classifier, load_audio(path, classifier.sample_rate), settings)
    try:
        return scan_stream(classifier, stream_wave(path, classifier.sample_rate), settings)
    except AudioError as e:
        raise _user_error(e) from None


def predict_files(checkpoint, audio_paths, quantization=None, pruning=None, settings=DetectorSettings(),
                  use_stored=True):
    """(path, result) for every file; every file's header is checked before any is classified,
    and nothing is printed before all are (a bad block late in a recording is still an error)."""
    classifier = KeywordClassifier.from_checkpoint(checkpoint, quantization, pruning, use_stored)
    settings.validate(1000.0 * classifier.clip_samples / classifier.sample_rate)
    for path in audio_paths:
        check_audio(path)
    return classifier, [(path, classify_file(classifier, path, settings)) for path in audio_paths]
