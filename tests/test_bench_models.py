"""bench/models.py: the architecture table gives the worst and the mean over seeds, costs included:
the firmware's measured flash, RAM and instructions (fw) apart from export.py's estimates (est)."""
import importlib.util
import sys

import yaml

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
spec = importlib.util.spec_from_file_location("models_bench", ROOT / "bench" / "models.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

KEYWORDS = ["one", "two", "three"]
EST_LEGEND = ("est: export.py's estimates for the C model: flash = weight and bias arrays, "
              "RAM = the largest pair of live activation buffers")


def row(top1, balanced, one, two, three, fa, macs, params, flash=None, ram=None):
    out = {"top1": top1, "balanced": balanced, "one": one, "two": two, "three": three, "false_alarms": fa,
           "weight_bits": params * 4, "macs": macs, "parameters": params}
    if flash is not None:
        out.update(est_flash_bytes=flash, est_ram_bytes=ram)
    return out


RESULTS = [
    {"arch": "Net", "float": row(0.95, 0.90, 0.90, 0.80, 0.95, 0.01, 1000, 100),
     "compressed": {**row(0.94, 0.88, 0.88, 0.82, 0.93, 0.02, 800, 60, 2000, 3000), "bits": "8/4/8"}},
    {"arch": "Net", "float": row(0.93, 0.92, 0.85, 0.95, 0.90, 0.03, 1000, 100),
     "compressed": {**row(0.92, 0.86, 0.80, 0.90, 0.88, 0.04, 600, 40, 1800, 3200), "bits": "4/4/8"}},
]


def export_yml(macs, params, flash, ram, fw=None, stream=False):
    """export.yml as export.py writes it: its estimates, and the firmware's figures (parse_run's keys)."""
    out = {"macs": macs, "parameters": params, "flash_bytes": flash, "ram_bytes": ram, "target": "host",
           "firmware": None}
    if fw is not None:
        fw_flash, fw_ram, instructions, per_mac, core = fw
        out["target"] = "cortex-m4"
        out["firmware"] = {
            "scores_identical": True, "clips": 10, "detections_identical": True if stream else None,
            "detections": 3 if stream else None, "flash_bytes": fw_flash, "ram_bytes": fw_ram,
            "instructions": instructions, "instructions_per_mac": per_mac, "core_percent": core,
            "parts": {"model": {"code_bytes": fw_flash, "data_bytes": 0, "bss_bytes": fw_ram}},
            "stack_bytes": {"model": 200, "pipeline": None},
            "stream": {"samples": 16000, "hops": 100, "windows": 9} if stream else None, "layers": []}
    return out


def table_of(results_by_arch):
    return {arch: {kind: bench.summary_rows(results, kind, KEYWORDS) for kind in ("float", "compressed")}
            for arch, results in results_by_arch.items()}


def with_costs(results, summaries):
    return [{**r, "compressed": {**{k: v for k, v in r["compressed"].items()
                                    if k not in ("macs", "parameters", "est_flash_bytes", "est_ram_bytes")},
                                 **bench.compressed_costs(s)}} for r, s in zip(results, summaries)]


def test_worst_takes_each_columns_worst_seed_and_mean_averages():
    stats = bench.summary_rows(RESULTS, "compressed", KEYWORDS)
    worst, mean = stats["worst"], stats["mean"]
    assert (worst["top1"], worst["one"], worst["two"], worst["false_alarms"]) == (0.92, 0.80, 0.82, 0.04)
    # costs: the worst seed is the most expensive one
    assert (worst["macs"], worst["parameters"], worst["est_flash_bytes"], worst["est_ram_bytes"]) == (800, 60, 2000, 3200)
    assert mean["macs"] == 700 and mean["est_flash_bytes"] == 1900 and mean["two"] == (0.82 + 0.90) / 2


def test_without_the_firmware_the_table_has_the_estimates_only(tmp_path):
    table = table_of({"Net": RESULTS})
    lines = bench.format_table(table, KEYWORDS).splitlines()
    assert lines[0].endswith("false_ala       MACs   params est flash B est RAM B")
    assert "fw" not in lines[0]
    assert [line.split()[:3] for line in lines[2:6]] == [["Net", "float", "worst"], ["Net", "float", "mean"],
                                                        ["Net", "compressed", "worst"], ["Net", "compressed", "mean"]]
    assert lines[4][34:] == "     92.0%     86.0%     80.0%     82.0%     88.0%      4.0%        800       60       2,000     3,200"
    assert lines[5][34:] == "     93.0%     87.0%     84.0%     86.0%     90.5%      3.0%        700       50       1,900     3,100"
    assert lines[2].split()[-2:] == ["-", "-"]   # the float model has no C build
    assert lines[6:] == [EST_LEGEND]
    # a long architecture name widens the label column: the cells stay under their headers
    long = bench.format_table(table_of({"KeywordLeNet5Clone": RESULTS}), KEYWORDS).splitlines()
    assert long[4] == "KeywordLeNet5Clone compressed worst " + lines[4][34:]
    assert len(long[0]) == len(long[4]) == len(lines[0]) + 2
    assert bench.flash_axis(table) == ("est_flash_bytes",
                                       "flash estimated by export.py: the C model's weights and biases (bytes)")
    bench.plot(table, tmp_path / "models.png")
    assert (tmp_path / "models.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_firmware_figures_are_columns_of_their_own_beside_the_estimates(tmp_path):
    """export.yml's firmware: flash and RAM of the keyword-spotting code and data, instructions per
    inference and per MAC, share of the core; worst = the highest seed, mean the average; the
    estimates stay in their est columns; the float model, never built, shows '-'."""
    net = with_costs(RESULTS, [export_yml(150000, 5000, 2400, 3260, (5200, 4000, 280000, 1.86, 3.30)),
                               export_yml(140000, 4000, 2000, 3260, (4800, 4100, 266000, 1.90, 3.50))])
    big = with_costs(RESULTS, [export_yml(900000, 9000, 9000, 20000, (25000, 22800, 1700000, 1.89, 15.50), stream=True),
                               export_yml(900000, 9000, 9000, 20000, (25000, 22800, 1720000, 1.91, 15.90), stream=True)])
    assert net[0]["compressed"]["fw_covers"] == "model" and big[0]["compressed"]["fw_covers"] == "model, front end, stream"
    table = table_of({"Net": net, "Big": big})
    lines = bench.format_table(table, KEYWORDS).splitlines()
    assert lines[0].endswith("false_ala       MACs   params fw flash B fw RAM B   fw instr fw i/MAC fw core% est flash B est RAM B")
    costs = [line[34 + 6 * 10:] for line in lines[2:10]]
    assert costs[0] == "      1,000      100          -        -          -        -        -           -         -"
    assert costs[2] == "    150,000    5,000      5,200    4,100    280,000     1.90     3.50       2,400     3,260"
    assert costs[3] == "    145,000    4,500      5,000    4,050    273,000     1.88     3.40       2,200     3,260"
    assert costs[7] == "    900,000    9,000     25,000   22,800  1,710,000     1.90    15.70       9,000    20,000"
    assert lines[10:] == [
        "fw: measured by the firmware on the Cortex-M4 under QEMU: flash, RAM (with the peak stack), instructions "
        "per inference, instructions per MAC, % of an 80 MHz core (Net: the model's code and data, core share at 10 "
        "inferences a second; Big: the keyword spotter's (model, front end, stream), core share of the pipeline in "
        "real time)",
        EST_LEGEND]
    # the plot's flash is the measured one when every architecture has it, and says of what
    assert bench.flash_axis(table) == ("fw_flash_bytes", "flash measured by the firmware (bytes)")
    assert bench.flash_axis(table_of({"Big": big})) == (
        "fw_flash_bytes", "flash measured by the firmware: model, front end, stream (bytes)")
    assert bench.flash_axis(table_of({"Net": net}))[1] == "flash measured by the firmware: the model's code and data (bytes)"
    assert bench.flash_axis(table_of({"Net": net, "Old": RESULTS}))[0] == "est_flash_bytes"
    bench.plot(table, tmp_path / "models.png")
    assert (tmp_path / "models.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def old_result(macs, params, flash, ram, per_mac):
    """A result the version before the firmware's flash and RAM saved: flash_bytes and ram_bytes
    were export.py's estimates, instructions_per_mac the firmware's only figure."""
    result = {**RESULTS[0], "compressed": {**row(0.94, 0.88, 0.88, 0.82, 0.93, 0.02, macs, params), "bits": "8/4/8",
                                           "flash_bytes": flash, "ram_bytes": ram, "instructions_per_mac": per_mac}}
    return yaml.safe_dump(result)


def test_a_result_saved_by_the_old_version_still_tabulates(tmp_path):
    """--resume on a result without the new keys: its estimates are renamed, the firmware's figures
    come from its bundle's export.yml when that is its export, else only instructions per MAC."""
    (tmp_path / "a-result.yml").write_text(old_result(800, 60, 2000, 3000, 1.70))
    alone = bench.saved_result(tmp_path / "a-result.yml", tmp_path / "a-bundle")   # no bundle
    assert {k: alone["compressed"][k] for k in ("est_flash_bytes", "est_ram_bytes", "instructions_per_mac")} == {
        "est_flash_bytes": 2000, "est_ram_bytes": 3000, "instructions_per_mac": 1.70}
    assert "flash_bytes" not in alone["compressed"] and "fw_flash_bytes" not in alone["compressed"]
    # its bundle: the firmware's figures join the row
    (tmp_path / "b-result.yml").write_text(old_result(600, 40, 1800, 3200, 1.64))
    (tmp_path / "b-bundle").mkdir()
    (tmp_path / "b-bundle" / "export.yml").write_text(
        yaml.safe_dump(export_yml(600, 40, 1800, 3200, (4800, 4100, 98400, 1.64, 1.23))))
    filled = bench.saved_result(tmp_path / "b-result.yml", tmp_path / "b-bundle")
    assert {k: filled["compressed"][k] for k in (*bench.MEASURED, "fw_covers")} == {
        "fw_flash_bytes": 4800, "fw_ram_bytes": 4100, "fw_instructions": 98400, "instructions_per_mac": 1.64,
        "core_percent": 1.23, "fw_covers": "model"}
    # a bundle of another export (other MACs) is not this result's: nothing taken from it
    (tmp_path / "b-bundle" / "export.yml").write_text(
        yaml.safe_dump(export_yml(700, 40, 1800, 3200, (4800, 4100, 98400, 1.64, 1.23))))
    assert "fw_flash_bytes" not in bench.saved_result(tmp_path / "b-result.yml", tmp_path / "b-bundle")["compressed"]
    # an old seed beside a new one: what both have (instructions per MAC) has a worst and a mean, the rest '-'
    lines = bench.format_table(table_of({"Net": [alone, filled]}), KEYWORDS).splitlines()
    assert lines[0].endswith("false_ala       MACs   params fw i/MAC est flash B est RAM B")
    assert lines[4][34 + 6 * 10:] == "        800       60     1.70       2,000     3,200"
    assert lines[5][34 + 6 * 10:] == "        700       50     1.67       1,900     3,100"
    assert lines[6:] == ["fw: measured by the firmware on the Cortex-M4 under QEMU: instructions per MAC", EST_LEGEND]


def test_resume_tabulates_saved_results_of_both_versions(tmp_path, monkeypatch, capsys):
    """main with --resume and --out on results an earlier run left (no training): the table, the YAML
    with the new keys, the PNG."""
    configs = [ROOT / "config_lenet5_keywords.yml", ROOT / "config_dscnn_keywords.yml"]
    names = [yaml.safe_load(c.read_text())["name"] for c in configs]
    (tmp_path / f"{names[0]}_seed0-result.yml").write_text(old_result(800, 60, 2000, 3000, 1.70))
    new = with_costs(RESULTS[1:], [export_yml(900000, 9000, 9000, 20000, (25000, 22800, 1700000, 1.89, 21.25))])[0]
    (tmp_path / f"{names[1]}_seed0-result.yml").write_text(yaml.safe_dump({**new, "arch": "Big"}))
    out = tmp_path / "models.yml"
    monkeypatch.setattr(sys, "argv", ["models.py", "--configs", *map(str, configs), "--seeds", "0",
                                      "--save-dir", str(tmp_path), "--resume", "--out", str(out)])
    bench.main()
    lines = capsys.readouterr().out.splitlines()
    start = lines.index("Worst and mean over seeds [0] (test split):") + 1
    assert lines[start].endswith("fw flash B fw RAM B   fw instr fw i/MAC fw core% est flash B est RAM B")
    assert lines[start + 4][34 + 6 * 10:] == ("        800       60          -        -          -     1.70        -"
                                              "       2,000     3,000")
    assert lines[start + 8][34 + 6 * 10:] == ("    900,000    9,000     25,000   22,800  1,700,000     1.89    21.25"
                                              "       9,000    20,000")
    saved = yaml.safe_load(out.read_text())
    assert saved["models"]["Big"]["compressed"]["worst"]["fw_ram_bytes"] == 22800
    assert saved["models"]["Net"]["compressed"]["mean"]["est_flash_bytes"] == 2000
    assert saved["per_seed"]["Net"][0]["compressed"]["est_ram_bytes"] == 3000
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_float_cost_reads_profile_output():
    text = "Accuracy:\nMACs/classification: 170864\nNumber of Parameters: 12764\n"
    assert bench.float_cost(text) == (170864, 12764)
