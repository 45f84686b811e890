"""Shared fixtures: the real corpus beside the project, and a feature cache shared by the tests."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import utils.stdlib_profile  # noqa: E402,F401  (before torch: our profile.py must not shadow the stdlib)

import pytest  # noqa: E402

CORPUS = ROOT.parent / "shared" / "data" / "kws_corpus"


@pytest.fixture(scope="session")
def corpus_dir():
    assert CORPUS.is_dir(), f"the real corpus is expected at {CORPUS} (shared/ beside the project)"
    return CORPUS


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("feature-cache")
