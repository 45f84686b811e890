"""Training throughput of one process against N processes under torchrun (gloo) on this machine.

Trains with train.py for a few epochs from the given config, as one process and as N processes,
each configuration using every core of the machine (one process with all cores as threads; N
processes with cores / N threads each), plus one process with one thread, which tells whether a
gain comes from data parallelism or only from avoiding thread contention. The samples/s compared
are the ones the trainer logs per epoch: the training loop alone, without start-up, validation or
checkpoints; the first epoch is left out as warm-up. The configurations take turns (--repeats
rounds), so a burst of load from other programs does not fall on one of them only; each line shows
the median and the range over all measured epochs. The run folders go to a temporary directory.

    .venv/bin/python bench/ddp_scaling.py [-c config_lenet5_keywords.yml] [--epochs 4] [--repeats 2] [--nproc 2]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import utils.stdlib_profile  # noqa: E402,F401  (before torch: our profile.py must not shadow the stdlib)

import torch  # noqa: E402

from utils import atomic  # noqa: E402
from utils.errors import UserError, exit_on_user_error  # noqa: E402


def samples_per_second(label, command, config, epochs, threads, workdir):
    """The logged samples/s of epochs 2..epochs of one training run."""
    cfg = dict(config, name=f"ddp_scaling_{label}")
    cfg["trainer"] = dict(config["trainer"], save_dir=str(workdir / "saved"), epochs=epochs, save_period=1,
                          early_stop=0, tensorboard=False)
    path = workdir / f"{label}.yml"
    atomic.write_yaml(path, cfg)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run([*command, "train.py", "-c", str(path)], cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{label}: training failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    (run_dir,) = (workdir / "saved" / "models" / cfg["name"]).iterdir()
    logs = [torch.load(run_dir / f"checkpoint-epoch{e}.pth", weights_only=True)["log"] for e in range(2, epochs + 1)]
    return [log["samples_per_s"] for log in logs]


@exit_on_user_error
def main():
    parser = argparse.ArgumentParser(description="samples/s of 1 process and of N processes under torchrun")
    parser.add_argument("-c", "--config", default=str(ROOT / "config_lenet5_keywords.yml"))
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "kws_corpus"),
                        help="corpus (default: the shared real corpus beside the project)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run; the first is warm-up")
    parser.add_argument("--repeats", type=int, default=2, help="rounds over the configurations")
    parser.add_argument("--nproc", type=int, default=2, help="processes of the distributed run")
    args = parser.parse_args()
    if args.epochs < 2 or args.repeats < 1 or args.nproc < 2:
        raise UserError("--epochs must be at least 2 (the first is warm-up), --repeats at least 1 and "
                        "--nproc at least 2")
    config = atomic.read_yaml(Path(args.config).resolve(), "config file")
    config["data_loader"]["args"].update(data_dir=str(Path(args.data_dir).resolve()), download=None)
    cores = len(os.sched_getaffinity(0))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}"]
    runs = [(f"1 process, {cores} threads", "single", [sys.executable], cores),
            ("1 process, 1 thread", "single_thread", [sys.executable], 1),
            (f"{args.nproc} processes, {max(1, cores // args.nproc)} thread(s) each", "distributed", torchrun,
             max(1, cores // args.nproc))]
    batch = config["data_loader"]["args"].get("batch_size")
    rates = {label: [] for _, label, _, _ in runs}
    for _ in range(args.repeats):
        for _, label, command, threads in runs:
            with tempfile.TemporaryDirectory() as tmp:
                rates[label] += samples_per_second(label, command, config, args.epochs, threads, Path(tmp))
    print(f"training samples/s on {cores} cores, global batch {batch}, epochs 2..{args.epochs} of "
          f"{args.repeats} run(s) each: median (range)")
    median = {label: statistics.median(values) for label, values in rates.items()}
    for text, label, _, _ in runs:
        print(f"  {text:32s} {median[label]:7,.0f}  ({min(rates[label]):,.0f}-{max(rates[label]):,.0f})")
    print(f"ratio {args.nproc} processes / 1 process: {median['distributed'] / median['single']:.2f} "
          f"(against 1 process with 1 thread: {median['distributed'] / median['single_thread']:.2f})")


if __name__ == "__main__":
    main()
