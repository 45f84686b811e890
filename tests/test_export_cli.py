"""export.py on a model trained on the real corpus: compact checkpoint, integer engine and C code
bit-exact with the fixed-point simulation on every test clip, ONNX, and one-line errors."""
import re
import shutil

import numpy as np
import pytest
import torch
import yaml

from conftest import pinned_recipe_config, run_c_model, run_dirs
from conftest import run_script as run
from deploy.c_export import c_model_memory
from app.export_bundle import export_bundle
from deploy.integer_engine import IntegerModel
from deploy.onnx_export import check_onnx
from model.metric import balanced_accuracy, confusion_matrix
from optimization.profiling import profile_model
from utils.checkpoint import load_checkpoint
from utils.errors import UserError
from app.restore import data_for_checkpoint, normalization_of, restore_model

TEST_CLIPS = 806
PRUNED = {"conv1": [3], "conv2": [0, 5], "fc3": list(range(0, 64, 3)), "fc4": []}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, corpus_dir, cache_dir):
    """A few epochs of train.py (recipe pinned here, not the default config's), a fixed
    pruning.yml, quantize.py on the pruned model, export.py. Returns (checkpoint, quantization.yml,
    pruning.yml, bundle folder, export.py stdout)."""
    tmp = tmp_path_factory.mktemp("export")
    pinned_recipe_config(tmp, corpus_dir, cache_dir, "export", seed=0, epochs=6)
    (tmp / "pruning.yml").write_text(yaml.safe_dump({"pruned_filters": PRUNED}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")   # 2 cores shared with other runs: threads only contend
        run("train.py", "-c", tmp / "config.yml")
        ckpt = run_dirs(tmp / "config.yml", "export")[-1] / "model_best.pth"
        run("quantize.py", "-r", ckpt, "-p", tmp / "pruning.yml", "-o", tmp / "quantization.yml")
        out = run("export.py", "-r", ckpt, "-q", tmp / "quantization.yml", "-p", tmp / "pruning.yml",
                  "-o", tmp / "bundle").stdout
    return ckpt, tmp / "quantization.yml", tmp / "pruning.yml", tmp / "bundle", out


@pytest.fixture(scope="module")
def test_split(bundle):
    """(inputs, labels) of the checkpoint's test split, as test.py sees them."""
    ckpt = load_checkpoint(bundle[0])
    loader = data_for_checkpoint(ckpt, progress=False).eval_loader("test", *normalization_of(ckpt))
    return loader.inputs, loader.labels


def _ints(path):
    return np.array([[int(v) for v in line.split()] for line in path.read_text().splitlines()])


def _printed_top1(out):
    m = re.search(r"^Test top-1 \(806 clips\): float ([\d.]+) \| fixed point ([\d.]+) \| integer ([\d.]+)$",
                  out, re.M)
    assert m, out
    return tuple(float(v) for v in m.groups())


def test_bundle_files_and_summary(bundle):
    _, _, _, outdir, out = bundle
    names = {p.name for p in outdir.iterdir()}
    assert names == {"model_compact.pth", "model.onnx", "quantization.yml", "model.h", "model.c", "main.c",
                     "test_vectors.txt", "expected_scores.txt", "test_labels.txt", "export.yml"}
    summary = yaml.safe_load((outdir / "export.yml").read_text())
    assert summary["clips"] == TEST_CLIPS and summary["integer_mismatches"] == 0
    float_top1, fixed_top1, integer_top1 = _printed_top1(out)
    assert fixed_top1 == integer_top1 == round(summary["top1_integer"], 4)
    assert float_top1 > 0.8   # the trained model beats always-class-0 (645/806 = 0.8002)
    assert "Integer scores vs simulated logits: 0 of 806 clips differ" in out
    assert re.search(r"^ONNX: max \|log-prob\| difference to PyTorch \d\.\d\de-\d\d on 806 test clips$", out, re.M)


def test_compact_checkpoint_equals_the_masked_model(bundle, test_split):
    ckpt, qyml, pyml, outdir, out = bundle
    inputs, _ = test_split
    compact, compact_ckpt = restore_model(outdir / "model_compact.pth")
    masked, _ = restore_model(ckpt, None, pyml)
    widths = (8 - len(PRUNED["conv1"]), 8 - len(PRUNED["conv2"]), 64 - len(PRUNED["fc3"]))
    assert compact.widths == widths and compact_ckpt.arch_args["widths"] == list(widths)
    assert compact.fc3.weight.shape == (widths[2], widths[1] * 23)
    with torch.no_grad():
        torch.testing.assert_close(compact(inputs), masked(inputs), rtol=0, atol=1e-5)
    # the same quantization.yml applies to the compact model: fixed point is exactly the same
    compact_q, _ = restore_model(outdir / "model_compact.pth", qyml)
    masked_q, _ = restore_model(ckpt, qyml, pyml)
    with torch.no_grad():
        assert torch.equal(compact_q.logits(inputs), masked_q.logits(inputs))
    assert f"Compact model: widths {widths}" in out


def test_integer_scores_equal_simulated_logits_on_every_test_clip(bundle, test_split):
    ckpt, qyml, pyml, outdir, out = bundle
    inputs, labels = test_split
    simulated, _ = restore_model(ckpt, qyml, pyml)   # the masked model, as test.py -q -p runs it
    with torch.no_grad():
        logits = simulated.logits(inputs).double()
    engine = IntegerModel.from_model(simulated)
    codes, scores = _ints(outdir / "test_vectors.txt"), _ints(outdir / "expected_scores.txt")
    assert codes.shape == (TEST_CLIPS, 1300) and scores.shape == (TEST_CLIPS, 4)
    assert np.array_equal(codes, engine.quantize_input(inputs).reshape(TEST_CLIPS, -1))
    # low-bitwidth outputs give coarse scores (19 distinct rows here); a degenerate model gives 1
    assert len(np.unique(scores, axis=0)) >= 10, "degenerate model: scores barely vary"
    assert np.array_equal(scores, logits.numpy() * 2.0 ** engine.output_fl)
    assert np.array_equal(_ints(outdir / "test_labels.txt")[:, 0], labels.numpy())
    fixed_top1 = float((logits.argmax(1) == labels).sum()) / TEST_CLIPS   # ties to the lowest class
    assert _printed_top1(out)[1] == round(fixed_top1, 4)
    assert f"fixed point {round(balanced_accuracy(confusion_matrix(logits, labels)), 4):.4f}" in out


def test_c_code_reproduces_every_score(bundle, tmp_path):
    _, _, _, outdir, out = bundle
    c_scores = run_c_model(outdir, (outdir / "test_vectors.txt").read_text(), tmp_path)
    assert np.array_equal(c_scores, _ints(outdir / "expected_scores.txt"))
    labels = torch.from_numpy(_ints(outdir / "test_labels.txt")[:, 0])
    # kws_infer's argmax (first maximum wins) is the rule test.py counts top-1 with
    c_top1 = float((torch.from_numpy(c_scores).argmax(1) == labels).sum()) / TEST_CLIPS
    assert round(c_top1, 4) == _printed_top1(out)[2]


def test_flash_and_ram_are_those_of_the_generated_code(bundle):
    _, qyml, _, outdir, out = bundle
    engine = IntegerModel.from_model(restore_model(outdir / "model_compact.pth", qyml)[0])
    flash, ram = c_model_memory(engine)
    assert f"C model: flash {flash:,} bytes (weights and biases), RAM {ram:,} bytes" in out


def test_profile_accepts_the_compact_model_with_the_same_quantization(bundle):
    ckpt, qyml, pyml, outdir, out = bundle
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        text = run("profile.py", "-r", outdir / "model_compact.pth", "-q", qyml).stdout
    masked = profile_model(restore_model(ckpt, qyml, pyml)[0])   # counts pruned kernels as removed
    assert masked.macs < 170864 and masked.parameters < 12764
    assert f"MACs/classification: {masked.macs}\n" in text
    assert f"Number of Parameters: {masked.parameters}\n" in text
    assert f"({masked.weight_bits} bits)" in text
    assert f"Accuracy: {100 * _printed_top1(out)[1]:.2f}%" in text   # test.py's top-1, fixed point


def test_onnx_of_the_compact_float_model(bundle, test_split):
    _, _, _, outdir, _ = bundle
    compact, _ = restore_model(outdir / "model_compact.pth")
    assert check_onnx(outdir / "model.onnx", compact, test_split[0]) < 1e-4


def test_without_quantization_only_compact_and_onnx_and_no_stale_c_code(bundle, tmp_path):
    ckpt, _, pyml, outdir, _ = bundle
    again = tmp_path / "bundle"
    shutil.copytree(outdir, again)   # an earlier quantized export in the same folder
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        out = run("export.py", "-r", ckpt, "-p", pyml, "-o", again).stdout
    assert "Integer inference and C code skipped: they need a quantization solution (-q)" in out
    # its C code and vectors are gone; a quantization.yml is never deleted (it may be the user's)
    assert {p.name for p in again.iterdir()} == {"model_compact.pth", "model.onnx", "export.yml",
                                                 "quantization.yml"}
    assert yaml.safe_load((again / "export.yml").read_text())["files"] == \
        ["model_compact.pth", "model.onnx", "export.yml"]


def test_quantization_for_another_model_is_a_one_line_error(bundle, tmp_path):
    ckpt, qyml, pyml, _, _ = bundle
    data = yaml.safe_load(qyml.read_text())
    data["layers"]["conv9"] = data["layers"].pop("conv1")
    bad = tmp_path / "quantization.yml"
    bad.write_text(yaml.safe_dump(data))
    proc = run("export.py", "-r", ckpt, "-q", bad, "-p", pyml, "-o", tmp_path / "out", check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert re.match(r"error: .*names layers \['conv9'\] that KeywordLeNet5Clone lacks", lines[0]), lines[0]
    assert not (tmp_path / "out").exists()   # checked before anything is written


def test_a_layer_left_in_float_stops_the_export_before_writing(bundle, tmp_path):
    ckpt, qyml, pyml, _, _ = bundle
    data = yaml.safe_load(qyml.read_text())
    del data["layers"]["fc4"]
    bad = tmp_path / "quantization.yml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(UserError, match="layer fc4 is not fully quantized"):
        export_bundle(ckpt, tmp_path / "out", bad, pyml, progress=False)
    assert not (tmp_path / "out").exists()


def test_compact_speedup_bench_runs(bundle):
    """The benchmark measures; its timings are reported, never asserted."""
    ckpt, _, pyml, _, _ = bundle
    out = run("-m", "bench.compact_speedup", "-r", ckpt, "-p", pyml, "--batch", "1", "4", "--seconds", "0.2").stdout
    widths = (8 - len(PRUNED["conv1"]), 8 - len(PRUNED["conv2"]), 64 - len(PRUNED["fc3"]))
    assert "masked:  widths (8, 8, 64), computes 170,864 MACs per clip" in out
    assert f"compact: widths {widths}" in out
    rows = re.findall(r"^\s+(\d+)\s+[\d.]+\s+[\d.]+\s+[\d.]+x$", out, re.M)
    assert rows == ["1", "4"], out
