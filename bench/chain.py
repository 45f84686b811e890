"""The whole chain at the lab's scale, timed step by step through the user-facing scripts.

Generates a synthetic corpus of the lab's size (36,718 clips, about 70% class 0), extracts its
features once (reported apart, as is the generation), then runs and times: train 15 epochs, test,
quantize, prune, test -q -p, profile -q -p, finetune 10 epochs, test of the finetuned model.
Prints wall time and peak memory (max RSS) of each step.

    python3 bench/chain.py [--clips 36718] [--bs 256]
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import utils.stdlib_profile  # noqa: E402,F401

import argparse  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import yaml  # noqa: E402

from utils.atomic import write_yaml  # noqa: E402


def timed(cmd):
    """Run ``cmd`` in the project folder; (seconds, peak RSS in MB, stdout)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        sys.exit(f"step failed: {' '.join(cmd)}\n{out[-2000:]}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024, out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=36718)
    parser.add_argument("--bs", type=int, default=256)
    parser.add_argument("--out", default="data/bench_chain")
    args = parser.parse_args()
    py = sys.executable
    corpus = Path(args.out) / f"synthetic_{args.clips}"
    rows = []
    t, mem, _ = timed([py, "-m", "data_loader.synthetic", "--out", str(corpus), "--clips", str(args.clips)])
    rows.append(("generate corpus (apart)", t, mem))
    cfg = yaml.safe_load(open(os.path.join(ROOT, "config_lenet5_keywords.yml")))
    cfg["name"] = "bench_chain"
    cfg["data_loader"]["args"].update(data_dir=str(corpus), batch_size=args.bs, download=None)
    cfg["trainer"].update(epochs=15, save_dir=str(Path(args.out) / "saved"), distillation=None)
    cfg["lr_scheduler"]["args"]["T_max"] = 15
    cfg["optimization"]["finetuning"]["epochs"] = 10  # the lab's budget for this benchmark
    config = Path(ROOT) / args.out / "config.yml"
    write_yaml(config, cfg)
    extract = ("from data_loader.data_loaders import SpeechCommandsDataLoader as D; import yaml; "
               f"d = D(**yaml.safe_load(open('{config}'))['data_loader']['args']); "
               "[d.split(s) for s in ('train', 'validation', 'test')]")
    t, mem, _ = timed([py, "-c", "import utils.stdlib_profile; " + extract])
    rows.append(("feature extraction (apart)", t, mem))
    chain_start = len(rows)
    t, mem, _ = timed([py, "train.py", "-c", str(config)])
    rows.append(("train 15 epochs", t, mem))
    run = sorted((Path(ROOT) / args.out / "saved" / "models" / "bench_chain").iterdir())[-1]
    best, q, p = run / "model_best.pth", run / "quantization.yml", run / "pruning.yml"
    steps = [("test", ["test.py", "-r", best]), ("quantize", ["quantize.py", "-r", best]),
             ("prune", ["prune.py", "-r", best]), ("test -q -p", ["test.py", "-r", best, "-q", q, "-p", p]),
             ("profile -q -p", ["profile.py", "-r", best, "-q", q, "-p", p]),
             (f"finetune {cfg['optimization']['finetuning']['epochs']} epochs",
              ["train.py", "-r", best, "-q", q, "-p", p])]
    outputs = {}
    for name, cmd in steps:
        t, mem, outputs[name] = timed([py, *map(str, cmd)])
        rows.append((name, t, mem))
    tuned = sorted((Path(ROOT) / args.out / "saved" / "models" / "bench_chain_finetune").iterdir())[-1]
    t, mem, outputs["test finetuned"] = timed([py, "test.py", "-r", str(tuned / "model_best.pth"), "-q", str(q),
                                               "-p", str(p)])
    rows.append(("test finetuned", t, mem))
    print(f"\n{args.clips} clips, batch {args.bs}, {os.cpu_count()} cores")
    print(f"{'step':<28}{'wall s':>9}{'peak MB':>10}")
    for name, t, mem in rows:
        print(f"{name:<28}{t:>9.1f}{mem:>10.0f}")
    chain = sum(t for _, t, _ in rows[chain_start:])
    print(f"{'chain (train .. test)':<28}{chain:>9.1f}")


if __name__ == "__main__":
    main()
