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
    cfg["data_loader"]["args"].update(data_dir=str(corpus_dir), cache_dir=str(cache_dir))
    cfg["trainer"].update(save_dir=str(tmp / "saved"), epochs=E2E_EPOCHS, save_period=2)
    cfg["optimization"]["finetuning"]["epochs"] = 2
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
