"""quantize.py, prune.py, test.py/profile.py with -q/-p and finetuning, run as a user runs them."""
import re

import pytest
import torch
import yaml

from conftest import run_dirs
from conftest import run_script as run
from app.workflow import validation_setup


@pytest.fixture(scope="module")
def solutions(trained):
    run_dir, _ = trained
    ckpt = run_dir / "model_best.pth"
    q = run("quantize.py", "-r", ckpt)
    p = run("prune.py", "-r", ckpt)
    return ckpt, run_dir / "quantization.yml", run_dir / "pruning.yml", q.stdout, p.stdout


def test_quantize_prints_the_lab_report_and_writes_yml_and_png(solutions):
    ckpt, qyml, _, out, _ = solutions
    assert "Network quantization results." in out
    # the lab's lines (top-1 first), with the decision metric of our config beside them
    assert re.search(r"^Baseline float32: \d\.\d{5} \(top1\) \| balanced_accuracy: \d\.\d{5}$", out, re.M)
    assert re.search(r"^    bitwidth: 16 => top1: \d\.\d{5} \| balanced_accuracy: \d\.\d{5}$", out, re.M)
    assert re.search(r"^Decision metric: balanced_accuracy, floor \d\.\d{5} \(baseline \d\.\d{5}\)$", out, re.M)
    assert re.search(r"^Conv weights bitwidth: (\d+|float32)$", out, re.M)
    assert f"Saving config: {qyml}" in out
    data = yaml.safe_load(qyml.read_text())
    assert set(data) == {"config", "results", "layers", "solutions"}
    assert data["solutions"] == data["layers"]  # the lab's name, for its loader
    assert set(data["layers"]) == {"conv1", "conv2", "fc3", "fc4"}
    assert data["results"]["accuracy"] >= data["results"]["floor"] - 1e-9
    assert qyml.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def test_prune_prints_the_lab_table_and_writes_yml_and_png(solutions):
    _, _, pyml, _, out = solutions
    assert re.search(r"^Layer conv2    \| Conv     \| \d+/8 kernels pruned\s+\| \d+\.\d\d% parameters pruned$", out, re.M)
    assert re.search(r"^Layer fc4      \| Linear   \| 0/4 kernels pruned", out, re.M)
    assert re.search(r"^Total pruning rate: \d+\.\d\d%$", out, re.M)
    data = yaml.safe_load(pyml.read_text())
    assert set(data["pruned_filters"]) == {"conv1", "conv2", "fc3", "fc4"} and data["pruned_filters"]["fc4"] == []
    assert pyml.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def test_profile_with_solutions_counts_what_is_left(solutions):
    ckpt, qyml, pyml, _, _ = solutions
    pruned = yaml.safe_load(pyml.read_text())["pruned_filters"]
    layers = yaml.safe_load(qyml.read_text())["layers"]
    c1, c2, f3 = 8 - len(pruned["conv1"]), 8 - len(pruned["conv2"]), 64 - len(pruned["fc3"])
    # MACs by hand: output positions x live outputs x live inputs x kernel area, per layer
    macs = 98 * 11 * c1 * 9 + 47 * 3 * c2 * c1 * 9 + (c2 * 23) * f3 + f3 * 4
    params = c1 * 10 + c2 * (c1 * 9 + 1) + f3 * (c2 * 23 + 1) + 4 * (f3 + 1)
    out = run("profile.py", "-r", ckpt, "-q", qyml, "-p", pyml).stdout
    assert f"MACs/classification: {macs}\n" in out
    assert f"Number of Parameters: {params}\n" in out
    bits = {n: (layers[n]["bits_weights"] or 32) for n in layers}
    weight_bits = (c1 * 10 * bits["conv1"] + c2 * (c1 * 9 + 1) * bits["conv2"]
                   + f3 * (c2 * 23 + 1) * bits["fc3"] + 4 * (f3 + 1) * bits["fc4"])
    assert f"({weight_bits} bits)" in out
    assert re.search(r"^Accuracy: \d+\.\d\d%$", out, re.M)
    float_out = run("profile.py", "-r", ckpt).stdout
    assert "MACs/classification: 170864\n" in float_out and "Number of Parameters: 12764\n" in float_out
    assert "Weights: 51.1 kB (408448 bits)" in float_out


def test_test_script_applies_both_solutions(solutions):
    ckpt, qyml, pyml, _, _ = solutions
    out = run("test.py", "-r", ckpt, "-q", qyml, "-p", pyml).stdout
    assert re.search(r"Metrics: \{'loss': [\d.]+, 'top1': [\d.]+\}", out)
    assert (ckpt.parent / "model_best-test-quantized-pruned.yml").is_file()


def test_finetuning_keeps_pruned_kernels_zero_and_reproduces(solutions, e2e_config):
    ckpt, qyml, pyml, _, _ = solutions
    out = run("train.py", "-r", ckpt, "-q", qyml, "-p", pyml).stdout
    epochs = [l for l in out.splitlines() if l.startswith("epoch ")]
    assert len(epochs) == 2                                   # optimization.finetuning.epochs, from epoch 1
    assert all("lr 3.00e-04" in l for l in epochs)            # a tenth of the config's 0.003
    run_dir = run_dirs(e2e_config, "e2e_finetune")[-1]
    best = torch.load(run_dir / "model_best.pth", weights_only=True)
    pruned = yaml.safe_load(pyml.read_text())["pruned_filters"]
    for layer, kernels in pruned.items():
        for k in kernels:
            assert torch.count_nonzero(best["state_dict"][f"{layer}.weight"][k]) == 0
            assert best["state_dict"][f"{layer}.bias"][k] == 0
    # the saved checkpoint with the same -q -p gives exactly the accuracy training logged
    model, _, top1, _ = validation_setup(run_dir / "model_best.pth", qyml, pyml)
    assert top1(model)["top1"] == best["log"]["val_top1"]
    run("test.py", "-r", run_dir / "model_best.pth", "-q", qyml, "-p", pyml)


def test_solutions_for_another_model_are_one_line_errors(solutions, tmp_path):
    ckpt, qyml, pyml, _, _ = solutions
    data = yaml.safe_load(qyml.read_text())
    data["layers"]["conv9"] = data["layers"].pop("conv1")
    bad_q = tmp_path / "quantization.yml"
    bad_q.write_text(yaml.safe_dump(data))
    bad_p = tmp_path / "pruning.yml"
    bad_p.write_text(yaml.safe_dump({"pruned_filters": {"fc3": [70]}}))
    for args, pattern in ((("test.py", "-q", bad_q), "conv9"), (("profile.py", "-p", bad_p), "70"),
                          (("train.py", "-q", bad_q), "conv9")):
        proc = run(args[0], "-r", ckpt, *args[1:], check=False)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and pattern in lines[0], proc.stderr


def test_lambda_schedule_is_rejected_not_evaluated(solutions, tmp_path, e2e_config):
    """Only the lab's two decrement forms are accepted (parsed, not evaluated); anything else is refused."""
    ckpt = solutions[0]
    marker = tmp_path / "evaluated"
    cfg = yaml.safe_load(e2e_config.read_text())
    cfg["optimization"]["quantization"] = {
        "error_margin": 15, "decrement": f"lambda bw: __import__('os').system('touch {marker}') or bw // 2"}
    path = tmp_path / "lambda.yml"
    path.write_text(yaml.safe_dump(cfg))
    proc = run("quantize.py", "-r", ckpt, "-c", path, "-o", tmp_path / "q.yml", check=False)
    assert proc.returncode == 1 and "is not accepted: only 'lambda bw: bw // K'" in proc.stderr
    assert not marker.exists()
    assert not (tmp_path / "q.yml").exists()
