"""Does the detector's hop or smoothing span move the misses at a false-alarm rate?

    python3 bench/detector_settings.py -r RUN_A/model_best.pth RUN_B/model_best.pth ... --data-dir ../shared/data/kws_corpus

For each checkpoint, the test stream (test.py --stream's) is scanned once per hop (100 ms, the
default, and 50 ms); every smoothing span is then applied to the same posteriors, and the table
gives the misses at the best threshold meeting 1 and 10 false alarms per hour, worst and mean over
the checkpoints (several seeds of one config). A span of one hop is no smoothing. The calibration
(app/calibration.py) chooses the threshold only; this is the measurement that says whether it
should choose the span too.

It also says why the misses are high: at the stored settings, the median over each word's
keywords of the highest smoothed posterior of the right word near it (windows starting from
0.75 s before to 0.25 s after its onset), against the 99.99th percentile of the highest keyword
posterior in windows more than 1 s from every keyword (what a threshold for about one false
alarm an hour must stay above).
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
NEAR_S = (-0.75, 0.25)    # window starts around a keyword's onset where its word is in the window
FAR_S = 1.0               # windows this far from every keyword: background
BACKGROUND_QUANTILE = 0.9999


def measure(checkpoint, data_dir, hours):
    """{(hop, span): {rate: miss rate}} of one checkpoint on the test stream."""
    from app.detection import KeywordClassifier, stored_settings
    from app.stream_test import evaluate, frame_scan, split_stream
    from data_loader.stream import render_blocks
    from model.detector import smooth_posteriors
    from model.stream_metric import misses_at
    classifier = KeywordClassifier.from_checkpoint(checkpoint)
    stored, _ = stored_settings(classifier.ckpt)
    plan = split_stream(classifier, classifier.ckpt, data_dir, "test", hours, 0)
    out, peaks = {}, {}
    for hop in HOPS_MS:
        at_hop = dataclasses.replace(stored, hop_ms=hop)
        starts, posteriors, _ = frame_scan(classifier, render_blocks(plan), at_hop)
        for span in SPANS_MS:
            settings = dataclasses.replace(at_hop, smooth_ms=span or hop)
            result = evaluate(posteriors, starts, settings, classifier.class_names, plan.labels,
                              plan.background_s / 3600, RATES[0])
            out[(hop, span or hop)] = {rate: misses_at(result["scores"], rate) for rate in RATES}
        if hop == stored.hop_ms:
            peaks = posterior_peaks(smooth_posteriors(posteriors, stored.smooth_windows), starts,
                                    classifier.class_names, plan.labels)
    return plan, out, peaks


def posterior_peaks(smoothed, starts, class_names, labels):
    """{word: median peak posterior of the right word near its keywords, 'background': quantile}."""
    near = np.zeros(len(starts), dtype=bool)
    best = {}
    for onset, word in labels:
        around = (starts >= onset + NEAR_S[0]) & (starts <= onset + NEAR_S[1])
        best.setdefault(word, []).append(float(smoothed[around, class_names.index(word)].max()))
        near |= np.abs(starts - onset) <= FAR_S
    keywords = [class_names.index(w) for w in best]
    peaks = {w: float(np.median(v)) for w, v in sorted(best.items())}
    peaks["background"] = float(np.quantile(smoothed[~near][:, keywords].max(axis=1), BACKGROUND_QUANTILE))
    return peaks


def worst_mean(runs, rates):
    """{key: {rate: (worst, mean)}}: misses in % over ``runs`` (one {key: {rate: miss rate}} per checkpoint)."""
    table = {}
    for key in runs[0]:
        table[key] = {}
        for rate in rates:
            values = [100 * run[key][rate] for run in runs]
            table[key][rate] = (max(values), float(np.mean(values)))
    return table


def cells_text(cells):
    return "".join(f"{worst:>8.1f}/{mean:<7.1f}" for worst, mean in cells.values())


def cells_row(cells):
    return {**{f"miss_at_{rate:g}_worst": w for rate, (w, _) in cells.items()},
            **{f"miss_at_{rate:g}_mean": m for rate, (_, m) in cells.items()}}


def measure_each(measure, args):
    """(the stream plan, [the rest of ``measure``'s result per checkpoint of ``args.resume``])."""
    results = []
    for i, checkpoint in enumerate(args.resume, 1):
        print(f"[{i}/{len(args.resume)}] {checkpoint}", flush=True)
        plan, *rest = measure(checkpoint, args.data_dir, args.hours)
        results.append(rest)
    return plan, results


def print_head(plan, checkpoints, key_header):
    print(f"test stream: {plan.duration_s / 3600:.2f} h, {plan.keywords} keywords; misses at the best threshold "
          f"meeting the rate, worst / mean over {checkpoints} checkpoint(s)")
    print(key_header + "".join(f"{f'miss@{r:g}/h':>16}" for r in RATES))


def stream_bench_parser(doc, out):
    """The options of a bench over seed checkpoints on the test stream."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("-r", "--resume", nargs="+", required=True, help="checkpoints (one per seed)")
    parser.add_argument("--data-dir", default=None, help="corpus (default: the checkpoints')")
    parser.add_argument("--hours", type=float, default=1.0, help="non-keyword hours of the stream")
    parser.add_argument("--out", default=out, help="YAML of the tables")
    return parser


def main():
    args = stream_bench_parser(__doc__, "saved/bench/detector_settings.yml").parse_args()
    plan, results = measure_each(measure, args)
    runs, peak_rows = [r[0] for r in results], [r[1] for r in results]
    print_head(plan, len(runs), f"{'hop ms':>7}{'span ms':>8}")
    rows = []
    for key, cells in worst_mean(runs, RATES).items():
        print(f"{key[0]:>7.0f}{key[1]:>8.0f}" + cells_text(cells))
        rows.append({"hop_ms": key[0], "smooth_ms": key[1], **cells_row(cells)})
    print(f"at the stored settings, median peak posterior of the right word near its keywords, and the "
          f"{100 * BACKGROUND_QUANTILE:g}th percentile of the background's, per checkpoint:")
    for peaks in peak_rows:
        print("  " + "  ".join(f"{k} {v:.3f}" for k, v in peaks.items()))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic.write_yaml(args.out, {"checkpoints": [str(c) for c in args.resume], "stream_hours": plan.duration_s / 3600,
                                 "keywords": plan.keywords, "rows": rows, "posterior_peaks": peak_rows})


if __name__ == "__main__":
    main()
