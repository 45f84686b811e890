"""DS-CNN through the user's chain on the real corpus, selected by arch.type in a config derived
from config_dscnn_keywords.yml: train -> quantize -> prune -q -> test -q -p -> profile ->
finetune -> export, the C code compiled by gcc: integer Python == C == simulation bit for bit."""
import re

import numpy as np
import pytest
import torch
import yaml

from conftest import ROOT, run_c_model, run_dirs, run_script as run
from deploy.integer_engine import IntegerModel
from app.restore import data_for_checkpoint, normalization_of, restore_model

def _ints(path):
    return np.array([[int(v) for v in line.split()] for line in path.read_text().splitlines()])


@pytest.fixture(scope="module")
def chain(tmp_path_factory, corpus_dir, cache_dir):
    """The chain run once: (tmp folder, checkpoint, finetuned checkpoint, bundle, outputs)."""
    tmp = tmp_path_factory.mktemp("dscnn")
    cfg = yaml.safe_load((ROOT / "config_dscnn_keywords.yml").read_text())
    assert cfg["arch"]["type"] == "DSCNN"
    cfg["name"] = "dscnn"
    cfg["arch"]["args"].update(channels=24, blocks=2)   # small and quick; the default is 48 x 4
    cfg["optimizer"]["args"]["lr"] = 0.01
    cfg["data_loader"]["args"].update(data_dir=str(corpus_dir), cache_dir=str(cache_dir), download=None)
    cfg["trainer"].update(save_dir=str(tmp / "saved"), epochs=6, save_period=6, tensorboard=False, distillation=None,
                          ema=None)
    cfg["optimization"]["pruning"]["max_steps"] = 12
    cfg["optimization"]["finetuning"]["epochs"] = 1
    (tmp / "config.yml").write_text(yaml.safe_dump(cfg))
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        run("train.py", "-c", tmp / "config.yml")
        ckpt = run_dirs(tmp / "config.yml", "dscnn")[-1] / "model_best.pth"
        q, p = ckpt.parent / "quantization.yml", ckpt.parent / "pruning.yml"
        out["quantize"] = run("quantize.py", "-r", ckpt).stdout
        out["prune"] = run("prune.py", "-r", ckpt, "-q", q).stdout
        out["test"] = run("test.py", "-r", ckpt, "-q", q, "-p", p).stdout
        out["profile"] = run("profile.py", "-r", ckpt, "-q", q, "-p", p).stdout
        run("train.py", "-r", ckpt, "-q", q, "-p", p)
        finetuned = run_dirs(tmp / "config.yml", "dscnn_finetune")[-1] / "model_best.pth"
        out["export"] = run("export.py", "-r", finetuned, "-o", tmp / "bundle").stdout
    return tmp, ckpt, finetuned, tmp / "bundle", out


def test_dscnn_quantization_and_pruning_solutions(chain):
    _, ckpt, _, _, out = chain
    layers = yaml.safe_load((ckpt.parent / "quantization.yml").read_text())["layers"]
    assert list(layers) == ["conv1", "dw1", "pw1", "dw2", "pw2", "fc"]
    assert all(entry["bits_inputs"] and entry["bits_weights"] for entry in layers.values()), layers
    pruned = yaml.safe_load((ckpt.parent / "pruning.yml").read_text())["pruned_filters"]
    assert pruned["dw1"] == pruned["conv1"] and pruned["dw2"] == pruned["pw1"] and pruned["fc"] == []
    assert "Network pruning results." in out["prune"]
    assert re.search(r"^Metrics: \{'loss': [\d.]+, 'top1': [\d.]+\}", out["test"], re.M)
    assert re.search(r"^MACs/classification: \d+$", out["profile"], re.M)


def test_dscnn_finetuned_export_is_bit_exact_in_python_and_c(chain, tmp_path):
    _, _, finetuned, bundle, out = chain
    ft = torch.load(finetuned, weights_only=True)
    assert ft["arch"] == "DSCNN" and int(ft["state_dict"]["conv1_bn.folded"]) == 1   # finetuned folded
    summary = yaml.safe_load((bundle / "export.yml").read_text())
    assert summary["integer_mismatches"] == 0 and summary["clips"] == 806
    assert "Integer scores vs simulated logits: 0 of 806 clips differ" in out["export"]
    # the integer engine of the finetuned model (stored solutions) == the simulation == the vectors
    simulated, ckpt = restore_model(finetuned)
    loader = data_for_checkpoint(ckpt, progress=False).eval_loader("test", *normalization_of(ckpt))
    with torch.no_grad():
        logits = simulated.logits(loader.inputs).double().numpy()
    engine = IntegerModel.from_model(simulated)
    scores = _ints(bundle / "expected_scores.txt")
    assert np.array_equal(scores, engine.logits_int(engine.quantize_input(loader.inputs)))
    assert np.array_equal(scores, logits * 2.0 ** engine.output_fl)
    assert len(np.unique(scores, axis=0)) >= 20, "degenerate model: scores barely vary"
    c_scores = run_c_model(bundle, (bundle / "test_vectors.txt").read_text(), tmp_path)
    assert np.array_equal(c_scores, scores)
