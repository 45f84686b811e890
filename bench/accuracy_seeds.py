"""Accuracy over seeds: train N seeds of a config and run the compression chain on each.

    python3 bench/accuracy_seeds.py -c config_lenet5_keywords.yml --seeds 0 1 2 \
        --data-dir ../shared/data/kws_corpus

For every seed, exactly as a user runs the scripts: ``train.py``, ``test.py``, ``quantize.py``,
``prune.py -q`` (the pruning search on the quantized model, checked as one against the
quantization margin), ``train.py -r -q -p`` (finetuning), ``test.py`` of the finetuned checkpoint
(which applies the solutions it carries) and ``profile.py`` for the weight bits. Prints one table:
per seed and the worst / mean over seeds, for the float and the quantized + pruned + finetuned
model: test top-1, balanced accuracy, recall of every keyword, false-alarm rate (background clips
classified as a keyword) and weight bits. A keyword spotter is judged by its worst keyword on its
worst seed, so "worst" is the minimum of every accuracy and the maximum of false alarms and bits.
Streaming columns first (``test.py --stream`` on the test split's stream): keywords missed and
false alarms per hour at the checkpoint's calibrated operating point, and the misses at the best
threshold of the test stream that meets the target rate (miss@tgt; 100% when none does), and at ten
times the target (miss@10x: where models that all miss nearly everything at the target differ).
The table is also written as YAML and PNG (``--out``).
"""
import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from utils import atomic  # noqa: E402


def run(args, log):
    """Run one of the project's scripts; its output goes to ``log``; returns stdout."""
    cmd = [sys.executable, *map(str, args)]
    log.write(f"\n$ python3 {' '.join(map(str, args))}\n")
    log.flush()
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log.write(proc.stdout)
    log.flush()
    if proc.returncode != 0:
        raise SystemExit(f"{args[0]} failed (exit {proc.returncode}); see {log.name}")
    return proc.stdout


def newest_run(save_dir, name):
    return sorted((Path(save_dir) / "models" / name).iterdir(), key=lambda p: p.name)[-1]


def report_classes(args):
    """The classes a table shows recall of: the keywords, and for the 12-class task (a silence
    class) unknown and silence too."""
    keywords = list(args.get("keywords", ["one", "two", "three"]))
    return keywords + (["unknown", "silence"] if (args.get("task") or {}).get("silence_share") else [])


def scores_of(report_yml, keywords):
    data = yaml.safe_load(Path(report_yml).read_text())
    row = {"top1": data["top1"], "balanced": data["balanced_accuracy"],
           "false_alarms": data["false_alarm_rate"]}
    row.update({k: data["recall"][k] for k in keywords})
    return row


def stream_of(report_yml):
    """The streaming columns of test.py --stream's YAML: misses and false alarms per hour at the
    checkpoint's own (calibrated) operating point, and the misses at the best threshold of the
    test stream meeting the target (what the best threshold could do on this stream)."""
    data = yaml.safe_load(Path(report_yml).read_text())
    own, best = data["operating_point"], data["best_for_target"]
    wider = 10 * data["target_false_alarms_per_hour"]
    return {"stream_misses": own["miss_rate"], "stream_fa_per_hour": own["false_alarms_per_hour"],
            "stream_misses_at_target": best["miss_rate"] if best["met"] else 1.0,
            "stream_misses_at_10x": min((s["miss_rate"] for s in data["sweep"]
                                         if s["false_alarms_per_hour"] <= wider), default=1.0),
            "stream_threshold": data["detector"]["threshold"]}


def weight_bits(profile_text):
    return int(re.search(r"Weights: [\d.]+ kB \((\d+) bits\)", profile_text).group(1))


def one_seed(config, seed, data_dir, save_dir, log_path, float_only=False, reuse=False):
    """Train and compress one seed; returns {'float': row, 'compressed': row} (no 'compressed'
    with ``float_only``). ``reuse``: take the float model of an earlier run of this seed in
    ``save_dir`` (same config name) and only redo the compression with the config's settings."""
    cfg = yaml.safe_load(Path(config).read_text())
    name = f"{cfg['name']}_seed{seed}"
    cfg.update(name=name, seed=seed)
    cfg["trainer"]["save_dir"] = str(save_dir)
    cfg["trainer"]["tensorboard"] = False
    if data_dir:
        cfg["data_loader"]["args"]["data_dir"] = str(data_dir)
        cfg["data_loader"]["args"]["download"] = None
    keywords = report_classes(cfg["data_loader"]["args"])
    seed_config = Path(save_dir) / f"{name}.yml"
    atomic.write_yaml(seed_config, cfg)
    earlier = Path(save_dir) / "models" / name
    with open(log_path, "a" if reuse else "w", encoding="utf-8") as log:
        if not (reuse and earlier.is_dir()):
            run(["train.py", "-c", seed_config], log)
        run_dir = newest_run(save_dir, name)
        best = run_dir / "model_best.pth"
        run(["test.py", "-r", best], log)
        float_row = scores_of(run_dir / "model_best-test-float.yml", keywords)
        run(["test.py", "-r", best, "--stream"], log)
        float_row.update(stream_of(run_dir / "model_best-stream-test-float.yml"))
        float_row["weight_bits"] = weight_bits(run(["profile.py", "-r", best], log))
        if float_only:
            return {"float": float_row}
        q, p = run_dir / "quantization.yml", run_dir / "pruning.yml"
        # -c: the config's search settings, also for a reused model trained under other ones
        run(["quantize.py", "-r", best, "-c", seed_config], log)
        run(["prune.py", "-r", best, "-q", q, "-c", seed_config], log)
        # -c: the finetuning run goes under this save_dir with the config's settings, also for a
        # reused model whose stored config names another folder
        run(["train.py", "-r", best, "-q", q, "-p", p, "-c", seed_config], log)
        tuned = newest_run(save_dir, name + "_finetune") / "model_best.pth"
        run(["test.py", "-r", tuned], log)
        row = scores_of(tuned.with_name("model_best-test-quantized-pruned.yml"), keywords)
        run(["test.py", "-r", tuned, "--stream"], log)
        row.update(stream_of(tuned.with_name("model_best-stream-test-quantized-pruned.yml")))
        row["weight_bits"] = weight_bits(run(["profile.py", "-r", tuned], log))
        q_bits = yaml.safe_load(q.read_text())["results"]["bitwidths"]
    row["bits"] = "/".join(str(q_bits[g] or "f") for g in ("conv_weights", "fc_weights", "activations"))
    return {"float": float_row, "compressed": row}


# columns where lower is better: the worst seed has the highest
LOWER_IS_BETTER = ("stream_misses", "stream_fa_per_hour", "stream_misses_at_target", "stream_misses_at_10x",
                   "false_alarms", "weight_bits", "macs", "parameters", "est_flash_bytes", "est_ram_bytes",
                   "fw_flash_bytes", "fw_ram_bytes", "fw_instructions", "instructions_per_mac", "core_percent")


def summarise(rows, keywords):
    """Worst and mean over seeds of every column (the worst may mix seeds: each column's own); a
    cost some seed lacks (a result saved before it was measured) is left out."""
    higher = ["top1", "balanced"] + keywords
    lower = [k for k in LOWER_IS_BETTER if all(k in r for r in rows)]
    worst = {k: min(r[k] for r in rows) for k in higher} | {k: max(r[k] for r in rows) for k in lower}
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in higher + lower}
    return worst, mean


def format_table(results, keywords):
    cols = ["top1", "balanced"] + keywords + ["false_alarms"]
    stream = "stream_misses" in next(iter(results.values()))["float"]
    head = (f"{'seed':<6}{'model':<12}" + ("  misses  FA/h  miss@tgt  miss@10x" if stream else "")
            + "".join(f"{c[:9]:>10}" for c in cols) + f"{'w. bits':>10}{'bits c/f/a':>12}")
    lines = [head, "-" * len(head)]

    def line(label, model, row, bits=""):
        cells = "".join(f"{100 * row[c]:>9.1f}%" for c in cols)
        streamed = (f"{100 * row['stream_misses']:>7.1f}%{row['stream_fa_per_hour']:>6.1f}"
                    f"{100 * row['stream_misses_at_target']:>9.1f}%"
                    f"{100 * row['stream_misses_at_10x']:>9.1f}%" if stream else "")
        return f"{label:<6}{model:<12}{streamed}{cells}{int(round(row['weight_bits'])):>10}{bits:>12}"
    kinds = [k for k in (("float", "float"), ("compressed", "q+p+ft")) if all(k[0] in r for r in results.values())]
    for kind, title in kinds:
        rows = [r[kind] for r in results.values()]
        for seed, r in results.items():
            lines.append(line(str(seed), title, r[kind], r[kind].get("bits", "")))
        worst, mean = summarise(rows, keywords)
        lines.append(line("worst", title, worst))
        lines.append(line("mean", title, mean))
        lines.append("")
    f_worst = summarise([r["float"] for r in results.values()], keywords)[0]
    if len(kinds) == 1:
        lines.append(f"worst float keyword recall {100 * min(f_worst[k] for k in keywords):.1f}%")
        return "\n".join(lines)
    gaps = [r["float"]["balanced"] - r["compressed"]["balanced"] for r in results.values()]
    ratio = max(r["compressed"]["weight_bits"] / r["float"]["weight_bits"] for r in results.values())
    lines.append(f"worst float keyword recall {100 * min(f_worst[k] for k in keywords):.1f}%; "
                 f"largest balanced-accuracy loss float -> q+p+ft {100 * max(gaps):.1f} points; "
                 f"largest weight bits ratio {100 * ratio:.1f}% of float")
    return "\n".join(lines)


def plot(results, keywords, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    cols = ["balanced"] + keywords
    for ax, kind, title in zip(axes, ("float", "compressed"), ("float", "quantized + pruned + finetuned")):
        if not all(kind in r for r in results.values()):
            ax.set_visible(False)
            continue
        width = 0.8 / max(len(results), 1)
        for i, (seed, r) in enumerate(results.items()):
            ax.bar([j + i * width for j in range(len(cols))], [r[kind][c] for c in cols], width,
                   label=f"seed {seed}")
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(cols))], cols)
        ax.set_title(title)
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("test recall / balanced accuracy")
    (axes[1] if axes[1].get_visible() else axes[0]).legend(fontsize="small", loc="lower right")
    atomic.save_figure(fig, path)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--config", default="config_lenet5_keywords.yml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--data-dir", default=None, help="corpus (default: the config's data_dir)")
    parser.add_argument("--save-dir", default=None, help="where runs go (default: a temporary folder)")
    parser.add_argument("--out", default=None, help="YAML of the table (a PNG is written beside it)")
    parser.add_argument("--float-only", action="store_true", help="train and test only (no compression)")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse the float models of an earlier run in --save-dir; redo the compression")
    args = parser.parse_args()
    save_dir = Path(args.save_dir or tempfile.mkdtemp(prefix="accuracy_seeds_"))
    keywords = list(yaml.safe_load(Path(args.config).read_text())["data_loader"]["args"]
                    .get("keywords", ["one", "two", "three"]))
    results = {}
    start = time.perf_counter()
    for seed in args.seeds:
        log = save_dir / f"seed{seed}.log"
        print(f"seed {seed}: training and compressing (log: {log}) ...", flush=True)
        results[seed] = one_seed(args.config, seed, args.data_dir, save_dir, log, args.float_only, args.reuse)
    print()
    print(format_table(results, keywords))
    print(f"\n{len(args.seeds)} seeds in {time.perf_counter() - start:.0f} s; runs under {save_dir}")
    if args.out:
        atomic.write_yaml(args.out, {"config": str(args.config), "seeds": {s: r for s, r in results.items()}})
        plot(results, keywords, Path(args.out).with_suffix(".png"))


if __name__ == "__main__":
    main()
