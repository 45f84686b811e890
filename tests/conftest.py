"""Shared fixtures: the real corpus beside the project, and a feature cache shared by the tests."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import utils.stdlib_profile  # noqa: E402,F401  (before torch: our profile.py must not shadow the stdlib)

import subprocess  # noqa: E402

import pytest  # noqa: E402
import yaml  # noqa: E402

CORPUS = ROOT.parent / "shared" / "data" / "kws_corpus"


@pytest.fixture(scope="session")
def corpus_dir():
    assert CORPUS.is_dir(), f"the real corpus is expected at {CORPUS} (shared/ beside the project)"
    return CORPUS


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("feature-cache")


E2E_EPOCHS = 4


def run_script(*args, check=True, timeout=900):
    """Run a user-facing script as a user would; returns the CompletedProcess."""
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="session")
def e2e_config(tmp_path_factory, corpus_dir, cache_dir):
    """The default config on the real corpus, saving under a temporary folder, few epochs."""
    tmp = tmp_path_factory.mktemp("e2e")
    cfg = yaml.safe_load((ROOT / "config_lenet5_keywords.yml").read_text())
    cfg["name"] = "e2e"
    cfg["data_loader"]["args"].update(data_dir=str(corpus_dir), cache_dir=str(cache_dir), download=None)
    cfg["trainer"].update(save_dir=str(tmp / "saved"), epochs=E2E_EPOCHS, save_period=2, distillation=None)
    cfg["optimization"]["finetuning"]["epochs"] = 2
    cfg["detector"]["stream_hours"] = 0.01   # the shortest stream: every clip of the split once
    path = tmp / "config.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_dirs(config_path, name="e2e"):
    return sorted((config_path.parent / "saved" / "models" / name).iterdir())


@pytest.fixture(scope="session")
def trained(e2e_config):
    """One training run shared by the end-to-end tests: (run folder, train.py's process)."""
    proc = run_script("train.py", "-c", e2e_config)
    return run_dirs(e2e_config)[-1], proc


@pytest.fixture(scope="module")
def single_thread():
    """The model is tiny: on a loaded 2-core machine extra threads only add contention."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def train_toy_model(model=None):
    """Four classes of noise MFCCs, three with a band raised: learnable in 20 Adam steps.
    ``model``: any model of 1x100x13 inputs (default: a KeywordLeNet5Clone without dropout).
    Returns (model in eval mode, inputs, labels)."""
    import torch
    import torch.nn.functional as F
    from model.model import KeywordLeNet5Clone
    g = torch.Generator().manual_seed(0)
    y = torch.arange(128) % 4
    x = torch.randn(128, 1, 100, 13, generator=g)
    for c in range(1, 4):
        x[y == c, 0, 25 * c:25 * c + 25, :] += 0.4
    torch.manual_seed(0)
    model = KeywordLeNet5Clone(dropout=0.0) if model is None else model
    optimizer = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(20):
        idx = torch.randint(0, 128, (32,), generator=g)
        loss = F.nll_loss(model(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), x, y


def pinned_recipe_config(tmp, corpus_dir, cache_dir, name, seed, epochs):
    """A config on the real corpus with a short training recipe pinned here (not the default
    config's, which may be retuned): batch 32, keywords weighted 4x, noise in half the clips, one
    initialisation, no weight averaging, selection by validation loss (a six-epoch model's balanced
    accuracy is too coarse to select on) and bitwidths of at least 8 (a six-epoch model is weak
    enough that any margin lets its searches fall to a constant "always background" output)."""
    cfg = yaml.safe_load((ROOT / "config_lenet5_keywords.yml").read_text())
    cfg.update(name=name, seed=seed)
    cfg["arch"]["args"]["dropout"] = 0.5
    cfg["data_loader"]["args"].update(data_dir=str(corpus_dir), cache_dir=str(cache_dir), download=None, batch_size=32,
                                      augment={"enabled": True, "time_shift_ms": 100, "noise_prob": 0.5,
                                               "snr_db": [10, 30]})
    cfg["data_loader"]["args"].pop("features", None)   # the default MFCC settings, also pinned
    cfg["optimizer"] = {"type": "Adam", "args": {"lr": 0.003, "weight_decay": 0.0001}}
    cfg["lr_scheduler"] = {"type": "CosineAnnealingLR", "args": {"T_max": epochs}}
    cfg["trainer"].update(save_dir=str(tmp / "saved"), epochs=epochs, save_period=100, tensorboard=False,
                          class_weights=[1, 4, 4, 4], monitor="min val_loss", distillation=None, ema=None)
    cfg["optimization"]["quantization"].update(metric="balanced_accuracy", schedule=[16, 8])
    cfg["optimization"]["pruning"]["metric"] = "balanced_accuracy"
    cfg["detector"]["stream_hours"] = 0.01
    path = tmp / "config.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


GCC = ["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror"]


def run_c_model(folder, feature_lines, build_dir):
    """Compile the exported ``folder``/model.c and main.c with gcc (warnings are errors), run it
    on ``feature_lines`` (integer codes, one clip a line) and return its scores as a numpy array."""
    import shutil
    import numpy as np
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    exe = build_dir / "kws"
    build = subprocess.run(GCC + [str(folder / "model.c"), str(folder / "main.c"), "-o", str(exe)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    result = subprocess.run([str(exe)], input=feature_lines, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return np.array([[int(v) for v in line.split()] for line in result.stdout.splitlines()])
