"""The integer front end's real-input FFT against numpy.fft.rfft / n_fft, in integer units (a
frame's largest sample has 2^29 of them): the largest and the mean complex error over every bin.

    python3 bench/fft_error.py --data-dir ../shared/data/kws_corpus

The frames are those tests/test_integer_frontend.py checks: 500 full-scale random frames and 8
extreme ones (DC, Nyquist, square waves, an impulse), and every frame of the first 40 test clips
of config_lenet5_keywords.yml, windowed and block-shifted as the front end does.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data_loader import integer_frontend as ife  # noqa: E402
from data_loader.audio import fit_length, read_wave  # noqa: E402
from data_loader.corpus import scan_corpus  # noqa: E402
from data_loader.features import FeatureParams  # noqa: E402
from utils.yaml_reader import loads  # noqa: E402

CONFIG = "config_lenet5_keywords.yml"


def synthetic_frames(n_fft: int) -> np.ndarray:
    """500 full-scale random frames and 8 extreme ones, int64 (508, n_fft)."""
    full = (1 << ife.SAMPLE_BITS) - 1
    noise = np.random.default_rng(0).integers(-full, full + 1, size=(500, n_fft))
    k = np.arange(n_fft)
    extreme = [np.full(n_fft, full), np.full(n_fft, -full), np.where(k % 2, full, -full),
               np.where(k % 4 < 2, full, -full), np.where(k == 3, full, 0)]
    extreme += [np.where(np.cos(2 * np.pi * k * b / n_fft) >= 0, full, -full) for b in (1, 37, 100)]
    return np.concatenate([noise, np.stack(extreme)])


def fft_error(frames: np.ndarray, t: ife.Tables) -> np.ndarray:
    """|integer bin - rfft / n_fft| of every bin of every frame."""
    re, im = ife.real_fft(frames, t)
    return np.abs(re + 1j * im - np.fft.rfft(frames.astype(np.float64), axis=1) / t.n_fft)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/kws_corpus")
    args = parser.parse_args()
    cfg = loads((ROOT / CONFIG).read_text())["data_loader"]["args"]
    params = FeatureParams.from_dict({**cfg.get("features", {}), "frontend": "integer"})
    t = ife.tables(params)
    corpus = scan_corpus(args.data_dir, cfg.get("keywords", ("one", "two", "three")))
    pcm = ife.to_pcm(np.stack([fit_length(read_wave(corpus.root / rel, params.sample_rate, 10.0), params.clip_samples)
                               for rel, _ in corpus.clips["test"][:40]]))
    real, _ = ife.block_frames(ife._frames(pcm, t).reshape(-1, t.win_length), t)
    print(f"{'frames':28s} {'count':>6s} {'max':>6s} {'mean':>6s}")
    for name, frames in (("random + extreme", synthetic_frames(t.n_fft)), ("test clips (first 40)", real)):
        error = fft_error(frames, t)
        print(f"{name:28s} {len(frames):6d} {error.max():6.2f} {error.mean():6.3f}")


if __name__ == "__main__":
    main()
