"""bench/vs_lab.py: its log parsing, table, last line and our side's config (not the full run)."""
import importlib.util
from pathlib import Path

import yaml

from conftest import ROOT
from configuration.schema import validate_config

spec = importlib.util.spec_from_file_location("vs_lab", ROOT / "bench" / "vs_lab.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_accuracies_are_read_from_both_sides_logs():
    ours_train = ("epoch   1 | loss 0.5 top1 0.8 | val_loss 0.4 val_top1 0.8100 val_bal 0.5 val_fa 0.01 | 1 samples/s\n"
                  "epoch   2 | loss 0.4 top1 0.9 | val_loss 0.3 val_top1 0.9292 val_bal 0.8 val_fa 0.01 | 1 samples/s\n")
    lab_train = "    epoch          : 15\n    val_loss       : 0.1\n    val_top1       : 0.9664\n"
    assert bench.top1_of("train", "ours", ours_train) == 0.9292
    assert bench.top1_of("finetune", "lab", lab_train) == 0.9664
    assert bench.top1_of("test_qp", "lab", "Metrics: {'loss': 0.2, 'top1': 0.918}\n") == 0.918
    assert abs(bench.top1_of("profile_qp", "ours", "MACs: 1\nAccuracy: 81.24%\n") - 0.8124) < 1e-12
    assert bench.top1_of("quantize", "ours", "Baseline float32: 0.9\nAccuracy: 0.81260 | balanced: 0.7\n") == 0.8126
    assert bench.top1_of("quantize", "ours", "Accuracy: 0.81260 (top1) | balanced: 0.7\n") == 0.8126
    assert bench.top1_of("prune", "lab", "Accuracy: 0.9432\n") == 0.9432
    assert bench.top1_of("test", "ours", "no metrics here") is None


def _side(wall, rss=500.0):
    return {"ok": True, "wall": wall, "rss": rss, "cpu": wall, "top1": 0.9}


def test_table_ratios_and_the_last_line():
    walls = [(175.9, 57.1), (3.0, 1.2), (10.7, 5.0), (22.0, 6.0), (2.8, 1.0), (3.2, 1.5), (83.8, 30.0), (3.2, 1.1)]
    rows = [{"key": key, "label": label, "lab": _side(a), "ours": _side(b, 600.0)}
            for (key, label), (a, b) in zip(bench.STEPS, walls)]
    totals = bench.summarise(rows)
    assert totals["complete"] and abs(totals["chain_ratio"] - sum(a for a, _ in walls) / sum(b for _, b in walls)) < 1e-12
    assert totals["slowest_ratio"] == min(a / b for a, b in walls) and totals["largest_memory_ratio"] == 1.2
    text = bench.format_table(rows, totals)
    last = text.splitlines()[-1]
    assert last == f"chain ratio (lab/ours): {totals['chain_ratio']:.2f}; slowest step ratio: {totals['slowest_ratio']:.2f}"
    assert bench.parse_last_line(text) == (round(totals["chain_ratio"], 2), round(totals["slowest_ratio"], 2))
    assert "test -q -p" in text and "3.08" in text  # the training row's ratio


def test_a_failed_step_leaves_the_chain_incomplete_without_the_last_line():
    rows = [{"key": key, "label": label, "lab": _side(2.0), "ours": _side(1.0)} for key, label in bench.STEPS]
    rows[3]["ours"] = {"ok": False, "wall": 0.5, "rss": 100.0, "cpu": 0.1}
    totals = bench.summarise(rows)
    text = bench.format_table(rows, totals)
    assert not totals["complete"] and totals["chain_ratio"] is None and "INCOMPLETE" in text
    assert bench.parse_last_line(text) is None


def test_our_side_runs_the_labs_recipe_and_passes_our_schema(tmp_path):
    cfg = bench.our_config(tmp_path / "corpus", tmp_path)
    validate_config(yaml.safe_load(yaml.safe_dump(cfg)))
    args = cfg["data_loader"]["args"]
    assert (args["batch_size"], cfg["optimizer"]["args"]["lr"], cfg["trainer"]["epochs"]) == (512, 0.001, 15)
    assert args["augment"] == {"enabled": False} and cfg["optimization"]["finetuning"]["epochs"] == 10
    assert args["normalize"] is False   # the lab reads raw MFCCs
    assert Path(args["data_dir"]) == tmp_path / "corpus"
    # the lab keeps the epoch of the best val_loss and calibrates no stream detector: neither do we here
    assert cfg["trainer"]["monitor"] == "min val_loss" and "monitor" not in cfg["optimization"]["finetuning"]
    assert "detector" not in cfg


def test_repeated_runs_keep_the_fastest_with_every_wall_time_and_the_largest_memory():
    a = {"ok": True, "wall": 30.0, "rss": 900.0, "top1": 0.9}
    b = {"ok": True, "wall": 25.0, "rss": 950.0, "top1": 0.9}
    c = {"ok": True, "wall": 27.0, "rss": 800.0, "top1": 0.9}
    best = bench.fastest(bench.fastest(bench.fastest(None, a), b), c)
    assert (best["wall"], best["rss"], best["walls"]) == (25.0, 950.0, [30.0, 25.0, 27.0])
    failed = {"ok": False, "wall": 3.0, "rss": 100.0}
    assert not bench.fastest(bench.fastest(None, a), failed)["ok"]          # a failed run fails the step
    assert not bench.fastest(failed, {"ok": False, "skipped": True})["ok"]
    rows = [{"key": k, "label": label, "lab": dict(a, wall=3.0 * a["wall"]), "ours": best}
            for k, label in bench.STEPS]
    totals = bench.summarise(rows)
    assert round(totals["chain_ratio"], 2) == 3.6 and totals["largest_memory_ratio"] == 950.0 / 900.0
