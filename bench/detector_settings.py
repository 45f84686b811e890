"""Does the detector's hop or smoothing span move the misses at a false-alarm rate?

    python3 bench/detector_settings.py -r RUN_A/model_best.pth RUN_B/model_best.pth ... --data-dir ../shared/data/kws_corpus

For each checkpoint, the test stream (test.py --stream's) is scanned once per hop (100 ms, the
default, and 50 ms); every smoothing span is then applied to the same posteriors, and the table
gives the misses at the best threshold meeting 1 and 10 false alarms per hour, worst and mean over
the checkpoints (several seeds of one config). A span of one hop is no smoothing. The calibration
(app/calibration.py) chooses the threshold only; this is the measurement that says whether it
should choose the span too.
"""
import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from utils import atomic  # noqa: E402

HOPS_MS = (100.0, 50.0)
SPANS_MS = (None, 200.0, 300.0, 500.0)   # None: one hop (no smoothing)
RATES = (1.0, 10.0)


def measure(checkpoint, data_dir, hours):
    """{(hop, span): {rate: miss rate}} of one checkpoint on the test stream."""
    from app.detection import KeywordClassifier, stored_settings
    from app.stream_test import evaluate, frame_scan, split_stream
    from data_loader.stream import render_blocks
    from model.stream_metric import misses_at
    classifier = KeywordClassifier.from_checkpoint(checkpoint)
    stored, _ = stored_settings(classifier.ckpt)
    plan = split_stream(classifier, classifier.ckpt, data_dir, "test", hours, 0)
    out = {}
    for hop in HOPS_MS:
        at_hop = dataclasses.replace(stored, hop_ms=hop)
        starts, posteriors, _ = frame_scan(classifier, render_blocks(plan), at_hop)
        for span in SPANS_MS:
            settings = dataclasses.replace(at_hop, smooth_ms=span or hop)
            result = evaluate(posteriors, starts, settings, classifier.class_names, plan.labels,
                              plan.background_s / 3600, RATES[0])
            out[(hop, span or hop)] = {rate: misses_at(result["scores"], rate) for rate in RATES}
    return plan, out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-r", "--resume", nargs="+", required=True, help="checkpoints (one per seed)")
    parser.add_argument("--data-dir", default=None, help="corpus (default: the checkpoints')")
    parser.add_argument("--hours", type=float, default=1.0, help="non-keyword hours of the stream")
    parser.add_argument("--out", default="saved/bench/detector_settings.yml", help="YAML of the table")
    args = parser.parse_args()
    runs = []
    for i, checkpoint in enumerate(args.resume, 1):
        print(f"[{i}/{len(args.resume)}] {checkpoint}", flush=True)
        plan, figures = measure(checkpoint, args.data_dir, args.hours)
        runs.append(figures)
    print(f"test stream: {plan.duration_s / 3600:.2f} h, {plan.keywords} keywords; misses at the best threshold "
          f"meeting the rate, worst / mean over {len(runs)} checkpoint(s)")
    print(f"{'hop ms':>7}{'span ms':>8}" + "".join(f"{f'miss@{r:g}/h':>16}" for r in RATES))
    rows = []
    for key in runs[0]:
        cells = {rate: [100 * run[key][rate] for run in runs] for rate in RATES}
        print(f"{key[0]:>7.0f}{key[1]:>8.0f}" + "".join(f"{max(v):>8.1f}/{np.mean(v):<7.1f}" for v in cells.values()))
        rows.append({"hop_ms": key[0], "smooth_ms": key[1],
                     **{f"miss_at_{rate:g}_worst": max(v) for rate, v in cells.items()},
                     **{f"miss_at_{rate:g}_mean": float(np.mean(v)) for rate, v in cells.items()}})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic.write_yaml(args.out, {"checkpoints": [str(c) for c in args.resume], "stream_hours": plan.duration_s / 3600,
                                 "keywords": plan.keywords, "rows": rows})


if __name__ == "__main__":
    main()
