"""Window features of a long recording from one STFT of it, frame by frame.

The per-window scan (app/detection.py) computes every window's features as those of a clip of its
own: its STFT, centred and zero padded at the window's edges, its own ``top_db`` floor, the MFCC
normalisation. Consecutive windows (hop a multiple of the STFT hop) share almost all their
frames, so :class:`FrameScanner` computes the STFT, mel power, dB and MFCC of every frame of the
recording once and slices each window's frames from that sequence, with two corrections that
keep the features those of the per-window scan:

- *edge frames*: a frame whose FFT support reaches past the window's first or last sample sees
  the window's zero padding in the per-window scan, and the neighbouring samples in the
  recording; those frames (2 at the start and 1 at the end of a 100-frame window at the default
  parameters) are computed per window from the window's samples;
- *the dB floor*: the per-window scan clamps dB values below the window's peak minus ``top_db``;
  the DCT is linear, so a window whose dB values all lie within ``top_db`` of its peak has the
  MFCCs of its frames unchanged, and only a window where the floor clips is recomputed from its
  clamped dB values. The mel power floor (``floor_db``) is per frame: nothing to correct.

The recording arrives in blocks and is processed in segments of SEGMENT_WINDOWS windows (their
frames, and the model applied to them in batches of MODEL_BATCH), so memory does not grow with
its length. The remaining differences to the per-window scan are float rounding (matrix
products over different shapes sum in a different order): well below 1e-4 on the features.
"""
from collections.abc import Callable, Generator, Iterable

import numpy as np
import torch
from numpy.typing import ArrayLike

from data_loader.features import FeatureParams, MelPower, MfccFromMel
from utils.errors import UserError

SEGMENT_WINDOWS = 1024  # windows whose frames are computed together
MODEL_BATCH = 1024      # windows per model call: a whole segment


def segments(blocks: Iterable[np.ndarray], clip_samples: int, hop: int,
             batch: int = SEGMENT_WINDOWS) -> Generator[tuple[int, int, np.ndarray], None, int]:
    """(first window, windows, samples) for consecutive runs of ``batch`` windows every ``hop``
    samples over a recording given as blocks, the tail zero padded as the per-window scan pads it
    (app.detection.windows); ``samples`` spans the run's windows. Returns the total sample count
    when exhausted (StopIteration.value)."""
    span = (batch - 1) * hop + clip_samples
    pending, first, total = np.zeros(0, dtype=np.float32), 0, 0
    for block in blocks:
        total += len(block)
        pending = np.concatenate([pending, np.asarray(block, dtype=np.float32)])
        while len(pending) >= span:
            yield first, batch, pending[:span]
            pending = pending[batch * hop:]
            first += batch
    n_windows = 1 + max(0, -(-(total - clip_samples) // hop))
    remaining = n_windows - first
    if remaining > 0:
        padded = np.zeros((remaining - 1) * hop + clip_samples, dtype=np.float32)
        padded[:len(pending)] = pending[:len(padded)]
        yield first, remaining, padded
    return total


def scan_runs(blocks: Iterable[np.ndarray], clip_samples: int, hop: int,
              posteriors_of: Callable[[np.ndarray, int], np.ndarray],
              batch: int = SEGMENT_WINDOWS) -> tuple[np.ndarray, np.ndarray, int]:
    """(window starts in samples, (W, classes) posteriors, total samples) of a recording given as
    sample blocks: ``posteriors_of(samples, n)`` scores each run of ``segments``."""
    starts, posteriors = [], []
    runs = segments(blocks, clip_samples, hop, batch=batch)
    while True:
        try:
            first, n, samples = next(runs)
        except StopIteration as done:
            total = done.value
            break
        posteriors.append(posteriors_of(samples, n))
        starts.append((first + np.arange(n)) * hop)
    return np.concatenate(starts), np.concatenate(posteriors), total


class FrameScanner:
    """Normalised MFCC windows, and a model's posteriors, of a recording from one pass of frames."""

    def __init__(self, params: FeatureParams, mean: ArrayLike, std: ArrayLike, hop_samples: int) -> None:
        p = params
        if hop_samples % p.hop_length:
            raise UserError(f"the frame-wise scan needs a window hop that is a multiple of the STFT hop "
                            f"({1000.0 * p.hop_length / p.sample_rate:g} ms), got "
                            f"{1000.0 * hop_samples / p.sample_rate:g} ms")
        self.params, self.hop = p, hop_samples
        self.step = hop_samples // p.hop_length
        self.mel = MelPower(p)
        self.mfcc = MfccFromMel(p)
        self.mean = torch.as_tensor(mean, dtype=torch.float32)
        self.std = torch.as_tensor(std, dtype=torch.float32)
        half = p.n_fft // 2
        # frames whose FFT support leaves the window: they see its zero padding
        self.edges = [j for j in range(p.frames)
                      if j * p.hop_length - half < 0 or j * p.hop_length + half > p.clip_samples]
        offsets = np.array(self.edges)[:, None] * p.hop_length - half + np.arange(p.n_fft)[None, :]
        self._edge_offsets = offsets                                  # (E, n_fft) relative to the window
        self._edge_valid = (offsets >= 0) & (offsets < p.clip_samples)
        left = (p.n_fft - p.win_length) // 2
        self._frame_window = torch.zeros(p.n_fft)
        self._frame_window[left:left + p.win_length] = self.mel.window
        self.recomputed = 0      # windows whose dB floor clipped (recomputed), over all scans
        self.windows = 0

    def _power_frames(self, frames):
        """(M, n_fft) frame samples -> (M, n_mels) mel power, as MelPower computes one frame (the
        STFT's window centred in n_fft, as torch.stft pads a shorter one), in one FFT and one GEMM."""
        spec = torch.fft.rfft(frames * self._frame_window)
        return torch.matmul(spec.real ** 2 + spec.imag ** 2, self.mel.filterbank.T)

    def _db(self, mel):
        return torch.clamp(mel, min=self.mfcc.amin).log10_().mul_(10.0)

    def features(self, samples: np.ndarray, n_windows: int) -> torch.Tensor:
        """(n_windows, 1, frames, n_mfcc) normalised MFCCs of the windows every ``hop`` samples of
        ``samples`` (which spans them exactly)."""
        p = self.params
        x = torch.from_numpy(np.ascontiguousarray(samples))
        with torch.no_grad():
            spec = torch.stft(x, n_fft=p.n_fft, hop_length=p.hop_length, win_length=p.win_length,
                              window=self.mel.window, center=True, pad_mode="constant", return_complex=True)
            n_frames = (n_windows - 1) * self.step + p.frames
            power = spec.real[:, :n_frames] ** 2 + spec.imag[:, :n_frames] ** 2
            db = self._db(torch.matmul(self.mel.filterbank, power)).T.contiguous()  # (F, n_mels)
            starts = np.arange(n_windows) * self.hop
            idx = starts[:, None, None] + self._edge_offsets[None]                 # (W, E, n_fft)
            edge_samples = np.where(self._edge_valid[None], samples[np.minimum(idx, len(samples) - 1)], 0)
            edge_db = self._db(self._power_frames(torch.from_numpy(
                edge_samples.reshape(-1, p.n_fft).astype(np.float32)))).reshape(n_windows, len(self.edges), -1)
            frame_index = torch.from_numpy(np.arange(n_windows)[:, None] * self.step + np.arange(p.frames)[None])
            cepstra = torch.matmul(db, self.mfcc.dct)[frame_index]                # (W, frames, n_mfcc)
            cepstra[:, self.edges] = torch.matmul(edge_db, self.mfcc.dct)
            if p.top_db is not None:
                hi, lo = db.amax(dim=1)[frame_index], db.amin(dim=1)[frame_index]  # (W, frames)
                hi[:, self.edges], lo[:, self.edges] = edge_db.amax(dim=2), edge_db.amin(dim=2)
                peak = hi.amax(dim=1)
                clips = torch.nonzero(lo.amin(dim=1) < peak - p.top_db).flatten()
                if len(clips):
                    window_db = db[frame_index[clips]]
                    window_db[:, self.edges] = edge_db[clips]
                    floor = (peak[clips] - p.top_db)[:, None, None]
                    cepstra[clips] = torch.matmul(torch.maximum(window_db, floor), self.mfcc.dct)
                self.recomputed += len(clips)
            self.windows += n_windows
            return cepstra.sub_(self.mean).div_(self.std).unsqueeze(1)

    def scan(self, blocks: Iterable[np.ndarray],
             model: Callable[[torch.Tensor], torch.Tensor]) -> tuple[np.ndarray, np.ndarray, int]:
        """(window starts in samples, (W, classes) float64 probabilities, total samples) of
        ``model`` (log-probabilities out) over a recording given as sample blocks."""
        def posteriors_of(samples: np.ndarray, n: int) -> np.ndarray:
            feats = self.features(samples, n)
            with torch.no_grad():
                return np.concatenate([model(feats[i:i + MODEL_BATCH]).exp().double().numpy()
                                       for i in range(0, n, MODEL_BATCH)])
        return scan_runs(blocks, self.params.clip_samples, self.hop, posteriors_of)
