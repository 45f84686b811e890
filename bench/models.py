"""Model comparison: train every architecture's config over seeds, compress and deploy each.

    python3 bench/models.py --data-dir ../shared/data/kws_corpus --seeds 0 1 2 --out models.yml
    python3 bench/models.py --configs config_lenet5_sc12.yml config_dscnn_sc12.yml \
        --data-dir ../shared/data/kws_corpus --seeds 0 1 2 --out sc12.yml   # the 12-class task

For every config (default: config_lenet5_keywords.yml and config_dscnn_keywords.yml) and seed, the
chain of bench/accuracy_seeds.py (``one_seed``: train, test, quantize, prune -q, finetune, test),
then ``profile.py`` of the float model and ``export.py`` of the finetuned one, whose export.yml
gives the compact model's MACs and parameters and the flash and RAM of its generated C code;
where arm-none-eabi-gcc and qemu-system-arm are installed the export targets the Cortex-M4, and
its export.yml also gives the instructions per MAC that the firmware measures under QEMU.
Prints per architecture the worst and the mean over seeds of the float and the compressed model:
test top-1, balanced accuracy, recall per keyword (and of unknown and silence in the 12-class
task), false alarms, MACs, parameters; flash and RAM of the C model. ``--out`` writes the rows (and every seed's) as YAML and a plot of balanced accuracy
against MACs and against flash (PNG). Each (config, seed) result is kept in ``--save-dir``;
``--resume`` reuses them, so the architectures can be run one at a time and tabulated together;
``--reuse`` takes the float models an earlier run (of this or of bench/accuracy_seeds.py) left in
``--save-dir`` and redoes only the compression and the export.
Slow (the DS-CNN trains for minutes per epoch on a loaded CPU): run it on a free machine.
"""
import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from accuracy_seeds import newest_run, one_seed, report_classes, run, summarise  # noqa: E402
from deploy.firmware import TOOLS  # noqa: E402
from utils import atomic  # noqa: E402

CONFIGS = ("config_lenet5_keywords.yml", "config_dscnn_keywords.yml")


def float_cost(profile_text):
    """(MACs, parameters) printed by profile.py."""
    macs = int(re.search(r"^MACs/classification: (\d+)$", profile_text, re.M).group(1))
    params = int(re.search(r"^Number of Parameters: (\d+)$", profile_text, re.M).group(1))
    return macs, params


def one_model(config, seed, data_dir, save_dir, reuse=False):
    """{'float': row, 'compressed': row} of one architecture and seed, with costs."""
    cfg = yaml.safe_load(Path(config).read_text())
    name = f"{cfg['name']}_seed{seed}"
    result = one_seed(config, seed, data_dir, save_dir, Path(save_dir) / f"{name}.log", reuse=reuse)
    with open(Path(save_dir) / f"{name}-deploy.log", "w", encoding="utf-8") as log:
        best = newest_run(save_dir, name) / "model_best.pth"
        result["float"]["macs"], result["float"]["parameters"] = float_cost(run(["profile.py", "-r", best], log))
        tuned = newest_run(save_dir, name + "_finetune") / "model_best.pth"
        bundle = Path(save_dir) / f"{name}-bundle"
        firmware = all(shutil.which(tool) for tool in TOOLS)
        run(["export.py", "-r", tuned, "-o", bundle] + (["--target", "cortex-m4"] if firmware else []), log)
    summary = yaml.safe_load((bundle / "export.yml").read_text())
    result["compressed"].update({k: summary[k] for k in ("macs", "parameters", "flash_bytes", "ram_bytes")})
    if summary.get("firmware"):
        result["compressed"]["instructions_per_mac"] = summary["firmware"]["instructions_per_mac"]
    result["arch"] = cfg["arch"]["type"]
    return result


def summary_rows(results, kind, keywords):
    """{'worst': row, 'mean': row} of one kind of model over seeds (bench/accuracy_seeds.py's rule)."""
    worst, mean = summarise([r[kind] for r in results], keywords)
    return {"worst": worst, "mean": mean}


def format_table(table, keywords):
    cols = ["top1", "balanced"] + keywords + ["false_alarms"]
    rows = [row for kinds in table.values() for stats in kinds.values() for row in stats.values()]
    measured = any("instructions_per_mac" in row for row in rows)   # the firmware ran (Cortex-M4, QEMU)
    head = (f"{'model':<34}" + "".join(f"{c[:9]:>10}" for c in cols)
            + f"{'MACs':>11}{'params':>9}{'flash B':>9}{'RAM B':>8}" + (f"{'instr/MAC':>10}" if measured else ""))
    lines = [head, "-" * len(head)]
    for arch, kinds in table.items():
        for kind, stats in kinds.items():
            for stat, row in stats.items():
                cells = "".join(f"{100 * row[c]:>9.1f}%" for c in cols)
                flash = (f"{row['flash_bytes']:>9,.0f}{row['ram_bytes']:>8,.0f}" if "flash_bytes" in row
                         else f"{'-':>9}{'-':>8}")
                per_mac = ""
                if measured:
                    per_mac = f"{row['instructions_per_mac']:>10.2f}" if "instructions_per_mac" in row else f"{'-':>10}"
                lines.append(f"{f'{arch} {kind} {stat}':<34}{cells}{row['macs']:>11,.0f}{row['parameters']:>9,.0f}"
                             f"{flash}{per_mac}")
    return "\n".join(lines)


def plot(table, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    from matplotlib.ticker import NullFormatter
    for arch, kinds in table.items():
        flt, row = kinds["float"]["mean"], kinds["compressed"]["mean"]
        line, = axes[0].plot([flt["macs"], row["macs"]], [flt["balanced"], row["balanced"]], "-", alpha=0.5)
        axes[0].plot([flt["macs"]], [flt["balanced"]], "s", mfc="none", color=line.get_color(), label=f"{arch} float")
        axes[0].plot([row["macs"]], [row["balanced"]], "o", color=line.get_color(), label=f"{arch} compressed")
        axes[1].plot([row["flash_bytes"]], [row["balanced"]], "o", color=line.get_color(), label=f"{arch} compressed")
    axes[0].set_xlabel("MACs per clip (float -> compressed)")
    axes[1].set_xlabel("flash of the C model (bytes)")
    axes[0].set_ylabel("test balanced accuracy (mean over seeds)")
    for ax in axes:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())   # decades only: the minor labels overlap
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    atomic.save_figure(fig, path)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--data-dir", default=None, help="corpus (default: each config's data_dir)")
    parser.add_argument("--save-dir", default=None, help="where runs go (default: a temporary folder)")
    parser.add_argument("--out", default=None, help="YAML of the table (a PNG is written beside it)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the results of (config, seed) pairs an earlier run left in --save-dir")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse the float models of an earlier run in --save-dir; redo compression and export")
    args = parser.parse_args()
    if (args.resume or args.reuse) and not args.save_dir:
        parser.error("--resume and --reuse need the --save-dir of the earlier run")
    save_dir = Path(args.save_dir or tempfile.mkdtemp(prefix="models_"))
    keywords = report_classes(yaml.safe_load(Path(args.configs[0]).read_text())["data_loader"]["args"])
    table, per_seed = {}, {}
    for config in args.configs:
        results = []
        name = yaml.safe_load(Path(config).read_text())["name"]
        for seed in args.seeds:
            done = save_dir / f"{name}_seed{seed}-result.yml"
            if args.resume and done.is_file():
                print(f"{config} seed {seed}: result of an earlier run ({done})", flush=True)
                results.append(yaml.safe_load(done.read_text()))
                continue
            print(f"{config} seed {seed}: training, compressing, exporting (logs under {save_dir}) ...", flush=True)
            results.append(one_model(config, seed, args.data_dir, save_dir, args.reuse))
            atomic.write_yaml(done, results[-1])
        table[results[0]["arch"]] = {kind: summary_rows(results, kind, keywords) for kind in ("float", "compressed")}
        per_seed[results[0]["arch"]] = dict(zip(args.seeds, results))
    print(f"\nWorst and mean over seeds {args.seeds} (test split):")
    print(format_table(table, keywords))
    if args.out:
        atomic.write_yaml(args.out, {"seeds": args.seeds, "models": table, "per_seed": per_seed})
        plot(table, Path(args.out).with_suffix(".png"))


if __name__ == "__main__":
    main()
