"""Ours against the lab's code on the same data: the whole chain, step by step, interleaved.

Setup (timed apart): our synthetic corpus of N clips (or --corpus), our features of its three
splits (our cache), and the same unnormalised MFCCs written as the lab's IA_DATASET pickle. Both
sides then run the lab's recipe (batch 512, 15 + 10 epochs, Adam 1e-3, raw MFCCs, no augmentation, no weight
averaging, no distillation, top-1 margins 15 and 3) through their own scripts:

  train 15 epochs, test, quantize, prune, test -q -p, profile -q -p, finetune 10 epochs,
  test finetuned -q -p

Each step is one process, timed from start to exit (os.wait4): wall seconds, peak RSS (the
largest single process, e.g. one of the lab's DataLoader workers) and CPU seconds. Steps are
interleaved (lab first on even steps, ours first on odd ones) so a drift in machine load falls on
both. ``--repeat N`` runs every step N times a side, alternating which side goes first, and keeps
each side's fastest run (its peak memory: the largest of the N): on a shared VM the same epoch
varies by 10-20% from one minute to the next, and noise only ever adds time. Writes
WORK/vs_lab.yml (+ vs_lab.png) and every step's log under WORK/logs. The last line printed is
``chain ratio (lab/ours): X.XX; slowest step ratio: Y.YY``.

    python3 bench/vs_lab.py [--clips 36718] [--lab ../shared/reference/lab-code] [--work DIR] \
        [--corpus DIR] [--repeat N] [--force]

The lab's side needs ``dill`` in this Python (its checkpoints pickle their config with it); this
script installs nothing.
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import utils.stdlib_profile  # noqa: E402,F401

import argparse  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import yaml  # noqa: E402

from utils.atomic import save_figure, write_bytes, write_text, write_yaml  # noqa: E402

LAB_DEFAULT = Path(ROOT).parent / "shared" / "reference" / "lab-code"
STEPS = (("train", "train 15 epochs"), ("test", "test"), ("quantize", "quantize"), ("prune", "prune"),
         ("test_qp", "test -q -p"), ("profile_qp", "profile -q -p"), ("finetune", "finetune 10 epochs"),
         ("test_ft", "test finetuned -q -p"))
LAST_LINE = "chain ratio (lab/ours): {chain:.2f}; slowest step ratio: {slowest:.2f}"


# ----------------------------------------------------------------------------- accuracies in logs
def _last(pattern, text, scale=1.0, flags=0):
    found = re.findall(pattern, text, flags)
    return float(found[-1]) * scale if found else None


def test_top1(text):
    """Both test.py print the lab's ``Metrics: {... 'top1': X}`` line."""
    return _last(r"'top1': ([0-9.eE+-]+)", text)


def profile_top1(text):
    """Both profile.py print ``Accuracy: X%``."""
    return _last(r"^Accuracy: ([0-9.]+)%", text, 0.01, re.M)


def search_top1(text):
    """quantize.py / prune.py: ``Accuracy: X`` of the chosen solution (validation split)."""
    return _last(r"^Accuracy: ([0-9.]+)(?: \(top1\))?\s*(?:$|\|)", text, 1.0, re.M)


def lab_train_top1(text):
    """The lab's epoch log: its last ``val_top1 : X``."""
    return _last(r"^\s*val_top1\s*:\s*([0-9.eE+-]+)", text, 1.0, re.M)


def our_train_top1(text):
    """Our epoch log: the last ``val_top1 X``."""
    return _last(r"val_top1 ([0-9.]+)", text)


PARSERS = {"train": (lab_train_top1, our_train_top1), "finetune": (lab_train_top1, our_train_top1),
           "quantize": (search_top1, search_top1), "prune": (search_top1, search_top1),
           "profile_qp": (profile_top1, profile_top1)}
VALIDATION_STEPS = ("train", "quantize", "prune", "finetune")


def top1_of(key, side, text):
    """Top-1 that ``side`` ('lab' or 'ours') printed in step ``key``."""
    lab, ours = PARSERS.get(key, (test_top1, test_top1))
    return (lab if side == "lab" else ours)(text)


# ----------------------------------------------------------------------------- the table
def _fmt(value, spec, missing="-"):
    return missing if value is None else format(value, spec)


def _acc(side):
    return "-" if side.get("top1") is None else f"{100 * side['top1']:.2f}"


def summarise(rows):
    """Ratio per step, chain totals and the slowest step ratio of completed ``rows`` (a list of
    {key, label, lab: {ok, wall, rss, ...}, ours: {...}}); ratios are lab time / our time."""
    complete = all(r["lab"].get("ok") and r["ours"].get("ok") for r in rows) and len(rows) == len(STEPS)
    for r in rows:
        both = r["lab"].get("ok") and r["ours"].get("ok")
        r["ratio"] = r["lab"]["wall"] / r["ours"]["wall"] if both else None
        r["memory_ratio"] = r["ours"]["rss"] / r["lab"]["rss"] if both else None
    lab = sum(r["lab"].get("wall", 0.0) for r in rows if r["lab"].get("ok"))
    ours = sum(r["ours"].get("wall", 0.0) for r in rows if r["ours"].get("ok"))
    ratios = [r["ratio"] for r in rows if r["ratio"] is not None]
    return {"complete": complete, "lab_s": lab, "ours_s": ours,
            "chain_ratio": lab / ours if complete else None,
            "slowest_ratio": min(ratios) if complete else None,
            "largest_memory_ratio": max(r["memory_ratio"] for r in rows) if complete else None}


def format_table(rows, totals):
    """The step table; its last line is LAST_LINE when the chain completed on both sides."""
    w = 22
    head = (f"{'step':<{w}} | {'lab s':>7} | {'ours s':>7} | {'lab/ours':>8} | {'lab MB':>7} | {'ours MB':>7} | "
            f"{'lab top1':>8} | {'ours top1':>9}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lab, ours = r["lab"], r["ours"]
        v = "v" if r["key"] in VALIDATION_STEPS else " "
        lines.append(f"{r['label']:<{w}} | {_fmt(lab.get('wall'), '7.1f', 'FAIL'):>7} | "
                     f"{_fmt(ours.get('wall'), '7.1f', 'FAIL'):>7} | {_fmt(r.get('ratio'), '8.2f'):>8} | "
                     f"{_fmt(lab.get('rss'), '7.0f'):>7} | {_fmt(ours.get('rss'), '7.0f'):>7} | "
                     f"{_acc(lab) + v:>8} | {_acc(ours) + v:>9}")
    lines.append("-" * len(head))
    lines.append(f"{'chain' + ('' if totals['complete'] else ' (INCOMPLETE)'):<{w}} | {totals['lab_s']:7.1f} | "
                 f"{totals['ours_s']:7.1f} | {_fmt(totals['chain_ratio'], '8.2f'):>8} |")
    lines.append("top1 in %: test split, v = validation split; MB: peak RSS of the step's largest process")
    if totals["complete"]:
        lines.append(f"largest memory ratio (ours/lab): {totals['largest_memory_ratio']:.2f}")
        lines.append(LAST_LINE.format(chain=totals["chain_ratio"], slowest=totals["slowest_ratio"]))
    return "\n".join(lines)


def parse_last_line(text):
    """(chain ratio, slowest step ratio) from the output's last line; None if it is not there."""
    lines = text.strip().splitlines()
    m = re.fullmatch(r"chain ratio \(lab/ours\): ([0-9.]+); slowest step ratio: ([0-9.]+)", lines[-1] if lines else "")
    return (float(m.group(1)), float(m.group(2))) if m else None


def bar_chart(rows):
    """Seconds per step, lab beside ours, with the ratio above each pair."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 4))
    xs = range(len(rows))
    lab = [r["lab"].get("wall") or 0 for r in rows]
    ours = [r["ours"].get("wall") or 0 for r in rows]
    ax.bar([x - 0.2 for x in xs], lab, 0.4, label="lab")
    ax.bar([x + 0.2 for x in xs], ours, 0.4, label="ours")
    for x, r in zip(xs, rows):
        if r.get("ratio"):
            ax.text(x, max(lab[x], ours[x]), f"{r['ratio']:.2f}x", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(xs), [r["label"] for r in rows], rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("wall s (log)")
    ax.legend()
    plt.close(fig)
    return fig


# ----------------------------------------------------------------------------- running a step
def run(cmd, cwd, log):
    """Run ``cmd`` in ``cwd``, output to ``log``: {ok, wall, rss (MB), cpu (s)}."""
    with open(log, "w") as out:
        out.write(f"$ (cd {cwd} && {' '.join(map(str, cmd))})\n")
        out.flush()
        start = time.perf_counter()
        proc = subprocess.Popen([str(c) for c in cmd], cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    return {"ok": os.waitstatus_to_exitcode(status) == 0, "wall": wall, "rss": usage.ru_maxrss / 1024,
            "cpu": usage.ru_utime + usage.ru_stime}


def newest(folder, before=frozenset()):
    runs = sorted(p for p in Path(folder).iterdir() if p.is_dir() and p not in before) if Path(folder).is_dir() else []
    return runs[-1] if runs else None


class Side:
    """One side's chain: each step's command comes from the state earlier steps left."""

    def __init__(self, name, cwd, logs):
        self.name, self.cwd, self.logs = name, cwd, logs
        self.state, self.failed = {}, False

    def step(self, key, label, command, run_index=0):
        if self.failed:
            print(f"  {self.name:<4} {label:<22} skipped (an earlier step failed)", flush=True)
            return {"ok": False, "skipped": True}
        log = self.logs / f"{self.name}_{key}{f'_{run_index + 1}' if run_index else ''}.log"
        result = run(command(), self.cwd, log)
        text = log.read_text(errors="replace")
        try:
            if result["ok"]:
                self.after(key)
                result["top1"] = top1_of(key, self.name, text)
        except (OSError, RuntimeError) as e:
            print(f"  {self.name} {label}: {e}", flush=True)
            result["ok"] = False
        status = "ok  " if result["ok"] else "FAIL"
        print(f"  {self.name:<4} {label:<22} {status} {result['wall']:7.1f} s {result['rss']:6.0f} MB  ({log.name})",
              flush=True)
        if not result["ok"]:
            self.failed = True
            print("".join(text.splitlines(keepends=True)[-15:]), flush=True)
        return result


class LabSide(Side):
    def __init__(self, tree, logs, py):
        super().__init__("lab", tree, logs)
        self.models = tree / "saved" / "models" / "KeywordLeNet5Clone_exp1"
        self.run_script = [py, tree / "run_lab_script.py"]

    def command(self, key):
        s, r = self.state, self.run_script
        qp = ["-q", s.get("run", Path()) / "quantization.yml", "-p", s.get("run", Path()) / "pruning.yml"]
        self.state["before"] = set(self.models.iterdir()) if self.models.is_dir() else set()
        best = s.get("run", Path()) / "model_best.pth"
        return {"train": r + ["train.py", "-c", "config_lenet5_keywords.yml"], "test": r + ["test.py", "-r", best],
                "quantize": r + ["quantize.py", "-r", best], "prune": r + ["prune.py", "-r", best],
                "test_qp": r + ["test.py", "-r", best] + qp, "profile_qp": r + ["profile.py", "-r", best] + qp,
                "finetune": r + ["train.py", "-r", best] + qp,
                "test_ft": r + ["test.py", "-r", s.get("ft", Path()) / "model_best.pth"] + qp}[key]

    def after(self, key):
        if key in ("train", "finetune"):
            found = newest(self.models, self.state["before"])
            if found is None or not (found / "model_best.pth").is_file():
                raise RuntimeError(f"no new run with model_best.pth under {self.models}")
            self.state["run" if key == "train" else "ft"] = found


class OurSide(Side):
    def __init__(self, root, config, saved, logs, py):
        super().__init__("ours", root, logs)
        self.py, self.config, self.saved = py, config, saved

    def command(self, key):
        s, py = self.state, self.py
        run_dir = s.get("run", Path())
        best = run_dir / "model_best.pth"
        qp = ["-q", run_dir / "quantization.yml", "-p", run_dir / "pruning.yml"]
        return {"train": [py, "train.py", "-c", self.config], "test": [py, "test.py", "-r", best],
                "quantize": [py, "quantize.py", "-r", best], "prune": [py, "prune.py", "-r", best],
                "test_qp": [py, "test.py", "-r", best] + qp, "profile_qp": [py, "profile.py", "-r", best] + qp,
                "finetune": [py, "train.py", "-r", best] + qp,
                "test_ft": [py, "test.py", "-r", s.get("ft", Path()) / "model_best.pth"] + qp}[key]

    def after(self, key):
        if key in ("train", "finetune"):
            folder = self.saved / "models" / ("vs_lab" if key == "train" else "vs_lab_finetune")
            found = newest(folder)
            if found is None or not (found / "model_best.pth").is_file():
                raise RuntimeError(f"no run with model_best.pth under {folder}")
            self.state["run" if key == "train" else "ft"] = found


def fastest(best, result):
    """A side's step over repeated runs: the fastest successful run, with every run's wall time
    (``walls``) and the largest peak memory of them; a failed run is the step's result."""
    walls = (best or {}).get("walls", []) + ([result["wall"]] if "wall" in result else [])
    if best is not None and not best.get("ok"):
        chosen = dict(best)  # a failure stays the step's result
    elif best is None or not result.get("ok") or result["wall"] < best["wall"]:
        chosen = dict(result)
    else:
        chosen = dict(best)
    if best is not None and best.get("ok") and result.get("ok"):
        chosen["rss"] = max(best["rss"], result["rss"])
    chosen["walls"] = walls
    return chosen


# ----------------------------------------------------------------------------- setup
def our_config(corpus, work):
    """Our default config with the lab's recipe (the values of the lab's config_lenet5_keywords.yml)."""
    cfg = yaml.safe_load(Path(ROOT, "config_lenet5_keywords.yml").read_text())
    cfg["name"] = "vs_lab"
    cfg["arch"]["args"] = {"num_classes": 4, "dropout": 0.5}              # the lab: F.dropout's 0.5
    cfg["data_loader"]["args"].update(
        data_dir=str(corpus), download=None, batch_size=512, cache_dir=str(work / "ours" / "cache"),
        background_noise={"train": 0, "validation": 0, "test": 0},        # the same clips as the lab
        augment={"enabled": False},                                        # the lab has no augmentation
        normalize=False)                                                   # the lab reads raw MFCCs
    cfg["optimizer"] = {"type": "Adam", "args": {"lr": 0.001, "weight_decay": 0, "amsgrad": False}}
    cfg["lr_scheduler"] = {"type": "StepLR", "args": {"step_size": 50, "gamma": 0.1}}
    cfg["trainer"].update(epochs=15, save_dir=str(work / "ours" / "saved"), save_period=1, monitor="min val_loss",
                          early_stop=10, class_weights=None, tensorboard=False, ema=None)
    opt = cfg["optimization"]
    opt["quantization"].update(metric="top1", error_margin=15)
    opt["pruning"].update(metric="top1", error_margin=3)
    opt["finetuning"].update(epochs=10, lr_factor=0.1, distillation={"enabled": False})
    opt["finetuning"].pop("monitor", None)       # the lab keeps its epoch by val_loss, as trainer.monitor
    cfg.pop("detector", None)                    # the lab calibrates no stream detector
    return cfg


def export_lab_data(config, pickle_path):
    """Our features of the three splits (building our cache), written unnormalised as the lab's
    IA_DATASET: x (N, 100, 13) float32 MFCC, y one-hot (N, 4). Runs in a child process."""
    import pickle

    import numpy as np
    import torch

    from data_loader.data_loaders import SpeechCommandsDataLoader
    from data_loader.features import MfccFromMel

    data = SpeechCommandsDataLoader(**yaml.safe_load(Path(config).read_text())["data_loader"]["args"])
    mfcc = MfccFromMel(data.features)
    out = {}
    for split, key in (("train", "train"), ("validation", "val"), ("test", "test")):
        d = data.split(split)
        with torch.no_grad():
            x = torch.cat([mfcc(d.mel[i:i + 2048]) for i in range(0, len(d.mel), 2048)])
        out["x_" + key] = x.squeeze(1).numpy().astype(np.float32)
        out["y_" + key] = np.eye(4, dtype=np.float32)[d.labels.numpy()]
        print(f"{split}: {len(d)} clips, classes {np.bincount(d.labels.numpy(), minlength=4).tolist()}")
    Path(pickle_path).parent.mkdir(parents=True, exist_ok=True)
    write_bytes(pickle_path, pickle.dumps(out))


def header(args, work, py):
    load = os.getloadavg()
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout
    return "\n".join([
        f"vs_lab: {args.clips} clips, {time.strftime('%Y-%m-%d %H:%M:%S')}, {platform.node()}, "
        f"{os.cpu_count()} logical CPUs, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start",
        f"python {platform.python_version()} ({py}); ours: {ROOT} @ {rev.strip() or '?'}; lab: {args.lab}",
        f"work: {work}; both on the lab's recipe (batch 512, 15 + 10 epochs, Adam 1e-3, raw MFCCs, no augmentation)"
        + (f"; every step {args.repeat} times a side, the fastest counts" if getattr(args, "repeat", 1) > 1 else "")])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=36718)
    p.add_argument("--lab", type=Path, default=LAB_DEFAULT, help="the lab's code, patched to run")
    p.add_argument("--work", "--out", dest="work", type=Path, default=None,
                   help="run folder (default data/vs_lab/N<clips>); must not exist unless --force")
    p.add_argument("--corpus", type=Path, default=None, help="reuse a corpus made by data_loader.synthetic")
    p.add_argument("--repeat", type=int, default=1,
                   help="runs of every step a side; each side's fastest counts (default 1)")
    p.add_argument("--force", action="store_true", help="replace --work if it exists")
    args = p.parse_args()
    if args.repeat < 1:
        sys.exit("error: --repeat must be 1 or more")
    py = sys.executable
    work = (args.work or Path(ROOT) / "data" / "vs_lab" / f"N{args.clips}").resolve()
    if not (args.lab / "run_lab_script.py").is_file():
        sys.exit(f"error: {args.lab} is not the lab's code (no run_lab_script.py); pass --lab")
    if args.corpus and work in args.corpus.resolve().parents:
        sys.exit(f"error: --corpus {args.corpus} lies inside --work {work}, which this run replaces")
    if work.exists():
        if not args.force:
            sys.exit(f"error: {work} exists; pass --force to replace it or choose another --work")
        shutil.rmtree(work)
    logs = work / "logs"
    logs.mkdir(parents=True)
    lab_tree = work / "lab"
    shutil.copytree(args.lab, lab_tree, ignore=shutil.ignore_patterns("side_by_side_example", "__pycache__", "saved"))
    head = header(args, work, py)
    print(head, flush=True)

    corpus = args.corpus.resolve() if args.corpus else work / "corpus"
    setup = {}
    if not args.corpus:
        setup["generate corpus"] = run([py, "-m", "data_loader.synthetic", "--out", corpus, "--clips", args.clips,
                                        "--no-progress"], ROOT, logs / "setup_corpus.log")
    config = work / "ours" / "config.yml"
    write_yaml(config, our_config(corpus, work))
    setup["our features + lab pickle"] = run([py, os.path.abspath(__file__), "export-lab-data", config,
                                              lab_tree / "data" / "KeywordsDataset" / "IA_DATASET"],
                                             ROOT, logs / "setup_features.log")
    for name, r in setup.items():
        print(f"  setup: {name:<26} {'ok  ' if r['ok'] else 'FAIL'} {r['wall']:7.1f} s {r['rss']:6.0f} MB", flush=True)
        if not r["ok"]:
            sys.exit(f"error: setup step '{name}' failed; see {logs}")

    lab = LabSide(lab_tree, logs, py)
    ours = OurSide(Path(ROOT), config, work / "ours" / "saved", logs, py)
    rows = []
    for i, (key, label) in enumerate(STEPS):
        row = {"key": key, "label": label}
        for r in range(args.repeat):
            for side in ((lab, ours) if (i + r) % 2 == 0 else (ours, lab)):
                row[side.name] = fastest(row.get(side.name),
                                         side.step(key, label, lambda s=side, k=key: s.command(k), run_index=r))
        rows.append(row)
    totals = summarise(rows)
    table = format_table(rows, totals)
    write_yaml(work / "vs_lab.yml", {"header": head, "setup": setup, "steps": rows, "totals": totals})
    write_text(work / "vs_lab.txt", head + "\n\n" + table + "\n")
    save_figure(bar_chart(rows), work / "vs_lab.png")
    print("\n" + head + "\n\n" + table)
    if not totals["complete"]:
        sys.exit(f"error: the chain did not complete on both sides; see {logs}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["export-lab-data"]:
        export_lab_data(*sys.argv[2:4])
    else:
        main()
