"""Speed and memory of the detector on the hour-long test stream: frame-wise against per-window.

    python3 bench/stream_speed.py -r saved/models/<run>/model_best.pth --data-dir ../shared/data/kws_corpus

The stream (test.py --stream's, from the test split) is rendered once to a temporary file; each
scan then runs in a fresh process that reads it in 10 s blocks: ``frame`` is predict.py's scan
of a long recording (data_loader.frame_features: every STFT frame computed once), ``window`` the
per-window scan it replaced (every window's features computed as those of a clip of its own).
Reported per scan: wall and CPU seconds, real-time factor (stream seconds per wall second), peak
resident memory, and whether both give the same detections. One run, one machine: the ratio is
the figure to compare; ``--threads`` sets torch's threads in both.
"""
import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from utils import atomic  # noqa: E402

BLOCK_S = 10.0


def scan(checkpoint, samples_path, mode, threads):
    """In this process: scan the rendered stream with ``mode``; print a JSON line of figures."""
    import torch
    torch.set_num_threads(threads)
    from app.detection import DetectorSettings, KeywordClassifier, scan_frames, scan_stream
    classifier = KeywordClassifier.from_checkpoint(checkpoint)
    samples = np.load(samples_path, mmap_mode="r")
    block = int(BLOCK_S * classifier.sample_rate)
    blocks = (np.array(samples[i:i + block]) for i in range(0, len(samples), block))
    start, cpu = time.perf_counter(), time.process_time()
    result = (scan_frames if mode == "frame" else scan_stream)(classifier, blocks, DetectorSettings())
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(json.dumps({"mode": mode, "wall_s": wall, "cpu_s": cpu, "stream_s": result.duration_s,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "detections": [[round(d.start_s, 3), d.name] for d in result.detections]}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-r", "--resume", required=True, help="checkpoint (model_best.pth)")
    parser.add_argument("--data-dir", default=None, help="corpus (default: the checkpoint's)")
    parser.add_argument("--hours", type=float, default=1.0, help="non-keyword hours of the stream")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in each scan")
    parser.add_argument("--out", default="saved/bench/stream_speed.yml", help="YAML of the figures")
    parser.add_argument("--scan", nargs=2, metavar=("SAMPLES", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scan:
        return scan(args.resume, args.scan[0], args.scan[1], args.threads)
    from app.detection import KeywordClassifier
    from app.stream_test import split_stream
    from data_loader.stream import render_blocks
    classifier = KeywordClassifier.from_checkpoint(args.resume)
    plan = split_stream(classifier, classifier.ckpt, args.data_dir, "test", args.hours, 0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stream.npy"
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(plan.total_samples,))
        at = 0
        for block in render_blocks(plan):
            out[at:at + len(block)] = block
            at += len(block)
        out.flush()
        del out
        figures = {}
        for mode in ("window", "frame"):
            proc = subprocess.run([sys.executable, __file__, "-r", str(args.resume), "--threads", str(args.threads),
                                   "--scan", str(path), mode], capture_output=True, text=True, check=True)
            figures[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    same = figures["frame"].pop("detections") == figures["window"].pop("detections")
    rows = []
    for mode, f in figures.items():
        f["realtime"] = f["stream_s"] / f["wall_s"]
        rows.append(f"{mode:<8}{f['wall_s']:>9.1f}{f['cpu_s']:>9.1f}{f['realtime']:>11.0f}x{f['peak_rss_mb']:>10.0f}")
    speedup = figures["window"]["wall_s"] / figures["frame"]["wall_s"]
    print(f"stream: {plan.duration_s / 3600:.2f} h ({plan.keywords} keywords), {args.threads} torch thread(s)")
    print(f"{'scan':<8}{'wall s':>9}{'cpu s':>9}{'real time':>12}{'peak MB':>10}")
    print("\n".join(rows))
    print(f"frame-wise / per-window: {speedup:.2f}x faster; detections {'identical' if same else 'DIFFER'}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic.write_yaml(args.out, {"checkpoint": str(args.resume), "stream_hours": plan.duration_s / 3600,
                                 "threads": args.threads, "scans": figures, "speedup": speedup,
                                 "same_detections": same})


if __name__ == "__main__":
    main()
