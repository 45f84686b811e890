"""bench/models.py: the architecture table gives the worst and the mean over seeds, costs included."""
import importlib.util
import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
spec = importlib.util.spec_from_file_location("models_bench", ROOT / "bench" / "models.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

KEYWORDS = ["one", "two", "three"]


def row(top1, balanced, one, two, three, fa, macs, params, flash=None, ram=None):
    out = {"top1": top1, "balanced": balanced, "one": one, "two": two, "three": three, "false_alarms": fa,
           "weight_bits": params * 4, "macs": macs, "parameters": params}
    if flash is not None:
        out.update(flash_bytes=flash, ram_bytes=ram)
    return out


RESULTS = [
    {"arch": "Net", "float": row(0.95, 0.90, 0.90, 0.80, 0.95, 0.01, 1000, 100),
     "compressed": {**row(0.94, 0.88, 0.88, 0.82, 0.93, 0.02, 800, 60, 2000, 3000), "bits": "8/4/8"}},
    {"arch": "Net", "float": row(0.93, 0.92, 0.85, 0.95, 0.90, 0.03, 1000, 100),
     "compressed": {**row(0.92, 0.86, 0.80, 0.90, 0.88, 0.04, 600, 40, 1800, 3200), "bits": "4/4/8"}},
]


def test_worst_takes_each_columns_worst_seed_and_mean_averages():
    stats = bench.summary_rows(RESULTS, "compressed", KEYWORDS)
    worst, mean = stats["worst"], stats["mean"]
    assert (worst["top1"], worst["one"], worst["two"], worst["false_alarms"]) == (0.92, 0.80, 0.82, 0.04)
    # costs: the worst seed is the most expensive one
    assert (worst["macs"], worst["parameters"], worst["flash_bytes"], worst["ram_bytes"]) == (800, 60, 2000, 3200)
    assert mean["macs"] == 700 and mean["flash_bytes"] == 1900 and mean["two"] == (0.82 + 0.90) / 2


def test_table_has_a_worst_and_a_mean_line_per_kind_with_false_alarms_and_costs(tmp_path):
    table = {"Net": {kind: bench.summary_rows(RESULTS, kind, KEYWORDS) for kind in ("float", "compressed")}}
    lines = bench.format_table(table, KEYWORDS).splitlines()
    assert "false_ala" in lines[0] and "flash B" in lines[0]
    assert [l.split()[:3] for l in lines[2:]] == [["Net", "float", "worst"], ["Net", "float", "mean"],
                                                   ["Net", "compressed", "worst"], ["Net", "compressed", "mean"]]
    assert lines[4].split()[3:] == ["92.0%", "86.0%", "80.0%", "82.0%", "88.0%", "4.0%", "800", "60", "2,000",
                                    "3,200"]
    assert lines[2].split()[-2:] == ["-", "-"]   # the float model has no C build
    bench.plot(table, tmp_path / "models.png")
    assert (tmp_path / "models.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_instructions_per_mac_column_when_the_firmware_ran():
    """The firmware's instructions per MAC (export.yml, under QEMU) become a column: worst = the
    highest seed, mean the average; the float model, never built for the M4, shows '-'."""
    results = [{**r, "compressed": {**r["compressed"], "instructions_per_mac": x}}
               for r, x in zip(RESULTS, (1.64, 1.70))]
    stats = bench.summary_rows(results, "compressed", KEYWORDS)
    assert stats["worst"]["instructions_per_mac"] == 1.70
    assert abs(stats["mean"]["instructions_per_mac"] - 1.67) < 1e-12
    table = {"Net": {kind: bench.summary_rows(results, kind, KEYWORDS) for kind in ("float", "compressed")}}
    lines = bench.format_table(table, KEYWORDS).splitlines()
    assert lines[0].split()[-1] == "instr/MAC"
    assert [line.split()[-1] for line in lines[2:]] == ["-", "-", "1.70", "1.67"]
    # without it, no such column (the table above)
    assert "instr/MAC" not in bench.format_table(
        {"Net": {kind: bench.summary_rows(RESULTS, kind, KEYWORDS) for kind in ("float", "compressed")}}, KEYWORDS)


def test_float_cost_reads_profile_output():
    text = "Accuracy:\nMACs/classification: 170864\nNumber of Parameters: 12764\n"
    assert bench.float_cost(text) == (170864, 12764)
