"""The lab's own files: its config (unchanged but for data_dir and save_dir), its IA_DATASET
pickle of MFCCs (built here from the real corpus with our MFCC code) and its quantization.yml run
through train, quantize, prune, test -q -p and finetune; a pickle that would run code is refused."""
import os
import pickle
import re

import numpy as np
import pytest
import torch
import yaml

from conftest import ROOT, run_script
from data_loader.data_loaders import KeywordDataLoader, SpeechCommandsDataLoader
from data_loader.features import FeatureParams, MfccFromMel
from data_loader.ia_dataset import read_ia_dataset
from utils.checkpoint import load_checkpoint
from utils.errors import UserError

LAB = ROOT.parent / "shared" / "reference" / "lab-code"
LAYERS = ["conv1", "conv2", "fc3", "fc4"]


def _mfcc_arrays(corpus_dir, cache_dir):
    """split -> (x (N, 100, 13) float32, one-hot y (N, 4)) from our feature pipeline."""
    data = SpeechCommandsDataLoader(corpus_dir, cache_dir=str(cache_dir), augment={"enabled": False},
                                    progress=False)
    mfcc = MfccFromMel(FeatureParams())
    out = {}
    for split in ("train", "validation", "test"):
        d = data.split(split)
        with torch.no_grad():
            x = mfcc(d.mel)[:, 0].numpy().astype(np.float32)
        out[split] = (x, np.eye(4, dtype=np.float32)[d.labels.numpy()])
    return out


@pytest.fixture(scope="module")
def ia_dir(tmp_path_factory, corpus_dir, cache_dir):
    """A folder holding IA_DATASET as the lab's loader reads it."""
    arrays = _mfcc_arrays(corpus_dir, cache_dir)
    folder = tmp_path_factory.mktemp("KeywordsDataset")
    names = {"train": "train", "validation": "val", "test": "test"}
    payload = {f"{xy}_{names[s]}": arrays[s][i] for s in arrays for i, xy in enumerate("xy")}
    with open(folder / "IA_DATASET", "wb") as f:
        pickle.dump(payload, f)
    return folder


def lab_config(tmp, data_dir):
    """The lab's config file with only data_dir and save_dir changed (text edits, nothing else)."""
    text = (LAB / "config_lenet5_keywords.yml").read_text()
    text, n1 = re.subn(r"data_dir: data/KeywordsDataset", f"data_dir: {data_dir}", text)
    text, n2 = re.subn(r"save_dir: saved/", f"save_dir: {tmp / 'saved'}/", text)
    assert n1 == n2 == 1
    path = tmp / "config_lenet5_keywords.yml"
    path.write_text(text)
    return path


def _run_dir(tmp, name="KeywordLeNet5Clone_exp1"):
    (run,) = (tmp / "saved" / "models" / name).iterdir()
    return run


# --- the IA_DATASET pickle ---------------------------------------------------------------------

def test_ia_dataset_is_read_with_numpy_arrays_only(ia_dir):
    data = read_ia_dataset(ia_dir / "IA_DATASET")
    assert sorted(data) == ["x_test", "x_train", "x_val", "y_test", "y_train", "y_val"]
    assert data["x_train"].shape[1:] == (100, 13) and data["y_train"].shape[1] == 4


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    folder = tmp_path / "evil"
    folder.mkdir()
    with open(folder / "IA_DATASET", "wb") as f:
        pickle.dump({"x_train": _Exploit(marker)}, f)
    with pytest.raises(UserError) as error:
        read_ia_dataset(folder / "IA_DATASET")
    assert re.search(r"is refused: it would import (posix|os)\.system; an IA_DATASET may hold numpy arrays only",
                     str(error.value))
    assert not marker.exists()
    # the same through the script a student would run: one line, status 1, nothing executed
    cfg = lab_config(tmp_path, folder)
    proc = run_script("train.py", "-c", cfg, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "is refused" in proc.stderr
    assert not marker.exists()


def test_missing_validation_set_uses_validation_split_as_the_lab(tmp_path, ia_dir):
    data = read_ia_dataset(ia_dir / "IA_DATASET")
    folder = tmp_path / "noval"
    folder.mkdir()
    with open(folder / "IA_DATASET", "wb") as f:
        pickle.dump({k: v for k, v in data.items() if not k.endswith("_val")}, f)
    loader = KeywordDataLoader(folder, batch_size=32, validation_split=0.1, progress=False)
    n = len(data["x_train"])
    n_val = round(n * 0.1)
    assert len(loader.split("validation")) == n_val and len(loader.split("train")) == n - n_val
    assert torch.equal(loader.split("validation").mel[:, 0], torch.from_numpy(data["x_train"][:n_val]))
    assert torch.equal(loader.split("train").labels, torch.from_numpy(data["y_train"][n_val:].argmax(1)))
    with pytest.raises(UserError, match="has no x_val/y_val: set data_loader.args.validation_split"):
        KeywordDataLoader(folder, batch_size=32, progress=False)


def test_normalisation_is_per_coefficient_over_the_training_split(ia_dir):
    loader = KeywordDataLoader(ia_dir, batch_size=32, progress=False)
    mean, std = loader.normalization()
    x = torch.from_numpy(read_ia_dataset(ia_dir / "IA_DATASET")["x_train"]).double()
    assert torch.allclose(mean.double(), x.reshape(-1, 13).mean(0), atol=1e-5)
    assert torch.allclose(std.double(), x.reshape(-1, 13).std(0), atol=1e-5)
    inputs = loader.eval_loader("test", mean, std).inputs
    assert inputs.shape[1:] == (1, 100, 13)


# --- the lab's config, pickle and solution files through the whole chain ---------------------------

@pytest.fixture(scope="module")
def lab_chain(tmp_path_factory, ia_dir):
    """train, quantize, prune (with -d, as the lab ran them) on the lab's config and pickle."""
    tmp = tmp_path_factory.mktemp("lab_chain")
    cfg = lab_config(tmp, ia_dir)
    train = run_script("train.py", "-c", cfg)
    run = _run_dir(tmp)
    best = run / "model_best.pth"
    quant = run_script("quantize.py", "-r", best, "-d", "0")
    prune = run_script("prune.py", "-r", best, "-d", "0")
    return tmp, run, train, quant, prune


def test_lab_config_trains_with_the_lab_meaning(lab_chain):
    tmp, run, train, _, _ = lab_chain
    saved = yaml.safe_load((run / "config.yml").read_text())
    assert saved["seed"] == 101 and saved["data_loader"]["type"] == "KeywordDataLoader"
    assert saved["optimization"]["quantization"] == {"error_margin": 15, "decrement": "lambda bw: bw//2"}
    assert saved["lr_scheduler"] == {"type": "StepLR", "args": {"step_size": 50, "gamma": 0.1}}
    epochs = sorted(int(f.stem.split("epoch")[1]) for f in run.glob("checkpoint-epoch*.pth"))
    # save_period 1; 15 epochs unless early_stop 10 ended it (not before epoch 11)
    assert epochs == list(range(1, len(epochs) + 1)) and 11 <= len(epochs) <= 15
    ckpt = load_checkpoint(run / "model_best.pth")
    assert ckpt.features == {"precomputed": "IA_DATASET", "frames": 100, "n_mfcc": 13}
    assert ckpt.optimizer["param_groups"][0]["lr"] == pytest.approx(0.001)  # StepLR(50) has not stepped yet


def test_quantize_and_prune_use_the_lab_sections(lab_chain):
    _, run, _, quant, prune = lab_chain
    q = yaml.safe_load((run / "quantization.yml").read_text())
    assert q["config"]["error_margin"] == 15.0 and q["config"]["schedule"] == [16, 8, 4, 2]
    assert q["results"]["floor"] == pytest.approx(q["results"]["baseline"] - 0.15)
    p = yaml.safe_load((run / "pruning.yml").read_text())
    assert p["config"]["error_margin"] == 3.0
    assert p["results"]["floor"] == pytest.approx(p["results"]["baseline"] - 0.03)
    assert "Total pruning rate:" in prune.stdout


def test_test_profile_and_finetune_run_on_the_pickle(lab_chain):
    tmp, run, _, _, _ = lab_chain
    best, q, p = run / "model_best.pth", run / "quantization.yml", run / "pruning.yml"
    proc = run_script("test.py", "-r", best, "-q", q, "-p", p, "-d", "0")
    total = re.search(r"^All\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$", proc.stdout, re.M)
    assert total is not None and int(total.group(5)) == 806  # the pickle's test split, not recomputed audio
    run_script("profile.py", "-r", best, "-q", q, "-p", p, "-d", "0")
    run_script("train.py", "-r", best, "-q", q, "-p", p)
    (ft_run,) = (tmp / "saved" / "models" / "KeywordLeNet5Clone_exp1_finetune").iterdir()
    epochs = sorted(int(f.stem.split("epoch")[1]) for f in ft_run.glob("checkpoint-epoch*.pth"))
    assert epochs == list(range(1, 11))  # optimization.finetuning.epochs: 10


def test_a_pickle_checkpoint_refuses_audio_data(lab_chain, corpus_dir):
    _, run, _, _, _ = lab_chain
    proc = run_script("test.py", "-r", run / "model_best.pth", "--data-dir", corpus_dir, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "trained on the precomputed MFCCs of an IA_DATASET pickle" in proc.stderr


def test_lab_config_on_a_speech_commands_folder(tmp_path, corpus_dir, cache_dir):
    """KeywordDataLoader pointed at our corpus reads it as SpeechCommandsDataLoader does."""
    cfg = lab_config(tmp_path, corpus_dir)
    run_script("train.py", "-c", cfg, "--epochs", "1")
    ckpt = load_checkpoint(_run_dir(tmp_path) / "model_best.pth")
    assert ckpt.features == FeatureParams().to_dict()
    assert ckpt.config["data_loader"]["args"]["shuffle"] is True


# --- quantization.yml both ways ------------------------------------------------------------------

def lab_loader_keys():
    """The per-layer keys the lab's apply_quantization reads from q_config['solutions'][name]."""
    source = (LAB / "optimization" / "utility" / "helpers.py").read_text()
    body = source[source.index("def apply_quantization"):source.index("def apply_pruning")]
    assert "q_config['solutions'].items()" in body
    return set(re.findall(r"s\['(\w+)'\]", body))


def test_our_quantization_yml_holds_what_the_lab_reads(lab_chain):
    _, run, _, _, _ = lab_chain
    keys = lab_loader_keys()
    assert keys == {"bits_inputs", "bits_weights", "bits_accumulator", "bits_outputs",
                    "il_inputs", "il_weights", "il_outputs"}
    data = yaml.safe_load((run / "quantization.yml").read_text())
    assert list(data["solutions"]) == LAYERS
    for name in LAYERS:
        assert set(data["solutions"][name]) >= keys
        assert all(isinstance(data["solutions"][name][k], int) for k in keys)
        assert data["solutions"][name] == data["layers"][name]


def test_a_lab_quantization_yml_applies_to_our_model(lab_chain, tmp_path):
    """The lab's format (top-level config/results/solutions, as its quantizer wrote it) gives the
    same test result as ours with the same formats."""
    _, run, _, _, _ = lab_chain
    ours = yaml.safe_load((run / "quantization.yml").read_text())
    lab = {"config": {"arch": "KeywordLeNet5Clone", "model_path": str(run / "model_best.pth"), "error_margin": 15},
           "results": {"baseline_top1": 0.9, "accuracy_top1": 0.8},
           "solutions": {name: {k: ours["layers"][name][k] for k in sorted(lab_loader_keys())} for name in LAYERS}}
    lab_path = tmp_path / "lab_quantization.yml"
    lab_path.write_text(yaml.safe_dump(lab))
    best = run / "model_best.pth"
    from_lab = run_script("test.py", "-r", best, "-q", lab_path)
    from_ours = run_script("test.py", "-r", best, "-q", run / "quantization.yml")
    # the report from the confusion matrix on; the last line names the -q file in the next command
    report = lambda out: [line for line in out[out.index("Predicted"):].splitlines()  # noqa: E731
                          if not line.startswith("Next: ")]
    assert report(from_lab.stdout) == report(from_ours.stdout)
    assert f"-q {lab_path}" in from_lab.stdout.splitlines()[-1]


def test_a_file_written_by_the_labs_quantizer_applies(lab_chain):
    """tests/data/lab_quantization.yml was written by the lab's own quantize.py."""
    from model.model import KeywordLeNet5Clone
    from fixedpoint.layers import LayerQuantization
    from optimization.solutions import load_quantization
    path = ROOT / "tests" / "data" / "lab_quantization.yml"
    data = yaml.safe_load(path.read_text())
    assert "layers" not in data and list(data["solutions"]) == LAYERS
    solution = load_quantization(path, KeywordLeNet5Clone())
    assert solution == {name: LayerQuantization(**data["solutions"][name]) for name in LAYERS}
    assert solution["conv1"].bits_accumulator == 2 + 4 - 1 + 3  # the lab's rule for its 2/4-bit conv1
    _, run, _, _, _ = lab_chain
    proc = run_script("test.py", "-r", run / "model_best.pth", "-q", path)
    assert re.search(r"^All\s+.*\s806$", proc.stdout, re.M)
