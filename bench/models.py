"""Model comparison: train every architecture's config over seeds, compress and deploy each.

    python3 bench/models.py --data-dir ../shared/data/kws_corpus --seeds 0 1 2 --out models.yml
    python3 bench/models.py --configs config_lenet5_sc12.yml config_dscnn_sc12.yml \
        --data-dir ../shared/data/kws_corpus --seeds 0 1 2 --out sc12.yml   # the 12-class task

For every config (default: config_lenet5_keywords.yml and config_dscnn_keywords.yml) and seed, the
chain of bench/accuracy_seeds.py (``one_seed``: train, test, quantize, prune -q, finetune, test),
then ``profile.py`` of the float model and ``export.py`` of the finetuned one, whose export.yml
gives the compact model's MACs and parameters and export.py's estimates of the flash and RAM of
its C model (weight and bias arrays; the largest pair of live activation buffers). Where make,
arm-none-eabi-gcc and qemu-system-arm are installed the export targets the Cortex-M4 and runs the
firmware under QEMU, and its export.yml also gives what the firmware measures: flash and RAM of
the keyword-spotting code and data (the model's; with the integer front end the model, front end
and stream's), RAM with the peak stack; instructions per inference and per MAC; the share of an
80 MHz core (10 inferences a second; with the stream, the whole pipeline in real time).

Prints per architecture the worst and the mean over seeds of the float and the compressed model:
test top-1, balanced accuracy, recall per keyword (and of unknown and silence in the 12-class
task), false alarms, MACs, parameters; the firmware's figures in the columns headed ``fw`` (only
those some row has), export.py's estimates in the columns headed ``est``, and a legend of both
below. ``--out`` writes the rows (and every seed's) as YAML (est_flash_bytes, est_ram_bytes;
fw_flash_bytes, fw_ram_bytes, fw_instructions, instructions_per_mac, core_percent, fw_covers) and
a plot of balanced accuracy against MACs and against flash (PNG): the firmware's flash when every
architecture has it, else the estimate, as the axis says. Each (config, seed) result is kept in
``--save-dir``; ``--resume`` reuses them, so the architectures can be run one at a time and
tabulated together (a result saved before the firmware's flash and RAM were kept has its estimates
renamed and takes the firmware's figures from its bundle's export.yml, when that is its export);
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


# what the firmware's flash, RAM and core share cover (export.yml's firmware: the stream ran or not)
COVERS_MODEL, COVERS_STREAM = "model", "model, front end, stream"
# (key, header, width, format) of the cost columns; "fw": measured by the firmware, "est": export.py's estimates
COST_COLUMNS = (("macs", "MACs", 11, ",.0f"), ("parameters", "params", 9, ",.0f"),
                ("fw_flash_bytes", "fw flash B", 11, ",.0f"), ("fw_ram_bytes", "fw RAM B", 9, ",.0f"),
                ("fw_instructions", "fw instr", 11, ",.0f"), ("instructions_per_mac", "fw i/MAC", 9, ".2f"),
                ("core_percent", "fw core%", 9, ".2f"),
                ("est_flash_bytes", "est flash B", 12, ",.0f"), ("est_ram_bytes", "est RAM B", 10, ",.0f"))
MEASURED = {"fw_flash_bytes": "flash", "fw_ram_bytes": "RAM (with the peak stack)",   # what the legend calls them
            "fw_instructions": "instructions per inference", "instructions_per_mac": "instructions per MAC",
            "core_percent": "% of an 80 MHz core"}
ESTIMATES = ("est_flash_bytes", "est_ram_bytes")


def compressed_costs(summary):
    """The compressed row's costs from an export.yml: MACs, parameters, export.py's estimates of the
    C model's flash and RAM, and, where the firmware ran under QEMU, what it measured."""
    costs = {"macs": summary["macs"], "parameters": summary["parameters"],
             "est_flash_bytes": summary["flash_bytes"], "est_ram_bytes": summary["ram_bytes"]}
    fw = summary.get("firmware")
    if fw:
        costs.update(fw_flash_bytes=fw["flash_bytes"], fw_ram_bytes=fw["ram_bytes"], fw_instructions=fw["instructions"],
                     instructions_per_mac=fw["instructions_per_mac"], core_percent=fw["core_percent"],
                     fw_covers=COVERS_STREAM if fw.get("stream") else COVERS_MODEL)
    return costs


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
    result["compressed"].update(compressed_costs(yaml.safe_load((bundle / "export.yml").read_text())))
    result["arch"] = cfg["arch"]["type"]
    return result


def saved_result(path, bundle):
    """The result an earlier run saved in ``path``. One saved before the firmware's flash and RAM
    were kept (its flash_bytes and ram_bytes were export.py's estimates) gets today's keys: the
    estimates renamed, and the firmware's figures from ``bundle``'s export.yml when that is the
    export the result came from (same MACs, parameters and estimates)."""
    result = yaml.safe_load(Path(path).read_text())
    row = result["compressed"]
    if "flash_bytes" in row and "est_flash_bytes" not in row:
        row["est_flash_bytes"], row["est_ram_bytes"] = row.pop("flash_bytes"), row.pop("ram_bytes")
    summary_file = Path(bundle) / "export.yml"
    if "fw_flash_bytes" not in row and summary_file.is_file():
        costs = compressed_costs(yaml.safe_load(summary_file.read_text()))
        if all(costs[k] == row.get(k) for k in ("macs", "parameters") + ESTIMATES):
            row.update(costs)
    return result


def summary_rows(results, kind, keywords):
    """{'worst': row, 'mean': row} of one kind of model over seeds (bench/accuracy_seeds.py's rule),
    with what the firmware's figures cover when every seed's cover the same."""
    worst, mean = summarise([r[kind] for r in results], keywords)
    covers = {r[kind].get("fw_covers") for r in results}
    for row in (worst, mean):
        if len(covers) == 1 and None not in covers:
            row["fw_covers"] = next(iter(covers))
        else:   # flash, RAM and core share of different code: no worst or mean of them
            for key in ("fw_flash_bytes", "fw_ram_bytes", "core_percent"):
                row.pop(key, None)
    return {"worst": worst, "mean": mean}


def legend(table):
    """The lines under the table that say what its fw and est columns are."""
    rows = [row for kinds in table.values() for stats in kinds.values() for row in stats.values()]
    lines = []
    shown = [name for key, name in MEASURED.items() if any(key in row for row in rows)]
    if shown:
        covers = {arch: kinds["compressed"]["mean"].get("fw_covers") for arch, kinds in table.items()}
        what = "; ".join(f"{arch}: " + ("the model's code and data, core share at 10 inferences a second"
                                        if c == COVERS_MODEL else
                                        "the keyword spotter's (model, front end, stream), core share of the "
                                        "pipeline in real time")
                         for arch, c in covers.items() if c)
        lines.append("fw: measured by the firmware on the Cortex-M4 under QEMU: " + ", ".join(shown)
                     + (f" ({what})" if what else ""))
    lines.append("est: export.py's estimates for the C model: flash = weight and bias arrays, "
                 "RAM = the largest pair of live activation buffers")
    return lines


def format_table(table, keywords):
    cols = ["top1", "balanced"] + keywords + ["false_alarms"]
    rows = [row for kinds in table.values() for stats in kinds.values() for row in stats.values()]
    costs = [c for c in COST_COLUMNS if c[0] not in MEASURED or any(c[0] in row for row in rows)]
    width = max([34] + [len(f"{arch} compressed worst") + 1 for arch in table])
    head = (f"{'model':<{width}}" + "".join(f"{c[:9]:>10}" for c in cols)
            + "".join(f"{header:>{width}}" for _, header, width, _ in costs))
    lines = [head, "-" * len(head)]
    for arch, kinds in table.items():
        for kind, stats in kinds.items():
            for stat, row in stats.items():
                cells = "".join(f"{100 * row[c]:>9.1f}%" for c in cols)
                cost = "".join(f"{row[key]:>{width}{fmt}}" if key in row else f"{'-':>{width}}"
                               for key, _, width, fmt in costs)
                lines.append(f"{f'{arch} {kind} {stat}':<{width}}{cells}{cost}")
    return "\n".join(lines + legend(table))


def flash_axis(table):
    """(key, x label) of the plot's flash axis: the firmware's flash when every architecture's
    compressed model has it, else export.py's estimate."""
    rows = [kinds["compressed"]["mean"] for kinds in table.values()]
    if all("fw_flash_bytes" in row for row in rows):
        covers = {row.get("fw_covers") for row in rows}
        what = ({COVERS_MODEL: ": the model's code and data", COVERS_STREAM: ": model, front end, stream"}
                .get(covers.pop(), "") if len(covers) == 1 else "")
        return "fw_flash_bytes", f"flash measured by the firmware{what} (bytes)"
    return "est_flash_bytes", "flash estimated by export.py: the C model's weights and biases (bytes)"


def plot(table, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    from matplotlib.ticker import NullFormatter
    flash, flash_label = flash_axis(table)
    for arch, kinds in table.items():
        flt, row = kinds["float"]["mean"], kinds["compressed"]["mean"]
        line, = axes[0].plot([flt["macs"], row["macs"]], [flt["balanced"], row["balanced"]], "-", alpha=0.5)
        axes[0].plot([flt["macs"]], [flt["balanced"]], "s", mfc="none", color=line.get_color(), label=f"{arch} float")
        axes[0].plot([row["macs"]], [row["balanced"]], "o", color=line.get_color(), label=f"{arch} compressed")
        axes[1].plot([row[flash]], [row["balanced"]], "o", color=line.get_color(), label=f"{arch} compressed")
    axes[0].set_xlabel("MACs per clip (float -> compressed)")
    axes[1].set_xlabel(flash_label)
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
                results.append(saved_result(done, save_dir / f"{name}_seed{seed}-bundle"))
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
