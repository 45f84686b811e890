"""What limits a model on the test stream: its noise, its levels, or the words it confuses?

    python3 bench/stream_conditions.py -r RUN_A/model_best.pth RUN_B/model_best.pth ... --data-dir ../shared/data/kws_corpus

For each checkpoint (several seeds of one config), the test stream of test.py --stream is scanned
as built and again under changed conditions: without its background noise, with the noise 10 dB
lower, without noise under the keyword clips only, and with every clip at unit gain. The table
gives the misses at the best threshold meeting 1 and 10 false alarms per hour, worst / mean over
the checkpoints. If the stream without noise still misses many keywords at the target, what is
left is the words themselves: the second table counts, over the checkpoints, the word folders of
the clips under the loudest false alarms of the stream as built (test.py --stream's
``loudest_false_alarms``), the words a higher threshold must stay above.
"""
import collections
import dataclasses
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from detector_settings import (RATES, cells_row, cells_text, measure_each, print_head,  # noqa: E402
                               stream_bench_parser, worst_mean)
from utils import atomic  # noqa: E402


NOISE_DOWN_DB = 10.0


def conditions(plan):
    """{name: StreamPlan}: the test stream as built and under each changed condition (same clips,
    order, pauses and noise offsets; only gains change)."""
    def each(change):
        return dataclasses.replace(plan, events=tuple(change(e) for e in plan.events))
    down = 10 ** (-NOISE_DOWN_DB / 20)
    return {
        "as built": plan,
        "no noise": each(lambda e: dataclasses.replace(e, noise_gain=0.0)),
        f"noise {NOISE_DOWN_DB:g} dB lower": each(lambda e: dataclasses.replace(e, noise_gain=e.noise_gain * down)),
        "no noise under keywords": each(lambda e: dataclasses.replace(e, noise_gain=0.0) if e.label else e),
        "unit gain (same SNR)": each(lambda e: dataclasses.replace(e, gain=1.0, noise_gain=e.noise_gain / e.gain)),
    }


def measure(checkpoint, data_dir, hours):
    """({condition: {rate: miss rate}}, [word folder of each loudest false alarm]) of one checkpoint."""
    from app.detection import KeywordClassifier, stored_settings
    from app.stream_test import evaluate, frame_scan, split_stream
    from data_loader.stream import clip_under, render_blocks
    from model.stream_metric import misses_at
    classifier = KeywordClassifier.from_checkpoint(checkpoint)
    settings, _ = stored_settings(classifier.ckpt)
    plan = split_stream(classifier, classifier.ckpt, data_dir, "test", hours, 0)
    window_s = classifier.clip_samples / classifier.sample_rate
    out, words = {}, []
    for name, changed in conditions(plan).items():
        starts, posteriors, _ = frame_scan(classifier, render_blocks(changed), settings)
        result = evaluate(posteriors, starts, settings, classifier.class_names, changed.labels,
                          changed.background_s / 3600, RATES[0])
        out[name] = {rate: misses_at(result["scores"], rate) for rate in RATES}
        if changed is plan:
            for alarm in result["loudest"]:
                clip = clip_under(plan, alarm["time_s"], window_s)
                words.append(f"{'pause' if clip.startswith('pause') else clip.split('/')[0]} -> {alarm['word']}")
    return plan, out, words


def main():
    args = stream_bench_parser(__doc__, "saved/bench/stream_conditions.yml").parse_args()
    plan, results = measure_each(measure, args)
    runs, words = [r[0] for r in results], collections.Counter(w for r in results for w in r[1])
    print_head(plan, len(runs), f"{'condition':<26}")
    rows = []
    for name, cells in worst_mean(runs, RATES).items():
        print(f"{name:<26}" + cells_text(cells))
        rows.append({"condition": name, **cells_row(cells)})
    print(f"words under the loudest false alarms of the stream as built (clip's word -> word detected; "
          f"{sum(words.values())} over {len(runs)} checkpoint(s)):")
    print("  " + ", ".join(f"{w} {n}" for w, n in words.most_common()))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic.write_yaml(args.out, {"checkpoints": [str(c) for c in args.resume], "stream_hours": plan.duration_s / 3600,
                                 "keywords": plan.keywords, "rows": rows, "loudest_false_alarm_words": dict(words)})


if __name__ == "__main__":
    main()
