"""``make demo``: the whole chain on the built-in synthetic corpus, through the user-facing
scripts exactly as the README shows them, ending with one summary table.

Each step is a subprocess of the real script, so the demo proves what a user would run.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from optimization.quantization import GROUP_NAMES, GROUPS
from utils import yaml_reader

ROOT = Path(__file__).resolve().parents[1]
CORPUS = "data/synthetic_kws"
NAME = "demo_synthetic"


def shown_python() -> str:
    """The interpreter as a user would type it from the project folder (``.venv/bin/python``)."""
    try:
        return str(Path(sys.executable).relative_to(ROOT))
    except ValueError:
        return sys.executable


def step(title: str, *args: str | os.PathLike) -> str:
    """Run one script, echo the command it really runs and its output, return its stdout."""
    cmd = [sys.executable, *map(str, args)]
    print(f"\n$ {shown_python()} {' '.join(map(str, args))}", flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    print(proc.stdout.rstrip())
    print(f"[{title}: {time.perf_counter() - start:.1f} s]", flush=True)
    if proc.returncode != 0:
        sys.exit(f"demo stopped: {title} failed (exit {proc.returncode})")
    return proc.stdout


def newest_run(name: str) -> Path:
    runs = sorted((ROOT / "saved" / "models" / name).iterdir(), key=lambda p: p.name)
    return runs[-1]


def parse_profile(text: str) -> dict[str, float | int | None]:
    def grab(pattern: str, cast: Callable[[str], float | int] = float) -> float | int | None:
        m = re.search(pattern, text, re.M)
        return cast(m.group(1)) if m else None
    return {"accuracy": grab(r"^Accuracy: ([\d.]+)%"), "balanced": grab(r"^Balanced accuracy: ([\d.]+)%"),
            "false_alarms": grab(r"^False alarms: ([\d.]+)%"), "macs": grab(r"^MACs/classification: (\d+)", int),
            "params": grab(r"^Number of Parameters: (\d+)", int),
            "weights": grab(r"Weights: ([\d.]+) kB"), "activations": grab(r"Activations: ([\d.]+) kB")}


def summary(rows: Sequence[tuple[str, dict[str, float | int | None]]]) -> str:
    head = (f"{'model':<22}{'test top-1':>11}{'balanced':>10}{'false al.':>10}{'MACs':>10}{'params':>9}"
            f"{'weights':>11}{'activations':>13}")
    lines = [head, "-" * len(head)]
    for label, p in rows:
        lines.append(f"{label:<22}{p['accuracy']:>10.2f}%{p['balanced']:>9.2f}%{p['false_alarms']:>9.2f}%"
                     f"{p['macs']:>10}{p['params']:>9}"
                     f"{p['weights']:>8.1f} kB{p['activations']:>10.1f} kB")
    return "\n".join(lines)


def chosen_solution(quantization: str | os.PathLike, pruning: str | os.PathLike) -> str:

    """One line naming what the searches chose: the bitwidths and the pruning rate."""
    q = yaml_reader.loads(Path(quantization).read_text())["results"]
    p = yaml_reader.loads(Path(pruning).read_text())["results"]
    bits = ", ".join(f"{GROUP_NAMES[g].lower()} {q['bitwidths'][g] or 'float32'}" for g in GROUPS)
    return f"Chosen: {bits} bits; pruning rate {100 * p['rate']:.2f}% of the weights"


def main() -> None:
    start = time.perf_counter()
    step("synthetic corpus", "-m", "data_loader.synthetic", "--out", CORPUS)  # reuses a complete one
    step("train", "train.py", "-c", "config_lenet5_keywords.yml", "--data-dir", CORPUS, "--name", NAME)
    run = newest_run(NAME)
    best = run / "model_best.pth"
    q, p = run / "quantization.yml", run / "pruning.yml"
    step("test", "test.py", "-r", best)
    float_profile = parse_profile(step("profile", "profile.py", "-r", best))
    step("quantize", "quantize.py", "-r", best)
    step("prune", "prune.py", "-r", best, "-q", q)
    step("test -q -p", "test.py", "-r", best, "-q", q, "-p", p)
    compressed = parse_profile(step("profile -q -p", "profile.py", "-r", best, "-q", q, "-p", p))
    step("finetune", "train.py", "-r", best, "-q", q, "-p", p)
    tuned = newest_run(NAME + "_finetune") / "model_best.pth"
    step("test finetuned", "test.py", "-r", tuned)   # applies the solutions the checkpoint carries
    finetuned = parse_profile(step("profile finetuned", "profile.py", "-r", tuned))
    print("\nSummary (SYNTHETIC corpus: formant-synthesised words, not real speech; test split; kB = 1000 bytes)")
    print(summary([("float32", float_profile), ("quantized + pruned", compressed),
                   ("finetuned", finetuned)]))
    print(chosen_solution(q, p))
    print("These figures say nothing about real speech: the README's chain runs on ../shared/data/kws_corpus.")
    print(f"\nDemo finished in {time.perf_counter() - start:.0f} s. Runs are under saved/models/{NAME}*.")


if __name__ == "__main__":
    main()
