"""The integer MFCC front end against the float MFCC on every clip of a corpus's test split.

    python3 bench/frontend_error.py --data-dir ../shared/data/kws_corpus

For the feature settings of config_lenet5_keywords.yml (13 x 100) and config_lenet5_sc12.yml
(10 x 49): |integer - float| in units of each coefficient's standard deviation (the normalised
units the model reads), mean, per coefficient (worst), 99th percentile and maximum, and the
seconds the numpy reference takes.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data_loader import integer_frontend as ife  # noqa: E402
from data_loader.audio import fit_length, read_wave  # noqa: E402
from data_loader.corpus import scan_corpus  # noqa: E402
from data_loader.features import FeatureParams, Mfcc  # noqa: E402
from utils.yaml_reader import loads  # noqa: E402

CONFIGS = ("config_lenet5_keywords.yml", "config_lenet5_sc12.yml")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/kws_corpus")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{'config':30s} {'shape':>7s} {'clips':>6s} {'mean':>7s} {'worst k':>8s} {'p99':>7s} {'max':>6s} {'s':>6s}")
    for name in CONFIGS:
        cfg = loads((ROOT / name).read_text())["data_loader"]["args"]
        params = FeatureParams.from_dict({**cfg.get("features", {}), "frontend": "integer"})
        corpus = scan_corpus(args.data_dir, cfg.get("keywords", ("one", "two", "three")))
        pcm = ife.to_pcm(np.stack([fit_length(read_wave(corpus.root / rel, params.sample_rate, 10.0),
                                              params.clip_samples) for rel, _ in corpus.clips["test"]]))
        start = time.perf_counter()
        integer = ife.integer_mfcc(pcm, params) / 2.0 ** ife.MFCC_FL
        seconds = time.perf_counter() - start
        with torch.no_grad():
            floating = Mfcc(params)(torch.from_numpy(pcm.astype(np.float32) / ife.PCM_SCALE)).squeeze(1).numpy()
        error = np.abs(integer - floating) / floating.reshape(-1, params.n_mfcc).std(0)
        shape = f"{params.n_mfcc}x{params.frames}"
        print(f"{name:30s} {shape:>7s} {len(pcm):6d} {error.mean():7.4f} "
              f"{error.mean(axis=(0, 1)).max():8.4f} {np.quantile(error, 0.99):7.4f} {error.max():6.3f} {seconds:6.1f}")


if __name__ == "__main__":
    main()
