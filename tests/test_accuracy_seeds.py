"""bench/accuracy_seeds.py: the table a keyword spotter is judged by (worst seed, worst keyword)."""
import importlib.util

from conftest import ROOT

spec = importlib.util.spec_from_file_location("accuracy_seeds", ROOT / "bench" / "accuracy_seeds.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

KEYWORDS = ["one", "two", "three"]


def row(top1, balanced, one, two, three, fa, bits):
    return {"top1": top1, "balanced": balanced, "one": one, "two": two, "three": three,
            "false_alarms": fa, "weight_bits": bits}


def test_worst_is_the_minimum_of_accuracies_and_the_maximum_of_false_alarms_and_bits():
    rows = [row(0.95, 0.90, 0.90, 0.80, 0.95, 0.01, 100), row(0.93, 0.92, 0.85, 0.95, 0.90, 0.03, 120)]
    worst, mean = bench.summarise(rows, KEYWORDS)
    assert worst == row(0.93, 0.90, 0.85, 0.80, 0.90, 0.03, 120)
    assert mean["two"] == (0.80 + 0.95) / 2 and mean["weight_bits"] == 110


def test_table_prints_every_seed_and_the_closing_figures():
    results = {0: {"float": row(0.95, 0.90, 0.90, 0.80, 0.95, 0.01, 408448),
                   "compressed": {**row(0.94, 0.88, 0.88, 0.82, 0.93, 0.02, 20000), "bits": "8/4/8"}},
               1: {"float": row(0.93, 0.92, 0.85, 0.95, 0.90, 0.03, 408448),
                   "compressed": {**row(0.92, 0.86, 0.80, 0.90, 0.88, 0.04, 30000), "bits": "8/2/8"}}}
    text = bench.format_table(results, KEYWORDS)
    lines = text.splitlines()
    assert lines[2].split()[:3] == ["0", "float", "95.0%"]
    assert any(l.startswith("worst q+p+ft") and "80.0%" in l and "4.0%" in l and "30000" in l for l in lines)
    # largest loss of balanced accuracy: seed 1, 92 -> 86; largest bits ratio 30000 / 408448
    assert lines[-1] == ("worst float keyword recall 80.0%; largest balanced-accuracy loss float -> q+p+ft "
                         "6.0 points; largest weight bits ratio 7.3% of float")
    assert bench.weight_bits("  - Weights: 1.7 kB (13368 bits)") == 13368


def test_a_reused_float_model_is_compressed_and_finetuned_under_the_bench_save_dir(tmp_path):
    """--reuse: the float model of an earlier run, whose stored config names another save_dir,
    is finetuned under the bench's own --save-dir (where the table reads it), nowhere else."""
    import shutil
    from tiny import quantized_tiny_run
    corpus, config, run_dir = quantized_tiny_run(tmp_path / "earlier")
    bench_dir = tmp_path / "bench"
    shutil.copytree(run_dir, bench_dir / "models" / "tiny_seed0" / run_dir.name)
    result = bench.one_seed(config, 0, corpus, bench_dir, tmp_path / "seed0.log", reuse=True)
    [tuned] = (bench_dir / "models" / "tiny_seed0_finetune").iterdir()
    assert (tuned / "model_best.pth").is_file()
    assert not (tmp_path / "earlier" / "saved" / "models" / "tiny_seed0_finetune").exists()
    assert not (tmp_path / "earlier" / "saved" / "models" / "tiny_finetune").exists()
    assert set(result) == {"float", "compressed"} and 0 <= result["compressed"]["top1"] <= 1
