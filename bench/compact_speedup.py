"""CPU latency of a pruned model as trained (pruned kernels masked, still computed) against its
compact form (pruned kernels removed), both float, on the same machine in one run.

    python -m bench.compact_speedup -r CKPT -p pruning.yml [--batch 1 256] [--seconds 2]

The analytical profile (profile.py) counts MACs; this measures what removal buys in wall time,
where small layers are dominated by per-call overhead rather than MACs. Both models are timed
interleaved, one call each in turn, so a load change on the machine hits both alike; the median
call time is reported. Single-threaded, as on a microcontroller-class target.
"""
import utils.stdlib_profile  # noqa: F401  (first: keeps our profile.py from shadowing the stdlib's)
import argparse
import statistics
import time

import torch

from deploy.compact import compact_model
from optimization.profiling import profile_model
from utils.errors import UserError, exit_on_user_error
from app.restore import restore_model


def median_latencies(models, batch, seconds, generator):
    """Median seconds per forward call of each model on one random batch, timed interleaved."""
    x = torch.randn((batch,) + tuple(models[0].input_shape), generator=generator)
    times = [[] for _ in models]
    with torch.no_grad():
        for model in models:   # warm-up: first calls allocate
            model(x)
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(times[0]) < 5:
            for model, spent in zip(models, times):
                start = time.perf_counter()
                model(x)
                spent.append(time.perf_counter() - start)
    return [statistics.median(spent) for spent in times]


@exit_on_user_error
def main():
    parser = argparse.ArgumentParser(description="Latency of the masked vs the compact pruned model")
    parser.add_argument("-r", "--resume", required=True, help="checkpoint (model_best.pth)")
    parser.add_argument("-p", "--pruning", required=True, help="pruning.yml")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 256], help="batch sizes to time")
    parser.add_argument("--seconds", type=float, default=2.0, help="timing budget per batch size")
    args = parser.parse_args()
    if any(b < 1 for b in args.batch) or args.seconds <= 0:
        raise UserError("--batch sizes must be >= 1 and --seconds > 0")
    torch.set_num_threads(1)
    masked, _ = restore_model(args.resume, None, args.pruning)
    compact = compact_model(masked)
    dense = type(masked)(**masked.compact_args(masked.widths), input_shape=masked.input_shape)  # pruned kernels kept
    print(f"masked:  widths {masked.widths}, computes {profile_model(dense).macs:,} MACs per clip "
          f"(pruned kernels included)")
    print(f"compact: widths {compact.widths}, computes {profile_model(compact).macs:,} MACs per clip")
    print(f"1 thread, torch {torch.__version__}, median of interleaved calls")
    print(f"{'batch':>6} {'masked ms/clip':>15} {'compact ms/clip':>16} {'speedup':>8}")
    generator = torch.Generator().manual_seed(0)
    for batch in args.batch:
        t_masked, t_compact = median_latencies((masked, compact), batch, args.seconds, generator)
        print(f"{batch:>6} {1000 * t_masked / batch:>15.4f} {1000 * t_compact / batch:>16.4f} "
              f"{t_masked / t_compact:>7.2f}x")


if __name__ == "__main__":
    main()
